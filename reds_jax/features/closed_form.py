"""Closed-form image features: pixels, regions, frequency bands, and their composition.

A :class:`Feature` is a pure callable ``image [H, W, C] -> vector [m]``. It also carries its
image-shaped form (``feature.image_fn(image) -> [H', W', C']``) so features compose:
``compose(highpass(2.0), region((0.1, 0.2, 0.5, 0.6)))`` is "the high frequencies inside the box".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

GRAY_WEIGHTS = (0.30, 0.59, 0.11)  # the reference code's grayscale weights (R, G, B)


@dataclasses.dataclass(frozen=True)
class Feature:
    """A pure image feature.

    Attributes:
      image_fn: ``image [H, W, C] -> array [H', W', C']`` (image-shaped, so features compose).
      name: short description, used in tables and plots.
    """

    image_fn: Callable[[Array], Array]
    name: str = "feature"

    def __call__(self, image: Array) -> Array:
        """``image [H, W, C] -> [m]`` (the flattened ``image_fn`` output)."""
        return jnp.ravel(self.image_fn(_check_image(image)))


def _check_image(image: Array) -> Array:
    image = jnp.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"features take one image of shape [H, W, C]; got shape {image.shape}.")
    return image


def pixels() -> Feature:
    """All pixels.

    Returns:
      Feature ``image [H, W, C] -> [H·W·C]``.

    >>> import jax.numpy as jnp
    >>> pixels()(jnp.ones((2, 2, 3))).shape
    (12,)
    """
    return Feature(lambda image: image, "pixels")


def grayscale(image: Array) -> Array:
    """``[H, W, 3] -> [H, W, 1]`` with the reference weights (0.30, 0.59, 0.11); 1 channel passes."""
    if image.shape[-1] == 1:
        return image
    if image.shape[-1] != 3:
        raise ValueError(f"grayscale needs 1 or 3 channels; got {image.shape[-1]}.")
    w = jnp.asarray(GRAY_WEIGHTS, image.dtype)
    return jnp.sum(image * w[None, None, :], axis=-1, keepdims=True)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, ``max(7, ⌊6σ+1⌋)`` long (made odd), as in the reference."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (pixels); got {sigma!r}.")
    size = max(7, int(6 * sigma + 1))
    size += 1 - size % 2
    x = np.arange(size) - size // 2
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def blur(image: Array, sigma: float) -> Array:
    """Separable Gaussian blur with reflect padding.

    Args:
      image: ``[H, W, C]``.
      sigma: standard deviation in pixels.

    Returns:
      ``[H, W, C]`` blurred image.
    """
    taps = gaussian_kernel(sigma)
    pad = len(taps) // 2
    h, w = image.shape[0], image.shape[1]
    if pad >= min(h, w):
        raise ValueError(
            f"sigma={sigma} needs a {len(taps)}-tap kernel, too wide for a {h}x{w} image; "
            "pass a smaller sigma."
        )
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    taps = jnp.asarray(taps, image.dtype)
    rows = sum(taps[i] * padded[i : i + h] for i in range(len(taps)))
    return sum(taps[i] * rows[:, i : i + w] for i in range(len(taps)))


def lowpass(sigma: float) -> Feature:
    """Gaussian low-pass of all channels.

    Args:
      sigma: blur standard deviation in pixels.

    Returns:
      Feature ``image [H, W, C] -> [H·W·C]``.

    >>> import jax.numpy as jnp
    >>> round(float(lowpass(2.0)(jnp.ones((16, 16, 3))).mean()), 6)
    1.0
    """
    gaussian_kernel(sigma)
    return Feature(lambda image: blur(image, sigma), f"lowpass:{sigma:g}")


def highpass(sigma: float) -> Feature:
    """High-pass as in the reference: grayscale image minus its Gaussian low-pass.

    Args:
      sigma: blur standard deviation in pixels.

    Returns:
      Feature ``image [H, W, C] -> [H·W]``.

    >>> import jax.numpy as jnp
    >>> float(jnp.abs(highpass(2.0)(jnp.ones((16, 16, 3)))).max()) < 1e-6
    True
    """
    gaussian_kernel(sigma)

    def fn(image):
        gray = grayscale(image)
        return gray - blur(gray, sigma)

    return Feature(fn, f"highpass:{sigma:g}")


def fourier_band(low: float, high: float) -> Feature:
    """Band-pass in the Fourier domain: keep radial frequencies ``low <= r < high``.

    Frequencies are in cycles per pixel (0 is the mean; 0.5 is Nyquist along an axis; up to
    ``0.5·√2`` on the diagonal). The output is the band-passed image, real, per channel.

    Args:
      low: lower radial frequency (inclusive).
      high: upper radial frequency (exclusive).

    Returns:
      Feature ``image [H, W, C] -> [H·W·C]``.

    >>> import jax.numpy as jnp
    >>> float(jnp.abs(fourier_band(0.0, 0.01)(jnp.ones((8, 8, 1)))).mean())
    1.0
    """
    if not 0 <= low < high:
        raise ValueError(f"fourier_band needs 0 <= low < high (cycles/pixel); got {low}, {high}.")

    def fn(image):
        h, w = image.shape[0], image.shape[1]
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.fftfreq(w)[None, :]
        r = np.sqrt(fy**2 + fx**2)
        spec = jnp.fft.fft2(image, axes=(0, 1))
        mask = jnp.asarray(((r >= low) & (r < high))[:, :, None], spec.dtype)
        return jnp.real(jnp.fft.ifft2(spec * mask, axes=(0, 1))).astype(image.dtype)

    return Feature(fn, f"band:{low:g}-{high:g}")


def _box_units(box: Sequence[float], units: str) -> str:
    if len(box) != 4:
        raise ValueError(f"box must be (top, left, height, width); got {box!r}.")
    if units == "auto":
        units = "pixels" if all(isinstance(b, int | np.integer) for b in box) else "relative"
    if units not in ("relative", "pixels"):
        raise ValueError(f"units={units!r}; pass 'auto', 'relative' or 'pixels'.")
    if units == "relative" and not all(0.0 <= float(b) <= 1.0 for b in box):
        raise ValueError(
            f"relative box values must lie in [0, 1]; got {box!r}. Pass integers (or "
            "units='pixels') for pixel coordinates."
        )
    return units


def box_pixels(box: Sequence[float], h: int, w: int, units: str) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` in pixels of a box in ``units`` (see :func:`region`).

    >>> box_pixels((0.25, 0.5, 0.5, 0.25), 8, 8, "relative")
    (2, 4, 4, 2)
    """
    units = _box_units(box, units)
    if units == "relative":
        top, left = int(round(box[0] * h)), int(round(box[1] * w))
        bh, bw = max(1, int(round(box[2] * h))), max(1, int(round(box[3] * w)))
    else:
        top, left, bh, bw = (int(b) for b in box)
    if top < 0 or left < 0 or bh < 1 or bw < 1 or top + bh > h or left + bw > w:
        raise ValueError(
            f"box {box!r} -> pixels {(top, left, bh, bw)} does not fit a {h}x{w} image."
        )
    return top, left, bh, bw


def region(
    box: Sequence[float] | None = None,
    *,
    mask: Array | None = None,
    mask_fn: Callable[[Array], Array] | None = None,
    invert: bool = False,
    units: str = "auto",
) -> Feature:
    """Pixels inside a region: a box, a fixed soft mask, or a mask computed from the image.

    Exactly one of ``box``, ``mask`` and ``mask_fn`` must be given. A box without ``invert`` crops
    (``[h·w·C]`` outputs); otherwise the image is multiplied by the mask (``[H·W·C]`` outputs).

    Args:
      box: ``(top, left, height, width)``; floats in [0, 1] are relative to the image size,
        ints are pixels (or force with ``units``).
      mask: ``[H, W]`` soft mask in [0, 1].
      mask_fn: ``image [H, W, C] -> [H, W]`` soft mask (e.g. a segmenter), differentiated through.
      invert: use ``1 - mask`` ("everything but the region").
      units: ``"auto"``, ``"relative"`` or ``"pixels"`` for ``box``.

    Returns:
      Feature.

    >>> import jax.numpy as jnp
    >>> region((0.0, 0.0, 0.5, 0.5))(jnp.ones((4, 4, 3))).shape
    (12,)
    """
    given = sum(x is not None for x in (box, mask, mask_fn))
    if given != 1:
        raise ValueError(
            "region needs exactly one of box=(top, left, height, width), mask=, mask_fn=."
        )
    if box is not None:
        box = tuple(box)
        _box_units(box, units)

        def fn(image):
            h, w = image.shape[0], image.shape[1]
            top, left, bh, bw = box_pixels(box, h, w, units)
            if not invert:
                return image[top : top + bh, left : left + bw]
            inside = np.zeros((h, w), bool)
            inside[top : top + bh, left : left + bw] = True
            return image * jnp.asarray(~inside, image.dtype)[:, :, None]

        return Feature(fn, f"region{'!' if invert else ''}:{','.join(f'{b:g}' for b in box)}")

    def masked(image):
        m = mask_fn(image) if mask_fn is not None else jnp.asarray(mask, image.dtype)
        if m.shape != image.shape[:2]:
            raise ValueError(f"mask must have shape [H, W] = {image.shape[:2]}; got {m.shape}.")
        m = 1.0 - m if invert else m
        return image * m[:, :, None].astype(image.dtype)

    return Feature(masked, f"mask{'!' if invert else ''}")


def compose(*stages: Feature) -> Feature:
    """Chain features in image space, left to right: ``compose(highpass(2), region(box))``.

    Args:
      *stages: features applied in order (each one's ``image_fn`` to the previous output).

    Returns:
      Feature whose output is the last stage's, flattened.

    >>> import jax.numpy as jnp
    >>> compose(highpass(2.0), region((0, 0, 4, 4)))(jnp.ones((16, 16, 3))).shape
    (16,)
    """
    if not stages or not all(isinstance(s, Feature) for s in stages):
        raise ValueError("compose takes one or more Feature objects (pixels(), region(...), ...).")

    def fn(image):
        for stage in stages:
            image = stage.image_fn(image)
        return image

    return Feature(fn, "∘".join(s.name for s in stages))


__all__ = [
    "Feature",
    "blur",
    "compose",
    "fourier_band",
    "grayscale",
    "highpass",
    "lowpass",
    "pixels",
    "region",
]
