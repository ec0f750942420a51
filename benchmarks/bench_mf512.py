"""Issue 35's matrix-free row: d = 512 conv generator (``bench_problems``), N = 16 start latents,
k = 1, T = 5, step 0.25, float32: matrix-free stopping rules against the reference loop (one seed,
central differences in batches of 10, numpy Grams and eigh: its time per trajectory is used for
every N) and against dense on the first ``--dense-n`` start latents (whole-path |cos| of the
displacement ``z_T - z_0`` and per-step |cos|). CPU seconds (user + sys) of this process, one
timed call after a compiling one, all rows in one run.

``python benchmarks/bench_mf512.py [--out benchmarks/results]`` writes ``mf512.json`` / ``mf512.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys

import jax
import jax.numpy as jnp
import numpy as np
from bench_problems import problem, reference_traverse

import reds_jax

RULES = {
    "default (tol=1e-2, turn rule, max_iters=8)": {},
    "one iteration per step (tol=None, iters=1)": {"tol": None},
    "max_iters=2": {"max_iters": 2},
}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, *args):
    jax.block_until_ready(fn(*args))  # compile + warm-up
    t0 = cpu_s()
    out = jax.block_until_ready(fn(*args))
    return out, cpu_s() - t0


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """|cos| of paths ``[N, 2k, T+1, d]``: whole displacement and per step (mean, min)."""

    def cos(x, y):
        return np.abs(np.sum(x * y, -1)) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))

    whole = cos(a[..., -1, :] - a[..., 0, :], b[..., -1, :] - b[..., 0, :])
    step = cos(np.diff(a, axis=-2), np.diff(b, axis=-2))
    return {
        "path_cos_mean": float(whole.mean()),
        "path_cos_min": float(whole.min()),
        "step_cos_mean": float(step.mean()),
        "step_cos_min": float(step.min()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dense-n", type=int, default=4)
    args = ap.parse_args(argv)
    gen, vary, fix, d = problem("conv", 512, jnp.float32)
    z0 = jax.random.normal(jax.random.key(0), (args.n, d), jnp.float32)
    task = reds_jax.Problem(gen, vary, [fix])
    kw = dict(steps=args.steps, step=reds_jax.FixedStep(0.25))
    rows, load0 = [], os.getloadavg()[0]

    feats = (vary, fix)
    sizes = [int(np.prod(jax.eval_shape(lambda v, f=f: f(gen(v)), z0[0]).shape)) for f in feats]
    batch_fn = jax.jit(jax.vmap(lambda z: jnp.concatenate([jnp.ravel(f(gen(z))) for f in feats])))
    jax.block_until_ready(batch_fn(jnp.zeros((10, d), jnp.float32)))
    t0 = cpu_s()
    reference_traverse(batch_fn, sizes, 1, np.asarray(z0[0]), k=1, steps=args.steps, step_size=0.25)
    ref_per_traj = (cpu_s() - t0) / 2
    print(f"reference: {ref_per_traj:.2f} s CPU per trajectory", file=sys.stderr, flush=True)

    dense_fn = jax.jit(lambda z: reds_jax.traverse(task, z, solver=reds_jax.Dense(), **kw).latents)
    dense, dense_s = timed(dense_fn, z0[: args.dense_n])
    dense = np.asarray(dense)
    rows.append({"rule": "dense", "n": args.dense_n, "cpu_s": dense_s})
    print(f"dense: {dense_s:.2f} s CPU", file=sys.stderr, flush=True)
    for name, opts in RULES.items():
        solver = reds_jax.MatrixFree(**opts)
        fn = jax.jit(lambda z, s=solver: reds_jax.traverse(task, z, solver=s, **kw))
        tr, s = timed(fn, z0)
        lat = np.asarray(tr.latents)
        iters = np.asarray(tr.diagnostics.iterations)
        row = {
            "rule": name,
            "n": args.n,
            "cpu_s": s,
            "x_reference": args.n * 2 * ref_per_traj / s,
            "iterations_per_path": float(iters.mean()),
            **agreement(lat[: args.dense_n], dense),
        }
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    result = {
        "problem": f"conv d=512, N={args.n}, k=1, T={args.steps}, step 0.25, float32",
        "reference_cpu_s_per_trajectory": ref_per_traj,
        "load_before": load0,
        "load_after": os.getloadavg()[0],
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mf512.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Matrix-free stopping rules at d = 512 (benchmarks/bench_mf512.py)",
        "",
        f"{result['problem']}; CPU seconds of one warm call (user + sys); reference loop "
        f"{ref_per_traj:.2f} s CPU per trajectory (one seed); |cos| against dense on the first "
        f"{args.dense_n} start latents ({2 * args.dense_n} paths); load {load0:.1f} -> "
        f"{result['load_after']:.1f}.",
        "",
        "| rule | CPU s | x reference | iterations per path | path cos mean / min | "
        "step cos mean / min |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows[1:]:
        lines.append(
            f"| {r['rule']} | {r['cpu_s']:.2f} | {r['x_reference']:.1f} | "
            f"{r['iterations_per_path']:.1f} | {r['path_cos_mean']:.4f} / {r['path_cos_min']:.4f} "
            f"| {r['step_cos_mean']:.4f} / {r['step_cos_min']:.4f} |"
        )
    lines.append(f"| dense ({args.dense_n} latents) | {rows[0]['cpu_s']:.2f} | | | | |")
    (args.out / "mf512.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
