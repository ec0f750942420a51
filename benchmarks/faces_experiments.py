"""Face experiments on the face DCGAN (issue 3 item 6): image grids and fixed-feature drift.

(a) ``hair``: fix identity (face-api descriptor) + 68 landmarks, vary the pixels of the
    top-of-head box ``(top 0, left 0.1, height 0.25, width 0.8)``. REDs (``local`` and ``linear``
    paths) against the ``maxc`` baseline (top direction of the hair Gram alone, ``linear`` paths):
    same start latents and number of steps; REDs takes larger steps (1.5 vs 0.6 in latent units,
    ``‖z‖ ≈ 10``) because per unit step its hair pixels change less than along maxc's direction.

Every grid row is one path (per start latent: REDs local ``+v, −v``, REDs linear ``+v, −v``, maxc
``+v, −v``), columns are steps 0..T; the yellow box is the varied region (the PNG is stored with a
256-colour palette to stay small). The JSON records, per run, the distances of every feature from
the start at every step, ``‖f(G(z_t)) − f(G(z_0))‖`` averaged over start latents and paths
(identity descriptor, landmarks in normalised coordinates, hair-box pixels in [0, 1]).

(b) ``low_freq`` / ``high_freq``: fix high frequencies and vary low ones (σ = 2), and the reverse.
(c) ``background``: fix the face box's pixels, vary everything outside it.
(d) ``age``: fix identity, vary the face-api age estimate.
(b)–(d) use one start latent and the same step size for REDs and maxc, so the table compares the
varied change and the fixed drift at equal step lengths.

Usage: ``python benchmarks/faces_experiments.py --out benchmarks/results/faces [--only hair age]``.
Writes ``NAME.png`` per experiment and ``faces_experiments.json`` (merged across runs).
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
from reds_jax.generators import face_dcgan

HAIR_BOX = (0.0, 0.1, 0.25, 0.8)  # top, left, height, width (relative)
FACE_BOX = (0.2, 0.2, 0.7, 0.6)  # eyes to chin on the DigiFace crops
START = (1, 4)  # indices of jax.random.normal(key(7), (8, 100)): two clear frontal faces


def _outline(images: np.ndarray, box) -> np.ndarray:
    """Draws the box (relative ``top, left, height, width``) in yellow on ``[..., H, W, 3]``."""
    x = np.array(images)
    h, w = x.shape[-3], x.shape[-2]
    t, lft = round(box[0] * h), round(box[1] * w)
    b, r = min(h - 1, t + round(box[2] * h) - 1), min(w - 1, lft + round(box[3] * w) - 1)
    yellow = np.array([1.0, 0.85, 0.0], x.dtype)
    x[..., t, lft : r + 1, :] = yellow
    x[..., b, lft : r + 1, :] = yellow
    x[..., t : b + 1, lft, :] = yellow
    x[..., t : b + 1, r, :] = yellow
    return x


def _save_small_png(grid: np.ndarray, path: Path) -> None:
    """Saves a uint8 ``[H, W, 3]`` grid as a 256-colour palette PNG (about 4x smaller)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).quantize(256).save(path, format="PNG", optimize=True)


def _final(distances) -> float:
    """Mean over start latents and paths of the last-step distance."""
    return float(np.mean(np.asarray(distances)[..., -1]))


def _experiments(args) -> dict:
    """name -> (description, vary feature, fixed features, box to outline, runs, start indices)."""
    identity, landmarks = features.face_identity(), features.face_landmarks()
    reds_runs = lambda size: (  # noqa: E731 - same step size for REDs and maxc
        ("reds_local", "reds", "local", size),
        ("reds_linear", "reds", "linear", size),
        ("maxc_linear", "maxc", "linear", size),
    )
    return {
        "hair": (
            "fix identity + landmarks, vary the top-of-head box",
            features.region(HAIR_BOX),
            [identity, landmarks],
            HAIR_BOX,
            (
                ("reds_local", "reds", "local", args.reds_step_size),
                ("reds_linear", "reds", "linear", args.reds_step_size),
                ("maxc_linear", "maxc", "linear", args.step_size),
            ),
            START,
        ),
        "low_freq": (
            "fix high frequencies (highpass sigma=2), vary low ones (lowpass sigma=2)",
            features.lowpass(2.0),
            [features.highpass(2.0)],
            None,
            reds_runs(1.0),
            START[:1],
        ),
        "high_freq": (
            "fix low frequencies (lowpass sigma=2), vary high ones (highpass sigma=2)",
            features.highpass(2.0),
            [features.lowpass(2.0)],
            None,
            reds_runs(1.0),
            START[:1],
        ),
        "background": (
            "fix the face box pixels, vary everything outside it",
            features.region(FACE_BOX, invert=True),
            [features.region(FACE_BOX)],
            FACE_BOX,
            reds_runs(1.0),
            START[:1],
        ),
        "age": (
            "fix identity, vary age (face-api age regression)",
            features.age_gender("age"),
            [identity],
            None,
            reds_runs(1.0),
            START[:1],
        ),
    }


def run_experiment(name, spec, gan, render, steps) -> tuple[dict, np.ndarray]:
    """Runs every (method, path) of one experiment; returns its summary and grid rows."""
    description, vary, fix, box, runs_spec, start = spec
    z0 = jax.random.normal(jax.random.key(7), (8, gan.latent_dim))[jnp.asarray(start)]
    runs, summary = {}, {}
    for run_name, method, path, step_size in runs_spec:
        t = time.perf_counter()
        problem = reds_jax.Problem(gan.generator, vary, fix, method=method)
        step = reds_jax.FixedStep(step_size)
        tr = reds_jax.traverse(problem, z0, path=path, steps=steps, step=step)
        jax.block_until_ready(tr.latents)
        runs[run_name] = render(tr.latents)  # [N, 2, T+1, 64, 64, 3]
        dists = {
            "vary": tr.vary_distances[0],
            **{f"fix{i}": d for i, d in enumerate(tr.fix_distances)},
        }
        summary[run_name] = {
            "method": method,
            "path": path,
            "step_size": step_size,
            "seconds": time.perf_counter() - t,
            "final_distance": {k: _final(v) for k, v in dists.items()},
            "distance_per_step": {k: np.asarray(v).mean((0, 1)).tolist() for k, v in dists.items()},
        }
        print(name, run_name, json.dumps(summary[run_name]["final_distance"]), flush=True)
    rows = [row for n in range(len(start)) for r in runs for row in np.asarray(runs[r][n])]
    grid = np.stack(rows)
    if box is not None:
        grid = _outline(grid, box)
    return {
        "experiment": description,
        "box": box,
        "start_indices": list(start),
        "methods": summary,
    }, grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/faces"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-size", type=float, default=0.6, help="maxc step size (hair)")
    parser.add_argument(
        "--reds-step-size", type=float, default=1.5, help="REDs step size (hair; changes slower)"
    )
    parser.add_argument("--only", nargs="*", help="experiments to run (default: all)")
    args = parser.parse_args()

    gan = face_dcgan()
    render = jax.jit(jax.vmap(jax.vmap(jax.vmap(gan.generator))))
    specs = _experiments(args)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "faces_experiments.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if "experiments" not in results:  # the first version of this file held only "hair"
        results = {"experiments": {"hair": results} if "methods" in results else {}}
    for name in args.only or specs:
        summary, grid = run_experiment(name, specs[name], gan, render, args.steps)
        summary["steps"] = args.steps
        summary["rows"] = "per start latent: REDs local +v, -v; REDs linear +v, -v; maxc +v, -v"
        summary["start_latents"] = "jax.random.normal(jax.random.key(7), (8, 100))[start_indices]"
        results["experiments"][name] = summary
        _save_small_png(imageio.grid(grid), args.out / f"{name}.png")
        json_path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
