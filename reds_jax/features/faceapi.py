"""Differentiable face features from face-api's pretrained networks (identity, landmarks, age).

The weights are the tfjs models shipped in the npm package ``@vladmandic/face-api@1.7.15`` (MIT),
obtained once with :func:`reds_jax.assets.fetch` (``npm pack``), dequantised (``w = q·scale + min``)
and cached next to them as Flax msgpack (with a sha256 sidecar). The networks are the Flax ports in
:mod:`reds_jax.features.faceapi_nets`; preprocessing follows face-api's path for tensor inputs
exactly (values 0..255):

1. pad to a square with zeros, centred (``round(diff/2)`` rows / columns after, the rest before);
2. TF1 bilinear resize to 150 (recognition) or 112 (landmarks, age / gender) with
   ``alignCorners=false, halfPixelCenters=false``: output pixel ``i`` samples source coordinate
   ``i · in / out`` (no half-pixel offset), interpolating between its floor and ceil (clamped);
3. ``(x − [122.782, 117.001, 104.298]) / 255`` per RGB channel.

The public features take the generator's image ``[H, W, 3]`` in ``[0, 1]`` (any size; 64×64 for
the face DCGAN), scale it to 0..255 and run all of the above inside, so they are pure, jit-able and
work under ``jacfwd`` / ``jacrev`` / ``vmap`` in float32 or float64.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from reds_jax import assets
from reds_jax._io import load_converted
from reds_jax.features.closed_form import Feature
from reds_jax.features.faceapi_nets import AgeGenderNet, FaceLandmark68Net, FaceRecognitionNet
from reds_jax.formats.tfjs import load_tfjs_weights, nest

__all__ = [
    "FACEAPI_MEAN_RGB",
    "FaceApiNet",
    "age_gender",
    "face_identity",
    "face_landmarks",
    "faceapi_preprocess",
    "load_faceapi_net",
    "pad_to_square",
    "resize_bilinear_tf1",
]

FACEAPI_MEAN_RGB = (122.782, 117.001, 104.298)
"""Per-channel mean (0..255 scale) that face-api subtracts before dividing by 255."""

_CONVERTER_VERSION = 1
_NETS: dict[str, tuple[str, Callable[[], nn.Module], int]] = {
    # name: (asset stem, module factory, input size)
    "recognition": ("face_api_recognition", FaceRecognitionNet, 150),
    "landmark68": ("face_api_landmark68", FaceLandmark68Net, 112),
    "age_gender": ("face_api_age_gender", AgeGenderNet, 112),
}


# --- preprocessing ------------------------------------------------------------------------------


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` float64 weights of TF1 bilinear sampling along one axis."""
    m = np.zeros((n_out, n_in))
    ratio = n_in / n_out
    for i in range(n_out):
        src = ratio * i
        lo = max(0, math.floor(src))
        hi = min(n_in - 1, math.ceil(src))
        frac = src - lo
        m[i, lo] += 1.0 - frac
        m[i, hi] += frac
    return m


def resize_bilinear_tf1(image: jax.Array, size: tuple[int, int]) -> jax.Array:
    """TF1 / tfjs bilinear resize with ``alignCorners=false, halfPixelCenters=false``.

    Output pixel ``(i, j)`` samples the source at ``(i · H / h, j · W / w)`` (no half-pixel
    offset), so it differs from :func:`jax.image.resize`. Linear in the image (two small matrix
    products), hence exactly differentiable.

    Args:
        image: ``[H, W, C]``, floating point.
        size: ``(h, w)`` output size.

    Returns:
        ``[h, w, C]`` in the image's dtype.

    >>> x = jnp.arange(4.0).reshape(1, 4, 1)
    >>> resize_bilinear_tf1(x, (1, 8))[0, :, 0].tolist()  # sources 0, 0.5, ..., 3.5 (clamped)
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    """
    if image.ndim != 3:
        raise ValueError(f"resize_bilinear_tf1 takes [H, W, C]; got shape {image.shape}.")
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be two positive ints; got {size!r}.")
    rows = jnp.asarray(_interp_matrix(image.shape[0], h), image.dtype)
    cols = jnp.asarray(_interp_matrix(image.shape[1], w), image.dtype)
    hi = jax.lax.Precision.HIGHEST
    out = jnp.einsum("ih,hwc->iwc", rows, image, precision=hi)
    return jnp.einsum("jw,iwc->ijc", cols, out, precision=hi)


def _square_padding(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    diff = abs(h - w)
    after = math.floor(diff * 0.5 + 0.5)  # JS Math.round
    pad = (diff - after, after)
    return (pad, (0, 0)) if h < w else ((0, 0), pad)


def pad_to_square(image: jax.Array) -> jax.Array:
    """Zero-pads the shorter side to a square, as face-api does for tensor inputs.

    ``round(diff / 2)`` (rounding halves up) rows or columns go after the image, the rest before.

    Args:
        image: ``[H, W, C]``.

    Returns:
        ``[S, S, C]`` with ``S = max(H, W)``.

    >>> pad_to_square(jnp.ones((1, 4, 1)))[:, 0, 0].tolist()
    [0.0, 1.0, 0.0, 0.0]
    """
    (top, bottom), (left, right) = _square_padding(image.shape[0], image.shape[1])
    return jnp.pad(image, ((top, bottom), (left, right), (0, 0)))


def faceapi_preprocess(image255: jax.Array, size: int) -> jax.Array:
    """face-api's input pipeline for a tensor image with values 0..255.

    Args:
        image255: ``[H, W, 3]`` RGB, floating point, 0..255.
        size: network input size (150 for recognition, 112 for landmarks and age / gender).

    Returns:
        ``[size, size, 3]``: padded to square, TF1-bilinear resized (skipped when already
        ``size``), then ``(x − FACEAPI_MEAN_RGB) / 255``.

    >>> faceapi_preprocess(jnp.full((64, 64, 3), 255.0), 112).shape
    (112, 112, 3)
    """
    if image255.ndim != 3 or image255.shape[-1] != 3:
        raise ValueError(f"face-api takes one RGB image [H, W, 3]; got shape {image255.shape}.")
    x = pad_to_square(image255)
    if x.shape[0] != size:
        x = resize_bilinear_tf1(x, (size, size))
    mean = jnp.asarray(FACEAPI_MEAN_RGB, x.dtype).reshape(1, 1, 3)
    return (x - mean) / jnp.asarray(255, x.dtype)


def _unit_image(image: jax.Array) -> jax.Array:
    """Checks a generator image (``[H, W, 3]`` in [0, 1]) and returns it on the 0..255 scale."""
    image = jnp.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"face features take one RGB image of shape [H, W, 3] in [0, 1]; got {image.shape}. "
            "Use jax.vmap for a batch."
        )
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(
            f"face features take a floating-point image in [0, 1]; got dtype {image.dtype} "
            "(for uint8 pixels pass image.astype(float) / 255)."
        )
    return image * jnp.asarray(255, image.dtype)


# --- weights ------------------------------------------------------------------------------------


class FaceApiNet(NamedTuple):
    """A face-api network ported to Flax.

    Attributes:
        module: the Flax module (one preprocessed ``[size, size, 3]`` image per call).
        params: ``{"params": tree}`` of float32 jax arrays, tree keys = tfjs weight names.
        input_size: the square input size the module expects (150 or 112).
    """

    module: nn.Module
    params: dict[str, Any]
    input_size: int


def _convert(manifest: pathlib.Path, module: nn.Module, size: int) -> dict[str, Any]:
    """Loads the tfjs weights (through a msgpack cache) and checks them against ``module``."""
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((size, size, 3)))
    want = jax.tree.map(lambda s: tuple(s.shape), expected)

    def decode(data: bytes) -> dict[str, Any] | None:
        variables = serialization.msgpack_restore(data)
        return variables if jax.tree.map(np.shape, variables) == want else None

    return load_converted(
        manifest,
        _CONVERTER_VERSION,
        lambda: _convert_tfjs(manifest, module, want),
        encode=serialization.msgpack_serialize,
        decode=decode,
    )


def _convert_tfjs(manifest: pathlib.Path, module: nn.Module, want: Any) -> dict[str, Any]:
    variables = {"params": nest(load_tfjs_weights(manifest))}
    got = jax.tree.map(np.shape, variables)
    if got != want:
        flat_got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(got)}
        flat_want = {
            jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(want)
        }
        diff = sorted(
            f"{k}: file {flat_got.get(k)} vs model {flat_want.get(k)}"
            for k in set(flat_got) | set(flat_want)
            if flat_got.get(k) != flat_want.get(k)
        )
        raise ValueError(
            f"{manifest.name} does not fit {type(module).__name__}: " + "; ".join(diff[:8])
        )
    return variables


@functools.lru_cache(maxsize=8)
def _load(name: str, root: str | None) -> FaceApiNet:
    stem, factory, size = _NETS[name]
    manifest = assets.fetch(f"{stem}_manifest", root)
    assets.fetch(f"{stem}_weights", root)
    module = factory()
    variables = _convert(manifest, module, size)
    return FaceApiNet(module, jax.tree.map(jnp.asarray, variables), size)


def load_faceapi_net(name: str, root: str | os.PathLike[str] | None = None) -> FaceApiNet:
    """Loads one of face-api's networks as a Flax module and params (cached per process).

    Fetches the tfjs manifest and weight shard with :func:`reds_jax.assets.fetch` (``npm pack
    @vladmandic/face-api@1.7.15`` once), dequantises and converts them, and caches the Flax
    variables next to the manifest (``*.flax-v1.msgpack`` + sha256; rebuilt when corrupt).

    Args:
        name: ``"recognition"``, ``"landmark68"`` or ``"age_gender"``.
        root: asset cache root; defaults to ``$REDS_JAX_CACHE`` or ``~/.cache/reds_jax``.

    Returns:
        A :class:`FaceApiNet`; ``module.apply(params, faceapi_preprocess(x255, input_size))``.

    Raises:
        reds_jax.assets.AssetError: the files are not cached and cannot be obtained; the message
            says which file to place where.

    >>> net = load_faceapi_net("landmark68")  # fetches the face-api weights  # doctest: +SKIP
    >>> net.input_size  # fetches the face-api weights  # doctest: +SKIP
    112
    """
    if name not in _NETS:
        raise ValueError(f"Unknown face-api net {name!r}; pass one of {sorted(_NETS)}.")
    key = None if root is None else str(pathlib.Path(root).expanduser().resolve())
    if key is None:
        key_root = assets.cache_dir()
        key = str(key_root.expanduser().resolve())
    return _load(name, key)


# --- features -----------------------------------------------------------------------------------


def face_identity(
    *, normalize: bool = False, root: str | os.PathLike[str] | None = None
) -> Feature:
    """Face identity: face-api's 128-D descriptor (dlib-style ResNet at 150×150).

    Args:
        normalize: divide the descriptor by its L2 norm (as ArcFace-style embeddings are). face-api
            compares raw descriptors by Euclidean distance (< 0.6: same person).
        root: asset cache root (see :func:`load_faceapi_net`).

    Returns:
        Feature ``image [H, W, 3] in [0, 1] -> [128]``.

    Raises:
        reds_jax.assets.AssetError: the weights are missing and cannot be fetched.

    >>> f = face_identity()  # fetches the face-api weights  # doctest: +SKIP
    >>> f(jnp.zeros((64, 64, 3))).shape  # fetches the face-api weights  # doctest: +SKIP
    (128,)
    """
    net = load_faceapi_net("recognition", root)

    def fn(image: jax.Array) -> jax.Array:
        x = faceapi_preprocess(_unit_image(image), net.input_size)
        d = net.module.apply(net.params, x)
        if normalize:
            d = d / jnp.sqrt(jnp.sum(d * d))
        return d

    return Feature(fn, "face_identity" + (":unit" if normalize else ""))


def face_landmarks(*, root: str | os.PathLike[str] | None = None) -> Feature:
    """68 facial landmarks (face-api's 68-point net at 112×112), normalised image coordinates.

    Coordinates are ``(x, y)`` relative to the input image's width and height (``0`` left / top,
    ``1`` right / bottom), undoing face-api's square padding as its post-processing does.

    Args:
        root: asset cache root (see :func:`load_faceapi_net`).

    Returns:
        Feature ``image [H, W, 3] in [0, 1] -> [136]`` (its ``image_fn`` gives ``[68, 2]``).

    >>> f = face_landmarks()  # fetches the face-api weights  # doctest: +SKIP
    >>> f.image_fn(jnp.zeros((64, 64, 3))).shape  # fetches the face-api weights  # doctest: +SKIP
    (68, 2)
    """
    net = load_faceapi_net("landmark68", root)
    size = net.input_size

    def fn(image: jax.Array) -> jax.Array:
        x255 = _unit_image(image)
        h, w = x255.shape[0], x255.shape[1]
        out = net.module.apply(net.params, faceapi_preprocess(x255, size)).reshape(68, 2)
        scale = size / max(h, w)
        sw, sh = w * scale, h * scale
        pad = (abs(sw - sh) / 2 if sw < sh else 0.0, abs(sw - sh) / 2 if sh < sw else 0.0)
        offset = jnp.asarray(pad, out.dtype).reshape(1, 2)
        extent = jnp.asarray((sw, sh), out.dtype).reshape(1, 2)
        return (out * jnp.asarray(size, out.dtype) - offset) / extent

    return Feature(fn, "face_landmarks")


def age_gender(output: str = "both", *, root: str | os.PathLike[str] | None = None) -> Feature:
    """Age (years) and gender probabilities from face-api's age / gender net (112×112).

    Args:
        output: ``"both"`` → ``[age, P(male), P(female)]``; ``"age"`` → ``[age]``;
            ``"gender"`` → ``[P(male), P(female)]`` (softmax of the logits, as face-api reports).
        root: asset cache root (see :func:`load_faceapi_net`).

    Returns:
        Feature ``image [H, W, 3] in [0, 1] -> [3]``, ``[1]`` or ``[2]``.

    >>> f = age_gender("age")  # fetches the face-api weights  # doctest: +SKIP
    >>> f(jnp.zeros((64, 64, 3))).shape  # fetches the face-api weights  # doctest: +SKIP
    (1,)
    """
    if output not in ("both", "age", "gender"):
        raise ValueError(f"output={output!r}; pass 'both', 'age' or 'gender'.")
    net = load_faceapi_net("age_gender", root)

    def fn(image: jax.Array) -> jax.Array:
        x = faceapi_preprocess(_unit_image(image), net.input_size)
        age, logits = net.module.apply(net.params, x)
        probs = jax.nn.softmax(logits)
        if output == "age":
            return age.reshape(1)
        if output == "gender":
            return probs
        return jnp.concatenate([age.reshape(1), probs])

    return Feature(fn, f"age_gender:{output}")
