"""Gram-vector products for the matrix-free solver: the pencils its block LOBPCG runs on.

``traverse(..., solver=reds_jax.MatrixFree())`` (:class:`reds_jax.core.solvers.MatrixFree`) solves **the same Rayleigh form as the dense solver**,
``A_vary v = μ (B + λI) v`` with ``A_vary = Σ c_k J_kᵀJ_k`` (varied features) and
``B = Σ c_k J_kᵀJ_k`` (fixed features), ``c_k`` the feature weight over the Gram's Frobenius norm;
only how the top-``k`` eigenvectors are found differs (``maxc``: ``B = 0``):

* **Products, never Grams.** At each latent one ``jax.linearize`` of *all* features through the
  generator gives ``u ↦ J u`` (forward mode) and, by ``jax.linear_transpose``, ``w ↦ Jᵀ w``. The
  projected Grams of a block ``S [q, d]`` are ``(J S)(J S)ᵀ`` per feature (forward products only)
  and a residual ``A x − θ (B + λI) x`` is one transpose product of a weighted cotangent. Nothing
  ``[m, d]`` (a full Jacobian) is formed after the start latent.
* **Generalised block LOBPCG** (:mod:`reds_jax.core.lobpcg`) on the pencil ``(A_vary, B + λI)``:
  Rayleigh-Ritz on ``[X, R, T R, P]`` (Ritz block, residuals, residuals preconditioned by
  ``T = (B(z_0) + λI)⁻¹``, previous search directions; option ``precond``: ``"both"`` (default),
  ``"start"`` (``T R`` only) or ``"none"``). The block has ``p = k + guard`` rows.
* **Tracking.** On a ``local`` path every path carries its ``[p, d]`` block through the
  ``lax.scan``; each step re-linearises at the new latent, warm-starts from the previous block and
  runs ``iters`` LOBPCG iterations: ``p`` forward products, then per iteration ``p`` transpose and
  ``2p`` forward products (``p`` with ``precond="start"``/``"none"``), instead of ``d`` Jacobian
  columns and a ``[d, d]`` eigen-solve. The step rule is the dense solver's
  (:func:`reds_jax.core.path.local_step`).
* **Start latent** (option ``cold_start``):

  - ``"dense"`` (the default, ``"auto"``, up to ``d = dense_start_max_d``): exact Grams at ``z_0`` (``mode`` / ``chunk_size`` apply; once per start
    latent, shared by its ``2k`` paths) give the Frobenius norms, the ridge (the dense solver's
    ``λ``, raised to ``10·d·eps·max diag B``) and the preconditioner ``(B(z_0) + λI)⁻¹`` from one
    Cholesky factor; the start directions come from ``cold_iters`` preconditioned LOBPCG iterations
    on that explicit pencil (a dense ``[d, d]`` eigen-solve costs seconds at d = 512 on a CPU). The
    preconditioner changes only the speed of convergence, never the answer. The norms
    ``‖A_k(z_0)‖_F`` are kept along the path (the dense solver renormalises at every step): with one
    varied and one fixed feature this changes nothing but the size of ``λ`` relative to ``B``.
  - ``"iterative"``: products only, no ``[d, d]`` array (the default above
    ``d = dense_start_max_d``, 1024). One set of ``s = max(probes, p)`` Gaussian probes ``g``
    serves three ends: each Frobenius norm by Hutchinson's estimator ``‖A‖_F² = E‖A g‖²``
    (relative standard deviation at most ``√(2/s)``, reached for a rank-one Gram; smaller for
    flatter spectra; scaling ``A_vary`` never changes the directions, scaling a fixed Gram changes
    its weight relative to the other fixed Grams and to ``λ``), a rank-``s`` Nyström
    approximation of ``B`` whose inverse (:class:`LowRankPreconditioner`, ``[s, d]`` factors)
    preconditions the residuals at the start and along the paths, and the start block: the top
    ``p`` Ritz vectors of ``span{g, T A g}`` (the probes and one preconditioned power step from
    them: ``A g`` is known, ``T`` is the preconditioner; 32 more JVPs). ``cold_iters`` (or ``cold_tol``) preconditioned
    iterations refine it. The ridge floor is the dense solver's, ``10·d·eps·max diag(B)``, with
    the Nyström approximation's diagonal (:func:`nystrom_diagonal`, a lower bound of ``diag B``):
    where the floor sets ``λ`` and ``B`` is nearly singular on the answer, the direction depends on
    ``λ`` as much as on ``B`` (StyleSpace benchmark, d = 448: ``λ`` 8.4× the dense one, from an
    upper bound of ``‖B‖_F`` used before, turned the top direction to |cos| 0.79; the Nyström
    diagonal is 0.77× the true maximum at 8 probes and 0.93× at 32). Cost: ``s`` forward and
    ``K·s`` transpose products (``K`` features).
* **Adaptive stopping** (``tol``, default 1e-2; ``max_iters``, default 8): each tracking step
  iterates until the relative Ritz residual of each top-``k`` pair is at most ``tol`` (a
  ``lax.while_loop``; a warm-started block that already meets it costs no iteration), and reports
  the residual of the returned block and the iterations in the diagnostics. ``tol=None`` runs a
  fixed ``iters``. It also stops once two iterations in a row each turned the top-``k`` Ritz
  vectors by a sine of at most ``turn_tol`` (default 1e-2; :func:`reds_jax.core.lobpcg.turned`),
  for when the residual overstates the error of the direction: at paper scale in float32 it stays
  at 0.06–0.09 after 8 iterations with the block already at |cos| 0.99996 to exact. Two in a row
  because on a nearly singular ``B`` in float32 (the rooms oracle with low-/high-pass features)
  the turns jitter between 0.005 and 0.1 without settling: there neither rule stops a step and
  the cap decides (whole paths at |cos| 0.982 to dense with 8, 0.995 with ``max_iters=16``;
  ``benchmarks/results/turn_rule.md``). ``turn_tol=None`` keeps the residual rule
  alone; the start solve always does.
* **Sketch** (option ``sketch=m'``): each fixed feature with more than ``m'`` entries is replaced by
  a seeded Gaussian sketch ``S f / √m'`` (``S [m', m]``, seed ``sketch_seed``), so the problem
  solved is the Rayleigh form with ``B_s = Σ c_k J_kᵀSᵀS J_k / m'`` (``E[B_s] = B``). It shrinks
  the fixed tangents and the start Jacobian, not the generator passes that dominate, and it is an
  approximation: a sketch has a null space of its own and lets through directions the full
  feature would see (whole-path |cos| to dense 0.26–0.67 in the benchmark, d = 64).

Accuracy: with a well-conditioned ``B`` (fixed features that see every latent direction) the
tracked directions agree with the dense ones to |cos| ≈ 0.997 per step on average (docs/guides/performance.md).
When ``B`` is (nearly) singular on the answer (``μ₁·λ`` not small), the quotient is hypersensitive,
``T`` misleads as the null space turns, and one iteration per step is not enough; use the dense
solver there or raise ``iters``/``ridge``.

Values are the true Rayleigh quotients ``vᵀA v / vᵀ(B + λI) v`` of the returned vectors,
recomputed from their products (Ritz values of a nearly dependent block can be far off when the
fixed Gram covers the varied one), and the block is sorted by them.

Non-finite entries of Gram-vector products are set to zero (``nonfinite_jacobian``); a LOBPCG
iteration whose Rayleigh-Ritz step is not finite is skipped (``skipped_iterations``: block and Ritz
values kept, search directions reset), so the start block is never replaced by NaNs; a step whose
solve is still not finite keeps the previous block (``solve_fallback``) and, as in the dense
solver, the step rule then keeps the previous direction. The small Cholesky floors
its pivots at ``eps·max diag`` so that a numerically indefinite projected ``B + λI`` in float32
(seen in about 2 % of start latents at N = 256 before this floor) cannot overflow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from reds_jax.core.jacobians import count_nonfinite, output_size, sanitize, stacked_features
from reds_jax.core.linalg import fix_signs, safe_ridge, small_eigh, symmetrize, unit_rows
from reds_jax.core.lobpcg import Result, lobpcg

Array = jax.Array

PRECONDS = ("both", "start", "none")


class LowRankPreconditioner(NamedTuple):
    """``T ≈ (B + λI)⁻¹`` from a rank-``r`` Nyström approximation ``B ≈ Uᵀ diag(σ) U`` (rows
    ``U [r, d]`` orthonormal): ``T = Uᵀ diag((σ_r + λ)/(σᵢ + λ)) U + (I − UᵀU)`` (Frangella, Tropp
    & Udell 2023, scaled so the complement keeps unit weight; LOBPCG is invariant to the scale).
    Built from ``r`` products of ``B``, applied in ``O(r d)``: no ``[d, d]`` array.

    Attributes:
      u: ``[r, d]`` orthonormal rows.
      gain: ``[r]`` ``(σ_r + λ)/(σᵢ + λ) − 1`` (0 for dropped rows).
    """

    u: Array
    gain: Array

    def apply(self, r: Array) -> Array:
        """``T r`` for rows ``r [p, d]``."""
        return r + ((r @ self.u.T) * self.gain[None, :]) @ self.u


def nystrom(omega: Array, b_omega: Array) -> tuple[Array, Array]:
    """A rank-``r`` Nyström approximation ``B̂ = Uᵀ diag(σ) U`` of a PSD ``B`` from test rows
    ``omega [r, d]`` and their products ``b_omega = omega @ B`` (``[r, d]``), by the stable shifted
    method (Tropp et al. 2017): shift ``ν``, ``M = Ω (BΩ + νΩ)ᵀ``, ``B̂ = (BΩ+νΩ)ᵀ M⁻¹ (BΩ+νΩ)``,
    ``σ = eig(B̂) − ν``. Small eigen-solves only (``[r, r]``). ``B̂ ⪯ B``, so ``diag(B̂) <= diag(B)``
    entrywise.

    Returns:
      ``u [r, d]`` (orthonormal rows; zero rows for dropped, dependent directions) and
      ``sigma [r]`` (>= 0; zero for dropped rows).

    >>> b = jnp.diag(jnp.array([3.0, 1.0, 0.0]))
    >>> u, sigma = nystrom(jnp.eye(3)[:2], jnp.eye(3)[:2] @ b)
    >>> [round(float(x), 4) for x in sigma], [round(float(x), 4) for x in nystrom_diagonal(u, sigma)]
    ([3.0, 1.0], [3.0, 1.0, 0.0])
    """
    dtype = omega.dtype
    q = omega / jnp.maximum(jnp.linalg.norm(omega, axis=1, keepdims=True), jnp.finfo(dtype).tiny)
    scale = 1.0 / jnp.maximum(jnp.linalg.norm(omega, axis=1), jnp.finfo(dtype).tiny)
    y = b_omega * scale[:, None]
    # Orthonormalise the test rows (SVQB) and carry B's products along: y stays q @ B.
    ev, v = small_eigh(q @ q.T)
    keep = ev > jnp.max(ev) * q.shape[0] * 100 * jnp.finfo(dtype).eps
    t = v * jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, ev, 1.0)), 0.0)[None, :]
    q, y = t.T @ q, t.T @ y
    nu = jnp.sqrt(jnp.asarray(q.shape[1], dtype)) * jnp.finfo(dtype).eps * jnp.linalg.norm(y)
    y = y + nu * q
    ev_m, v_m = small_eigh(symmetrize(q @ y.T))  # M = Ω B_ν Ωᵀ, SPD on the kept rows
    ok = ev_m > jnp.finfo(dtype).eps * jnp.maximum(jnp.max(ev_m), jnp.finfo(dtype).tiny)
    half = v_m * jnp.where(ok, 1.0 / jnp.sqrt(jnp.where(ok, ev_m, 1.0)), 0.0)[None, :]
    f = half.T @ y  # rows of B̂'s factor: B̂ = fᵀ f
    ev_f, w = small_eigh(f @ f.T)
    kept = ev_f > jnp.finfo(dtype).eps * jnp.maximum(jnp.max(ev_f), jnp.finfo(dtype).tiny)
    u = (w * jnp.where(kept, 1.0 / jnp.sqrt(jnp.where(kept, ev_f, 1.0)), 0.0)[None, :]).T @ f
    sigma = jnp.where(kept, jnp.maximum(ev_f - nu, 0.0), 0.0)
    return jnp.where(kept[:, None], u, 0.0), sigma


def nystrom_diagonal(u: Array, sigma: Array) -> Array:
    """``diag(Uᵀ diag(σ) U)`` ``[d]``: the diagonal of a :func:`nystrom` approximation, a lower
    bound of ``diag(B)`` that approaches it as the rank covers ``B``'s spectrum."""
    return jnp.einsum("i,id->d", sigma, u * u)


def low_rank_preconditioner(u: Array, sigma: Array, lam: Array) -> LowRankPreconditioner:
    """The :class:`LowRankPreconditioner` of ``B̂ + λI`` for ``B̂ = Uᵀ diag(σ) U`` (:func:`nystrom`;
    zero rows of ``u`` are dropped directions)."""
    kept = jnp.any(u != 0, axis=1)
    sigma_r = jnp.min(jnp.where(kept, sigma, jnp.inf))
    gain = jnp.where(kept, (sigma_r + lam) / (sigma + lam) - 1.0, 0.0)
    gain = jnp.where(jnp.isfinite(gain), gain, 0.0)
    return LowRankPreconditioner(u, gain)


def _precondition(pinv, precond: str, r: Array) -> tuple[Array, ...]:
    if pinv is None:
        return (r,)
    if isinstance(pinv, LowRankPreconditioner):
        tr = pinv.apply(r)
    else:
        tr = r @ pinv  # the preconditioner (B(z_0) + λI)⁻¹ is symmetric
    return (tr,) if precond == "start" else (r, tr)


def hutchinson(jt: Callable, jg: Array, sizes: Sequence[int], batch: int) -> tuple[Array, Array]:
    """Per-feature Gram products and Frobenius norms from probe products (Hutchinson).

    Args:
      jt: ``w [m] -> Jᵀ w [d]`` for the stacked features.
      jg: ``[s, m]`` products ``J g`` of ``s`` Gaussian probes ``g``.
      sizes: the features' output sizes (``m`` in all).
      batch: rows per transpose product batch (:func:`map_rows`).

    Returns:
      ``(A_k g [K, s, d], ‖A_k‖_F estimates [K])`` with ``A_k = J_kᵀJ_k``; non-finite products are
      set to zero (``‖A‖_F² = E‖A g‖²``: relative standard deviation at most ``√(2/s)``).
    """
    seg = jnp.concatenate([jnp.full((n,), i) for i, n in enumerate(sizes)])  # [m]
    masks = (seg[None, :] == jnp.arange(len(sizes))[:, None]).astype(jg.dtype)  # [K, m]
    ag = jax.vmap(lambda mk: map_rows(jt, jg * mk[None, :], batch))(masks)
    ag = jnp.where(jnp.isfinite(ag), ag, 0.0)
    return ag, jnp.sqrt(jnp.mean(jnp.sum(ag**2, axis=-1), axis=-1))


def map_rows(fn: Callable[[Array], Array], rows: Array, batch: int) -> Array:
    """``fn`` on every row of ``rows [s, d]``, ``batch`` rows at a time (``lax.map``): the working
    memory of ``batch`` products, not ``s``."""
    return jax.lax.map(fn, rows, batch_size=max(1, min(int(batch), rows.shape[0])))


class ProductPencil(NamedTuple):
    """The pencil ``(A_vary, B + λI)`` from the products of all features at one latent.

    ``A = Jᵀ diag(wa) J`` and ``B = Jᵀ diag(wb) J`` over the concatenated feature tangent ``[m]``
    (varied features first).

    Attributes:
      jv: ``u [d] -> J u [m]``.
      jt: ``w [m] -> Jᵀ w [d]``.
      wa, wb: ``[m]`` per-entry weights ``c_k`` of the varied / fixed features (zero elsewhere).
      lam: ridge ``λ`` (scalar).
      pinv: ``[d, d]`` preconditioner ``(B(z_0) + λI)⁻¹``, a :class:`LowRankPreconditioner`,
        or None.
      precond: ``"both"``, ``"start"`` or ``"none"``.
    """

    jv: Callable
    jt: Callable
    wa: Array
    wb: Array
    lam: Array
    pinv: Array | None = None
    precond: str = "both"

    @classmethod
    def build(cls, jv, jt, sizes, n_vary, scales, lam, pinv=None, precond="both"):
        """From feature ``sizes`` (static, varied first) and per-feature ``scales [K]``."""
        parts_a, parts_b = [], []
        for i, s in enumerate(sizes):
            c = jnp.full((s,), scales[i], scales.dtype)
            zero = jnp.zeros((s,), scales.dtype)
            parts_a.append(c if i < n_vary else zero)
            parts_b.append(zero if i < n_vary else c)
        wa, wb = jnp.concatenate(parts_a), jnp.concatenate(parts_b)
        return cls(jv, jt, wa, wb, lam, pinv, precond)

    def apply(self, x):
        jx = jax.vmap(self.jv)(x)
        return sanitize(jx), count_nonfinite(jx)

    def project(self, q, jq):
        a = jq @ (jq * self.wa[None, :]).T
        b = jq @ (jq * self.wb[None, :]).T + self.lam * (q @ q.T)
        return a, b

    def quotients(self, x, jx):
        xax = jnp.sum(jx * jx * self.wa[None, :], axis=1)
        xbx = jnp.sum(jx * jx * self.wb[None, :], axis=1) + self.lam * jnp.sum(x * x, axis=1)
        return xax, xbx

    def residual(self, x, jx, theta):
        cot = jx * self.wa[None, :] - theta[:, None] * (jx * self.wb[None, :])
        r = jax.vmap(self.jt)(cot)
        return sanitize(r) - (theta * self.lam)[:, None] * x, count_nonfinite(r)

    def precondition(self, r):
        return _precondition(self.pinv, self.precond, r)

    def fixed_is_zero(self, jx) -> Array:
        """True when the fixed products of the block vanish (``B = 0`` on it: nothing fixed)."""
        return ~jnp.any(jx * self.wb[None, :] != 0)


class ExplicitPencil(NamedTuple):
    """The same pencil from explicit ``[d, d]`` matrices (the start latent): the "tangent" of a row
    ``u`` is ``[A u, Lᵀ u]`` (``[2d]``, ``L Lᵀ = B + λI``). The projected ``B + λI`` is then a sum of
    squares, ``(Lᵀq)·(Lᵀq)``: formed as ``q·(B + λI) q`` it loses its small eigenvalues (≈ λ) to
    rounding in float32 and the Ritz values blow up.

    The quotients ``xᵀAx / (xᵀBx + λxᵀx)`` use ``A``, ``B`` and ``x`` themselves (not ``L`` or the
    carried tangents), so that a ``B`` that covers ``A`` gives quotients ``<= 1`` in any precision.

    Attributes:
      a: ``[d, d]`` symmetric ``A``.
      b: ``[d, d]`` symmetric ``B``.
      lam: ridge ``λ``.
      chol: ``[d, d]`` lower Cholesky factor of ``B + λI``.
      pinv: ``[d, d]`` preconditioner, or None.
      precond: ``"both"`` or ``"start"``.
    """

    a: Array
    b: Array
    lam: Array
    chol: Array
    pinv: Array | None = None
    precond: str = "both"

    @classmethod
    def build(cls, a: Array, b: Array, lam: Array | float, precond: str = "both") -> ExplicitPencil:
        """From ``A``, ``B`` and ``λ``, preconditioned by ``(B + λI)⁻¹``."""
        b = symmetrize(b)
        eye = jnp.eye(a.shape[-1], dtype=a.dtype)
        lam = jnp.asarray(lam, a.dtype)
        chol = jnp.linalg.cholesky(b + lam * eye)
        pinv = symmetrize(cho_solve((chol, True), eye))
        return cls(symmetrize(a), b, lam, chol, pinv, precond)

    def apply(self, x):
        jx = jnp.concatenate([x @ self.a, x @ self.chol], axis=1)  # rows: [A u, Lᵀ u]
        return jx, jnp.zeros((), jnp.int32)

    def project(self, q, jq):
        d = q.shape[1]
        return q @ jq[:, :d].T, jq[:, d:] @ jq[:, d:].T  # λ is inside L

    def quotients(self, x, jx):
        # From x itself, not from jx (LOBPCG carries tangents as combinations of earlier ones,
        # whose rounding would differ between the numerator and the denominator).
        del jx
        xax = jnp.sum(x * (x @ self.a), axis=1)
        xbx = jnp.sum(x * (x @ self.b), axis=1) + self.lam * jnp.sum(x * x, axis=1)
        return xax, xbx

    def residual(self, x, jx, theta):
        d = x.shape[1]
        r = jx[:, :d] - theta[:, None] * (jx[:, d:] @ self.chol.T)
        return r, jnp.zeros((), jnp.int32)

    def precondition(self, r):
        return _precondition(self.pinv, self.precond, r)


def linearize(generator, feats: Sequence[Callable], z: Array) -> tuple[Callable, Callable]:
    """``(jv, jt)``: ``u [d] -> J u [m]`` and ``w [m] -> Jᵀ w [d]`` for all features at ``z``
    (one ``jax.linearize`` through the generator; ``jt`` by ``jax.linear_transpose``)."""

    _, lin = jax.linearize(stacked_features(generator, feats), z)
    lin_t = jax.linear_transpose(lin, z)
    return lin, (lambda w: lin_t(w)[0])


def sketch_features(
    fix: Sequence[Callable], generator, z: Array, sketch: int | None, seed: int
) -> tuple[Callable, ...]:
    """Fixed features, each larger than ``sketch`` entries replaced by its seeded Gaussian sketch
    ``S f / √m'`` (``S [m', m]``)."""
    if sketch is None:
        return tuple(fix)
    out = []
    for i, f in enumerate(fix):
        m = output_size(lambda v, f=f: f(generator(v)), z)
        if m <= sketch:
            out.append(f)
            continue
        key = jax.random.fold_in(jax.random.key(seed), i)
        s = jax.random.normal(key, (sketch, m), z.dtype) / jnp.sqrt(jnp.asarray(sketch, z.dtype))
        out.append(lambda img, f=f, s=s: s @ jnp.ravel(f(img)))
    return tuple(out)


def true_quotients(pencil, res: Result) -> tuple[Array, Array, Array]:
    """The returned block as unit rows sorted by their true Rayleigh quotients ``xᵀAx / xᵀBx``
    (recomputed from the products, not the Ritz values): ``(values [p], rows [p, d], order [p])``."""
    xax, xbx = pencil.quotients(res.x, res.jx)
    tiny = jnp.finfo(res.x.dtype).tiny
    values = xax / jnp.maximum(xbx, tiny)
    values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
    order = jnp.argsort(-values)
    return values[order], unit_rows(res.x[order]), order


def start_solve(
    a: Array,
    b: Array,
    ridge: float,
    x0: Array,
    iters: int,
    precond: str,
    tol: float | None = None,
    check: int | None = None,
) -> tuple[Array, Array, Array, Array, Result, Array]:
    """The start latent's top-``p`` pairs from its exact Grams, without a ``[d, d]`` eigen-solve.

    ``λ`` is the dense solver's (:func:`~reds_jax.core.linalg.safe_ridge`); one Cholesky factor
    ``L Lᵀ = B + λI`` gives the preconditioner ``(B + λI)⁻¹`` and the products ``Lᵀu`` that keep
    the projected ``B + λI`` a sum of squares, with which LOBPCG on the explicit pencil converges in
    a few iterations (a dense ``eigh`` of ``[d, d]`` costs seconds at d = 512 on a CPU). A
    non-finite factor drops ``B`` (``L = √λ I``: a maxc start, as the dense solver falls back).

    Args:
      a: ``[d, d]`` varied Gram.
      b: ``[d, d]`` fixed Gram.
      ridge: requested ``λ``.
      x0: ``[p, d]`` start block.
      iters: LOBPCG iterations.
      precond: ``"both"``, ``"start"`` or ``"none"`` (the explicit solve is always preconditioned:
        ``"none"`` acts as ``"both"`` here).
      tol, check: the adaptive stopping rule of :func:`~reds_jax.core.lobpcg.lobpcg` (``iters``
        is then the cap).

    Returns:
      ``values [p]`` (true quotients, descending), unit ``vectors [p, d]`` (rows), the
      preconditioner ``[d, d]``, ``λ``, the LOBPCG :class:`~reds_jax.core.lobpcg.Result` and
      ``fell_back`` (bool: the factor was not finite).
    """
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    b = symmetrize(b)
    lam = safe_ridge(b, ridge)
    pencil = ExplicitPencil.build(a, b, lam, "both" if precond == "none" else precond)
    # Fallback (as the dense solver's maxc fallback): a non-finite factor drops B at the start.
    ok = jnp.all(jnp.isfinite(pencil.chol))
    chol = jnp.where(ok, pencil.chol, jnp.sqrt(lam) * eye)
    pinv = jnp.where(ok, pencil.pinv, eye / lam)
    pencil = pencil._replace(chol=chol, pinv=pinv)
    res = (
        lobpcg(pencil, x0, iters)
        if tol is None
        else lobpcg(pencil, x0, iters, tol=tol, check=check)
    )
    values, rows, order = true_quotients(pencil, res)
    res = res._replace(residual=res.residual[order])
    return values, fix_signs(rows), pinv, lam, res, ~ok
