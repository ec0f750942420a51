"""DCGAN generator in Flax, converted exactly from a PyTorch ``state_dict`` (no torch needed).

The architecture is the PyTorch DCGAN tutorial's generator: ``z [d] -> 3 x 64 x 64`` through five
``ConvTranspose2d(kernel 4, bias=False)`` layers (stride 1 / padding 0 first, then stride 2 /
padding 1), a ``BatchNorm2d`` + ReLU after each of the first four, and tanh at the end. BatchNorm
runs in eval mode with the stored running statistics.

:func:`face_dcgan` loads the pretrained face DCGAN of the ``gan-face-generate`` package
(fetched with :func:`reds_jax.assets.fetch`) and returns a pure
``generator(z [100]) -> image [64, 64, 3]``.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from reds_jax import assets
from reds_jax._io import load_converted
from reds_jax.formats.torch_zip import load_torch_zip

__all__ = [
    "DCGANGenerator",
    "FaceDCGAN",
    "TorchConvTranspose2d",
    "convert_dcgan_state_dict",
    "face_dcgan",
]

_CONV_KEYS = ("main.0", "main.3", "main.6", "main.9", "main.12")
_BN_KEYS = ("main.1", "main.4", "main.7", "main.10")
_BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
_CONVERTER_VERSION = 1


def _float_dtype(x: jax.Array) -> jnp.dtype:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"Expected a floating-point latent, got dtype {x.dtype}; pass z.astype(float)."
        )
    return x.dtype


class TorchConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` (square kernel, no bias, groups=1, dilation 1) on NHWC input.

    Output size per spatial axis is ``(n - 1) * stride - 2 * padding + kernel_size``, as in torch.
    A ``1 × 1`` input (the generator's first layer) is one matrix product with the kernel. When
    ``stride`` divides ``kernel_size`` it is computed by phases ("sub-pixel"): output pixel
    ``o`` only meets the kernel taps ``t ≡ o + padding (mod stride)``, so one stride-1 convolution
    of the undilated input with the ``stride²`` sub-kernels ``kernel[a::stride, b::stride]`` as
    extra output channels, rearranged depth-to-space and cropped by ``padding``, gives every output
    pixel without multiplying the zeros that a dilated input carries (on XLA CPU 1.4-2x faster for
    the face DCGAN's stride-2 layers). Otherwise it is the direct convolution of the input dilated
    by ``stride`` (``lhs_dilation``), padded by ``kernel_size - 1 - padding``, with the spatially
    flipped kernel.

    Attributes:
        features: output channels.
        kernel_size: square kernel size.
        stride: stride of the transposed convolution.
        padding: torch's ``padding`` (implicit zero padding removed from the output).

    Params:
        kernel: ``[kernel_size, kernel_size, in, features]``, i.e. torch's weight
            ``[in, out, kH, kW]`` transposed by ``(2, 3, 0, 1)`` (not flipped).
    """

    features: int
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the transposed convolution.

        Args:
            x: ``[N, H, W, C_in]``, floating point.

        Returns:
            ``[N, H', W', features]`` in ``x``'s dtype, ``H' = (H - 1) * stride - 2 * padding +
            kernel_size``.

        >>> m = TorchConvTranspose2d(8)
        >>> v = m.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3), jnp.float32))
        >>> m.apply(v, jnp.zeros((1, 4, 4, 3), jnp.float32)).shape
        (1, 8, 8, 8)
        """
        k, p = self.kernel_size, self.padding
        if p > k - 1:
            raise ValueError(f"padding={p} must be at most kernel_size - 1 = {k - 1}.")
        kernel = self.param(
            "kernel",
            nn.initializers.normal(0.02),
            (k, k, x.shape[-1], self.features),
            jnp.float32,
        )
        kernel = kernel.astype(x.dtype)
        stride = self.stride
        if x.shape[1:3] == (1, 1):  # one input pixel (the first layer): a matrix product
            y = jnp.einsum("nc,hwco->nhwo", x[:, 0, 0], kernel, precision=jax.lax.Precision.HIGHEST)
            return y[:, p : k - p, p : k - p]
        if stride > 1 and k % stride == 0:
            return _conv_transpose_by_phases(x, kernel, stride, p)
        kernel = jnp.flip(kernel, axis=(0, 1))
        pad = k - 1 - p
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(1, 1),
            padding=((pad, pad), (pad, pad)),
            lhs_dilation=(self.stride, self.stride),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )


def _conv_transpose_by_phases(x: jax.Array, kernel: jax.Array, s: int, p: int) -> jax.Array:
    """``torch.nn.ConvTranspose2d`` (stride ``s`` dividing the kernel size) by its ``s²`` phases.

    Output pixel ``o = q·s + a - p`` sums ``x[q - u] · kernel[u·s + a]`` over ``u < K = k / s``:
    a full stride-1 convolution of ``x`` with the flipped sub-kernel of phase ``a`` (per axis).

    Args:
      x: ``[N, H, W, C_in]``.  kernel: ``[k, k, C_in, C_out]`` (torch's taps, not flipped).
      s: stride.  p: torch's padding.

    Returns:
      ``[N, (H - 1)·s - 2p + k, (W - 1)·s - 2p + k, C_out]``.
    """
    k, _, c_in, c_out = kernel.shape
    big_k = k // s
    sub = kernel.reshape(big_k, s, big_k, s, c_in, c_out)  # [u, a, v, b, in, out]: tap u·s + a
    sub = jnp.flip(sub, axis=(0, 2)).transpose(0, 2, 4, 1, 3, 5)
    sub = sub.reshape(big_k, big_k, c_in, s * s * c_out)  # phase (a, b) as output channels
    y = jax.lax.conv_general_dilated(
        x,
        sub,
        window_strides=(1, 1),
        padding=((big_k - 1, big_k - 1), (big_k - 1, big_k - 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    n, hq, wq, _ = y.shape  # hq = H + K - 1: every q that meets the input
    y = y.reshape(n, hq, wq, s, s, c_out).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, hq * s, wq * s, c_out)  # depth to space: row q·s + a
    return y[:, p : hq * s - p, p : wq * s - p]


class _FrozenBatchNorm(nn.Module):
    """``BatchNorm2d`` in eval mode: ``(x - mean) / sqrt(var + eps) * scale + bias`` per channel."""

    epsilon: float = _BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)).value
        var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)).value
        dt, shape = x.dtype, (1,) * (x.ndim - 1) + (c,)  # explicit broadcast (no rank promotion)
        inv = jax.lax.rsqrt(var.astype(dt) + jnp.asarray(self.epsilon, dt))
        mul = (scale.astype(dt) * inv).reshape(shape)
        return (x - mean.astype(dt).reshape(shape)) * mul + bias.astype(dt).reshape(shape)


class DCGANGenerator(nn.Module):
    """The PyTorch-tutorial DCGAN generator for one latent: ``z [d] -> tanh image [64, 64, C]``.

    Computes in ``z``'s floating dtype (params are cast to it). Variables: ``params`` (conv kernels,
    BatchNorm scale / bias) and ``batch_stats`` (BatchNorm running mean / var).

    Attributes:
        latent_dim: ``d``, the latent size (torch ``nz``).
        base_features: torch ``ngf``; the layers have ``8, 4, 2, 1`` times this many channels.
        out_channels: image channels (torch ``nc``).
    """

    latent_dim: int = 100
    base_features: int = 64
    out_channels: int = 3

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Generates one image.

        Args:
            z: ``[latent_dim]`` latent, floating point.

        Returns:
            ``[64, 64, out_channels]`` image in ``[-1, 1]`` (the raw tanh output), HWC, in
            ``z``'s dtype.

        >>> m = DCGANGenerator(latent_dim=8, base_features=2)
        >>> v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((8,), jnp.float32))
        >>> jax.eval_shape(m.apply, v, jnp.zeros((8,), jnp.float32)).shape
        (64, 64, 3)
        """
        if z.shape != (self.latent_dim,):
            raise ValueError(
                f"Expected one latent of shape ({self.latent_dim},), got {z.shape}; "
                "use jax.vmap for a batch."
            )
        _float_dtype(z)
        x = z.reshape(1, 1, 1, self.latent_dim)
        widths = [self.base_features * m for m in (8, 4, 2, 1)]
        x = TorchConvTranspose2d(widths[0], stride=1, padding=0, name="ConvT_0")(x)
        x = nn.relu(_FrozenBatchNorm(name="BN_0")(x))
        for i, w in enumerate(widths[1:], start=1):
            x = TorchConvTranspose2d(w, stride=2, padding=1, name=f"ConvT_{i}")(x)
            x = nn.relu(_FrozenBatchNorm(name=f"BN_{i}")(x))
        x = TorchConvTranspose2d(self.out_channels, stride=2, padding=1, name="ConvT_4")(x)
        return jnp.tanh(x[0])


def convert_dcgan_state_dict(
    state_dict: Mapping[str, np.ndarray],
) -> tuple[DCGANGenerator, dict[str, Any]]:
    """Converts a PyTorch DCGAN-generator ``state_dict`` to a Flax module and its variables.

    Expects torch's ``nn.Sequential`` keys ``main.{0,3,6,9,12}.weight`` (``ConvTranspose2d``,
    ``[in, out, 4, 4]``) and ``main.{1,4,7,10}.{weight,bias,running_mean,running_var}``
    (``BatchNorm2d``); ``num_batches_tracked`` is ignored. Sizes are inferred from the shapes.

    Args:
        state_dict: name -> numpy array, e.g. ``load_torch_zip(path)["netG_state_dict"]``.

    Returns:
        ``(module, variables)``: a :class:`DCGANGenerator` and ``{"params": ..., "batch_stats":
        ...}`` of float32 numpy arrays, ready for ``module.apply(variables, z)``.

    Raises:
        ValueError: a key is missing or a shape does not fit the architecture.

    >>> sd = load_torch_zip(assets.fetch("face_dcgan"))["netG_state_dict"]  # fetches the face DCGAN weights  # doctest: +SKIP
    >>> module, variables = convert_dcgan_state_dict(sd)  # fetches the face DCGAN weights  # doctest: +SKIP
    >>> module.latent_dim  # fetches the face DCGAN weights  # doctest: +SKIP
    100
    """
    missing = [
        f"{k}.{s}" for k in _CONV_KEYS for s in ("weight",) if f"{k}.{s}" not in state_dict
    ] + [
        f"{k}.{s}"
        for k in _BN_KEYS
        for s in ("weight", "bias", "running_mean", "running_var")
        if f"{k}.{s}" not in state_dict
    ]
    if missing:
        raise ValueError(
            f"Not a DCGAN generator state dict: missing {missing}. Pass the generator's "
            "state dict (e.g. checkpoint['netG_state_dict']), keys main.0.weight ... "
            "main.12.weight."
        )
    w0 = np.asarray(state_dict["main.0.weight"])
    if w0.ndim != 4 or w0.shape[2:] != (4, 4) or w0.shape[1] % 8:
        raise ValueError(f"main.0.weight has shape {w0.shape}, expected [nz, 8 * ngf, 4, 4].")
    nz, ngf = w0.shape[0], w0.shape[1] // 8
    nc = np.asarray(state_dict["main.12.weight"]).shape[1]
    chans = [nz, 8 * ngf, 4 * ngf, 2 * ngf, ngf, nc]
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for i, key in enumerate(_CONV_KEYS):
        w = np.asarray(state_dict[f"{key}.weight"], np.float32)
        if w.shape != (chans[i], chans[i + 1], 4, 4):
            raise ValueError(
                f"{key}.weight has shape {w.shape}, expected {(chans[i], chans[i + 1], 4, 4)}."
            )
        params[f"ConvT_{i}"] = {"kernel": np.ascontiguousarray(w.transpose(2, 3, 0, 1))}
    for i, key in enumerate(_BN_KEYS):
        c = chans[i + 1]
        arrs = {
            s: np.asarray(state_dict[f"{key}.{s}"], np.float32)
            for s in ("weight", "bias", "running_mean", "running_var")
        }
        for s, a in arrs.items():
            if a.shape != (c,):
                raise ValueError(f"{key}.{s} has shape {a.shape}, expected ({c},).")
        params[f"BN_{i}"] = {"scale": arrs["weight"], "bias": arrs["bias"]}
        stats[f"BN_{i}"] = {"mean": arrs["running_mean"], "var": arrs["running_var"]}
    module = DCGANGenerator(latent_dim=nz, base_features=ngf, out_channels=nc)
    return module, {"params": params, "batch_stats": stats}


class FaceDCGAN(NamedTuple):
    """A pretrained DCGAN as a pure generator.

    Attributes:
        generator: ``z [latent_dim] -> image [64, 64, 3]`` in ``[0, 1]`` (``(tanh + 1) / 2``),
            HWC, in ``z``'s floating dtype. Pure and jit / vmap / jacfwd / jacrev-able.
        module: the :class:`DCGANGenerator` (its ``apply`` returns the raw tanh output in [-1, 1]).
        params: its variables ``{"params": ..., "batch_stats": ...}`` (float32 jax arrays).
        latent_dim: ``d`` (100 for the face DCGAN).
    """

    generator: Callable[[jax.Array], jax.Array]
    module: DCGANGenerator
    params: dict[str, Any]
    latent_dim: int


def _to_unit(module: DCGANGenerator, variables: dict[str, Any], z: jax.Array) -> jax.Array:
    x = module.apply(variables, z)
    half = jnp.asarray(0.5, x.dtype)
    return (x + jnp.asarray(1, x.dtype)) * half


def _load_variables(weights: pathlib.Path) -> tuple[DCGANGenerator, dict[str, Any]]:
    """Converts ``weights`` once, caching the Flax variables (msgpack + its sha256) next to it."""

    def decode(data: bytes) -> tuple[DCGANGenerator, dict[str, Any]] | None:
        variables = serialization.msgpack_restore(data)
        w0 = variables["params"]["ConvT_0"]["kernel"]
        nc = variables["params"]["ConvT_4"]["kernel"].shape[3]
        module = DCGANGenerator(
            latent_dim=w0.shape[2], base_features=w0.shape[3] // 8, out_channels=nc
        )
        expected = jax.eval_shape(
            module.init, jax.random.key(0), jnp.zeros((w0.shape[2],), jnp.float32)
        )
        fits = jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, expected)
        return (module, variables) if fits else None

    def convert() -> tuple[DCGANGenerator, dict[str, Any]]:
        checkpoint = load_torch_zip(weights)
        return convert_dcgan_state_dict(checkpoint["netG_state_dict"])

    return load_converted(
        weights,
        _CONVERTER_VERSION,
        convert,
        encode=lambda mv: serialization.msgpack_serialize(mv[1]),
        decode=decode,
    )


def face_dcgan(root: str | os.PathLike[str] | None = None) -> FaceDCGAN:
    """The pretrained face DCGAN (``gan-face-generate==1.1.1``, MIT, trained on DigiFace1M).

    Fetches ``gan_face_generate/weights.tar`` with :func:`reds_jax.assets.fetch` (``pip download
    --no-deps`` once; never installs torch), converts it without torch and caches the Flax
    variables next to it (``weights.tar.flax-v1.msgpack`` with a sha256 sidecar; a corrupt or
    stale conversion is rebuilt). 3.58 M parameters, ``z ~ N(0, I_100)``.

    Args:
        root: asset cache root; defaults to ``$REDS_JAX_CACHE`` or ``~/.cache/reds_jax``.

    Returns:
        A :class:`FaceDCGAN`; ``generator(z [100]) -> image [64, 64, 3]`` in ``[0, 1]``.

    Raises:
        reds_jax.assets.AssetError: the weights are not cached and cannot be downloaded; the
            message says where to place the file.

    >>> gan = face_dcgan()  # fetches the face DCGAN weights  # doctest: +SKIP
    >>> gan.generator(jnp.zeros(100, jnp.float32)).shape  # fetches the face DCGAN weights  # doctest: +SKIP
    (64, 64, 3)
    """
    module, variables = _load_variables(assets.fetch("face_dcgan", root))
    variables = jax.tree.map(jnp.asarray, variables)
    generator = functools.partial(_to_unit, module, variables)
    return FaceDCGAN(
        generator=generator, module=module, params=variables, latent_dim=module.latent_dim
    )
