"""The living-room flow model (issue 39): sample quality, sampler cost, matrix-free vs dense.

``python benchmarks/rooms_flow_experiments.py quality --out benchmarks/results/rooms_flow``
  judge-based quality (:func:`reds_jax.train.quality.gan_quality`) of the shipped flow model for a
  few samplers, next to the resolution floor (the judge on 32-px renders upsampled to 64 px vs
  64-px renders: what the model could reach at best, sampling at 32 px); sample grids.

``python benchmarks/rooms_flow_experiments.py agreement --out benchmarks/results/rooms_flow``
  the ``flow_frequency`` problem (fix ``highpass:2`` / vary ``lowpass:4``) at a few start latents:
  the matrix-free solver (the model's default options) against the dense reference (the exact
  ``[3072, 3072]`` Grams from ``jacfwd``), |cos| of the top directions and CPU seconds; and the
  cost of one ``local`` tracking step in velocity-model passes (CPU seconds of the step over CPU
  seconds of one velocity pass).

Writes ``quality.json/.md`` and ``agreement.json/.md`` into ``--out``. CPU seconds are user+sys of
this process (the machine is shared; wall time is not reported).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax import Dense, FixedStep, MatrixFree, Problem, directions, features, imageio, traverse
from reds_jax.evaluation.judge import rooms_judge
from reds_jax.generators import rooms_flow, sample_dataset
from reds_jax.generators.rooms_flow import MATRIX_FREE_OPTIONS
from reds_jax.train.quality import _judge_batches, gan_quality, to_markdown, wasserstein_1d


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _grid(images: np.ndarray, n: int = 8) -> np.ndarray:
    s = images.shape[1]
    images = np.clip(images[: n * n], 0.0, 1.0)
    return images.reshape(n, n, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(n * s, n * s, 3)


def quality(out: pathlib.Path, n: int, samplers: list[tuple[int, str]]) -> dict:
    judge = rooms_judge()
    key = jax.random.PRNGKey(2024)

    def up(images):  # 32-px renders shown at 64 px, as the flow model's samples are
        return jax.vmap(lambda im: jax.image.resize(im, (64, 64, 3), method="linear"))(images)

    def renders(offset, size):
        def fn(i, m):
            images = sample_dataset(jax.random.fold_in(key, offset + i), m, size=size)[0]
            images = images.astype(jnp.float32)
            return up(images) if size == 32 else images

        return fn

    est64 = _judge_batches(judge.predict, renders(10**6, 64), n)
    est32 = _judge_batches(judge.predict, renders(3 * 10**6, 32), n)
    res_floor = wasserstein_1d(est32, est64)
    result = {"n": n, "resolution_floor_mean_w1": float(res_floor.mean()), "samplers": {}}
    md = [
        "Resolution floor (judge on 32-px renders upsampled to 64 px vs 64-px renders): mean W1 "
        f"**{res_floor.mean():.3f}**.",
        "",
    ]
    z = jax.random.normal(jax.random.PRNGKey(1234), (64, 3072), jnp.float32)
    for steps, method in samplers:
        fm = rooms_flow(steps=steps, method=method)
        c0 = cpu()
        q = gan_quality(fm.generator, judge.predict, fm.latent_dim, n=n)
        q["cpu_s"] = cpu() - c0
        q["passes"] = fm.passes
        name = f"{steps}_{method}"
        result["samplers"][name] = q
        md += [
            f"### Sampler: {steps} {method} step(s) ({fm.passes} velocity passes per image)",
            "",
            to_markdown(q).replace("GAN", "flow"),
            "",
        ]
        small = rooms_flow(steps=steps, method=method, size_out=32)
        imageio.save_png(
            _grid(np.asarray(jax.vmap(small.generator)(z))), out / f"samples_{name}.png"
        )
    data = sample_dataset(jax.random.PRNGKey(1234), 64, size=32)[0]
    imageio.save_png(_grid(np.asarray(data)), out / "data_samples_32px.png")
    (out / "quality.json").write_text(json.dumps(result, indent=1))
    (out / "quality.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


def agreement(out: pathlib.Path, n_latents: int, k: int) -> dict:
    fm = rooms_flow()
    vary, fix = features.lowpass(4.0), features.highpass(2.0)
    zs = jax.random.normal(jax.random.PRNGKey(7), (n_latents, fm.latent_dim), jnp.float32)
    problem = Problem(fm.generator, vary, [fix], method="reds", k=k)
    key = jax.random.PRNGKey(0)
    mf_solver = MatrixFree(**MATRIX_FREE_OPTIONS)
    dense = jax.jit(lambda z: directions(problem, z, solver=Dense(), key=key))
    mf = jax.jit(lambda z: directions(problem, z, solver=mf_solver, key=key))
    rows = []
    for i, z in enumerate(zs):
        times = {}
        got = {}
        for name, fn in (("dense", dense), ("matrix_free", mf)):
            jax.block_until_ready(fn(z))  # compile (first latent) / warm
            c0 = cpu()
            got[name] = jax.block_until_ready(fn(z))
            times[name] = cpu() - c0
        cos = np.abs(
            np.sum(np.asarray(got["dense"].vectors) * np.asarray(got["matrix_free"].vectors), -1)
        )
        rows.append({"latent": i, "abs_cos": cos.tolist(), "cpu_s": times})
        print(rows[-1], flush=True)
    # cost of a tracking step: a local path of T steps from one latent, minus the start solve
    velocity = jax.jit(fm.velocity)
    x = zs[0].reshape(32, 32, 3)
    t = jnp.asarray(0.5, jnp.float32)
    jax.block_until_ready(velocity(fm.params, x, t))
    c0 = cpu()
    for _ in range(20):
        jax.block_until_ready(velocity(fm.params, x, t))
    pass_s = (cpu() - c0) / 20

    def walk(steps):
        return jax.jit(
            lambda z: traverse(
                problem,
                z,
                solver=mf_solver,
                path="local",
                steps=steps,
                step=FixedStep(8.0),
                key=key,
                distances=False,
            )
        )

    cost = {}
    for steps in (1, 5):
        fn = walk(steps)
        res = jax.block_until_ready(fn(zs[0]))
        c0 = cpu()
        res = jax.block_until_ready(fn(zs[0]))
        cost[steps] = (cpu() - c0, np.asarray(res.diagnostics.iterations).tolist())
    step_s = (cost[5][0] - cost[1][0]) / 4
    result = {
        "k": k,
        "options": MATRIX_FREE_OPTIONS,
        "sampler": {"steps": fm.steps, "method": fm.method, "passes": fm.passes},
        "rows": rows,
        "velocity_pass_cpu_s": pass_s,
        "tracking_step_cpu_s": step_s,
        "tracking_step_in_passes": step_s / pass_s / (2 * k),
        "iterations": {str(s): c[1] for s, c in cost.items()},
    }
    (out / "agreement.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["quality", "agreement"])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--latents", type=int, default=3)
    p.add_argument("--k", type=int, default=2)
    a = p.parse_args(argv)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.what == "quality":
        quality(out, a.n, [(2, "euler"), (2, "heun"), (4, "heun")])
    else:
        agreement(out, a.latents, a.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
