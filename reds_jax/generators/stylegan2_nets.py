"""StyleGAN2 (config F, "skip" generator) as Flax modules, for one sample at a time.

Mapping ``z [z_dim] -> w [w_dim]``: 2nd-moment normalisation, then ``mapping_layers`` equalised
fully connected layers (learning-rate multiplier ``mapping_lr_mul``, leaky ReLU 0.2 times
``sqrt(2)``). Synthesis ``ws [num_ws, w_dim] -> image [H, W, img_channels]``: a learned
``4 x 4`` constant, then per resolution ``r = 4, 8, ..., resolution`` a block of modulated /
demodulated 3 x 3 convolutions (the first of each block after ``4 x 4`` up-samples by a transposed
convolution followed by the FIR filter ``blur_kernel``, default ``[1, 3, 3, 1]``), noise inputs,
bias + leaky ReLU (optionally clamped to ``+-conv_clamp``), and a 1 x 1 modulated toRGB whose
output is added to the FIR-up-sampled image of the previous block (skip architecture).

``ws`` row ``i`` drives conv layer ``i`` and the toRGB after it shares the next row, as in both
PyTorch implementations: ``num_ws = 2 * log2(resolution) - 2``. The "style" of a layer is its
affine output ``A(w)`` (``[in_channels]``); ``styles`` concatenates them in layer order
``b4.conv1, b4.torgb, b8.conv0, b8.conv1, b8.torgb, ...`` (StyleSpace).

Parameters (collection ``params``) keep PyTorch's raw values with equalised-learning-rate gains
applied in the forward pass: ``mapping/fc{i}/{weight [in, out], bias [out]}``,
``synthesis/b4/const [4, 4, C]``, ``synthesis/b{r}/{conv0,conv1}/{affine/{weight,bias}, weight
[3, 3, in, out], bias [out], noise_strength []}``, ``synthesis/b{r}/torgb/{affine, weight
[1, 1, in, img_channels], bias}``. Collection ``buffers``: ``mapping/w_avg [w_dim]`` (truncation
centre) and ``synthesis/b{r}/conv*/noise_const [r, r]`` (the fixed noise of ``noise_mode="const"``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.generators.stylegan2_ops import clamp, fir_kernel, lrelu, modulated_conv, upfirdn2d

__all__ = [
    "NOISE_MODES",
    "MappingNetwork",
    "StyleGAN2",
    "StyleGAN2Config",
    "SynthesisNetwork",
]

NOISE_MODES = ("const", "none", "random")
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator (hashable: a Flax module attribute).

    Attributes:
        resolution: output size ``H = W``, a power of two >= 4.
        z_dim: input latent size.
        w_dim: intermediate latent (and style-code input) size.
        channels: feature channels per block, for resolutions ``4, 8, ..., resolution``.
        mapping_layers: fully connected layers in the mapping network.
        mapping_features: width of the hidden mapping layers (``None``: ``w_dim``).
        mapping_lr_mul: equalised learning-rate multiplier of the mapping (0.01 in both repos).
        img_channels: output channels.
        conv_clamp: clamp conv / toRGB outputs to ``+-conv_clamp`` (``None``: no clamp;
            stylegan2-ada-pytorch trains with 256).
        blur_kernel: 1-D FIR filter for up-sampling (outer product with itself, normalised).
    """

    resolution: int
    z_dim: int = 512
    w_dim: int = 512
    channels: tuple[int, ...] = ()
    mapping_layers: int = 8
    mapping_features: int | None = None
    mapping_lr_mul: float = 0.01
    img_channels: int = 3
    conv_clamp: float | None = None
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self):
        r = self.resolution
        if not (isinstance(r, int) and r >= 4 and r & (r - 1) == 0):
            raise ValueError(f"resolution must be a power of two >= 4; got {r!r}.")
        channels = self.channels or tuple(min(512, 16384 // res) for res in self.resolutions)
        object.__setattr__(self, "channels", tuple(int(c) for c in channels))
        object.__setattr__(self, "blur_kernel", tuple(int(k) for k in self.blur_kernel))
        if len(self.channels) != len(self.resolutions) or min(self.channels) < 1:
            raise ValueError(
                f"channels must give one positive width per resolution {self.resolutions}; "
                f"got {self.channels}."
            )
        for name in ("z_dim", "w_dim", "mapping_layers", "img_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)!r}.")
        if len(self.blur_kernel) < 2 or sum(self.blur_kernel) == 0:
            raise ValueError(f"blur_kernel must have >= 2 taps, nonzero sum: {self.blur_kernel}.")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Block resolutions ``(4, 8, ..., resolution)``."""
        return tuple(2**i for i in range(2, int(math.log2(self.resolution)) + 1))

    @property
    def num_ws(self) -> int:
        """Rows of ``ws`` (W+): ``2 * log2(resolution) - 2``."""
        return 2 * len(self.resolutions)

    @property
    def num_conv(self) -> int:
        """Noise-carrying conv layers: ``2 * len(resolutions) - 1``."""
        return 2 * len(self.resolutions) - 1

    @property
    def noise_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(r, r)`` of each conv layer's noise, in layer order."""
        return tuple((r, r) for r in self.resolutions for _ in range(1 if r == 4 else 2))

    @property
    def style_dims(self) -> tuple[int, ...]:
        """Style sizes in layer order ``b4.conv1, b4.torgb, b8.conv0, b8.conv1, b8.torgb, ...``."""
        dims: list[int] = []
        for i, c in enumerate(self.channels):
            dims += [c, c] if i == 0 else [self.channels[i - 1], c, c]
        return tuple(dims)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StyleGAN2Config:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"Unknown StyleGAN2Config fields {sorted(unknown)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class _FC(nn.Module):
    """Equalised fully connected layer: ``x @ (W * lr_mul / sqrt(in)) + b * lr_mul``."""

    in_features: int
    out_features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    activation: str = "linear"

    def setup(self):
        self.weight = self.param(
            "weight",
            nn.initializers.normal(1.0 / self.lr_mul),
            (self.in_features, self.out_features),
            jnp.float32,
        )
        self.bias = self.param(
            "bias", nn.initializers.constant(self.bias_init), (self.out_features,), jnp.float32
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        dt = x.dtype
        gain = self.lr_mul / math.sqrt(self.in_features)
        y = jnp.matmul(x, self.weight.astype(dt) * gain, precision=_HI)
        y = y + self.bias.astype(dt) * self.lr_mul
        return lrelu(y) if self.activation == "lrelu" else y


class _SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up) + noise + bias + lrelu (+ clamp)."""

    in_channels: int
    out_channels: int
    w_dim: int
    resolution: int
    up: bool
    conv_clamp: float | None
    blur_kernel: tuple[int, ...]

    def setup(self):
        self.affine = _FC(self.w_dim, self.in_channels, bias_init=1.0)
        self.weight = self.param(
            "weight",
            nn.initializers.normal(1.0),
            (3, 3, self.in_channels, self.out_channels),
            jnp.float32,
        )
        self.bias = self.param("bias", nn.initializers.zeros, (self.out_channels,), jnp.float32)
        self.noise_strength = self.param("noise_strength", nn.initializers.zeros, (), jnp.float32)
        r = self.resolution
        self.noise_const = self.variable(
            "buffers",
            "noise_const",
            lambda: jax.random.normal(self.make_rng("params"), (r, r), jnp.float32),
        )

    def style(self, w: jax.Array) -> jax.Array:
        return self.affine(w)

    def __call__(self, x: jax.Array, style: jax.Array, noise: jax.Array | None) -> jax.Array:
        dt = x.dtype
        y = modulated_conv(x, self.weight.astype(dt), style, demodulate=True, up=self.up)
        if self.up:
            kt = len(self.blur_kernel)
            p = kt - 2 - 2  # (filter taps - factor) - (kernel size - 1)
            y = upfirdn2d(y, fir_kernel(self.blur_kernel) * 4.0, pad=((p + 1) // 2 + 1, p // 2 + 1))
        if noise is not None:
            n = noise.astype(dt) * self.noise_strength.astype(dt)
            y = y + n.reshape(*n.shape, 1)
        y = lrelu(y + self.bias.astype(dt).reshape(1, 1, -1))
        return clamp(y, self.conv_clamp)


class _ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, style scaled by ``1 / sqrt(in)``, + bias."""

    in_channels: int
    img_channels: int
    w_dim: int
    conv_clamp: float | None

    def setup(self):
        self.affine = _FC(self.w_dim, self.in_channels, bias_init=1.0)
        self.weight = self.param(
            "weight",
            nn.initializers.normal(1.0),
            (1, 1, self.in_channels, self.img_channels),
            jnp.float32,
        )
        self.bias = self.param("bias", nn.initializers.zeros, (self.img_channels,), jnp.float32)

    def style(self, w: jax.Array) -> jax.Array:
        return self.affine(w)

    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        dt = x.dtype
        s = style * (1.0 / math.sqrt(self.in_channels))
        y = modulated_conv(x, self.weight.astype(dt), s, demodulate=False, up=False)
        return clamp(y + self.bias.astype(dt).reshape(1, 1, -1), self.conv_clamp)


class _SynthesisBlock(nn.Module):
    """One resolution: [const] / conv0 (up), conv1, toRGB (+ up-sampled skip)."""

    config: StyleGAN2Config
    index: int

    def setup(self):
        cfg, i = self.config, self.index
        res, out = cfg.resolutions[i], cfg.channels[i]
        common = dict(w_dim=cfg.w_dim, resolution=res, conv_clamp=cfg.conv_clamp)
        if i == 0:
            self.const = self.param("const", nn.initializers.normal(1.0), (4, 4, out), jnp.float32)
        else:
            cin = cfg.channels[i - 1]
            self.conv0 = _SynthesisLayer(cin, out, up=True, blur_kernel=cfg.blur_kernel, **common)
        self.conv1 = _SynthesisLayer(out, out, up=False, blur_kernel=cfg.blur_kernel, **common)
        self.torgb = _ToRGB(out, cfg.img_channels, cfg.w_dim, cfg.conv_clamp)

    def _layers(self) -> tuple[_SynthesisLayer, ...]:
        return (self.conv1,) if self.index == 0 else (self.conv0, self.conv1)

    def styles(self, ws: jax.Array) -> list[jax.Array]:
        """ws ``[n_layers + 1, w_dim]`` -> styles of the conv layers and the toRGB."""
        return [m.style(ws[j]) for j, m in enumerate((*self._layers(), self.torgb))]

    def noise_consts(self) -> list[jax.Array]:
        return [m.noise_const.value for m in self._layers()]

    def __call__(self, x, img, styles, noises):
        if self.index == 0:
            x = self.const.astype(styles[0].dtype)
        for m, s, n in zip(self._layers(), styles[:-1], noises, strict=True):
            x = m(x, s, n)
        y = self.torgb(x, styles[-1])
        if img is not None:
            img = upfirdn2d(
                img, fir_kernel(self.config.blur_kernel) * 4.0, up=2, pad=self._skip_pad()
            )
            y = img + y
        return x, y

    def _skip_pad(self) -> tuple[int, int]:
        p = len(self.config.blur_kernel) - 2
        return ((p + 1) // 2 + 1, p // 2)


class MappingNetwork(nn.Module):
    """``z [z_dim] -> w [w_dim]``; buffer ``w_avg [w_dim]`` is the truncation centre."""

    config: StyleGAN2Config

    def setup(self):
        cfg = self.config
        hidden = cfg.mapping_features or cfg.w_dim
        feats = [cfg.z_dim] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            fc = _FC(feats[i], feats[i + 1], lr_mul=cfg.mapping_lr_mul, activation="lrelu")
            setattr(self, f"fc{i}", fc)
        self.w_avg = self.variable("buffers", "w_avg", lambda: jnp.zeros((cfg.w_dim,), jnp.float32))

    def __call__(self, z: jax.Array) -> jax.Array:
        x = z * jax.lax.rsqrt(jnp.mean(jnp.square(z)) + 1e-8)
        for i in range(self.config.mapping_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisNetwork(nn.Module):
    """``ws [num_ws, w_dim]`` (or per-layer styles) -> raw image ``[H, W, img_channels]``."""

    config: StyleGAN2Config

    def setup(self):
        for i, res in enumerate(self.config.resolutions):
            setattr(self, f"b{res}", _SynthesisBlock(self.config, i))

    def _blocks(self) -> list[_SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.config.resolutions]

    def styles(self, ws: jax.Array) -> list[jax.Array]:
        """Per-layer styles ``[[c_4], [c_4], [c_4], [c_8], [c_8], ...]`` from ``ws``."""
        out: list[jax.Array] = []
        for i, block in enumerate(self._blocks()):
            start = max(2 * i - 1, 0)
            out += block.styles(ws[start : 2 * i + 2])
        return out

    def noise_consts(self) -> list[jax.Array]:
        """The stored ``noise_const`` buffers ``[r, r]`` in layer order."""
        return [n for block in self._blocks() for n in block.noise_consts()]

    def __call__(self, styles: Sequence[jax.Array], noises: Sequence[jax.Array | None]):
        x = img = None
        si = ni = 0
        for i, block in enumerate(self._blocks()):
            n_layers = 1 if i == 0 else 2
            x, img = block(x, img, styles[si : si + n_layers + 1], noises[ni : ni + n_layers])
            si, ni = si + n_layers + 1, ni + n_layers
        return img


class StyleGAN2(nn.Module):
    """StyleGAN2 generator for one sample; methods for each latent space.

    ``__call__(z)`` runs everything; :meth:`map`, :meth:`styles`, :meth:`synthesize` and
    :meth:`synthesize_styles` expose Z -> W+, W+ -> styles and W+ / styles -> image. Images are the
    raw network output (roughly ``[-1, 1]``), ``[H, W, img_channels]``, in the input's dtype.

    ``noise_mode``: ``"const"`` (the stored ``noise_const`` buffers), ``"none"`` (no noise), or
    ``"random"``, which needs ``noise``: one ``[r, r]`` array per conv layer
    (``config.noise_shapes``). Every mode is a deterministic function of its inputs.

    Attributes:
        config: the :class:`StyleGAN2Config`.
    """

    config: StyleGAN2Config

    def setup(self):
        self.mapping = MappingNetwork(self.config)
        self.synthesis = SynthesisNetwork(self.config)

    def __call__(
        self,
        z: jax.Array,
        truncation: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        noise: Sequence[jax.Array] | None = None,
    ) -> jax.Array:
        """``z [z_dim]`` -> image ``[H, W, C]``.

        >>> cfg = StyleGAN2Config(8, z_dim=4, w_dim=4, channels=(4, 4), mapping_layers=1)
        >>> v = jax.eval_shape(StyleGAN2(cfg).init, jax.random.key(0), jnp.zeros(4))
        >>> jax.eval_shape(StyleGAN2(cfg).apply, v, jnp.ones(4)).shape
        (8, 8, 3)
        """
        ws = self.map(z, truncation, truncation_cutoff)
        return self.synthesize(ws, noise_mode, noise)

    def map(
        self, z: jax.Array, truncation: float = 1.0, truncation_cutoff: int | None = None
    ) -> jax.Array:
        """``z [z_dim]`` -> ``ws [num_ws, w_dim]``, truncated towards ``w_avg`` in the first
        ``truncation_cutoff`` rows (all rows for ``None``): ``w_avg + truncation * (w - w_avg)``.
        """
        _check_latent(z, (self.config.z_dim,), "z")
        w = self.mapping(z)
        ws = jnp.broadcast_to(w[None], (self.config.num_ws, w.shape[0]))
        return self.truncate(ws, truncation, truncation_cutoff)

    def truncate(
        self, ws: jax.Array, truncation: float = 1.0, truncation_cutoff: int | None = None
    ) -> jax.Array:
        """``ws [num_ws, w_dim]`` pulled towards ``w_avg`` (identity for ``truncation == 1``)."""
        if truncation == 1.0:
            return ws
        avg = self.mapping.w_avg.value.astype(ws.dtype).reshape(1, -1)
        t = avg + jnp.asarray(truncation, ws.dtype) * (ws - avg)
        if truncation_cutoff is None:
            return t
        rows = (jnp.arange(ws.shape[0]) < truncation_cutoff).reshape(-1, 1)
        return jnp.where(rows, t, ws)

    def styles(self, ws: jax.Array) -> jax.Array:
        """``ws [num_ws, w_dim]`` -> concatenated styles ``[sum(config.style_dims)]``."""
        _check_latent(ws, (self.config.num_ws, self.config.w_dim), "ws")
        return jnp.concatenate(self.synthesis.styles(ws))

    def synthesize(
        self, ws: jax.Array, noise_mode: str = "const", noise: Sequence[jax.Array] | None = None
    ) -> jax.Array:
        """``ws [num_ws, w_dim]`` -> image ``[H, W, C]``."""
        return self.synthesize_styles(self.styles(ws), noise_mode, noise)

    def synthesize_styles(
        self, styles: jax.Array, noise_mode: str = "const", noise: Sequence[jax.Array] | None = None
    ) -> jax.Array:
        """Concatenated styles ``[sum(config.style_dims)]`` -> image ``[H, W, C]``."""
        dims = self.config.style_dims
        _check_latent(styles, (sum(dims),), "styles")
        split = np.cumsum(dims)[:-1].tolist()
        return self.synthesis(jnp.split(styles, split), self._noises(noise_mode, noise))

    def _noises(self, noise_mode: str, noise: Sequence[jax.Array] | None) -> list:
        shapes = self.config.noise_shapes
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode={noise_mode!r}; pass one of {NOISE_MODES}.")
        if noise_mode == "none":
            return [None] * len(shapes)
        if noise_mode == "const":
            return self.synthesis.noise_consts()
        got = None if noise is None else [tuple(np.shape(n)) for n in noise]
        if got != list(shapes):
            raise ValueError(
                f'noise_mode="random" needs noise: one array per conv layer with shapes {shapes}; '
                f"got {got}."
            )
        return list(noise)


def _check_latent(x: jax.Array, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape) != shape:
        raise ValueError(
            f"Expected {name} of shape {shape} (one sample), got {tuple(x.shape)}; use jax.vmap "
            "for a batch."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"Expected a floating-point {name}, got {x.dtype}; cast it with .astype.")
