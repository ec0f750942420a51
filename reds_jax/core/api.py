"""The public entry points: :func:`directions` and :func:`traverse` (validation before tracing,
``vmap`` over start latents, ``jit``, sharding over local devices, ``throw``).

>>> import jax.numpy as jnp
>>> import reds_jax
>>> from reds_jax import features
>>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
>>> problem = reds_jax.Problem(g, vary=features.pixels(), method="maxc")
>>> reds_jax.traverse(problem, jnp.zeros(2), steps=3, step=reds_jax.FixedStep(0.5)).latents.shape
(2, 4, 2)
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reds_jax.core import presets
from reds_jax.core.control import Corrector, FixedStep
from reds_jax.core.path import Trajectories, paths, prepare
from reds_jax.core.problem import Problem, check_latents
from reds_jax.core.solvers import RESULTS, Dense, Diagnostics, Solver
from reds_jax.core.validate import check_memory, flag

Array = jax.Array

__all__ = ["Directions", "directions", "shard_batch", "traverse"]


class Directions(NamedTuple):
    """Top-``k`` directions at a latent (leading batch dims follow ``z``).

    Attributes:
      values: ``[..., k]`` scores, best first (Rayleigh quotients for ``reds``; eigenvalues of the
        projected varied Gram for ``nullspace``; of the varied Gram for ``maxc``; negated fixed
        eigenvalues for ``minf``; zeros for ``random``).
      vectors: ``[..., k, d]`` unit-norm directions.
      diagnostics: :class:`~reds_jax.core.solvers.Diagnostics` of the solve at each latent, each
        field ``[...]`` (``[N]``, or a scalar for one latent).
    """

    values: Array
    vectors: Array
    diagnostics: Diagnostics | None = None


def shard_batch(x: Array, size: int | None = None) -> tuple[Array, int]:
    """Pad the leading axis (repeating the last row) and shard it across ``jax.local_devices()``.

    Local devices: under ``jax.distributed`` every process computes its own batches (see
    :mod:`reds_jax.jobs.distributed`); with one process they are all devices.

    Args:
      x: ``[N, ...]``.
      size: padded length (a multiple of the device count); default: ``N`` rounded up to one.

    Returns:
      ``(x_padded [size, ...], N)``.

    >>> shard_batch(jnp.ones((3, 2)), 4)[0].shape
    (4, 2)
    """
    devices = jax.local_devices()
    n = x.shape[0]
    size = -(-n // len(devices)) * len(devices) if size is None else size
    if size > n:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], size - n, axis=0)])
    if len(devices) == 1:
        return x, n
    mesh = Mesh(np.asarray(devices), ("batch",))
    spec = PartitionSpec("batch", *([None] * (x.ndim - 1)))
    return jax.device_put(x, NamedSharding(mesh, spec)), n


def _directions_batch(problem, solver, z, keys):
    def one(zi, ki):
        start = solver.start(problem, zi, ki)
        return Directions(start.values, start.vectors, start.diagnostics.with_status())

    return jax.vmap(one)(z, keys)


_directions_jit = jax.jit(_directions_batch, static_argnums=(0, 1))


def _traverse_batch(problem, solver, path, steps, distances, corrector, step, z, keys):
    def one(zi, ki):
        return paths(problem, solver, path, steps, step, corrector, zi, ki, distances)

    return jax.vmap(one)(z, keys)


_traverse_jit = jax.jit(_traverse_batch, static_argnums=(0, 1, 2, 3, 4, 5))


def _check_traverse_memory(problem: Problem, z0: Array, n: int, steps: int, distances: bool):
    """Refuses up front a traversal whose paths and distance passes would not fit in memory.

    The estimate counts the latents of every frame and, with ``distances``, an image and a
    feature of image size per frame and feature (all frames of a path are featurised at once).
    """
    frames = n * 2 * problem.k * (steps + 1)
    per_frame = z0.shape[-1]
    if distances:
        image = int(np.prod(jax.eval_shape(problem.generator, z0[0] if z0.ndim == 2 else z0).shape))
        per_frame += 2 * image * len(problem.vary + problem.fix)
    check_memory(
        frames * per_frame * jnp.dtype(z0.dtype).itemsize,
        f"traverse with {n} start latent(s), k={problem.k}, steps={steps} ({frames} frames)",
        "lower k, steps or the number of start latents (or pass distances=False)",
    )


def _keys(key, n: int, method: str) -> Array:
    if key is None:
        if method == "random":
            raise ValueError("method='random' needs a PRNG key: pass key=jax.random.key(0).")
        key = jax.random.key(0)
    dtype = getattr(key, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jax.dtypes.prng_key):
        raw = np.asarray(key) if isinstance(key, np.ndarray | jax.Array) else None
        if raw is None or raw.dtype != np.uint32 or raw.shape != (2,):
            raise ValueError(
                f"key must be a PRNG key, e.g. key=jax.random.key({key!r}) (or raw "
                f"jax.random.PRNGKey data, uint32 [2]); got {key!r}."
            )
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    elif jnp.shape(key) != ():
        raise ValueError(f"key must be one PRNG key (shape ()); got shape {jnp.shape(key)}.")
    return jax.random.split(key, n)


def _span_ranks(problem, solver, z, keys, traversal):
    """``[N]`` rows in the method's own span at each start latent, or None (the solver does not
    know it)."""

    def one(zi, ki):
        if traversal:  # traverse's start solve uses the first half of the latent's key
            ki = jax.random.split(ki)[0]
        return solver.span_rank(problem, zi, ki)

    return jax.vmap(one)(z, keys)


_span_ranks_jit = jax.jit(_span_ranks, static_argnums=(0, 1, 4))


def _cap_k(problem: Problem, solver: Solver, batch, keys, n: int, traversal: bool) -> Problem:
    """``Problem(cap_k=True)``: ``k`` cut to the smallest span rank over the starts."""
    if not problem.cap_k:
        return problem
    if isinstance(batch, jax.core.Tracer):  # the rank is data: it cannot set a shape under jit
        warnings.warn(
            f"cap_k=True is skipped under jit/vmap (k stays {problem.k}): call traverse or "
            "directions on concrete latents to cap k, or pass Problem(..., cap_k=False).",
            UserWarning,
            stacklevel=4,
        )
        return problem
    ranks = _span_ranks_jit(problem, solver, batch, keys, traversal)
    if ranks is None:
        return problem
    what = {
        "nullspace": f"the beta_vary={problem.beta_vary} span inside the fixed null space",
        "maxc": f"the beta_vary={problem.beta_vary} span of the varied Gram",
        "minf": "the fixed features' null space",
    }.get(problem.method, "the direction system")
    k = presets.cap_k(problem.k, int(jnp.min(ranks[:n])), what=what)
    return problem if k == problem.k else dataclasses.replace(problem, k=k)


def _batch(problem: Problem, solver: Solver, z: Array, key: Any, traversal: bool):
    """Batch, key and shard the latents, and apply ``cap_k``: ``(problem, latents [N', d],
    keys [N'], N)``; ``N'`` is ``N`` padded to a multiple of the device count."""
    batch = z if z.ndim == 2 else z[None]
    keys = _keys(key, batch.shape[0], problem.method)
    batch_s, n = shard_batch(batch)
    keys_s, _ = shard_batch(keys)
    problem = _cap_k(problem, solver, batch_s, keys_s, n, traversal)
    return problem, batch_s, keys_s, n


def _unbatch(out, n: int, single: bool):
    return jax.tree_util.tree_map(lambda x: x[0] if single else x[:n], out)


def _throw(status: Array, what: str) -> None:
    """``throw=True``: raise when any solve or step reports a :class:`RESULTS` bit."""
    names = RESULTS.describe(status)
    if names:
        raise RuntimeError(
            f"{what} did not succeed everywhere: {names} (see diagnostics.status and the counts "
            "of reds_jax.Diagnostics); pass throw=False to get the result with its fallbacks."
        )


def directions(
    problem: Problem,
    z: Array,
    *,
    solver: Solver = Dense(),
    key: Array | None = None,
    throw: bool = False,
) -> Directions:
    """Top-``k`` REDs (or baseline) directions at one or many latents.

    Args:
      problem: what to solve (:class:`~reds_jax.core.problem.Problem`).
      z: ``[d]`` or ``[N, d]`` latents.
      solver: :class:`~reds_jax.core.solvers.Dense` (exact Grams and a dense eigen-solve; the
        default), :class:`~reds_jax.core.solvers.MatrixFree` (``reds``/``maxc``: Gram-vector
        products and LOBPCG) or your own :class:`~reds_jax.core.solvers.Solver`.
      key: PRNG key (``random``, ``gram_noise``, ``MatrixFree``'s iterative start; per-latent
        keys are split from it). Default ``jax.random.key(0)`` (``random`` needs one).
      throw: raise a RuntimeError if any solve reports a :class:`~reds_jax.core.solvers.RESULTS`
        bit (default False: read ``diagnostics.status``).

    Returns:
      :class:`Directions` with ``values [..., k]``, ``vectors [..., k, d]`` and ``diagnostics``.

    >>> import jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> dirs = directions(Problem(g, vary=features.pixels(), method="maxc"), jnp.zeros(2))
    >>> dirs.vectors.shape, int(dirs.diagnostics.status)
    ((1, 2), 0)
    """
    z = check_latents(z, "z")
    problem, solver, _ = prepare(problem, z, solver, "local", 0, FixedStep(), None)
    problem, batch_s, keys_s, n = _batch(problem, solver, z, key, traversal=False)
    out = _unbatch(_directions_jit(problem, solver, batch_s, keys_s), n, z.ndim == 1)
    if flag(throw, "throw"):
        _throw(out.diagnostics.status, "directions")
    return out


def traverse(
    problem: Problem,
    z0: Array,
    *,
    solver: Solver = Dense(),
    path: str = "local",
    steps: int = 10,
    step: Any = FixedStep(),
    corrector: Corrector | None = None,
    key: Array | None = None,
    distances: bool = True,
    throw: bool = False,
) -> Trajectories:
    """Traverse from start latents along the top-``k`` directions, both signs.

    One jit compile per configuration (problem, solver, path, steps, corrector, the step
    controller's type); the step controller's numbers are traced, so a new step size reuses it.
    ``vmap`` over start latents, ``lax.scan`` over steps, and the batch is sharded over all
    local devices (``jax.local_devices()``) when there is more than one. For your own
    ``vmap``/``jit``, use :func:`~reds_jax.core.path.traverse_one`.

    Args:
      problem: what to solve (:class:`~reds_jax.core.problem.Problem`).
      z0: ``[d]`` or ``[N, d]`` start latents.
      solver: see :func:`directions`.
      path: ``"local"`` (re-solve and follow the directions; default) or ``"linear"``.
      steps: number of steps ``T``.
      step: the step controller: :class:`~reds_jax.core.control.FixedStep` (every step ``size``
        long in latent units; default ``FixedStep(0.1)``) or
        :class:`~reds_jax.core.control.FeatureStep` (the varied features move ``target`` per
        step).
      corrector: None, or a :class:`~reds_jax.core.control.Corrector` that pulls the fixed
        features back after each step (needs ``fix``).
      key: PRNG key (see :func:`directions`).
      distances: measure feature distances along the paths (``False``: skip those generator
        passes; the distance tuples are empty).
      throw: raise a RuntimeError if any solve or step reports a
        :class:`~reds_jax.core.solvers.RESULTS` bit (default False: read
        :attr:`Trajectories.status <reds_jax.core.path.Trajectories.status>`).

    Returns:
      :class:`~reds_jax.core.path.Trajectories` with ``latents [N, 2k, T+1, d]`` (``[2k, T+1, d]``
      for ``z0 [d]``), ``diagnostics`` (counts ``[N, 2k]``) and ``step_lengths [N, 2k, T]``.

    >>> import jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> tr = traverse(Problem(g, vary=features.pixels(), method="maxc"), jnp.zeros(2), steps=3)
    >>> tr.latents.shape, len(tr.vary_distances), tr.status.tolist()
    ((2, 4, 2), 1, [0, 0])
    """
    z0 = check_latents(z0, "z0")
    problem, solver, steps = prepare(problem, z0, solver, path, steps, step, corrector)
    problem, batch_s, keys_s, n = _batch(problem, solver, z0, key, traversal=True)
    distances = flag(distances, "distances")
    _check_traverse_memory(problem, z0, n, steps, distances)
    out = _traverse_jit(problem, solver, path, steps, distances, corrector, step, batch_s, keys_s)
    out = _unbatch(out, n, z0.ndim == 1)
    if flag(throw, "throw"):
        _throw(out.diagnostics.status, "traverse")
    return out
