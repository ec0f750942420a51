"""Living-room experiments (issue 4 item 6): image grids and ground-truth factor drift.

Experiments, each with REDs ``local`` and the ``maxc`` baseline (top direction of the varied Gram
alone, ``linear`` path), same start latents, steps and step size:

* ``sofa_pixels``: fix the sofa's pixels (``region(mask_fn=sofa_mask())``: the trained segmenter's
  soft mask, wherever the sofa is), vary every other pixel (``region(mask_fn=..., invert=True)``).
* ``sofa_position``: fix the sofa's appearance (trained regressor's ``sofa_r/g/b``, ``sofa_width``,
  ``sofa_height``), vary its position (``sofa_x``).
* ``low_freq``: fix high frequencies (``highpass(2)``), vary low ones (``lowpass(4)``).

Generators: the rooms oracle (exact ground-truth factors) and the trained rooms GAN (factors
estimated by the independent judge network, never used as a feature). The table reports, after the
last step and averaged over start latents and both path signs, how far the ground-truth factors moved
(unit-cube units): the sofa's appearance group (r, g, b, width, height), its position (x), and the
rest of the room.

Usage: ``python benchmarks/rooms_experiments.py --out benchmarks/results/rooms [--starts 2]``.
Writes ``MODEL_EXPERIMENT.png`` grids and ``rooms_experiments.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import reds_jax
from reds_jax import features, imageio
from reds_jax.evaluation.judge import rooms_judge
from reds_jax.generators import FACTOR_NAMES, factors_to_unit, rooms_gan, rooms_oracle

APPEARANCE = ("sofa_r", "sofa_g", "sofa_b", "sofa_width", "sofa_height")
GROUPS = {
    "sofa appearance": [FACTOR_NAMES.index(n) for n in APPEARANCE],
    "sofa position": [FACTOR_NAMES.index("sofa_x")],
    "rest of room": [
        i for i, n in enumerate(FACTOR_NAMES) if n not in APPEARANCE and n != "sofa_x"
    ],
}


def experiments() -> dict:
    """name -> (description, vary, fix)."""
    mask = features.sofa_mask()
    return {
        "sofa_pixels": (
            "fix the sofa's pixels (segmenter mask), vary the rest",
            features.region(mask_fn=mask, invert=True),
            [features.region(mask_fn=mask)],
        ),
        "sofa_position": (
            "fix sofa colour and size (regressor), vary sofa position",
            features.room_factors(names=("sofa_x",)),
            [features.room_factors(names=APPEARANCE)],
        ),
        "low_freq": (
            "fix high frequencies (highpass 2), vary low ones (lowpass 4)",
            features.lowpass(4.0),
            [features.highpass(2.0)],
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rooms"))
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--only", nargs="*", help="experiments (default: all)")
    args = parser.parse_args()

    oracle, gan, judge = rooms_oracle(), rooms_gan(), rooms_judge()
    models = {
        "oracle": (
            oracle.generator,
            oracle.latent_dim,
            lambda z: factors_to_unit(oracle.factors(z)),
            0.3,
        ),
        "gan": (gan.generator, gan.latent_dim, lambda z: judge.predict(gan.generator(z)), 0.5),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    specs = experiments()
    for model_name, (gen, d, truth, step_size) in models.items():
        z0 = jax.random.normal(jax.random.key(11), (args.starts, d), jnp.float32)
        render = jax.jit(jax.vmap(jax.vmap(jax.vmap(gen))))
        truth_all = jax.jit(jax.vmap(jax.vmap(jax.vmap(truth))))
        for name in args.only or specs:
            description, vary, fix = specs[name]
            rows, summary = [], {}
            for method, path in (("reds", "local"), ("maxc", "linear")):
                t = time.perf_counter()
                problem = reds_jax.Problem(gen, vary, fix, method=method)
                step = reds_jax.FixedStep(step_size)
                tr = reds_jax.traverse(problem, z0, path=path, steps=args.steps, step=step)
                f = np.asarray(truth_all(tr.latents))  # [N, 2, T+1, F]
                moved = np.abs(f[:, :, -1] - f[:, :, 0])  # [N, 2, F]
                summary[f"{method}_{path}"] = {
                    "seconds": time.perf_counter() - t,
                    "vary_distance": float(np.mean(np.asarray(tr.vary_distances[0])[..., -1])),
                    "fix_distance": float(np.mean(np.asarray(tr.fix_distances[0])[..., -1])),
                    "factor_change": {
                        g: float(moved[..., idx].mean()) for g, idx in GROUPS.items()
                    },
                }
                rows.append(np.asarray(render(tr.latents)))  # [N, 2, T+1, H, W, 3]
                print(model_name, name, method, json.dumps(summary[f"{method}_{path}"]), flush=True)
            grid = np.concatenate(
                [np.concatenate([r[n] for r in rows]) for n in range(args.starts)]
            )  # rows: per start, REDs +v, -v, maxc +v, -v
            png = args.out / f"{model_name}_{name}.png"
            from PIL import Image

            Image.fromarray(imageio.grid(grid, scale=1)).quantize(256).save(png, optimize=True)
            results.setdefault(model_name, {})[name] = {
                "experiment": description,
                "step_size": step_size,
                "steps": args.steps,
                "starts": args.starts,
                "methods": summary,
                "grid": png.name,
            }
    (args.out / "rooms_experiments.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Living-room experiments",
        "",
        f"{args.starts} start latents (`normal(key(11))`), k = 1 (both signs), {args.steps} steps; "
        "step 0.3 (oracle, d = 16) and 0.5 (GAN, d = 64) for both methods. Ground-truth factor change "
        "after the last step, unit-cube units, mean over starts and signs (oracle: exact factors; "
        "GAN: the independent judge's estimates). Made by `python benchmarks/rooms_experiments.py`.",
        "",
        "| generator | experiment | method | varied dist | fixed dist | sofa appearance | sofa position | rest of room |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model_name, exps in results.items():
        for r in exps.values():
            for m, s in r["methods"].items():
                fc = s["factor_change"]
                lines.append(
                    f"| {model_name} | {r['experiment']} | {m} | {s['vary_distance']:.3f} | "
                    f"{s['fix_distance']:.3f} | {fc['sofa appearance']:.3f} | "
                    f"{fc['sofa position']:.3f} | {fc['rest of room']:.3f} |"
                )
    lines += [
        "",
        "Grids (rows per start latent: REDs local +v, −v; maxc +v, −v; columns: steps):",
        "",
    ]
    for model_name, exps in results.items():
        for name, r in exps.items():
            lines.append(f"* {model_name}, {r['experiment']}: ![{name}]({r['grid']})")
    (args.out / "rooms_experiments.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
