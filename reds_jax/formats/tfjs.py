"""Reading TensorFlow.js layer weights (``*-weights_manifest.json`` + ``.bin`` shards) with numpy.

A tfjs weights manifest is a JSON list of groups; each group names its binary shards (``paths``,
concatenated in order) and its tensors (``weights``: ``name``, ``shape``, ``dtype`` and an optional
``quantization``). Tensors are stored back to back in the concatenated shards. Quantised float32
tensors store ``uint8`` / ``uint16`` codes ``q`` with per-tensor ``scale`` and ``min``; their value
is ``w = q · scale + min`` (computed in float64 and rounded to float32, as tfjs does), or IEEE
``float16`` codes.

This module needs numpy only (no jax); it is used by :mod:`reds_jax.features.faceapi`.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["TfjsFormatError", "load_tfjs_weights", "nest"]

_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


class TfjsFormatError(ValueError):
    """A tfjs manifest or shard is malformed; the message names the tensor or file."""


def _decode(spec: Mapping[str, Any], buf: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """Decodes one tensor starting at byte ``offset``; returns it and the next offset."""
    name, dtype = spec.get("name", "?"), spec.get("dtype")
    shape = tuple(int(s) for s in spec.get("shape", ()))
    size = int(np.prod(shape, dtype=np.int64))
    quant = spec.get("quantization")
    if quant is not None:
        qdtype = quant.get("dtype")
        if qdtype not in _QUANT_DTYPES:
            raise TfjsFormatError(
                f"Weight {name!r} has unsupported quantization dtype {qdtype!r}; "
                f"supported: {sorted(_QUANT_DTYPES)}."
            )
        stored = np.dtype(_QUANT_DTYPES[qdtype])
        nbytes = size * stored.itemsize
        if offset + nbytes > len(buf):
            raise TfjsFormatError(f"Weight {name!r} runs past the end of the weight shards.")
        if stored.itemsize > 1:
            stored = stored.newbyteorder("<")
        codes = np.frombuffer(buf, stored, size, offset)
        if qdtype == "float16":
            if dtype != "float32":
                raise TfjsFormatError(f"Weight {name!r}: float16 quantization needs dtype float32.")
            values = codes.astype(np.float32)
        else:
            if "scale" not in quant or "min" not in quant:
                raise TfjsFormatError(f"Weight {name!r} is {qdtype}-quantised without scale/min.")
            real = codes.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
            if dtype == "float32":
                values = real.astype(np.float32)
            elif dtype == "int32":
                values = np.floor(real + 0.5).astype(np.int32)  # JS Math.round
            else:
                raise TfjsFormatError(f"Weight {name!r}: cannot dequantise to dtype {dtype!r}.")
        return values.reshape(shape), offset + nbytes
    if dtype not in _PLAIN_DTYPES:
        raise TfjsFormatError(
            f"Weight {name!r} has unsupported dtype {dtype!r}; supported: {sorted(_PLAIN_DTYPES)}."
        )
    stored = np.dtype(_PLAIN_DTYPES[dtype])
    nbytes = size * stored.itemsize
    if offset + nbytes > len(buf):
        raise TfjsFormatError(f"Weight {name!r} runs past the end of the weight shards.")
    if stored.itemsize > 1:
        stored = stored.newbyteorder("<")
    values = np.frombuffer(buf, stored, size, offset)
    return values.reshape(shape).copy(), offset + nbytes


def load_tfjs_weights(
    manifest: str | os.PathLike[str],
    shard_dir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """Reads and dequantises all tensors of a tfjs weights manifest.

    Args:
        manifest: path of ``*-weights_manifest.json``.
        shard_dir: folder holding the ``.bin`` shards the manifest names; defaults to the
            manifest's folder.

    Returns:
        ``{name: array}`` with tfjs names (e.g. ``"conv32_down/conv/filters"``) and shapes;
        float tensors as float32 numpy arrays (conv filters ``[kH, kW, in, out]``).

    Raises:
        FileNotFoundError: the manifest or a shard is missing (the message names it).
        TfjsFormatError: malformed manifest, unsupported dtype, or shards of the wrong size.

    >>> w = load_tfjs_weights("model/face_landmark_68_model-weights_manifest.json")  # needs face-api weight files  # doctest: +SKIP
    >>> w["fc/weights"].shape  # needs face-api weight files  # doctest: +SKIP
    (256, 136)
    """
    manifest = pathlib.Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"tfjs weights manifest not found: {manifest}")
    folder = pathlib.Path(shard_dir) if shard_dir is not None else manifest.parent
    try:
        groups = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TfjsFormatError(f"{manifest} is not a readable JSON weights manifest: {e}") from e
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TfjsFormatError(f"{manifest}: expected a JSON list of weight groups.")
    out: dict[str, np.ndarray] = {}
    for group in groups:
        paths = group.get("paths", [])
        blobs = []
        for p in paths:
            shard = folder / p
            if not shard.is_file():
                raise FileNotFoundError(
                    f"Weight shard {shard} named by {manifest.name} is missing; place it next "
                    "to the manifest (or pass shard_dir)."
                )
            blobs.append(shard.read_bytes())
        buf = memoryview(b"".join(blobs))
        offset = 0
        for spec in group.get("weights", []):
            values, offset = _decode(spec, buf, offset)
            out[spec["name"]] = values
        if offset != len(buf):
            raise TfjsFormatError(
                f"{manifest.name}: the tensors use {offset} bytes but the shards {paths} hold "
                f"{len(buf)}; the shards do not belong to this manifest."
            )
    return out


def nest(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Turns ``{"a/b/c": x}`` into ``{"a": {"b": {"c": x}}}`` (a Flax-style params tree).

    Args:
        flat: mapping of ``sep``-joined paths to leaves.
        sep: path separator.

    Returns:
        The nested dict.

    Raises:
        TfjsFormatError: one name is both a leaf and a prefix of another.

    >>> nest({"fc/weights": 1, "fc/bias": 2})
    {'fc': {'weights': 1, 'bias': 2}}
    """
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(sep)
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TfjsFormatError(f"Weight name {key!r} nests under a tensor of that name.")
        if leaf in node:
            raise TfjsFormatError(f"Weight name {key!r} is both a tensor and a prefix.")
        node[leaf] = value
    return tree
