"""REDs directions and traversals: the one step rule, the per-latent traversal
(:func:`traverse_one`, pure: ``vmap``/``jit`` it yourself), and the public :func:`directions` /
:func:`traverse` (validation, ``vmap``, ``jit`` and device sharding over start latents).

Solvers (:mod:`reds_jax.core.solvers`): ``solver=reds_jax.Dense(...)`` (default) or
``reds_jax.MatrixFree(...)``; the strings ``"dense"`` / ``"matrix_free"`` with the solver's options
as keywords are a shorthand (``solver="matrix_free", iters=3`` is ``solver=MatrixFree(iters=3)``).

Paths (for each of the top-``k`` directions at the start latent, with both signs: ``2k`` paths,
ordered ``[+v1, -v1, +v2, -v2, …]``):

* ``"linear"``: ``z_t = z_0 + t·ε·v``.
* ``"local"``: after the first step, directions are recomputed at every latent; the previous
  direction is projected onto the *span* of the new system, renormalised, and flipped if it turned
  backwards. If the projection vanishes or is not finite, the previous direction is kept
  (documented fallback, counted in ``diagnostics.kept_direction``). One rule, :func:`local_step`,
  for every solver.

The span (option ``local_span``): ``"k"`` — the new top-``k`` directions; ``"system"`` — the
method's own span, re-selected at every step as the reference code does: the ``beta_vary`` span
for ``nullspace``/``maxc`` (leading directions explaining ``beta_vary`` of the squared spectrum),
the whole null space for ``minf_mode="union"``, all of ``R^d`` otherwise. Default: ``"system"``
when ``beta_vary`` is given (``nullspace``, ``maxc``) or ``minf_mode="union"``, else ``"k"``.
``preset="official"`` (:mod:`reds_jax.core.presets`) sets every reference default at once
(explicit arguments override it).

Every step has length ``step_size`` (with ``step_target``: see :mod:`reds_jax.core.control`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reds_jax.core import presets, rayleigh
from reds_jax.core.control import Control, Corrector, check_control, step_length, varied_change
from reds_jax.core.jacobians import check_mode
from reds_jax.core.linalg import project
from reds_jax.core.solvers import (
    METHODS,
    PROBLEM_OPTIONS,
    SOLVER_OPTIONS,
    SOLVERS,
    Dense,
    Diagnostics,
    Problem,
    Solver,
    resolve,
)
from reds_jax.core.validate import bounded, check_memory, feature_shape, flag, in_dtype, number

Array = jax.Array

__all__ = [
    "METHODS",
    "OPTIONS",
    "PATHS",
    "SOLVERS",
    "Directions",
    "Trajectories",
    "directions",
    "local_step",
    "shard_batch",
    "traverse",
    "traverse_one",
]

PATHS = ("linear", "local")
OPTIONS = PROBLEM_OPTIONS + ("cap_k",) + SOLVER_OPTIONS
LOCAL_SPANS = ("k", "system")


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


class Trajectories(NamedTuple):
    """Traversals from start latents (leading ``N`` dropped when ``z0`` was one latent ``[d]``).

    Attributes:
      latents: ``[N, 2k, T+1, d]``; step 0 is ``z0``; paths ordered ``[+v1, -v1, +v2, -v2, …]``.
      vary_distances: one ``[N, 2k, T+1]`` array per varied feature: ``‖f(G(z_t)) − f(G(z_0))‖``
        (empty with ``distances=False``).
      fix_distances: one ``[N, 2k, T+1]`` array per fixed feature (empty with ``distances=False``).
      values: ``[N, k]`` scores of the start directions (see :class:`Directions`).
      diagnostics: :class:`~reds_jax.core.solvers.Diagnostics`, counts ``[N, 2k]`` per path,
        ``residual`` ``[N, 2k, T+1]``.
      step_lengths: ``[N, 2k, T]`` latent length ``ε_t`` of each predictor step (``step_size``
        unless ``step_target`` is given; a corrector's move comes on top of it).
    """

    latents: Array
    vary_distances: tuple[Array, ...]
    fix_distances: tuple[Array, ...]
    values: Array
    diagnostics: Diagnostics | None = None
    step_lengths: Array | None = None


# ---------------------------------------------------------------------------------------------
# Validation (before tracing)


def _as_features(x: Any, name: str, allow_empty: bool) -> tuple[Callable, ...]:
    if callable(x):
        x = (x,)
    try:
        feats = tuple(x)
    except TypeError:
        feats = None
    if feats is None or not all(callable(f) for f in feats):
        raise ValueError(
            f"{name} must be a feature callable (image -> array) or a sequence of them; got {x!r}."
        )
    if not feats and not allow_empty:
        raise ValueError(
            f"{name} needs at least one feature, e.g. {name}=reds_jax.features.pixels()."
        )
    return feats


def _float_tuple(x: Any, n: int, name: str, default: float, lo: float, hi: float) -> tuple:
    if x is None:
        x = default
    try:
        flat = [x] if np.ndim(x) == 0 else list(np.ravel(np.asarray(x, dtype=object)))
        vals = tuple(number(v, name) for v in flat)
    except ValueError:
        raise ValueError(
            f"{name} must be one number or one per feature, each in [{lo}, {hi}]; got {x!r}."
        ) from None
    vals = vals * n if np.ndim(x) == 0 else vals
    if len(vals) != n:
        raise ValueError(f"{name} needs {n} values (one per feature) or one scalar; got {x!r}.")
    if not all(lo <= v <= hi and math.isfinite(v) for v in vals):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}]; got {x!r}.")
    return vals


def _check_latents(z: Any, name: str) -> Array:
    dtype = getattr(z, "dtype", None)
    if dtype is None:  # a list, a number, a string: read it as numpy would
        try:
            dtype = np.asarray(z).dtype
        except (TypeError, ValueError):  # ragged lists
            dtype = np.dtype(object)
    if np.dtype(dtype).kind not in "iuf":
        raise ValueError(
            f"{name} must be real numbers of shape [d] or [N, d]; got {type(z).__name__} of "
            f"dtype {dtype}."
        )
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.result_type(float))
    if z.ndim not in (1, 2) or z.shape[-1] < 1 or z.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape [d] or [N, d] with N, d >= 1; got shape {z.shape}."
        )
    try:
        finite = bool(jnp.all(jnp.isfinite(z)))
    except jax.errors.ConcretizationTypeError:
        # Abstract latents (the caller jits/vmaps traverse itself): values are not known here.
        finite = True
    if not finite:
        raise ValueError(f"{name} contains non-finite values (NaN/inf); pass finite latents.")
    return z


def _checked_features(generator: Callable, feats: tuple, z: Array, role: str):
    """``(features, total output size)``: each traced once with its name (see
    :func:`~reds_jax.core.validate.feature_shape`), cast to the latents' dtype if it differs."""
    outs = [feature_shape(f, generator, z, f"{role}[{i}]") for i, f in enumerate(feats)]
    size = sum(int(np.prod(o.shape)) for o in outs)
    return tuple(in_dtype(f, o, z.dtype) for f, o in zip(feats, outs, strict=True)), size


def _fd_step(solver: Solver, options: dict[str, Any], step_size: Any) -> Solver:
    """``mode="fd_official"``: the difference step is the traversal's step size (unless ``eps`` is
    given, or the solver is an object, or the step size is traced)."""
    if (
        isinstance(solver, Dense)
        and solver.mode == "fd_official"
        and "eps" not in options
        and isinstance(step_size, int | float)
    ):
        return dataclasses.replace(solver, eps=float(step_size))
    return solver


def _make_config(generator, z, vary, fix, method, k, options, solver="dense", step_size=None):
    """Validate the problem and solver arguments (before tracing): ``(Problem, solver object)``."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; valid options are {OPTIONS}.")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a REDs method; pass one of {METHODS}.")
    given = dict(options)
    solver, options = resolve(solver, given)
    solver = _fd_step(solver, given, step_size)
    solver.check(method)
    d = z.shape[-1]
    try:
        image = jax.eval_shape(generator, z[0] if z.ndim == 2 else z)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"generator could not be applied to one latent of shape [{d}]: {err}. The generator must "
            "be a pure callable z [d] -> image [H, W, C]."
        ) from err
    if not hasattr(image, "shape") or len(image.shape) != 3:
        raise ValueError(
            "generator must map one latent [d] to one image [H, W, C]; got output "
            f"{getattr(image, 'shape', image)}."
        )
    if method in ("nullspace", "minf") and not fix:
        raise ValueError(f"method={method!r} needs fixed features: pass fix=[...].")
    check_mode(solver.mode)
    one = z[0] if z.ndim == 2 else z
    vary, m_vary = _checked_features(generator, tuple(vary), one, "vary")
    fix, _ = _checked_features(generator, tuple(fix), one, "fix")
    limit = min(d, m_vary) if method in ("reds", "nullspace", "maxc") else d
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= limit:
        raise ValueError(
            f"k={k!r} is out of range for method={method!r}: pass 1 <= k <= {limit} "
            f"(latent size d={d}, varied feature size m={m_vary})."
        )
    ridge = number(options.get("ridge", 1e-6), "ridge", low=0.0)
    vary_weights = _float_tuple(
        options.get("vary_weights"), len(vary), "vary_weights", 1.0, 0.0, math.inf
    )
    if not any(vary_weights):
        raise ValueError(
            f"vary_weights are all zero ({options.get('vary_weights')!r}): nothing would be varied; "
            "give at least one varied feature a weight > 0."
        )
    beta_vary = options.get("beta_vary")
    if beta_vary is not None:
        beta_vary = _float_tuple(beta_vary, 1, "beta_vary", 1.0, 1e-12, 1.0)[0]
    minf_mode = options.get("minf_mode", "sum")
    if minf_mode not in rayleigh.MINF_MODES:
        raise ValueError(
            f"minf_mode={minf_mode!r} is not valid; pass one of {rayleigh.MINF_MODES}."
        )
    random_dist = options.get("random_dist", "orthogonal")
    if random_dist not in rayleigh.RANDOM_DISTS:
        raise ValueError(
            f"random_dist={random_dist!r} is not valid; pass one of {rayleigh.RANDOM_DISTS}."
        )
    gram_noise = options.get("gram_noise", 0.0)
    if not (np.ndim(gram_noise) == 0 and math.isfinite(float(gram_noise)) and gram_noise >= 0):
        raise ValueError(
            f"gram_noise must be a finite number >= 0 (e.g. 1e-9); got {gram_noise!r}."
        )
    local_span = options.get("local_span")
    if local_span is None:
        own = (method in ("nullspace", "maxc") and beta_vary is not None) or (
            method == "minf" and minf_mode == "union"
        )
        local_span = "system" if own else "k"
    if local_span not in LOCAL_SPANS:
        raise ValueError(f"local_span={local_span!r} is not valid; pass one of {LOCAL_SPANS}.")
    span = d if local_span == "system" else int(k)
    problem = Problem(
        generator=generator,
        vary=tuple(vary),
        fix=tuple(fix),
        method=method,
        k=int(k),
        span=span,
        weights=_float_tuple(options.get("weights"), len(fix), "weights", 1.0, 0.0, math.inf),
        vary_weights=vary_weights,
        normalize=flag(options.get("normalize", True), "normalize"),
        ridge=ridge,
        beta_fix=_float_tuple(options.get("beta_fix"), len(fix), "beta_fix", 0.99, 1e-12, 1.0),
        beta_vary=beta_vary,
        minf_mode=minf_mode,
        random_dist=random_dist,
        gram_noise=float(gram_noise),
    )
    return problem, solver


def _check_path(path: Any, steps: Any) -> None:
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not a traversal path; pass one of {PATHS}.")
    bounded(steps, "steps", 0)


# ---------------------------------------------------------------------------------------------
# One latent


def local_step(v: Array, rows: Array, span: Array | None = None) -> tuple[Array, Array]:
    """The local-path step rule: the new direction from the previous one and the new span.

    Projects ``v`` onto the span of ``rows`` (the ``span``-selected rows), renormalises, and flips
    the sign if it turned backwards (cosine < 0). Fallback: if the projection vanishes (norm
    ``<= 1e-8``) or is not finite, ``v`` is kept.

    Args:
      v: ``[d]`` previous unit direction.
      rows: ``[s, d]`` directions at the new latent.
      span: optional ``[s]`` 0/1 mask of the rows spanning the step.

    Returns:
      ``(v_new [d], kept)``: the new unit direction and an int32 flag (1 if ``v`` was kept).

    >>> v, kept = local_step(jnp.array([0.6, 0.8]), jnp.array([[-1.0, 0.0]]))
    >>> float(v[0]), float(abs(v[1])), int(kept)  # [0.6, 0] renormalised, sign kept
    (1.0, 0.0, 0)
    """
    p = project(v, rows, span)
    norm = jnp.linalg.norm(p)
    p = p / jnp.where(norm > 0, norm, jnp.ones_like(norm))
    p = jnp.where(jnp.dot(p, v) < 0, -p, p)
    ok = (norm > 1e-8) & jnp.all(jnp.isfinite(p))
    return jnp.where(ok, p, v), (~ok).astype(jnp.int32)


def _directions(problem: Problem, solver: Solver, z: Array, key: Array) -> Directions:
    start = solver.start(problem, z, key)
    return Directions(start.values, start.vectors, start.diagnostics)


def _paths(
    problem: Problem,
    solver: Solver,
    path: str,
    steps: int,
    step_size: Array,
    z0: Array,
    key: Array,
    distances: bool = True,
    control: Control | None = None,
    step_target: Array | float = 0.0,
    step_min: Array | float = 0.0,
) -> Trajectories:
    """Paths from one latent: :class:`Trajectories` without the leading ``N``."""
    control = Control() if control is None else control
    k, gen = problem.k, problem.generator
    key0, key_paths = jax.random.split(key)
    start = solver.start(problem, z0, key0)
    signs = jnp.tile(jnp.asarray([1.0, -1.0], z0.dtype), k)
    v0 = jnp.repeat(start.vectors, 2, axis=0) * signs[:, None]  # [2k, d]
    size = jnp.asarray(step_size, z0.dtype)
    d0 = start.diagnostics
    counts0 = d0[:-1]
    res_start = jnp.zeros((steps + 1,), z0.dtype).at[0].set(d0.residual)
    if (path == "linear" or steps < 2) and not control.active:
        t = jnp.arange(steps + 1, dtype=z0.dtype) * size
        latents = z0[None, None, :] + t[None, :, None] * v0[:, None, :]
        counts = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (2 * k,)), counts0)
        residual = jnp.broadcast_to(res_start, (2 * k, steps + 1))
        lengths = jnp.broadcast_to(size, (2 * k, steps))
    else:
        target = jnp.asarray(step_target, z0.dtype)
        lo = jnp.asarray(step_min, z0.dtype)
        corrector = None
        ref_vary = None
        if control.adaptive:
            ref_vary = jnp.concatenate([jnp.ravel(f(gen(z0))) for f in problem.vary])
        if control.correct:
            corrector = Corrector.at(
                gen, problem.fix, problem.weights, problem.normalize, z0,
                control.correct, control.cg_iters,
            )  # fmt: skip

        def advance(z, v, x, t):
            """One predictor (+ corrector) step from ``z`` along ``v``: ``(z', x', ε, rejected)``."""
            eps = size
            if control.adaptive:
                e, jv = varied_change(gen, problem.vary, z, v, ref_vary)
                behind = (t + 1).astype(target.dtype) * target - jnp.linalg.norm(e)
                eps = step_length(e, jv, target, lo, size, behind)
            z_new = z + eps * v
            rejected = jnp.zeros((), jnp.int32)
            if corrector is not None:
                z_new, x, rejected = corrector(z_new, v, x, eps)
            return z_new, x, eps, rejected

        tracked = path == "local"

        def one_path(v, pkey):
            def track(z, v, state, t):
                new = solver.track(problem, start.context, z, state, jax.random.fold_in(pkey, t))
                v_new, kept = local_step(v, new.rows, new.span)
                return v_new, new.state, new.diagnostics._replace(kept_direction=kept)

            def keep(z, v, state, t):  # step 0 walks the start direction
                return v, state, Diagnostics.zeros(z0.dtype)

            # One scan over all T steps, so the predictor/corrector (and the tracking solve) are
            # traced and compiled once; `t` is not batched, so the cond stays a branch under vmap.
            def step(carry, t):
                z, v, state, counts, x = carry
                if tracked:
                    v_new, state, info = jax.lax.cond(t > 0, track, keep, z, v, state, t)
                else:
                    v_new, info = v, Diagnostics.zeros(z0.dtype)
                z_new, x, eps, rejected = advance(z, v_new, x, t)
                info = info._replace(rejected_corrections=rejected)
                counts = tuple(a + b for a, b in zip(counts, info[:-1], strict=True))
                return (z_new, v_new, state, counts, x), (z_new, info.residual, eps)

            init = (z0, v, start.state, tuple(counts0), jnp.zeros_like(z0))
            (_, _, _, counts, _), (zs, res, eps) = jax.lax.scan(step, init, jnp.arange(steps))
            latents = jnp.concatenate([z0[None], zs], axis=0)
            residual = res_start.at[1:steps].set(res[1:]) if tracked else res_start
            return latents, counts, residual, eps

        if steps == 0:
            latents = jnp.broadcast_to(z0, (2 * k, 1, z0.shape[0]))
            counts = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (2 * k,)), counts0)
            residual = jnp.broadcast_to(res_start, (2 * k, 1))
            lengths = jnp.zeros((2 * k, 0), z0.dtype)
        else:
            keys = jax.random.split(key_paths, 2 * k)
            latents, counts, residual, lengths = jax.vmap(one_path)(v0, keys)
    diagnostics = Diagnostics(*counts, residual)

    vary_d, fix_d = (), ()
    if distances:
        # One generator pass per frame serves every feature. The reference and the path points
        # go through one batched program: an unbatched ``feature(gen(z0))`` rounds differently
        # from its batched twin (≈ 1e-7 at t = 0 on CPU). Every path starts at z0 exactly, so
        # t = 0 is set to 0, not measured.
        feats = problem.vary + problem.fix
        flat = latents.reshape(-1, latents.shape[-1])
        values = jax.vmap(lambda z: (lambda img: [jnp.ravel(f(img)) for f in feats])(gen(z)))(flat)
        dists = tuple(
            jnp.linalg.norm(v - v[:1], axis=-1).reshape(latents.shape[:2]).at[:, 0].set(0.0)
            for v in values
        )
        vary_d, fix_d = dists[: len(problem.vary)], dists[len(problem.vary) :]
    return Trajectories(latents, vary_d, fix_d, start.values, diagnostics, lengths)


def traverse_one(
    generator: Callable[[Array], Array],
    z0: Array,
    key: Array,
    *,
    vary: Callable | Sequence[Callable],
    fix: Sequence[Callable] = (),
    method: str | None = None,
    path: str = "local",
    k: int = 1,
    steps: int = 10,
    step_size: float | Array = 0.1,
    solver: Solver | str = "dense",
    distances: bool = True,
    step_target: float | None = None,
    correct: int = 0,
    step_min: float | None = None,
    cg_iters: int = 8,
    preset: str | None = None,
    **options: Any,
) -> Trajectories:
    """The traversal from ONE start latent: pure, no ``vmap``/``jit``/sharding inside.

    ``jax.jit(jax.vmap(...))`` it yourself (as :class:`reds_jax.jobs.experiment.Experiment` does);
    the arguments are validated from shapes only (the latent's values are not checked: pass finite
    ones). :func:`traverse` is this function vmapped, jitted and sharded.

    Args:
      generator: pure ``z [d] -> image [H, W, C]``.
      z0: ``[d]`` start latent.
      key: PRNG key of this latent.
      vary, fix, method, path, k, steps, solver, step_target, correct, step_min, cg_iters,
        preset, **options: see :func:`traverse` (``cap_k`` does not apply here: the shapes are
        fixed).
      step_size: step length (may be traced; ``step_target`` and ``step_min`` may be too, but
        whether ``step_target`` is None is static).
      distances: also measure feature distances along the paths (``False`` skips those
        generator passes; the distance tuples are then empty).

    Returns:
      :class:`Trajectories` without the leading ``N``: ``latents [2k, T+1, d]``, distances
      ``[2k, T+1]``, ``values [k]``, diagnostics ``[2k]`` (``residual [2k, T+1]``).

    >>> import jax
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> one = lambda z: traverse_one(g, z, jax.random.key(0), vary=features.pixels(),
    ...                              method="maxc", steps=2, distances=False).latents
    >>> jax.jit(jax.vmap(one))(jnp.zeros((5, 2))).shape
    (5, 2, 3, 2)
    """
    z0 = jnp.asarray(z0)
    if z0.ndim != 1:
        raise ValueError(f"z0 must be one latent of shape [d]; got shape {z0.shape}.")
    _check_path(path, steps)
    if not isinstance(step_size, jax.core.Tracer):
        step_size = number(step_size, "step_size", low=0.0, open_low=True)
    vary_t = _as_features(vary, "vary", allow_empty=False)
    fix_t = _as_features(fix, "fix", allow_empty=True)
    method, options = presets.resolve(preset, method, options)
    problem, solver = _make_config(
        generator, z0, vary_t, fix_t, method, k, options, solver, step_size
    )
    control, target, lo = _control(step_size, step_target, step_min, correct, cg_iters, fix_t)
    return _paths(
        problem, solver, path, int(steps), step_size, z0, key, distances, control, target, lo
    )


def _control(step_size, step_target, step_min, correct, cg_iters, fix):
    traced = isinstance(step_size, jax.core.Tracer)
    size = 1.0 if traced else float(step_size)
    control, target, lo = check_control(size, step_target, step_min, correct, cg_iters, bool(fix))
    if traced and step_min is None:
        lo = 0.01 * step_size
    return control, target, lo


# ---------------------------------------------------------------------------------------------
# Public edge: jit, vmap, shard


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
    return jax.vmap(lambda zi, ki: _directions(problem, solver, zi, ki))(z, keys)


_directions_jit = jax.jit(_directions_batch, static_argnums=(0, 1))


def _traverse_batch(
    problem, solver, path, steps, distances, control, step_size, target, lo, z, keys
):
    def one(zi, ki):
        return _paths(
            problem, solver, path, steps, step_size, zi, ki, distances, control, target, lo
        )

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
    """``[N]`` rows in the method's own span at each start latent (for ``cap_k``)."""

    def one(zi, ki):
        if traversal:  # traverse's start solve uses the first half of the latent's key
            ki = jax.random.split(ki)[0]
        return jnp.sum(solver.system(problem, zi, ki, at_start=True)[2])

    return jax.vmap(one)(z, keys)


_span_ranks_jit = jax.jit(_span_ranks, static_argnums=(0, 1, 4))


def _cap_k(problem, solver, batch, keys, n, traversal) -> int:
    """``k`` cut to the smallest span rank over the starts (``cap_k=True``; dense only)."""
    if not isinstance(solver, Dense):
        return problem.k
    if isinstance(batch, jax.core.Tracer):  # the rank is data: it cannot set a shape under jit
        warnings.warn(
            f"cap_k=True is skipped under jit/vmap (k stays {problem.k}): call traverse or "
            "directions on concrete latents to cap k, or pass cap_k=False.",
            UserWarning,
            stacklevel=4,
        )
        return problem.k
    ranks = _span_ranks_jit(problem, solver, batch, keys, traversal)
    what = {
        "nullspace": f"the beta_vary={problem.beta_vary} span inside the fixed null space",
        "maxc": f"the beta_vary={problem.beta_vary} span of the varied Gram",
        "minf": "the fixed features' null space",
    }.get(problem.method, "the direction system")
    return presets.cap_k(problem.k, int(jnp.min(ranks[:n])), what=what)


def _prepare(generator, z, vary, fix, method, k, key, options, solver, preset, step_size=None):
    """Validate the shared arguments (before tracing); batch, key and shard the latents.

    Returns ``(problem, solver, latents [N', d], keys [N'], N)``: ``N'`` is ``N`` padded to a
    multiple of the device count.
    """
    method, options = presets.resolve(preset, method, options)
    vary_t = _as_features(vary, "vary", allow_empty=False)
    fix_t = _as_features(fix, "fix", allow_empty=True)
    solver_arg = solver
    problem, solver = _make_config(
        generator, z, vary_t, fix_t, method, k, options, solver_arg, step_size
    )
    batch = z if z.ndim == 2 else z[None]
    keys = _keys(key, batch.shape[0], method)
    batch_s, n = shard_batch(batch)
    keys_s, _ = shard_batch(keys)
    if flag(options.get("cap_k", False), "cap_k"):
        capped = _cap_k(problem, solver, batch_s, keys_s, n, step_size is not None)
        if capped != problem.k:
            problem, solver = _make_config(
                generator, z, vary_t, fix_t, method, capped, options, solver_arg, step_size
            )
    return problem, solver, batch_s, keys_s, n


def _unbatch(out, n: int, single: bool):
    return jax.tree_util.tree_map(lambda x: x[0] if single else x[:n], out)


def directions(
    generator: Callable[[Array], Array],
    z: Array,
    *,
    vary: Callable | Sequence[Callable],
    fix: Sequence[Callable] = (),
    method: str | None = None,
    k: int = 1,
    key: Array | None = None,
    solver: Solver | str = "dense",
    preset: str | None = None,
    **options: Any,
) -> Directions:
    """Top-``k`` REDs (or baseline) directions at one or many latents.

    Args:
      generator: pure ``z [d] -> image [H, W, C]``.
      z: ``[d]`` or ``[N, d]`` latents.
      vary: feature(s) ``image -> array`` to change.
      fix: features to hold fixed.
      method: ``"reds"`` (Rayleigh form; the default), ``"nullspace"`` (reference form),
        ``"maxc"``, ``"minf"`` or ``"random"`` (needs ``key``); None: the preset's, else ``"reds"``.
      k: number of directions.
      key: PRNG key (``random``; ``MatrixFree(cold_start="iterative")``; per-latent keys are
        split from it).
      solver: a solver object, :class:`~reds_jax.core.solvers.Dense` (exact Grams and a dense
        eigen-solve at every latent; the default) or :class:`~reds_jax.core.solvers.MatrixFree`
        (``reds``/``maxc`` only: the same Rayleigh form from Gram-vector products ``Jᵀ(Jv)`` and
        a warm-started block LOBPCG along ``local`` paths), or the shorthand ``"dense"`` /
        ``"matrix_free"`` with the solver's options as keywords: ``mode``, ``chunk_size``,
        ``eps``, ``memory_budget``, ``max_d`` (dense); ``iters``, ``guard``, ``precond``,
        ``cold_start``, ``cold_iters``, ``probes``, ``sketch``, ``sketch_seed``, ``mode``,
        ``chunk_size``, ``tol``, ``max_iters``, ``cold_tol``, ``dense_start_max_d``
        (matrix-free; see the classes). An option of the other solver, or solver keywords next
        to a solver object, is a ValueError. ``mode="fd_official"`` (dense): the reference's
        finite differences, central at the start latent and forward along a path, with step
        ``eps`` (in :func:`traverse`: the step size, unless ``eps`` is given).
      preset: None (reds_jax's defaults) or ``"official"``: the reference code's defaults
        (:mod:`reds_jax.core.presets`); explicit arguments override it.
      **options: problem options ``weights`` (per fixed feature, default 1), ``vary_weights``,
        ``normalize`` (Frobenius-normalise each Gram, default True), ``ridge`` (default 1e-6),
        ``beta_fix`` (default 0.99), ``beta_vary`` (default None: no cut), ``local_span``
        (``"k"`` or ``"system"``: see the module docstring), ``minf_mode`` (``"sum"``, default,
        or the reference's ``"union"``: :func:`reds_jax.core.rayleigh.minf_union_system`),
        ``random_dist`` (``"orthogonal"``, default, or the reference's ``"uniform"``),
        ``gram_noise`` (default 0; the reference's 1e-9, drawn from ``key``), ``cap_k`` (default
        False: cut ``k`` to the method's span rank at the start latents, with a warning), and the
        solver keywords above.

    Returns:
      :class:`Directions` with ``values [..., k]``, ``vectors [..., k, d]`` and ``diagnostics``.

    >>> import jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> dirs = directions(g, jnp.zeros(2), vary=features.pixels(), method="maxc")
    >>> dirs.vectors.shape, int(dirs.diagnostics.solve_fallback)
    ((1, 2), 0)
    """
    z = _check_latents(z, "z")
    problem, solver, batch_s, keys_s, n = _prepare(
        generator, z, vary, fix, method, k, key, options, solver, preset
    )
    out = _directions_jit(problem, solver, batch_s, keys_s)
    return _unbatch(out, n, z.ndim == 1)


def traverse(
    generator: Callable[[Array], Array],
    z0: Array,
    *,
    vary: Callable | Sequence[Callable],
    fix: Sequence[Callable] = (),
    method: str | None = None,
    path: str = "local",
    k: int = 1,
    steps: int = 10,
    step_size: float = 0.1,
    key: Array | None = None,
    solver: Solver | str = "dense",
    distances: bool = True,
    step_target: float | None = None,
    correct: int = 0,
    step_min: float | None = None,
    cg_iters: int = 8,
    preset: str | None = None,
    **options: Any,
) -> Trajectories:
    """Traverse from start latents along the top-``k`` directions, both signs.

    One jit compile per configuration (generator, features, method, path, k, steps, solver,
    options); ``vmap`` over start latents, ``lax.scan`` over steps, and the batch is sharded over
    all local devices (``jax.local_devices()``) when there is more than one. For your own
    ``vmap``/``jit``, use :func:`traverse_one`.

    Args:
      generator: pure ``z [d] -> image [H, W, C]``.
      z0: ``[d]`` or ``[N, d]`` start latents.
      vary: feature(s) to change.
      fix: features to hold fixed.
      method: see :func:`directions`.
      path: ``"linear"`` or ``"local"``.
      k: number of directions (``2k`` paths per start latent).
      steps: number of steps ``T``.
      step_size: step length ``ε`` in latent units.
      key: PRNG key (see :func:`directions`).
      solver: ``reds_jax.Dense(...)``, ``reds_jax.MatrixFree(...)``, or ``"dense"`` /
        ``"matrix_free"`` with solver keywords (see :func:`directions`).
      distances: measure feature distances along the paths (``False``: skip those generator
        passes; the distance tuples are empty).
      step_target: feature-space steps: the varied features' distance from the start should
        grow by ``δ`` per step (``t·δ`` after ``t`` steps); each step's length is the linearised
        root (``δ / ‖J_vary v‖`` on a straight path, longer where the path turns or lags),
        clipped to ``[step_min, step_size]`` (so ``step_size`` becomes the cap). ``None``
        (default): every step has length ``step_size``. See :mod:`reds_jax.core.control`.
      correct: Gauss–Newton corrector iterations after each step that pull the fixed features
        back towards their start values, orthogonally to the direction and each no longer than
        that step (0, default: none; needs ``fix``). See :mod:`reds_jax.core.control`.
      step_min: the smallest step with ``step_target`` (default ``step_size / 100``).
      cg_iters: conjugate-gradient iterations per corrector iteration (default 8).
      preset: None or ``"official"`` (see :func:`directions`).
      **options: see :func:`directions`.

    Returns:
      :class:`Trajectories` with ``latents [N, 2k, T+1, d]`` (``[2k, T+1, d]`` for ``z0 [d]``),
      ``diagnostics`` (counts ``[N, 2k]``) and ``step_lengths [N, 2k, T]``.

    >>> import jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> tr = traverse(g, jnp.zeros(2), vary=features.pixels(), method="maxc", steps=3)
    >>> tr.latents.shape, len(tr.vary_distances), tr.diagnostics.kept_direction.tolist()
    ((2, 4, 2), 1, [0, 0])
    """
    z0 = _check_latents(z0, "z0")
    _check_path(path, steps)
    step_size = number(step_size, "step_size", low=0.0, open_low=True)
    problem, solver, batch_s, keys_s, n = _prepare(
        generator, z0, vary, fix, method, k, key, options, solver, preset, float(step_size)
    )
    _check_traverse_memory(problem, z0, n, steps, distances)
    control, target, lo = _control(step_size, step_target, step_min, correct, cg_iters, problem.fix)
    out = _traverse_jit(
        problem, solver, path, int(steps), bool(distances), control,
        float(step_size), target, lo, batch_s, keys_s,
    )  # fmt: skip
    return _unbatch(out, n, z0.ndim == 1)
