"""Augmentation shard formats: WebDataset tars and Parquet files read back with their own libraries
equal the npz output of the same job; deterministic bytes; SIGKILL + resume per format; bad input
(unknown format, a failed first run must not lock the folder)."""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import cli_command, cli_env

from reds_jax.jobs import augment as A
from reds_jax.jobs import cli

# A toy generator that compiles in a second, importable as "toyfmt:make" by CLI subprocesses too.
TOYGEN = (pathlib.Path(__file__).parent / "fixtures" / "toygen.py").read_text()

FIX = ["highpass:1", "pixels"]
CFG = {"model": "toyfmt:make", "seeds": "0:5", "k": 2, "steps": 2, "shard_size": 2, "fix": FIX}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("toyfmt")
    (path / "toyfmt.py").write_text(TOYGEN)
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))
    sys.modules.pop("toyfmt", None)


@pytest.fixture(scope="module")
def jobs(toy_dir, tmp_path_factory):
    """The same job in every format: format -> folder."""
    root = tmp_path_factory.mktemp("formats")
    return {f: A.augment({**CFG, "format": f}, root / f, progress=False).out for f in A.FORMATS}


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _shards(out):
    return [out / e["shard"] for e in A.read_manifest(out)]


def test_every_format_loads_to_the_npz_arrays(jobs):
    ref = A.load_dataset(jobs["npz"])
    assert ref["images"].shape == (5, 4, 3, 8, 8, 3) and ref["fix_distances"].shape[1] == 2
    for fmt in ("webdataset", "parquet"):
        suffix = {"webdataset": ".tar", "parquet": ".parquet"}[fmt]
        assert [p.suffix for p in _shards(jobs[fmt])] == [suffix] * 3
        got = A.load_dataset(jobs[fmt])
        assert sorted(got) == sorted(ref)
        for name in ref:
            assert got[name].dtype == ref[name].dtype, (fmt, name)
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{fmt} {name}")


def test_webdataset_package_reads_the_samples(jobs):
    import webdataset as wds

    ref = A.load_dataset(jobs["npz"])
    urls = [str(p) for p in _shards(jobs["webdataset"])]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert len(samples) == 5 * 4  # one sample per start latent x path
    for s in samples:
        meta = s["json"]
        i, p = meta["item"], meta["path"]
        assert s["__key__"] == f"{i:010d}_p{p:03d}"
        frames = np.stack([s[f"{t:03d}.png"] for t in range(3)])
        np.testing.assert_array_equal(frames, ref["images"][i, p])
        np.testing.assert_array_equal(s["latents.npy"], ref["latents"][i, p])
        assert (meta["seed"], meta["direction"], meta["sign"]) == (i, p // 2, 1 - 2 * (p % 2))
        assert np.float32(meta["value"]) == ref["values"][i, p // 2]
        np.testing.assert_array_equal(
            np.asarray(meta["fix_distances"], np.float32), ref["fix_distances"][i, :, p]
        )
        np.testing.assert_array_equal(
            np.asarray(meta["vary_distances"], np.float32), ref["vary_distances"][i, :, p]
        )
        assert meta["vary_features"] == ["lowpass:1"]
        assert meta["fix_features"] == ["highpass:1", "pixels"]


def test_parquet_reads_with_datasets_and_pyarrow(jobs, tmp_path):
    import datasets
    import pyarrow.parquet as pq

    ref = A.load_dataset(jobs["npz"])
    files = [str(p) for p in _shards(jobs["parquet"])]
    ds = datasets.load_dataset(
        "parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf")
    )
    assert len(ds) == 20 and isinstance(ds.features["frames"].feature, datasets.Image)
    rows = ds.with_format("numpy")[:]
    i, p = rows["item"], rows["path"]
    np.testing.assert_array_equal(np.stack(rows["frames"]), ref["images"][i, p])
    np.testing.assert_array_equal(np.stack(rows["latents"]), ref["latents"][i, p])
    np.testing.assert_array_equal(rows["value"], ref["values"][i, p // 2])
    np.testing.assert_array_equal(rows["seed"], ref["seeds"][i])
    np.testing.assert_array_equal(rows["sign"], np.where(p % 2 == 0, 1, -1))
    np.testing.assert_array_equal(
        np.stack(rows["fix_distances"]), np.moveaxis(ref["fix_distances"], 2, 1)[i, p]
    )
    first = ds[0]  # the plain rows decode the PNGs to PIL images
    np.testing.assert_array_equal(np.asarray(first["frames"][2]), ref["images"][0, 0, 2])
    table = pq.read_table(files[1])
    assert table.num_rows == 8 and table.column("item").to_pylist() == [2] * 4 + [3] * 4
    assert table.column("fix_features")[0].as_py() == ["highpass:1", "pixels"]


def test_formats_are_deterministic_bytes(jobs, tmp_path):
    for fmt in A.FORMATS:
        again = A.augment({**CFG, "format": fmt}, tmp_path / fmt, progress=False).out
        assert [_sha(p) for p in _shards(again)] == [_sha(p) for p in _shards(jobs[fmt])]
        assert [e["sha256"] for e in A.read_manifest(again)] == [_sha(p) for p in _shards(again)]


def test_unknown_format_and_a_format_change_are_refused(jobs, capsys):
    with pytest.raises(A.ConfigError, match="'format'.*'npz', 'webdataset', 'parquet'"):
        A.JobConfig.from_mapping({**CFG, "format": "hdf5"})
    code = cli.main(["augment", "--seeds", "0:2", "--format", "hdf5", "--out", "x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'format' is 'hdf5'" in err
    with pytest.raises(A.AugmentError, match="format: 'npz' \\(folder\\) != 'parquet'"):
        A.augment({**CFG, "format": "parquet"}, jobs["npz"], progress=False)


def test_failed_first_run_leaves_the_folder_free(toy_dir, tmp_path):
    """Issue 20 item 5: nothing is claimed before the model, options and latents validated."""
    out = tmp_path / "out"
    z = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    z_nan = z.copy()
    z_nan[1, 2] = np.nan
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "z_nan.npy", z_nan)
    base = {**CFG, "seeds": None, "latents": str(tmp_path / "z.npy")}
    base.pop("seeds")
    bad = [
        ({"k": 5}, "k"),  # k > d = 4
        ({"model_args": {"colour": 3}}, "colour"),
        ({"options": {"ridge": -1.0}}, "ridge"),
        ({"latents": str(tmp_path / "z_nan.npy")}, "NaN"),
    ]
    for over, words in bad:
        with pytest.raises(A.ConfigError, match=words):
            A.augment({**base, **over}, out, progress=False)
        assert not out.exists()  # a refused job leaves no folder behind
    # a folder whose job stopped before its first shard (e.g. written by an older version, which
    # wrote config.json first) is not locked either
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {"k": 5}}))
    res = A.augment(base, out, progress=False)
    assert res.written == (0, 1) and A.load_dataset(out)["latents"].shape == (3, 4, 3, 4)
    assert json.loads((out / "config.json").read_text())["config"]["k"] == 2


def test_failed_first_cli_run_then_the_corrected_command(toy_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    job = ["augment", "--model", "toyfmt:make", "--seeds", "0:5", "-k", "2", "--steps", "2",
           "--shard-size", "2", "--fix", FIX[0], "--fix", FIX[1], "--no-progress", "--out", out]  # fmt: skip
    assert cli.main([*job, "--model-arg", "colour=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "colour" in err and not (tmp_path / "out" / "config.json").exists()
    assert cli.main(job) == 0
    assert "wrote 3, already complete 0" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# A real SIGKILL in the middle of a CLI job of each format, then a resume


def run_killed(args, out, env, manifest="manifest.jsonl", lines=1):
    """Starts ``reds-jax augment ARGS --out OUT``, SIGKILLs it once ``manifest`` has ``lines``."""
    proc = subprocess.Popen(
        [*cli_command(), "augment", *args, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    path = pathlib.Path(out) / manifest
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    rc = proc.wait(timeout=60)
    assert rc == -signal.SIGKILL, f"job ended with {rc} before it could be killed"
    return proc


def _env(root, toy_dir):
    env = cli_env(root / "jax-cache")
    env["PYTHONPATH"] = os.pathsep.join([str(toy_dir), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_sigkill_and_resume_per_format(fmt, toy_dir, tmp_path, tmp_path_factory):
    # CFG's experiment and batch size, so that the in-process resume compiles nothing new
    job = ["--model", "toyfmt:make", "--seeds", "0:16", "-k", "2", "--steps", "2",
           "--shard-size", "2", "--fix", FIX[0], "--fix", FIX[1], "--no-progress",
           "--format", fmt]  # fmt: skip
    cfg = {**CFG, "seeds": "0:16", "format": fmt}
    out = tmp_path / "job"
    run_killed(job, out, _env(tmp_path_factory.getbasetemp(), toy_dir))
    listed = A.read_manifest(out)
    assert 1 <= len(listed) < 8
    for e in listed:  # nothing listed is partial
        assert e["sha256"] == _sha(out / e["shard"])
    res = A.augment(cfg, out, progress=False)
    assert sorted(res.skipped) == [e["index"] for e in listed] and len(res.written) == 8 - len(
        listed
    )
    ref = A.augment(cfg, tmp_path / "ref", progress=False).out
    manifest = A.read_manifest(out)
    assert [e["index"] for e in manifest] == list(range(8))  # every shard exactly once
    assert [e["sha256"] for e in manifest] == [e["sha256"] for e in A.read_manifest(ref)]
    assert A.load_dataset(out)["seeds"].tolist() == list(range(16))
    assert not list(out.glob(".*.tmp"))
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line)["format"] == fmt for line in lines)


def test_writer_thread_errors_surface_and_resume_completes(jobs, tmp_path, monkeypatch):
    real = A.encode_shard
    calls = []

    def failing(arrays, fmt, *, compress=True):
        calls.append(int(arrays["items"][0]))
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real(arrays, fmt, compress=compress)

    monkeypatch.setattr(A, "encode_shard", failing)
    out = tmp_path / "job"
    with pytest.raises(OSError, match="injected"):
        A.augment(CFG, out, progress=False)  # raised in the calling thread, not lost in the writer
    assert [e["index"] for e in A.read_manifest(out)] == [0]
    monkeypatch.setattr(A, "encode_shard", real)
    res = A.augment(CFG, out, progress=False, queue_size=0)  # and without the writer thread
    assert res.skipped == (0,) and res.written == (1, 2)
    assert [_sha(p) for p in _shards(out)] == [_sha(p) for p in _shards(jobs["npz"])]


def _arrays(n, k, t1, v, f, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.integers(0, 256, (n, 2 * k, t1, 6, 5, 3), dtype=np.uint8),
        "latents": rng.standard_normal((n, 2 * k, t1, 3)).astype(np.float32),
        "vary_distances": rng.standard_normal((n, v, 2 * k, t1)).astype(np.float32),
        "fix_distances": rng.standard_normal((n, f, 2 * k, t1)).astype(np.float32),
        "values": rng.standard_normal((n, k)).astype(np.float32),
        "seeds": np.arange(7, 7 + n, dtype=np.int64),
        # further arrays of a job: per path, per path and step, per item (strings too)
        "diagnostics_fallbacks": rng.integers(0, 3, (n, 2 * k)).astype(np.int32),
        "diagnostics_residual": rng.standard_normal((n, 2 * k, t1)),
        "names": np.asarray([f"image{i}.png" for i in range(n)]),
        "items": np.arange(3, 3 + n, dtype=np.int64),
        "vary_features": np.asarray(["lowpass:1"] * v, dtype=str),
        "fix_features": np.asarray(["highpass:1", "pixels"][:f], dtype=str).reshape(f),
    }


@pytest.mark.parametrize("shape", [(3, 2, 3, 1, 2), (1, 1, 1, 2, 0)])
def test_shard_formats_round_trip_every_array(shape, tmp_path):
    from reds_jax.jobs.shards import encode_shard, load_shard, shard_name

    arrays = _arrays(*shape)
    for fmt in A.FORMATS:
        data = encode_shard(arrays, fmt)
        assert data == encode_shard(_arrays(*shape), fmt)  # same arrays, same bytes
        path = tmp_path / shard_name(0, fmt)
        path.write_bytes(data)
        back = load_shard(path)
        assert sorted(back) == sorted(arrays), fmt
        for name, want in arrays.items():
            assert back[name].dtype == want.dtype and back[name].shape == want.shape, (fmt, name)
            np.testing.assert_array_equal(back[name], want, err_msg=f"{fmt} {name}")


def test_webdataset_json_is_strict_and_non_finite_numbers_round_trip(tmp_path):
    """Its .json members held bare NaN, which strict JSON parsers refuse (issue 40 K)."""
    import io
    import tarfile

    from reds_jax.jobs.shards import encode_shard, load_shard, shard_name

    arrays = _arrays(2, 1, 3, 1, 1)
    arrays["values"][1, 0] = np.inf
    arrays["vary_distances"][0, 0, 1, 2] = np.nan
    arrays["fix_distances"][1, 0, 0, 1:] = [-np.inf, np.nan]

    def refuse(name):
        raise ValueError(f"bare {name} in the JSON")

    data = encode_shard(arrays, "webdataset")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        metas = {
            m.name: json.loads(tf.extractfile(m).read(), parse_constant=refuse)
            for m in tf
            if m.name.endswith(".json")
        }
    assert len(metas) == 4  # 2 latents x 2 paths
    assert metas["0000000004_p001.json"]["value"] == "Infinity"
    assert metas["0000000003_p001.json"]["vary_distances"][0][2] is None
    assert metas["0000000004_p000.json"]["fix_distances"][0][1:] == ["-Infinity", None]
    path = tmp_path / shard_name(0, "webdataset")
    path.write_bytes(data)
    back = load_shard(path)
    for name, want in arrays.items():
        assert back[name].dtype == want.dtype, name
        np.testing.assert_array_equal(back[name], want, err_msg=name)  # NaN == NaN here


def test_manifest_is_append_only_and_a_torn_line_is_cut(jobs, tmp_path, capsys):
    """Issue 20 item 9: no rewrite of the manifest per shard; a kill inside an append is harmless."""
    import shutil

    out = tmp_path / "job"
    shutil.copytree(jobs["parquet"], out)
    before = (out / "manifest.jsonl").read_bytes()
    first = A.read_manifest(out)
    shard = out / first[1]["shard"]
    shard.write_bytes(shard.read_bytes()[:-7])  # a bad file: recomputed, listed again
    with open(out / "manifest.jsonl", "ab") as f:
        f.write(b'{"shard": "shard-00002.parquet", "ind')  # a torn last line
    assert [e["index"] for e in A.read_manifest(out)] == [0, 1, 2]
    res = A.augment({**CFG, "format": "parquet"}, out, progress=False)
    assert res.written == (1,) and res.skipped == (0, 2)
    after = (out / "manifest.jsonl").read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    latest = A.read_manifest(out)
    assert latest[1]["seq"] > first[1]["seq"] and latest[1]["sha256"] == first[1]["sha256"]
    assert _sha(shard) == first[1]["sha256"]
    assert "unreadable line" not in capsys.readouterr().err
