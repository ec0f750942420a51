"""Matrix-free tracking solver for REDs paths: Gram-vector products and warm-started block LOBPCG.

``traverse(..., solver="matrix_free")`` solves **the same Rayleigh form as the dense solver**,
``A_vary v = μ (B + λI) v`` with ``A_vary = Σ c_k J_kᵀJ_k`` (varied features) and
``B = Σ c_k J_kᵀJ_k`` (fixed features), ``c_k`` the feature weight over the Gram's Frobenius norm;
only how the top-``k`` eigenvectors are found differs:

* **Products, never Grams.** At each latent one ``jax.linearize`` of *all* features through the
  generator gives ``u ↦ J u`` (forward mode) and, by ``jax.linear_transpose``, ``w ↦ Jᵀ w``. The
  projected Grams of a block ``S [q, d]`` are ``(J S)(J S)ᵀ`` per feature (forward products only)
  and a residual ``A x − θ (B + λI) x`` is one transpose product of a weighted cotangent. Nothing
  ``[m, d]`` (a full Jacobian) is ever formed after the start.
* **Generalised block LOBPCG** (Knyazev 2001) on the pencil ``(A_vary, B + λI)``: Rayleigh-Ritz on
  ``[X, R, P]`` (Ritz block, preconditioned residuals, previous search directions), with an SVQB
  orthonormalisation (Stathopoulos & Wu 2002) that drops numerically dependent columns, so shapes stay
  static under ``jit``/``vmap``. The block has ``p = k + guard`` columns.
* **Tracking.** On a ``local`` path every path carries its ``[p, d]`` block through the
  ``lax.scan``; each step warm-starts from the previous step's block and runs ``iters`` LOBPCG
  iterations (``2p`` forward and ``p`` transpose products per iteration-1 step, ``+p`` of each per
  extra iteration), instead of ``d`` Jacobian columns.
* **Cold start** (option ``cold_start``):

  - ``"dense"`` (default): the start latent is solved exactly with dense Grams (``mode`` /
    ``chunk_size`` apply; one solve per start latent, shared by its ``2k`` paths). It gives the
    exact start directions and values, the exact Frobenius norms, and the preconditioner
    ``(B(z_0) + λI)⁻¹`` (a Cholesky factor) used at every later step of the path; it changes only
    the speed of convergence, never the answer. The norms ``‖A_k(z_0)‖_F`` are kept fixed along
    the path (the dense solver renormalises at every step). With one fixed and one varied feature
    this cannot change the directions except through the relative size of the ridge ``λ``.
  - ``"iterative"``: fully matrix-free, for latents too large for a ``[d, d]`` Gram. The start
    block is seeded-random and refined by ``cold_iters`` unpreconditioned iterations; each
    Frobenius norm is estimated by Hutchinson's estimator ``‖A‖_F² = E‖A g‖²``, ``g ~ N(0, I)``, with
    ``probes`` probes (relative standard deviation at most ``√(2/probes)``, reached for a rank-one
    Gram; smaller for flatter spectra). Scaling ``A_vary`` never changes the directions; scaling a
    fixed Gram changes its weight relative to the other fixed Grams and to ``λ``. The ridge floor
    uses the estimated ``‖B‖_F`` in place of ``max diag(B)``. Unpreconditioned tracking converges
    more slowly: raise ``iters``.
* **Sketch** (option ``sketch=m'``): each fixed feature with more than ``m'`` entries is replaced by
  a seeded Gaussian sketch ``S f / √m'`` (``S [m', m]``, seed ``sketch_seed``), so the problem
  solved is the Rayleigh form with ``B_s = Σ c_k J_kᵀSᵀS J_k / m'`` (``E[B_s] = B``). It shrinks
  the fixed tangents and the start Jacobian (reverse mode needs ``m'`` products); it is an
  approximation: a sketch with ``m' < d`` rows has a null space of its own and lets directions
  that the full feature would see through.

Non-finite entries of Gram-vector products are set to zero; a step whose solve is not finite keeps
the previous block (and, as in the dense solver, the previous direction). Methods: ``reds`` and
``maxc`` (``B = 0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from . import rayleigh
from .jacobians import feature_grams, output_size, sanitize

Array = jax.Array

SOLVERS = ("dense", "matrix_free")
METHODS = ("reds", "maxc")
COLD_STARTS = ("dense", "iterative")
PRECONDS = ("both", "start", "none")
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
      chol: ``[d, d]`` Cholesky factor of the preconditioner's inverse, or None.
    """

    def __init__(self, sizes, n_vary, scales, lam, chol, precond="both"):
        self.sizes, self.n_vary, self.lam, self.chol = sizes, n_vary, lam, chol
        self.precond = precond
        parts_a, parts_b = [], []
        for i, s in enumerate(sizes):
            c = jnp.full((s,), scales[i], scales.dtype)
            zero = jnp.zeros((s,), scales.dtype)
            parts_a.append(c if i < n_vary else zero)
            parts_b.append(zero if i < n_vary else c)
        self.wa, self.wb = jnp.concatenate(parts_a), jnp.concatenate(parts_b)


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
      ``theta [q]`` descending (dropped, dependent directions last with a very negative value) and
      ``coef [q, q]``: row ``i`` holds the coefficients of Ritz vector ``i`` in the rows of ``s``
      (Ritz vectors are ``(B + λI)``-orthonormal).
    """
    q = s.shape[0]
    dtype = s.dtype
    norms = jnp.linalg.norm(s, axis=1)
    inv = jnp.where(norms > 0, 1.0 / jnp.where(norms > 0, norms, 1.0), 0.0)
    s_n, js_n = s * inv[:, None], js * inv[:, None]
    # SVQB: orthonormalise the (unit) rows through the eigen-decomposition of their Gram.
    ev, u = jnp.linalg.eigh(rayleigh.symmetrize(s_n @ s_n.T))
    tol = jnp.maximum(jnp.max(ev), jnp.asarray(1.0, dtype)) * q * 100 * jnp.finfo(dtype).eps
    keep = ev > tol
    t = u * jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, ev, 1.0)), 0.0)[None, :]  # [q, q]
    jq = t.T @ js_n  # J of the orthonormal basis rows
    a = jq @ (jq * prob.wa[None, :]).T
    b = jq @ (jq * prob.wb[None, :]).T + prob.lam * jnp.diag(keep.astype(dtype))
    both = keep[:, None] & keep[None, :]
    a = jnp.where(both, a, 0.0)
    b = jnp.where(both, b, 0.0) + jnp.diag(jnp.where(keep, 0.0, 1.0))
    chol = jnp.linalg.cholesky(rayleigh.symmetrize(b))
    half = solve_triangular(chol, a, lower=True)
    whitened = rayleigh.symmetrize(solve_triangular(chol, half.T, lower=True))
    # Dropped (dependent) directions rank last: below every kept value (those are >= 0).
    low = 1.0 + 2.0 * jnp.linalg.norm(whitened)
    mu, y = jnp.linalg.eigh(whitened - jnp.diag(jnp.where(keep, 0.0, low)))
    c = solve_triangular(chol, y[:, ::-1], lower=True, trans=1)  # [q, q] columns
    coef = (t @ c).T * inv[None, :]
    return mu[::-1], coef


def _residuals(prob: _Problem, jt, x: Array, jx: Array, theta: Array) -> list[Array]:
    """Residual blocks for a block ``x [p, d]``: ``R = A x − θ (B + λI) x`` and/or ``T R``."""
    cot = jx * prob.wa[None, :] - theta[:, None] * (jx * prob.wb[None, :])
    r = jax.vmap(jt)(cot) - (theta * prob.lam)[:, None] * x
    if prob.chol is None:
        return [r]
    tr = cho_solve((prob.chol, True), r.T).T
    return [tr] if prob.precond == "start" else [r, tr]


def lobpcg(prob: _Problem, jv, jt, x: Array, iters: int) -> tuple[Array, Array]:
    """Top-``p`` generalised eigenpairs of the pencil, warm-started from the rows of ``x [p, d]``.

    Costs ``p`` forward products, then per iteration ``p`` transpose and ``p`` forward products.

    Returns:
      ``theta [p]`` descending Rayleigh quotients and ``x [p, d]`` Ritz vectors (rows).
    """
    p = x.shape[0]
    jx = jax.vmap(jv)(x)
    theta, coef = _rayleigh_ritz(prob, x, jx)
    x, jx = coef @ x, coef @ jx
    zeros_x, zeros_j = jnp.zeros_like(x), jnp.zeros_like(jx)

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

    x, _, _, _, theta = jax.lax.fori_loop(0, iters, body, (x, jx, zeros_x, zeros_j, theta))
    return theta, x


# ---------------------------------------------------------------------------------------------
# Start latent and tracking steps


class Context(NamedTuple):
    """What tracking needs along the paths of one start latent (built by :func:`start`).

    Attributes:
      feats: the features, varied first (fixed ones sketched if asked; none for ``maxc``).
      n_vary: number of varied features.
      sizes: static feature sizes.
      scales: ``[K]`` weights over the Frobenius norms at the start.
      lam: ridge ``λ``.
      chol: ``[d, d]`` Cholesky factor of ``B(z_0) + λI`` (the preconditioner), or None.
    """

    feats: tuple
    n_vary: int
    sizes: tuple
    scales: Array
    lam: Array
    chol: Array | None
    precond: str = "both"

    def problem(self) -> _Problem:
        return _Problem(self.sizes, self.n_vary, self.scales, self.lam, self.chol, self.precond)


def start(generator, vary, fix, cfg, z: Array, key: Array) -> tuple[Array, Array, Context]:
    """Cold start at one latent: the top-``p`` system and the tracking context of its paths.

    Args:
      generator, vary, fix: as in :func:`reds_jax.traverse`.
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
    eye = jnp.eye(d, dtype=z.dtype)
    if mf.cold_start == "dense":
        grams = feature_grams(generator, feats, z, mode=cfg.mode, chunk_size=cfg.chunk_size)
        norms = jax.vmap(jnp.linalg.norm)(grams)
        norms = jnp.where((norms > 0) & cfg.normalize, norms, 1.0)
        scales = weights / norms
        scaled = grams * scales[:, None, None]
        a = jnp.sum(scaled[:n_vary], axis=0)
        if fixed:
            b = rayleigh.symmetrize(jnp.sum(scaled[n_vary:], axis=0))
            values, vectors = rayleigh.rayleigh_system(a, b, ridge=cfg.ridge)
            lam = rayleigh._safe_ridge(b, cfg.ridge)
            chol = jnp.linalg.cholesky(b + lam * eye)
            chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, eye)
            chol = None if mf.precond == "none" else chol
        else:
            values, vectors = rayleigh.maxc_system(a)
            lam, chol = jnp.asarray(1.0, z.dtype), None
        return values[:p], vectors[:p], Context(feats, n_vary, sizes, scales, lam, chol, mf.precond)
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
            p = rayleigh.project_onto_span(v, x_new[:k], jnp.ones((k,), z.dtype))
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
