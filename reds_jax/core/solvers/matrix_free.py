"""The matrix-free solver: the Rayleigh form from Gram-vector products and a warm-started block
LOBPCG (``reds``/``maxc``); its pencils are in :mod:`reds_jax.core.matrix_free`."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from reds_jax.core import matrix_free, rayleigh, validate
from reds_jax.core.jacobians import auto_chunk_size, feature_grams, output_size
from reds_jax.core.linalg import fix_signs, ridge_floor
from reds_jax.core.lobpcg import lobpcg, rayleigh_ritz
from reds_jax.core.problem import Problem
from reds_jax.core.solvers import base
from reds_jax.core.solvers.base import (
    DENSE_MAX_D,
    Diagnostics,
    Solver,
    Start,
    Step,
    as_flag,
    check_dense_size,
    check_jacobian_options,
    count_arg,
)

Array = jax.Array

COLD_STARTS = ("auto", "dense", "iterative")
TURN_TOL = 1e-2  # MatrixFree.turn_tol: sine of the turns of two tracking iterations that stops them
PRECONDS = matrix_free.PRECONDS


class MFContext(NamedTuple):
    """Constant along the paths of one start latent: ``scales [K]`` (weights over the Frobenius
    norms at the start), the ridge ``lam`` and the preconditioner ``pinv``: ``[d, d]`` after a dense
    cold start, a :class:`~reds_jax.core.matrix_free.LowRankPreconditioner` after an iterative one,
    or None."""

    scales: Array
    lam: Array
    pinv: Array | None


@dataclasses.dataclass(frozen=True)
class MatrixFree(Solver):
    """The Rayleigh form from Gram-vector products and a warm-started block LOBPCG
    (``reds``/``maxc``; see :mod:`reds_jax.core.matrix_free`).

    Args:
      iters: LOBPCG iterations per tracking step (``tol=None``).
      guard: extra block rows (the block has ``p = k + guard`` rows).
      precond: ``"both"`` (residuals and preconditioned residuals), ``"start"`` (the latter
        only) or ``"none"``. The preconditioner is ``(B(z_0) + λI)⁻¹`` after a dense cold start,
        and the inverse of a rank-``probes`` Nyström approximation of ``B(z_0) + λI`` (``[r, d]``
        factors from products, no ``[d, d]`` array) after an iterative one.
      cold_start: ``"auto"`` (``"dense"`` up to ``d = dense_start_max_d``, ``"iterative"``
        above), ``"dense"`` (exact Grams at the start latent) or ``"iterative"`` (products only:
        Hutchinson norms, Nyström preconditioner, a start block from the Rayleigh-Ritz of
        the probes ``g`` and one preconditioned power step ``T A g``).
      cold_iters: LOBPCG iterations of the start solve (the cap, with ``tol``).
      probes: Gaussian probes of the iterative start (Hutchinson norms and the Nyström rank).
      sketch: rows ``m'`` of a Gaussian sketch of each larger fixed feature, or None.
      sketch_seed: seed of the sketches.
      mode: Jacobian mode of the dense cold start (``"auto"``, ``"fwd"``, ``"rev"``; not ``"fd"``).
      chunk_size: block size of the dense cold start's Grams, or None (chunked automatically
        above the dense solver's memory budget, :data:`MEMORY_BUDGET` bytes, as ``Dense``).
      tol: adaptive stopping rule: each solve iterates (``lax.while_loop``) until the relative
        Ritz residual ``‖A x − θ B x‖·‖x‖ / (|θ|·xᵀBx)`` of each of the top-``k`` Ritz pairs is at
        most ``tol``, at most ``max_iters`` times per tracking step (``cold_iters`` at the start);
        ``None``: fixed ``iters`` per step. A step whose warm-started block already meets ``tol``
        runs no iteration.
      max_iters: the cap of a tracking step with ``tol``. On a nearly singular ``B`` in float32
        neither rule below stops a step and the cap decides: whole paths agree with dense at
        |cos| 0.982 with 8, 0.995 with 16 on the rooms oracle, while at paper scale 16 doubles a
        W+ step that 8 already leaves at |cos| 0.993 to exact (``benchmarks/results/turn_rule.md``,
        the performance guide, docs/guides/performance.md).
      turn_tol: with ``tol``, a tracking step also stops once two iterations in a row each turned
        the top-``k`` Ritz vectors by at most this sine (:func:`reds_jax.core.lobpcg.turned`), for
        when the relative residual overstates the direction's error (in float32 at paper scale
        it stays at 0.06–0.09 with the block at |cos| 0.99996 to exact). None: the residual rule
        alone. Not applied to the start solve.
      cold_tol: the start solve's tolerance (the same rule, at most ``cold_iters`` iterations;
        tighter than ``tol``: the start direction sets the paths), or None (``cold_iters``).
      dense_start_max_d: the largest ``d`` of a ``"dense"`` cold start under ``"auto"``.

    >>> MatrixFree(iters=0)
    Traceback (most recent call last):
    ...
    ValueError: iters must be an int >= 1 and <= 10000; got 0.
    """

    iters: int = 1
    guard: int = 1
    precond: str = "both"
    cold_start: str = "auto"
    cold_iters: int = 50
    probes: int = 32
    sketch: int | None = None
    sketch_seed: int = 0
    mode: str = "auto"
    chunk_size: int | None = None
    tol: float | None = 1e-2
    max_iters: int = 8
    turn_tol: float | None = TURN_TOL
    cold_tol: float | None = 1e-6
    dense_start_max_d: int = 1024

    def __post_init__(self):
        for name, lo in (("iters", 1), ("guard", 0), ("cold_iters", 1), ("probes", 1)):
            count_arg(getattr(self, name), name, lo)
        count_arg(self.sketch_seed, "sketch_seed", 0)
        count_arg(self.max_iters, "max_iters", 1)
        count_arg(self.dense_start_max_d, "dense_start_max_d", 1)
        if self.sketch is not None:
            count_arg(self.sketch, "sketch", 1)
        meanings = {
            "tol": "a relative Ritz residual, e.g. 1e-2) or None (a fixed number of iterations",
            "cold_tol": "a relative Ritz residual, e.g. 1e-6) or None (cold_iters iterations",
            "turn_tol": "the sine of one iteration's turn, e.g. 1e-3) or None (the residual rule "
            "alone",
        }
        for name, meaning in meanings.items():
            if getattr(self, name) is not None:
                validate.tolerance(getattr(self, name), name, meaning)
        if self.cold_start not in COLD_STARTS:
            raise ValueError(
                f"cold_start={self.cold_start!r} is not valid; pass one of {COLD_STARTS}."
            )
        if self.precond not in PRECONDS:
            raise ValueError(f"precond={self.precond!r} is not valid; pass one of {PRECONDS}.")
        if isinstance(self.mode, str) and self.mode.startswith("fd"):
            raise ValueError(
                f"MatrixFree uses exact products; mode={self.mode!r} is for Dense "
                "(reds_jax.Dense(mode=...)) only."
            )
        check_jacobian_options(self.mode, self.chunk_size)

    def check(self, problem: Problem) -> None:
        """Raise a ValueError if the method is not ``reds`` or ``maxc``."""
        if problem.method not in ("reds", "maxc"):
            raise ValueError(
                f"solver=MatrixFree() supports method in ('reds', 'maxc'); got "
                f"method={problem.method!r}. Use solver=reds_jax.Dense() for it."
            )

    def cold(self, d: int) -> str:
        """The cold start used at latent size ``d`` (``"dense"`` or ``"iterative"``)."""
        if self.cold_start == "auto":
            return "dense" if d <= self.dense_start_max_d else "iterative"
        return self.cold_start

    @staticmethod
    def _capped(res, cap: int, tol: float | None) -> Array:
        """1 if a solve with a stopping rule ran to its iteration ``cap`` (0 without ``tol``)."""
        return as_flag(res.iterations >= cap) if tol is not None else jnp.zeros((), jnp.int32)

    def _solve(
        self, pencil, x: Array, k: int, iters: int, tol: float | None, turn_tol: float | None = None
    ):
        if tol is None:
            return lobpcg(pencil, x, iters)
        return lobpcg(pencil, x, iters, tol=tol, check=k, turn_tol=turn_tol)

    def _features(self, problem: Problem, z: Array):
        fixed = problem.fix if problem.method == "reds" else ()
        fixed = matrix_free.sketch_features(
            fixed, problem.generator, z, self.sketch, self.sketch_seed
        )
        feats = tuple(problem.vary) + fixed
        sizes = tuple(output_size(lambda v, f=f: f(problem.generator(v)), z) for f in feats)
        return feats, sizes, len(fixed) > 0

    def _pencil(self, problem: Problem, ctx: MFContext, feats, sizes, z: Array):
        jv, jt = matrix_free.linearize(problem.generator, feats, z)
        return matrix_free.ProductPencil.build(
            jv, jt, sizes, len(problem.vary), ctx.scales, ctx.lam, ctx.pinv, self.precond
        )

    def start(self, problem: Problem, z: Array, key: Array) -> Start:
        """Cold start at ``z [d]``: the top-``k`` system, the context and the ``[p, d]`` block
        (``p = min(k + guard, d)``) each path carries."""
        d, k, dtype = z.shape[0], problem.k, z.dtype
        p = min(k + self.guard, d)
        feats, sizes, fixed = self._features(problem, z)
        n_vary = len(problem.vary)
        vw = jnp.asarray(problem.vary_weights, dtype)
        weights = jnp.concatenate([vw, jnp.asarray(problem.weights, dtype)]) if fixed else vw
        info = Diagnostics.zeros(dtype)
        ridge = jnp.asarray(problem.ridge, dtype)
        if self.cold(d) == "dense":
            if self.cold_start == "dense":
                check_dense_size(
                    d, DENSE_MAX_D, "MatrixFree(cold_start='dense')", "pass cold_start='auto'"
                )
            chunk = self.chunk_size
            if chunk is None:  # as Dense: never hold more Jacobian than MEMORY_BUDGET
                chunk = auto_chunk_size(problem.generator, feats, z, self.mode, base.MEMORY_BUDGET)
            grams, bad = feature_grams(
                problem.generator, feats, z, mode=self.mode, chunk_size=chunk, count=True
            )
            norms = jax.vmap(jnp.linalg.norm)(grams)
            norms = jnp.where((norms > 0) & problem.normalize, norms, 1.0)
            scales = weights / norms
            scaled = grams * scales[:, None, None]
            a = jnp.sum(scaled[:n_vary], axis=0)
            info = info._replace(nonfinite_jacobian=bad)
            if not fixed:
                values, vectors = rayleigh.maxc_system(a)
                ctx = MFContext(scales, jnp.asarray(1.0, dtype), None)
                return Start(values[:k], vectors[:k], ctx, vectors[:p], info)
            b = jnp.sum(scaled[n_vary:], axis=0)
            # Start block: the unit vectors of the largest diag(A) / diag(B + λI) ratios.
            db = jnp.diagonal(b)
            ratio = jnp.diagonal(a) / (db + jnp.max(db) * 1e-3 + 1e-30)
            x0 = jnp.eye(d, dtype=dtype)[jnp.argsort(-ratio)[:p]]
            values, vectors, pinv, lam, res, fell_back = matrix_free.start_solve(
                a, b, problem.ridge, x0, self.cold_iters, self.precond, self.cold_tol, k
            )
            ctx = MFContext(scales, lam, None if self.precond == "none" else pinv)
            info = info._replace(
                ridge_raised=as_flag(lam > ridge),
                solve_fallback=as_flag(fell_back) | as_flag(~jnp.any(b != 0)),
                skipped_iterations=res.skipped,
                capped_solves=self._capped(res, self.cold_iters, self.cold_tol),
                iterations=res.iterations,
                residual=jnp.max(res.residual[:k]),
            )
            return Start(values[:k], vectors[:k], ctx, vectors, info)
        # Iterative: products only (no [d, d] array). One set of Gaussian probes g [s, d] serves
        # the Hutchinson norms, the Nyström preconditioner of B and the start block.
        jv, jt = matrix_free.linearize(problem.generator, feats, z)
        k_probe = jax.random.split(key)[1]
        s = max(self.probes, p)
        g = jax.random.normal(k_probe, (s, d), dtype)
        jg = matrix_free.map_rows(jv, g, p)  # [s, m]
        jg = jnp.where(jnp.isfinite(jg), jg, 0.0)
        ag, est = matrix_free.hutchinson(jt, jg, sizes, p)  # A_k g [K, s, d], ‖A_k‖_F [K]
        norms = jnp.where((est > 0) & problem.normalize, est, 1.0)
        scales = weights / norms
        if fixed:
            bg = jnp.einsum("k,ksd->sd", scales[n_vary:], ag[n_vary:])  # B g
            u, sigma = matrix_free.nystrom(g, bg)
            # The dense solver's ridge floor, 10·d·eps·max diag(B), with the Nyström
            # approximation's diagonal (a lower bound of diag B): the answer can depend on λ
            # as strongly as on B (a nearly singular B), so the two starts must agree on it.
            diag_max = jnp.max(matrix_free.nystrom_diagonal(u, sigma))
            floor = ridge_floor(diag_max, d)
            lam = jnp.maximum(ridge, floor)
            info = info._replace(
                ridge_raised=as_flag(floor > ridge), solve_fallback=as_flag(~(diag_max > 0))
            )
            pre = None
            if self.precond != "none":
                pre = matrix_free.low_rank_preconditioner(u, sigma, lam)
        else:
            lam, pre = jnp.asarray(1.0, dtype), None
        pencil = matrix_free.ProductPencil.build(
            jv, jt, sizes, n_vary, scales, lam, pre, self.precond
        )
        # Start block: the top-p Ritz vectors of span{g, T A g}, one preconditioned power step
        # from the probes (A g is known; T ≈ (B + λI)⁻¹): a random span alone left the start
        # solve of W+ hair at a relative residual of 0.03–0.07 after 50 iterations.
        h = jnp.einsum("k,ksd->sd", scales[:n_vary], ag[:n_vary])  # A g [s, d]
        if pre is not None:
            h = pre.apply(h)
        jh = matrix_free.map_rows(jv, h, p)
        jh = jnp.where(jnp.isfinite(jh), jh, 0.0)
        span = jnp.concatenate([g, h])
        _, coef = rayleigh_ritz(pencil, span, jnp.concatenate([jg, jh]))
        x0 = coef[:p] @ span
        res = self._solve(pencil, x0, k, self.cold_iters, self.cold_tol)
        values, rows, order = matrix_free.true_quotients(pencil, res)
        info = info._replace(
            nonfinite_jacobian=info.nonfinite_jacobian + res.nonfinite,
            skipped_iterations=res.skipped,
            capped_solves=self._capped(res, self.cold_iters, self.cold_tol),
            iterations=res.iterations,
            residual=jnp.max(res.residual[order][:k]),
        )
        vectors = fix_signs(rows)
        return Start(values[:k], vectors[:k], MFContext(scales, lam, pre), vectors, info)

    def track(
        self, problem: Problem, context: MFContext, z: Array, state: Array, key: Array
    ) -> Step:
        """LOBPCG at ``z``, warm-started from the block ``state [p, d]`` (``iters`` iterations, or
        until ``tol``); the block is kept if the solve is not finite."""
        del key
        k = problem.k
        feats, sizes, fixed = self._features(problem, z)
        pencil = self._pencil(problem, context, feats, sizes, z)
        iters = self.iters if self.tol is None else self.max_iters
        res = self._solve(pencil, state, k, iters, self.tol, self.turn_tol)
        _, rows, order = matrix_free.true_quotients(pencil, res)
        ok = jnp.all(jnp.isfinite(rows))
        new = jnp.where(ok, rows, state)
        fallback = as_flag(~ok)
        if fixed:
            fallback = fallback | as_flag(pencil.fixed_is_zero(res.jx))
        info = Diagnostics.zeros(z.dtype)._replace(
            nonfinite_jacobian=res.nonfinite,
            solve_fallback=fallback,
            skipped_iterations=res.skipped,
            capped_solves=self._capped(res, iters, self.tol),
            iterations=res.iterations,
            residual=jnp.max(res.residual[order][:k]),
        )
        return Step(new[:k], jnp.ones((k,), z.dtype), new, info)
