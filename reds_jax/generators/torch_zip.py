"""Reads ``torch.save`` zip checkpoints without torch, refusing anything but tensors and dicts.

A ``torch.save`` file (PyTorch >= 1.6) is a zip archive ``PREFIX/data.pkl`` + ``PREFIX/data/<key>``
(raw storage bytes) + ``PREFIX/byteorder``. The pickle names a handful of torch functions to rebuild
tensors from those storages. :func:`load_torch_zip` runs the pickle through a restricted unpickler
that resolves only those names (to numpy re-implementations) plus ``collections.OrderedDict``; any
other global -- ``os.system``, ``builtins.eval``, a model class -- raises
:class:`pickle.UnpicklingError` before it can run.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["load_torch_zip"]


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the element dtype."""

    name: str
    dtype: np.dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"Refusing to set state on torch.{self.name}.")


_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
}


class _Storage:
    """A loaded storage: a flat numpy array of ``numel`` elements."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


class _Rebuild:
    """A safe callable standing in for one allowed torch function (no state can be set on it)."""

    __slots__ = ("fn", "qualname")

    def __init__(self, qualname: str, fn: Any):
        self.qualname = qualname
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"Refusing to set state on {self.qualname}.")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """numpy version of ``torch._utils._rebuild_tensor_v2``: a strided view, copied."""
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 expects a storage as first argument.")
    flat = storage.array
    ints = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in ints):
        raise pickle.UnpicklingError(f"Bad tensor geometry: size={size}, stride={stride}.")
    shape = tuple(size)
    if 0 in shape:
        return np.zeros(shape, flat.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    if last >= flat.size:
        raise pickle.UnpicklingError(
            f"Tensor of size {shape}, stride {tuple(stride)}, offset {storage_offset} reads past "
            f"its storage of {flat.size} elements."
        )
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:],
        shape=shape,
        strides=tuple(s * item for s in stride),
        writeable=False,
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="), copy=True)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """numpy version of ``torch._utils._rebuild_parameter``: the data itself."""
    del requires_grad, backward_hooks
    return data


def _size(*args: Any) -> tuple[int, ...]:
    return tuple(*args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Rebuild(
        "torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2
    ),
    ("torch._utils", "_rebuild_parameter"): _Rebuild(
        "torch._utils._rebuild_parameter", _rebuild_parameter
    ),
    ("torch", "Size"): _Rebuild("torch.Size", _size),
    **{("torch", n): _StorageType(n, np.dtype(d)) for n, d in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED``; storages come from the zip archive."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"Refusing to load global {module}.{name}: a torch state-dict checkpoint only "
                "needs tensors, storages and OrderedDict. Re-save the checkpoint as a plain "
                "state dict (torch.save(model.state_dict(), path)) to read it here."
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"Unsupported storage type {storage_type!r}.")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"Bad storage record {pid!r}.")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(
                    f"Storage {key!r} is missing from the archive ({self._prefix}data/{key})."
                ) from None
            dtype = storage_type.dtype.newbyteorder(self._byteorder)
            if len(raw) < numel * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"Storage {key!r} holds {len(raw)} bytes, {numel} x {dtype} needs "
                    f"{numel * dtype.itemsize}."
                )
            self._storages[key] = _Storage(np.frombuffer(raw, dtype=dtype, count=numel))
        return self._storages[key]


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_plain(v) for v in obj)
    if isinstance(obj, _Storage):
        return np.array(obj.array, dtype=obj.array.dtype.newbyteorder("="))
    return obj


def load_torch_zip(path: str | os.PathLike[str]) -> Any:
    """Loads a ``torch.save`` zip checkpoint of tensors and dicts into numpy, without torch.

    Only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
    ``torch._utils._rebuild_parameter``, ``torch.Size`` and the ``torch.*Storage`` types are
    resolved; the pickle may otherwise hold only builtin containers, numbers and strings. Tensors
    come back as C-contiguous native-endian numpy arrays with their dtype, size, stride and
    storage offset respected; ``OrderedDict`` becomes ``dict``.

    Args:
        path: a file written by ``torch.save`` (the zip format, the default since PyTorch 1.6).

    Returns:
        The saved object with tensors as ``np.ndarray``, e.g. ``{"netG_state_dict":
        {"main.0.weight": array [100, 512, 4, 4] float32, ...}}``.

    Raises:
        pickle.UnpicklingError: the pickle names anything else (nothing from it is executed), or
            a storage is missing or too short.
        ValueError: the file is not a zip archive in the torch layout.

    >>> sd = load_torch_zip(reds_jax.assets.fetch("face_dcgan"))  # doctest: +SKIP
    >>> sd["netG_state_dict"]["main.0.weight"].shape  # doctest: +SKIP
    (100, 512, 4, 4)
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{os.fspath(path)!r} is not a zip archive. Only the zip format of torch.save is "
            "supported; re-save it with torch.save(obj, path) on PyTorch >= 1.6 "
            "(_use_new_zipfile_serialization=True)."
        )
    with zipfile.ZipFile(path) as archive:
        pkls = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise ValueError(
                f"{os.fspath(path)!r} is a zip archive but not in the torch.save layout "
                f"(expected exactly one PREFIX/data.pkl, found {pkls})."
            )
        prefix = pkls[0][: -len("data.pkl")]
        try:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        except KeyError:
            byteorder = "little"  # torch.save omitted it before 1.11; always little-endian then
        if byteorder not in ("little", "big"):
            raise ValueError(f"Unknown byteorder record {byteorder!r} in {os.fspath(path)!r}.")
        with archive.open(pkls[0]) as f:
            obj = _RestrictedUnpickler(f, archive, prefix, byteorder).load()
    return _to_plain(obj)
