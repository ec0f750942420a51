"""Cost guard (issue 35): a few representative jobs, in-process after warm-up, against a committed
baseline, so that no change makes the main jobs slower unseen.

Jobs (each run once to compile, then timed once; CPU seconds = user + sys of this process):

* ``face_demo``: the ``reds-jax demo`` traversal (face DCGAN, CLI defaults: k = 2, 8 steps, seed 0);
* ``rooms_augment``: ``reds-jax augment`` of 8 seeds on the procedural rooms (defaults, one shard,
  written to a temporary folder);
* ``matrix_free_512``: one matrix-free tracking step at d = 512 (the conv generator of
  ``bench_problems``, N = 1, k = 1, steps = 2: the start, one tracked latent);
* ``invert``: ``reds_jax.invert`` of one face DCGAN image (50 steps, 4 restarts).

For each it records CPU seconds and structural facts that do not depend on the machine's load:
``chunks`` (Jacobian chunks of the Dense solver's default budget at the job's latent; 1 = unchunked),
``iterations`` (matrix-free tracking iterations of the step), ``compiles`` (XLA programs compiled by
the warm-up run, eager operations included) and ``recompiles`` (by the timed run: 0 unless the job
builds new jitted functions per call, as ``invert`` does). A job under one CPU second is timed over
several runs (their mean).

Exit status 1 when a job's CPU seconds exceed ``--factor`` (3) times its baseline figure, or a
structural fact differs from the baseline's. The table is printed every time. Updating the baseline
(``--update``) is a deliberate act: commit it with its reason.

Usage::

    python benchmarks/cost_guard.py [--baseline benchmarks/results/cost_baseline.json]
        [--update] [--factor 3] [--only face_demo,invert] [--table FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
BASELINE = ROOT / "benchmarks" / "results" / "cost_baseline.json"
MIN_CPU_S = 1.0  # jobs shorter than this are timed over several runs (the mean is reported)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CompileCounter:
    """Counts XLA backend compiles (``jax.monitoring``'s compile-duration event)."""

    def __init__(self):
        import jax
        from jax._src import dispatch

        self.n = 0
        name = dispatch.BACKEND_COMPILE_EVENT

        def listen(event: str, *args, **kwargs) -> None:
            if event == name:
                self.n += 1

        jax.monitoring.register_event_duration_secs_listener(listen)


def chunks(generator, features, z) -> int:
    """Jacobian chunks of ``Dense()`` at ``z``: 1 when unchunked."""
    import jax.numpy as jnp

    from reds_jax.core.jacobians import auto_chunk_size, output_size
    from reds_jax.core.solvers import MEMORY_BUDGET

    chunk = auto_chunk_size(generator, tuple(features), z, "auto", MEMORY_BUDGET)
    if chunk is None:
        return 1

    def stacked(v):
        image = generator(v)
        return jnp.concatenate([jnp.ravel(f(image)) for f in features])

    m, d = output_size(stacked, z), z.shape[0]
    return -(-(d if m >= d else m) // chunk)


# ---------------------------------------------------------------------------------------------
# The jobs: each returns (run, facts): `run()` does the job once; `facts` the structural facts.


def face_demo():
    import jax.numpy as jnp

    from reds_jax.jobs import models
    from reds_jax.jobs.experiment import Experiment, JobConfig

    cfg = JobConfig(model="faces", seeds=[0]).resolved()
    exp = Experiment(cfg)
    feats = models.parse_features(cfg.vary) + models.parse_features(cfg.fix)
    z = jnp.zeros((exp.latent_dim,), exp.dtype)
    return (lambda: exp.run(seeds=[0])), {"chunks": chunks(exp.model.generator, feats, z)}


def rooms_augment():
    from reds_jax.jobs.augment import augment

    folder = pathlib.Path(tempfile.mkdtemp(prefix="reds_cost_guard_"))
    runs = iter(range(100))

    def run():
        out = folder / f"run{next(runs)}"
        augment({"model": "rooms", "seeds": "0:8", "shard_size": 8}, out, progress=False)

    import jax.numpy as jnp

    from reds_jax.jobs import models
    from reds_jax.jobs.config import JobConfig

    cfg = JobConfig(model="rooms", seeds="0:8").resolved()
    model = models.load_model("rooms")
    feats = models.parse_features(cfg.vary) + models.parse_features(cfg.fix)
    z = jnp.zeros((model.latent_dim,), jnp.dtype(cfg.dtype))
    return run, {"chunks": chunks(model.generator, feats, z)}


def matrix_free_512():
    import jax
    import jax.numpy as jnp
    from bench_problems import problem

    import reds_jax

    gen, vary, fix, d = problem("conv", 512, jnp.float32)
    z = jax.random.normal(jax.random.key(0), (1, d), jnp.float32)
    solver, task = reds_jax.MatrixFree(), reds_jax.Problem(gen, vary, [fix])
    start = jax.jit(lambda z: reds_jax.traverse(task, z, steps=1, solver=solver))
    path = jax.jit(lambda z: reds_jax.traverse(task, z, steps=2, solver=solver))
    iters = lambda tr: int(jnp.max(tr.diagnostics.iterations))  # noqa: E731
    # tracking iterations of the one tracked latent: the 2-step path's minus the start's
    facts = {"iterations": iters(path(z)) - iters(start(z))}
    return (lambda: jax.block_until_ready(path(z))), facts


def invert():
    import jax
    import jax.numpy as jnp

    import reds_jax
    from reds_jax.generators import face_dcgan

    gan = face_dcgan()
    zt = jax.random.normal(jax.random.key(10_000), (1, gan.latent_dim), jnp.float32)
    images = jnp.round(jnp.clip(jax.vmap(gan.generator)(zt), 0, 1) * 255) / 255

    def run():
        out = reds_jax.invert(
            gan.generator, images, latent_dim=gan.latent_dim, steps=50, restarts=4,
            key=jax.random.split(jax.random.key(0), 1),
        )  # fmt: skip
        return jax.block_until_ready(out)

    return run, {}


JOBS: dict[str, Callable] = {
    "face_demo": face_demo,
    "rooms_augment": rooms_augment,
    "matrix_free_512": matrix_free_512,
    "invert": invert,
}


def measure(names: list[str]) -> dict:
    counter = CompileCounter()
    out = {}
    for name in names:
        print(f"cost_guard: {name}: warm-up (compiles) ...", file=sys.stderr, flush=True)
        n0 = counter.n
        run, facts = JOBS[name]()
        run()
        compiles = counter.n - n0
        n1, t0 = counter.n, cpu_s()
        run()
        cpu = cpu_s() - t0
        if cpu < MIN_CPU_S:  # a short job: time enough runs to see past the timer's noise
            reps = int(MIN_CPU_S / max(cpu, 1e-3)) + 1
            t0 = cpu_s()
            for _ in range(reps):
                run()
            cpu = (cpu_s() - t0) / reps
        facts = {**facts, "compiles": compiles, "recompiles": counter.n - n1}
        out[name] = {"cpu_s": round(cpu, 2), "facts": facts}
        print(f"cost_guard: {name}: {cpu:.2f} s CPU, {facts}", file=sys.stderr, flush=True)
    return out


ORDER_DEPENDENT = (
    "compiles",
    "recompiles",
)  # eager operations compiled by an earlier job are reused


def compare(measured: dict, baseline: dict, factor: float, partial: bool) -> tuple[str, bool]:
    lines = [
        f"| job | CPU s | baseline CPU s | ratio | limit ({factor:g}x) | facts | baseline facts | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ok_all = True
    for name, got in measured.items():
        base = baseline.get("jobs", {}).get(name)
        if base is None:
            lines.append(f"| {name} | {got['cpu_s']:.2f} | – | – | – | {got['facts']} | – | NEW |")
            ok_all = False
            continue
        ratio = got["cpu_s"] / max(base["cpu_s"], 1e-9)
        changed = {k: (base["facts"].get(k), v) for k, v in got["facts"].items()}
        changed = {
            k: ab
            for k, ab in changed.items()
            if ab[0] != ab[1] and not (partial and k in ORDER_DEPENDENT)
        }
        ok = ratio <= factor and not changed
        ok_all &= ok
        why = [] if ratio <= factor else [f"{ratio:.1f}x slower"]
        why += [f"{k} {a} -> {b}" for k, (a, b) in changed.items()]
        lines.append(
            f"| {name} | {got['cpu_s']:.2f} | {base['cpu_s']:.2f} | {ratio:.2f} | "
            f"{factor * base['cpu_s']:.1f} | {got['facts']} | {base['facts']} | "
            f"{'yes' if ok else 'FAIL: ' + ', '.join(why)} |"
        )
    return "\n".join(lines), ok_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=pathlib.Path, default=BASELINE)
    ap.add_argument("--update", action="store_true", help="write the measured figures as baseline")
    ap.add_argument("--factor", type=float, default=3.0)
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated jobs (default: all; compile counts are then not compared)",
    )
    ap.add_argument("--table", type=pathlib.Path, help="also write the table to this file")
    ap.add_argument(
        "--measured",
        type=pathlib.Path,
        help="compare the figures saved by an earlier --update run (e.g. of another checkout) "
        "instead of measuring",
    )
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(JOBS)
    unknown = sorted(set(names) - set(JOBS))
    if unknown:
        ap.error(f"--only: unknown job(s) {unknown}; pass some of {list(JOBS)}")
    t0 = time.perf_counter()
    if args.measured:
        saved = json.loads(args.measured.read_text())
        measured = {n: saved["jobs"][n] for n in names if n in saved["jobs"]}
    else:
        measured = measure(names)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    import reds_jax

    where = pathlib.Path(reds_jax.__file__).parent
    head = (
        f"cost guard: commit {commit or '?'}, reds_jax from {where}, "
        f"load {os.getloadavg()[0]:.1f}, {time.perf_counter() - t0:.0f} s wall"
    )
    if args.measured:
        saved = json.loads(args.measured.read_text())
        head = f"cost guard: figures of {args.measured} ({saved.get('source', '?')})"
    if args.update:
        data = {
            "note": "CPU seconds (user + sys) of one warm run of each job on the 2-core dev machine; "
            "update deliberately, with the reason in the commit message",
            "commit": commit,
            "source": f"reds_jax from {where}, load {os.getloadavg()[0]:.1f}",
            "jobs": measured,
        }
        args.baseline.write_text(json.dumps(data, indent=2) + "\n")
        print(f"{head}\nwrote {args.baseline}")
        return 0
    baseline = json.loads(args.baseline.read_text())
    table, ok = compare(measured, baseline, args.factor, partial=names != list(JOBS))
    text = f"{head}; baseline commit {baseline.get('commit', '?')}\n\n{table}\n"
    print(text)
    if args.table:
        args.table.write_text(text)
    if not ok:
        print("cost guard: FAILED (see the table)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
