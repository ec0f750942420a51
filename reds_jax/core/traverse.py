"""REDs directions and traversals: one-sample solve and step, ``lax.scan`` over steps, ``vmap`` and
device sharding over start latents at the public edge.

Paths (for each of the top-``k`` directions at the start latent, with both signs: ``2k`` paths,
ordered ``[+v1, -v1, +v2, -v2, …]``):

* ``"linear"``: ``z_t = z_0 + t·ε·v``.
* ``"local"``: after the first step, directions are recomputed at every latent; the previous
  direction is projected onto the *span* of the new system, renormalised, and flipped if it turned
  backwards. If the projection vanishes or is not finite, the previous direction is kept
  (documented fallback).

The span (option ``local_span``): ``"k"`` — the new top-``k`` directions; ``"system"`` — the
method's own span, re-selected at every step as the reference code does: the ``beta_vary`` span
for ``nullspace``/``maxc`` (leading directions explaining ``beta_vary`` of the squared spectrum),
the whole null space for ``minf_mode="union"``, all of ``R^d`` otherwise. Default: ``"system"``
when ``beta_vary`` is given (``nullspace``, ``maxc``) or ``minf_mode="union"``, else ``"k"``.
``preset="official"`` (:mod:`reds_jax.core.presets`) sets every reference default at once.

Every step has length ``step_size``.
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

from reds_jax.core import matrix_free, presets, rayleigh
from reds_jax.core.jacobians import check_mode, feature_grams, point_mode

Array = jax.Array

METHODS = ("reds", "nullspace", "maxc", "minf", "random")
PATHS = ("linear", "local")
OPTIONS = matrix_free.OPTIONS + (
    "weights",
    "vary_weights",
    "normalize",
    "ridge",
    "beta_fix",
    "beta_vary",
    "mode",
    "chunk_size",
    "eps",
    "local_span",
    "minf_mode",
    "random_dist",
    "gram_noise",
    "cap_k",
)
LOCAL_SPANS = ("k", "system")


class Directions(NamedTuple):
    """Top-``k`` directions at a latent (leading batch dims follow ``z``).

    Attributes:
      values: ``[..., k]`` scores, best first (Rayleigh quotients for ``reds``; eigenvalues of the
        projected varied Gram for ``nullspace``; of the varied Gram for ``maxc``; negated fixed
        eigenvalues for ``minf``; zeros for ``random``).
      vectors: ``[..., k, d]`` unit-norm directions.
    """

    values: Array
    vectors: Array


class Trajectories(NamedTuple):
    """Traversals from start latents (leading ``N`` dropped when ``z0`` was one latent ``[d]``).

    Attributes:
      latents: ``[N, 2k, T+1, d]``; step 0 is ``z0``; paths ordered ``[+v1, -v1, +v2, -v2, …]``.
      vary_distances: one ``[N, 2k, T+1]`` array per varied feature: ``‖f(G(z_t)) − f(G(z_0))‖``.
      fix_distances: one ``[N, 2k, T+1]`` array per fixed feature.
      values: ``[N, k]`` scores of the start directions (see :class:`Directions`).
    """

    latents: Array
    vary_distances: tuple[Array, ...]
    fix_distances: tuple[Array, ...]
    values: Array


@dataclasses.dataclass(frozen=True)
class _Config:
    method: str
    k: int
    span: int  # rows of the directions system used as the local-path span
    weights: tuple[float, ...]
    vary_weights: tuple[float, ...]
    normalize: bool
    ridge: float
    beta_fix: tuple[float, ...]
    beta_vary: float | None
    mode: str
    chunk_size: int | None
    eps: float
    solver: str = "dense"
    mf: matrix_free.MFConfig | None = None  # matrix-free options (solver="matrix_free")
    minf_mode: str = "sum"
    random_dist: str = "orthogonal"
    gram_noise: float = 0.0
    cap_k: bool = False
    local_span: str = "k"


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
    vals = (float(x),) * n if np.ndim(x) == 0 else tuple(float(v) for v in np.ravel(x))
    if len(vals) != n:
        raise ValueError(f"{name} needs {n} values (one per feature) or one scalar; got {x!r}.")
    if not all(lo <= v <= hi and math.isfinite(v) for v in vals):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}]; got {x!r}.")
    return vals


def _check_latents(z: Any, name: str) -> Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.result_type(float))
    if z.ndim not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [d] or [N, d]; got shape {z.shape}.")
    if not isinstance(z, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(z))):
        raise ValueError(f"{name} contains non-finite values (NaN/inf); pass finite latents.")
    return z


def _feature_size(generator: Callable, feature: Callable, z: Array) -> int:
    out = jax.eval_shape(lambda v: feature(generator(v)), z)
    return int(np.prod(out.shape))


def _make_config(generator, z, vary, fix, method, k, options, solver="dense") -> _Config:
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; valid options are {OPTIONS}.")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a REDs method; pass one of {METHODS}.")
    mf = matrix_free.check_solver(solver, method, options)
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
    mode = options.get("mode", "auto")
    check_mode(mode)
    if solver == "matrix_free" and mode.startswith("fd"):
        raise ValueError(
            f"solver='matrix_free' uses exact products; mode={mode!r} is for solver='dense' only."
        )
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
    one = z[0] if z.ndim == 2 else z
    m_vary = sum(_feature_size(generator, f, one) for f in vary)
    limit = min(d, m_vary) if method in ("reds", "nullspace", "maxc") else d
    if not isinstance(k, int | np.integer) or not 1 <= k <= limit:
        raise ValueError(
            f"k={k!r} is out of range for method={method!r}: pass 1 <= k <= {limit} "
            f"(latent size d={d}, varied feature size m={m_vary})."
        )
    for f in fix:
        _feature_size(generator, f, one)
    chunk = options.get("chunk_size")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk_size must be a positive int or None; got {chunk!r}.")
    ridge = float(options.get("ridge", 1e-6))
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0; got {ridge!r}.")
    beta_vary = options.get("beta_vary")
    if beta_vary is not None:
        beta_vary = _float_tuple(beta_vary, 1, "beta_vary", 1.0, 1e-12, 1.0)[0]
    local_span = options.get("local_span")
    if local_span is None:
        own = (method in ("nullspace", "maxc") and beta_vary is not None) or (
            method == "minf" and minf_mode == "union"
        )
        local_span = "system" if own else "k"
    if local_span not in LOCAL_SPANS:
        raise ValueError(f"local_span={local_span!r} is not valid; pass one of {LOCAL_SPANS}.")
    span = d if local_span == "system" else int(k)
    return _Config(
        method=method,
        k=int(k),
        span=span,
        weights=_float_tuple(options.get("weights"), len(fix), "weights", 1.0, 0.0, math.inf),
        vary_weights=_float_tuple(
            options.get("vary_weights"), len(vary), "vary_weights", 1.0, 0.0, math.inf
        ),
        normalize=bool(options.get("normalize", True)),
        ridge=ridge,
        beta_fix=_float_tuple(options.get("beta_fix"), len(fix), "beta_fix", 0.99, 1e-12, 1.0),
        beta_vary=beta_vary,
        mode=mode,
        chunk_size=chunk,
        eps=float(options.get("eps", 1e-3)),
        solver=solver,
        mf=mf,
        minf_mode=minf_mode,
        random_dist=random_dist,
        gram_noise=float(gram_noise),
        cap_k=bool(options.get("cap_k", False)),
        local_span=local_span,
    )


# ---------------------------------------------------------------------------------------------
# One latent


def _system(generator, vary, fix, cfg: _Config, z: Array, key: Array, jac=None):
    """Full sorted direction system at one latent: ``values [d]``, ``vectors [d, d]``, ``valid [d]``.

    ``valid`` marks the method's own span (see the module docstring); ``jac`` is the Jacobian
    ``(mode, eps)`` at this latent (default ``(cfg.mode, cfg.eps)``; see ``point_mode``).
    """
    d = z.shape[0]
    mode, eps = (cfg.mode, cfg.eps) if jac is None else jac
    ones = jnp.ones((d,), z.dtype)
    if cfg.method == "random":
        values, vectors = rayleigh.random_system(key, d, z.dtype, cfg.random_dist)
        return values, vectors, ones
    feats = (vary if cfg.method != "minf" else ()) + (fix if cfg.method != "maxc" else ())
    grams = feature_grams(generator, feats, z, mode=mode, chunk_size=cfg.chunk_size, eps=eps)
    if cfg.gram_noise:  # the reference's 1e-9·randn(d, d) before normalising (seeded by `key`)
        noise = jax.random.normal(jax.random.fold_in(key, 7), grams.shape, z.dtype)
        grams = grams + cfg.gram_noise * noise
    if cfg.normalize:
        grams = jax.vmap(rayleigh.normalize_gram)(grams)
    n_vary = 0 if cfg.method == "minf" else len(vary)
    a_vary = jnp.einsum("k,kij->ij", jnp.asarray(cfg.vary_weights, z.dtype), grams[:n_vary])
    a_fix = grams[n_vary:]
    weights = jnp.asarray(cfg.weights, z.dtype)
    beta_fix = jnp.asarray(cfg.beta_fix, z.dtype)
    valid = ones
    if cfg.method == "maxc":
        values, vectors = rayleigh.maxc_system(a_vary)
        valid = rayleigh.beta_span(values, ones, cfg.beta_vary)
    elif cfg.method == "minf" and cfg.minf_mode == "union":
        values, vectors, valid = rayleigh.minf_union_system(a_fix, weights, beta_fix=beta_fix)
    elif cfg.method == "minf":
        values, vectors = rayleigh.minf_system(a_fix, weights)
    elif cfg.method == "nullspace":
        values, vectors, valid = rayleigh.nullspace_system(
            a_vary, a_fix, beta_fix=beta_fix, beta_vary=cfg.beta_vary
        )
    else:
        b = jnp.einsum("k,kij->ij", weights, a_fix) if fix else jnp.zeros((d, d), z.dtype)
        values, vectors = rayleigh.rayleigh_system(a_vary, b, ridge=cfg.ridge)
    return values, vectors, valid


def _local_step(generator, vary, fix, cfg, step_size, key, carry, t):
    z, v = carry
    jac = point_mode(cfg.mode, cfg.eps, step_size, at_start=False)
    _, vectors, span = _system(generator, vary, fix, cfg, z, jax.random.fold_in(key, t), jac)
    p = rayleigh.project_onto_span(v, vectors[: cfg.span], span[: cfg.span])
    norm = jnp.linalg.norm(p)
    p = p / jnp.where(norm > 0, norm, jnp.ones_like(norm))
    p = jnp.where(jnp.dot(p, v) < 0, -p, p)
    ok = (norm > 1e-8) & jnp.all(jnp.isfinite(p))
    v_new = jnp.where(ok, p, v)
    z_new = z + step_size * v_new
    return (z_new, v_new), z_new


def _traverse_one(generator, vary, fix, cfg, path, steps, step_size, z0, key):
    """Paths from one latent: ``latents [2k, T+1, d]``, distances, start values ``[k]``."""
    k = cfg.k
    key0, key_paths = jax.random.split(key)
    if cfg.solver == "matrix_free":
        values, vectors, ctx = matrix_free.start(generator, vary, fix, cfg, z0, key0)
    else:
        jac = point_mode(cfg.mode, cfg.eps, step_size, at_start=True)
        values, vectors, _ = _system(generator, vary, fix, cfg, z0, key0, jac)
    signs = jnp.tile(jnp.asarray([1.0, -1.0], z0.dtype), k)
    v0 = jnp.repeat(vectors[:k], 2, axis=0) * signs[:, None]  # [2k, d]
    size = jnp.asarray(step_size, z0.dtype)
    if path == "local" and steps >= 2 and cfg.solver == "matrix_free":
        latents = matrix_free.local_paths(generator, cfg, ctx, steps, size, z0, v0, vectors)
    elif path == "linear" or steps < 2:
        t = jnp.arange(steps + 1, dtype=z0.dtype) * size
        latents = z0[None, None, :] + t[None, :, None] * v0[:, None, :]
    else:

        def one_path(v, pkey):
            z1 = z0 + size * v
            step = lambda c, t: _local_step(generator, vary, fix, cfg, size, pkey, c, t)  # noqa: E731
            _, zs = jax.lax.scan(step, (z1, v), jnp.arange(1, steps))
            return jnp.concatenate([z0[None], z1[None], zs], axis=0)

        latents = jax.vmap(one_path)(v0, jax.random.split(key_paths, 2 * k))

    def distances(feature):
        ref = jnp.ravel(feature(generator(z0)))
        f = lambda z: jnp.linalg.norm(jnp.ravel(feature(generator(z))) - ref)  # noqa: E731
        return jax.vmap(jax.vmap(f))(latents)

    return (
        latents,
        tuple(distances(f) for f in vary),
        tuple(distances(f) for f in fix),
        values[:k],
    )


# ---------------------------------------------------------------------------------------------
# Public edge: jit, vmap, shard


def _shard_batch(x: Array) -> tuple[Array, int]:
    """Pad the leading axis to a multiple of the device count and shard it across devices."""
    devices = jax.devices()
    n = x.shape[0]
    if len(devices) == 1 or isinstance(x, jax.core.Tracer):
        return x, n
    pad = (-n) % len(devices)
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
    mesh = Mesh(np.asarray(devices), ("batch",))
    spec = PartitionSpec("batch", *([None] * (x.ndim - 1)))
    return jax.device_put(x, NamedSharding(mesh, spec)), n


def _directions_batch(generator, vary, fix, cfg, z, keys):
    def one(zi, ki):
        if cfg.solver == "matrix_free":
            values, vectors, _ = matrix_free.start(generator, vary, fix, cfg, zi, ki)
        else:
            jac = point_mode(cfg.mode, cfg.eps, None, at_start=True)
            values, vectors, _ = _system(generator, vary, fix, cfg, zi, ki, jac)
        return values[: cfg.k], vectors[: cfg.k]

    return jax.vmap(one)(z, keys)


_directions_jit = jax.jit(_directions_batch, static_argnums=(0, 1, 2, 3))


def _traverse_batch(generator, vary, fix, cfg, path, steps, step_size, z, keys):
    fn = lambda zi, ki: _traverse_one(generator, vary, fix, cfg, path, steps, step_size, zi, ki)  # noqa: E731
    return jax.vmap(fn)(z, keys)


_traverse_jit = jax.jit(_traverse_batch, static_argnums=(0, 1, 2, 3, 4, 5))


def _keys(key, n: int, method: str) -> Array:
    if key is None:
        if method == "random":
            raise ValueError("method='random' needs a PRNG key: pass key=jax.random.key(0).")
        key = jax.random.key(0)
    if not jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    return jax.random.split(key, n)


def _span_ranks(generator, vary, fix, cfg, z, keys, step_size):
    """``[N]`` rows in the method's own span at each start latent (for ``cap_k``)."""

    def one(zi, ki):
        if step_size is not None:  # traverse: the start solve uses the first half of the key
            ki = jax.random.split(ki)[0]
        jac = point_mode(cfg.mode, cfg.eps, step_size, at_start=True)
        return jnp.sum(_system(generator, vary, fix, cfg, zi, ki, jac)[2])

    return jax.vmap(one)(z, keys)


_span_ranks_jit = jax.jit(_span_ranks, static_argnums=(0, 1, 2, 3))


def _cap_k(generator, vary, fix, cfg, batch, keys, n, step_size):
    """``cfg`` with ``k`` cut to the smallest span rank over the starts (``cap_k=True``)."""
    if not cfg.cap_k or cfg.solver != "dense":
        return cfg
    if isinstance(batch, jax.core.Tracer):  # the rank is data: it cannot set a shape under jit
        warnings.warn(
            f"cap_k=True is skipped under jit/vmap (k stays {cfg.k}): call traverse/directions "
            "on concrete latents to cap k, or pass cap_k=False.",
            UserWarning,
            stacklevel=4,
        )
        return cfg
    ranks = _span_ranks_jit(generator, vary, fix, cfg, batch, keys, step_size)
    what = {
        "nullspace": f"the beta_vary={cfg.beta_vary} span inside the fixed null space",
        "maxc": f"the beta_vary={cfg.beta_vary} span of the varied Gram",
        "minf": "the fixed features' null space",
    }.get(cfg.method, "the direction system")
    k = presets.cap_k(cfg.k, int(jnp.min(ranks[:n])), what=what)
    if k == cfg.k:
        return cfg
    return dataclasses.replace(cfg, k=k, span=cfg.span if cfg.local_span == "system" else k)


def _prepare(generator, z, vary, fix, method, k, key, options, solver, preset, step_size=None):
    """Validate the shared arguments (before tracing); batch, key and shard the latents.

    Returns ``(vary, fix, config, latents [N', d], keys [N'], N)``: ``N'`` is ``N`` padded to a
    multiple of the device count.
    """
    method, options = presets.resolve(preset, method, options)
    vary_t = _as_features(vary, "vary", allow_empty=False)
    fix_t = _as_features(fix, "fix", allow_empty=True)
    cfg = _make_config(generator, z, vary_t, fix_t, method, k, options, solver)
    batch = z if z.ndim == 2 else z[None]
    keys = _keys(key, batch.shape[0], method)
    batch_s, n = _shard_batch(batch)
    keys_s, _ = _shard_batch(keys)
    cfg = _cap_k(generator, vary_t, fix_t, cfg, batch_s, keys_s, n, step_size)
    return vary_t, fix_t, cfg, batch_s, keys_s, n


def directions(
    generator: Callable[[Array], Array],
    z: Array,
    *,
    vary: Callable | Sequence[Callable],
    fix: Sequence[Callable] = (),
    method: str | None = None,
    k: int = 1,
    key: Array | None = None,
    solver: str = "dense",
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
      key: PRNG key (``random``; ``solver="matrix_free"`` with ``cold_start="iterative"``;
        per-latent keys are split from it).
      solver: ``"dense"`` (exact Grams and a dense eigen-solve at every latent) or
        ``"matrix_free"`` (``reds``/``maxc`` only: the same Rayleigh form from Gram-vector
        products ``Jᵀ(Jv)`` and a warm-started block LOBPCG along ``local`` paths; see
        :mod:`reds_jax.core.matrix_free`).
      preset: None (reds_jax's defaults) or ``"official"``: the reference code's defaults
        (:mod:`reds_jax.core.presets`); explicit arguments override it.
      **options: ``weights`` (per fixed feature, default 1), ``vary_weights``, ``normalize``
        (Frobenius-normalise each Gram, default True), ``ridge`` (default 1e-6), ``beta_fix``
        (default 0.99), ``beta_vary`` (default None: no cut), ``mode`` (Jacobian mode, default
        ``"auto"``; ``"fd"``, ``"fd_forward"``, ``"fd_official"``), ``chunk_size``, ``eps`` (finite
        difference step; ``fd_official`` uses the step size in :func:`traverse`), ``local_span``
        (``"k"`` or ``"system"``, see the module docstring), ``minf_mode`` (``"sum"``, default, or
        the reference's ``"union"``; :func:`reds_jax.core.rayleigh.minf_union_system`),
        ``random_dist`` (``"orthogonal"``, default, or the reference's ``"uniform"``),
        ``gram_noise`` (default 0; the reference's 1e-9, seeded by ``key``), ``cap_k`` (default
        False: cut ``k`` to the method's span rank at the start latents, with a warning). With
        ``solver="matrix_free"`` also ``iters`` (LOBPCG iterations per step, default 1),
        ``guard`` (extra block columns, default 1), ``cold_start`` (``"dense"`` default, or
        ``"iterative"``), ``cold_iters`` (default 50), ``probes`` (Hutchinson probes for the
        iterative start, default 8), ``sketch`` (rows ``m'`` of a Gaussian sketch of each larger
        fixed feature, default None) and ``sketch_seed`` (default 0).

    Returns:
      :class:`Directions` with ``values [..., k]`` and ``vectors [..., k, d]``.

    >>> import jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> dirs = directions(g, jnp.zeros(2), vary=features.pixels(), method="maxc")
    >>> dirs.vectors.shape
    (1, 2)
    """
    z = _check_latents(z, "z")
    vary_t, fix_t, cfg, batch_s, keys_s, n = _prepare(
        generator, z, vary, fix, method, k, key, options, solver, preset
    )
    values, vectors = _directions_jit(generator, vary_t, fix_t, cfg, batch_s, keys_s)
    values, vectors = values[:n], vectors[:n]
    if z.ndim == 1:
        values, vectors = values[0], vectors[0]
    return Directions(values, vectors)


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
    solver: str = "dense",
    preset: str | None = None,
    **options: Any,
) -> Trajectories:
    """Traverse from start latents along the top-``k`` directions, both signs.

    One jit compile per configuration (generator, features, method, path, k, steps, options);
    ``vmap`` over start latents, ``lax.scan`` over steps, and the batch is sharded over all local
    devices (``jax.devices()``) when there is more than one.

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
      solver: ``"dense"`` or ``"matrix_free"`` (see :func:`directions`).
      preset: None or ``"official"`` (see :func:`directions`).
      **options: see :func:`directions`.

    Returns:
      :class:`Trajectories` with ``latents [N, 2k, T+1, d]`` (``[2k, T+1, d]`` for ``z0 [d]``).

    >>> import jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> tr = traverse(g, jnp.zeros(2), vary=features.pixels(), method="maxc", steps=3)
    >>> tr.latents.shape, len(tr.vary_distances)
    ((2, 4, 2), 1)
    """
    z0 = _check_latents(z0, "z0")
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not a traversal path; pass one of {PATHS}.")
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}.")
    if not (np.ndim(step_size) == 0 and math.isfinite(float(step_size)) and step_size > 0):
        raise ValueError(f"step_size must be a finite number > 0; got {step_size!r}.")
    vary_t, fix_t, cfg, batch_s, keys_s, n = _prepare(
        generator, z0, vary, fix, method, k, key, options, solver, preset, float(step_size)
    )
    out = _traverse_jit(
        generator, vary_t, fix_t, cfg, path, int(steps), float(step_size), batch_s, keys_s
    )
    out = jax.tree_util.tree_map(lambda x: x[:n] if z0.ndim == 2 else x[0], out)
    return Trajectories(*out)
