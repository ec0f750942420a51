"""Generalised block LOBPCG (Knyazev 2001) on a pencil given only by products.

The pencil ``(A, B)`` (``B`` SPD) is an object with the :class:`Pencil` methods: ``apply`` maps a
block of rows ``x [q, d]`` to their *tangents* ``[q, m]`` (e.g. ``J x`` for Grams ``JᵀWJ``), from
which ``project`` forms the projected ``qᵀAq``/``qᵀBq`` and ``quotients`` the diagonal
``xᵀAx``/``xᵀBx``; ``residual`` is ``A x − θ B x``; ``precondition`` gives the residual blocks of
the search space. :mod:`reds_jax.core.matrix_free` builds the two pencils a traversal uses.

Each iteration is a Rayleigh-Ritz step on ``[X, R (, T R), P]`` (Ritz block, residuals, optionally
preconditioned residuals, previous search directions) with an SVQB orthonormalisation (Stathopoulos
& Wu 2002) that drops numerically dependent columns, so shapes stay static under ``jit``/``vmap``.
The small dense algebra goes through :func:`reds_jax.core.linalg.small_eigh` and the unrolled
:func:`~reds_jax.core.linalg.cholesky_inverse` (no LAPACK on the CPU). An iteration whose
Rayleigh-Ritz step is not finite is skipped (block and Ritz values kept, search directions reset)
and counted in :attr:`Result.skipped`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

from reds_jax.core.linalg import cholesky_inverse, project, small_eigh, symmetrize

Array = jax.Array


class Pencil(Protocol):
    """What :func:`lobpcg` needs of a pencil ``(A, B)``."""

    def apply(self, x: Array) -> tuple[Array, Array]:
        """``x [q, d] -> (tangents [q, m], number of non-finite entries zeroed)``."""

    def project(self, q: Array, jq: Array) -> tuple[Array, Array]:
        """``(qᵀAq, qᵀBq)`` ``[q, q]`` for orthonormal rows ``q`` and their tangents ``jq``."""

    def quotients(self, x: Array, jx: Array) -> tuple[Array, Array]:
        """``(xᵢᵀAxᵢ, xᵢᵀBxᵢ)`` ``[q]`` per row."""

    def residual(self, x: Array, jx: Array, theta: Array) -> tuple[Array, Array]:
        """``(A x − θ B x [p, d], number of non-finite entries zeroed)``."""

    def precondition(self, r: Array) -> tuple[Array, ...]:
        """The residual blocks added to the search space (e.g. ``(R, T R)``)."""


class Result(NamedTuple):
    """A LOBPCG solve.

    Attributes:
      theta: ``[p]`` Ritz values, descending.
      x: ``[p, d]`` Ritz vectors (rows, ``B``-orthonormal).
      jx: ``[p, m]`` their tangents.
      skipped: int32, iterations skipped because their Rayleigh-Ritz step was not finite.
      residual: ``[p]`` relative residuals ``‖A x − θ B x‖·‖x‖ / (|θ|·xᵀBx)`` of the block that
        entered the last iteration (measured there; the returned block is at least as converged).
      nonfinite: int32, non-finite product entries set to zero.
      iterations: int32, iterations run (``iters``, or fewer when ``tol`` was reached).
    """

    theta: Array
    x: Array
    jx: Array
    skipped: Array
    residual: Array
    nonfinite: Array
    iterations: Array


def rayleigh_ritz(pencil: Pencil, s: Array, js: Array) -> tuple[Array, Array]:
    """Ritz pairs of the pencil on the row span of ``s [q, d]`` (``js`` its tangents ``[q, m]``).

    Returns:
      ``theta [q]`` descending (dropped, dependent directions last, negative) and ``coef [q, q]``:
      row ``i`` holds the coefficients of Ritz vector ``i`` in the rows of ``s`` (Ritz vectors are
      ``B``-orthonormal).
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
    a, b = pencil.project(t.T @ s_n, t.T @ js_n)
    both = keep[:, None] & keep[None, :]
    a = jnp.where(both, a, 0.0)
    b = jnp.where(both, b, 0.0) + jnp.diag(jnp.where(keep, 0.0, 1.0))
    linv = cholesky_inverse(symmetrize(b))  # block-diagonal: kept / dropped
    whitened = symmetrize(linv @ a @ linv.T)
    # Dropped (dependent) directions rank last: below every kept value (those are >= 0).
    low = 1.0 + 2.0 * jnp.linalg.norm(whitened)
    mu, y = small_eigh(whitened - jnp.diag(jnp.where(keep, 0.0, low)))
    coef = (t @ (linv.T @ y)).T * inv[None, :]
    return mu, coef


def relative_residuals(pencil: Pencil, x: Array, jx: Array, theta: Array, r: Array) -> Array:
    """``‖rᵢ‖·‖xᵢ‖ / (|θᵢ|·xᵢᵀBxᵢ)`` per row: invariant to scaling the pencil or the rows."""
    _, xbx = pencil.quotients(x, jx)
    tiny = jnp.finfo(x.dtype).tiny
    num = jnp.linalg.norm(r, axis=1) * jnp.linalg.norm(x, axis=1)
    return num / jnp.maximum(jnp.abs(theta) * xbx, tiny)


def turned(old: Array, new: Array) -> Array:
    """The sine of the largest angle between a row of ``new [c, d]`` and the span of ``old [c, d]``
    (0 when every new row lies in the old span): how far one iteration turned a block.

    >>> float(turned(jnp.array([[1.0, 0.0]]), jnp.array([[3.0, 4.0]])))
    0.8
    """
    unit = new / jnp.maximum(jnp.linalg.norm(new, axis=1, keepdims=True), jnp.finfo(new.dtype).tiny)
    off = unit - jax.vmap(lambda u: project(u, old))(unit)
    return jnp.max(jnp.linalg.norm(off, axis=1))


def converged(res: Array, tol: Array, turns: Array, turn_tol: Array) -> Array:
    """The adaptive stopping rule of :func:`lobpcg`: every relative residual ``res [c]`` is at
    most ``tol``, or each of the last two turns ``turns [2]`` (:func:`turned`) is at most
    ``turn_tol``. One small turn alone does not stop: on a nearly singular ``B`` in float32 the
    turns jitter between 0.005 and 0.1 from one iteration to the next without settling.

    >>> converged(jnp.array([0.5]), 1e-2, jnp.array([0.3, 0.004]), 1e-2)
    Array(False, dtype=bool)
    >>> converged(jnp.array([0.5]), 1e-2, jnp.array([0.008, 0.004]), 1e-2)
    Array(True, dtype=bool)
    """
    return jnp.all(res <= tol) | jnp.all(turns <= turn_tol)


def lobpcg(
    pencil: Pencil,
    x: Array,
    iters: int,
    *,
    tol: float | None = None,
    check: int | None = None,
    turn_tol: float | None = None,
) -> Result:
    """Top-``p`` generalised eigenpairs of the pencil, warm-started from the rows of ``x [p, d]``.

    Costs ``p`` products, then per iteration one residual block and one product per search row.
    With ``tol``, iterations stop (a ``lax.while_loop``) as soon as the relative residual of each
    of the first ``check`` Ritz pairs is at most ``tol``, after at most ``iters``; the residual is
    then measured on the block that is returned (one more residual block per solve), and a block
    that already meets ``tol`` costs no iteration. With ``turn_tol`` as well, they also stop once
    two iterations in a row each turned the first ``check`` Ritz vectors by at most ``turn_tol``
    (the sine of the angle, :func:`turned`): the block has (nearly) stopped moving although its
    residual has not reached ``tol``, which happens when the relative residual overstates the
    direction's error (an ill-conditioned ``B``) or sits on a float32 rounding floor. The
    Rayleigh-Ritz step on ``x`` before the first iteration counts as one, so a block that barely
    moves stops after one iteration. Two in a row, not one: on a nearly singular ``B`` in float32
    the turns jitter between 0.005 and 0.1 from one iteration to the next without settling, and a
    single small one stopped steps far from the answer (``benchmarks/results/turn_rule.md``).

    Args:
      pencil: the pencil (see :class:`Pencil`).
      x: ``[p, d]`` start block (rows).
      iters: LOBPCG iterations (static, >= 1): the count, or the cap with ``tol``.
      tol: relative-residual tolerance (see :func:`relative_residuals`), or None (``iters``
        iterations).
      check: leading Ritz pairs the tolerance applies to (default all ``p``).
      turn_tol: with ``tol``, also stop when two iterations in a row each turned the first
        ``check`` Ritz vectors by at most this sine, or None (the residual rule alone).

    Returns:
      :class:`Result`.

    >>> from reds_jax.core.matrix_free import ExplicitPencil
    >>> pencil = ExplicitPencil.build(jnp.diag(jnp.array([1.0, 2.0, 3.0])), jnp.eye(3), 0.0)
    >>> res = lobpcg(pencil, jnp.ones((1, 3)), 3)
    >>> round(float(res.theta[0]), 4)
    3.0
    >>> res = lobpcg(pencil, jnp.ones((1, 3)), 20, tol=1e-4)
    >>> int(res.iterations) < 20, bool(res.residual[0] <= 1e-4)
    (True, True)
    """
    p = x.shape[0]
    check = p if check is None else min(int(check), p)
    zero = jnp.zeros((), jnp.int32)
    jx, bad = pencil.apply(x)
    theta, coef = rayleigh_ritz(pencil, x, jx)
    ok = jnp.all(jnp.isfinite(coef)) & jnp.all(jnp.isfinite(theta))
    x_in = x
    x, jx = jnp.where(ok, coef @ x, x), jnp.where(ok, coef @ jx, jx)
    theta = jnp.where(ok, theta, 0.0)

    def search(x, jx, pdir, jp, r):
        """One Rayleigh-Ritz step on ``[x, preconditioned r, pdir]``."""
        blocks = []
        for blk in pencil.precondition(r):
            tiny = jnp.finfo(blk.dtype).tiny
            blk = blk / jnp.maximum(jnp.linalg.norm(blk, axis=1, keepdims=True), tiny)
            blocks.append(jnp.where(jnp.isfinite(blk), blk, 0.0))
        r = jnp.concatenate(blocks)
        jr, bad_j = pencil.apply(r)
        s = jnp.concatenate([x, r, pdir])
        js = jnp.concatenate([jx, jr, jp])
        th, coef = rayleigh_ritz(pencil, s, js)
        c = coef[:p]
        new_p, new_jp = c[:, p:] @ s[p:], c[:, p:] @ js[p:]
        return (c @ s, c @ js, new_p, new_jp, th[:p]), bad_j

    def keep_finite(new, x, jx, theta):
        # An iteration whose Rayleigh-Ritz step is not finite (float32 rounding on a nearly
        # dependent basis) is skipped: the block and its Ritz values stay, the search directions
        # restart from zero.
        ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(t)) for t in new]))
        fallback = (x, jx, jnp.zeros_like(x), jnp.zeros_like(jx), theta)
        kept = tuple(jnp.where(ok, a, b) for a, b in zip(new, fallback, strict=True))
        return kept, (~ok).astype(jnp.int32)

    def measured(x, jx, theta):
        r, bad_r = pencil.residual(x, jx, theta)
        res = relative_residuals(pencil, x, jx, theta, r)
        return r, jnp.where(jnp.isfinite(res), res, jnp.inf), bad_r

    if tol is None:

        def fixed(_, state):
            x, jx, pdir, jp, theta, _, bad, skipped = state
            r, res, bad_r = measured(x, jx, theta)
            new, bad_j = search(x, jx, pdir, jp, r)
            kept, skip = keep_finite(new, x, jx, theta)
            res = jnp.where(jnp.isfinite(res), res, 0.0)
            return (*kept, res, bad + bad_r + bad_j, skipped + skip)

        res0 = jnp.zeros((p,), x.dtype)
        state = (x, jx, jnp.zeros_like(x), jnp.zeros_like(jx), theta, res0, bad, zero)
        x, jx, _, _, theta, res, bad, skipped = jax.lax.fori_loop(0, iters, fixed, state)
        return Result(theta, x, jx, skipped, res, bad, jnp.asarray(iters, jnp.int32))

    tol_ = jnp.asarray(tol, x.dtype)
    turn_ = jnp.asarray(-1.0 if turn_tol is None else turn_tol, x.dtype)
    inf = jnp.asarray(jnp.inf, x.dtype)

    def adaptive(state):
        x, jx, pdir, jp, theta, r, _, bad, skipped, it, _, last = state
        new, bad_j = search(x, jx, pdir, jp, r)
        kept, skip = keep_finite(new, x, jx, theta)
        r, res, bad_r = measured(*kept[:2], kept[4])
        turn = turned(x[:check], kept[0][:check]) if turn_tol is not None else inf
        return (*kept, r, res, bad + bad_j + bad_r, skipped + skip, it + 1, last, turn)

    def unconverged(state):
        res, it, turns = state[6], state[9], jnp.stack(state[10:12])
        return (it < iters) & ~converged(res[:check], tol_, turns, turn_)

    r, res, bad_r = measured(x, jx, theta)
    state = (x, jx, jnp.zeros_like(x), jnp.zeros_like(jx), theta, r, res, bad + bad_r, zero, zero)
    # The Rayleigh-Ritz step on the start block is the 0th iteration: its turn counts, so a
    # warm-started block that barely moves stops after one iteration.
    turn0 = jnp.where(ok, turned(x_in[:check], x[:check]), inf) if turn_tol is not None else inf
    state = jax.lax.while_loop(unconverged, adaptive, (*state, inf, turn0))
    x, jx, _, _, theta, _, res, bad, skipped, it, _, _ = state
    res = jnp.where(jnp.isfinite(res), res, 0.0)
    return Result(theta, x, jx, skipped, res, bad, it)
