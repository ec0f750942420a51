"""Eigen-solves behind REDs and its baselines, on Gram matrices of one latent.

All solvers take symmetric positive semi-definite Grams and return the *full* sorted system
``(values [d], vectors [d, d])`` (rows are unit-norm directions, best first) so callers can take the
top ``k`` or build a projection span; :func:`solve_rayleigh` is the public top-``k`` form.

Forms:
  * :func:`rayleigh_system` — REDs, Rayleigh form: maximise ``vᵀAv / vᵀ(B + ridge·I)v`` by Cholesky
    whitening (``B + ridge·I = L Lᵀ``, ``C = L⁻¹ A L⁻ᵀ``, ``V = L⁻ᵀ U``).
  * :func:`nullspace_system` — REDs, the reference code's null-space form (``beta_fix``/``beta_vary``).
  * :func:`maxc_system`, :func:`minf_system`, :func:`random_system` — the reference's baselines
    (``minf`` and ``random`` also in the reference's own definitions: :func:`minf_union_system`,
    ``random_system(dist="uniform")``); :func:`beta_span` is the reference's per-step span.

Numerical fallbacks (documented, tested): the ridge is raised to at least ``10·d·eps·max(diag B)``
so the Cholesky factor exists in the working precision; a solve that still produces non-finite
numbers falls back to the eigenvectors of ``A`` alone (``maxc``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from reds_jax.core.linalg import fix_signs, safe_ridge, symmetrize, unit_rows

Array = jax.Array


def top_eigh(a: Array) -> tuple[Array, Array]:
    """Eigen-decomposition of a symmetric matrix, largest first.

    Args:
      a: ``[d, d]`` (symmetrised before ``eigh``).

    Returns:
      ``values [d]`` descending and ``vectors [d, d]`` (row ``i`` is the ``i``-th eigenvector).
    """
    values, vectors = jnp.linalg.eigh(symmetrize(a))
    return values[::-1], fix_signs(vectors[:, ::-1].T)


def normalize_gram(a: Array) -> Array:
    """Divide a Gram by its Frobenius norm (a zero Gram stays zero)."""
    norm = jnp.linalg.norm(a)
    return a / jnp.where(norm > 0, norm, jnp.ones_like(norm))


def rayleigh_solve(a: Array, b: Array, *, ridge: float = 1e-6) -> tuple[Array, Array, Array, Array]:
    """:func:`rayleigh_system` with what happened: ``(values [d], vectors [d, d], lam, fell_back)``.

    ``lam`` is the ridge used (see :func:`~reds_jax.core.linalg.safe_ridge`); ``fell_back`` (bool)
    is true when the whitened solve was not finite and the ``maxc`` eigenvectors were returned.
    """
    a, b = symmetrize(a), symmetrize(b)
    d = a.shape[-1]
    eye = jnp.eye(d, dtype=a.dtype)
    lam = safe_ridge(b, ridge)
    chol = jnp.linalg.cholesky(b + lam * eye)
    half = solve_triangular(chol, a, lower=True)  # L⁻¹ A
    whitened = solve_triangular(chol, half.T, lower=True)  # L⁻¹ A L⁻ᵀ
    mu, u = jnp.linalg.eigh(symmetrize(whitened))
    v = solve_triangular(chol, u[:, ::-1], lower=True, trans=1)  # L⁻ᵀ U
    vectors = fix_signs(unit_rows(v.T))
    values = mu[::-1]
    ok = jnp.all(jnp.isfinite(vectors)) & jnp.all(jnp.isfinite(values))
    # The fallback's input depends on `ok`, so its eigh runs after the Cholesky/eigh above rather
    # than concurrently: two batched LAPACK calls at once can deadlock jaxlib's CPU thread pool
    # (see reds_jax.core.linalg).
    fallback_input = jnp.where(ok | ~jnp.isfinite(a), jnp.zeros_like(a), a)
    fb_values, fb_vectors = top_eigh(fallback_input)
    return jnp.where(ok, values, fb_values), jnp.where(ok, vectors, fb_vectors), lam, ~ok


def rayleigh_system(a: Array, b: Array, *, ridge: float = 1e-6) -> tuple[Array, Array]:
    """All generalised eigenpairs of ``A v = μ (B + ridge·I) v``, largest ``μ`` first.

    Args:
      a: ``[d, d]`` symmetric PSD (what should change).
      b: ``[d, d]`` symmetric PSD (what should stay fixed).
      ridge: ``λ > 0`` added to ``B``'s diagonal (raised to the precision floor if smaller).

    Returns:
      ``values [d]`` (Rayleigh quotients, descending) and ``vectors [d, d]`` (unit rows).

    >>> values, _ = rayleigh_system(jnp.diag(jnp.array([1.0, 4.0])), jnp.eye(2), ridge=0.0)
    >>> [round(v, 4) for v in values.tolist()]
    [4.0, 1.0]
    """
    values, vectors, _, _ = rayleigh_solve(a, b, ridge=ridge)
    return values, vectors


def solve_rayleigh(a: Array, b: Array, *, k: int, ridge: float = 1e-6) -> tuple[Array, Array]:
    """Top-``k`` maximisers of the Rayleigh quotient ``vᵀAv / vᵀ(B + ridge·I)v``.

    Closed form by Cholesky whitening (jit-able; ``jax.scipy.linalg.eigh`` has no usable ``b``).

    Args:
      a: ``[d, d]`` symmetric PSD.
      b: ``[d, d]`` symmetric PSD.
      k: number of directions, ``1 <= k <= d``.
      ridge: ``λ > 0`` added to ``B``.

    Returns:
      ``values [k]`` descending generalised eigenvalues and ``vectors [k, d]`` unit rows.

    >>> import jax.numpy as jnp
    >>> vals, vecs = solve_rayleigh(jnp.diag(jnp.array([1.0, 4.0])), jnp.eye(2), k=1, ridge=0.0)
    >>> round(float(vals[0]), 3), vecs[0].tolist()
    (4.0, [0.0, 1.0])
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or b.shape != a.shape:
        raise ValueError(
            f"a and b must be square [d, d] matrices of the same shape; got {a.shape} and {b.shape}."
        )
    if not isinstance(k, int) or not 1 <= k <= a.shape[0]:
        raise ValueError(f"k must be an int in [1, d={a.shape[0]}]; got {k!r}.")
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0; got {ridge!r}.")
    values, vectors = rayleigh_system(a, b, ridge=ridge)
    return values[:k], vectors[:k]


def maxc_system(a_vary: Array) -> tuple[Array, Array]:
    """``maxc``: eigenvectors of the varied Gram alone, largest first."""
    return top_eigh(a_vary)


def explained_rank(values: Array, beta: float | Array) -> Array:
    """Smallest ``r >= 1`` whose leading squared eigenvalues explain a fraction ``beta``.

    Uses the reference code's rule ``r = min(n, #{cumsum(e²/Σe²) <= beta} + 1)``.

    Args:
      values: ``[n]`` eigenvalues, descending.
      beta: fraction in ``(0, 1]``.

    Returns:
      Scalar int array ``r``.
    """
    sq = values**2
    total = jnp.sum(sq)
    frac = jnp.cumsum(sq) / jnp.where(total > 0, total, jnp.ones_like(total))
    return jnp.minimum(values.shape[0], jnp.sum(frac <= beta) + 1)


def fixed_space(a_fix: Array, beta_fix: Array) -> tuple[Array, Array]:
    """Orthonormal basis of the column space kept by ``beta_fix`` for each fixed Gram.

    Args:
      a_fix: ``[K, d, d]`` fixed Grams.
      beta_fix: ``[K]`` explained fractions.

    Returns:
      ``basis [d, d]`` (rows, orthonormal) and ``in_fixed [d]`` (1.0 for rows spanning the fixed
      space, 0.0 for the approximate null space), fixed-space rows first.
    """
    d = a_fix.shape[-1]

    def projector(a, beta):
        values, vectors = top_eigh(a)
        keep = (jnp.arange(d) < explained_rank(values, beta)).astype(a.dtype)
        return (vectors.T * keep[None, :]) @ vectors

    total = jnp.sum(jax.vmap(projector)(a_fix, beta_fix), axis=0)
    values, basis = top_eigh(total)
    # Rank decision as numpy/scipy `orth`: singular values of the stacked basis are sqrt(values).
    sing = jnp.sqrt(jnp.clip(values, 0.0, None))
    tol = jnp.finfo(a_fix.dtype).eps * d * a_fix.shape[0] * jnp.max(sing)
    return basis, (sing > jnp.maximum(tol, 1e-6)).astype(a_fix.dtype)


def _rank_in_null(a: Array, basis: Array, in_fixed: Array) -> tuple[Array, Array]:
    """Eigen-system of ``a`` restricted to the null space of ``basis`` rows marked ``in_fixed``.

    Returns ``values [d]`` (descending; null-space rows first, then fixed-space rows with
    penalised values, least-fixed first) and unit ``vectors [d, d]``.
    """
    null = 1.0 - in_fixed
    projected = basis @ symmetrize(a) @ basis.T
    projected = projected * null[:, None] * null[None, :]
    # Fixed-space coordinates get values below every null-space eigenvalue so they rank after
    # them; basis rows are most-fixed first, so later rows get the smaller penalty.
    d = a.shape[-1]
    scale = 1.0 + jnp.linalg.norm(a)
    penalty = jnp.diag(-in_fixed * (1.0 + d - jnp.arange(d, dtype=a.dtype)) * scale)
    values, u = top_eigh(projected + penalty)
    return values, fix_signs(unit_rows(u @ basis))


def nullspace_system(
    a_vary: Array, a_fix: Array, *, beta_fix: Array, beta_vary: float | None = None
) -> tuple[Array, Array, Array]:
    """The reference code's REDs: leading varied directions inside the fixed features' null space.

    Each fixed Gram keeps the eigenvectors explaining ``beta_fix`` of its squared spectrum; their
    span is the fixed space and its orthogonal complement ``N`` the approximate null space. The
    varied Gram projected into ``N`` gives the directions. Fallback when ``N`` has fewer than ``d``
    dimensions than asked: remaining rows are fixed-space directions, least-fixed first, with value 0.

    Args:
      a_vary: ``[d, d]`` varied Gram.
      a_fix: ``[K, d, d]`` fixed Grams (``K >= 1``).
      beta_fix: ``[K]`` fractions in ``(0, 1]``.
      beta_vary: optional fraction; rows past the rank it selects are marked out of the span.

    Returns:
      ``values [d]``, ``vectors [d, d]`` and ``span [d]`` (1.0 for rows inside the traversal span:
      all rows inside ``N``, or the first ``r(beta_vary)`` of them — the reference's ``beta_c``
      rank of ``Nᵀ A_vary N``).
    """
    basis, in_fixed = fixed_space(a_fix, beta_fix)
    values, vectors = _rank_in_null(a_vary, basis, in_fixed)
    values = jnp.clip(values, 0.0, None)
    return values, vectors, beta_span(values, 1.0 - in_fixed, beta_vary)


def beta_span(values: Array, valid: Array, beta: float | None) -> Array:
    """Span mask of a sorted system: its first ``sum(valid)`` rows, cut to the ``beta`` rank.

    The reference code's per-step span: the leading directions explaining a fraction ``beta`` of
    the squared spectrum (:func:`explained_rank`), e.g. ``beta_c`` for ``maxc`` and REDs paths.

    Args:
      values: ``[d]`` eigenvalues, descending.
      valid: ``[d]`` 0/1, rows that may be used (valid rows come first).
      beta: fraction in ``(0, 1]``, or None for every valid row.

    Returns:
      ``[d]`` 0/1 mask.

    >>> import jax.numpy as jnp
    >>> beta_span(jnp.array([4.0, 3.0, 0.1]), jnp.ones(3), 0.9).tolist()
    [1.0, 1.0, 0.0]
    """
    idx = jnp.arange(values.shape[0])
    span = (idx.astype(values.dtype) < jnp.sum(valid)).astype(values.dtype)
    if beta is not None:
        span = span * (idx < explained_rank(values, beta)).astype(values.dtype)
    return span


MINF_MODES = ("sum", "union")


def minf_system(a_fix: Array, weights: Array) -> tuple[Array, Array]:
    """``minf`` (reds_jax's default, ``minf_mode="sum"``): the weighted fixed Gram's null space.

    Eigenvectors of ``S = Σ w_k A_k`` with the smallest eigenvalues first: all of ``R^d`` ranked
    by the *weighted total* fixed change, with no threshold. Values are the negated eigenvalues
    (so larger is better, like the other solvers). For the reference code's definition see
    :func:`minf_union_system`; the two agree for one fixed feature (same order inside the kept
    null space).

    Args:
      a_fix: ``[K, d, d]``.
      weights: ``[K]``.

    Returns:
      ``values [d]`` and ``vectors [d, d]``.
    """
    total = jnp.einsum("k,kij->ij", weights, a_fix)
    values, vectors = jnp.linalg.eigh(symmetrize(total))
    return -values, fix_signs(vectors.T)


def minf_union_system(
    a_fix: Array, weights: Array, *, beta_fix: Array
) -> tuple[Array, Array, Array]:
    """``minf`` as the reference code defines it (``minf_mode="union"``).

    Each fixed Gram keeps the eigenvectors explaining ``beta_fix`` of its squared spectrum; the
    null space is the orthogonal complement of the *union* of those kept spaces (the reference
    orthonormalises the stacked bases). It is the span of a local path. Inside it the rows are
    ordered by ``S = Σ w_k A_k``, smallest first (the reference's basis of it is arbitrary), then
    the fixed-space rows follow outside the span. Weights only order; they do not move the space.

    Args:
      a_fix: ``[K, d, d]``.
      weights: ``[K]``.
      beta_fix: ``[K]`` fractions in ``(0, 1]``.

    Returns:
      ``values [d]`` (negated eigenvalues of ``S`` inside the null space), ``vectors [d, d]`` and
      ``span [d]`` (1.0 for the null-space rows).

    >>> import jax.numpy as jnp
    >>> a = jnp.stack([jnp.diag(jnp.array([1.0, 0.0, 0.0])), jnp.diag(jnp.array([0.0, 1.0, 0.0]))])
    >>> _, vecs, span = minf_union_system(a, jnp.ones(2), beta_fix=jnp.full(2, 0.99))
    >>> vecs[0].tolist(), span.tolist()
    ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    """
    total = jnp.einsum("k,kij->ij", weights, a_fix)
    basis, in_fixed = fixed_space(a_fix, beta_fix)
    values, vectors = _rank_in_null(-total, basis, in_fixed)
    return values, vectors, beta_span(values, 1.0 - in_fixed, None)


RANDOM_DISTS = ("orthogonal", "uniform")


def random_system(key: Array, d: int, dtype, dist: str = "orthogonal") -> tuple[Array, Array]:
    """``random``: ``d`` random unit directions.

    Args:
      key: PRNG key.
      d: latent size.
      dtype: floating dtype.
      dist: ``"orthogonal"`` (default: uniform on the orthogonal group, so the ``k`` directions
        of one start are distinct) or ``"uniform"`` (the reference code's ``rand``: entries
        uniform in ``[-0.5, 0.5)``, each direction rescaled to unit length; not orthogonal).

    Returns:
      ``values [d]`` (zeros) and ``vectors [d, d]``.

    >>> import jax
    >>> _, v = random_system(jax.random.key(0), 3, float, dist="uniform")
    >>> [round(float(x), 6) for x in (v**2).sum(axis=1)]
    [1.0, 1.0, 1.0]
    """
    if dist not in RANDOM_DISTS:
        raise ValueError(f"random_dist={dist!r} is not a distribution; pass one of {RANDOM_DISTS}.")
    if dist == "uniform":
        raw = jax.random.uniform(key, (d, d), dtype, minval=-0.5, maxval=0.5)
        return jnp.zeros((d,), dtype), unit_rows(raw)
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, d), dtype))
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    return jnp.zeros((d,), dtype), q.T
