"""Sample quality of the living-room GAN, measured with the independent judge.

``python -m reds_jax.train.quality --out DIR [--weights FILE] [--n 2000]`` writes
``DIR/quality.json`` and prints a markdown summary:

* per factor, the 1-D Wasserstein distance (in unit-cube coordinates) between the judge's estimates
  on GAN samples and on data renders, next to the same distance between two independent data sets
  (the noise floor of the measurement), plus mean and standard-deviation differences;
* mode coverage over a ``sofa_x`` (4 bins) x sofa colour (``sofa_r/g/b`` above or below the middle
  of their range: 8 bins) grid of 32 cells: the fraction of data cells hit by at least one sample,
  the fraction receiving at least a quarter of the data's mass, and the total-variation distance
  between the two cell histograms.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax._io import atomic_write
from reds_jax.generators.rooms import FACTOR_NAMES, factors_to_unit, sample_dataset

__all__ = ["coverage", "gan_quality", "wasserstein_1d"]

_SOFA_X, _SOFA_RGB = FACTOR_NAMES.index("sofa_x"), [FACTOR_NAMES.index(f"sofa_{c}") for c in "rgb"]


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W1 per column between equal-size samples ``a, b [N, F]`` (mean gap of sorted values)."""
    return np.mean(np.abs(np.sort(a, axis=0) - np.sort(b, axis=0)), axis=0)


def _cells(unit: np.ndarray, x_bins: int = 4) -> np.ndarray:
    x = np.clip((unit[:, _SOFA_X] * x_bins).astype(int), 0, x_bins - 1)
    rgb = (unit[:, _SOFA_RGB] > 0.5).astype(int) @ np.array([1, 2, 4])
    return x * 8 + rgb


def coverage(samples: np.ndarray, data: np.ndarray) -> dict[str, float]:
    """Mode coverage of ``samples`` vs ``data`` (unit-cube factor estimates ``[N, F]``)."""
    hs = np.bincount(_cells(samples), minlength=32) / len(samples)
    hd = np.bincount(_cells(data), minlength=32) / len(data)
    occupied = hd > 0
    return {
        "cells": 32,
        "data_cells": int(occupied.sum()),
        "hit": float(np.mean(hs[occupied] > 0)),
        "covered_quarter_mass": float(np.mean(hs[occupied] >= 0.25 * hd[occupied])),
        "tv_distance": float(0.5 * np.abs(hs - hd).sum()),
    }


def _judge_batches(predict, images_fn, n: int, chunk: int = 200) -> np.ndarray:
    batched = jax.jit(jax.vmap(predict))
    out = [np.asarray(batched(images_fn(i, min(chunk, n - i)))) for i in range(0, n, chunk)]
    return np.concatenate(out)


def gan_quality(generator, predict, latent_dim: int, n: int = 2000, seed: int = 2024) -> dict:
    """Judge-based quality of ``generator`` (``z [d] -> [64, 64, 3]``) against data renders.

    Args:
        generator: pure single-latent generator.
        predict: judge ``image [64, 64, 3] -> [F]`` unit-cube factors.
        latent_dim: ``d``.
        n: samples per set.
        seed: seed of the latents and of the two data sets.

    Returns:
        dict with ``per_factor`` (``w1``, ``w1_data_floor``, ``mean_diff``, ``std_gan``,
        ``std_data``), ``coverage`` and ``coverage_data_floor``, and ``judge_r2_data``.
    """
    key = jax.random.PRNGKey(seed)
    gen = jax.jit(jax.vmap(generator))

    def gan_images(i, m):
        z = jax.random.normal(jax.random.fold_in(key, i), (m, latent_dim), jnp.float32)
        return gen(z)

    def data_images(offset):
        def fn(i, m):
            return sample_dataset(jax.random.fold_in(key, offset + i), m)[0].astype(jnp.float32)

        return fn

    est_gan = _judge_batches(predict, gan_images, n)
    est_data = _judge_batches(predict, data_images(10**6), n)
    est_ref = _judge_batches(predict, data_images(2 * 10**6), n)
    truth = np.concatenate(
        [
            np.asarray(
                factors_to_unit(
                    sample_dataset(jax.random.fold_in(key, 10**6 + i), min(200, n - i))[1]
                )
            )
            for i in range(0, n, 200)
        ]
    )
    from reds_jax.train.nets import r2_scores

    w1, floor = wasserstein_1d(est_gan, est_data), wasserstein_1d(est_ref, est_data)
    per = {
        name: {
            "w1": float(w1[j]),
            "w1_data_floor": float(floor[j]),
            "mean_diff": float(est_gan[:, j].mean() - est_data[:, j].mean()),
            "std_gan": float(est_gan[:, j].std()),
            "std_data": float(est_data[:, j].std()),
        }
        for j, name in enumerate(FACTOR_NAMES)
    }
    r2 = r2_scores(est_data, truth)
    return {
        "n": n,
        "per_factor": per,
        "mean_w1": float(w1.mean()),
        "mean_w1_data_floor": float(floor.mean()),
        "coverage": coverage(est_gan, est_data),
        "coverage_data_floor": coverage(est_ref, est_data),
        "judge_r2_data": {name: float(r) for name, r in zip(FACTOR_NAMES, r2, strict=True)},
    }


def to_markdown(q: dict) -> str:
    """Markdown tables of :func:`gan_quality`'s result."""
    lines = [
        "| factor | W1 GAN vs data | W1 data vs data (floor) | mean diff | std GAN | std data |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in q["per_factor"].items():
        lines.append(
            f"| {name} | {r['w1']:.3f} | {r['w1_data_floor']:.3f} | {r['mean_diff']:+.3f} | "
            f"{r['std_gan']:.3f} | {r['std_data']:.3f} |"
        )
    lines.append(f"| **mean** | **{q['mean_w1']:.3f}** | {q['mean_w1_data_floor']:.3f} | | | |")
    c, f = q["coverage"], q["coverage_data_floor"]
    lines += [
        "",
        "| coverage (sofa_x 4 bins x sofa colour 8 bins) | GAN | data (floor) |",
        "|---|---|---|",
        f"| data cells hit by >= 1 sample | {c['hit']:.3f} | {f['hit']:.3f} |",
        f"| data cells with >= 1/4 of the data's mass | {c['covered_quarter_mass']:.3f} | {f['covered_quarter_mass']:.3f} |",
        f"| total-variation distance of cell histograms | {c['tv_distance']:.3f} | {f['tv_distance']:.3f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    from reds_jax.evaluation.judge import rooms_judge
    from reds_jax.generators.rooms_gan import rooms_gan

    p = argparse.ArgumentParser(prog="python -m reds_jax.train.quality")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", default=None, help="generator msgpack (default: shipped)")
    p.add_argument("--n", type=int, default=2000)
    a = p.parse_args(argv)
    gan = rooms_gan(a.weights, sha256=None if a.weights else "shipped")
    q = gan_quality(gan.generator, rooms_judge().predict, gan.latent_dim, n=a.n)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "quality.json", json.dumps(q, indent=1).encode())
    print(to_markdown(q))


if __name__ == "__main__":
    main()
