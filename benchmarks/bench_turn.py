"""The matrix-free tracking stopping rule on the hard cases: the default (residual rule, turn rule
of two iterations in a row, cap 8) against its variants, agreement with the dense solver.

``python benchmarks/bench_turn.py [--n 16] [--steps 8] [--out benchmarks/results] [--machine LABEL]`` writes
``turn_rule.json`` and ``turn_rule.md``. Problems (float32, k = 1, local paths, step 0.25): the
rooms oracle with low-pass varied and high-pass fixed (d = 16; ``B`` nearly singular on the
answer) and the face DCGAN with the top quarter varied and the rest fixed (d = 100), the two
cases where one LOBPCG iteration per step was furthest from dense. Per setting: per-step |cos| of
the path directions to dense (mean, min), |cos| of the whole displacement ``z_T − z_0`` (mean,
min) and LOBPCG iterations per path (the start solve's included). Seconds include compiling.
Also, on the rooms oracle, dense in float32 against dense in float64 at the same start latents:
how far the problem itself moves with the precision. N = 16 (32 paths), because one path that
takes another branch at a sign flip moves the mean of 8 paths by 0.025.
The paper-scale rows of the same rule are ``paper_scale_turn.json`` (``paper_scale_variant.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_problems import problem

import reds_jax

SETTINGS = {
    "default (tol=1e-2, turn_tol=1e-2 twice in a row, max_iters=8)": {},
    "cap 16 (max_iters=16)": {"max_iters": 16},
    "residual rule alone, cap 16 (turn_tol=None, max_iters=16)": {
        "turn_tol": None,
        "max_iters": 16,
    },
    "no guard row (guard=0, max_iters=16)": {"guard": 0, "max_iters": 16},
    "one iteration per step (tol=None)": {"tol": None},
}
# The rule before this file's settings (commit fe0d9c5: ONE turn <= 1e-2 stopped a step, cap 8),
# measured on the same problems, latents and N = 16 before it was replaced.
BEFORE = {
    "rooms_oracle": "path |cos| 0.9826 / 0.847, step 0.9648 / 0.398, 100.7 iterations per path",
    "face_dcgan": "path |cos| 0.9864 / 0.584, step 0.9943 / 0.489, 96.9 iterations per path",
}


def agreement(ref, got) -> dict[str, float]:
    """Per-step and whole-path |cos| between two path sets ``[N, 2k, T+1, d]``."""
    a, b = np.asarray(ref.latents), np.asarray(got.latents)

    def cos(x, y):
        return np.abs(np.sum(x * y, -1)) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))

    step = cos(np.diff(a, axis=-2), np.diff(b, axis=-2))
    whole = cos(a[..., -1, :] - a[..., 0, :], b[..., -1, :] - b[..., 0, :])
    return {
        "step_cos_mean": float(step.mean()),
        "step_cos_min": float(step.min()),
        "path_cos_mean": float(whole.mean()),
        "path_cos_min": float(whole.min()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--machine", default=None, help="machine label for the report")
    a = ap.parse_args(argv)
    rows = []
    for name in ("rooms_oracle", "face_dcgan"):
        gen, vary, fix, d = problem(name, None, jnp.float32)
        z0 = jax.random.normal(jax.random.key(1), (a.n, d), jnp.float32)
        kw = dict(steps=a.steps, step=reds_jax.FixedStep(0.25))
        dense = reds_jax.traverse(reds_jax.Problem(gen, vary, [fix]), z0, **kw)
        jax.block_until_ready(dense.latents)  # or the first timed row waits for it
        if name == "rooms_oracle":  # the problem's own sensitivity to the precision
            with jax.enable_x64(True):
                gen64, vary64, fix64, _ = problem(name, None, jnp.float64)
                problem64 = reds_jax.Problem(gen64, vary64, [fix64])
                dense64 = reds_jax.traverse(problem64, z0.astype(jnp.float64), **kw)
            row = {"problem": name, "d": d, "setting": "dense float64 (against dense float32)",
                   **agreement(dense, dense64), "iterations_per_path": 0.0, "seconds": None}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        for label, opts in SETTINGS.items():
            t = time.perf_counter()
            solver = reds_jax.MatrixFree(**opts)
            mf = reds_jax.traverse(reds_jax.Problem(gen, vary, [fix]), z0, solver=solver, **kw)
            jax.block_until_ready(mf.latents)
            row = {"problem": name, "d": d, "setting": label, **agreement(dense, mf)}
            row["iterations_per_path"] = float(np.asarray(mf.diagnostics.iterations).mean())
            row["seconds"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "command": "python benchmarks/bench_turn.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": a.machine or f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "n": a.n,
        "steps": a.steps,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "turn_rule.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    lines = [
        "# Matrix-free stopping rule on the hard cases (turn rule)",
        "",
        f"{meta['machine']}, jax {meta['jax']}, float32, N = {a.n}, k = 1, T = {a.steps}, local "
        "paths, step 0.25; agreement with the dense solver at the same start latents. Command: "
        f"`{meta['command'].strip()}`.",
        "",
        *(
            f"- Before (fe0d9c5: one turn ≤ 1e-2 stopped a step, cap 8), {name}: {before}."
            for name, before in BEFORE.items()
        ),  # fmt: skip
        "",
        "| problem | setting | step \\|cos\\| mean / min | path \\|cos\\| mean / min "
        "| iterations per path | s (compile included) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} (d = {r['d']}) | {r['setting']} | {r['step_cos_mean']:.4f} / "
            f"{r['step_cos_min']:.3f} | {r['path_cos_mean']:.4f} / {r['path_cos_min']:.3f} | "
            f"{r['iterations_per_path']:.1f} | {r['seconds'] or '–'} |"
        )
    with open(os.path.join(a.out, "turn_rule.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
