"""Small dense linear algebra in plain ``jnp`` ops (no LAPACK custom calls), for tiny matrices
inside jitted, vmapped loops: Jacobi eigen-decomposition, Cholesky inverse, projection.

Why: on a CPU, jaxlib's batched LAPACK kernels (``eigh``, ``cholesky``, ...) split their batch over
XLA's intra-op thread pool and wait for it from inside a pool thread; two such calls at once can
deadlock a 2-thread pool (seen with jaxlib 0.10 on a 2-core machine). These ``[q, q]`` versions
(q ≲ 16) are also cheap on accelerators.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _symmetrize(a: Array) -> Array:
    return 0.5 * (a + a.T)


def _round_robin(q: int) -> np.ndarray:
    """``[q-1, 2, q/2]``: disjoint index pairs of each round of a round-robin tournament (q even)."""
    players = list(range(q))
    rounds = []
    for _ in range(q - 1):
        rounds.append([players[: q // 2], players[q // 2 :][::-1]])
        players = [players[0], players[-1], *players[1:-1]]
    return np.asarray(rounds, dtype=np.int32)


def small_eigh(a: Array, max_sweeps: int = 15) -> tuple[Array, Array]:
    """Eigen-decomposition of a small symmetric matrix by parallel (round-robin) Jacobi sweeps.

    Args:
      a: ``[q, q]`` symmetric.
      max_sweeps: sweep limit (stops earlier once the off-diagonal part is at rounding level).

    Returns:
      ``values [q]`` descending and ``vectors [q, q]`` (column ``i`` belongs to ``values[i]``).

    >>> values, vectors = small_eigh(jnp.diag(jnp.array([1.0, 3.0])))
    >>> values.tolist(), abs(vectors[1, 0]).tolist()
    ([3.0, 1.0], 1.0)
    """
    q0 = a.shape[0]
    a = _symmetrize(a)
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


def cholesky_inverse(b: Array) -> Array:
    """``L⁻¹`` for the lower Cholesky factor ``L`` of a small SPD ``b [q, q]`` (unrolled).

    >>> cholesky_inverse(jnp.array([[4.0]])).tolist()
    [[0.5]]
    """
    q = b.shape[0]
    # Pivots are floored relative to the largest diagonal entry: a numerically indefinite ``b``
    # (rounding in float32) then gives entries of size ≤ 1/√(eps·max diag) instead of 1/√tiny,
    # whose products overflow to inf and NaN downstream.
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


def project_rows(v: Array, rows: Array) -> Array:
    """Orthogonal projection of ``v [d]`` onto the span of ``rows [k, d]`` (Gram-Schmidt, twice).

    >>> project_rows(jnp.array([1.0, 2.0]), jnp.array([[3.0, 0.0]])).tolist()
    [1.0, 0.0]
    """
    basis = []
    tiny = jnp.finfo(v.dtype).tiny
    for i in range(rows.shape[0]):
        u = rows[i]
        for _ in range(2):
            for b in basis:
                u = u - jnp.dot(b, u) * b
        norm = jnp.linalg.norm(u)
        keep = norm > 1e3 * jnp.finfo(v.dtype).eps * jnp.linalg.norm(rows[i]) + tiny
        basis.append(jnp.where(keep, u / jnp.maximum(norm, tiny), 0.0))
    return sum(jnp.dot(b, v) * b for b in basis)
