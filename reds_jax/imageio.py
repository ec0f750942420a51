"""Image grids as numpy arrays and PNG files (pillow is imported only when a PNG is written)."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from reds_jax._io import atomic_write

__all__ = ["grid", "save_grid", "save_png", "to_uint8"]


def to_uint8(images) -> np.ndarray:
    """Images in [0, 1] (any float dtype, any leading shape) -> uint8 in [0, 255], rounded.

    uint8 input passes through unchanged; values outside [0, 1] are clipped, NaN becomes 0.

    >>> to_uint8(np.array([0.0, 0.5, 1.0, 2.0])).tolist()
    [0, 128, 255, 255]
    """
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    x = np.nan_to_num(x.astype(np.float32), nan=0.0)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def grid(images, *, pad: int = 2, pad_value: int = 255, scale: int = 1) -> np.ndarray:
    """Tiles ``[rows, cols, H, W, C]`` images into one ``[H', W', C]`` uint8 image.

    Args:
      images: ``[R, C, H, W, 3]`` (or ``C = 1``) in [0, 1] or uint8; e.g. rows = paths, columns =
        steps of a traversal.
      pad: pixels between tiles (and around the border).
      pad_value: grey level of the padding (0..255).
      scale: integer nearest-neighbour upscaling of every tile (small images read better).

    Returns:
      ``[R·(H·scale+pad)+pad, C·(W·scale+pad)+pad, channels]`` uint8.

    >>> grid(np.zeros((2, 3, 4, 4, 3)), pad=1).shape
    (11, 16, 3)
    """
    x = to_uint8(images)
    if x.ndim != 5:
        raise ValueError(
            f"grid needs images of shape [rows, cols, H, W, C]; got {x.shape}. Reshape a "
            "traversal's images [2k, T+1, H, W, C] directly, or [N, 2k, T+1, ...] to [N*2k, ...]."
        )
    if scale < 1 or pad < 0:
        raise ValueError(f"scale must be >= 1 and pad >= 0; got scale={scale}, pad={pad}.")
    if scale > 1:
        x = x.repeat(scale, axis=2).repeat(scale, axis=3)
    rows, cols, h, w, c = x.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
    for r in range(rows):
        for j in range(cols):
            top, left = pad + r * (h + pad), pad + j * (w + pad)
            out[top : top + h, left : left + w] = x[r, j]
    return out


def save_png(image, path: str | os.PathLike[str]) -> pathlib.Path:
    """Writes one ``[H, W, 3]`` (or ``[H, W, 1]``) image in [0, 1] or uint8 as a PNG.

    Written to a temporary file in the same folder, then renamed, so a reader never sees half a
    PNG. Needs pillow (``pip install pillow``).

    Args:
      image: ``[H, W, C]``.
      path: destination; parent folders are created.

    Returns:
      The path written.
    """
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "writing PNG files needs pillow: pip install pillow (or save the arrays with numpy)."
        ) from err
    x = to_uint8(image)
    if x.ndim != 3 or x.shape[-1] not in (1, 3):
        raise ValueError(f"save_png needs one image [H, W, 1 or 3]; got shape {x.shape}.")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(x[:, :, 0] if x.shape[-1] == 1 else x)
    return atomic_write(path, lambda f: image.save(f, format="PNG"))


def save_grid(
    images, path: str | os.PathLike[str], *, pad: int = 2, scale: int = 1
) -> pathlib.Path:
    """:func:`grid` then :func:`save_png`.

    Args:
      images: ``[rows, cols, H, W, C]`` in [0, 1] or uint8.
      path: PNG destination.
      pad: pixels between tiles.
      scale: integer upscaling of every tile.

    Returns:
      The path written.
    """
    return save_png(grid(images, pad=pad, scale=scale), path)
