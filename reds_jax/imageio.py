"""Image grids as numpy arrays and PNG files; reading image files (pillow, imported when used)."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from reds_jax._io import atomic_write

__all__ = ["grid", "not_a_file", "read_image", "save_grid", "save_png", "to_uint8"]

# Pillow modes that hold more than 8 bits per sample, and the full scale each is divided by.
# (16-bit grayscale PNGs open as "I;16"; 16-bit RGB(A) PNGs open as 8-bit "RGB(A)", scaled.)
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


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


def auto_scale(size: int) -> int:
    """The grid scale that shows frames of ``size`` pixels at about 128 pixels (at least 1).

    >>> auto_scale(32), auto_scale(256)
    (4, 1)
    """
    return max(1, 128 // max(size, 1))


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


def not_a_file(path: pathlib.Path) -> str:
    """Why ``path`` is not a regular file: ``"a folder"``, ``"a broken symlink or a symlink loop"``,
    ``"missing"`` or ``"not a regular file"`` (a socket, a device).

    >>> not_a_file(pathlib.Path("/"))
    'a folder'
    """
    if path.is_dir():
        return "a folder"
    if path.is_symlink():
        return "a broken symlink or a symlink loop"
    return "not a regular file" if os.path.lexists(path) else "missing"


def read_image(path: str | os.PathLike[str], height: int, width: int) -> np.ndarray:
    """Reads one image file as float32 ``[height, width, 3]`` in [0, 1].

    Pillow decodes the file; grayscale is replicated to RGB and alpha is dropped; samples are
    divided by their full scale (255 for 8-bit files, 65535 for 16-bit grayscale PNGs, which
    pillow opens as ``I;16``; 32-bit integer images are scaled by 65535 as well, which is what a
    16-bit PNG becomes in older pillows). An image whose aspect ratio differs from
    ``width / height`` is centre-cropped to it, then resized with bicubic filtering.

    Args:
      path: an image file (PNG, JPEG, BMP, WebP, ...).
      height: target height.
      width: target width.

    Returns:
      ``[height, width, 3]`` float32 in [0, 1].

    Raises:
      ValueError: the path is not a regular file (a folder, a broken symlink or a symlink loop),
        it is not a decodable image (random bytes, truncated), or it declares more pixels than
        pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, ~179 Mpx refused).
        The message names the file.

    >>> import tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "grey.png"
    >>> _ = save_png(np.full((4, 4, 3), 0.5), f)
    >>> [round(float(v), 3) for v in read_image(f, 2, 2)[0, 0]]
    [0.502, 0.502, 0.502]
    """
    from PIL import Image

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(
            f"cannot read {path} as an image: it is {not_a_file(path)}; pass an image file."
        )
    try:
        with Image.open(path) as im:
            if im.mode in _WIDE_MODES or im.mode == "I":
                full_scale = _WIDE_MODES.get(im.mode, 65535.0)
                planes = [Image.fromarray(np.asarray(im, np.float32) / full_scale, mode="F")]
            else:
                planes = list(im.convert("RGB").split())
            x = np.stack([np.asarray(_fit(p, height, width), np.float32) for p in planes], -1)
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"cannot read {path}: {err} Downscale the image (the generator needs {height}x{width})."
        ) from None
    except Exception as err:  # noqa: BLE001 - any decoder failure on an untrusted file
        raise ValueError(
            f"cannot read {path} as an image ({type(err).__name__}: {err}); pass PNG or JPEG files."
        ) from None
    if len(planes) == 3:
        x = x / np.float32(255.0)
    x = np.clip(x, 0.0, 1.0)  # bicubic overshoot of a 16-bit image
    return np.broadcast_to(x, (height, width, 3)).astype(np.float32)


def _fit(im, height: int, width: int):
    """Centre-crops a pillow image to ``width / height``, then resizes it bicubically."""
    from PIL import Image

    w, h = im.size
    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:
            cw = round(h * target)
            im = im.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
        else:
            ch = round(w / target)
            im = im.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    if im.size != (width, height):
        im = im.resize((width, height), Image.Resampling.BICUBIC)
    return im
