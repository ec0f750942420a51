"""A small flow-matching (rectified-flow) model of the procedural living rooms, trained here.

:class:`RoomsVelocityUNet` is a U-Net velocity model ``v(x [32, 32, 3], t) -> dx/dt`` (images in
[-1, 1]; sinusoidal time embedding; one residual block with GroupNorm per resolution 32, 16, 8 and
a middle block at 8; skip connections by concatenation). It is trained by
``python -m reds_jax.train flow`` on fresh :func:`reds_jax.generators.sample_dataset` renders with
the rectified-flow loss ``|v(x_t, t) - (x_1 - z)|²``, ``x_t = t x_1 + (1 - t) z`` (see
``benchmarks/results/rooms_flow/README.md`` for the command, wall time and measured quality).

:func:`rooms_flow` loads the shipped weights (``reds_jax/weights/rooms_flow.msgpack``, an
exponential moving average of the parameters) after checking their sha256 and returns the pure
generator ``z [3072] -> image [64, 64, 3]``: the noise ``z`` (a 32 x 32 x 3 image of standard
normals, flattened) is integrated by :func:`reds_jax.generators.flow.flow` with a few Euler or
Heun steps and the 32-px result is mapped to [0, 1] and bilinearly upsampled to 64 px, so the
rooms features, segmenter, regressor and judge (all 64 px) apply to it unchanged.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from reds_jax.generators.flow import flow, flow_passes
from reds_jax.weights import SHA256, WeightsError, load_weights, weights_path

__all__ = [
    "MATRIX_FREE_OPTIONS",
    "RoomsFlow",
    "RoomsVelocityUNet",
    "WeightsError",
    "rooms_flow",
]

ROOMS_FLOW_FILE = "rooms_flow.msgpack"
SAMPLER_STEPS, SAMPLER_METHOD = 2, "euler"
"""Default sampler of :func:`rooms_flow` (the ``--model rooms_flow`` demo's budget sets it)."""
MATRIX_FREE_OPTIONS: dict[str, int] = {"cold_iters": 20, "max_iters": 4}
"""Matrix-free solver options used with this model by default (``reds-jax`` jobs, the suite)."""


def time_embedding(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding ``t [N] -> [N, dim]`` (frequencies 1 .. 1000 on ``1000 t``)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(1000.0) * jnp.arange(half, dtype=t.dtype) / half)
    arg = 1000.0 * t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


def _group_norm(groups: int, x: jax.Array, **kw) -> jax.Array:
    # statistics and scale in the input's dtype (flax promotes them to float32, or casts the
    # scale to param_dtype: either breaks float64 inputs under strict dtype promotion)
    return nn.GroupNorm(groups, param_dtype=x.dtype, force_float32_reductions=False, **kw)(x)


class _ResBlock(nn.Module):
    channels: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        h = nn.Conv(self.channels, (3, 3))(nn.silu(_group_norm(self.groups, x)))
        h = h + nn.Dense(self.channels)(temb)[:, None, None, :]
        h = nn.Conv(self.channels, (3, 3))(nn.silu(_group_norm(self.groups, h)))
        if x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1))(x)
        return x + h


class RoomsVelocityUNet(nn.Module):
    """U-Net velocity model ``(x [N, S, S, 3], t [N]) -> v [N, S, S, 3]``.

    Attributes:
        channels: channels at resolutions ``S, S/2, S/4, ...`` (one residual block each on the way
            down and on the way up).
        temb_dim: width of the time embedding.
        groups: GroupNorm groups (divides every entry of ``channels``).
    """

    channels: Sequence[int] = (16, 32, 64)
    temb_dim: int = 128
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        """Velocity of a batch.

        Args:
            x: ``[N, S, S, 3]`` noised images (``S`` divisible by ``2^(len(channels) - 1)``).
            t: ``[N]`` times in [0, 1].

        Returns:
            ``[N, S, S, 3]`` velocities.
        """
        temb = time_embedding(jnp.asarray(t, x.dtype), self.temb_dim // 2)
        temb = nn.Dense(self.temb_dim)(nn.silu(nn.Dense(self.temb_dim)(temb)))
        temb = nn.silu(temb)
        h = nn.Conv(self.channels[0], (3, 3), name="conv_in")(x)
        skips = []
        for i, c in enumerate(self.channels):
            h = _ResBlock(c, self.groups, name=f"down_{i}")(h, temb)
            skips.append(h)
            if i + 1 < len(self.channels):
                h = nn.Conv(self.channels[i + 1], (3, 3), strides=(2, 2), name=f"pool_{i}")(h)
        h = _ResBlock(self.channels[-1], self.groups, name="mid")(h, temb)
        for i in reversed(range(len(self.channels))):
            if i + 1 < len(self.channels):
                n, s, _, c = h.shape
                h = jax.image.resize(h, (n, 2 * s, 2 * s, c), method="nearest")
            h = jnp.concatenate([h, skips[i]], axis=-1)
            h = _ResBlock(self.channels[i], self.groups, name=f"up_{i}")(h, temb)
        h = nn.silu(_group_norm(self.groups, h, name="norm_out"))
        return nn.Conv(3, (3, 3), kernel_init=nn.initializers.zeros, name="conv_out")(h)


class RoomsFlow(NamedTuple):
    """The shipped living-room flow model, as a generator.

    Attributes:
        generator: pure ``z [3072] -> image [size_out, size_out, 3]`` (about [0, 1]; not clipped).
        velocity: pure ``velocity(params, x [32, 32, 3], t []) -> dx/dt`` in model space [-1, 1].
        module: the :class:`RoomsVelocityUNet`.
        params: its Flax variables (``{"params": ...}``), float32.
        latent_dim: ``32 * 32 * 3 = 3072``.
        steps: sampler steps.  method: sampler method.
        passes: velocity-model passes per generated image (``steps`` x evaluations per step).
    """

    generator: Callable[[jax.Array], jax.Array]
    velocity: Callable[[Any, jax.Array, jax.Array], jax.Array]
    module: RoomsVelocityUNet
    params: dict[str, Any]
    latent_dim: int
    steps: int
    method: str
    passes: int


def unet_velocity(module: RoomsVelocityUNet, params: Any, x: jax.Array, t: jax.Array) -> jax.Array:
    """One-sample velocity ``x [S, S, 3], t [] -> [S, S, 3]`` of ``module`` (for :func:`flow`)."""
    return module.apply(params, x[None], jnp.reshape(t, (1,)))[0]


def to_image(x: jax.Array, size_out: int) -> jax.Array:
    """Model space [-1, 1] ``[S, S, 3]`` -> image ``[size_out, size_out, 3]`` about [0, 1]."""
    image = 0.5 * (x + 1.0)
    if size_out != x.shape[0]:
        image = jax.image.resize(image, (size_out, size_out, 3), method="linear")
    return image


def rooms_flow(
    path: str | os.PathLike[str] | None = None,
    *,
    steps: int = SAMPLER_STEPS,
    method: str = SAMPLER_METHOD,
    size_out: int = 64,
    remat: bool = True,
    sha256: str | None = "shipped",
) -> RoomsFlow:
    """Loads the shipped living-room flow model (sha256-checked) as a pure generator.

    Args:
        path: weights file; defaults to the one shipped in ``reds_jax/weights/``.
        steps: sampler steps (default 2; quality vs. cost in
            ``benchmarks/results/rooms_flow/README.md``).
        method: sampler method, one of :data:`reds_jax.generators.flow.FLOW_METHODS`.
        size_out: output size; the 32-px sample is bilinearly upsampled (64 suits the rooms
            features and judge; 32 returns the model's own resolution).
        remat: rematerialise each sampler step (see :func:`reds_jax.generators.flow.flow`).
        sha256: expected digest; ``"shipped"`` (default) is the shipped file's, None skips the check.

    Returns:
        A :class:`RoomsFlow`; ``generator(z [3072]) -> [size_out, size_out, 3]``, computed in the
        dtype of ``z``.

    Raises:
        WeightsError: missing or corrupt weights.

    >>> fm = rooms_flow(steps=1, method="euler")
    >>> fm.generator(jnp.zeros(fm.latent_dim, jnp.float32)).shape, fm.passes
    ((64, 64, 3), 1)
    """
    module = RoomsVelocityUNet()
    size = 32
    template = jax.eval_shape(
        module.init,
        jax.random.PRNGKey(0),
        jnp.zeros((1, size, size, 3), jnp.float32),
        jnp.zeros((1,), jnp.float32),
    )
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), template)
    if sha256 == "shipped":
        sha256 = SHA256[ROOMS_FLOW_FILE]
    params = load_weights(path or weights_path(ROOMS_FLOW_FILE), sha256, template)
    velocity = functools.partial(unet_velocity, module)
    generator = flow(
        velocity,
        params,
        (size, size, 3),
        steps=steps,
        method=method,
        remat=remat,
        postprocess=functools.partial(to_image, size_out=size_out),
    )
    return RoomsFlow(
        generator,
        velocity,
        module,
        params,
        size * size * 3,
        steps,
        method,
        flow_passes(steps, method),
    )
