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

Usage: ``python benchmarks/faces_experiments.py --out benchmarks/results/faces [--steps 5]``.
Writes ``hair.png`` and ``faces_experiments.json``. About 5 minutes on 2 (shared) CPU cores.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/faces"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-size", type=float, default=0.6, help="maxc step size")
    parser.add_argument(
        "--reds-step-size", type=float, default=1.5, help="REDs step size (its hair changes slower)"
    )
    args = parser.parse_args()

    gan = face_dcgan()
    z0 = jax.random.normal(jax.random.key(7), (8, gan.latent_dim))[jnp.asarray(START)]
    hair = features.region(HAIR_BOX)
    identity, landmarks = features.face_identity(), features.face_landmarks()
    render = jax.jit(jax.vmap(jax.vmap(jax.vmap(gan.generator))))

    runs, rows, summary = {}, [], {}
    for name, method, path, step_size in (
        ("reds_local", "reds", "local", args.reds_step_size),
        ("reds_linear", "reds", "linear", args.reds_step_size),
        ("maxc_linear", "maxc", "linear", args.step_size),
    ):
        t = time.perf_counter()
        tr = reds_jax.traverse(
            gan.generator,
            z0,
            vary=hair,
            fix=[identity, landmarks],
            method=method,
            path=path,
            k=1,
            steps=args.steps,
            step_size=step_size,
        )
        jax.block_until_ready(tr.latents)
        runs[name] = render(tr.latents)  # [N, 2, T+1, 64, 64, 3]
        summary[name] = {
            "method": method,
            "path": path,
            "step_size": step_size,
            "seconds": time.perf_counter() - t,
            "final_distance": {
                "hair_pixels": _final(tr.vary_distances[0]),
                "identity": _final(tr.fix_distances[0]),
                "landmarks": _final(tr.fix_distances[1]),
            },
            "distance_per_step": {
                "hair_pixels": np.asarray(tr.vary_distances[0]).mean((0, 1)).tolist(),
                "identity": np.asarray(tr.fix_distances[0]).mean((0, 1)).tolist(),
                "landmarks": np.asarray(tr.fix_distances[1]).mean((0, 1)).tolist(),
            },
        }
        print(name, json.dumps(summary[name]["final_distance"]), flush=True)
    for n in range(len(START)):
        for name in runs:
            rows.extend(np.asarray(runs[name][n]))  # +v, -v
    grid = _outline(np.stack(rows), HAIR_BOX)
    args.out.mkdir(parents=True, exist_ok=True)
    _save_small_png(imageio.grid(grid), args.out / "hair.png")
    result = {
        "experiment": "hair: fix identity + landmarks, vary the top-of-head box",
        "box": HAIR_BOX,
        "start_latents": "jax.random.normal(jax.random.key(7), (8, 100))[[1, 4]]",
        "steps": args.steps,
        "rows": "per start latent: REDs local +v, -v; REDs linear +v, -v; maxc +v, -v; "
        "columns: steps 0..T",
        "methods": summary,
    }
    (args.out / "faces_experiments.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
