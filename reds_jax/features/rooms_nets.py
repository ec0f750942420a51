"""Neural features for the procedural living rooms: a factor regressor and a sofa segmenter.

Both are small CNNs trained in this repository on :func:`reds_jax.generators.sample_dataset` renders
(``python -m reds_jax.train regressor|segmenter``) and shipped in ``reds_jax/weights/``
(sha256-checked). Held-out accuracy (R² per factor, IoU) is in ``benchmarks/results/rooms_features.md``.
They take one ``64 x 64 x 3`` image in [0, 1] and compute in its dtype (parameters are cast), so
they are differentiable with ``jax.jacfwd`` / ``jax.jacrev`` and jit/vmap-able.

>>> from reds_jax.features import region, room_factors, sofa_mask
>>> fix_sofa = region(mask_fn=sofa_mask())            # the sofa's pixels, wherever it is
>>> vary_pos = room_factors(names=("sofa_x",))        # the predicted sofa position
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from reds_jax.features.closed_form import Feature
from reds_jax.generators.rooms import FACTOR_NAMES, NUM_FACTORS
from reds_jax.weights import SHA256, load_weights, weights_path

__all__ = ["RoomRegressor", "SofaSegmenter", "room_factors", "sofa_mask"]

IMAGE_SIZE = 64
REGRESSOR_FILE = "rooms_regressor.msgpack"
SEGMENTER_FILE = "rooms_segmenter.msgpack"


class RoomRegressor(nn.Module):
    """Strided conv net; ``images [N, 64, 64, 3] -> [N, F]`` factors in unit-cube coordinates.

    Attributes:
        channels: channels of the stride-2 convolutions (64 -> 32 -> 16 -> 8 -> 4).
        hidden: width of the dense layer.
        outputs: number of outputs ``F``.
    """

    channels: Sequence[int] = (32, 64, 96, 128)
    hidden: int = 256
    outputs: int = NUM_FACTORS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = 2.0 * x - 1.0
        for i, c in enumerate(self.channels):
            x = nn.relu(nn.Conv(c, (3, 3), strides=(2, 2), name=f"down_{i}")(x))
        x = nn.relu(nn.Dense(self.hidden, name="fc")(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.outputs, name="out")(x)


class SofaSegmenter(nn.Module):
    """Small U-Net; ``images [N, S, S, 3] -> [N, S, S]`` sofa logits (``S`` divisible by 8).

    Attributes:
        channels: encoder channels at resolutions ``S, S/2, S/4, S/8``.
    """

    channels: Sequence[int] = (16, 32, 64, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = 2.0 * x - 1.0
        skips = []
        for i, c in enumerate(self.channels):
            stride = (1, 1) if i == 0 else (2, 2)
            x = nn.relu(nn.Conv(c, (3, 3), strides=stride, name=f"enc_{i}")(x))
            skips.append(x)
        for i in range(len(self.channels) - 2, -1, -1):
            n, h, w, c = x.shape
            x = jax.image.resize(x, (n, 2 * h, 2 * w, c), method="nearest")
            x = jnp.concatenate([x, skips[i]], axis=-1)
            width = max(self.channels[i] // 2, 8) if i == 0 else self.channels[i]
            x = nn.relu(nn.Conv(width, (3, 3), name=f"dec_{i}")(x))
        return nn.Conv(1, (1, 1), name="out")(x)[..., 0]


def check_image(image: jax.Array, who: str) -> jax.Array:
    """Checks one float room image ``[IMAGE_SIZE, IMAGE_SIZE, 3]``; errors name ``who``.

    >>> check_image(jnp.zeros((IMAGE_SIZE, IMAGE_SIZE, 3)), "room_factors").shape
    (64, 64, 3)
    """
    image = jnp.asarray(image)
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(
            f"{who} takes one room image of shape ({IMAGE_SIZE}, {IMAGE_SIZE}, 3) in [0, 1]; got "
            f"{image.shape}. For a batch, use jax.vmap; resize other sizes first."
        )
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"{who} needs a floating-point image in [0, 1]; got dtype {image.dtype}.")
    return image


def apply_net(module: nn.Module, params: Any, image: jax.Array) -> jax.Array:
    """Runs ``module`` on one image in the image's dtype; returns the single output."""
    cast = jax.tree.map(lambda p: p.astype(image.dtype), params)
    return module.apply(cast, image[None])[0]


def load_net(
    module: nn.Module, file: str, path: str | os.PathLike[str] | None, sha256: str | None
) -> Any:
    """Loads shipped (or given) float32 weights for ``module``; ``sha256="shipped"`` checks the digest."""
    template = jax.eval_shape(
        module.init, jax.random.PRNGKey(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32)
    )
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), template)
    if sha256 == "shipped":
        sha256 = SHA256[file]
    return load_weights(path or weights_path(file), sha256, template)


@functools.cache
def _regressor(path, sha256):
    module = RoomRegressor()
    return module, load_net(module, REGRESSOR_FILE, path, sha256)


@functools.cache
def _segmenter(path, sha256):
    module = SofaSegmenter()
    return module, load_net(module, SEGMENTER_FILE, path, sha256)


def room_factors(
    names: Sequence[str] = FACTOR_NAMES,
    *,
    path: str | os.PathLike[str] | None = None,
    sha256: str | None = "shipped",
) -> Feature:
    """Predicted room factors (unit-cube coordinates) from the shipped regressor CNN.

    Args:
        names: factors to return, from :data:`reds_jax.generators.FACTOR_NAMES`, e.g.
            ``("sofa_x",)`` or ``("sofa_r", "sofa_g", "sofa_b")``.
        path: weights file (default: the shipped ``rooms_regressor.msgpack``).
        sha256: expected digest; ``"shipped"`` checks the shipped file's, None skips the check.

    Returns:
        :class:`Feature` ``image [64, 64, 3] -> [len(names)]``; 0 and 1 are each factor's range ends
        (see :data:`reds_jax.generators.FACTOR_RANGES`).

    Raises:
        ValueError: an unknown factor name. ``WeightsError``: missing or corrupt weights.

    >>> f = room_factors(names=("sofa_x", "sofa_width"))
    >>> f(jnp.zeros((64, 64, 3))).shape
    (2,)
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    unknown = [n for n in names if n not in FACTOR_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown factor names {unknown}; choose from {FACTOR_NAMES}.")
    idx = jnp.asarray([FACTOR_NAMES.index(n) for n in names])
    module, params = _regressor(None if path is None else str(path), sha256)

    def fn(image):
        return apply_net(module, params, check_image(image, "room_factors"))[idx]

    return Feature(fn, f"room_factors:{','.join(names)}")


def sofa_mask(
    *, path: str | os.PathLike[str] | None = None, sha256: str | None = "shipped"
) -> Callable[[jax.Array], jax.Array]:
    """Soft sofa mask from the shipped segmenter, for ``features.region(mask_fn=sofa_mask())``.

    Args:
        path: weights file (default: the shipped ``rooms_segmenter.msgpack``).
        sha256: expected digest; ``"shipped"`` checks the shipped file's, None skips the check.

    Returns:
        ``mask_fn(image [64, 64, 3]) -> [64, 64]`` in (0, 1) (a sigmoid), differentiable.

    >>> sofa_mask()(jnp.zeros((64, 64, 3))).shape
    (64, 64)
    """
    module, params = _segmenter(None if path is None else str(path), sha256)

    def mask_fn(image):
        return jax.nn.sigmoid(apply_net(module, params, check_image(image, "sofa_mask")))

    return mask_fn
