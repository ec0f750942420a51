"""Exact Jacobians and Gram matrices of feature maps through a generator.

Everything here works on one latent ``z [d]`` and plain callables; ``jax.vmap`` it for batches.
The Jacobian of ``fn: [d] -> any shape`` is returned flattened to ``[m, d]`` with ``m = fn(z).size``.

Modes:
  * ``"fwd"``: forward mode (``jax.jacfwd`` / ``jax.jvp``), ``d`` tangents; best when ``m >= d``.
  * ``"rev"``: reverse mode (``jax.jacrev`` / ``jax.vjp``), ``m`` cotangents; best when ``m < d``.
  * ``"auto"``: ``"fwd"`` if ``m >= d`` else ``"rev"``.
  * ``"fd"``: central differences with step ``eps``, for parity with the paper's reference code only.
  * ``"fd_forward"``: forward differences ``(f(z + eps·e_i) − f(z)) / eps`` (parity only).
  * ``"fd_official"`` (traversals only, see :func:`point_mode`): the reference code's scheme — the
    difference step is the traversal's step size, central at the start latent and forward at every
    later point of a path.

Non-finite Jacobian entries are replaced by zero (as the reference code does) so that one bad pixel
cannot turn a whole trajectory into NaN; see :func:`sanitize`. (In reverse mode an infinite partial
also poisons the other entries of its column through ``0·inf``; those are zeroed as well.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("auto", "fwd", "rev", "fd", "fd_forward", "fd_official")
POINT_MODES = MODES[:-1]  # what one Jacobian evaluation can use (fd_official picks one of them)

Array = jax.Array


def check_mode(mode: str) -> None:
    """Raise a ValueError naming the valid Jacobian modes if ``mode`` is not one of them."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a Jacobian mode; pass one of {MODES}.")


def output_size(fn: Callable[[Array], Array], z: Array) -> int:
    """Number of entries ``m`` of ``fn(z)``, found without running ``fn`` (``jax.eval_shape``)."""
    out = jax.eval_shape(fn, z)
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(out)))


def resolve_mode(mode: str, m: int, d: int) -> str:
    """Pick ``"fwd"`` or ``"rev"`` for ``mode="auto"`` from the output size ``m`` and latent size ``d``."""
    check_mode(mode)
    if mode == "auto":
        return "fwd" if m >= d else "rev"
    return mode


def sanitize(x: Array) -> Array:
    """Replace non-finite entries by zero (the documented fallback for non-finite Jacobians)."""
    return jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))


def count_nonfinite(x: Array) -> Array:
    """Number of non-finite entries of ``x`` (int32 scalar): what :func:`sanitize` zeroes."""
    return jnp.sum(~jnp.isfinite(x), dtype=jnp.int32)


def _flat(fn: Callable[[Array], Array]) -> Callable[[Array], Array]:
    return lambda z: jnp.ravel(fn(z))


def _fd_jacobian(fn: Callable[[Array], Array], z: Array, eps: float, central: bool = True) -> Array:
    basis = jnp.eye(z.shape[0], dtype=z.dtype) * jnp.asarray(eps, z.dtype)
    plus = jax.lax.map(lambda e: fn(z + e), basis)
    if not central:
        return ((plus - fn(z)[None]) / jnp.asarray(eps, z.dtype)).T
    minus = jax.lax.map(lambda e: fn(z - e), basis)
    return ((plus - minus) / jnp.asarray(2 * eps, z.dtype)).T


def point_mode(mode: str, eps: float, step_size: float | None, at_start: bool) -> tuple[str, float]:
    """The Jacobian ``(mode, eps)`` to use at one latent of a traversal.

    ``mode="fd_official"`` is the reference code's scheme: the difference step is the traversal's
    ``step_size`` (``eps`` when there is no traversal, e.g. ``directions``), central differences at
    the start latent and forward differences at later path points. Other modes pass through.

    Args:
      mode: a Jacobian mode (:data:`MODES`).
      eps: difference step of the ``"fd"``/``"fd_forward"`` modes.
      step_size: the traversal's step length (may be a traced scalar), or None.
      at_start: whether the latent is the path's start latent ``z0``.

    Returns:
      ``(mode, eps)`` with ``mode`` in :data:`POINT_MODES`.

    >>> point_mode("fd_official", 1e-3, 0.5, at_start=False)
    ('fd_forward', 0.5)
    """
    check_mode(mode)
    if mode != "fd_official":
        return mode, eps
    step = eps if step_size is None else step_size
    return ("fd" if at_start else "fd_forward"), step


def jacobian(
    fn: Callable[[Array], Array], z: Array, *, mode: str = "auto", eps: float = 1e-3
) -> Array:
    """Jacobian of ``fn`` at ``z``, flattened to ``[m, d]``.

    Args:
      fn: pure function ``[d] -> any shape`` (its output is flattened to ``m`` entries).
      z: latent ``[d]``.
      mode: ``"auto"``, ``"fwd"``, ``"rev"``, ``"fd"`` (central differences, paper parity) or
        ``"fd_forward"`` (forward differences); ``"fd_official"`` is resolved per path point by
        :func:`point_mode` first.
      eps: difference step for ``mode="fd"``/``"fd_forward"``.

    Returns:
      ``[m, d]`` Jacobian with non-finite entries set to zero.

    >>> import jax.numpy as jnp
    >>> jacobian(lambda z: jnp.stack([z[0] * z[1], z[1]]), jnp.array([2.0, 3.0])).tolist()
    [[3.0, 2.0], [0.0, 1.0]]
    """
    z = jnp.asarray(z)
    if z.ndim != 1:
        raise ValueError(
            f"z must be one latent of shape [d]; got shape {z.shape}. vmap for batches."
        )
    return _jacobian_counted(fn, z, mode, eps)[0]


def _jacobian_counted(fn, z: Array, mode: str, eps: float) -> tuple[Array, Array]:
    """``(jacobian [m, d] sanitized, number of entries zeroed)``."""
    flat = _flat(fn)
    if mode == "fd_official":
        raise ValueError(
            "mode='fd_official' depends on the path point; resolve it with point_mode(...) first, "
            "or pass mode='fd' (central) or mode='fd_forward'."
        )
    mode = resolve_mode(mode, output_size(flat, z), z.shape[0])
    if mode == "fwd":
        jac = jax.jacfwd(flat)(z)
    elif mode == "rev":
        jac = jax.jacrev(flat)(z)
    else:
        jac = _fd_jacobian(flat, z, eps, central=mode == "fd")
    return sanitize(jac), count_nonfinite(jac)


def _chunked_gram_rows(flat: Callable[[Array], Array], z: Array, m: int, chunk: int) -> Array:
    """``JᵀJ`` accumulated over chunks of output rows (reverse mode): memory ``[chunk, d]``."""
    _, vjp = jax.vjp(flat, z)
    n_chunks = -(-m // chunk)

    def body(state, start):
        acc, bad = state
        # One-hot cotangents for rows start..start+chunk; rows past m are all-zero (no contribution).
        cot = jax.nn.one_hot(start + jnp.arange(chunk), m, dtype=z.dtype)
        rows = jax.vmap(lambda c: vjp(c)[0])(cot)
        bad = bad + count_nonfinite(rows)
        rows = sanitize(rows)
        return (acc + rows.T @ rows, bad), None

    d = z.shape[0]
    init = (jnp.zeros((d, d), z.dtype), jnp.zeros((), jnp.int32))
    return jax.lax.scan(body, init, jnp.arange(n_chunks) * chunk)[0]


def _chunked_gram_cols(flat: Callable[[Array], Array], z: Array, chunk: int) -> Array:
    """``JᵀJ`` one block of columns at a time via ``Jᵀ(J V)`` (jvp then vjp): memory ``[m, chunk]``.
    Two passes a tangent: used only when the ``[m, d]`` Jacobian itself is over
    :data:`JACOBIAN_BYTES` (else :func:`_jacobian_blocks`)."""
    d = z.shape[0]
    _, jvp = jax.linearize(flat, z)
    vjp = jax.linear_transpose(jvp, z)
    n_chunks = -(-d // chunk)
    basis = jnp.eye(n_chunks * chunk, d, dtype=z.dtype).reshape(n_chunks, chunk, d)

    def one(v):
        jv = jvp(v)  # a column of J (or zero past d)
        col = vjp(sanitize(jv))[0]
        return sanitize(col), count_nonfinite(jv) + count_nonfinite(col)

    cols, bad = jax.lax.map(jax.vmap(one), basis)
    return cols.reshape(n_chunks * chunk, d)[:d], jnp.sum(bad, dtype=jnp.int32)


JACOBIAN_BYTES = 2**30  # a chunked forward Jacobian is kept whole ([m, d]) up to this size


def _jacobian_blocks(flat: Callable[[Array], Array], z: Array, chunk: int) -> tuple[Array, Array]:
    """``(jacobian [m, d] sanitized, entries zeroed)`` in forward mode, ``chunk`` tangents at a
    time: the working memory of ``chunk`` tangents, each tangent one jvp (as unchunked)."""
    d = z.shape[0]
    n_chunks = -(-d // chunk)
    basis = jnp.eye(n_chunks * chunk, d, dtype=z.dtype).reshape(n_chunks, chunk, d)
    _, jvp = jax.linearize(flat, z)
    # a loop over chunks: measured on the face DCGAN (d = 100, 2 or 4 chunks) as fast as the
    # unchunked program and as the chunks unrolled (XLA:CPU's slow convolutions in loop bodies
    # hit the two-pass form of _chunked_gram_cols, 15x the unchunked cost there, not this one)
    cols = jax.lax.map(jax.vmap(jvp), basis)  # [n_chunks, chunk, m]
    jac = cols.reshape(n_chunks * chunk, -1)[:d].T
    return sanitize(jac), count_nonfinite(jac)


def gram(
    fn: Callable[[Array], Array],
    z: Array,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    eps: float = 1e-3,
) -> Array:
    """Gram matrix ``JᵀJ`` (``[d, d]``) of ``fn`` at ``z``.

    With ``chunk_size``, the Gram is accumulated without ever holding the full ``[m, d]`` Jacobian:
    in reverse mode over blocks of ``chunk_size`` output rows (``[chunk_size, d]`` at a time); in
    forward mode one block of ``chunk_size`` columns at a time as ``Jᵀ(J V)`` (a jvp then a vjp,
    ``[m, chunk_size]`` at a time). The finite-difference modes always build the full Jacobian.

    Args:
      fn: pure function ``[d] -> any shape``.
      z: latent ``[d]``.
      mode: ``"auto"``, ``"fwd"``, ``"rev"`` or ``"fd"``.
      chunk_size: optional block size (positive int).
      eps: central-difference step for ``mode="fd"``.

    Returns:
      Symmetric positive semi-definite ``[d, d]`` Gram matrix.

    >>> import jax.numpy as jnp
    >>> gram(lambda z: 2.0 * z, jnp.ones(2)).tolist()
    [[4.0, 0.0], [0.0, 4.0]]
    """
    z = jnp.asarray(z)
    if z.ndim != 1:
        raise ValueError(
            f"z must be one latent of shape [d]; got shape {z.shape}. vmap for batches."
        )
    check_mode(mode)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk_size!r}.")
    return _gram_counted(fn, z, mode, chunk_size, eps)[0]


def _gram_counted(fn, z: Array, mode: str, chunk_size: int | None, eps: float):
    """``(gram [d, d], number of non-finite entries zeroed)``."""
    if chunk_size is None or mode.startswith("fd"):
        jac, bad = _jacobian_counted(fn, z, mode, eps)
        return jac.T @ jac, bad
    flat = _flat(fn)
    m = output_size(flat, z)
    if resolve_mode(mode, m, z.shape[0]) == "rev":
        return _chunked_gram_rows(flat, z, m, min(chunk_size, m))
    return _chunked_gram_cols(flat, z, min(chunk_size, z.shape[0]))


def feature_grams(
    generator: Callable[[Array], Array],
    features: Sequence[Callable[[Array], Array]],
    z: Array,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    eps: float = 1e-3,
    count: bool = False,
) -> Array | tuple[Array, Array]:
    """Grams ``J_kᵀJ_k`` of every feature through the generator, sharing one generator pass.

    The features are concatenated into one function so that the generator's forward (or reverse)
    pass is done once for all of them. With ``chunk_size`` in forward mode, the Jacobian is built
    ``chunk_size`` tangents at a time (one jvp each, as unchunked) and kept whole while it is at
    most :data:`JACOBIAN_BYTES`; in reverse mode, or above that, each Gram is accumulated in
    blocks (see :func:`gram`).

    Args:
      generator: ``z [d] -> image``.
      features: sequence of ``image -> array`` callables (K of them).
      z: latent ``[d]``.
      mode: Jacobian mode (see :func:`jacobian`).
      chunk_size: optional block size for memory-bounded accumulation.
      eps: central-difference step for ``mode="fd"``.
      count: also return the number of non-finite Jacobian entries set to zero (int32 scalar).

    Returns:
      ``[K, d, d]`` stacked Grams (and the count, with ``count=True``).

    >>> import jax.numpy as jnp
    >>> g = feature_grams(lambda z: z, [lambda x: x[:1], lambda x: 3.0 * x[1:]], jnp.ones(2))
    >>> g[:, 0, 0].tolist(), g[:, 1, 1].tolist()
    ([1.0, 0.0], [0.0, 9.0])
    """
    stacked = stacked_features(generator, features)
    d = z.shape[0]
    if chunk_size is not None and not mode.startswith("fd"):
        m = output_size(stacked, z)
        itemsize = jnp.dtype(z.dtype).itemsize
        if resolve_mode(mode, m, d) == "rev" or m * d * itemsize > JACOBIAN_BYTES:
            parts = [
                _gram_counted(lambda v, f=f: f(generator(v)), z, mode, chunk_size, eps)
                for f in features
            ]
            grams = jnp.stack([g for g, _ in parts])
            return (grams, sum(b for _, b in parts)) if count else grams
        jac, bad = _jacobian_blocks(_flat(stacked), z, min(chunk_size, d))
    else:
        jac, bad = _jacobian_counted(stacked, z, mode, eps)
    sizes = [output_size(lambda v, f=f: f(generator(v)), z) for f in features]
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    grams = jnp.stack([jac[a:b].T @ jac[a:b] for a, b in pairs])
    return (grams, bad) if count else grams


def stacked_features(generator: Callable, features: Sequence[Callable]) -> Callable:
    """``z [d] -> [m]``: one generator pass, then every feature's output flattened and
    concatenated (``m`` their total size), the function whose Jacobian stacks the features'.

    >>> import jax.numpy as jnp
    >>> f = stacked_features(lambda z: z.reshape(1, 2, 1), [lambda x: x[0, 0], lambda x: 3 * x])
    >>> f(jnp.array([1.0, 2.0])).tolist()
    [1.0, 3.0, 6.0]
    """

    def stacked(z):
        image = generator(z)
        return jnp.concatenate([jnp.ravel(f(image)) for f in features])

    return stacked


def jaxpr_values(jaxpr, inputs: bool = True) -> list:
    """Every value (``jax.core.Var``) of a jaxpr and its sub-jaxprs (``scan``, ``while``,
    ``cond``, ``pjit``, custom rules, ...): what XLA may have to hold in memory. ``inputs=False``
    leaves out inputs and constants (e.g. network weights), keeping computed values only."""
    from jax.extend import core as jex

    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    out = [*jaxpr.invars, *jaxpr.constvars] if inputs else []
    for eqn in jaxpr.eqns:
        out += eqn.outvars
    for sub in jex.subjaxprs(jaxpr):
        out += jaxpr_values(sub, inputs)
    return out


def largest_value(fn: Callable[[Array], Array], z: Array) -> int:
    """Entries of the largest value ``fn`` computes at ``z`` (traced, not run; inputs and
    constants such as weights left out)."""
    values = jaxpr_values(jax.make_jaxpr(fn)(z), inputs=False)
    return max([1] + [int(np.prod(v.aval.shape)) for v in values if hasattr(v.aval, "shape")])


def _jacobian_program(generator, features, mode: str):
    stacked = stacked_features(generator, features)
    return lambda v: _jacobian_counted(stacked, v, mode, 1e-3)


@functools.lru_cache(maxsize=32)
def _value_bytes(generator, features: tuple, shape: tuple, dtype: str, mode: str) -> int:
    """Bytes of every computed value of the unchunked Jacobian program held at once (an upper
    bound on its working memory, from its jaxpr)."""
    spec = jax.ShapeDtypeStruct(shape, dtype)
    jaxpr = jax.make_jaxpr(_jacobian_program(generator, features, mode))(spec)
    values = jaxpr_values(jaxpr, inputs=False)
    size = sum(int(np.prod(v.aval.shape)) for v in values if hasattr(v.aval, "shape"))
    return size * np.dtype(dtype).itemsize


@functools.lru_cache(maxsize=32)
def _compiled_bytes(generator, features: tuple, shape: tuple, dtype: str, mode: str) -> int | None:
    """What XLA's compiled unchunked Jacobian program holds: temporaries + outputs (bytes)."""
    spec = jax.ShapeDtypeStruct(shape, dtype)
    compiled = jax.jit(_jacobian_program(generator, features, mode)).lower(spec).compile()
    mem = compiled.memory_analysis()
    return None if mem is None else int(mem.temp_size_in_bytes + mem.output_size_in_bytes)


def jacobian_bytes(
    generator: Callable[[Array], Array],
    features: Sequence[Callable[[Array], Array]],
    z: Array,
    mode: str,
    budget: int | None = None,
) -> int:
    """Bytes of working memory the unchunked Jacobian of all features through ``generator`` takes
    at one latent of ``z``'s shape and dtype (``z`` may be a tracer: only its shape is used).

    First an upper bound: every value of the program's jaxpr held at once. When that is over
    ``budget`` (or no budget is given), the program is compiled for one latent and XLA's own
    figure is returned (``memory_analysis()``: temporaries + outputs), which is what the run will
    hold; it is often far below the bound (XLA frees values as it goes). Both are cached per
    (generator, features, shape, dtype, mode), so a job pays the compile once (and the persistent
    compilation cache makes it a load on later runs). Where the program cannot be compiled on its
    own (a generator that closes over traced values), the bound is returned.

    >>> import jax.numpy as jnp
    >>> jacobian_bytes(lambda v: jnp.tanh(v), [lambda x: x], jnp.ones(4), "fwd") > 0
    True
    """
    key = (generator, tuple(features), tuple(z.shape), jnp.dtype(z.dtype).name, mode)
    bound = _value_bytes(*key)
    if budget is not None and bound <= budget:
        return bound
    try:
        held = _compiled_bytes(*key)
    except jax.errors.UnexpectedTracerError:  # a generator closing over traced values
        held = None
    return bound if held is None else min(held, bound)


def auto_chunk_size(
    generator: Callable[[Array], Array],
    features: Sequence[Callable[[Array], Array]],
    z: Array,
    mode: str,
    budget: int,
) -> int | None:
    """The ``chunk_size`` that keeps the Jacobian of all features within ``budget`` bytes, or None
    when the unchunked program fits (no chunks: the fastest form).

    The unchunked program's working memory ``B`` is :func:`jacobian_bytes` (XLA's own figure for
    the compiled program when a cheap upper bound does not settle it). Over budget, the ``n``
    tangents (``d`` forward, ``m`` reverse: :func:`resolve_mode`) are split into chunks of
    ``max(1, budget // (B / n))``.

    >>> import jax.numpy as jnp
    >>> g = lambda v: jnp.tile(v, 100).reshape(10, -1, 1)
    >>> auto_chunk_size(g, [lambda x: x], jnp.ones(8), "auto", 2**20) is None
    True
    >>> auto_chunk_size(g, [lambda x: x], jnp.ones(8), "auto", 4 * 800)  # one tangent a time
    1
    """
    total = jacobian_bytes(generator, features, z, mode, budget)
    if total <= budget:
        return None
    stacked = stacked_features(generator, features)
    d = z.shape[0]
    m = output_size(stacked, z)
    n = d if resolve_mode(mode, m, d) == "fwd" else m
    return max(1, min(n - 1, int(budget // (total / n))))
