"""Multi-host augmentation: two ``jax.distributed`` processes on this machine (CPU, 2 devices each)
share one folder; SIGKILL of one process midway, restart of both; process count 1 -> 2 -> 1;
another job holding the folder; every shard byte-identical to a single-process run."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import cli_command, cli_env

from reds_jax.jobs import augment as A
from reds_jax.jobs import cli

TOYGEN = (pathlib.Path(__file__).parent / "fixtures" / "toygen.py").read_text()

N_SHARDS = 24
JOB = ["augment", "--model", "toymh:make", "--seeds", f"0:{N_SHARDS}", "-k", "1", "--steps", "2",
       "--shard-size", "1", "--batch-size", "2", "--no-progress"]  # fmt: skip
CFG = {"model": "toymh:make", "seeds": f"0:{N_SHARDS}", "k": 1, "steps": 2, "shard_size": 1}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _start(out, env, n=2):
    """``n`` processes of one job (a fresh coordinator port each time)."""
    port = _port()
    flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n)]
    return [
        subprocess.Popen(
            [*cli_command(), *JOB, "--out", str(out), *flags, "--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]


def _finish(procs, timeout=300):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]


@pytest.fixture
def env(tmp_path, tmp_path_factory):
    (tmp_path / "toymh.py").write_text(TOYGEN)
    env = cli_env(tmp_path_factory.getbasetemp() / "jax-cache-2dev")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    sys.path.insert(0, str(tmp_path))
    yield env
    sys.path.remove(str(tmp_path))
    sys.modules.pop("toymh", None)


def test_two_processes_resume_after_sigkill_and_process_count_changes(env, tmp_path):
    ref, job = tmp_path / "ref", tmp_path / "job"
    # the single-process reference, same local devices (2) and batch size
    done = subprocess.run(
        [*cli_command(), *JOB, "--out", str(ref)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert len(A.read_manifest(ref)) == N_SHARDS

    # a single-process run that stopped after 2 shards (0 and 1; 1 belongs to process 1 of 2)
    job.mkdir()
    shutil.copy(ref / "config.json", job)
    lines = (ref / "manifest.jsonl").read_text().splitlines(keepends=True)
    (job / "manifest.jsonl").write_text("".join(lines[:2]))
    for e in A.read_manifest(job):
        shutil.copy(ref / e["shard"], job)

    # another job holds the folder: both processes refuse, with one line each, exit 2
    with A._locked(job):
        results = _finish(_start(job, env))
    for rc, _, err in results:
        assert rc == 2, err
        last = err.strip().splitlines()[-1]
        assert "another augment job (pid" in last and "is writing to" in last
    assert "process 0 did not start the job" in results[1][2]

    # two processes; process 1 is SIGKILLed after its first shard, then process 0 too
    procs = _start(job, env)
    mine = job / "manifest-1.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and procs[1].poll() is None:
        if mine.exists() and mine.read_bytes().count(b"\n") >= 1:
            os.kill(procs[1].pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    assert procs[1].wait(timeout=60) == -signal.SIGKILL, procs[1].stderr.read()
    procs[0].kill()
    procs[0].wait(timeout=60)
    listed = [json.loads(line) for line in mine.read_text().splitlines()]
    assert 1 <= len(listed) < N_SHARDS // 2 - 1
    for e in A.read_manifest(job):  # nothing listed is partial, whoever wrote it
        assert e["sha256"] == _sha(job / e["shard"])
    assert all(e["index"] % 2 == 1 and e["process"] == 1 for e in listed)

    # both restart and complete the job
    results = _finish(_start(job, env))
    for rc, out, err in results:
        assert rc == 0, err
        assert "already complete" in out
    manifest = A.read_manifest(job)
    assert [e["index"] for e in manifest] == list(range(N_SHARDS))  # every shard exactly once
    for e in manifest:  # byte-identical to the single-process run
        assert e["sha256"] == _sha(job / e["shard"]) == _sha(ref / e["shard"])
    data = A.load_dataset(job)
    assert data["seeds"].tolist() == list(range(N_SHARDS))
    np.testing.assert_array_equal(data["images"], A.load_dataset(ref)["images"])
    by_process = {}
    for path in (job / "manifest.jsonl", mine):
        for line in path.read_text().splitlines():
            e = json.loads(line)
            by_process.setdefault(e["process"], set()).add(e["index"])
    # shards 0 and 1 are the single-process run's lines; no shard is listed twice
    assert by_process == {0: {0, 1, *range(2, N_SHARDS, 2)}, 1: set(range(3, N_SHARDS, 2))}
    assert not list(job.glob(".*.tmp"))

    # and one process again (count 2 -> 1): every shard verified and skipped, none recomputed
    res = A.augment(CFG, job, progress=False)
    assert res.written == () and res.skipped == tuple(range(N_SHARDS))


@pytest.mark.parametrize(
    "flags, words",
    [
        (
            ["--num-processes", "2", "--process-id", "2"],
            "process_id must lie in [0, num_processes = 2)",
        ),
        (["--num-processes", "0"], "argument --num-processes: must be an int >= 1"),
        (["--coordinator", "host0", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (
            ["--coordinator", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "0"],
            "port must be in 1..65535",
        ),
    ],
)
def test_bad_distributed_flags_are_one_line_errors(flags, words, tmp_path, capsys):
    try:
        code = cli.main(["augment", "--seeds", "0:2", "--out", str(tmp_path / "o"), *flags])
    except SystemExit as exit_:  # argparse's own range checks exit while parsing
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and words in err, err
    assert not (tmp_path / "o").exists()


def _run(env, out, specs, *, kill_after_config=None, seeds="0:400"):
    """Processes ``(num_processes, process_id)`` of one job (timeouts of 3 s); optionally SIGKILL
    process ``kill_after_config`` once process 0 has written config.json. ``[(rc, stderr)]``."""
    port = _port()
    job = [*JOB[:4], seeds, *JOB[5:], "--distributed-timeout", "3", "--out", str(out)]
    procs = []
    for n, i in specs:
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n)]
        procs.append(
            subprocess.Popen(
                [*cli_command(), *job, *flags, "--process-id", str(i)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
        time.sleep(0.5)
    if kill_after_config is not None:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        procs[kill_after_config].kill()
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        results.append((p.returncode, err))
    return results


def _one_line(rc, err, *words):
    assert rc == 2, err
    assert "Check failure" not in err and "    @ " not in err and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("reds-jax augment: error: "), err
    for w in words:
        assert w in last, last
    return last


def test_distributed_failures_are_one_line_naming_the_process_and_cause(env, tmp_path):
    """A killed peer, a lone process, two processes with one id, mismatched counts (issue 40 F):
    each was a C++ 'Check failure' abort or a silent hang."""
    # peer died: process 1 is SIGKILLed while the job runs; process 0 says so and stops
    (rc, err), (rc1, _) = _run(env, tmp_path / "a", [(2, 0), (2, 1)], kill_after_config=1)
    assert rc1 == -signal.SIGKILL
    _one_line(rc, err, "process 0:", "lost process 1", "Run the job again")
    # no coordinator: a lone process 1
    ((rc, err),) = _run(env, tmp_path / "b", [(2, 1)])
    _one_line(rc, err, "process 1:", "no coordinator answered in time")
    # process 1 started with --num-processes 3 against a job of 2
    results = _run(env, tmp_path / "c", [(2, 0), (3, 1)], seeds="0:40")
    _one_line(*results[1], "process 1 was started with --num-processes 3", "job of 2 processes")
    _one_line(*results[0], "process 0 was started with --num-processes 2, process 1 with 3")
    # two processes with id 1
    results = _run(env, tmp_path / "d", [(2, 0), (2, 1), (2, 1)], seeds="0:40")
    assert any("same --process-id" in _one_line(rc, err) for rc, err in results[1:])


def test_coordinator_binds_the_given_host(monkeypatch):
    import jax
    from jax._src import distributed as state

    from reds_jax.jobs import distributed

    seen = {}
    monkeypatch.setattr(state.global_state, "client", None)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: seen.update(kw))
    distributed.initialize(
        {"coordinator_address": "127.0.0.1:7951", "num_processes": 1, "process_id": 0}
    )
    assert seen["coordinator_bind_address"] == "127.0.0.1:7951"  # jax's default: [::]:7951
