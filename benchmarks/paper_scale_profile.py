"""The cost profile behind the "≥ 50× the reference loop" row of :mod:`paper_scale`, in W.

    python benchmarks/paper_scale_profile.py --scale cpu-small

Per experiment, on the same jitted generator + features at the first start latent, one process,
medians of ``--repeats`` calls after compiling:

* ``pass_s``: one generator + features pass, as the reference loop runs it (a vmapped batch of
  10, divided by 10); the reference loop's step is ``2d + 2`` such passes.
* ``linearize_s``: ``jax.linearize`` of generator + features at the latent (what each tracking
  step does once before its iterations).
* ``iteration_s``: the products of one LOBPCG iteration of the default ``MatrixFree`` (block
  ``k + guard = 2``, ``precond="both"``: 4 JVPs of the residuals and the preconditioned
  residuals, 2 VJPs of the next residuals), from the slope of an ``n``-iteration ``fori_loop``
  over the same linearization (n = 1 and ``--iters``), so the compile and the linearization
  cancel.
* ``track_s``: one tracking solve of the default ``MatrixFree`` alone (``solver.track``, as the
  path runs it: its own linearization, LOBPCG until the stopping rule, true quotients) at the
  first point of the path (one step of ``--step-size`` from the start along its direction),
  warm-started from the start block; ``track_iterations`` are its LOBPCG iterations.
  ``track_pair_s``: the two tracking solves of the ``±`` paths of one latent, vmapped as the
  path runs them (the path row's step is this pair's time / 2 plus the path's own work).

From these: ``iterations_for_50x`` = how many such iterations one step may spend to be 50× the
reference step. Writes ``benchmarks/results/paper_scale_profile.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import jax
import jax.numpy as jnp
from paper_problems import paper_problem, start_latents
from paper_scale import _compile, _timed

from reds_jax.core.matrix_free import linearize


def profile(scale: str, experiment: str, iters: int, repeats: int, step_size: float) -> dict:
    gen, vary, fix, d, g = paper_problem(scale, experiment, "w")
    feats = (*vary, *fix)
    z = jnp.asarray(start_latents(g, 1, seed=0)[0])

    def flat(v):
        return jnp.concatenate([jnp.ravel(f(gen(v))) for f in feats])

    batch, c_batch = _compile(jax.vmap(flat), jnp.stack([z] * 10))
    _, t_batch = _timed(batch, jnp.stack([z] * 10), repeats=repeats)

    def lin_only(v):
        jv, _ = linearize(gen, feats, v)
        return jv(v)

    lin, _ = _compile(lin_only, z)
    _, t_lin = _timed(lin, z, repeats=repeats)

    x0 = jax.random.normal(jax.random.key(1), (2, d), z.dtype)

    def products(v, x, n):
        jv, jt = linearize(gen, feats, v)

        def body(_, x):  # the search block [r, T r] (4 JVPs), the next residuals (2 VJPs)
            js = jax.vmap(jv)(jnp.concatenate([x, jnp.roll(x, 1, axis=1)]))
            r = jax.vmap(jt)(js[:2] + js[2:])
            return r / jnp.linalg.norm(r, axis=1, keepdims=True)

        return jax.lax.fori_loop(0, n, body, x)

    import reds_jax

    problem, solver = reds_jax.Problem(gen, vary, fix).at(z), reds_jax.MatrixFree()
    key = jax.random.key(0)
    start = jax.jit(lambda v: solver.start(problem, v, key))(z)
    pair = jnp.stack([z + step_size * start.vectors[0], z - step_size * start.vectors[0]])
    track = lambda v, s: solver.track(problem, start.context, v, s, key)  # noqa: E731
    one, _ = _compile(track, pair[0], start.state)
    step, t_track = _timed(one, pair[0], start.state, repeats=repeats)
    states = jnp.stack([start.state] * 2)
    both, _ = _compile(jax.vmap(track), pair, states)
    _, t_pair = _timed(both, pair, states, repeats=repeats)

    times = {}
    for n in (1, iters):
        fn, _ = _compile(lambda v, x, n=n: products(v, x, n), z, x0)
        _, times[n] = _timed(fn, z, x0, repeats=repeats)
    t_iter = (times[iters] - times[1]) / (iters - 1)
    pass_s = t_batch / 10
    reference_s = (2 * d + 2) * pass_s
    return {
        "experiment": experiment,
        "d": d,
        "pass_s": pass_s,
        "pass_compile_s": c_batch,
        "reference_step_s_predicted": reference_s,
        "linearize_s": t_lin,
        "loop_s": {str(n): t for n, t in times.items()},
        "iteration_s": t_iter,
        "iteration_passes": t_iter / pass_s,
        "track_s": t_track,
        "track_iterations": int(step.diagnostics.iterations),
        "track_pair_s": t_pair,
        "iterations_for_50x": (reference_s / 50 - t_lin) / t_iter,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="cpu-small")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--step-size", type=float, default=0.2, help="as paper_scale's paths")
    ap.add_argument("--out", default="benchmarks/results/paper_scale_profile")
    ap.add_argument("--machine", default=None, help="how the report names the machine")
    a = ap.parse_args(argv)
    rows = []
    for exp in ("hair", "frequency"):
        rows.append(profile(a.scale, exp, a.iters, a.repeats, a.step_size))
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": a.machine or f"{platform.machine()} {jax.default_backend()}",
        "jax": jax.__version__,
        "scale": a.scale,
        "rows": rows,
    }
    with open(a.out + ".json", "w") as fh:
        json.dump(report, fh, indent=1)
    lines = [
        f"# Cost profile of a matrix-free step in W — {report['machine']}",
        "",
        f"Scale `{a.scale}`, jax {jax.__version__}, float32, first start latent, medians of "
        f"{a.repeats} calls after compiling. Command: `{report['command']}`. One pass = generator "
        "+ features, batched by 10 as the reference loop runs it; one iteration = the products of "
        "one default LOBPCG iteration (4 JVPs + 2 VJPs) on one linearization; a tracking solve = "
        "`MatrixFree().track` alone at the path's first point, warm-started from the start block "
        "(alone, and the ± pair of one latent vmapped as the path runs it).",
        "",
        "| experiment | d | pass s | reference step s (2d+2 passes) | linearize s | iteration s "
        "| iteration / pass | iterations a 50× step may spend | tracking solve s (iterations) "
        "| ± pair vmapped s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['experiment']} | {r['d']} | {r['pass_s']:.4f} | "
            f"{r['reference_step_s_predicted']:.1f} | {r['linearize_s']:.3f} | "
            f"{r['iteration_s']:.3f} | {r['iteration_passes']:.1f} | "
            f"{max(r['iterations_for_50x'], 0.0):.1f} | {r['track_s']:.2f} "
            f"({r['track_iterations']}) | {r['track_pair_s']:.2f} |"
        )
    with open(a.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
