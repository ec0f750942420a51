"""Small shared linear algebra of the core: symmetrize, unit rows, sign fixing, the safe ridge, one
projection, and one small-eigh dispatch.

Why plain ``jnp`` ops for the small matrices on a CPU: jaxlib's batched LAPACK kernels (``eigh``,
``cholesky``, ...) split their batch over XLA's intra-op thread pool and wait for it from inside a
pool thread; two such calls running at once (e.g. two vmapped eigen-solves inside one jitted step)
deadlocked a 2-thread pool: the process hung at 0 % CPU, never returning (seen with jaxlib 0.10 on a
2-core machine; commits "Matrix-free: no LAPACK in the tracking loop" and "rayleigh_system: run the
fallback eigh after the main solve"). :func:`small_eigh` therefore runs parallel Jacobi sweeps on
the CPU backend and ``jnp.linalg.eigh`` elsewhere (GPU/TPU: no such pool); :func:`cholesky_inverse`
is an unrolled Cholesky; :func:`project` is a two-pass Gram-Schmidt in a ``lax.scan``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def symmetrize(a: Array) -> Array:
    """``(A + Aᵀ) / 2`` over the last two axes.

    >>> symmetrize(jnp.array([[0.0, 2.0], [0.0, 0.0]])).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def unit_rows(vectors: Array) -> Array:
    """Rows rescaled to unit length (zero rows stay zero).

    >>> unit_rows(jnp.array([[0.0, 2.0], [0.0, 0.0]])).tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    norm = jnp.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / jnp.where(norm > 0, norm, jnp.ones_like(norm))


def fix_signs(vectors: Array) -> Array:
    """Flip each row so that its largest-magnitude entry is positive (deterministic signs).

    Args:
      vectors: ``[n, d]`` rows.

    Returns:
      ``[n, d]`` rows with deterministic signs.

    >>> fix_signs(jnp.array([[1.0, -2.0]])).tolist()
    [[-1.0, 2.0]]
    """
    idx = jnp.argmax(jnp.abs(vectors), axis=-1)
    pivot = jnp.take_along_axis(vectors, idx[:, None], axis=-1)
    return vectors * jnp.where(pivot < 0, -1.0, 1.0).astype(vectors.dtype)


def safe_ridge(b: Array, ridge: float | Array) -> Array:
    """The ridge ``λ`` actually used with ``B``: ``ridge`` raised to ``10·d·eps·max|diag B|``.

    Below that floor the Cholesky factor of ``B + λI`` need not exist in the working precision.
    Callers report ``λ > ridge`` as ``ridge_raised`` in the diagnostics.

    Args:
      b: ``[d, d]`` symmetric PSD.
      ridge: requested ``λ >= 0``.

    Returns:
      Scalar ``λ`` (dtype of ``b``).

    >>> float(safe_ridge(jnp.eye(2), 0.5))
    0.5
    """
    floor = ridge_floor(jnp.max(jnp.abs(jnp.diagonal(b))), b.shape[-1])
    return jnp.maximum(jnp.asarray(ridge, b.dtype), floor)


def ridge_floor(diag_max: Array, d: int) -> Array:
    """The precision floor of the ridge, ``10·d·eps·max diag(B)`` (``eps`` of ``diag_max``'s
    dtype), from the largest diagonal entry of ``B`` (or a lower bound of it).

    >>> float(ridge_floor(jnp.asarray(1.0, jnp.float32), 2)) == 20 * float(jnp.finfo(jnp.float32).eps)
    True
    """
    return 10.0 * d * jnp.finfo(diag_max.dtype).eps * diag_max


def project(v: Array, rows: Array, span: Array | None = None) -> Array:
    """Orthogonal projection of ``v [d]`` onto the span of the rows of ``rows [s, d]``.

    The rows need not be orthogonal (REDs vectors are ``B``-orthogonal). They are orthonormalised
    by classical Gram-Schmidt applied twice, in a ``lax.scan`` (no LAPACK; any ``s``); numerically
    dependent rows and rows with ``span = 0`` are dropped.

    Args:
      v: ``[d]``.
      rows: ``[s, d]``.
      span: optional ``[s]`` 0/1 mask of the rows to use (default: all).

    Returns:
      ``[d]`` projection.

    >>> project(jnp.array([1.0, 2.0]), jnp.array([[3.0, 0.0]])).tolist()
    [1.0, 0.0]
    """
    if span is not None:
        rows = rows * span[:, None]
    eps, tiny = jnp.finfo(v.dtype).eps, jnp.finfo(v.dtype).tiny

    def add(basis, i):
        row = rows[i]
        u = row - basis.T @ (basis @ row)
        u = u - basis.T @ (basis @ u)
        norm = jnp.linalg.norm(u)
        keep = norm > 1e3 * eps * jnp.linalg.norm(row) + tiny
        return basis.at[i].set(jnp.where(keep, u / jnp.maximum(norm, tiny), 0.0)), None

    basis, _ = jax.lax.scan(add, jnp.zeros_like(rows), jnp.arange(rows.shape[0]))
    return basis.T @ (basis @ v)


def _round_robin(q: int) -> np.ndarray:
    """``[q-1, 2, q/2]``: disjoint index pairs of each round of a round-robin tournament (q even)."""
    players = list(range(q))
    rounds = []
    for _ in range(q - 1):
        rounds.append([players[: q // 2], players[q // 2 :][::-1]])
        players = [players[0], players[-1], *players[1:-1]]
    return np.asarray(rounds, dtype=np.int32)


def jacobi_eigh(a: Array, max_sweeps: int = 15) -> tuple[Array, Array]:
    """Eigen-decomposition of a small symmetric matrix by parallel (round-robin) Jacobi sweeps.

    Plain ``jnp`` ops (no LAPACK); see the module docstring for why.

    Args:
      a: ``[q, q]`` symmetric.
      max_sweeps: sweep limit (stops earlier once the off-diagonal part is at rounding level).

    Returns:
      ``values [q]`` descending and ``vectors [q, q]`` (column ``i`` belongs to ``values[i]``).

    >>> values, vectors = jacobi_eigh(jnp.diag(jnp.array([1.0, 3.0])))
    >>> values.tolist(), abs(vectors[1, 0]).tolist()
    ([3.0, 1.0], 1.0)
    """
    q0 = a.shape[0]
    a = symmetrize(a)
    if q0 % 2:  # pad to even size with an isolated entry below the spectrum, dropped at the end
        low = -(1.0 + 2.0 * jnp.sum(jnp.abs(a)))
        a = jnp.pad(a, ((0, 1), (0, 1))).at[q0, q0].set(low)
    q = a.shape[0]
    pairs = jnp.asarray(_round_robin(q))
    eye = jnp.eye(q, dtype=a.dtype)
    eps = jnp.finfo(a.dtype).eps

    def rotate(state, pair):
        a, v = state
        i, j = pair[0], pair[1]
        aii, ajj, aij = a[i, i], a[j, j], a[i, j]
        small = jnp.abs(aij) <= eps * eps * (jnp.abs(aii) + jnp.abs(ajj)) + jnp.finfo(a.dtype).tiny
        tau = (ajj - aii) / (2.0 * jnp.where(small, 1.0, aij))
        t = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
        t = jnp.where(small, 0.0, t)
        c = 1.0 / jnp.sqrt(1.0 + t * t)
        sn = t * c
        rot = eye.at[i, i].set(c).at[j, j].set(c).at[i, j].set(sn).at[j, i].set(-sn)
        return (rot.T @ a @ rot, v @ rot), None

    def off(a):
        return jnp.sum(jnp.square(a - jnp.diag(jnp.diagonal(a))))

    def cond(state):
        a, _, sweep = state
        return (sweep < max_sweeps) & (off(a) > (eps * eps) * jnp.sum(jnp.square(a)))

    def sweep(state):
        a, v, k = state
        (a, v), _ = jax.lax.scan(rotate, (a, v), pairs)
        return a, v, k + 1

    a, v, _ = jax.lax.while_loop(cond, sweep, (a, eye, jnp.asarray(0)))
    values = jnp.diagonal(a)
    order = jnp.argsort(-values)[:q0]
    return values[order], v[:q0, order]


def small_eigh(a: Array) -> tuple[Array, Array]:
    """Eigen-decomposition of a small symmetric ``[q, q]`` matrix, largest first.

    Dispatches at trace time on ``jax.default_backend()``: :func:`jacobi_eigh` on the CPU (the
    LAPACK thread-pool deadlock, see the module docstring), ``jnp.linalg.eigh`` elsewhere.

    Returns:
      ``values [q]`` descending and ``vectors [q, q]`` (column ``i`` belongs to ``values[i]``).

    >>> values, _ = small_eigh(jnp.diag(jnp.array([1.0, 3.0])))
    >>> values.tolist()
    [3.0, 1.0]
    """
    if jax.default_backend() == "cpu":
        return jacobi_eigh(a)
    values, vectors = jnp.linalg.eigh(symmetrize(a))
    return values[::-1], vectors[:, ::-1]


def cholesky_inverse(b: Array) -> Array:
    """``L⁻¹`` for the lower Cholesky factor ``L`` of a small SPD ``b [q, q]`` (unrolled).

    Pivots are floored relative to the largest diagonal entry: a numerically indefinite ``b``
    (rounding in float32) then gives entries of size ≤ 1/√(eps·max diag) instead of 1/√tiny,
    whose products overflow to inf and NaN downstream.

    >>> cholesky_inverse(jnp.array([[4.0]])).tolist()
    [[0.5]]
    """
    q = b.shape[0]
    finfo = jnp.finfo(b.dtype)
    floor = finfo.eps * jnp.max(jnp.abs(jnp.diagonal(b))) + finfo.tiny
    chol = jnp.zeros_like(b)
    for j in range(q):
        diag = jnp.sqrt(jnp.maximum(b[j, j] - jnp.sum(chol[j, :j] ** 2), floor))
        col = (b[j + 1 :, j] - chol[j + 1 :, :j] @ chol[j, :j]) / diag
        chol = chol.at[j, j].set(diag).at[j + 1 :, j].set(col)
    inv = jnp.zeros_like(b)
    eye = jnp.eye(q, dtype=b.dtype)
    for i in range(q):
        inv = inv.at[i].set((eye[i] - chol[i, :i] @ inv[:i]) / chol[i, i])
    return inv
