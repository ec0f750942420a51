"""Solvers: how a traversal finds the top-``k`` directions at a latent.

A solver is a frozen, hashable dataclass (part of the jit cache key) that subclasses
:class:`Solver` and implements its two operations (:mod:`reds_jax.core.path` applies the one
local-path step rule to what they return; it never asks which solver it holds):

* ``start(problem, z, key) -> Start``: the top-``k`` directions at a start latent, a *context*
  shared by the ``2k`` paths of that latent, the *state* each path carries, and the
  :class:`Diagnostics` of the solve.
* ``track(problem, context, z, state, key) -> Step``: at a later latent of a ``local`` path, the
  rows whose span the previous direction is projected onto, the new state and the diagnostics.

and may override ``check`` (refuse a problem it cannot solve), ``for_step`` (adapt to the
traversal's step size) and ``span_rank`` (for ``Problem(cap_k=True)``).

:class:`Dense` recomputes exact Grams and solves the dense system at every latent (any method).
:class:`MatrixFree` (``reds``/``maxc``) solves the same Rayleigh form from Gram-vector products
and a warm-started block LOBPCG (:mod:`reds_jax.core.matrix_free`, :mod:`reds_jax.core.lobpcg`);
its ``track`` iterates until the relative Ritz residual meets ``tol`` (or the turn rule stops it),
at most ``max_iters`` times per step (``tol=None``: a fixed ``iters``).

>>> MatrixFree(iters=3).iters, Dense().mode
(3, 'auto')
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core import matrix_free, rayleigh, validate
from reds_jax.core.jacobians import (
    MODES,
    auto_chunk_size,
    feature_grams,
    output_size,
    point_mode,
)
from reds_jax.core.linalg import fix_signs, ridge_floor
from reds_jax.core.lobpcg import lobpcg, rayleigh_ritz
from reds_jax.core.problem import Problem

Array = jax.Array

COLD_STARTS = ("auto", "dense", "iterative")
TURN_TOL = 1e-2  # MatrixFree.turn_tol: sine of the turns of two tracking iterations that stops them
PRECONDS = matrix_free.PRECONDS


class RESULTS(enum.IntFlag):
    """The status of a solve, a step or a path: ``successful`` (0), or the OR of what happened.

    ``diagnostics.status`` holds these bits (int32) per solve; :attr:`Trajectories.status
    <reds_jax.core.path.Trajectories.status>` ORs them over a path. ``throw=True`` in
    :func:`~reds_jax.core.api.traverse` / :func:`~reds_jax.core.api.directions` raises
    instead of returning a result with any bit set.

    Attributes:
      successful: nothing to report.
      fallback: a documented fallback was taken (``solve_fallback``, ``kept_direction``,
        ``rejected_corrections``): the result is defined but not what the method asks for there.
      cap_reached: an iterative solve stopped at its iteration cap before its stopping rule
        (``capped_solves``; matrix-free with ``tol``).
      nonfinite: non-finite numbers were met and set aside (``nonfinite_jacobian``,
        ``skipped_iterations``).

    >>> RESULTS.describe(RESULTS.fallback | RESULTS.nonfinite)
    ['fallback', 'nonfinite']
    """

    successful = 0
    fallback = 1
    cap_reached = 2
    nonfinite = 4

    @classmethod
    def describe(cls, status: Any) -> list[str]:
        """Names of the bits set anywhere in ``status`` (an int or an int array; host side)."""
        bits = int(np.bitwise_or.reduce(np.ravel(np.asarray(status, np.int64)), initial=0))
        return [m.name for m in cls if m.value and bits & m.value]


# Which counts set which status bit (ridge_raised is routine in float32 and iterations is work).
_STATUS_OF = {
    "solve_fallback": RESULTS.fallback,
    "kept_direction": RESULTS.fallback,
    "rejected_corrections": RESULTS.fallback,
    "capped_solves": RESULTS.cap_reached,
    "nonfinite_jacobian": RESULTS.nonfinite,
    "skipped_iterations": RESULTS.nonfinite,
}


class Diagnostics(NamedTuple):
    """What a solve did: fallback counts, work done, its residual and its status (one pytree for
    every solver; read it by name).

    Shapes: per path ``[N, 2k]`` in :class:`~reds_jax.core.path.Trajectories` for the counts
    (:data:`COUNTS`, summed over the solves of a path; the start solve counts on every path of its
    latent), per step ``[N, 2k, T+1]`` for ``residual`` and ``status`` (:data:`PER_STEP`); per
    start latent ``[N]`` in :class:`~reds_jax.core.api.Directions` (leading ``N`` dropped for
    one latent ``[d]``). Counts are int32. All counts zero on a healthy traversal (in float64; in
    float32 the ridge floor can exceed a small ``ridge``).

    Attributes:
      nonfinite_jacobian: non-finite Jacobian entries (dense) or Gram-vector product entries
        (matrix-free) that were set to zero.
      ridge_raised: solves whose ridge was raised to the precision floor
        (:func:`~reds_jax.core.linalg.safe_ridge`).
      solve_fallback: solves that fell back: the whitened Rayleigh solve (or the matrix-free start
        factor) was not finite and the ``maxc`` directions were used; the fixed Grams were exactly
        zero (nothing to hold fixed: the answer is ``maxc``'s); a matrix-free tracking solve was
        not finite and the previous block was kept.
      kept_direction: ``local`` steps whose projection onto the new span vanished or was not
        finite, so the previous direction was kept.
      skipped_iterations: LOBPCG iterations skipped because their Rayleigh-Ritz step was not
        finite (matrix-free; zero for dense).
      rejected_corrections: corrector iterations whose step did not reduce the fixed features'
        deviation or was not finite, so the latent was kept.
      capped_solves: iterative solves stopped by their iteration cap (``cold_iters`` at the
        start, ``max_iters`` along a path) before their stopping rule (matrix-free with ``tol``
        or ``cold_tol``; zero for dense).
      iterations: LOBPCG iterations run (matrix-free: the start solve's and every tracking
        step's, summed like the counts; zero for dense).
      residual: float, relative Ritz residual ``max_i ‖A xᵢ − θᵢ B xᵢ‖·‖xᵢ‖ / (|θᵢ|·xᵢᵀBxᵢ)``
        over the top-``k`` block of the solve at each latent, measured before LOBPCG's last
        iteration (matrix-free; zero for dense, and where no solve ran: the last latent, and every
        latent after the start of a ``linear`` path).
      status: int32 :class:`RESULTS` bits of the solve (and step) at each latent.
    """

    nonfinite_jacobian: Array
    ridge_raised: Array
    solve_fallback: Array
    kept_direction: Array
    skipped_iterations: Array
    rejected_corrections: Array
    capped_solves: Array
    iterations: Array
    residual: Array
    status: Array

    @classmethod
    def zeros(cls, dtype) -> Diagnostics:
        """Scalars of one solve where nothing happened."""
        zero = jnp.zeros((), jnp.int32)
        return cls(**dict.fromkeys(COUNTS, zero), residual=jnp.zeros((), dtype), status=zero)

    def counts(self) -> dict[str, Array]:
        """The count fields (:data:`COUNTS`) by name."""
        return {f: getattr(self, f) for f in COUNTS}

    def plus(self, other: Diagnostics) -> Diagnostics:
        """The counts of both added (``residual`` and ``status`` are ``self``'s)."""
        return self._replace(**{f: getattr(self, f) + getattr(other, f) for f in COUNTS})

    def with_status(self) -> Diagnostics:
        """``status`` set from this solve's counts (the :class:`RESULTS` bits they imply)."""
        status = jnp.zeros((), jnp.int32)
        for name, bit in _STATUS_OF.items():
            status = status | jnp.where(getattr(self, name) > 0, int(bit), 0).astype(jnp.int32)
        return self._replace(status=status)

    def nonzero(self) -> dict[str, int]:
        """Totals of the non-zero fallback counts (:data:`FALLBACKS`, host side), e.g. for a
        warning line."""
        counts = {f: int(np.sum(np.asarray(getattr(self, f)))) for f in FALLBACKS}
        return {f: c for f, c in counts.items() if c}


PER_STEP = ("residual", "status")  # Diagnostics fields with a step axis in a traversal
COUNTS = tuple(f for f in Diagnostics._fields if f not in PER_STEP)  # summed along a path
# Counts of things that went wrong (for warnings): not work (iterations), nor a designed stop
# (capped_solves: with tol the cap is part of the rule; its RESULTS bit still reports it).
FALLBACKS = tuple(f for f in COUNTS if f not in ("iterations", "capped_solves"))


def _flag(x: Array) -> Array:
    return jnp.asarray(x, jnp.int32)


class Start(NamedTuple):
    """A start solve: ``values [k]``, unit ``vectors [k, d]``, the ``context`` shared by the paths
    of the latent, the ``state`` each path carries and the solve's :class:`Diagnostics`."""

    values: Array
    vectors: Array
    context: Any
    state: Any
    diagnostics: Diagnostics


class Step(NamedTuple):
    """A tracking solve: ``rows [s, d]`` and ``span [s]`` (0/1) of the new span, the new
    ``state`` and the solve's :class:`Diagnostics`."""

    rows: Array
    span: Array
    state: Any
    diagnostics: Diagnostics


class Solver(abc.ABC):
    """The interface a traversal needs of a solver; subclass it (as a frozen dataclass, so it is
    hashable) to bring your own.

    >>> import dataclasses, jax.numpy as jnp
    >>> @dataclasses.dataclass(frozen=True)
    ... class Axes(Solver):  # the first k coordinate axes everywhere
    ...     def start(self, problem, z, key):
    ...         rows = jnp.eye(z.shape[0], dtype=z.dtype)[: problem.k]
    ...         zeros = jnp.zeros(problem.k, z.dtype)
    ...         return Start(zeros, rows, None, None, Diagnostics.zeros(z.dtype))
    ...     def track(self, problem, context, z, state, key):
    ...         rows = jnp.eye(z.shape[0], dtype=z.dtype)[: problem.k]
    ...         ones = jnp.ones(problem.k, z.dtype)
    ...         return Step(rows, ones, state, Diagnostics.zeros(z.dtype))
    >>> hash(Axes()) == hash(Axes())
    True
    """

    @abc.abstractmethod
    def start(self, problem: Problem, z: Array, key: Array) -> Start:
        """Top-``k`` directions at the start latent ``z [d]`` (see :class:`Start`)."""

    @abc.abstractmethod
    def track(self, problem: Problem, context: Any, z: Array, state: Any, key: Array) -> Step:
        """The span at a later latent ``z`` of a ``local`` path (see :class:`Step`)."""

    def check(self, problem: Problem) -> None:  # noqa: B027 - optional hook
        """Raise a ValueError naming what to change if ``problem`` cannot be solved (default:
        every problem can)."""

    def for_step(self, size: float) -> Solver:
        """This solver for a traversal whose largest step is ``size`` (default: unchanged)."""
        del size
        return self

    def span_rank(self, problem: Problem, z: Array, key: Array) -> Array | None:
        """Rows of the method's own span at the start latent ``z`` (``Problem(cap_k=True)`` cuts
        ``k`` to it), or None when the solver does not know it (default: ``k`` is not cut)."""
        del problem, z, key


def _count(x: Any, name: str, lo: int) -> int:
    """An int ``>= lo``, and at most its :data:`~reds_jax.core.validate.BOUNDS` entry if any."""
    return validate.integer(x, name, lo, validate.BOUNDS.get(name, math.inf))


def _check_jacobian_options(mode: Any, chunk_size: Any) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a Jacobian mode; pass one of {MODES}.")
    if chunk_size is not None:
        _count(chunk_size, "chunk_size", 1)


# ---------------------------------------------------------------------------------------------
# Dense


MEMORY_BUDGET = 2**31  # bytes of Jacobian working memory per latent (Dense.memory_budget)
DENSE_MAX_D = 4096  # the largest d a dense [d, d] solve is attempted at (Dense.max_d)


def check_dense_size(d: int, max_d: int | None, who: str, force: str) -> None:
    """Refuse a dense ``[d, d]`` solve above ``max_d`` with an error that names the way out.

    Raises:
      ValueError: ``d > max_d``.
    """
    if max_d is not None and d > max_d:
        gb = d * d * 4 / 2**30
        raise ValueError(
            f"{who} at latent size d={d} builds [{d}, {d}] Grams ({gb:.2g} GB each in float32) "
            f"from {d} Jacobian columns and runs a dense [{d}, {d}] eigen-solve at every latent: "
            f"minutes per step. Use solver=reds_jax.MatrixFree() (Gram-vector products, no "
            f"[d, d] array), or {force}."
        )


@dataclasses.dataclass(frozen=True)
class Dense(Solver):
    """Exact Grams and a dense eigen-solve at every latent (every method).

    Memory: the unchunked Jacobian of the features through the generator takes what XLA's
    compiled program for one latent holds (its ``memory_analysis()``, asked only when a cheap
    upper bound from the jaxpr is over budget, once per generator and shape; see
    :func:`reds_jax.core.jacobians.jacobian_bytes`). When that exceeds ``memory_budget`` bytes
    and no ``chunk_size`` is given, the tangents are split into chunks that fit
    (:func:`reds_jax.core.jacobians.auto_chunk_size`); a chunked forward Jacobian costs the same
    per tangent as an unchunked one. ``N`` latents under ``vmap`` use ``N`` times the budget.

    Args:
      mode: Jacobian mode (``"auto"``, ``"fwd"``, ``"rev"``, ``"fd"``, ``"fd_forward"``: see
        :func:`reds_jax.core.jacobians.jacobian`; or ``"fd_official"``, the reference code's
        scheme: central differences at the start latent, forward differences along a path, both
        with step ``eps``).
      chunk_size: accumulate each Gram in blocks of this many tangents (bounded memory), or None
        (automatic under ``memory_budget``).
      eps: finite-difference step, or None (default): 1e-3, and with ``mode="fd_official"``
        in a traversal its largest step (:meth:`for_step`), as the reference does.
      memory_budget: bytes of Jacobian working memory per latent before chunking automatically
        (default 2 GiB), or None (never chunk automatically).
      max_d: refuse latent sizes above this (default 4096) with an error that names
        :class:`MatrixFree`: a dense ``[d, d]`` solve per latent takes minutes there. None: no
        limit.

    >>> Dense(chunk_size=16).chunk_size
    16
    """

    mode: str = "auto"
    chunk_size: int | None = None
    eps: float | None = None
    memory_budget: int | None = MEMORY_BUDGET
    max_d: int | None = DENSE_MAX_D

    def __post_init__(self):
        _check_jacobian_options(self.mode, self.chunk_size)
        if self.memory_budget is not None:
            _count(self.memory_budget, "memory_budget", 1)
        if self.max_d is not None:
            _count(self.max_d, "max_d", 1)
        ok = isinstance(self.eps, int | float) and not isinstance(self.eps, bool)
        if self.eps is not None and not (ok and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0 or None; got {self.eps!r}.")

    def for_step(self, size: float) -> Dense:
        """``mode="fd_official"`` with ``eps=None``: the difference step is the traversal's step
        size (the reference's scheme); an explicit ``eps`` is kept."""
        concrete = isinstance(size, int | float) and not isinstance(size, bool)
        if self.mode == "fd_official" and self.eps is None and concrete:
            return dataclasses.replace(self, eps=float(size))
        return self

    def span_rank(self, problem: Problem, z: Array, key: Array) -> Array:
        """Rows of the method's own span (its mask) at the start latent ``z``."""
        return jnp.sum(self.system(problem, z, key, at_start=True)[2])

    def system(self, problem: Problem, z: Array, key: Array, at_start: bool = True):
        """Full sorted system at one latent: ``values [d]``, ``vectors [d, d]``, ``span [d]`` (the
        method's own span mask) and the :class:`Diagnostics` of the solve. ``at_start``: whether
        ``z`` is a start latent (``mode="fd_official"`` differs there)."""
        d = z.shape[0]
        info = Diagnostics.zeros(z.dtype)
        span = jnp.ones((d,), z.dtype)
        if problem.method == "random":
            values, vectors = rayleigh.random_system(key, d, z.dtype, problem.random_dist)
            return values, vectors, span, info
        method, vary, fix = problem.method, problem.vary, problem.fix
        feats = (vary if method != "minf" else ()) + (fix if method != "maxc" else ())
        check_dense_size(d, self.max_d, "Dense", "pass Dense(max_d=None) to force it")
        eps = 1e-3 if self.eps is None else self.eps
        mode, eps = point_mode(self.mode, eps, None, at_start)
        chunk = self.chunk_size
        if chunk is None and self.memory_budget is not None and not mode.startswith("fd"):
            chunk = auto_chunk_size(problem.generator, feats, z, mode, self.memory_budget)
        grams, bad = feature_grams(
            problem.generator, feats, z, mode=mode, chunk_size=chunk, eps=eps, count=True
        )
        info = info._replace(nonfinite_jacobian=bad)
        if problem.gram_noise:  # the reference's noise before normalising, seeded by `key`
            noise = jax.random.normal(jax.random.fold_in(key, 7), grams.shape, z.dtype)
            grams = grams + problem.gram_noise * noise
        if problem.normalize:
            grams = jax.vmap(rayleigh.normalize_gram)(grams)
        n_vary = 0 if method == "minf" else len(vary)
        a_vary = jnp.einsum("k,kij->ij", jnp.asarray(problem.vary_weights, z.dtype), grams[:n_vary])
        a_fix = grams[n_vary:]
        weights = jnp.asarray(problem.weights, z.dtype)
        nothing_fixed = _flag(~jnp.any(a_fix != 0)) if fix else info.solve_fallback
        beta_fix = jnp.asarray(problem.beta_fix, z.dtype)
        if method == "maxc":
            values, vectors = rayleigh.maxc_system(a_vary)
            span = rayleigh.beta_span(values, span, problem.beta_vary)
        elif method == "minf" and problem.minf_mode == "union":
            values, vectors, span = rayleigh.minf_union_system(a_fix, weights, beta_fix=beta_fix)
            info = info._replace(solve_fallback=nothing_fixed)
        elif method == "minf":
            values, vectors = rayleigh.minf_system(a_fix, weights)
            info = info._replace(solve_fallback=nothing_fixed)
        elif method == "nullspace":
            values, vectors, span = rayleigh.nullspace_system(
                a_vary, a_fix, beta_fix=beta_fix, beta_vary=problem.beta_vary
            )
            info = info._replace(solve_fallback=nothing_fixed)
        else:
            b = jnp.einsum("k,kij->ij", weights, a_fix) if fix else jnp.zeros((d, d), z.dtype)
            values, vectors, lam, fell_back = rayleigh.rayleigh_solve(
                a_vary, b, ridge=problem.ridge
            )
            nothing_fixed = _flag(~jnp.any(b != 0))
            info = info._replace(
                ridge_raised=_flag(lam > jnp.asarray(problem.ridge, z.dtype)),
                solve_fallback=_flag(fell_back) | nothing_fixed,
            )
        return values, vectors, span, info

    def start(self, problem: Problem, z: Array, key: Array) -> Start:
        """Top-``k`` directions at the start latent ``z [d]`` (see :class:`Start`)."""
        values, vectors, _, info = self.system(problem, z, key)
        return Start(values[: problem.k], vectors[: problem.k], None, None, info)

    def track(self, problem: Problem, context: Any, z: Array, state: Any, key: Array) -> Step:
        """The span at a later latent ``z`` of a ``local`` path (see :class:`Step`)."""
        del context
        _, vectors, span, info = self.system(problem, z, key, at_start=False)
        rows = problem.rows(z.shape[0])
        return Step(vectors[:rows], span[:rows], state, info)


# ---------------------------------------------------------------------------------------------
# Matrix-free


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
        README "At paper scale").
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
            _count(getattr(self, name), name, lo)
        _count(self.sketch_seed, "sketch_seed", 0)
        _count(self.max_iters, "max_iters", 1)
        _count(self.dense_start_max_d, "dense_start_max_d", 1)
        if self.sketch is not None:
            _count(self.sketch, "sketch", 1)
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
        _check_jacobian_options(self.mode, self.chunk_size)

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
        return _flag(res.iterations >= cap) if tol is not None else jnp.zeros((), jnp.int32)

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
                chunk = auto_chunk_size(problem.generator, feats, z, self.mode, MEMORY_BUDGET)
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
                ridge_raised=_flag(lam > ridge),
                solve_fallback=_flag(fell_back) | _flag(~jnp.any(b != 0)),
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
                ridge_raised=_flag(floor > ridge), solve_fallback=_flag(~(diag_max > 0))
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
        fallback = _flag(~ok)
        if fixed:
            fallback = fallback | _flag(pencil.fixed_is_zero(res.jx))
        info = Diagnostics.zeros(z.dtype)._replace(
            nonfinite_jacobian=res.nonfinite,
            solve_fallback=fallback,
            skipped_iterations=res.skipped,
            capped_solves=self._capped(res, iters, self.tol),
            iterations=res.iterations,
            residual=jnp.max(res.residual[order][:k]),
        )
        return Step(new[:k], jnp.ones((k,), z.dtype), new, info)
