"""Paper-scale benchmark problems: StyleGAN2 (FFHQ architectures, seeded random weights) in W, W+
and StyleSpace with the paper's face features (:mod:`paper_scale`).

No StyleGAN2 or ArcFace weights can be had offline, but compute and memory depend on the
architecture, not on the weights: the networks here are the real architectures
(:class:`reds_jax.generators.StyleGAN2Config`, :class:`reds_jax.features.arcface.IResNet`) with seeded
random weights, and ``noise_mode="const"``. A converted checkpoint goes through the same code
(:func:`reds_jax.generators.stylegan2`, :func:`reds_jax.features.arcface`).

Scales (``SCALES``):

* ``"256"``: FFHQ 256 px as stylegan2-ada-pytorch's ``paper256`` configuration (channel base
  16384, max 512: channels 512, 512, 512, 512, 256, 128, 64), 14 ws, iresnet-50 at 112 px.
* ``"1024"``: FFHQ 1024 px as StyleGAN2 config F (channel base 32768, max 512: 512 ×5, 256, 128,
  64, 32), 18 ws, iresnet-50 at 112 px.
* ``"cpu"``: the reduced configuration benchmarked on a 2-core CPU: the same architecture at
  128 px (12 ws), channels capped at 64 (one generator pass ≈ 0.1 s there), iresnet-50 (same depth
  and widths) on a 64 px face crop.
* ``"cpu-small"``: what this project's 2-core CI machine finishes: 64 px (10 ws), channels
  capped at 32, iresnet-50 on a 32 px face crop.
* ``"tiny"``: 16 px, 8 channels, w_dim 384 (W+ d = 2304), iresnet stages of one block (tests).

Everywhere ``w_dim = z_dim = 512`` (384 at ``tiny``) and an 8-layer mapping network.

Experiments (``EXPERIMENTS``), boxes as ``(top, left, height, width)`` relative to the image:

* ``"hair"``: vary the pixels of the hair box ``HAIR_BOX``; fix the ArcFace identity of the face
  crop ``FACE_BOX`` and the pixels of the background (everything outside both boxes).
* ``"frequency"``: vary the Gaussian low-pass (``σ = H/32``, at most 8 px), fix the high-pass
  (grayscale minus its low-pass, ``σ = H/64``, at most 4 px).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "EXPERIMENTS",
    "FACE_BOX",
    "HAIR_BOX",
    "SCALES",
    "Scale",
    "ffhq_config",
    "paper_features",
    "paper_generator",
    "paper_problem",
    "start_latents",
]

FACE_BOX = (0.25, 0.2, 0.65, 0.6)  # aligned FFHQ faces: brows to chin
HAIR_BOX = (0.02, 0.2, 0.22, 0.6)  # above the face box
EXPERIMENTS = ("hair", "frequency")


@dataclasses.dataclass(frozen=True)
class Scale:
    """One benchmark scale: generator and identity-network sizes."""

    resolution: int
    channel_base: int
    channel_max: int
    w_dim: int = 512
    arcface_input: int = 112
    arcface_layers: tuple[int, ...] = (3, 4, 14, 3)  # iresnet-50
    arcface_widths: tuple[int, ...] = (64, 128, 256, 512)


SCALES = {
    "tiny": Scale(
        16,
        128,
        8,
        w_dim=384,
        arcface_input=16,
        arcface_layers=(1, 1, 1, 1),
        arcface_widths=(4, 4, 4, 4),
    ),  # fmt: skip
    "cpu": Scale(128, 16384, 64, arcface_input=64),
    "cpu-small": Scale(64, 16384, 32, arcface_input=32),
    "256": Scale(256, 16384, 512),
    "1024": Scale(1024, 32768, 512),
}


def _scale(name: str) -> Scale:
    if name not in SCALES:
        raise ValueError(f"scale {name!r} is unknown; pass one of {sorted(SCALES)}.")
    return SCALES[name]


def ffhq_config(scale: str):
    """The :class:`~reds_jax.generators.StyleGAN2Config` of a scale (NVlabs channel rule
    ``min(channel_base // res, channel_max)``, 8-layer mapping, ``w_dim = z_dim``).

    >>> cfg = ffhq_config("1024")
    >>> cfg.num_ws, cfg.channels[-4:]
    (18, (256, 128, 64, 32))
    >>> ffhq_config("256").num_ws, ffhq_config("cpu").num_ws
    (14, 12)
    """
    from reds_jax.generators import StyleGAN2Config

    s = _scale(scale)
    res = [2**i for i in range(2, int(np.log2(s.resolution)) + 1)]
    channels = tuple(min(s.channel_base // r, s.channel_max) for r in res)
    return StyleGAN2Config(
        s.resolution, z_dim=s.w_dim, w_dim=s.w_dim, channels=channels, mapping_layers=8
    )


@functools.cache
def _stylegan2_variables(scale: str, seed: int) -> Any:
    """Seeded random variables of a scale's StyleGAN2 (shared by its three spaces).

    ``StyleGAN2.init`` draws every weight from N(0, 1) (the equalised-learning-rate convention) and
    leaves ``noise_strength`` at zero; here the noise strengths are 0.1 (so the const noise enters
    the compute as in a trained net) and the toRGB weights are scaled so that the summed skip
    outputs stay mostly within ``[-1, 1]`` (unclipped gradients, as in a trained net).
    """
    from reds_jax.generators import StyleGAN2

    cfg = ffhq_config(scale)
    z = jnp.zeros((cfg.z_dim,), jnp.float32)
    variables = jax.jit(StyleGAN2(cfg).init)(jax.random.key(seed), z)
    n_blocks = len(cfg.resolutions)

    def adjust(path, x):
        names = [getattr(p, "key", "") for p in path]
        if names[-1] == "noise_strength":
            return jnp.full_like(x, 0.1)
        if "torgb" in names and names[-1] == "weight":
            return x * jnp.asarray(0.5 / np.sqrt(n_blocks), x.dtype)
        return x

    return jax.tree_util.tree_map_with_path(adjust, variables)


def paper_generator(scale: str, space: str, seed: int = 0):
    """A scale's StyleGAN2 with seeded random weights in ``space`` (``"w"``, ``"w+"``, ``"s"``).

    Returns:
      A :class:`~reds_jax.generators.StyleGAN2Generator` (``noise_mode="const"``, unclipped
      output so that saturated pixels of random weights do not zero the Jacobian).

    >>> g = paper_generator("tiny", "w+")
    >>> g.latent_dim, g.generator(g.from_z(jnp.ones(384))).shape
    (2304, (16, 16, 3))
    """
    from reds_jax.generators import stylegan2

    cfg = ffhq_config(scale)
    return stylegan2((cfg, _stylegan2_variables(scale, seed)), space=space, clip=False)


@functools.cache
def _identity_net(scale: str, seed: int):
    from reds_jax.features.arcface import IResNet, IResNetConfig, LoadedIResNet

    s = _scale(scale)
    cfg = IResNetConfig(
        layers=s.arcface_layers,
        widths=s.arcface_widths,
        stem=s.arcface_widths[0],
        input_size=s.arcface_input,
    )
    x = jnp.zeros((cfg.input_size, cfg.input_size, 3), jnp.float32)
    variables = jax.jit(IResNet(cfg).init)(jax.random.key(seed + 1), x)

    def adjust(path, w):
        # IResNet.init draws every kernel from N(0, 0.1²), which explodes through 50 layers:
        # fan-in scaled kernels and damped residual branches keep activations O(1).
        names = [getattr(p, "key", "") for p in path]
        if names[-1] in ("kernel", "fc_kernel"):
            fan_in = int(np.prod(w.shape[:-1]))
            return w * jnp.asarray(1.0 / (0.1 * np.sqrt(fan_in)), w.dtype)
        if names[-2:] == ["bn3", "scale"]:
            return w * jnp.asarray(0.3, w.dtype)
        return w

    variables = jax.tree_util.tree_map_with_path(adjust, variables)
    return LoadedIResNet(IResNet(cfg), variables, cfg)


def paper_features(
    scale: str, experiment: str, seed: int = 0
) -> tuple[tuple[Callable, ...], tuple[Callable, ...]]:
    """``(vary, fix)`` feature tuples of an experiment at a scale (see the module docstring).

    >>> vary, fix = paper_features("tiny", "hair")
    >>> [f.name for f in vary], len(fix)
    (['region:0.02,0.2,0.22,0.6'], 2)
    """
    from reds_jax import features as F

    s = _scale(scale)
    h = s.resolution
    if experiment == "hair":
        mask = np.ones((h, h), np.float32)
        for top, left, bh, bw in (FACE_BOX, HAIR_BOX):
            t, lo = int(round(top * h)), int(round(left * h))
            mask[t : t + max(1, int(round(bh * h))), lo : lo + max(1, int(round(bw * h)))] = 0.0
        identity = F.arcface(_identity_net(scale, seed), box=FACE_BOX)
        return (F.region(HAIR_BOX),), (identity, F.region(mask=jnp.asarray(mask)))
    if experiment == "frequency":
        return (F.lowpass(min(h / 32, 8.0)),), (F.highpass(min(h / 64, 4.0)),)
    raise ValueError(f"experiment {experiment!r} is unknown; pass one of {EXPERIMENTS}.")


def start_latents(g, n: int, seed: int = 0, dtype: Any = jnp.float32) -> Array:
    """``[n, d]`` start latents in ``g``'s space: ``g.from_z`` of seeded standard-normal ``z``."""
    z = jax.random.normal(jax.random.key(seed), (n, g.config.z_dim), dtype)
    return jax.jit(jax.vmap(g.from_z))(z)


def paper_problem(scale: str, experiment: str, space: str, seed: int = 0):
    """``(generator, vary, fix, d, g)``: the callable, feature tuples, latent size and the
    :class:`~reds_jax.generators.StyleGAN2Generator` of one benchmark problem."""
    g = paper_generator(scale, space, seed)
    vary, fix = paper_features(scale, experiment, seed)
    return g.generator, vary, fix, g.latent_dim, g
