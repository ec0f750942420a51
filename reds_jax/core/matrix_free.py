"""Matrix-free tracking solver for REDs paths: Gram-vector products and warm-started block LOBPCG.

``traverse(..., solver="matrix_free")`` solves **the same Rayleigh form as the dense solver**,
``A_vary v = μ (B + λI) v`` with ``A_vary = Σ c_k J_kᵀJ_k`` (varied features) and
``B = Σ c_k J_kᵀJ_k`` (fixed features), ``c_k`` the feature weight over the Gram's Frobenius norm;
only how the top-``k`` eigenvectors are found differs (``maxc``: ``B = 0``):

* **Products, never Grams.** At each latent one ``jax.linearize`` of *all* features through the
  generator gives ``u ↦ J u`` (forward mode) and, by ``jax.linear_transpose``, ``w ↦ Jᵀ w``. The
  projected Grams of a block ``S [q, d]`` are ``(J S)(J S)ᵀ`` per feature (forward products only)
  and a residual ``A x − θ (B + λI) x`` is one transpose product of a weighted cotangent. Nothing
  ``[m, d]`` (a full Jacobian) is formed after the start latent.
* **Generalised block LOBPCG** (Knyazev 2001) on the pencil ``(A_vary, B + λI)``: Rayleigh-Ritz on
  ``[X, R, T R, P]`` (Ritz block, residuals, residuals preconditioned by ``T = (B(z_0) + λI)⁻¹``,
  previous search directions; option ``precond``: ``"both"`` (default), ``"start"`` (``T R`` only)
  or ``"none"``), with an SVQB orthonormalisation (Stathopoulos & Wu 2002) that drops numerically
  dependent columns, so shapes stay static under ``jit``/``vmap``. The block has ``p = k + guard``
  rows. The small dense algebra (Jacobi eigen-solves, an unrolled Cholesky) uses plain ``jnp`` ops:
  on a CPU, jaxlib's batched LAPACK kernels wait on XLA's intra-op pool from inside it, and two of
  them at once deadlock a 2-thread pool (seen with jaxlib 0.10 on 2 cores).
* **Tracking.** On a ``local`` path every path carries its ``[p, d]`` block through the
  ``lax.scan``; each step re-linearises at the new latent, warm-starts from the previous block and
  runs ``iters`` LOBPCG iterations: ``p`` forward products, then per iteration ``p`` transpose and
  ``2p`` forward products (``p`` with ``precond="start"``/``"none"``), instead of ``d`` Jacobian
  columns and a ``[d, d]`` eigen-solve. The step rule is the dense solver's.
* **Start latent** (option ``cold_start``):

  - ``"dense"`` (default): exact Grams at ``z_0`` (``mode`` / ``chunk_size`` apply; once per start
    latent, shared by its ``2k`` paths) give the Frobenius norms, the ridge (the dense solver's
    ``λ``, raised to ``10·d·eps·max diag B``) and the preconditioner ``(B(z_0) + λI)⁻¹`` from one
    Cholesky factor; the start directions come from ``cold_iters`` preconditioned LOBPCG iterations
    on that explicit pencil (a dense ``[d, d]`` eigen-solve costs seconds at d = 512 on a CPU). The
    preconditioner changes only the speed of convergence, never the answer. The norms
    ``‖A_k(z_0)‖_F`` are kept along the path (the dense solver renormalises at every step): with one
    varied and one fixed feature this changes nothing but the size of ``λ`` relative to ``B``.
  - ``"iterative"``: no Gram at all. The start block is seeded-random and refined by ``cold_iters``
    unpreconditioned iterations; each Frobenius norm is estimated by Hutchinson's estimator
    ``‖A‖_F² = E‖A g‖²``, ``g ~ N(0, I)``, with ``probes`` probes (relative standard deviation at
    most ``√(2/probes)``, reached for a rank-one Gram; smaller for flatter spectra). Scaling
    ``A_vary`` never changes the directions; scaling a fixed Gram changes its weight relative to
    the other fixed Grams and to ``λ``. The ridge floor uses an upper bound of ``‖B‖_F`` in place
    of ``max diag(B)``. Without a preconditioner, convergence depends on the conditioning of
    ``B``: raise ``iters``.
* **Sketch** (option ``sketch=m'``): each fixed feature with more than ``m'`` entries is replaced by
  a seeded Gaussian sketch ``S f / √m'`` (``S [m', m]``, seed ``sketch_seed``), so the problem
  solved is the Rayleigh form with ``B_s = Σ c_k J_kᵀSᵀS J_k / m'`` (``E[B_s] = B``). It shrinks
  the fixed tangents and the start Jacobian, not the generator passes that dominate, and it is an
  approximation: a sketch has a null space of its own and lets through directions the full
  feature would see (whole-path |cos| to dense 0.26–0.67 in the benchmark, d = 64).

Accuracy: with a well-conditioned ``B`` (fixed features that see every latent direction) the
tracked directions agree with the dense ones to |cos| ≈ 0.997 per step on average (README, Speed).
When ``B`` is (nearly) singular on the answer (``μ₁·λ`` not small), the quotient is hypersensitive,
``T`` misleads as the null space turns, and one iteration per step is not enough; use the dense
solver there or raise ``iters``/``ridge``.

Non-finite entries of Gram-vector products are set to zero; a LOBPCG iteration whose
Rayleigh-Ritz step is not finite is skipped (block and Ritz values kept, search directions reset),
so the start block is never replaced by NaNs; a step whose solve is still not finite keeps the
previous block (and, as in the dense solver, the previous direction). The small Cholesky floors
its pivots at ``eps·max diag`` so that a numerically indefinite projected ``B + λI`` in float32
(seen in about 2 % of start latents at N = 256 before this floor) cannot overflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from reds_jax.core import rayleigh
from reds_jax.core.jacobians import feature_grams, output_size, sanitize
from reds_jax.core.linalg import cholesky_inverse, project_rows, small_eigh

Array = jax.Array

SOLVERS = ("dense", "matrix_free")
METHODS = ("reds", "maxc")
COLD_STARTS = ("dense", "iterative")
PRECONDS = ("both", "start", "none")
UNROLL = 4  # LOBPCG iterations up to this count are unrolled in the trace
OPTIONS = (
    "iters",
    "guard",
    "cold_start",
    "cold_iters",
    "probes",
    "sketch",
    "sketch_seed",
    "precond",
)


@dataclasses.dataclass(frozen=True)
class MFConfig:
    """Options of the matrix-free solver (hashable: part of the jit cache key)."""

    iters: int = 1
    guard: int = 1
    cold_start: str = "dense"
    cold_iters: int = 50
    probes: int = 8
    sketch: int | None = None
    sketch_seed: int = 0
    precond: str = "both"


def check_solver(solver: str, method: str, options: dict[str, Any]) -> MFConfig | None:
    """Validate ``solver`` and its options before tracing; return the matrix-free config or None.

    Raises:
      ValueError: unknown solver name, a method the solver does not support, or bad options.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not a solver; pass one of {SOLVERS}.")
    given = sorted(set(options) & set(OPTIONS))
    if solver == "dense":
        if given:
            raise ValueError(
                f"option(s) {given} apply to solver='matrix_free' only; drop them or pass "
                "solver='matrix_free'."
            )
        return None
    if method not in METHODS:
        raise ValueError(
            f"solver='matrix_free' supports method in {METHODS}; got method={method!r}. "
            "Use solver='dense' for it."
        )
    if options.get("mode", "auto") == "fd":
        raise ValueError(
            "solver='matrix_free' uses exact products; mode='fd' is for solver='dense' only."
        )

    def count(name, default, lo):
        x = options.get(name, default)
        if isinstance(x, bool) or not isinstance(x, int) or x < lo:
            raise ValueError(f"{name} must be an int >= {lo}; got {x!r}.")
        return int(x)

    cold = options.get("cold_start", "dense")
    if cold not in COLD_STARTS:
        raise ValueError(f"cold_start={cold!r} is not valid; pass one of {COLD_STARTS}.")
    precond = options.get("precond", "both")
    if precond not in PRECONDS:
        raise ValueError(f"precond={precond!r} is not valid; pass one of {PRECONDS}.")
    sketch = options.get("sketch")
    if sketch is not None:
        sketch = count("sketch", None, 1)
    return MFConfig(
        iters=count("iters", 1, 1),
        guard=count("guard", 1, 0),
        cold_start=cold,
        cold_iters=count("cold_iters", 50, 1),
        probes=count("probes", 8, 1),
        sketch=sketch,
        sketch_seed=count("sketch_seed", 0, 0),
        precond=precond,
    )


# ---------------------------------------------------------------------------------------------
# Problem at one latent


class _Problem:
    """Weights of the pencil ``(A_vary, B + λI)`` over the concatenated feature tangent ``[m]``.

    Attributes:
      sizes: static feature sizes (varied first).
      n_vary: number of varied features.
      wa, wb: ``[m]`` per-entry weights ``c_k`` of the varied / fixed features (zero elsewhere).
      lam: ridge ``λ`` (scalar).
      pinv: ``[d, d]`` preconditioner ``(B(z_0) + λI)⁻¹``, or None.
    """

    explicit = False

    def __init__(self, sizes, n_vary, scales, lam, pinv, precond="both"):
        self.sizes, self.n_vary, self.lam, self.pinv = sizes, n_vary, lam, pinv
        self.precond = precond
        parts_a, parts_b = [], []
        for i, s in enumerate(sizes):
            c = jnp.full((s,), scales[i], scales.dtype)
            zero = jnp.zeros((s,), scales.dtype)
            parts_a.append(c if i < n_vary else zero)
            parts_b.append(zero if i < n_vary else c)
        self.wa, self.wb = jnp.concatenate(parts_a), jnp.concatenate(parts_b)


class _DenseProblem:
    """The same pencil from explicit ``[d, d]`` Grams (the start latent): the "tangent" of a row
    ``u`` is ``[A u, Lᵀ u]`` (``[2d]``, ``L Lᵀ = B + λI``), so LOBPCG runs unchanged with
    ``jv = products``. The projected ``B + λI`` is then a sum of squares, ``(Lᵀq)·(Lᵀq)``: formed
    as ``q·(B + λI) q`` it loses its small eigenvalues (≈ λ) to rounding in float32 and the
    Ritz values blow up."""

    explicit = True

    def __init__(self, a, chol, pinv, precond="both"):
        self.a, self.chol, self.pinv, self.precond = a, chol, pinv, precond

    def products(self, u: Array) -> Array:
        return jnp.concatenate([self.a @ u, self.chol.T @ u])


def _features(fix: Sequence[Callable], generator, z: Array, mf: MFConfig) -> tuple[Callable, ...]:
    """Fixed features, each larger than ``mf.sketch`` replaced by its seeded Gaussian sketch."""
    if mf.sketch is None:
        return tuple(fix)
    out = []
    for i, f in enumerate(fix):
        m = output_size(lambda v, f=f: f(generator(v)), z)
        if m <= mf.sketch:
            out.append(f)
            continue
        key = jax.random.fold_in(jax.random.key(mf.sketch_seed), i)
        s = jax.random.normal(key, (mf.sketch, m), z.dtype) / jnp.sqrt(
            jnp.asarray(mf.sketch, z.dtype)
        )
        out.append(lambda img, f=f, s=s: s @ jnp.ravel(f(img)))
    return tuple(out)


def _linearize(generator, feats: Sequence[Callable], z: Array):
    """``(jv, jt)``: ``u [d] -> J u [m]`` and ``w [m] -> Jᵀ w [d]`` for all features at ``z``."""

    def flat(v):
        image = generator(v)
        return jnp.concatenate([jnp.ravel(f(image)) for f in feats])

    _, lin = jax.linearize(flat, z)
    lin_t = jax.linear_transpose(lin, z)
    return (lambda u: sanitize(lin(u))), (lambda w: sanitize(lin_t(w)[0]))


# ---------------------------------------------------------------------------------------------
# Block LOBPCG with implicit products


def _rayleigh_ritz(prob: _Problem, s: Array, js: Array) -> tuple[Array, Array]:
    """Ritz pairs of the pencil on the row span of ``s [q, d]`` (``js = J s`` rows, ``[q, m]``).

    Returns:
      ``theta [q]`` descending (dropped, dependent directions last, negative) and ``coef [q, q]``:
      row ``i`` holds the coefficients of Ritz vector ``i`` in the rows of ``s`` (Ritz vectors are
      ``(B + λI)``-orthonormal).
    """
    q = s.shape[0]
    dtype = s.dtype
    norms = jnp.linalg.norm(s, axis=1)
    inv = jnp.where(norms > 0, 1.0 / jnp.where(norms > 0, norms, 1.0), 0.0)
    s_n, js_n = s * inv[:, None], js * inv[:, None]
    # SVQB: orthonormalise the (unit) rows through the eigen-decomposition of their Gram.
    ev, u = small_eigh(s_n @ s_n.T)
    tol = jnp.maximum(jnp.max(ev), jnp.asarray(1.0, dtype)) * q * 100 * jnp.finfo(dtype).eps
    keep = ev > tol
    t = u * jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, ev, 1.0)), 0.0)[None, :]  # [q, q]
    jq = t.T @ js_n  # J of the orthonormal basis rows
    if prob.explicit:
        d = s.shape[1]
        a = (t.T @ s_n) @ jq[:, :d].T
        b = jq[:, d:] @ jq[:, d:].T  # λ is inside L
    else:
        a = jq @ (jq * prob.wa[None, :]).T
        b = jq @ (jq * prob.wb[None, :]).T + prob.lam * jnp.diag(keep.astype(dtype))
    both = keep[:, None] & keep[None, :]
    a = jnp.where(both, a, 0.0)
    b = jnp.where(both, b, 0.0) + jnp.diag(jnp.where(keep, 0.0, 1.0))
    linv = cholesky_inverse(rayleigh.symmetrize(b))  # block-diagonal: kept / dropped
    whitened = rayleigh.symmetrize(linv @ a @ linv.T)
    # Dropped (dependent) directions rank last: below every kept value (those are >= 0).
    low = 1.0 + 2.0 * jnp.linalg.norm(whitened)
    mu, y = small_eigh(whitened - jnp.diag(jnp.where(keep, 0.0, low)))
    coef = (t @ (linv.T @ y)).T * inv[None, :]
    return mu, coef


def _residuals(prob: _Problem, jt, x: Array, jx: Array, theta: Array) -> list[Array]:
    """Residual blocks for a block ``x [p, d]``: ``R = A x − θ (B + λI) x`` and/or ``T R``."""
    if prob.explicit:
        d = x.shape[1]
        r = jx[:, :d] - theta[:, None] * (jx[:, d:] @ prob.chol.T)
    else:
        cot = jx * prob.wa[None, :] - theta[:, None] * (jx * prob.wb[None, :])
        r = jax.vmap(jt)(cot) - (theta * prob.lam)[:, None] * x
    if prob.pinv is None:
        return [r]
    tr = r @ prob.pinv  # the preconditioner (B(z_0) + λI)⁻¹ is symmetric
    return [tr] if prob.precond == "start" else [r, tr]


def lobpcg(prob: _Problem, jv, jt, x: Array, iters: int) -> tuple[Array, Array]:
    """Top-``p`` generalised eigenpairs of the pencil, warm-started from the rows of ``x [p, d]``.

    Costs ``p`` forward products, then per iteration ``p`` transpose and ``p`` forward products.

    Args:
      prob: the pencil's weights, ridge and preconditioner.
      jv: ``u [d] -> J u [m]``.
      jt: ``w [m] -> Jᵀ w [d]``.
      x: ``[p, d]`` start block (rows).
      iters: LOBPCG iterations (static).

    Returns:
      ``theta [p]`` descending Rayleigh quotients and ``x [p, d]`` Ritz vectors (rows).

    >>> jac = jnp.diag(jnp.array([1.0, 2.0, 3.0]))  # one varied feature, no fixed one
    >>> prob = _Problem((3,), 1, jnp.ones(1), jnp.asarray(1.0), None)
    >>> theta, x = lobpcg(prob, lambda u: jac @ u, lambda w: jac.T @ w, jnp.ones((1, 3)), 3)
    >>> round(float(theta[0]), 4)
    9.0
    """
    p = x.shape[0]
    jx = jax.vmap(jv)(x)
    theta, coef = _rayleigh_ritz(prob, x, jx)
    ok = jnp.all(jnp.isfinite(coef)) & jnp.all(jnp.isfinite(theta))
    x, jx = jnp.where(ok, coef @ x, x), jnp.where(ok, coef @ jx, jx)
    theta = jnp.where(ok, theta, 0.0)
    zeros_x, zeros_j = jnp.zeros_like(x), jnp.zeros_like(jx)

    def guarded(i, state):
        # An iteration whose Rayleigh-Ritz step is not finite (float32 rounding on a nearly
        # dependent basis) is skipped: the block and its Ritz values stay, the search directions
        # restart from zero.
        new = body(i, state)
        ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(t)) for t in new]))
        x, jx, _, _, theta = state
        fallback = (x, jx, jnp.zeros_like(x), jnp.zeros_like(jx), theta)
        return tuple(jnp.where(ok, a, b) for a, b in zip(new, fallback, strict=True))

    def body(_, state):
        x, jx, pdir, jp, theta = state
        blocks = []
        for r in _residuals(prob, jt, x, jx, theta):
            tiny = jnp.finfo(r.dtype).tiny
            r = r / jnp.maximum(jnp.linalg.norm(r, axis=1, keepdims=True), tiny)
            blocks.append(jnp.where(jnp.isfinite(r), r, 0.0))
        r = jnp.concatenate(blocks)
        jr = jax.vmap(jv)(r)
        s = jnp.concatenate([x, r, pdir])
        js = jnp.concatenate([jx, jr, jp])
        th, coef = _rayleigh_ritz(prob, s, js)
        c = coef[:p]
        new_p, new_jp = c[:, p:] @ s[p:], c[:, p:] @ js[p:]
        return c @ s, c @ js, new_p, new_jp, th[:p]

    state = (x, jx, zeros_x, zeros_j, theta)
    if iters <= UNROLL:  # a few tracking iterations: unrolled (no inner while loop)
        for i in range(iters):
            state = guarded(i, state)
    else:
        state = jax.lax.fori_loop(0, iters, guarded, state)
    x, _, _, _, theta = state
    return theta, x


# ---------------------------------------------------------------------------------------------
# Start latent and tracking steps


def _start_solve(
    a: Array, b: Array, ridge: float, x0: Array, iters: int, precond: str
) -> tuple[Array, Array, Array, Array]:
    """The start latent's top-``p`` pairs from its exact Grams, without a ``[d, d]`` eigen-solve.

    ``λ`` is the dense solver's (``ridge`` raised to ``10·d·eps·max diag B``); one Cholesky factor
    ``L Lᵀ = B + λI`` gives the preconditioner ``(B + λI)⁻¹`` and the products ``Lᵀu`` that keep
    the projected ``B + λI`` a sum of squares, with which LOBPCG on the explicit pencil converges in
    a few iterations (a dense ``eigh`` of ``[d, d]`` costs seconds at d = 512 on a CPU). A
    non-finite factor drops ``B`` (``L = √λ I``: a maxc start, as the dense solver falls back).

    Returns:
      ``values [p]``, unit ``vectors [p, d]`` (rows), the preconditioner ``[d, d]`` and ``λ``.
    """
    d = a.shape[-1]
    a = rayleigh.symmetrize(a)
    eye = jnp.eye(d, dtype=a.dtype)
    lam = rayleigh._safe_ridge(b, ridge)
    chol = jnp.linalg.cholesky(b + lam * eye)
    # Fallback (as the dense solver's maxc fallback): a non-finite factor drops B at the start.
    ok = jnp.all(jnp.isfinite(chol))
    chol = jnp.where(ok, chol, jnp.sqrt(lam) * eye)
    pinv = rayleigh.symmetrize(cho_solve((chol, True), eye))
    prob = _DenseProblem(a, chol, pinv, "both" if precond == "none" else precond)
    values, x = lobpcg(prob, prob.products, None, x0, iters)
    return values, rayleigh.fix_signs(rayleigh.unit_rows(x)), pinv, lam


class Context(NamedTuple):
    """What tracking needs along the paths of one start latent (built by :func:`start`).

    Attributes:
      feats: the features, varied first (fixed ones sketched if asked; none for ``maxc``).
      n_vary: number of varied features.
      sizes: static feature sizes.
      scales: ``[K]`` weights over the Frobenius norms at the start.
      lam: ridge ``λ``.
      pinv: ``[d, d]`` preconditioner ``(B(z_0) + λI)⁻¹``, or None.
    """

    feats: tuple
    n_vary: int
    sizes: tuple
    scales: Array
    lam: Array
    pinv: Array | None
    precond: str = "both"

    def problem(self) -> _Problem:
        return _Problem(self.sizes, self.n_vary, self.scales, self.lam, self.pinv, self.precond)


def start(generator, vary, fix, cfg, z: Array, key: Array) -> tuple[Array, Array, Context]:
    """Cold start at one latent: the top-``p`` system and the tracking context of its paths.

    Args:
      generator, vary, fix: as in :func:`reds_jax.core.traverse`.
      cfg: the traversal config (``cfg.mf`` holds the :class:`MFConfig`).
      z: latent ``[d]``.
      key: PRNG key (``cold_start="iterative"``: start block and probes).

    Returns:
      ``(values [p], vectors [p, d], context)`` with ``p = min(k + guard, d)``: values descending,
      unit directions (rows) and the :class:`Context` for :func:`track`.
    """
    mf = cfg.mf
    d = z.shape[0]
    p = min(cfg.k + mf.guard, d)
    fixed = _features(fix, generator, z, mf) if cfg.method == "reds" else ()
    feats = tuple(vary) + fixed
    n_vary = len(vary)
    sizes = tuple(output_size(lambda v, f=f: f(generator(v)), z) for f in feats)
    vw = jnp.asarray(cfg.vary_weights, z.dtype)
    weights = jnp.concatenate([vw, jnp.asarray(cfg.weights, z.dtype)]) if fixed else vw
    if mf.cold_start == "dense":
        grams = feature_grams(generator, feats, z, mode=cfg.mode, chunk_size=cfg.chunk_size)
        norms = jax.vmap(jnp.linalg.norm)(grams)
        norms = jnp.where((norms > 0) & cfg.normalize, norms, 1.0)
        scales = weights / norms
        scaled = grams * scales[:, None, None]
        a = jnp.sum(scaled[:n_vary], axis=0)
        if fixed:
            b = rayleigh.symmetrize(jnp.sum(scaled[n_vary:], axis=0))
            # Start block: the unit vectors of the largest diag(A) / diag(B + λI) ratios.
            ratio = jnp.diagonal(a) / (jnp.diagonal(b) + jnp.max(jnp.diagonal(b)) * 1e-3 + 1e-30)
            x0 = jnp.eye(d, dtype=z.dtype)[jnp.argsort(-ratio)[:p]]
            values, vectors, pinv, lam = _start_solve(
                a, b, cfg.ridge, x0, mf.cold_iters, mf.precond
            )
            pinv = None if mf.precond == "none" else pinv
        else:
            values, vectors = rayleigh.maxc_system(a)
            lam, pinv = jnp.asarray(1.0, z.dtype), None
        return values[:p], vectors[:p], Context(feats, n_vary, sizes, scales, lam, pinv, mf.precond)
    # Iterative: Hutchinson norms, seeded block, unpreconditioned LOBPCG.
    jv, jt = _linearize(generator, feats, z)
    k_block, k_probe = jax.random.split(key)
    jg = jax.vmap(jv)(jax.random.normal(k_probe, (mf.probes, d), z.dtype))  # [s, m]
    seg = jnp.concatenate([jnp.full((s,), i) for i, s in enumerate(sizes)])  # [m]
    masks = (seg[None, :] == jnp.arange(len(feats))[:, None]).astype(z.dtype)  # [K, m]
    ag = jax.vmap(lambda mk: jax.vmap(jt)(jg * mk[None, :]))(masks)  # [K, s, d]: A_k g
    est = jnp.sqrt(jnp.mean(jnp.sum(ag**2, axis=-1), axis=-1))  # ‖A_k‖_F estimates [K]
    norms = jnp.where((est > 0) & cfg.normalize, est, 1.0)
    scales = weights / norms
    if fixed:
        b_norm = jnp.sum(scales[n_vary:] * est[n_vary:])  # >= ‖B‖_F (triangle inequality)
        floor = 10.0 * d * jnp.finfo(z.dtype).eps * b_norm
        lam = jnp.maximum(jnp.asarray(cfg.ridge, z.dtype), floor)
    else:
        lam = jnp.asarray(1.0, z.dtype)
    ctx = Context(feats, n_vary, sizes, scales, lam, None)
    x0 = jax.random.normal(k_block, (p, d), z.dtype)
    values, x = lobpcg(ctx.problem(), jv, jt, x0, mf.cold_iters)
    return values, rayleigh.fix_signs(rayleigh.unit_rows(x)), ctx


def track(generator, ctx: Context, iters: int, z: Array, x: Array) -> Array:
    """One tracking solve at ``z``, warm-started from the block ``x [p, d]``.

    Returns:
      ``[p, d]`` unit Ritz vectors, best first (``x`` unchanged if the solve is not finite).
    """
    jv, jt = _linearize(generator, ctx.feats, z)
    _, new = lobpcg(ctx.problem(), jv, jt, x, iters)
    new = rayleigh.unit_rows(new)
    return jnp.where(jnp.all(jnp.isfinite(new)), new, x)


def local_paths(generator, cfg, ctx: Context, steps: int, size: Array, z0, v0, x0) -> Array:
    """``local`` paths from ``z0 [d]`` along the rows of ``v0 [P, d]``: latents ``[P, T+1, d]``.

    Each path carries its block (``x0 [p, d]`` at the start) through the ``lax.scan``; the step rule
    is the dense solver's (project onto the top-``k`` span, renormalise, keep the sign; keep the
    previous direction if the projection vanishes).
    """
    k = cfg.k

    def one_path(v):
        def step(carry, _):
            z, v, x = carry
            x_new = track(generator, ctx, cfg.mf.iters, z, x)
            p = project_rows(v, x_new[:k])
            norm = jnp.linalg.norm(p)
            p = p / jnp.where(norm > 0, norm, jnp.ones_like(norm))
            p = jnp.where(jnp.dot(p, v) < 0, -p, p)
            ok = (norm > 1e-8) & jnp.all(jnp.isfinite(p))
            v_new = jnp.where(ok, p, v)
            z_new = z + size * v_new
            return (z_new, v_new, x_new), z_new

        z1 = z0 + size * v
        _, zs = jax.lax.scan(step, (z1, v, x0), None, length=steps - 1)
        return jnp.concatenate([z0[None], z1[None], zs], axis=0)

    return jax.vmap(one_path)(v0)
