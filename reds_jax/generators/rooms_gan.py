"""A small GAN generator for the procedural living rooms, trained in this repository.

:class:`RoomsGANGenerator` is a mapping MLP (``z [64] -> w [256]``) followed by a convolutional
synthesis network: a learned ``4 x 4`` map from ``w``, then blocks of nearest-neighbour upsampling
and ``3 x 3`` convolutions with leaky ReLU and pixel-wise feature normalisation (as in ProGAN; no
batch statistics, so the generator is a pure function of one latent), up to ``64 x 64 x 3`` in
[0, 1]. It is trained by ``python -m reds_jax.train gan`` on :func:`reds_jax.generators.sample_dataset`
renders (see ``benchmarks/results/rooms_gan/README.md`` for settings, wall time and measured quality).

:func:`rooms_gan` loads the shipped weights (``reds_jax/weights/rooms_gan.msgpack``, an exponential
moving average of the generator's parameters) after checking their sha256, and returns a pure
``generator(z [64]) -> image [64, 64, 3]``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from reds_jax.weights import SHA256, WeightsError, load_weights, weights_path

__all__ = ["RoomsGAN", "RoomsGANGenerator", "WeightsError", "rooms_gan"]

ROOMS_GAN_FILE = "rooms_gan.msgpack"


def _pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Normalises each pixel's feature vector to unit root-mean-square (last axis)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


class RoomsGANGenerator(nn.Module):
    """Mapping MLP + upsample/conv synthesis; ``z [..., d] -> image [..., S, S, 3]`` in [0, 1].

    Attributes:
        latent_dim: ``d``, the latent size.
        size: output height and width ``S``; a power of two, at least 8.
        w_dim: width of the mapping MLP and of the intermediate latent ``w``.
        mapping_layers: number of dense layers in the mapping MLP.
        channels: channels at resolutions ``4, 8, 16, 32, 64, ...`` (one entry per resolution up
            to ``size``; extra entries are ignored).
        double_conv_max_res: resolutions up to this one get two convolutions per block.
    """

    latent_dim: int = 64
    size: int = 64
    w_dim: int = 256
    mapping_layers: int = 3
    channels: Sequence[int] = (128, 96, 48, 24, 12)
    double_conv_max_res: int = 8

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Generates images.

        Args:
            z: ``[..., d]`` latents (standard normal during training), floating point.

        Returns:
            ``[..., S, S, 3]`` images in [0, 1], in the dtype of ``z``.
        """
        if z.shape[-1:] != (self.latent_dim,):
            raise ValueError(
                f"RoomsGANGenerator expects latents of shape [..., {self.latent_dim}]; got {z.shape}."
            )
        n_res = self.size.bit_length() - 3  # number of 2x upsamplings from 4x4
        if self.size < 8 or self.size != 4 << n_res or len(self.channels) < n_res + 1:
            raise ValueError(
                f"size must be a power of two >= 8 with one channels entry per resolution from 4; "
                f"got size={self.size}, channels={tuple(self.channels)}."
            )
        batch = z.shape[:-1]
        act = functools.partial(jax.nn.leaky_relu, negative_slope=0.2)
        w = _pixel_norm(z.reshape(-1, self.latent_dim))
        for i in range(self.mapping_layers):
            w = act(nn.Dense(self.w_dim, name=f"map_{i}")(w))
        x = nn.Dense(16 * self.channels[0], name="const")(w).reshape(-1, 4, 4, self.channels[0])
        x = _pixel_norm(act(x))
        x = _pixel_norm(act(nn.Conv(self.channels[0], (3, 3), name="conv_4")(x)))
        res = 4
        for i in range(1, n_res + 1):
            res *= 2
            n, h, wd, c = x.shape
            x = jax.image.resize(x, (n, 2 * h, 2 * wd, c), method="nearest")
            x = _pixel_norm(act(nn.Conv(self.channels[i], (3, 3), name=f"conv_{res}a")(x)))
            if res <= self.double_conv_max_res:
                x = _pixel_norm(act(nn.Conv(self.channels[i], (3, 3), name=f"conv_{res}b")(x)))
        x = nn.Conv(3, (1, 1), name="to_rgb")(x)
        image = 0.5 * (jnp.tanh(x) + 1.0)
        return image.reshape(*batch, self.size, self.size, 3)


class RoomsGAN(NamedTuple):
    """The shipped living-room GAN generator.

    Attributes:
        generator: pure ``z [64] -> image [64, 64, 3]`` in [0, 1] (jit/vmap/jacfwd-able).
        module: the :class:`RoomsGANGenerator`.
        params: its Flax variables (``{"params": ...}``), float32.
        latent_dim: 64.
    """

    generator: Callable[[jax.Array], jax.Array]
    module: RoomsGANGenerator
    params: dict[str, Any]
    latent_dim: int


def _apply_one(module: RoomsGANGenerator, params: dict[str, Any], z: jax.Array) -> jax.Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise TypeError(
            f"Expected a floating-point latent, got dtype {z.dtype}; pass z.astype(float)."
        )
    if z.shape != (module.latent_dim,):
        raise ValueError(
            f"generator expects one latent of shape ({module.latent_dim},); got {z.shape}. "
            f"For a batch, use jax.vmap."
        )
    cast = jax.tree.map(lambda p: p.astype(z.dtype), params)
    return module.apply(cast, z)


def rooms_gan(
    path: str | os.PathLike[str] | None = None, *, sha256: str | None = "shipped"
) -> RoomsGAN:
    """Loads the shipped living-room GAN (sha256-checked) as a pure generator.

    Args:
        path: weights file; defaults to the one shipped in ``reds_jax/weights/``.
        sha256: expected digest; ``"shipped"`` (default) is the shipped file's, None skips the
            check (for your own retrained file).

    Returns:
        A :class:`RoomsGAN`; ``generator(z [64]) -> [64, 64, 3]`` in [0, 1], computed in the dtype
        of ``z`` (parameters are cast to it).

    Raises:
        WeightsError: missing or corrupt weights.

    >>> gan = rooms_gan()
    >>> gan.generator(jnp.zeros(gan.latent_dim, jnp.float32)).shape
    (64, 64, 3)
    """
    module = RoomsGANGenerator()
    template = jax.eval_shape(
        module.init, jax.random.PRNGKey(0), jnp.zeros((module.latent_dim,), jnp.float32)
    )
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), template)
    if sha256 == "shipped":
        sha256 = SHA256[ROOMS_GAN_FILE]
    params = load_weights(path or weights_path(ROOMS_GAN_FILE), sha256, template)
    return RoomsGAN(
        functools.partial(_apply_one, module, params), module, params, module.latent_dim
    )
