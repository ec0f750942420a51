"""Cost of path control (issue 19): time per step of REDs local paths with feature-space steps
and/or the Gauss-Newton corrector, against plain fixed steps, measured in one run.

``python benchmarks/bench_control.py [--size 32] [--n 8] [--steps 8] [--out benchmarks/results]``
writes ``path_control.json`` and ``path_control.md``. Each variant is compiled once (its compile
time is reported), then timed ``--repeats`` times (``block_until_ready``); medians are reported
and every ratio is to the plain ``reds-local`` row of the same run. The problem is the rooms
oracle's frequency experiment (fix high-pass, vary low-pass), the one the quality suite uses.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

import reds_jax
from reds_jax import features as F
from reds_jax.generators import rooms_oracle

CONTROL_KEYS = ("step_target", "correct", "cg_iters")
VARIANTS = {
    "reds-local": {},
    "reds-local-fs": {"step_target": "unit"},
    "reds-local-c": {"correct": 2},
    "reds-local-c4": {"correct": 2, "cg_iters": 4},
    "reds-local-pc": {"step_target": "unit", "correct": 2},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n", type=int, default=8, help="start latents")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    oracle = rooms_oracle(size=a.size)
    s = a.size / 64.0
    vary, fix = F.lowpass(4.0 * s), F.highpass(2.0 * s)
    z0 = jax.random.normal(jax.random.key(0), (a.n, oracle.latent_dim), jax.numpy.float32)
    problem = reds_jax.Problem(oracle.generator, vary, [fix])
    base = dict(steps=a.steps, step=reds_jax.FixedStep(0.5))
    t0 = time.perf_counter()
    ref = reds_jax.traverse(problem, z0, **base)
    jax.block_until_ready(ref.latents)
    first_plain = time.perf_counter() - t0  # the plain variant's first call is this one
    unit = float(np.median(np.asarray(ref.vary_distances[0])[..., 1]))  # plain first-step change
    rows = []
    for name, extra in VARIANTS.items():
        kw = dict(base)
        if "step_target" in extra:
            kw["step"] = reds_jax.FeatureStep(unit, max_size=0.5)
        if "correct" in extra:
            kw["corrector"] = reds_jax.Corrector(extra["correct"], extra.get("cg_iters", 8))
        t0 = time.perf_counter()
        tr = reds_jax.traverse(problem, z0, **kw)
        jax.block_until_ready(tr.latents)
        compile_s = first_plain if not extra else time.perf_counter() - t0
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(reds_jax.traverse(problem, z0, **kw).latents)
            times.append(time.perf_counter() - t0)
        run = statistics.median(times)
        fixd = np.asarray(tr.fix_distances[0])[..., -1]
        rows.append(
            {
                "variant": name,
                "settings": {k: v for k, v in kw.items() if k in CONTROL_KEYS},
                "first_call_s": compile_s,
                "run_s": run,
                "per_step_ms": 1e3 * run / (a.n * 2 * a.steps),
                "median_final_fix_distance": float(np.median(fixd)),
                "median_final_vary_distance": float(np.median(
                    np.asarray(tr.vary_distances[0])[..., -1]
                )),
                "rejected_corrections": int(np.sum(tr.diagnostics.rejected_corrections)),
            }
        )  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    plain = rows[0]["per_step_ms"]
    for r in rows:
        r["cost_ratio"] = r["per_step_ms"] / plain
    info = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} ({jax.default_backend()})",
        "load_average": os.getloadavg(),
        "problem": f"rooms oracle {a.size} px, fix highpass:{2 * s:g} / vary lowpass:{4 * s:g}, "
        f"N={a.n}, k=1, T={a.steps}, step_size=0.5, float32",
        "rows": rows,
    }
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "path_control.json").write_text(json.dumps(info, indent=2) + "\n")
    lines = [
        "# Path control: cost per step",
        "",
        f"{info['problem']}; {info['machine']}; load average during the run "
        f"{', '.join(f'{x:.1f}' for x in info['load_average'])} (shared machine: absolute times "
        "are inflated, ratios are from the same run).",
        "",
        "| variant | settings | ms / path-step | cost vs plain | first call s | final fix dist | "
        "final vary dist | rejected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['settings'] or '-'} | {r['per_step_ms']:.2f} | "
            f"{r['cost_ratio']:.2f}× | {r['first_call_s']:.1f} | "
            f"{r['median_final_fix_distance']:.4f} | {r['median_final_vary_distance']:.3f} | "
            f"{r['rejected_corrections']} |"
        )
    (out / "path_control.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
