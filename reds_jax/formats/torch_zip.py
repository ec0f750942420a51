"""Reads ``torch.save`` zip checkpoints without torch, refusing anything but tensors and dicts.

A ``torch.save`` file (PyTorch >= 1.6) is a zip archive ``PREFIX/data.pkl`` + ``PREFIX/data/<key>``
(raw storage bytes) + ``PREFIX/byteorder``. The pickle names a handful of torch functions to rebuild
tensors from those storages. :func:`load_torch_zip` runs the pickle through a restricted unpickler
that resolves only those names (to numpy re-implementations) plus ``collections.OrderedDict``; any
other global -- ``os.system``, ``builtins.eval``, a model class -- raises
:class:`pickle.UnpicklingError` before it can run.

:func:`load_torch_pickle` reads a *plain* pickle holding tensors (e.g. a stylegan2-ada-pytorch
network pickle written with ``pickle.dump``). There every storage is pickled by torch as
``torch.storage._load_from_bytes(b)``, ``b`` a small legacy (pre-zip) ``torch.save`` stream
(three header pickles, the storage record, its key list, then ``int64 numel`` + little-endian bytes
per storage), which is parsed here without torch; numpy scalars (``numpy.dtype`` +
``numpy.core.multiarray.scalar``, numeric dtypes only) are allowed as well. Callers may allow a few
more names with inert stand-ins (``extra_globals``); nothing from the file is ever imported.

Hostile but small files cannot stall either reader: shared references stay shared (a 300-byte
pickle of ``a = [a, a]`` forty times loads in microseconds, not as 2**40 copies); containers nested
deeper than :data:`MAX_DEPTH` are refused with a clear error (not a ``RecursionError``); a zip
member is checked from its header before it is inflated (too short for its storage, a data.pkl over
:data:`MAX_PICKLE_BYTES`, or a compression ratio over :data:`MAX_RATIO` above 1 MiB: a zip bomb) and
read with a cap of the bytes its storage needs; a stride-0 tensor may not expand its storage beyond
:data:`MAX_EXPANSION` elements, and all the tensors of one file together may not need more than twice
its stored bytes plus :data:`MAX_EXTRA_BYTES` (checked before each tensor is allocated: many views
of one storage cannot add up to gigabytes). Every pickle's opcodes are walked before it is loaded
(nothing is built), so a counted record (``BINBYTES8``, ``BINUNICODE8``, ...) that claims more
bytes than the file holds is refused before the unpickler would allocate them. Malformed pickles
raise :class:`pickle.UnpicklingError` naming the file.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import io
import os
import pickle
import pickletools
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["load_torch_pickle", "load_torch_zip"]

# Bounds that keep a small hostile file from stalling the reader (checked before allocating).
MAX_DEPTH = 256  # containers nested deeper than this are refused (a checkpoint needs < 20)
MAX_PICKLE_BYTES = 1 << 30  # a data.pkl holds names and shapes, never tensor bytes
MAX_RATIO = 100  # uncompressed / compressed size above this (and above 1 MiB) is a zip bomb
MAX_EXPANSION = 1 << 26  # a stride-0 (expanded) tensor may hold at most this many elements
MAX_EXTRA_BYTES = 1 << 30  # all tensors of a file: at most 2 x its stored bytes plus this


class _Budget:
    """Bytes of the storages read and of the tensors rebuilt so far in one load."""

    __slots__ = ("storage", "tensors")

    def __init__(self):
        self.storage = 0
        self.tensors = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


@contextlib.contextmanager
def _budget():
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _charge(nbytes: int, shape: tuple) -> None:
    """Counts a tensor of ``nbytes`` against the load's budget (before it is allocated)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    allowed = 2 * budget.storage + MAX_EXTRA_BYTES
    if budget.tensors + nbytes > allowed:
        raise pickle.UnpicklingError(
            f"The tensors would need {(budget.tensors + nbytes) / 2**30:.3g} GiB (a tensor of size "
            f"{shape} after {budget.tensors / 2**30:.3g} GiB) from "
            f"{budget.storage / 2**30:.3g} GiB of stored data; refusing (at most twice the "
            f"stored bytes plus {MAX_EXTRA_BYTES / 2**30:g} GiB: a checkpoint stores its "
            "tensors' data)."
        )
    budget.tensors += nbytes


class _Bounded:
    """A file seen by :func:`pickletools.genops`: reads never ask for more than is left."""

    def __init__(self, f: Any, end: int):
        self.f, self.end = f, end

    def read(self, n: int = -1) -> bytes:
        left = max(self.end - self.f.tell(), 0)
        return self.f.read(left if n < 0 or n > left else n)

    def readline(self) -> bytes:
        return self.f.readline(max(self.end - self.f.tell(), 0))

    def tell(self) -> int:
        return self.f.tell()


def _check_records(f: Any, end: int, what: Any) -> None:
    """Walks one pickle's opcodes from ``f``'s position to its STOP (nothing is built), then
    returns ``f`` there: a record whose length field claims more than the bytes left (up to
    ``end``) raises :class:`pickle.UnpicklingError` before any unpickler allocates it."""
    start = f.tell()
    try:
        for op, arg, _ in pickletools.genops(_Bounded(f, end)):
            if op.name == "FRAME" and arg > end - f.tell():  # the unpickler reads it at once
                raise ValueError(f"a frame of {arg} bytes, but only {end - f.tell()} remain")
    except ValueError as err:
        raise pickle.UnpicklingError(
            f"{os.fspath(what)!r} holds a malformed or truncated pickle: {err}"
        ) from None
    finally:
        f.seek(start)


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
        budget = _BUDGET.get()
        if budget is not None:
            budget.storage += array.nbytes


class Rebuild:
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
    numel = int(np.prod(shape, dtype=object))
    if numel > max(flat.size, MAX_EXPANSION):
        raise pickle.UnpicklingError(
            f"Tensor of size {shape} (stride {tuple(stride)}) would expand its storage of "
            f"{flat.size} elements to {numel}; refusing (a checkpoint stores its tensors' data)."
        )
    last = storage_offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    if last >= flat.size:
        raise pickle.UnpicklingError(
            f"Tensor of size {shape}, stride {tuple(stride)}, offset {storage_offset} reads past "
            f"its storage of {flat.size} elements."
        )
    item = flat.dtype.itemsize
    _charge(numel * item, shape)
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
    ("torch._utils", "_rebuild_tensor_v2"): Rebuild(
        "torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2
    ),
    ("torch._utils", "_rebuild_parameter"): Rebuild(
        "torch._utils._rebuild_parameter", _rebuild_parameter
    ),
    ("torch", "Size"): Rebuild("torch.Size", _size),
    **{("torch", n): _StorageType(n, np.dtype(d)) for n, d in _STORAGE_DTYPES.items()},
}


def _to_plain(obj: Any, path: Any = "the pickle") -> Any:
    """Storages -> arrays, ``OrderedDict`` -> ``dict``; shared references stay shared.

    Memoised by object identity, so a small pickle of shared references (``a = [a, a]`` forty
    times) converts in linear time instead of expanding into 2**40 copies, and a container that
    holds itself stays a cycle. Nesting deeper than :data:`MAX_DEPTH` raises a clear
    :class:`pickle.UnpicklingError` instead of :class:`RecursionError`.
    """
    memo: dict[int, Any] = {}

    def convert(o: Any, depth: int) -> Any:
        if not isinstance(o, dict | list | tuple | _Storage | _NumpyDType):
            return o
        if id(o) in memo:
            return memo[id(o)]
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(
                f"{os.fspath(path)!r} nests containers deeper than {MAX_DEPTH} levels; a "
                "checkpoint of tensors never does. Refusing it (is the file corrupt or hostile?)."
            )
        if isinstance(o, dict):
            out: Any
            out = memo[id(o)] = {}
            out.update((k, convert(v, depth + 1)) for k, v in o.items())
        elif isinstance(o, list):
            out = memo[id(o)] = []
            out.extend(convert(v, depth + 1) for v in o)
        elif isinstance(o, tuple):
            out = memo[id(o)] = tuple(convert(v, depth + 1) for v in o)
        elif isinstance(o, _Storage):
            out = memo[id(o)] = np.array(o.array, dtype=o.array.dtype.newbyteorder("="))
        else:
            out = memo[id(o)] = o.dtype
        return out

    return convert(obj, 0)


class ZipBombError(ValueError):
    """A zip member whose header sizes say it would inflate far beyond what it should hold."""


def _check_member(
    path: Any, info: zipfile.ZipInfo, needed: int = 0, limit: int | None = None
) -> None:
    """Refuses a zip member, from its header sizes, that is too short, too big or a bomb."""
    where = f"{info.filename!r} in {os.fspath(path)!r}"
    if info.file_size < needed:
        raise pickle.UnpicklingError(f"{where} holds {info.file_size} bytes, {needed} are needed.")
    ratio = info.file_size / max(info.compress_size, 1)
    too_big = limit is not None and info.file_size > limit
    if too_big or (info.file_size > 1 << 20 and ratio > MAX_RATIO):
        why = f"over {limit} bytes" if too_big else f"a compression ratio over {MAX_RATIO}"
        raise ZipBombError(
            f"{where} would inflate {info.compress_size} bytes to {info.file_size} ({why}): "
            "refusing a possible zip bomb. torch.save stores members uncompressed; re-save the "
            "checkpoint with torch.save."
        )


def _read_member(path: Any, archive: zipfile.ZipFile, name: str, size: int, exact: bool) -> bytes:
    """At most ``size`` bytes of a member (exactly ``size`` if ``exact``), checked before inflating.

    Raises:
        KeyError: no such member.
    """
    info = archive.getinfo(name)
    _check_member(path, info, needed=size if exact else 0)
    with archive.open(info) as f:
        return f.read(size)  # never inflates more than asked, whatever the header claims


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED``; storages come from the zip archive."""

    def __init__(
        self,
        file: Any,
        archive: zipfile.ZipFile,
        prefix: str,
        byteorder: str,
        extra_globals: Mapping[tuple[str, str], Any] | None = None,
        path: Any = "<archive>",
    ):
        super().__init__(file)
        self._path = path
        self._allowed = {**_ALLOWED, **(extra_globals or {})}
        self._archive = archive
        self._prefix = prefix
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
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
            dtype = storage_type.dtype.newbyteorder(self._byteorder)
            try:
                raw = _read_member(
                    self._path,
                    self._archive,
                    f"{self._prefix}data/{key}",
                    numel * dtype.itemsize,
                    exact=True,
                )
            except KeyError:
                raise pickle.UnpicklingError(
                    f"Storage {key!r} is missing from the archive ({self._prefix}data/{key})."
                ) from None
            if len(raw) < numel * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"Storage {key!r} holds {len(raw)} bytes, {numel} x {dtype} needs "
                    f"{numel * dtype.itemsize}."
                )
            self._storages[key] = _Storage(np.frombuffer(raw, dtype=dtype, count=numel))
        return self._storages[key]


def load_torch_zip(
    path: str | os.PathLike[str],
    *,
    extra_globals: Mapping[tuple[str, str], Any] | None = None,
) -> Any:
    """Loads a ``torch.save`` zip checkpoint of tensors and dicts into numpy, without torch.

    Only ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
    ``torch._utils._rebuild_parameter``, ``torch.Size`` and the ``torch.*Storage`` types are
    resolved; the pickle may otherwise hold only builtin containers, numbers and strings. Tensors
    come back as C-contiguous native-endian numpy arrays with their dtype, size, stride and
    storage offset respected; ``OrderedDict`` becomes ``dict``.

    Args:
        path: a file written by ``torch.save`` (the zip format, the default since PyTorch 1.6).
        extra_globals: more ``(module, name) -> stand-in`` entries to resolve, e.g. an inert
            record class for ``argparse.Namespace``. Stand-ins must not execute anything.

    Returns:
        The saved object with tensors as ``np.ndarray``, e.g. ``{"netG_state_dict":
        {"main.0.weight": array [100, 512, 4, 4] float32, ...}}``.

    Raises:
        pickle.UnpicklingError: the pickle names anything else (nothing from it is executed), or
            a storage is missing or too short.
        ValueError: the file is not a zip archive in the torch layout.

    >>> sd = load_torch_zip(reds_jax.assets.fetch("face_dcgan"))  # fetches the face DCGAN weights  # doctest: +SKIP
    >>> sd["netG_state_dict"]["main.0.weight"].shape  # needs a checkpoint file  # doctest: +SKIP
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
            raw = _read_member(path, archive, f"{prefix}byteorder", 16, exact=False)
            byteorder = raw.decode("ascii", "replace").strip()
        except KeyError:
            byteorder = "little"  # torch.save omitted it before 1.11; always little-endian then
        if byteorder not in ("little", "big"):
            raise ValueError(f"Unknown byteorder record {byteorder!r} in {os.fspath(path)!r}.")
        info = archive.getinfo(pkls[0])
        _check_member(path, info, limit=MAX_PICKLE_BYTES)
        with archive.open(pkls[0]) as f, _budget():
            _check_records(f, info.file_size, path)
            unpickler = _RestrictedUnpickler(f, archive, prefix, byteorder, extra_globals, path)
            try:
                obj = unpickler.load()
            except ZipBombError:
                raise
            except pickle.UnpicklingError as err:
                raise pickle.UnpicklingError(f"{os.fspath(path)!r}: {err}") from err
            except (
                EOFError,
                IndexError,
                KeyError,
                TypeError,
                ValueError,
                zipfile.BadZipFile,
            ) as err:
                raise pickle.UnpicklingError(
                    f"{os.fspath(path)!r} holds a malformed pickle: {err}"
                ) from err
    return _to_plain(obj, path)


# --- plain pickles (pickle.dump of objects holding tensors) --------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION


class _DataUnpickler(pickle.Unpickler):
    """Plain data only (numbers, strings, bytes, containers): every global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"Refusing to load global {module}.{name} in a legacy torch storage header."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"Unexpected persistent id {pid!r} in a storage header.")


class _StorageRecordUnpickler(_DataUnpickler):
    """The record pickle of a legacy ``torch.save(storage)``: storage types and one storage id."""

    def __init__(self, file: Any):
        super().__init__(file)
        self.records: dict[str, tuple[_StorageType, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if isinstance(found, _StorageType):
            return found
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r} in a storage record.")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"Unsupported storage type {storage_type!r}.")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"Bad storage record {pid!r}.")
        if view is not None and not (
            isinstance(view, tuple)
            and len(view) == 3
            and all(isinstance(v, int) and v >= 0 for v in view[1:])
        ):
            raise pickle.UnpicklingError(f"Bad storage view record {view!r}.")
        self.records[key] = (storage_type, numel)
        return ("ref", key, view)


def _load_from_bytes(data: Any) -> _Storage:
    """numpy version of ``torch.storage._load_from_bytes``: one storage in the legacy format."""
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError("torch.storage._load_from_bytes expects bytes.")
    f = io.BytesIO(data)

    def load(unpickler):
        _check_records(f, len(data), "a legacy torch storage stream")
        return unpickler.load()

    try:
        magic = load(_DataUnpickler(f))
        protocol = load(_DataUnpickler(f))
        sys_info = load(_DataUnpickler(f))
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
            raise pickle.UnpicklingError(
                "Not a legacy torch.save storage stream (bad magic number or protocol)."
            )
        records = _StorageRecordUnpickler(f)
        ref = load(records)
        keys = load(_DataUnpickler(f))
    except (EOFError, ValueError, TypeError) as err:
        raise pickle.UnpicklingError(f"Truncated or malformed legacy storage: {err}") from err
    if not (isinstance(ref, tuple) and len(ref) == 3 and ref[0] == "ref"):
        raise pickle.UnpicklingError("A legacy storage stream must hold exactly one storage.")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise pickle.UnpicklingError(f"Bad storage key list {keys!r}.")
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in records.records:
            raise pickle.UnpicklingError(f"Storage {key!r} has no record.")
        storage_type, numel = records.records[key]
        head = f.read(8)
        if len(head) != 8:
            raise pickle.UnpicklingError(f"Storage {key!r} is truncated.")
        stored = int.from_bytes(head, "little", signed=True)
        dtype = storage_type.dtype.newbyteorder("<")
        raw = f.read(stored * dtype.itemsize) if stored >= 0 else b""
        if stored != numel or len(raw) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"Storage {key!r} should hold {numel} x {dtype} but holds {len(raw)} bytes."
            )
        arrays[key] = np.frombuffer(raw, dtype=dtype, count=numel)
    _, key, view = ref
    if key not in arrays:
        raise pickle.UnpicklingError(f"Storage {key!r} is missing from the stream.")
    array = arrays[key]
    if view is not None:
        _, offset, size = view
        if offset + size > array.size:
            raise pickle.UnpicklingError(f"Storage view {view!r} reads past its storage.")
        array = array[offset : offset + size]
    return _Storage(array)


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> Any:
    """numpy version of ``torch._utils._rebuild_parameter_with_state``: the data (state dropped)."""
    del requires_grad, backward_hooks, state
    return data


class _NumpyDType:
    """Stand-in for ``numpy.dtype(name, align, copy)`` in a pickle; numeric dtypes only."""

    __slots__ = ("dtype",)

    def __init__(self, name: Any, align: Any = False, copy: Any = True):
        del align, copy
        if not (isinstance(name, str) and len(name) <= 4 and name.isalnum()):
            raise pickle.UnpicklingError(f"Refusing numpy dtype {name!r}.")
        dtype = np.dtype(name)
        if dtype.kind not in "biufc":
            raise pickle.UnpicklingError(f"Refusing non-numeric numpy dtype {name!r}.")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in "<>|="):
            raise pickle.UnpicklingError(f"Bad numpy dtype state {state!r}.")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy version of ``numpy.core.multiarray.scalar`` for numeric dtypes."""
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalar expects a numeric dtype and its bytes.")
    if len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError(f"numpy scalar of {dtype.dtype} has {len(data)} bytes.")
    return np.frombuffer(data, dtype.dtype, count=1).astype(dtype.dtype.newbyteorder("="))[0]


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: ``str`` in latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("Refusing _codecs.encode other than str -> latin1 bytes.")
    return text.encode("latin1")


def _plain_set(items: Any = ()) -> set:
    if not isinstance(items, list | tuple):
        raise pickle.UnpicklingError("Refusing builtins.set of anything but a list.")
    return set(items)


_PLAIN_ALLOWED: dict[tuple[str, str], Any] = {
    **_ALLOWED,
    ("torch.storage", "_load_from_bytes"): Rebuild(
        "torch.storage._load_from_bytes", _load_from_bytes
    ),
    ("torch._utils", "_rebuild_parameter_with_state"): Rebuild(
        "torch._utils._rebuild_parameter_with_state", _rebuild_parameter_with_state
    ),
    ("numpy", "dtype"): _NumpyDType,
    ("numpy.core.multiarray", "scalar"): Rebuild("numpy.core.multiarray.scalar", _numpy_scalar),
    ("numpy._core.multiarray", "scalar"): Rebuild("numpy._core.multiarray.scalar", _numpy_scalar),
    ("_codecs", "encode"): Rebuild("_codecs.encode", _codecs_encode),
    ("builtins", "set"): Rebuild("builtins.set", _plain_set),
    ("__builtin__", "set"): Rebuild("builtins.set", _plain_set),  # protocol <= 2 spelling
}


class _PlainUnpickler(pickle.Unpickler):
    """Resolves ``_PLAIN_ALLOWED`` plus the caller's stand-ins; no persistent ids."""

    def __init__(self, file: Any, extra_globals: Mapping[tuple[str, str], Any] | None):
        super().__init__(file)
        self._allowed = {**_PLAIN_ALLOWED, **(extra_globals or {})}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"Refusing to load global {module}.{name}: only torch tensors, storages, "
                "numpy scalars and builtin containers are read from this pickle (nothing in it "
                "is imported or executed)."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(
            f"Unexpected persistent id {pid!r}: this is not a plain pickle (a torch.save zip? "
            "use load_torch_zip)."
        )


def load_torch_pickle(
    path: str | os.PathLike[str],
    *,
    extra_globals: Mapping[tuple[str, str], Any] | None = None,
) -> Any:
    """Loads a plain pickle of tensors (``pickle.dump``, not ``torch.save``) without torch.

    Tensors and parameters come back as numpy arrays (their storages parsed from torch's legacy
    per-storage streams); numpy scalars of numeric dtypes, ``OrderedDict`` and ``set`` are
    allowed. Any other global raises before anything runs unless ``extra_globals`` maps it to a
    stand-in (e.g. :mod:`reds_jax.formats.ada_pickle` maps stylegan2-ada-pytorch's
    ``torch_utils.persistence._reconstruct_persistent_obj`` to an inert record).

    Args:
        path: the pickle file.
        extra_globals: more ``(module, name) -> stand-in`` entries. Stand-ins must not execute
            anything from the file.

    Returns:
        The unpickled object, tensors as ``np.ndarray``, ``OrderedDict`` as ``dict``.

    Raises:
        pickle.UnpicklingError: a global outside the allow-list, a persistent id, or a malformed
            storage (nothing from the file is executed).
        ValueError: the file is a zip archive (use :func:`load_torch_zip`).

    >>> data = load_torch_pickle("network-snapshot.pkl", extra_globals=...)  # needs a checkpoint file  # doctest: +SKIP
    """
    if zipfile.is_zipfile(path):
        raise ValueError(
            f"{os.fspath(path)!r} is a zip archive (a torch.save checkpoint); read it with "
            "load_torch_zip."
        )
    with open(path, "rb") as f, _budget():
        _check_records(f, os.fstat(f.fileno()).st_size, path)
        try:
            obj = _PlainUnpickler(f, extra_globals).load()
        except (EOFError, IndexError, KeyError, TypeError, ValueError) as err:
            raise pickle.UnpicklingError(
                f"{os.fspath(path)!r} is not a readable pickle: {err}"
            ) from err
    return _to_plain(obj, path)
