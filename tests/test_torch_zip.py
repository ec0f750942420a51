"""The torch-free checkpoint reader: known arrays round-trip, anything else is refused unexecuted.

The checkpoints here are written by hand in the ``torch.save`` zip layout (``PREFIX/data.pkl`` +
``PREFIX/data/<key>`` + ``PREFIX/byteorder``), with the pickle opcodes torch emits; no torch needed.
"""

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from reds_jax.formats.torch_zip import load_torch_zip


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"J" + struct.pack("<i", i)


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"


def _tensor(storage_type, key, numel, offset, size, stride):
    """Opcodes of ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""
    pid = _tuple(
        _str("storage"), _global("torch", storage_type), _str(key), _str("cpu"), _int(numel)
    )
    hooks = _global("collections", "OrderedDict") + b")R"
    args = _tuple(
        pid + b"Q",  # BINPERSID -> persistent_load(pid)
        _int(offset),
        _tuple(*map(_int, size)),
        _tuple(*map(_int, stride)),
        b"\x89",  # False
        hooks,
    )
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _dict(items):
    body = b"".join(_str(k) + v for k, v in items.items())
    return b"}(" + body + b"u"


def _write(path, pkl, storages, prefix="archive"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", pkl)
        zf.writestr(f"{prefix}/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"{prefix}/data/{key}", raw)
        zf.writestr(f"{prefix}/version", "3\n")
    return path


def test_round_trip_known_arrays(tmp_path):
    base = np.arange(2 + 3 * 4, dtype="<f4") * 0.5  # storage "0": 14 floats
    ints = np.array([7, -3, 2**40], dtype="<i8")
    pkl = (
        b"\x80\x02"
        + _dict(
            {
                "state": _dict(
                    {
                        # offset 2, [3, 4] row-major -> base[2:].reshape(3, 4)
                        "w": _tensor("FloatStorage", "0", 14, 2, (3, 4), (4, 1)),
                        # the transpose of the same storage: size [4, 3], stride [1, 4]
                        "wt": _tensor("FloatStorage", "0", 14, 2, (4, 3), (1, 4)),
                        "n": _tensor("LongStorage", "1", 3, 0, (3,), (1,)),
                        "scalar": _tensor("LongStorage", "1", 3, 1, (), ()),
                    }
                ),
                "epoch": _int(5),
            }
        )
        + b"."
    )
    path = _write(tmp_path / "ckpt.pt", pkl, {"0": base.tobytes(), "1": ints.tobytes()})
    out = load_torch_zip(path)
    want = base[2:].reshape(3, 4)
    np.testing.assert_array_equal(out["state"]["w"], want)
    np.testing.assert_array_equal(out["state"]["wt"], want.T)
    np.testing.assert_array_equal(out["state"]["n"], ints)
    assert out["state"]["scalar"].shape == () and out["state"]["scalar"] == -3
    assert out["state"]["w"].dtype == np.float32 and out["state"]["n"].dtype == np.int64
    assert out["epoch"] == 5 and type(out["state"]) is dict


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("nested", [False, True])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, nested):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(marker), protocol=2)
    if nested:  # hidden next to a genuine tensor in a state dict
        body = evil[2:-1]  # strip PROTO and STOP
        evil = (
            b"\x80\x02"
            + _dict({"w": _tensor("FloatStorage", "0", 1, 0, (1,), (1,)), "x": body})
            + b"."
        )
    path = _write(tmp_path / "evil.pt", evil, {"0": np.zeros(1, "<f4").tobytes()})
    with pytest.raises(pickle.UnpicklingError, match=r"Refusing to load global (posix|os)\.system"):
        load_torch_zip(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "pkl, match",
    [
        (_global("builtins", "eval") + b".", "builtins.eval"),
        (_global("torch", "load") + b".", "torch.load"),
        # BUILD (setting attributes) on an allowed storage type
        (_global("torch", "FloatStorage") + b"}" + b"b.", "set state"),
        # an allowed rebuild function fed something that is not a storage
        (
            _global("torch._utils", "_rebuild_tensor_v2")
            + _tuple(_int(0), _int(0), b")", b")")
            + b"R.",
            "expects a storage",
        ),
    ],
)
def test_other_globals_and_abuse_are_refused(tmp_path, pkl, match):
    path = _write(tmp_path / "bad.pt", b"\x80\x02" + pkl, {})
    with pytest.raises(pickle.UnpicklingError, match=match):
        load_torch_zip(path)


def test_out_of_bounds_tensor_and_missing_storage(tmp_path):
    raw = np.zeros(4, "<f4").tobytes()
    pkl = b"\x80\x02" + _tensor("FloatStorage", "0", 4, 2, (3,), (1,)) + b"."
    with pytest.raises(pickle.UnpicklingError, match="reads past"):
        load_torch_zip(_write(tmp_path / "a.pt", pkl, {"0": raw}))
    pkl = b"\x80\x02" + _tensor("FloatStorage", "9", 4, 0, (4,), (1,)) + b"."
    with pytest.raises(pickle.UnpicklingError, match="missing"):
        load_torch_zip(_write(tmp_path / "b.pt", pkl, {"0": raw}))


def test_not_a_torch_zip(tmp_path):
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a zip archive"):
        load_torch_zip(legacy)


# --- hostile-but-small files (issue 20, item 3): each loads fast or is refused with a clear error ---


def _shared_references(levels):
    """``a = [1]; levels x a = [a, a]``: a few hundred bytes that expand to 2**levels leaves."""
    a = [1]
    for _ in range(levels):
        a = [a, a]
    return pickle.dumps(a, protocol=2)


def _depth(x):
    n = 0
    while isinstance(x, list) and len(x) == 2:
        assert x[0] is x[1]  # still shared, not copied
        x, n = x[0], n + 1
    return n, x


def test_shared_references_load_as_shared_objects(tmp_path):
    from reds_jax.formats.torch_zip import load_torch_pickle

    pkl = _shared_references(40)
    assert len(pkl) < 300
    zipped = load_torch_zip(_write(tmp_path / "shared.pt", pkl, {}))
    plain_path = tmp_path / "shared.pkl"
    plain_path.write_bytes(pkl)
    plain = load_torch_pickle(plain_path)
    for out in (zipped, plain):  # 2**40 leaves if expanded; shared, it is 41 lists
        assert _depth(out) == (40, [1])


def _nested_lists(depth):
    """``[[[...]]]`` ``depth`` deep: EMPTY_LIST x depth, then APPEND x (depth - 1)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def test_deep_nesting_is_a_clear_error_not_recursion_error(tmp_path):
    from reds_jax.formats.torch_zip import MAX_DEPTH, load_torch_pickle

    ok = load_torch_zip(_write(tmp_path / "ok.pt", _nested_lists(MAX_DEPTH), {}))
    assert ok is not None
    plain = tmp_path / "deep.pkl"
    plain.write_bytes(_nested_lists(200_000))
    with pytest.raises(pickle.UnpicklingError, match=f"deeper than {MAX_DEPTH} levels"):
        load_torch_zip(_write(tmp_path / "deep.pt", _nested_lists(200_000), {}))
    with pytest.raises(pickle.UnpicklingError, match=f"deeper than {MAX_DEPTH} levels"):
        load_torch_pickle(plain)


def _write_deflated(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return path


def test_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    # a 4-float storage whose member inflates 8 MiB of zeros from ~8 KB: refused from the header
    pkl = b"\x80\x02" + _tensor("FloatStorage", "0", 4, 0, (4,), (1,)) + b"."
    bomb = {"a/data.pkl": pkl, "a/byteorder": b"little", "a/data/0": bytes(8 << 20)}
    path = _write_deflated(tmp_path / "bomb.pt", bomb)
    assert path.stat().st_size < 64 << 10
    inflated = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile,
        "open",
        lambda self, name, *a, **k: inflated.append(name) or real_open(self, name, *a, **k),
    )
    with pytest.raises(ValueError, match="zip bomb"):
        load_torch_zip(path)
    assert not any(getattr(n, "filename", n) == "a/data/0" for n in inflated)
    # the same as data.pkl (padding after STOP): refused before the pickle is read
    bomb = {"a/data.pkl": pkl + bytes(8 << 20), "a/byteorder": b"little"}
    with pytest.raises(ValueError, match="'a/data.pkl' in .* zip bomb"):
        load_torch_zip(_write_deflated(tmp_path / "bomb2.pt", bomb))


def test_storage_is_read_only_up_to_its_size(tmp_path):
    # a stored member longer than its record: only numel x itemsize bytes are read
    values = np.arange(3, dtype="<f4")
    pkl = b"\x80\x02" + _tensor("FloatStorage", "0", 3, 0, (3,), (1,)) + b"."
    raw = values.tobytes() + b"\xff" * 1000
    np.testing.assert_array_equal(
        load_torch_zip(_write(tmp_path / "a.pt", pkl, {"0": raw})), values
    )
    pkl = b"\x80\x02" + _tensor("FloatStorage", "0", 9, 0, (3,), (1,)) + b"."
    with pytest.raises(pickle.UnpicklingError, match="holds 12 bytes, 36 are needed"):
        load_torch_zip(_write(tmp_path / "b.pt", pkl, {"0": values.tobytes()}))


def test_stride_zero_expansion_is_refused(tmp_path):
    pkl = b"\x80\x02" + _tensor("FloatStorage", "0", 1, 0, (1 << 20, 1 << 20), (0, 0)) + b"."
    with pytest.raises(pickle.UnpicklingError, match="would expand its storage"):
        load_torch_zip(_write(tmp_path / "a.pt", pkl, {"0": bytes(4)}))
    # a small broadcast (stride 0) is legitimate
    pkl = b"\x80\x02" + _tensor("FloatStorage", "0", 1, 0, (2, 3), (0, 0)) + b"."
    one = np.ones(1, "<f4").tobytes()
    np.testing.assert_array_equal(
        load_torch_zip(_write(tmp_path / "b.pt", pkl, {"0": one})), np.ones((2, 3))
    )


def test_truncated_pickle_is_an_unpickling_error(tmp_path):
    pkl = b"\x80\x02" + _dict({"w": _tensor("FloatStorage", "0", 1, 0, (1,), (1,))})
    with pytest.raises(pickle.UnpicklingError, match=r"t\.pt'.*truncated"):
        load_torch_zip(_write(tmp_path / "t.pt", pkl[: len(pkl) // 2], {"0": bytes(4)}))
    with pytest.raises(pickle.UnpicklingError, match=r"u\.pt' holds a malformed pickle"):
        bad_size = b"\x80\x02" + _global("torch", "Size") + _tuple(_int(3)) + b"R."  # TypeError
        load_torch_zip(_write(tmp_path / "u.pt", bad_size, {}))


def test_total_expansion_over_all_tensors_is_bounded(tmp_path, monkeypatch):
    """64 views of one 4-byte storage, each under MAX_EXPANSION, may not add up (issue 40 C):
    the 3.7 KB file of 64 x 2**26 expanded elements needed 16 GiB. Here the same shape of attack
    at 64 x 4 MiB against a budget of 8 MiB; refused before the third tensor is allocated."""
    from reds_jax.formats import torch_zip

    monkeypatch.setattr(torch_zip, "MAX_EXTRA_BYTES", 8 << 20, raising=False)
    items = {f"t{i}": _tensor("FloatStorage", "0", 1, 0, (1 << 20,), (0,)) for i in range(64)}
    pkl = b"\x80\x02" + _dict(items) + b"."
    with pytest.raises(pickle.UnpicklingError, match="would need 0.0117 GiB"):
        load_torch_zip(_write(tmp_path / "a.pt", pkl, {"0": bytes(4)}))
    items = {f"t{i}": _tensor("FloatStorage", "0", 1, 0, (1 << 20,), (0,)) for i in range(2)}
    out = load_torch_zip(
        _write(tmp_path / "b.pt", b"\x80\x02" + _dict(items) + b".", {"0": bytes(4)})
    )
    assert out["t1"].shape == (1 << 20,)  # two fit (8 MiB)


@pytest.mark.parametrize(
    "record",
    [
        b"\x8e" + struct.pack("<Q", 1 << 62),  # BINBYTES8
        b"\x8d" + struct.pack("<Q", 1 << 62),  # BINUNICODE8
        b"\x96" + struct.pack("<Q", 1 << 62),  # BYTEARRAY8
        b"B" + struct.pack("<I", (1 << 31) - 1),  # BINBYTES
    ],
)
def test_counted_records_longer_than_the_file_are_refused(tmp_path, record):
    """A length field of 2**62 was a MemoryError ('internal error'); now a named error, before
    any allocation, from both readers."""
    from reds_jax.formats.torch_zip import load_torch_pickle

    pkl = b"\x80\x05" + record + b"abc."
    with pytest.raises(pickle.UnpicklingError, match="malformed or truncated pickle.*remain"):
        load_torch_zip(_write(tmp_path / "a.pt", pkl, {}))
    (tmp_path / "a.pkl").write_bytes(pkl)
    with pytest.raises(pickle.UnpicklingError, match="malformed or truncated pickle.*remain"):
        load_torch_pickle(tmp_path / "a.pkl")
