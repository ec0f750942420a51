"""ArcFace identity feature: insightface's iresnet backbone in Flax, converted without torch.

The network is ``recognition/arcface_torch``'s ``IResNet`` with ``IBasicBlock`` (iresnet18 / 34 /
50 / 100 / 200 = layers ``(2,2,2,2)``, ``(3,4,6,3)``, ``(3,4,14,3)``, ``(3,13,30,3)``,
``(6,26,60,6)``): a 3x3 stem conv + BatchNorm + PReLU, four stages of pre-activation blocks
``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN (+ 1x1 conv/BN shortcut)``, then BN, flatten,
a fully connected layer and a BatchNorm1d: ``[112, 112, 3]`` in ``[-1, 1]`` -> ``[512]``. BatchNorm
runs in eval mode with the stored statistics.

:func:`load_iresnet` reads a distributed ``backbone.pth`` (``torch.save(model.state_dict())``, zip
format) with the torch-free restricted reader; sizes come from the shapes. :func:`arcface` is the
feature ``image [H, W, 3] in [0, 1] -> unit embedding [512]`` (crop, resize, ``(x - 0.5) / 0.5``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.features.closed_form import Feature, box_pixels
from reds_jax.formats.torch_zip import load_torch_zip

__all__ = ["IResNet", "IResNetConfig", "arcface", "convert_iresnet_state_dict", "load_iresnet"]

_HI = jax.lax.Precision.HIGHEST
_EPS = 1e-5  # BatchNorm eps in arcface_torch


@dataclasses.dataclass(frozen=True)
class IResNetConfig:
    """Sizes of an iresnet (hashable).

    Attributes:
        layers: blocks per stage, e.g. ``(3, 4, 14, 3)`` for iresnet50.
        widths: channels per stage (``(64, 128, 256, 512)`` in arcface_torch).
        stem: channels of the first conv (64).
        num_features: embedding size (512).
        input_size: square input size (112); the flattened map is ``input_size / 16`` wide.
    """

    layers: tuple[int, ...] = (3, 4, 14, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: int = 64
    num_features: int = 512
    input_size: int = 112

    def __post_init__(self):
        if len(self.layers) != 4 or len(self.widths) != 4 or min(self.layers) < 1:
            raise ValueError(f"layers / widths need 4 stages; got {self.layers} / {self.widths}.")
        if self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16; got {self.input_size}.")


def _conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    k = kernel.shape[0]
    p = k // 2
    return jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        (stride, stride),
        ((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=_HI,
    )


class _Conv(nn.Module):
    features: int
    kernel_size: int = 3
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.normal(0.1), shape, jnp.float32)
        return _conv(x, kernel, self.stride)


class _BatchNorm(nn.Module):
    """Eval-mode BatchNorm over the last axis (params ``scale``, ``bias``; stats ``mean``, ``var``)."""

    @nn.compact
    def __call__(self, x):
        c, dt = x.shape[-1], x.dtype
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32).astype(dt)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32).astype(dt)
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)).value
        var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)).value
        mul = scale * jax.lax.rsqrt(var.astype(dt) + _EPS)
        shape = (1,) * (x.ndim - 1) + (c,)
        return x * mul.reshape(shape) + (bias - mean.astype(dt) * mul).reshape(shape)


class _PReLU(nn.Module):
    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        a = self.param("weight", nn.initializers.constant(0.25), (c,), jnp.float32)
        return jnp.where(x >= 0, x, x * a.astype(x.dtype).reshape(1, 1, 1, c))


class _Block(nn.Module):
    planes: int
    stride: int
    downsample: bool

    @nn.compact
    def __call__(self, x):
        out = _BatchNorm(name="bn1")(x)
        out = _Conv(self.planes, name="conv1")(out)
        out = _BatchNorm(name="bn2")(out)
        out = _PReLU(name="prelu")(out)
        out = _Conv(self.planes, stride=self.stride, name="conv2")(out)
        out = _BatchNorm(name="bn3")(out)
        if self.downsample:
            x = _Conv(self.planes, kernel_size=1, stride=self.stride, name="downsample_conv")(x)
            x = _BatchNorm(name="downsample_bn")(x)
        return out + x


class IResNet(nn.Module):
    """iresnet for one image: ``[S, S, 3]`` in ``[-1, 1]`` -> embedding ``[num_features]``.

    Computes in the input's floating dtype. Variables: ``params`` and ``batch_stats``.

    Attributes:
        config: the :class:`IResNetConfig`.
    """

    config: IResNetConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Embeds one image (not normalised).

        >>> cfg = IResNetConfig((1, 1, 1, 1), (4, 4, 4, 4), 4, 8, 16)
        >>> v = jax.eval_shape(IResNet(cfg).init, jax.random.key(0), jnp.zeros((16, 16, 3)))
        >>> jax.eval_shape(IResNet(cfg).apply, v, jnp.zeros((16, 16, 3))).shape
        (8,)
        """
        cfg = self.config
        if x.shape != (cfg.input_size, cfg.input_size, 3):
            raise ValueError(
                f"IResNet takes one [{cfg.input_size}, {cfg.input_size}, 3] image; got "
                f"{x.shape} (use the arcface() feature to crop and resize, jax.vmap for a batch)."
            )
        x = _Conv(cfg.stem, name="conv1")(x[None])
        x = _PReLU(name="prelu")(_BatchNorm(name="bn1")(x))
        inplanes = cfg.stem
        for i, (n, planes) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            for j in range(n):
                stride = 2 if j == 0 else 1
                down = j == 0 and (stride != 1 or inplanes != planes)
                x = _Block(planes, stride, down, name=f"layer{i + 1}_{j}")(x)
                inplanes = planes
        x = _BatchNorm(name="bn2")(x).reshape(-1)  # NHWC order; the converter permutes fc
        kernel = self.param(
            "fc_kernel", nn.initializers.normal(0.01), (x.shape[0], cfg.num_features), jnp.float32
        )
        bias = self.param("fc_bias", nn.initializers.zeros, (cfg.num_features,), jnp.float32)
        x = jnp.matmul(x, kernel.astype(x.dtype), precision=_HI) + bias.astype(x.dtype)
        return _BatchNorm(name="features")(x)


def _bn(sd: dict[str, np.ndarray], key: str) -> tuple[dict, dict]:
    p = {"scale": sd.pop(f"{key}.weight"), "bias": sd.pop(f"{key}.bias")}
    s = {"mean": sd.pop(f"{key}.running_mean"), "var": sd.pop(f"{key}.running_var")}
    sd.pop(f"{key}.num_batches_tracked", None)
    return p, s


def _hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def convert_iresnet_state_dict(
    state_dict: Mapping[str, np.ndarray],
) -> tuple[IResNetConfig, dict[str, Any]]:
    """Converts an arcface_torch iresnet ``state_dict`` (numpy) to Flax variables.

    Sizes are inferred from the shapes; a ``module.`` prefix (DataParallel) is stripped. The fc
    weight is permuted from torch's ``C, H, W`` flatten order to ``H, W, C``.

    Args:
        state_dict: ``conv1.weight``, ``bn1.*``, ``prelu.weight``, ``layer{1..4}.{j}.*``,
            ``bn2.*``, ``fc.{weight,bias}``, ``features.*``; nothing else is accepted.

    Returns:
        ``(config, {"params": ..., "batch_stats": ...})`` of float32 numpy arrays.

    Raises:
        ValueError: a missing or unexpected key, or shapes that do not fit an iresnet.

    >>> cfg, variables = convert_iresnet_state_dict(load_torch_zip("backbone.pth"))  # needs ArcFace weights  # doctest: +SKIP
    """
    sd = {k.removeprefix("module."): np.asarray(v, np.float32) for k, v in state_dict.items()}
    try:
        layers = tuple(
            sum(1 for k in sd if k.startswith(f"layer{i}.") and k.endswith(".conv1.weight"))
            for i in range(1, 5)
        )
        widths = tuple(sd[f"layer{i}.0.conv1.weight"].shape[0] for i in range(1, 5))
        stem = sd["conv1.weight"].shape[0]
        fc = sd.pop("fc.weight")
        side = math.isqrt(fc.shape[1] // widths[3])
        if side * side * widths[3] != fc.shape[1]:
            raise ValueError(f"fc.weight {fc.shape} does not fit {widths[3]} channels.")
        config = IResNetConfig(layers, widths, stem, fc.shape[0], 16 * side)
        params: dict[str, Any] = {"conv1": {"kernel": _hwio(sd.pop("conv1.weight"))}}
        stats: dict[str, Any] = {}
        params["bn1"], stats["bn1"] = _bn(sd, "bn1")
        params["prelu"] = {"weight": sd.pop("prelu.weight")}
        for i, n in enumerate(layers, start=1):
            for j in range(n):
                t, name = f"layer{i}.{j}", f"layer{i}_{j}"
                p: dict[str, Any] = {}
                s: dict[str, Any] = {}
                for b in ("bn1", "bn2", "bn3"):
                    p[b], s[b] = _bn(sd, f"{t}.{b}")
                p["conv1"] = {"kernel": _hwio(sd.pop(f"{t}.conv1.weight"))}
                p["conv2"] = {"kernel": _hwio(sd.pop(f"{t}.conv2.weight"))}
                p["prelu"] = {"weight": sd.pop(f"{t}.prelu.weight")}
                if f"{t}.downsample.0.weight" in sd:
                    p["downsample_conv"] = {"kernel": _hwio(sd.pop(f"{t}.downsample.0.weight"))}
                    p["downsample_bn"], s["downsample_bn"] = _bn(sd, f"{t}.downsample.1")
                params[name], stats[name] = p, s
        params["bn2"], stats["bn2"] = _bn(sd, "bn2")
        c = widths[3]
        kernel = fc.reshape(fc.shape[0], c, side, side).transpose(2, 3, 1, 0)
        params["fc_kernel"] = np.ascontiguousarray(kernel.reshape(-1, fc.shape[0]))
        params["fc_bias"] = sd.pop("fc.bias")
        params["features"], stats["features"] = _bn(sd, "features")
    except KeyError as err:
        raise ValueError(
            f"Not an arcface_torch iresnet state dict: {err} is missing. Pass the backbone's "
            "state dict (backbone.pth)."
        ) from None
    if sd:
        raise ValueError(f"Unexpected keys {sorted(sd)[:10]}: not an arcface_torch iresnet.")
    variables = {"params": params, "batch_stats": stats}
    want = jax.eval_shape(
        IResNet(config).init, jax.random.key(0), jnp.zeros((config.input_size,) * 2 + (3,))
    )
    if jax.tree.map(np.shape, variables) != jax.tree.map(lambda a: a.shape, want):
        raise ValueError(f"The state dict's shapes do not fit an iresnet {config}.")
    return config, variables


class LoadedIResNet(NamedTuple):
    """A converted iresnet: ``module.apply(variables, x [S, S, 3] in [-1, 1]) -> [F]``."""

    module: IResNet
    variables: dict[str, Any]
    config: IResNetConfig


def load_iresnet(path: str | os.PathLike[str]) -> LoadedIResNet:
    """Reads an arcface_torch ``backbone.pth`` (torch.save zip) without torch.

    Raises:
        pickle.UnpicklingError: the file holds anything but tensors and dicts.
        ValueError: not an iresnet state dict.

    >>> net = load_iresnet("ms1mv3_arcface_r50_fp16/backbone.pth")  # needs ArcFace weights  # doctest: +SKIP
    """
    sd = load_torch_zip(path)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    config, variables = convert_iresnet_state_dict(sd)
    return LoadedIResNet(IResNet(config), jax.tree.map(jnp.asarray, variables), config)


def arcface(
    weights: str | os.PathLike[str] | LoadedIResNet,
    *,
    box: Sequence[float] | None = None,
    normalize: bool = True,
    antialias: bool = True,
) -> Feature:
    """ArcFace identity: the iresnet embedding of the (cropped, resized) face, unit norm.

    ArcFace expects an aligned face filling the input (insightface's 112 x 112 crops); for
    FFHQ-style StyleGAN images pass a ``box`` around the face, e.g. ``(0.2, 0.2, 0.65, 0.6)``.

    Args:
        weights: an arcface_torch ``backbone.pth`` or a :func:`load_iresnet` result.
        box: ``(top, left, height, width)`` crop before resizing (relative floats or pixel ints,
            as in :func:`reds_jax.features.region`); ``None``: the whole image.
        normalize: divide by the L2 norm (ArcFace compares embeddings by cosine).
        antialias: anti-alias when down-sampling (``jax.image.resize``, bilinear).

    Returns:
        Feature ``image [H, W, 3] in [0, 1] -> [num_features]`` (512 for the distributed models).

    >>> f = arcface("backbone.pth", box=(0.2, 0.2, 0.65, 0.6))  # needs ArcFace weights  # doctest: +SKIP
    """
    net = weights if isinstance(weights, LoadedIResNet) else load_iresnet(weights)
    size = net.config.input_size

    def fn(image: jax.Array) -> jax.Array:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"arcface takes an RGB image [H, W, 3]; got {image.shape}.")
        if box is not None:
            top, left, h, w = box_pixels(box, image.shape[0], image.shape[1], "auto")
            image = image[top : top + h, left : left + w]
        if image.shape[:2] != (size, size):
            image = jax.image.resize(image, (size, size, 3), "linear", antialias=antialias)
        e = net.module.apply(net.variables, image * 2.0 - 1.0)
        return e * jax.lax.rsqrt(jnp.sum(e * e)) if normalize else e

    return Feature(fn, "arcface" + ("" if normalize else ":raw"))
