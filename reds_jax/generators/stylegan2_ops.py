"""Numerical ops of StyleGAN2 for one sample (HWC): FIR resampling, modulated convolution.

Each matches its PyTorch counterpart (``upfirdn2d``, ``modulated_conv2d`` / ``ModulatedConv2d``,
``bias_act(act="lrelu")``) in both rosinality's and NVlabs' implementations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["clamp", "fir_kernel", "lrelu", "modulated_conv", "upfirdn2d"]

_HI = jax.lax.Precision.HIGHEST


def fir_kernel(kernel: Sequence[int]) -> np.ndarray:
    k = np.asarray(kernel, np.float64)
    k = np.outer(k, k)
    return k / k.sum()


def upfirdn2d(
    x: jax.Array, kernel: np.ndarray, *, up: int = 1, pad: tuple[int, int] = (0, 0)
) -> jax.Array:
    """Per-channel up-sample (zero insertion), pad, FIR filter (true convolution), like upfirdn2d.

    Args:
        x: ``[H, W, C]``.
        kernel: ``[kh, kw]`` filter (gain included), numpy.
        up: up-sampling factor.
        pad: ``(before, after)`` padding of the up-sampled ``up * H`` rows / columns.

    Returns:
        ``[up * H + sum(pad) - kh + 1, up * W + sum(pad) - kw + 1, C]`` in ``x``'s dtype.

    >>> upfirdn2d(jnp.ones((2, 2, 1)), np.full((2, 2), 0.25), up=2, pad=(1, 0)).shape
    (4, 4, 1)
    """
    c = x.shape[-1]
    k = jnp.asarray(np.flip(kernel, (0, 1)), x.dtype)
    k = jnp.tile(k[:, :, None, None], (1, 1, 1, c))
    padding = ((pad[0], pad[1] + up - 1), (pad[0], pad[1] + up - 1))
    y = jax.lax.conv_general_dilated(
        x[None],
        k,
        window_strides=(1, 1),
        padding=padding,
        lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=_HI,
    )
    return y[0]


def lrelu(x: jax.Array) -> jax.Array:
    """Leaky ReLU (slope 0.2) times ``sqrt(2)``, as ``bias_act(act="lrelu")``."""
    return jnp.where(x >= 0, x, x * 0.2) * math.sqrt(2.0)


def modulated_conv(
    x: jax.Array, weight: jax.Array, style: jax.Array, *, demodulate: bool, up: bool
) -> jax.Array:
    """Modulated conv of one sample. x ``[H, W, I]``, weight ``[k, k, I, O]``, style ``[I]``."""
    k, _, i, o = weight.shape
    w = weight * style.reshape(1, 1, i, 1)
    if demodulate:
        d = jax.lax.rsqrt(jnp.sum(jnp.square(w), axis=(0, 1, 2)) + 1e-8)
        w = w * d.reshape(1, 1, 1, o)
    dn = ("NHWC", "HWIO", "NHWC")
    if up:  # torch conv_transpose2d(stride 2, padding 0): dilate, pad k - 1, flipped kernel
        y = jax.lax.conv_general_dilated(
            x[None],
            jnp.flip(w, (0, 1)),
            window_strides=(1, 1),
            padding=((k - 1, k - 1), (k - 1, k - 1)),
            lhs_dilation=(2, 2),
            dimension_numbers=dn,
            precision=_HI,
        )
    else:
        p = k // 2
        y = jax.lax.conv_general_dilated(
            x[None], w, (1, 1), ((p, p), (p, p)), dimension_numbers=dn, precision=_HI
        )
    return y[0]


def clamp(x: jax.Array, clamp: float | None) -> jax.Array:
    return x if clamp is None else jnp.clip(x, -clamp, clamp)
