"""The augmentation job: shards, manifest, determinism, resume after SIGKILL, config errors."""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers import cli_command, cli_env

from reds_jax.jobs import augment as A
from reds_jax.jobs import models

# The toy model of tests/helpers.py (z [4] -> an 8x8 RGB image, compiles in a second) as "toy".
pytestmark = pytest.mark.usefixtures("toy_model")


def _cfg(**over):
    base = {"model": "toy", "seeds": "0:5", "k": 1, "steps": 2, "shard_size": 2, "batch_size": 2}
    return {**base, **over}


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _shard_files(out):
    return sorted(p.name for p in pathlib.Path(out).glob("shard-*.npz"))


# ---------------------------------------------------------------------------------------------
# Config parsing


def test_parse_seeds():
    assert A.parse_seeds("0:3").tolist() == [0, 1, 2]
    assert A.parse_seeds(["4", 7, "1:3"]).tolist() == [4, 7, 1, 2]
    assert A.parse_seeds(5).tolist() == [5]
    for bad, words in (("3:1", "empty"), ("a:b", "start:stop"), (-1, r"2\*\*32"), ([], "no seeds")):
        with pytest.raises(A.ConfigError, match=words):
            A.parse_seeds(bad)


@pytest.mark.parametrize(
    "over, field",
    [
        ({"kk": 2}, "kk"),
        ({"k": "two"}, "'k'"),
        ({"k": 0}, "'k'"),
        ({"k": True}, "'k'"),
        ({"steps": 1.5}, "'steps'"),
        ({"step_size": -1.0}, "'step_size'"),
        ({"method": "best"}, "'method'"),
        ({"path": "curvy"}, "'path'"),
        ({"vary": ["nosuch:2"]}, "'vary'"),
        ({"fix": ["lowpass:1,2"]}, "'fix'"),
        ({"vary": []}, "'vary'"),
        ({"options": {"ridg": 1.0}}, "'options'"),
        ({"dtype": "float16"}, "'dtype'"),
        ({"model": "nosuch"}, "'model'"),
        ({"seeds": "5:1"}, "seeds"),
        ({"latents": "x.npy"}, "'seeds'"),  # both seeds and latents
        ({"shard_size": 0}, "'shard_size'"),
        ({"solver": "fast"}, "'solver'"),
        ({"model_args": "size=3"}, "'model_args'"),
    ],
)
def test_bad_config_names_the_field(over, field):
    with pytest.raises(A.ConfigError, match=field):
        A.JobConfig.from_mapping(_cfg(**over), where="job.toml")


def test_unknown_feature_lists_valid_ones():
    with pytest.raises(A.ConfigError) as err:
        A.JobConfig.from_mapping(_cfg(vary=["identiti"]))
    for name in ("pixels", "region:", "lowpass:", "highpass:", "band:"):
        assert name in str(err.value)


def test_model_defaults_are_filled_in():
    cfg = A.JobConfig.from_mapping({"model": "rooms", "seeds": "0:2"})
    entry = models.MODELS["rooms"]
    assert (cfg.vary, cfg.fix, cfg.step_size) == (entry.vary, entry.fix, entry.step_size)
    assert A.JobConfig.from_mapping({"model": "rooms", "fix": []}).fix == ()


# ---------------------------------------------------------------------------------------------
# In-process jobs on the toy model


def test_augment_shards_manifest_and_determinism(tmp_path):
    res = A.augment(_cfg(), tmp_path, progress=False)
    assert (res.n_items, res.n_shards, res.written, res.skipped) == (5, 3, (0, 1, 2), ())
    assert _shard_files(tmp_path) == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    manifest = A.read_manifest(tmp_path)
    assert [e["index"] for e in manifest] == [0, 1, 2]
    for e in manifest:
        assert e["sha256"] == _sha(tmp_path / e["shard"])
        assert e["bytes"] == (tmp_path / e["shard"]).stat().st_size
    assert manifest[2]["items"] == [4, 5] and manifest[2]["count"] == 1
    assert (manifest[1]["seed_first"], manifest[1]["seed_last"]) == (2, 3)

    shard = A.load_shard(tmp_path / "shard-00000.npz")
    assert shard["images"].shape == (2, 2, 3, 8, 8, 3) and shard["images"].dtype == np.uint8
    assert shard["latents"].shape == (2, 2, 3, 4)
    assert shard["vary_distances"].shape == (2, 1, 2, 3)
    assert shard["fix_distances"].shape == (2, 1, 2, 3)
    assert shard["values"].shape == (2, 1)
    assert shard["seeds"].tolist() == [0, 1]
    assert shard["vary_features"].tolist() == ["lowpass:1"]
    np.testing.assert_array_equal(shard["vary_distances"][:, :, :, 0], 0.0)

    data = A.load_dataset(tmp_path)
    assert data["seeds"].tolist() == [0, 1, 2, 3, 4]
    # per-seed determinism: a seed's trajectory does not depend on its batch neighbours
    exp = A.get_experiment(A.JobConfig.from_mapping(_cfg()))
    again = exp.run(seeds=[3, 0])
    np.testing.assert_array_equal(again["latents"], data["latents"][[3, 0]])
    np.testing.assert_array_equal(again["images"], data["images"][[3, 0]])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["n_shards"] == 3 and config["config"]["k"] == 1


def test_random_method_keys_are_per_seed(tmp_path):
    a = A.augment(_cfg(method="random"), tmp_path / "a", progress=False)
    b = A.augment(_cfg(method="random", seeds=[4, 3, 2, 1, 0]), tmp_path / "b", progress=False)
    c = A.augment(_cfg(method="random"), tmp_path / "c", progress=False)
    for name in _shard_files(a.out):
        assert _sha(a.out / name) == _sha(c.out / name)  # same config: byte-identical
    da, db = A.load_dataset(a.out), A.load_dataset(b.out)
    assert db["seeds"].tolist() == [4, 3, 2, 1, 0]
    np.testing.assert_array_equal(da["latents"], db["latents"][::-1])
    assert not np.allclose(da["latents"][0, 0], da["latents"][1, 0])  # seeds differ


def test_resume_repairs_and_skips(tmp_path):
    A.augment(_cfg(), tmp_path, progress=False)
    original = {n: _sha(tmp_path / n) for n in _shard_files(tmp_path)}
    manifest = A.read_manifest(tmp_path)
    # killed after shard 2's rename but before its manifest line; shard 1 corrupted on disk;
    # a temp file left behind.
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in manifest[:2]))
    (tmp_path / "shard-00002.npz").write_bytes(b"partial")
    data = bytearray((tmp_path / "shard-00001.npz").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "shard-00001.npz").write_bytes(bytes(data))
    (tmp_path / ".shard-00002.npz.123.tmp").write_bytes(b"junk")

    res = A.augment(_cfg(), tmp_path, progress=False)
    assert res.skipped == (0,) and sorted(res.written) == [1, 2]
    assert {n: _sha(tmp_path / n) for n in _shard_files(tmp_path)} == original
    manifest = A.read_manifest(tmp_path)
    assert sorted(e["index"] for e in manifest) == [0, 1, 2]
    assert all(e["sha256"] == original[e["shard"]] for e in manifest)
    assert not list(tmp_path.glob(".*.tmp"))
    again = A.augment(_cfg(batch_size=1), tmp_path, progress=False)  # batch size may change
    assert again.written == () and again.skipped == (0, 1, 2)


def test_resume_refuses_other_config(tmp_path):
    A.augment(_cfg(), tmp_path, progress=False)
    with pytest.raises(A.AugmentError, match=r"k: 1 \(folder\) != 2 \(now\)"):
        A.augment(_cfg(k=2), tmp_path, progress=False)
    with pytest.raises(A.AugmentError, match="vary"):
        A.augment(_cfg(vary=["pixels"]), tmp_path, progress=False)


def test_latents_file_and_errors(tmp_path):
    z = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    cfg = _cfg(seeds=None, latents=str(tmp_path / "z.npy"))
    cfg.pop("seeds")
    res = A.augment(cfg, tmp_path / "out", progress=False)
    data = A.load_dataset(res.out)
    np.testing.assert_array_equal(data["latents"][:, :, 0], np.repeat(z[:, None], 2, axis=1))
    assert data["seeds"].tolist() == [0, 1, 2]
    np.save(tmp_path / "z5.npy", np.zeros((2, 5), np.float32))
    cfg["latents"] = str(tmp_path / "z5.npy")
    with pytest.raises(A.ConfigError, match="d=5"):
        A.augment(cfg, tmp_path / "out5", progress=False)
    with pytest.raises(A.ConfigError, match="exactly one"):
        A.augment({"model": "toy"}, tmp_path / "none", progress=False)


def test_second_writer_is_refused(tmp_path):
    with A._locked(tmp_path), pytest.raises(A.AugmentError, match="another augment job"):
        A.augment(_cfg(), tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------
# A real SIGKILL in the middle of a CLI job, then a restart


# The same experiment as tests/test_cli.py's traverse run (batches of 2), so that with the shared
# persistent compilation cache only the first of these subprocesses compiles.
ROOMS_JOB = [
    "augment", "--model", "rooms", "--model-arg", "size=24", "--model-arg", "latent_dim=6",
    "--vary", "lowpass:2", "--fix", "highpass:1", "--fix", "highpass:1@region:0.1,0.2,0.5,0.6",
    "--seeds", "0:24", "-k", "1", "--steps", "3", "--step-size", "0.3",
    "--shard-size", "2", "--batch-size", "2", "--no-progress",
]  # fmt: skip


def test_sigkill_and_resume_match_an_uninterrupted_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    env = cli_env(tmp_path_factory.getbasetemp() / "jax-cache")
    ref, job = tmp / "ref", tmp / "job"
    done = subprocess.run(
        [*cli_command(), *ROOMS_JOB, "--out", str(ref)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    n_shards = 12
    assert len(A.read_manifest(ref)) == n_shards

    proc = subprocess.Popen(
        [*cli_command(), *ROOMS_JOB, "--out", str(job)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    manifest = job / "manifest.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().strip():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    rc = proc.wait(timeout=60)
    assert rc == -signal.SIGKILL, f"job ended with {rc} before it could be killed"
    listed = A.read_manifest(job)
    assert 1 <= len(listed) < n_shards

    done = subprocess.run(
        [*cli_command(), *ROOMS_JOB, "--out", str(job)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"already complete {len(listed)}" in done.stdout

    manifest = A.read_manifest(job)
    names = [e["shard"] for e in manifest]
    assert len(names) == len(set(names)) == n_shards  # every shard exactly once
    assert sorted(names) == _shard_files(job) == _shard_files(ref)
    assert not list(job.glob(".*.tmp"))
    for e in manifest:
        assert e["sha256"] == _sha(job / e["shard"])  # manifest matches the files
        assert e["sha256"] == _sha(ref / e["shard"])  # byte-identical to the uninterrupted run
    a, b = A.load_dataset(ref), A.load_dataset(job)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert a["images"].shape == (24, 2, 4, 24, 24, 3)


TOYGEN = (pathlib.Path(__file__).parent / "fixtures" / "toygen.py").read_text()


def test_factory_model_sharded_over_four_devices(tmp_path, monkeypatch):
    """A user generator named as module:factory, batches sharded over 4 forced CPU devices."""
    (tmp_path / "toygen.py").write_text(TOYGEN)
    env = cli_env(tmp_path / "cache")
    env.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]),
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    job = ["augment", "--model", "toygen:make", "--seeds", "0:5", "-k", "1", "--steps", "2",
           "--shard-size", "5", "--batch-size", "3", "--no-progress"]  # fmt: skip
    done = subprocess.run(
        [*cli_command(), *job, "--out", str(tmp_path / "multi")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    single = A.augment(
        {"model": "toygen:make", "seeds": "0:5", "k": 1, "steps": 2, "shard_size": 5},
        tmp_path / "single",
        progress=False,
    )
    a, b = A.load_dataset(tmp_path / "multi"), A.load_dataset(single.out)
    assert a["latents"].shape == (5, 2, 3, 4) and a["fix_features"].tolist() == ["highpass:1"]
    np.testing.assert_allclose(a["latents"], b["latents"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["images"], b["images"], atol=1)


def test_matrix_free_latents_do_not_depend_on_the_batch_size():
    """Issue 40 J: in float32 a matrix-free traversal's latents differed by 1.2e-3 after 6 steps
    between --batch-size 1 and 4 here (4.8e-3 at 32x32; dense 1.5e-5): batched kernels round
    differently and the iterative solver amplified it. Matrix-free jobs now compute one latent at
    a time inside each call (identical shapes for any batch size)."""
    solver = "matrix_free"
    from reds_jax.jobs.experiment import JobConfig, get_experiment

    cfg = JobConfig.from_mapping(
        {
            "model": "rooms",
            "model_args": {"size": 32, "latent_dim": 8},
            "k": 1,
            "steps": 6,
            "solver": solver,
        }  # fmt: skip
    )
    exp = get_experiment(cfg)
    seeds = np.arange(4)
    a = exp.run(seeds=seeds, batch_size=4)["latents"]
    b = exp.run(seeds=seeds, batch_size=1)["latents"]
    assert a.dtype == np.float32 and a.shape == (4, 2, 7, 8)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(a, b)  # the same program per latent: bit for bit
