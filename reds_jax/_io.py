"""Files, written safely: atomic replacement, streamed sha256, and caches of converted weights.

Internal to reds_jax: every writer in the package (augmentation shards and manifests, PNGs,
downloaded assets, converted checkpoints, training checkpoints) goes through :func:`atomic_write`,
and both weight converters (face DCGAN, face-api) cache through :func:`load_converted`. Standard
library and numpy only, so any layer may import it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import pathlib
import secrets
import zipfile
from collections.abc import Callable, Mapping
from typing import IO, Any, TypeVar

import numpy as np

__all__ = [
    "TMP_SUFFIX",
    "atomic_write",
    "converted_path",
    "fsync_dir",
    "load_converted",
    "npz_bytes",
    "sha256_file",
]

T = TypeVar("T")

TMP_SUFFIX = ".tmp"
"""Temporary files are ``.<name>.<pid>.<random>.tmp`` next to their target (hidden, removable)."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flushes a folder's entries (a rename) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Callable[[IO[bytes]], Any]
) -> pathlib.Path:
    """Replaces ``path`` so that readers (and a crash) see the old file or the new one, never a part.

    Writes a temporary file in the same folder, flushes and ``fsync``\\ s it, renames it over
    ``path`` (``os.replace``: atomic on POSIX and Windows within one file system) and ``fsync``\\ s the
    folder. If anything fails before the rename, the temporary file is removed and ``path`` is
    untouched. The folder must exist. An :class:`OSError` names ``path``, never the temporary file.

    Args:
      path: the file to (re)place.
      data: the bytes, or a function that writes them into a binary file object
        (e.g. ``lambda f: image.save(f, format="PNG")``).

    Returns:
      ``path`` as a :class:`pathlib.Path`.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(p, b"hello").read_bytes()
    b'hello'
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; pass a file path", os.fspath(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename == os.fspath(tmp):  # name the caller's path
            raise OSError(err.errno, err.strerror, os.fspath(path)) from None
        raise
    fsync_dir(path.parent)
    return path


def sha256_file(path: str | os.PathLike[str], *, block: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in blocks (constant memory).

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def converted_path(source: str | os.PathLike[str], version: int) -> pathlib.Path:
    """Where the converted copy of ``source`` is cached: ``<source>.flax-v<version>.msgpack``.

    >>> converted_path("/w/weights.tar", 1).name
    'weights.tar.flax-v1.msgpack'
    """
    source = pathlib.Path(source)
    return source.with_name(f"{source.name}.flax-v{version}.msgpack")


def load_converted(
    source: str | os.PathLike[str],
    version: int,
    convert: Callable[[], T],
    *,
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T | None],
) -> T:
    """Converts ``source`` once and caches the result next to it, with a sha256 sidecar.

    The cache is :func:`converted_path` plus ``<cache>.sha256`` (its digest, written after it). A
    cache whose digest does not match, that ``decode`` cannot read, or for which ``decode`` returns
    None (e.g. shapes that do not fit the model) is rebuilt from ``source``; a folder that cannot
    be written only costs a re-conversion next time.

    Args:
      source: the original file (the cache sits in its folder); ``convert`` reads it.
      version: the converter's version; bump it when the conversion changes.
      convert: builds the value from ``source``.
      encode: value -> bytes (e.g. ``flax.serialization.msgpack_serialize``).
      decode: bytes -> value, or None when the cached value does not fit.

    Returns:
      The converted value (from the cache when it is valid).

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "w.bin"
    >>> _ = src.write_bytes(b"raw")
    >>> load_converted(src, 1, lambda: b"RAW", encode=bytes, decode=bytes)
    b'RAW'
    >>> load_converted(src, 1, lambda: b"other", encode=bytes, decode=bytes)  # from the cache
    b'RAW'
    """
    cache = converted_path(source, version)
    digest_file = cache.with_name(cache.name + ".sha256")
    if cache.is_file() and digest_file.is_file():
        value = None
        with contextlib.suppress(Exception):  # a broken cache is rebuilt from the source
            data = cache.read_bytes()
            if hashlib.sha256(data).hexdigest() == digest_file.read_text().strip():
                value = decode(data)
        if value is not None:
            return value
    value = convert()
    with contextlib.suppress(OSError):
        data = encode(value)
        atomic_write(cache, data)
        atomic_write(digest_file, hashlib.sha256(data).hexdigest().encode())
    return value


_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: Mapping[str, np.ndarray], compress: bool) -> bytes:
    """A reproducible ``.npz`` (fixed timestamps, fixed order), readable by ``numpy.load``.

    The same arrays give the same bytes (``numpy.savez`` stamps the current time).

    >>> data = npz_bytes({"a": np.arange(3)}, compress=True)
    >>> np.load(io.BytesIO(data))["a"].tolist(), data == npz_bytes({"a": np.arange(3)}, True)
    ([0, 1, 2], True)
    """
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()
