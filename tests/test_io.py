"""reds_jax._io: atomic writes survive a crash before the rename, sha256 equals hashlib's,
the converted-weights cache is rebuilt when its checksum, contents or shapes are wrong."""

import hashlib

import numpy as np
import pytest

from reds_jax import _io


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    assert _io.atomic_write(path, b"new contents") == path
    assert path.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    _io.atomic_write(path, lambda f: f.write(b"from a writer"))
    assert path.read_bytes() == b"from a writer"


def test_crash_between_write_and_rename_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def crash(f):
        f.write(b"half of the new fi")
        raise KeyboardInterrupt  # the process dies mid-write

    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # temp file removed


def test_crash_in_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def no_rename(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(_io.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        _io.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_write_errors_name_the_callers_path_not_the_temp_file(tmp_path):
    """A folder or a missing folder as the target named '.x.<pid>.<hex>.tmp' (issue 40 K)."""
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as err:
        _io.atomic_write(folder, b"x")
    assert err.value.filename == str(folder) and "is a folder" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        _io.atomic_write(tmp_path / "missing" / "f.bin", b"x")
    assert err.value.filename == str(tmp_path / "missing" / "f.bin")
    assert _io.TMP_SUFFIX not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any(folder.iterdir())


def test_sha256_file_equals_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * 1000 + 17)
    (tmp_path / "f").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert _io.sha256_file(tmp_path / "f") == want
    assert _io.sha256_file(tmp_path / "f", block=1000) == want  # several blocks
    (tmp_path / "empty").write_bytes(b"")
    assert _io.sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_npz_is_reproducible_and_readable(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "b": np.asarray(["x", "yz"])}
    data = _io.npz_bytes(arrays, compress=True)
    assert data == _io.npz_bytes(arrays, compress=True)
    assert len(_io.npz_bytes(arrays, compress=False)) > 0
    (tmp_path / "f.npz").write_bytes(data)
    with np.load(tmp_path / "f.npz", allow_pickle=False) as loaded:
        assert set(loaded.files) == {"a", "b"}
        np.testing.assert_array_equal(loaded["a"], arrays["a"])
        np.testing.assert_array_equal(loaded["b"], arrays["b"])


def test_converted_cache_is_reused_and_rebuilt_when_bad(tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"raw")
    calls = []

    def convert():
        calls.append(1)
        return b"converted-%d" % len(calls)

    def load(decode=bytes):
        return _io.load_converted(src, 2, convert, encode=bytes, decode=decode)

    cache = tmp_path / "w.bin.flax-v2.msgpack"
    sidecar = tmp_path / "w.bin.flax-v2.msgpack.sha256"
    assert load() == b"converted-1"
    assert cache.read_bytes() == b"converted-1"
    assert sidecar.read_text() == hashlib.sha256(b"converted-1").hexdigest()
    assert load() == b"converted-1" and len(calls) == 1  # from the cache
    cache.write_bytes(b"corrupt")  # checksum no longer matches
    assert load() == b"converted-2" and len(calls) == 2
    assert load(decode=lambda data: None) == b"converted-3"  # shapes that do not fit
    sidecar.unlink()
    assert load() == b"converted-4"

    def broken(data):
        raise ValueError("unreadable")

    assert load(decode=broken) == b"converted-5"
    assert load() == b"converted-5" and len(calls) == 5


def test_converted_cache_in_a_read_only_folder(tmp_path, monkeypatch):
    src = tmp_path / "w.bin"
    src.write_bytes(b"raw")

    def refuse(path, data):
        raise PermissionError("read-only")

    monkeypatch.setattr(_io, "atomic_write", refuse)
    value = _io.load_converted(src, 1, lambda: b"v", encode=bytes, decode=bytes)
    assert value == b"v" and sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]
