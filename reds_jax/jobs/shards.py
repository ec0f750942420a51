"""Shard files of the augmentation job: ``.npz``, WebDataset ``.tar`` and Parquet, all reproducible.

Every format holds the same arrays (see :mod:`reds_jax.jobs.augment`), and :func:`load_shard`
gives them back identically from any of them. The same arrays always give the same bytes: fixed
zip dates and member order (npz); fixed tar headers (mtime 0, uid/gid 0, mode 0644, no user names,
members in sample order) with PNGs of a fixed zlib level (webdataset); one row group in a fixed
column order with a fixed codec (parquet).

``webdataset`` and ``parquet`` shards hold one *sample* per start latent × path (``2k`` samples per
latent), keyed ``{item:010d}_p{path:03d}`` and ordered by item, then path. A sample has the
frames ``0..T`` as PNG images, the path's latents ``[T+1, d]``, its feature distances
``[V, T+1]`` / ``[F, T+1]``, and: ``item`` (position in the job's list of start latents),
``seed``, ``path`` (``0..2k-1``), ``direction`` (``path // 2``), ``sign`` (``+1`` for even paths,
``-1`` for odd ones), ``value`` (the direction's Rayleigh quotient), and the job's feature specs
``vary_features`` / ``fix_features``. In a tar shard these are the members::

    0000000012_p003.000.png ... 0000000012_p003.008.png   frames (step 0..T)
    0000000012_p003.latents.npy                           [T+1, d]
    0000000012_p003.json                                  everything else (strict JSON)

The ``.json`` member is strict JSON: a NaN (a diverged path's distance) is ``null`` and an
infinity the string ``"Infinity"`` / ``"-Infinity"``; :func:`load_shard` gives them back as floats.

and in a Parquet shard the columns ``key, item, seed, path, direction, sign, value, frames``
(a list of ``{bytes, path}`` PNG structs, which Hugging Face ``datasets`` reads as a list of
images), ``latents``, ``vary_distances``, ``fix_distances``, ``vary_features``,
``fix_features`` (nested lists of the job's float dtype). Any further per-latent array of the job
(``[n, 2k, ...]`` or ``[n, ...]``) is stored per sample the same way (``NAME.npy`` / a column).
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import tarfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from reds_jax._io import npz_bytes

__all__ = ["FORMATS", "encode_shard", "load_shard", "require", "shard_name"]

FORMATS = ("npz", "webdataset", "parquet")
_SUFFIX = {"npz": ".npz", "webdataset": ".tar", "parquet": ".parquet"}
_PNG_LEVEL = {True: 6, False: 1}
# arrays every shard has; anything else is an "extra" stored per sample
_KNOWN = (
    "images",
    "latents",
    "vary_distances",
    "fix_distances",
    "values",
    "seeds",
    "items",
    "vary_features",
    "fix_features",
)
_SCALARS = ("key", "item", "seed", "path", "direction", "sign", "value")


def shard_name(index: int, fmt: str = "npz") -> str:
    """The file name of shard ``index``: ``shard-00000.npz`` / ``.tar`` / ``.parquet``.

    >>> shard_name(3, "webdataset")
    'shard-00003.tar'
    """
    return f"shard-{index:05d}{_SUFFIX[fmt]}"


def require(fmt: str) -> None:
    """Raises ``ImportError`` (saying what to install) when ``fmt`` needs a missing package."""
    needs = {"npz": (), "webdataset": ("PIL",), "parquet": ("PIL", "pyarrow")}[fmt]
    for module in needs:
        try:
            __import__(module)
        except ImportError:
            raise ImportError(
                f"format {fmt!r} needs the {module.replace('PIL', 'pillow')!r} package; install "
                "it with: pip install 'reds-jax[datasets]'."
            ) from None


def sample_key(item: int, path: int) -> str:
    """``0000000012_p003``: the WebDataset key / Parquet ``key`` of a sample."""
    return f"{item:010d}_p{path:03d}"


# ---------------------------------------------------------------------------------------------
# Writers


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr, order="C"), allow_pickle=False)
    return buf.getvalue()


def _png_bytes(frame: np.ndarray, level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
    img.save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _columns(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-sample columns ``[N = n·2k, ...]`` (item-major) and the shard-level facts."""
    images = np.asarray(arrays["images"])
    n, paths, frames = images.shape[:3]
    rep = lambda a: np.repeat(np.asarray(a), paths, axis=0)  # noqa: E731  [n, ...] -> [N, ...]
    flat = lambda a: np.asarray(a).reshape(n * paths, *np.shape(a)[2:])  # noqa: E731
    path = np.tile(np.arange(paths, dtype=np.int32), n)
    items = np.asarray(arrays["items"], np.int64)
    cols = {
        "key": np.asarray(
            [sample_key(int(i), int(p)) for i, p in zip(rep(items), path, strict=True)]
        ),
        "item": rep(items),
        "seed": rep(np.asarray(arrays["seeds"], np.int64)),
        "path": path,
        "direction": path // 2,
        "sign": np.where(path % 2 == 0, 1, -1).astype(np.int8),
        "value": np.asarray(arrays["values"])[:, np.arange(paths) // 2].reshape(-1),
        "frames": flat(images),
        "latents": flat(arrays["latents"]),
        "vary_distances": flat(np.swapaxes(arrays["vary_distances"], 1, 2)),
        "fix_distances": flat(np.swapaxes(arrays["fix_distances"], 1, 2)),
    }
    layout = {}
    for name, a in arrays.items():
        if name in _KNOWN:
            continue
        a = np.asarray(a)
        per_path = a.ndim >= 2 and a.shape[:2] == (n, paths)
        cols[name] = flat(a) if per_path else rep(a)
        layout[name] = {
            "per": "path" if per_path else "item",
            "shape": list(cols[name].shape[1:]),
            "dtype": cols[name].dtype.str,
        }
    facts = {
        "frames": frames,
        "image_shape": list(images.shape[3:]),
        "vary_features": [str(s) for s in arrays["vary_features"]],
        "fix_features": [str(s) for s in arrays["fix_features"]],
        "dtypes": {name: str(cols[name].dtype) for name in cols if name != "key"},
        "layout": layout,
    }
    return cols, facts


def _strict_json(x: Any) -> Any:
    """Non-finite floats (in lists too) -> ``None`` (NaN) or ``"Infinity"`` / ``"-Infinity"``.

    ``np.asarray(..., float_dtype)`` reads both back: ``None`` as NaN, the strings as infinities.

    >>> _strict_json([1.5, float("nan"), [float("-inf")]])
    [1.5, None, ['-Infinity']]
    """
    if isinstance(x, list):
        return [_strict_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def _tar_bytes(arrays: Mapping[str, np.ndarray], compress: bool) -> bytes:
    cols, facts = _columns(arrays)
    level = _PNG_LEVEL[compress]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))

        for s, key in enumerate(cols["key"]):
            for t, frame in enumerate(cols["frames"][s]):
                add(f"{key}.{t:03d}.png", _png_bytes(frame, level))
            for name in ("latents", *facts["layout"]):
                add(f"{key}.{name}.npy", _npy_bytes(cols[name][s]))
            meta = {name: _strict_json(cols[name][s].item()) for name in _SCALARS}
            meta["vary_distances"] = _strict_json(cols["vary_distances"][s].tolist())
            meta["fix_distances"] = _strict_json(cols["fix_distances"][s].tolist())
            meta.update(facts)
            add(f"{key}.json", json.dumps(meta, sort_keys=True, allow_nan=False).encode())
    return buf.getvalue()


def _list_array(x: np.ndarray):
    """``[N, a, b, ...]`` numpy -> an Arrow list<list<...>> array of ``x``'s dtype."""
    import pyarrow as pa

    values = pa.array(np.asarray(x, order="C").reshape(-1))
    for axis in reversed(range(1, x.ndim)):
        count, size = int(np.prod(x.shape[:axis])), x.shape[axis]
        offsets = pa.array(np.arange(count + 1, dtype=np.int32) * size, pa.int32())
        values = pa.ListArray.from_arrays(offsets, values)
    return values


def _hf_feature(arrow_type, image: bool = False) -> dict[str, Any]:
    import pyarrow as pa

    if pa.types.is_list(arrow_type):
        return {"feature": _hf_feature(arrow_type.value_type, image), "_type": "List"}
    if image:
        return {"_type": "Image"}
    return {
        "dtype": "string" if pa.types.is_string(arrow_type) else str(arrow_type),
        "_type": "Value",
    }


def _parquet_bytes(arrays: Mapping[str, np.ndarray], compress: bool) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols, facts = _columns(arrays)
    n_samples, level = len(cols["key"]), _PNG_LEVEL[compress]
    pngs = [_png_bytes(f, level) for frames in cols["frames"] for f in frames]
    structs = pa.StructArray.from_arrays(
        [pa.array(pngs, pa.binary()), pa.array([None] * len(pngs), pa.string())],
        names=["bytes", "path"],
    )
    offsets = pa.array(np.arange(n_samples + 1, dtype=np.int32) * facts["frames"], pa.int32())
    data: dict[str, Any] = {"key": pa.array(cols["key"].tolist(), pa.string())}
    for name in _SCALARS[1:]:
        data[name] = pa.array(cols[name])
    data["frames"] = pa.ListArray.from_arrays(offsets, structs)
    for name in ("latents", "vary_distances", "fix_distances", *facts["layout"]):
        data[name] = _list_array(cols[name])
    for name in ("vary_features", "fix_features"):
        data[name] = pa.array([facts[name]] * n_samples, pa.list_(pa.string()))
    table = pa.table(data)
    features = {f.name: _hf_feature(f.type, image=f.name == "frames") for f in table.schema}
    meta = {k: facts[k] for k in ("frames", "image_shape", "layout")}
    table = table.replace_schema_metadata(
        {
            "huggingface": json.dumps({"info": {"features": features}}, sort_keys=True),
            "reds_jax": json.dumps(meta, sort_keys=True),
        }
    )
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd" if compress else "none",
        row_group_size=max(n_samples, 1),
        write_statistics=False,
    )
    return buf.getvalue()


def encode_shard(arrays: Mapping[str, np.ndarray], fmt: str, *, compress: bool = True) -> bytes:
    """The bytes of one shard file in format ``fmt`` (the same arrays give the same bytes).

    Args:
      arrays: a shard's arrays (``images`` uint8 ``[n, 2k, T+1, H, W, C]``, ``latents``,
        ``vary_distances``, ``fix_distances``, ``values``, ``seeds``, ``items``,
        ``vary_features``, ``fix_features``; see :mod:`reds_jax.jobs.augment`).
      fmt: one of :data:`FORMATS`.
      compress: deflate npz members / zstd Parquet columns / PNG zlib level 6 (else 1).

    Returns:
      The file's bytes.

    >>> a = {"x": np.arange(3)}
    >>> encode_shard(a, "npz") == encode_shard(a, "npz")
    True
    """
    if fmt == "npz":
        return npz_bytes(arrays, compress)
    if fmt == "webdataset":
        return _tar_bytes(arrays, compress)
    if fmt == "parquet":
        return _parquet_bytes(arrays, compress)
    raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}.")


# ---------------------------------------------------------------------------------------------
# Readers


def _png_array(data: bytes, shape: list[int]) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img, np.uint8).reshape(shape)


def _assemble(cols: dict[str, np.ndarray], facts: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per-sample columns -> the shard's arrays (the inverse of :func:`_columns`)."""
    order = np.lexsort((cols["path"], cols["item"]))
    cols = {name: a[order] for name, a in cols.items()}
    n_items = len(np.unique(cols["item"]))
    n = len(cols["item"]) // max(n_items, 1)

    def r(a):
        return a.reshape(n_items, n, *a.shape[1:])

    out = {
        "images": r(cols["frames"]),
        "latents": r(cols["latents"]),
        "vary_distances": np.swapaxes(r(cols["vary_distances"]), 1, 2),
        "fix_distances": np.swapaxes(r(cols["fix_distances"]), 1, 2),
        "values": np.asarray(r(cols["value"])[:, 0::2], order="C"),
        "seeds": r(cols["seed"])[:, 0],
    }
    for name, how in facts["layout"].items():
        out[name] = r(cols[name]) if how["per"] == "path" else r(cols[name])[:, 0]
    out["items"] = r(cols["item"])[:, 0]
    out["vary_features"] = np.asarray(facts["vary_features"], dtype=str)
    out["fix_features"] = np.asarray(facts["fix_features"], dtype=str).reshape(-1)
    return {name: np.asarray(a, order="C") for name, a in out.items()}


def _load_tar(path: pathlib.Path) -> dict[str, np.ndarray]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r:") as tf:
        for member in tf:
            if not member.isfile():
                continue
            key, _, rest = member.name.partition(".")
            samples.setdefault(key, {})[rest] = tf.extractfile(member).read()
    rows = []
    for key in sorted(samples):
        files = samples[key]
        meta = json.loads(files["json"])
        frames = [
            _png_array(files[f"{t:03d}.png"], meta["image_shape"]) for t in range(meta["frames"])
        ]
        arrays = {
            name: np.load(io.BytesIO(files[f"{name}.npy"]), allow_pickle=False)
            for name in ("latents", *meta["layout"])
        }
        rows.append((meta, np.stack(frames), arrays))
    if not rows:
        raise ValueError(f"{path} holds no samples.")
    facts = rows[0][0]
    dt = facts["dtypes"]
    t1 = facts["frames"]
    cols = {name: np.asarray([m[name] for m, _, _ in rows], dt[name]) for name in _SCALARS[1:]}
    cols["frames"] = np.stack([f for _, f, _ in rows])
    for name, n_feat in (("vary_distances", "vary_features"), ("fix_distances", "fix_features")):
        vals = [m[name] for m, _, _ in rows]
        cols[name] = np.asarray(vals, dt[name]).reshape(len(rows), len(facts[n_feat]), t1)
    for name in ("latents", *facts["layout"]):
        cols[name] = np.stack([a[name] for _, _, a in rows])
    return _assemble(cols, facts)


def _from_lists(column, shape: list[int], dtype: str) -> np.ndarray:
    values = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    for _ in shape:
        values = values.flatten()
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype).reshape(len(column), *shape)


def _load_parquet(path: pathlib.Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"reds_jax"])
    n = table.num_rows
    if n == 0:
        raise ValueError(f"{path} holds no samples.")
    vary = table.column("vary_features")[0].as_py()
    fix = table.column("fix_features")[0].as_py()
    t1 = meta["frames"]
    cols = {name: table.column(name).to_numpy() for name in _SCALARS[1:]}
    structs = table.column("frames").combine_chunks().flatten()
    pngs = structs.field("bytes").to_pylist()
    cols["frames"] = np.stack([_png_array(b, meta["image_shape"]) for b in pngs]).reshape(
        n, t1, *meta["image_shape"]
    )
    lat = table.column("latents")
    d = len(lat[0].as_py()[0]) if t1 else 0
    cols["latents"] = _from_lists(lat, [t1, d], lat.type.value_type.value_type.to_pandas_dtype())
    for name, feats in (("vary_distances", vary), ("fix_distances", fix)):
        col = table.column(name)
        cols[name] = _from_lists(
            col, [len(feats), t1], col.type.value_type.value_type.to_pandas_dtype()
        )
    for name, how in meta["layout"].items():
        cols[name] = _from_lists(table.column(name), how["shape"], how["dtype"])
    return _assemble(cols, {**meta, "vary_features": vary, "fix_features": fix})


def load_shard(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All arrays of one shard file, whatever its format (told by the suffix).

    Args:
      path: a ``shard-*.npz``, ``shard-*.tar`` or ``shard-*.parquet`` file.

    Returns:
      dict of numpy arrays as described in :mod:`reds_jax.jobs.augment` (the same for every
      format of the same job).

    >>> # load_shard("out/shard-00000.tar")["images"].shape -> (n, 2k, T+1, H, W, 3)
    """
    path = pathlib.Path(path)
    if path.suffix == ".tar":
        return _load_tar(path)
    if path.suffix == ".parquet":
        return _load_parquet(path)
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
