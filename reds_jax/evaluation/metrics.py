"""Quality metrics for traversals: normalised distances along paths and matched-change summaries.

A *measure* is a pure callable ``z [d] -> vector`` evaluated on latents: an image feature through
the generator (``lambda z: feature(generator(z))``, see :func:`feature_measure`) or a ground-truth
factor group (``lambda z: oracle.unit(z)[idx]``). Along each path the distance to the start,
``‖m(z_t) − m(z_0)‖``, is divided by the measure's *pair scale* — its median distance between two
independent random latents (:func:`pair_scale`) — so 1.0 means "as different as two random
samples".

Summaries compare methods at *matched varied change*: each path is interpolated linearly to the
point where its normalised varied change first reaches a target ``δ`` (:func:`value_at_change`);
the fixed drift there is the path's score. Paths that never reach ``δ`` are failures (NaN score).
:func:`drift_curve` gives the drift at a grid of change levels and :func:`area_under_drift` its
mean over ``[0, δ]``; :func:`summarize` reduces scores over paths to median, IQR and success rate.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "Summary",
    "area_under_drift",
    "distances_to_start",
    "drift_curve",
    "feature_measure",
    "measure_paths",
    "pair_scale",
    "point_at_change",
    "summarize",
    "value_at_change",
]


def feature_measure(generator: Callable[[Array], Array], feature: Callable[[Array], Array]):
    """``z [d] -> feature(generator(z))`` flattened: an image feature as a latent measure.

    >>> import jax.numpy as jnp
    >>> feature_measure(lambda z: z.reshape(1, 2, 1), lambda im: 2.0 * im)(jnp.ones(2)).tolist()
    [2.0, 2.0]
    """
    return lambda z: jnp.ravel(feature(generator(z)))


def measure_paths(measure: Callable[[Array], Array], latents: Array, *, batch: int = 256) -> Array:
    """Evaluate a measure on every latent of a path array, in batches (bounded memory).

    Args:
      measure: pure ``z [d] -> array`` (flattened to ``[m]``).
      latents: ``[..., d]`` (e.g. ``[N, P, T+1, d]``).
      batch: latents per vectorised call.

    Returns:
      ``[..., m]`` measure values.

    >>> import jax.numpy as jnp
    >>> measure_paths(lambda z: z[:1], jnp.ones((2, 3, 4))).shape
    (2, 3, 1)
    """
    latents = jnp.asarray(latents)
    if latents.ndim < 1 or not isinstance(batch, int) or batch < 1:
        raise ValueError(
            f"need latents [..., d] and an int batch >= 1; got {latents.shape}, {batch!r}."
        )
    flat = jnp.reshape(latents, (-1, latents.shape[-1]))
    n = flat.shape[0]
    pad = (-n) % batch  # pad to whole batches: one compile per (measure, batch, d, dtype)
    flat = jnp.concatenate([flat, jnp.repeat(flat[-1:], pad, axis=0)]) if pad else flat
    fn = _batched(measure)
    out = jnp.concatenate([fn(flat[i : i + batch]) for i in range(0, flat.shape[0], batch)])
    return jnp.reshape(out[:n], (*latents.shape[:-1], out.shape[-1]))


@functools.lru_cache(maxsize=256)
def _batched(measure: Callable[[Array], Array]):
    return jax.jit(jax.vmap(lambda z: jnp.ravel(measure(z))))


def distances_to_start(values: Array) -> Array:
    """``‖values[..., t, :] − values[..., 0, :]‖`` for every step.

    Args:
      values: ``[..., T+1, m]`` measure values along paths.

    Returns:
      ``[..., T+1]`` distances (0 at ``t = 0``).

    >>> import jax.numpy as jnp
    >>> distances_to_start(jnp.array([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [0.0, 5.0]
    """
    values = jnp.asarray(values)
    return jnp.linalg.norm(values - values[..., :1, :], axis=-1)


def pair_scale(
    measure: Callable[[Array], Array],
    key: Array,
    latent_dim: int,
    *,
    n_pairs: int = 64,
    dtype=None,
    sampler: Callable[[Array, tuple[int, ...]], Array] | None = None,
) -> float:
    """Typical distance of a measure between two random latents (the normalising scale).

    Args:
      measure: pure ``z [d] -> array``.
      key: PRNG key for the pairs.
      latent_dim: ``d``.
      n_pairs: number of independent pairs (median over them).
      dtype: latent dtype (default: JAX's default float).
      sampler: ``(key, shape) -> latents``; default ``jax.random.normal`` (``z ~ N(0, I)``).

    Returns:
      Median ``‖m(z_a) − m(z_b)‖`` over the pairs (a Python float, > 0 unless the measure is
      constant).

    >>> import jax, jax.numpy as jnp
    >>> pair_scale(lambda z: 0.0 * z, jax.random.key(0), 3)
    0.0
    """
    if not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive int; got {n_pairs!r}.")
    dtype = jnp.result_type(float) if dtype is None else dtype
    sampler = sampler or (lambda k, shape: jax.random.normal(k, shape, dtype))
    z = sampler(key, (2, n_pairs, latent_dim))
    values = measure_paths(measure, z)  # [2, n_pairs, m]
    return float(jnp.median(jnp.linalg.norm(values[0] - values[1], axis=-1)))


def _crossing(change: Array, level: float | Array) -> tuple[Array, Array, Array]:
    """First step reaching ``level`` and the interpolation weight inside the step before it.

    Returns ``(t, alpha, ok)``: the value at the crossing is ``x[t-1] + alpha·(x[t] − x[t-1])``
    (``t = 0, alpha = 1`` when the start already reaches the level).
    """
    level = jnp.asarray(level, change.dtype)
    reached = change >= level
    ok = jnp.any(reached, axis=-1)
    t = jnp.argmax(reached, axis=-1)
    hi = jnp.take_along_axis(change, t[..., None], axis=-1)[..., 0]
    lo = jnp.take_along_axis(change, jnp.maximum(t - 1, 0)[..., None], axis=-1)[..., 0]
    gap = hi - lo
    alpha = jnp.where(gap > 0, (level - lo) / jnp.where(gap > 0, gap, jnp.ones_like(gap)), 1.0)
    alpha = jnp.where(t == 0, jnp.ones_like(alpha), alpha)
    return t, alpha, ok


def value_at_change(change: Array, value: Array, level: float) -> tuple[Array, Array]:
    """Interpolate ``value`` to where ``change`` first reaches ``level`` along each path.

    Linear interpolation between the last step below ``level`` and the first step at or above it
    (step ``t`` with ``change[t] >= level`` and ``change[s] < level`` for ``s < t``). Paths whose
    change never reaches ``level`` are failures: NaN value, ``success=False``.

    Args:
      change: ``[..., T+1]`` normalised varied change along paths (usually 0 at ``t = 0``).
      value: ``[..., T+1]`` normalised fixed drift (or any quantity) along the same paths.
      level: target change ``δ``.

    Returns:
      ``(value_at [...], success [...])``.

    >>> import jax.numpy as jnp
    >>> v, ok = value_at_change(jnp.array([0.0, 0.2, 0.6]), jnp.array([0.0, 0.1, 0.3]), 0.4)
    >>> round(float(v), 6), bool(ok)
    (0.2, True)
    """
    change, value = jnp.asarray(change), jnp.asarray(value)
    if change.shape != value.shape or change.ndim < 1:
        raise ValueError(
            f"change and value must have the same shape [..., T+1]; got {change.shape} and "
            f"{value.shape}."
        )
    t, alpha, ok = _crossing(change, level)
    hi = jnp.take_along_axis(value, t[..., None], axis=-1)[..., 0]
    lo = jnp.take_along_axis(value, jnp.maximum(t - 1, 0)[..., None], axis=-1)[..., 0]
    out = lo + alpha.astype(value.dtype) * (hi - lo)
    return jnp.where(ok, out, jnp.full_like(out, jnp.nan)), ok


def point_at_change(change: Array, points: Array, level: float) -> tuple[Array, Array]:
    """Interpolate vector-valued points (e.g. latents) to where ``change`` first reaches ``level``.

    Same rule as :func:`value_at_change`, applied to every coordinate of ``points``.

    Args:
      change: ``[..., T+1]``.
      points: ``[..., T+1, m]`` (e.g. latents ``[N, P, T+1, d]``).
      level: target change ``δ``.

    Returns:
      ``(points_at [..., m], success [...])``; NaN rows where the level is never reached.

    >>> import jax.numpy as jnp
    >>> p, ok = point_at_change(jnp.array([0.0, 1.0]), jnp.array([[0.0, 0.0], [2.0, 4.0]]), 0.5)
    >>> p.tolist(), bool(ok)
    ([1.0, 2.0], True)
    """
    change, points = jnp.asarray(change), jnp.asarray(points)
    if points.shape[:-1] != change.shape or change.ndim < 1:
        raise ValueError(
            f"points must have shape change.shape + [m] = {change.shape} + [m]; got {points.shape}."
        )
    t, alpha, ok = _crossing(change, level)
    hi = jnp.take_along_axis(points, t[..., None, None], axis=-2)[..., 0, :]
    lo = jnp.take_along_axis(points, jnp.maximum(t - 1, 0)[..., None, None], axis=-2)[..., 0, :]
    out = lo + alpha.astype(points.dtype)[..., None] * (hi - lo)
    return jnp.where(ok[..., None], out, jnp.full_like(out, jnp.nan)), ok


def drift_curve(change: Array, value: Array, levels: Array) -> Array:
    """:func:`value_at_change` at a grid of change levels.

    Args:
      change: ``[..., T+1]``.
      value: ``[..., T+1]``.
      levels: ``[G]`` change levels.

    Returns:
      ``[..., G]`` values (NaN where a path never reaches the level).

    >>> import jax.numpy as jnp
    >>> drift_curve(jnp.array([0.0, 1.0]), jnp.array([0.0, 2.0]), jnp.array([0.5, 2.0])).tolist()
    [1.0, nan]
    """
    levels = jnp.asarray(levels, jnp.asarray(change).dtype)
    if levels.ndim != 1:
        raise ValueError(f"levels must be a 1-D grid [G]; got shape {levels.shape}.")
    return jnp.stack([value_at_change(change, value, lv)[0] for lv in levels], axis=-1)


def area_under_drift(change: Array, value: Array, level: float, *, n_grid: int = 33) -> Array:
    """Mean drift over varied change in ``[0, δ]`` (area under the drift-vs-change curve / ``δ``).

    The curve is the drift at the first crossing of each change level (trapezoid rule on
    ``n_grid`` equally spaced levels); NaN for paths that never reach ``δ``.

    Args:
      change: ``[..., T+1]``.
      value: ``[..., T+1]``.
      level: ``δ > 0``.
      n_grid: number of levels (>= 2).

    Returns:
      ``[...]`` area divided by ``δ``.

    >>> import jax.numpy as jnp
    >>> round(float(area_under_drift(jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0]), 1.0)), 6)
    0.5
    """
    if not level > 0 or not isinstance(n_grid, int) or n_grid < 2:
        raise ValueError(f"need level > 0 and an int n_grid >= 2; got {level!r}, {n_grid!r}.")
    levels = jnp.linspace(0.0, level, n_grid, dtype=jnp.asarray(change).dtype)
    curve = drift_curve(change, value, levels)
    return jnp.mean(0.5 * (curve[..., 1:] + curve[..., :-1]), axis=-1)


@dataclasses.dataclass(frozen=True)
class Summary:
    """Summary of per-path scores (failures excluded from the quantiles).

    Attributes:
      median: median over successful paths (NaN if none).
      q25: lower quartile.
      q75: upper quartile.
      success: fraction of paths that reached the target change.
      n: number of paths.
      median_all: median with failures ranked worst (``inf`` when more than half failed); the
        tuning criterion.
    """

    median: float
    q25: float
    q75: float
    success: float
    n: int
    median_all: float


def summarize(scores: Array, success: Array | None = None) -> Summary:
    """Median, IQR and success rate of per-path scores.

    Args:
      scores: ``[...]`` per-path values (NaN = failure).
      success: optional ``[...]`` booleans; defaults to ``isfinite(scores)``.

    Returns:
      :class:`Summary`.

    >>> import jax.numpy as jnp
    >>> s = summarize(jnp.array([0.1, 0.2, 0.3, jnp.nan]))
    >>> round(s.median, 6), s.success, round(s.median_all, 6)
    (0.2, 0.75, 0.25)
    """
    x = np.ravel(np.asarray(scores, dtype=np.float64))
    ok = np.isfinite(x) if success is None else np.ravel(np.asarray(success, bool)) & np.isfinite(x)
    if x.size == 0:
        raise ValueError("summarize needs at least one score.")
    good = x[ok]
    if good.size:
        q25, med, q75 = (float(v) for v in np.percentile(good, [25, 50, 75]))
    else:
        q25 = med = q75 = float("nan")
    med_all = float(np.median(np.where(ok, x, np.inf)))
    return Summary(med, q25, q75, float(np.mean(ok)), int(x.size), med_all)
