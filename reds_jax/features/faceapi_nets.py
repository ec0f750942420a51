"""Flax ports of three face-api (``@vladmandic/face-api``) networks, one image at a time.

Every module takes one preprocessed image ``[S, S, 3]`` (already resized and normalised; see
:mod:`reds_jax.features.faceapi`) and computes in that image's floating dtype; parameters (float32)
are cast to it. Parameter trees use the tfjs weight names split at ``/`` (``conv32_1/conv1/conv/
filters`` is ``params["conv32_1"]["conv1"]["conv"]["filters"]``), so converted weights need no
renaming. Convolutions use TensorFlow's ``SAME`` / ``VALID`` conventions (``SAME`` pads
``⌊total/2⌋`` before), filters are ``[kH, kW, in, out]``, depthwise filters ``[kH, kW, C, 1]``.

* :class:`FaceRecognitionNet` — dlib-style ResNet-34-like, 150×150 input → 128-D descriptor.
* :class:`FaceLandmark68Net` — four densely connected separable-conv blocks, 112×112 input →
  136 outputs (68 interleaved relative ``x, y``).
* :class:`AgeGenderNet` — tiny Xception (2 middle blocks), 112×112 input → age and gender logits.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["AgeGenderNet", "FaceLandmark68Net", "FaceRecognitionNet"]

_HI = jax.lax.Precision.HIGHEST
_DN = ("NHWC", "HWIO", "NHWC")


def _channel(v: jax.Array, x: jax.Array) -> jax.Array:
    """Per-channel vector ``[C]`` reshaped to broadcast against ``x [..., C]`` (no rank promotion)."""
    return v.astype(x.dtype).reshape((1,) * (x.ndim - 1) + (v.shape[0],))


def _conv(x: jax.Array, kernel: jax.Array, stride: int, padding: str, groups: int = 1) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(stride, stride),
        padding=padding,
        dimension_numbers=_DN,
        feature_group_count=groups,
        precision=_HI,
    )


def _avg_pool(x: jax.Array, size: int, stride: int) -> jax.Array:
    """``VALID`` average pooling of ``[N, H, W, C]``."""
    window, strides = (1, size, size, 1), (1, stride, stride, 1)
    # a Python-scalar identity makes this reduce_window_sum (differentiable in both modes)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, "VALID")
    return total / jnp.asarray(size * size, x.dtype)


def _max_pool(x: jax.Array, size: int, stride: int, padding: str) -> jax.Array:
    """Max pooling of ``[N, H, W, C]``; ``SAME`` ignores the padded positions (``-inf``)."""
    window, strides = (1, size, size, 1), (1, stride, stride, 1)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding)


def _batched(image: jax.Array, size: int | None = None) -> jax.Array:
    if image.ndim != 3 or image.shape[-1] != 3 or (size and image.shape[:2] != (size, size)):
        want = f"[{size}, {size}, 3]" if size else "[S, S, 3]"
        raise ValueError(
            f"Expected one preprocessed image of shape {want}, got {image.shape}; "
            "use jax.vmap for a batch."
        )
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"Expected a floating-point image, got dtype {image.dtype}.")
    return image[None]


class _Conv(nn.Module):
    """``conv2d + bias`` (params ``filters [k, k, in, out]``, ``bias [out]``)."""

    features: int
    kernel: int
    stride: int = 1
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel
        shape = (k, k, x.shape[-1], self.features)
        filters = self.param("filters", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return _conv(x, filters, self.stride, self.padding) + _channel(bias, x)


class _SepConv(nn.Module):
    """``separableConv2d + bias``: depthwise ``[3, 3, C, 1]`` (strided, ``SAME``), then pointwise."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        init = nn.initializers.lecun_normal()
        dw = self.param("depthwise_filter", init, (3, 3, c, 1), jnp.float32)
        pw = self.param("pointwise_filter", init, (1, 1, c, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x = _conv(x, dw.reshape(3, 3, 1, c), self.stride, "SAME", groups=c)
        return _conv(x, pw, 1, "VALID") + _channel(bias, x)


class _Dense(nn.Module):
    """``x @ weights + bias`` (params ``weights [in, out]``, ``bias [out]``)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1], self.features)
        w = self.param("weights", nn.initializers.lecun_normal(), shape, jnp.float32)
        b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return jnp.matmul(x, w.astype(x.dtype), precision=_HI) + _channel(b, x)


# --- face recognition (dlib ResNet) -------------------------------------------------------------


class _Scale(nn.Module):
    """Per-channel affine ``x · weights + biases`` (a folded batch norm)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        w = self.param("weights", nn.initializers.ones, (c,), jnp.float32)
        b = self.param("biases", nn.initializers.zeros, (c,), jnp.float32)
        return x * _channel(w, x) + _channel(b, x)


class _ConvScale(nn.Module):
    """``conv`` (``_Conv``) then ``scale``, optionally ReLU."""

    features: int
    kernel: int = 3
    stride: int = 1
    padding: str = "SAME"
    relu: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _Conv(self.features, self.kernel, self.stride, self.padding, name="conv")(x)
        x = _Scale(name="scale")(x)
        return nn.relu(x) if self.relu else x


class _Residual(nn.Module):
    """dlib residual unit; ``down`` halves the size (3×3/2 ``VALID`` conv, 2×2 average pool)."""

    features: int
    down: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.down:
            out = _ConvScale(self.features, stride=2, padding="VALID", name="conv1")(x)
        else:
            out = _ConvScale(self.features, name="conv1")(x)
        out = _ConvScale(self.features, relu=False, name="conv2")(out)
        if not self.down:
            return nn.relu(out + x)
        pooled = _avg_pool(x, 2, 2)
        # face-api pads the conv branch with zeros at the bottom / right when its size is smaller,
        # and the pooled branch with zero channels when it has fewer.
        dh, dw = pooled.shape[1] - out.shape[1], pooled.shape[2] - out.shape[2]
        if dh or dw:
            out = jnp.pad(out, ((0, 0), (0, max(dh, 0)), (0, max(dw, 0)), (0, 0)))
        dc = out.shape[3] - pooled.shape[3]
        if dc:
            pooled = jnp.pad(pooled, ((0, 0), (0, 0), (0, 0), (0, dc)))
        return nn.relu(pooled + out)


class FaceRecognitionNet(nn.Module):
    """face-api's face recognition net: ``[150, 150, 3]`` normalised image → descriptor ``[128]``.

    The descriptor is not L2-normalised (face-api compares faces by Euclidean distance; 0.6 is its
    usual "same person" threshold).
    """

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """Computes the descriptor.

        Args:
            image: ``[150, 150, 3]`` preprocessed image, floating point.

        Returns:
            ``[128]`` descriptor in the image's dtype.

        >>> net = FaceRecognitionNet()
        >>> v = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((150, 150, 3)))
        >>> v["params"]["fc"].shape
        (256, 128)
        """
        x = _batched(image, 150)
        x = _ConvScale(32, kernel=7, stride=2, padding="VALID", name="conv32_down")(x)
        x = _max_pool(x, 3, 2, "VALID")
        for name, features, down in (
            ("conv32_1", 32, False),
            ("conv32_2", 32, False),
            ("conv32_3", 32, False),
            ("conv64_down", 64, True),
            ("conv64_1", 64, False),
            ("conv64_2", 64, False),
            ("conv64_3", 64, False),
            ("conv128_down", 128, True),
            ("conv128_1", 128, False),
            ("conv128_2", 128, False),
            ("conv256_down", 256, True),
            ("conv256_1", 256, False),
            ("conv256_2", 256, False),
            ("conv256_down_out", 256, True),
        ):
            x = _Residual(features, down, name=name)(x)
        pooled = jnp.mean(x[0], axis=(0, 1))
        fc = self.param("fc", nn.initializers.lecun_normal(), (256, 128), jnp.float32)
        return jnp.matmul(pooled, fc.astype(pooled.dtype), precision=_HI)


# --- 68-point landmarks ------------------------------------------------------------------------


class _DenseBlock4(nn.Module):
    """Four convs with dense additive skips; the first one strided (a plain conv in block 0)."""

    features: int
    first: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.first:
            out1 = _Conv(self.features, 3, stride=2, name="conv0")(x)
        else:
            out1 = _SepConv(self.features, stride=2, name="conv0")(x)
        out1 = nn.relu(out1)
        out2 = _SepConv(self.features, name="conv1")(out1)
        out3 = _SepConv(self.features, name="conv2")(nn.relu(out1 + out2))
        out4 = _SepConv(self.features, name="conv3")(nn.relu(out1 + (out2 + out3)))
        return nn.relu(out1 + (out2 + (out3 + out4)))


class FaceLandmark68Net(nn.Module):
    """face-api's 68-point landmark net: ``[112, 112, 3]`` normalised image → ``[136]``.

    The outputs are interleaved ``x0, y0, x1, y1, …`` relative to the (square) network input.
    """

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """Computes the raw landmark outputs.

        Args:
            image: ``[112, 112, 3]`` preprocessed image, floating point.

        Returns:
            ``[136]`` interleaved relative coordinates in the image's dtype.

        >>> net = FaceLandmark68Net()
        >>> v = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((112, 112, 3)))
        >>> v["params"]["fc"]["weights"].shape
        (256, 136)
        """
        x = _batched(image, 112)
        x = _DenseBlock4(32, first=True, name="dense0")(x)
        x = _DenseBlock4(64, name="dense1")(x)
        x = _DenseBlock4(128, name="dense2")(x)
        x = _DenseBlock4(256, name="dense3")(x)
        x = _avg_pool(x, 7, 2)  # [1, 1, 1, 256]
        return _Dense(136, name="fc")(x.reshape(-1))


# --- age / gender (tiny Xception) ---------------------------------------------------------------


class _ReductionBlock(nn.Module):
    features: int
    activate_input: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = nn.relu(x) if self.activate_input else x
        out = _SepConv(self.features, name="separable_conv0")(out)
        out = _SepConv(self.features, name="separable_conv1")(nn.relu(out))
        out = _max_pool(out, 3, 2, "SAME")
        return out + _Conv(self.features, 1, stride=2, name="expansion_conv")(x)


class _MainBlock(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        out = _SepConv(c, name="separable_conv0")(nn.relu(x))
        out = _SepConv(c, name="separable_conv1")(nn.relu(out))
        out = _SepConv(c, name="separable_conv2")(nn.relu(out))
        return out + x


class _EntryFlow(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(_Conv(32, 3, stride=2, name="conv_in")(x))
        x = _ReductionBlock(64, activate_input=False, name="reduction_block_0")(x)
        return _ReductionBlock(128, name="reduction_block_1")(x)


class _MiddleFlow(nn.Module):
    num_blocks: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.num_blocks):
            x = _MainBlock(name=f"main_block_{i}")(x)
        return x


class _ExitFlow(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _ReductionBlock(256, name="reduction_block")(x)
        return nn.relu(_SepConv(512, name="separable_conv")(x))


class _AgeGenderHeads(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _Dense(1, name="age")(x)[0], _Dense(2, name="gender")(x)


class AgeGenderNet(nn.Module):
    """face-api's age / gender net: ``[112, 112, 3]`` normalised image → ``(age, gender logits)``.

    Attributes:
        num_main_blocks: Xception middle-flow blocks (2 in face-api's model).
    """

    num_main_blocks: int = 2

    @nn.compact
    def __call__(self, image: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Computes age and gender logits.

        Args:
            image: ``[112, 112, 3]`` preprocessed image, floating point.

        Returns:
            ``(age [], logits [2])``: age in years and gender logits (index 0 male, 1 female;
            face-api reports ``softmax(logits)``).

        >>> net = AgeGenderNet()
        >>> v = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((112, 112, 3)))
        >>> v["params"]["fc"]["gender"]["weights"].shape
        (512, 2)
        """
        x = _batched(image, 112)
        x = _EntryFlow(name="entry_flow")(x)
        x = _MiddleFlow(self.num_main_blocks, name="middle_flow")(x)
        x = _ExitFlow(name="exit_flow")(x)
        x = _avg_pool(x, 7, 2)  # [1, 1, 1, 512]
        return _AgeGenderHeads(name="fc")(x.reshape(-1))
