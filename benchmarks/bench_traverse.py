"""Traversal benchmarks: throughput, per-step latency, compile time and peak memory per solver.

``reds-jax bench`` and ``benchmarks/bench_traverse.py`` call :func:`main`. Each configuration
(generator, latent size ``d``, batch ``N``, solver) runs in its own subprocess so that its peak
resident memory (``VmHWM`` from ``/proc/self/status``, which counts XLA's buffers, unlike
``tracemalloc``) is its own. Within a configuration: one call compiles (its time is reported
separately), then ``repeats`` timed calls (``block_until_ready``); medians are reported. Ratios are
computed pair-by-pair within the same run (same machine, same load) and written as JSON and a
Markdown summary.

Solvers compared on the same jitted generator and features:

* ``dense``: exact Grams (``jax.jacfwd``) and a dense eigen-solve at every step, ``vmap``-ed.
* ``chunked``: the same with ``chunk_size`` (never the full ``[m, d]`` Jacobian).
* ``fd``: central-difference Jacobians (paper parity), otherwise as ``dense``.
* ``matrix_free``: :mod:`reds_jax.core.matrix_free` (dense start, warm-started LOBPCG tracking).
* ``reference``: the way the reference code works: one seed and one path at a time in Python,
  central-difference Jacobians in batches of 10 latents through the *same jitted generator*, and
  the Gram, eigen-solve and projection in numpy on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import bench_traverse_args
import jax
import jax.numpy as jnp
import numpy as np
from bench_problems import (
    VARIANTS,
    parse_solver,
    problem,
    reference_traverse,
)
from bench_report import markdown, write_report

Array = jax.Array

# ---------------------------------------------------------------------------------------------
# One configuration (runs in its own process)


def proc_status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MiB from ``/proc/self/status`` (None elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def device_peak_mb() -> float | None:
    """Peak bytes in use on the first device (GPU/TPU; None where the backend has no stats)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU backends may not implement it
        return None
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def solver_check(spec: dict[str, Any], path: str, limit: int = 48) -> dict[str, float]:
    """Same-latent agreement of a saved run with the dense solver (``k = 1`` paths).

    At up to ``limit`` latents ``z_t`` (``1 <= t < T``) of the saved paths, the dense top direction
    is computed and compared with the saved step ``z_{t+1} − z_t`` (|cos|): the solver's own error,
    without the divergence of whole paths.
    """
    import reds_jax

    dtype = jnp.dtype(spec.get("dtype", "float32"))
    gen, vary, fix, d = problem(spec["generator"], spec.get("d"), dtype)
    lat = np.load(path)["latents"]
    zs = lat[..., 1:-1, :].reshape(-1, d)
    steps = np.diff(lat, axis=-2)[..., 1:, :].reshape(-1, d)
    pick = np.unique(np.linspace(0, len(zs) - 1, min(limit, len(zs))).astype(int))
    dirs = reds_jax.directions(gen, jnp.asarray(zs[pick], dtype), vary=vary, fix=[fix], k=1)
    top = np.asarray(dirs.vectors[:, 0])
    cos = np.abs(np.sum(top * steps[pick], -1)) / np.linalg.norm(steps[pick], axis=-1)
    return {
        "same_latent_cos_mean": float(cos.mean()),
        "same_latent_cos_min": float(cos.min()),
        "same_latent_cos_p05": float(np.quantile(cos, 0.05)),
        "same_latent_points": int(len(pick)),
    }


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one configuration in this process; returns a JSON-able record.

    ``spec`` keys: ``generator``, ``d``, ``n``, ``solver`` (``parse_solver`` syntax), ``k``,
    ``steps``, ``step_size``, ``repeats``, ``seed``, ``dtype``, ``ref_seeds``, ``save`` (npz path
    for the latents and distances, or None).
    """
    import reds_jax

    dtype = jnp.dtype(spec.get("dtype", "float32"))
    gen, vary, fix, d = problem(spec["generator"], spec.get("d"), dtype)
    n, k, steps = int(spec["n"]), int(spec["k"]), int(spec["steps"])
    size, repeats = float(spec["step_size"]), int(spec["repeats"])
    z0 = jax.random.normal(jax.random.key(int(spec.get("seed", 0))), (n, d), dtype)
    base, opts = parse_solver(spec["solver"])
    rss0 = proc_status_mb("VmRSS")
    times: list[float] = []
    xla_temp_mb = None
    if base.startswith("reference"):
        feats = (vary, fix)
        sizes = [int(np.prod(jax.eval_shape(lambda v, f=f: f(gen(v)), z0[0]).shape)) for f in feats]
        batch_fn = jax.jit(
            jax.vmap(lambda z: jnp.concatenate([jnp.ravel(f(gen(z))) for f in feats]))
        )
        n_paths = min(n, int(spec.get("ref_seeds", 1)))
        seeds = np.asarray(z0[:n_paths])
        t0 = time.perf_counter()
        jax.block_until_ready(batch_fn(jnp.zeros((10, d), dtype)))
        compile_s = time.perf_counter() - t0
        for _ in range(repeats):
            t0 = time.perf_counter()
            latents = np.stack(
                [
                    reference_traverse(
                        batch_fn, sizes, 1, z, k=k, steps=steps, step_size=size, **opts
                    )
                    for z in seeds
                ]
            )
            times.append(time.perf_counter() - t0)
        out = {"latents": latents}
    else:
        kw: dict[str, Any] = {}
        if base == "chunked":
            kw["chunk_size"] = int(opts.pop("chunk_size", 64))
        elif base == "fd":
            kw["mode"] = "fd"
        elif base == "matrix_free":
            kw["solver"] = "matrix_free"
        elif base != "dense":
            raise ValueError(f"solver {base!r} is unknown; pass one of {VARIANTS}.")
        kw.update(opts)

        def run(z):
            return reds_jax.traverse(
                gen, z, vary=vary, fix=[fix], k=k, steps=steps, step_size=size, **kw
            )

        # One compile (timed on its own), XLA's memory plan, one warm-up call, timed repeats.
        t0 = time.perf_counter()
        compiled = jax.jit(run).lower(z0).compile()
        compile_s = time.perf_counter() - t0
        try:
            mem = compiled.memory_analysis()
            xla_temp_mb = mem.temp_size_in_bytes / 2**20
        except Exception:  # noqa: BLE001 - not every backend reports it
            xla_temp_mb = None
        tr = jax.block_until_ready(compiled(z0))
        for _ in range(repeats):
            t0 = time.perf_counter()
            tr = jax.block_until_ready(compiled(z0))
            times.append(time.perf_counter() - t0)
        n_paths = n
        out = {
            "latents": np.asarray(tr.latents),
            "fix": np.asarray(tr.fix_distances[0]),
            "vary": np.asarray(tr.vary_distances[0]),
        }
    median = float(np.median(times))
    if spec.get("save"):
        np.savez(spec["save"], **out)
    return {
        **{key: spec[key] for key in ("generator", "n", "solver", "k", "steps")},
        "d": d,
        "seeds_timed": n_paths,
        "times_s": times,
        "median_s": median,
        "trajectories_per_s": n_paths * 2 * k / median,
        "step_latency_ms": 1e3 * median / max(steps, 1),
        "compile_s": compile_s,
        "rss_before_mb": rss0,
        "xla_temp_mb": xla_temp_mb,
        "device_peak_mb": device_peak_mb(),
        "peak_rss_mb": proc_status_mb("VmHWM"),
    }


# ---------------------------------------------------------------------------------------------
# The grid, the driver, the reports


def grid(profile: str) -> list[dict[str, Any]]:
    """Configurations ``{generator, d, n, solvers}`` of a profile.

    Profiles: ``cpu``, ``cpu-targets`` (only the rows behind the CPU targets), ``gpu``, ``smoke``.

    ``cpu`` is cut to what a 2-core CPU runs in minutes: N = 256 and the larger batches at
    d ≥ 128 are left out, FD and chunked run at the smaller batches, the face DCGAN at N = 1.
    """
    mf = "matrix_free"
    sketches = [f"{mf}+sketch={m}" for m in (32, 64, 128, 256)]
    if profile == "smoke":
        return [{"generator": "conv", "d": 16, "n": 2, "solvers": ["dense", mf, "reference"]}]
    if profile == "cpu":
        once = {"dense": 1, "reference": 1}  # the slowest rows: one timed call after the warm-up
        return [
            {"generator": "conv", "d": 64, "n": 1, "solvers": ["dense", "fd", mf, "reference"]},
            {
                "generator": "conv",
                "d": 64,
                "n": 8,
                "solvers": [
                    "dense",
                    "chunked",
                    "fd",
                    mf,
                    f"{mf}+guard=0",
                    f"{mf}+cold_start=iterative+iters=3",
                    *sketches[:3],
                ],
            },
            {"generator": "conv", "d": 64, "n": 64, "solvers": ["dense", mf]},
            {"generator": "conv", "d": 128, "n": 8, "solvers": ["dense", mf, "reference"]},
            {
                "generator": "conv",
                "d": 512,
                "n": 1,
                "solvers": ["dense", mf, f"{mf}+guard=0", "reference"],
                "repeats": once,
            },
            {"generator": "conv", "d": 512, "n": 8, "solvers": [mf]},
            {
                "generator": "face_dcgan",
                "d": 100,
                "n": 1,
                "solvers": ["dense", mf, "reference"],
                "repeats": once,
            },
            {"generator": "rooms_oracle", "d": 16, "n": 8, "solvers": ["dense", mf, "reference"]},
        ]
    if profile == "cpu-targets":  # the rows behind the CPU targets, in one run
        once = {"dense": 1, "reference": 1}
        return [
            {"generator": "conv", "d": 64, "n": 64, "solvers": ["dense", mf, "reference"]},
            {
                "generator": "conv",
                "d": 512,
                "n": 1,
                "solvers": ["dense", mf, "reference"],
                "repeats": once,
            },
            {"generator": "conv", "d": 512, "n": 8, "solvers": [mf]},
        ]
    if profile == "gpu":  # sized for about five minutes of one accelerator, compiles included
        ref = ["reference"]
        return [
            {"generator": "conv", "d": 64, "n": 256, "solvers": ["dense", "fd", mf, *ref]},
            {"generator": "conv", "d": 512, "n": 256, "solvers": ["dense", "chunked", mf, *ref]},
            {"generator": "face_dcgan", "d": 100, "n": 256, "solvers": ["dense", mf, *ref]},
            {"generator": "rooms_gan", "d": 64, "n": 256, "solvers": ["dense", mf, *ref]},
            {"generator": "rooms_oracle", "d": 16, "n": 256, "solvers": ["dense", mf, *ref]},
            {"generator": "conv", "d": 128, "n": 1024, "solvers": ["dense", mf, sketches[2]]},
        ]
    raise ValueError(f"profile {profile!r} is unknown; pass cpu, cpu-targets, gpu or smoke.")


def _run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {**spec, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1][len("RESULT ") :])


def _agreement(ref_path: str, other_path: str) -> dict[str, float]:
    """Per-step |cos| of path directions and fixed-feature drift of one solver against dense."""
    a, b = np.load(ref_path), np.load(other_path)
    da, db = np.diff(a["latents"], axis=-2), np.diff(b["latents"], axis=-2)
    cos = np.abs(np.sum(da * db, -1)) / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))
    drift_a, drift_b = a["fix"][..., -1], b["fix"][..., -1]
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "cos_p05": float(np.quantile(cos, 0.05)),
        "drift_dense_median": float(np.median(drift_a)),
        "drift_median": float(np.median(drift_b)),
        "drift_rel_diff": float(np.median(drift_b) / max(np.median(drift_a), 1e-30) - 1.0),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark grid; write ``<out>/<name>.json`` and ``<out>/<name>.md``.

    Args:
      argv: command-line arguments (see ``--help``); ``None`` reads ``sys.argv``.

    Returns:
      Process exit status (0 on success).
    """
    args = bench_traverse_args.parser().parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        if "check" in spec:
            print("RESULT " + json.dumps(solver_check(spec, spec["check"])), flush=True)
        else:
            print("RESULT " + json.dumps(run_config(spec)), flush=True)
        return 0

    import tempfile

    os.makedirs(args.out, exist_ok=True)
    name = args.name or args.profile
    configs = grid(args.profile)
    if args.only:
        keep = set(args.only.split(","))
        configs = [c for c in configs if c["generator"] in keep]
    if args.max_n:
        configs = [{**c, "n": min(c["n"], args.max_n)} for c in configs]
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        refs: dict[tuple, dict[str, Any]] = {}
        for c in configs:
            saved: dict[str, str] = {}
            for solver in c["solvers"]:
                path = os.path.join(tmp, f"{c['generator']}_{c['d']}_{c['n']}_{len(results)}.npz")
                spec = {
                    "generator": c["generator"],
                    "d": c["d"],
                    "n": c["n"],
                    "solver": solver,
                    "k": args.k,
                    "steps": args.steps,
                    "step_size": args.step_size,
                    "repeats": c.get("repeats", {}).get(solver, args.repeats),
                    "dtype": args.dtype,
                    "ref_seeds": args.ref_seeds,
                    "seed": 0,
                    "save": path,
                }
                t0 = time.perf_counter()
                rec = _run_worker(spec, args.timeout)
                if "error" in rec:  # one retry (a stalled or crashed worker)
                    rec = {**_run_worker(spec, args.timeout), "first_error": rec["error"]}
                rec.setdefault("d", c["d"])
                print(
                    f"[{time.perf_counter() - t0:6.1f} s] {c['generator']} d={c['d']} N={c['n']} "
                    f"{solver}: "
                    + (
                        f"{rec['trajectories_per_s']:.3g} traj/s, step {rec['step_latency_ms']:.3g} ms"
                        if "error" not in rec
                        else f"error {rec['error']}"
                    ),
                    flush=True,
                )
                results.append(rec)
                if "error" not in rec:
                    saved[solver] = path
                    if solver == "reference":
                        refs[(c["generator"], c["d"])] = rec
            for r in results[-len(c["solvers"]) :]:
                if "error" in r:
                    continue
                if (
                    r["solver"] != "dense"
                    and "dense" in saved
                    and not r["solver"].startswith("reference")
                ):
                    r["agreement"] = _agreement(saved["dense"], saved[r["solver"]])
                if args.check and r["solver"].startswith("matrix_free") and r["k"] == 1:
                    spec = {
                        "generator": c["generator"],
                        "d": c["d"],
                        "dtype": args.dtype,
                        "check": saved[r["solver"]],
                    }
                    chk = _run_worker(spec, args.timeout)
                    if "error" not in chk:
                        r.setdefault("agreement", {}).update(chk)
            write_report(args, results, refs, load_start, name)
    report = write_report(args, results, refs, load_start, name)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
