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
