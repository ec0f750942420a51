"""Sanity numbers and timings of the face-api features on faces of the face DCGAN.

* identity: Euclidean distance of face-api descriptors between different generated faces, and
  between a face and the face of a slightly perturbed latent (``z + δ·u``, ``u`` a random unit
  direction, ``‖z‖ ≈ 10``); face-api's "same person" threshold is 0.6;
* landmarks: fraction of the 68 points inside the image, extent of the point cloud, eyes above
  the mouth;
* age / gender: ranges;
* timings (float32, after warm-up, medians): one feature call, a batch of 16, and the Jacobian of
  ``feature(G(z))`` with respect to ``z`` (d = 100) by jacfwd and jacrev.

Usage: ``python benchmarks/bench_faces_sanity.py --out benchmarks/results [--n 16]``.
Writes ``faces_sanity.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax import features
from reds_jax.generators import face_dcgan


def _summary(x) -> dict:
    x = np.asarray(x, np.float64)
    return {
        "median": float(np.median(x)),
        "mean": float(np.mean(x)),
        "min": float(np.min(x)),
        "max": float(np.max(x)),
    }


def _median_time(fn, *args, repeats=5) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--n", type=int, default=16)
    args = parser.parse_args()

    gan = face_dcgan()
    ident, marks, ag = features.face_identity(), features.face_landmarks(), features.age_gender()
    gen = jax.jit(jax.vmap(gan.generator))
    f_id, f_lm, f_ag = (jax.jit(jax.vmap(f)) for f in (ident, marks, ag))

    key = jax.random.key(7)
    kz, ku = jax.random.split(key)
    z = jax.random.normal(kz, (args.n, gan.latent_dim), jnp.float32)
    u = jax.random.normal(ku, z.shape, jnp.float32)
    u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    images = gen(z)
    desc = np.asarray(f_id(images))
    iu = np.triu_indices(args.n, 1)
    between = np.linalg.norm(desc[:, None] - desc[None], axis=-1)[iu]
    perturbed = {}
    for delta in (0.1, 0.5, 1.0, 2.0):
        d2 = np.asarray(f_id(gen(z + delta * u)))
        perturbed[f"delta={delta}"] = _summary(np.linalg.norm(desc - d2, axis=1))
    pts = np.asarray(f_lm(images)).reshape(args.n, 68, 2)
    inside = (pts > 0) & (pts < 1)
    eyes_above_mouth = pts[:, 36:48, 1].mean(1) < pts[:, 48:68, 1].mean(1)
    agv = np.asarray(f_ag(images))

    one = images[0]
    z0 = z[0]
    timings = {}
    for name, feat in (("identity", ident), ("landmarks", marks), ("age_gender", ag)):
        fz = lambda z, feat=feat: feat(gan.generator(z))  # noqa: E731
        timings[name] = {
            "call_s": _median_time(jax.jit(feat), one),
            "batch16_s": _median_time(jax.jit(jax.vmap(feat)), images[:16]),
            "jacfwd_z_s": _median_time(jax.jit(jax.jacfwd(fz)), z0, repeats=3),
            "jacrev_z_s": _median_time(jax.jit(jax.jacrev(fz)), z0, repeats=3),
        }

    result = {
        "n_faces": args.n,
        "latent_norm": _summary(np.linalg.norm(np.asarray(z), axis=1)),
        "identity_distance_between_faces": _summary(between),
        "identity_distance_to_perturbed_latent": perturbed,
        "identity_norm": _summary(np.linalg.norm(desc, axis=1)),
        "landmarks_fraction_inside": float(inside.all(-1).mean()),
        "landmarks_x_range": [float(pts[..., 0].min()), float(pts[..., 0].max())],
        "landmarks_y_range": [float(pts[..., 1].min()), float(pts[..., 1].max())],
        "landmarks_eyes_above_mouth_fraction": float(eyes_above_mouth.mean()),
        "age_years": _summary(agv[:, 0]),
        "p_male": _summary(agv[:, 1]),
        "timings_float32": timings,
        "platform": {
            "machine": platform.machine(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "faces_sanity.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
