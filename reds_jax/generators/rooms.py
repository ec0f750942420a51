"""Procedural living rooms: a differentiable renderer with exact ground-truth factors.

A room is a back wall (vertically striped wallpaper) with a window, a wooden floor, a floor lamp
and a sofa, lit by an ambient term, the lamp and the window. It is described by a factor vector of
``NUM_FACTORS = 15`` entries, ordered as :data:`FACTOR_NAMES`, with plausible ranges in
:data:`FACTOR_RANGES` (``[F, 2]``, columns ``low, high``). Positions and sizes are fractions of the
image width / height (``x`` runs left to right, ``y`` top to bottom):

=====  ==================  ============  ===================================================
index  name                range         meaning
=====  ==================  ============  ===================================================
0-2    wall_r/g/b          0.35 - 0.95   wall albedo (red, green, blue)
3      floor_brightness    0.15 - 0.65   floor albedo scale (warm wood tint)
4      sofa_x              0.25 - 0.75   sofa centre
5      sofa_width          0.25 - 0.50   sofa width
6      sofa_height         0.12 - 0.24   sofa seat height (backrest adds ~45 %)
7-9    sofa_r/g/b          0.10 - 0.90   sofa albedo (red, green, blue)
10     lamp_x              0.08 - 0.92   floor lamp centre
11     lamp_brightness     0.00 - 1.00   lamp glow strength (also brightens its shade)
12     window_x            0.20 - 0.80   window centre
13     global_light        0.50 - 1.00   multiplies all shading
14     stripe_phase        0.00 - 1.00   wallpaper stripe phase, in periods
=====  ==================  ============  ===================================================

Every edge is a sigmoid whose 10-90 % rise spans a few pixels (``softness``), so :func:`render` is
smooth in every factor and can be differentiated with ``jax.jacfwd`` / ``jax.jacrev``. Values
outside the ranges still render (no clipping) but are out of distribution. The image is exactly
``albedo * shading`` with ``albedo`` the mask-weighted object colours, so where an object's mask is
~1 the pixel equals that object's colour times the shading (see :func:`render_scene`). All
functions are pure JAX, for one sample; ``jax.vmap`` them for batches.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_FACTOR_TABLE = (
    ("wall_r", 0.35, 0.95),
    ("wall_g", 0.35, 0.95),
    ("wall_b", 0.35, 0.95),
    ("floor_brightness", 0.15, 0.65),
    ("sofa_x", 0.25, 0.75),
    ("sofa_width", 0.25, 0.50),
    ("sofa_height", 0.12, 0.24),
    ("sofa_r", 0.10, 0.90),
    ("sofa_g", 0.10, 0.90),
    ("sofa_b", 0.10, 0.90),
    ("lamp_x", 0.08, 0.92),
    ("lamp_brightness", 0.00, 1.00),
    ("window_x", 0.20, 0.80),
    ("global_light", 0.50, 1.00),
    ("stripe_phase", 0.00, 1.00),
)

FACTOR_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _FACTOR_TABLE)
"""Names of the factor vector's entries, in order."""
NUM_FACTORS: int = len(FACTOR_NAMES)
"""Length ``F`` of a factor vector."""
FACTOR_RANGES: np.ndarray = np.array([[lo, hi] for _, lo, hi in _FACTOR_TABLE], dtype=np.float64)
"""``[F, 2]`` read-only array of ``(low, high)`` per factor; the unit cube maps onto these boxes."""
FACTOR_RANGES.setflags(write=False)
MASK_NAMES: tuple[str, ...] = ("wall", "window", "floor", "lamp", "sofa")
"""Keys of :func:`render_masks`; the visible masks partition the image (they sum to 1)."""

_IDX = {name: i for i, name in enumerate(FACTOR_NAMES)}

# Fixed scene layout (fractions of the image) and colours.
_HORIZON = 0.62
_SOFA_BOTTOM = 0.92
_WINDOW = (0.11, 0.10, 0.40)  # half width, top, bottom
_SHADE = (0.055, 0.28, 0.38)  # half width, top, bottom
_POLE = (0.014, 0.86)  # half width, bottom (top is the shade's bottom)
_STRIPE_PERIODS = 8.0
_RISE_10_90 = 2.0 * float(np.log(9.0))  # sigmoid(x / s) rises from 0.1 to 0.9 over 4.39 s
_SKY_RGB = (0.72, 0.86, 1.0)
_FLOOR_TINT = (1.0, 0.78, 0.55)
_SHADE_RGB = (1.0, 0.9, 0.6)
_POLE_RGB = (0.25, 0.25, 0.27)

# Deterministic wood-grain texture: a fixed, seeded sum of plane waves (resolution independent).
_grain_rng = np.random.default_rng(20220125)
_GRAIN_FREQ = np.stack(
    [_grain_rng.uniform(0.3, 2.5, 6), _grain_rng.uniform(6.0, 16.0, 6)], axis=1
)  # [K, 2] cycles per image along (x, y)
_GRAIN_PHASE = _grain_rng.uniform(0.0, 2.0 * np.pi, 6)  # [K]
del _grain_rng


class RoomScene(NamedTuple):
    """A rendered room and its decomposition; ``S`` is the image size.

    Attributes:
        image: ``[S, S, 3]`` in [0, 1], equal to ``albedo * shading[..., None]``.
        albedo: ``[S, S, 3]`` mask-weighted object colours (textured wall and floor).
        shading: ``[S, S]`` lighting in [0, 1] (global light x (ambient + lamp + window)).
        masks: dict ``name -> [S, S]`` visible soft masks for :data:`MASK_NAMES`, summing to 1.
    """

    image: jax.Array
    albedo: jax.Array
    shading: jax.Array
    masks: dict[str, jax.Array]


def _float_dtype(x: jax.Array) -> jnp.dtype:
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.floating):
        return dtype
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_last_axis(x, fn_name: str, what: str, *, vector: bool) -> jax.Array:
    x = jnp.asarray(x)
    x = x.astype(_float_dtype(x))
    ok = x.shape == (NUM_FACTORS,) if vector else (x.ndim >= 1 and x.shape[-1] == NUM_FACTORS)
    if not ok:
        want = f"shape ({NUM_FACTORS},)" if vector else f"shape [..., {NUM_FACTORS}]"
        hint = " For a batch, use jax.vmap." if vector else ""
        raise ValueError(
            f"{fn_name} expects {what} of {want}, one entry per factor in FACTOR_NAMES="
            f"{FACTOR_NAMES}; got shape {x.shape}.{hint}"
        )
    return x


def _range_columns(ndim: int, dtype) -> tuple[jax.Array, jax.Array]:
    shape = (1,) * (ndim - 1) + (NUM_FACTORS,)
    low = jnp.asarray(FACTOR_RANGES[:, 0], dtype).reshape(shape)
    width = jnp.asarray(FACTOR_RANGES[:, 1] - FACTOR_RANGES[:, 0], dtype).reshape(shape)
    return low, width


def unit_to_factors(unit: jax.Array) -> jax.Array:
    """Maps unit-cube coordinates onto factor values, ``low + unit * (high - low)`` per factor.

    Args:
        unit: ``[..., F]`` coordinates; [0, 1] covers each factor's range in
            :data:`FACTOR_RANGES`.

    Returns:
        ``[..., F]`` factor values (same dtype as ``unit`` when floating).

    >>> unit_to_factors(jnp.full((NUM_FACTORS,), 0.5)).shape
    (15,)
    """
    unit = _check_last_axis(unit, "unit_to_factors", "unit-cube coordinates", vector=False)
    low, width = _range_columns(unit.ndim, unit.dtype)
    return low + unit * width


def factors_to_unit(factors: jax.Array) -> jax.Array:
    """Maps factor values into unit-cube coordinates; the inverse of :func:`unit_to_factors`.

    Args:
        factors: ``[..., F]`` factor values ordered as :data:`FACTOR_NAMES`.

    Returns:
        ``[..., F]`` coordinates, in [0, 1] for factors inside :data:`FACTOR_RANGES`.

    >>> factors_to_unit(unit_to_factors(jnp.zeros((2, NUM_FACTORS)))).shape
    (2, 15)
    """
    factors = _check_last_axis(factors, "factors_to_unit", "factors", vector=False)
    low, width = _range_columns(factors.ndim, factors.dtype)
    return (factors - low) / width


def _interval(x: jax.Array, lo, hi, soft) -> jax.Array:
    """Soft indicator of ``lo < x < hi`` with sigmoid edges of width ``soft``."""
    return jax.nn.sigmoid((x - lo) / soft) * jax.nn.sigmoid((hi - x) / soft)


def _box(u, v, x0, x1, y0, y1, soft) -> jax.Array:
    """``[S, S]`` soft box; ``u`` (x) and ``v`` (y) are ``[S]`` pixel-centre coordinates."""
    return _interval(v, y0, y1, soft)[:, None] * _interval(u, x0, x1, soft)[None, :]


def _union(*masks: jax.Array) -> jax.Array:
    out = jnp.zeros_like(masks[0])
    for m in masks:
        out = 1.0 - (1.0 - out) * (1.0 - m)
    return out


def _rgb(value, dtype) -> jax.Array:
    """``[1, 1, 3]`` colour for broadcasting against ``[S, S, 3]``."""
    return jnp.asarray(value, dtype).reshape(1, 1, 3)


def render_scene(factors: jax.Array, *, size: int = 64, softness: float = 2.5) -> RoomScene:
    """Renders one room and returns the image with its albedo, shading and visible masks.

    Args:
        factors: ``[F]`` factor vector ordered as :data:`FACTOR_NAMES` (see :data:`FACTOR_RANGES`).
        size: image height and width ``S`` in pixels.
        softness: 10-90 % rise width of the sigmoid edges, in pixels.

    Returns:
        A :class:`RoomScene` with ``image [S, S, 3]``, ``albedo [S, S, 3]``, ``shading [S, S]`` and
        ``masks`` (dict of ``[S, S]``).

    >>> scene = render_scene(unit_to_factors(jnp.full((NUM_FACTORS,), 0.5)), size=16)
    >>> scene.image.shape, sorted(scene.masks)
    ((16, 16, 3), ['floor', 'lamp', 'sofa', 'wall', 'window'])
    """
    f = _check_last_axis(factors, "render_scene", "a factor vector", vector=True)
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be a Python int >= 2 (pixels per side); got {size!r}.")
    dtype = f.dtype
    g = {name: f[i] for name, i in _IDX.items()}
    soft = softness / (_RISE_10_90 * size)  # sigmoid scale, in image fractions
    u = (jnp.arange(size, dtype=dtype) + 0.5) / size  # [S] x of pixel centres
    v = u  # [S] y of pixel centres
    uu, vv = u[None, :], v[:, None]  # [1, S], [S, 1]
    ones = jnp.ones((size, size), dtype)

    # Back to front: wall, window, floor, lamp pole, lamp shade, sofa.
    stripe = 0.92 + 0.08 * jnp.cos(2.0 * jnp.pi * (_STRIPE_PERIODS * u + g["stripe_phase"]))  # [S]
    wall_rgb = jnp.stack([g["wall_r"], g["wall_g"], g["wall_b"]]).reshape(1, 1, 3)
    wall = (ones, (ones * stripe[None, :])[:, :, None] * wall_rgb)

    ww, wt, wb = _WINDOW
    wx = g["window_x"]
    window = (_box(u, v, wx - ww, wx + ww, wt, wb, soft), ones[:, :, None] * _rgb(_SKY_RGB, dtype))

    freq = jnp.asarray(_GRAIN_FREQ, dtype)  # [K, 2]
    phase = jnp.asarray(_GRAIN_PHASE, dtype).reshape(1, 1, -1)  # [1, 1, K]
    cycles = uu[:, :, None] * freq[None, None, :, 0] + vv[:, :, None] * freq[None, None, :, 1]
    grain = 1.0 + 0.08 * jnp.mean(jnp.sin(2.0 * jnp.pi * cycles + phase), axis=-1)  # [S, S]
    floor_alb = (grain * g["floor_brightness"])[:, :, None] * _rgb(_FLOOR_TINT, dtype)
    floor = (ones * jax.nn.sigmoid((vv - _HORIZON) / soft), floor_alb)

    lx, lb = g["lamp_x"], g["lamp_brightness"]
    sw, st, sb = _SHADE
    pw, pb = _POLE
    pole = (
        _box(u, v, lx - pw, lx + pw, sb - 0.01, pb, soft),
        ones[:, :, None] * _rgb(_POLE_RGB, dtype),
    )
    shade_alb = ones[:, :, None] * _rgb(_SHADE_RGB, dtype) * (0.55 + 0.45 * lb)
    shade = (_box(u, v, lx - sw, lx + sw, st, sb, soft), shade_alb)

    sx, hw, sh = g["sofa_x"], 0.5 * g["sofa_width"], g["sofa_height"]
    seat_top, back_top, arm_top = (
        _SOFA_BOTTOM - sh,
        _SOFA_BOTTOM - 1.45 * sh,
        _SOFA_BOTTOM - 1.15 * sh,
    )
    sofa_mask = _union(
        _box(u, v, sx - hw, sx + hw, seat_top, _SOFA_BOTTOM, soft),  # seat
        _box(u, v, sx - 0.9 * hw, sx + 0.9 * hw, back_top, seat_top + 0.02, soft),  # backrest
        _box(u, v, sx - hw, sx - 0.8 * hw, arm_top, _SOFA_BOTTOM, soft),  # left arm
        _box(u, v, sx + 0.8 * hw, sx + hw, arm_top, _SOFA_BOTTOM, soft),  # right arm
    )
    sofa_rgb = jnp.stack([g["sofa_r"], g["sofa_g"], g["sofa_b"]]).reshape(1, 1, 3)
    sofa = (sofa_mask, ones[:, :, None] * sofa_rgb)

    layers = (wall, window, floor, pole, shade, sofa)
    visible = []
    remaining = ones
    for mask, _ in reversed(layers):
        visible.append(mask * remaining)
        remaining = remaining * (1.0 - mask)
    visible = visible[::-1]  # back to front again; the wall (mask 1) absorbs the remainder
    albedo = sum(vis[:, :, None] * alb for vis, (_, alb) in zip(visible, layers, strict=True))

    d2_lamp = (uu - lx) ** 2 + (vv - 0.5 * (st + sb)) ** 2
    d2_window = (uu - wx) ** 2 + (vv - 0.5 * (wt + wb)) ** 2
    shading = g["global_light"] * (
        0.6
        + 0.25 * lb * jnp.exp(-d2_lamp / (2 * 0.22**2))
        + 0.15 * jnp.exp(-d2_window / (2 * 0.3**2))
    )
    masks = {
        "wall": visible[0],
        "window": visible[1],
        "floor": visible[2],
        "lamp": visible[3] + visible[4],
        "sofa": visible[5],
    }
    return RoomScene(albedo * shading[:, :, None], albedo, shading, masks)


def render(factors: jax.Array, *, size: int = 64, softness: float = 2.5) -> jax.Array:
    """Renders one room; smooth (differentiable) in every factor.

    Args:
        factors: ``[F]`` factor vector ordered as :data:`FACTOR_NAMES` (see :data:`FACTOR_RANGES`).
        size: image height and width ``S`` in pixels.
        softness: 10-90 % rise width of the sigmoid edges, in pixels.

    Returns:
        ``[S, S, 3]`` image in [0, 1] (for factors inside their ranges).

    >>> render(unit_to_factors(jnp.full((NUM_FACTORS,), 0.5))).shape
    (64, 64, 3)
    """
    return render_scene(factors, size=size, softness=softness).image


def render_masks(
    factors: jax.Array, *, size: int = 64, softness: float = 2.5
) -> dict[str, jax.Array]:
    """Visible soft object masks, consistent with :func:`render` (same edges and occlusion).

    Args:
        factors: ``[F]`` factor vector ordered as :data:`FACTOR_NAMES`.
        size: image height and width ``S`` in pixels.
        softness: 10-90 % rise width of the sigmoid edges, in pixels.

    Returns:
        dict ``name -> [S, S]`` in [0, 1] for ``wall, window, floor, lamp, sofa``; they sum to 1.

    >>> render_masks(unit_to_factors(jnp.full((NUM_FACTORS,), 0.5)), size=16)["sofa"].shape
    (16, 16)
    """
    return render_scene(factors, size=size, softness=softness).masks


@functools.partial(jax.jit, static_argnames=("n", "size"))
def _sample(key, noise, *, n: int, size: int):
    dtype = jnp.result_type(noise)
    k_factors, k_noise = jax.random.split(key)
    factors = unit_to_factors(jax.random.uniform(k_factors, (n, NUM_FACTORS), dtype))
    images = jax.vmap(functools.partial(render, size=size))(factors)
    images = images + noise * jax.random.normal(k_noise, images.shape, dtype)
    return jnp.clip(images, 0.0, 1.0), factors


def sample_dataset(
    key: jax.Array, n: int, *, size: int = 64, noise: float = 0.02
) -> tuple[jax.Array, jax.Array]:
    """Samples ``n`` rooms with factors uniform in :data:`FACTOR_RANGES`; reproducible per key.

    Args:
        key: PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
        n: number of images.
        size: image height and width ``S`` in pixels.
        noise: standard deviation of additive Gaussian pixel noise (the result is clipped to
            [0, 1]).

    Returns:
        ``(images [n, S, S, 3], factors [n, F])`` in the default float dtype.

    >>> images, factors = sample_dataset(jax.random.key(0), 4, size=16)
    >>> images.shape, factors.shape
    ((4, 16, 16, 3), (4, 15))
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive Python int (number of images); got {n!r}.")
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be a Python int >= 2 (pixels per side); got {size!r}.")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0; got {noise!r}.")
    noise_arr = jnp.asarray(noise, jax.dtypes.canonicalize_dtype(jnp.float64))
    return _sample(key, noise_arr, n=n, size=size)
