"""One more path row of :mod:`paper_scale` with another solver, checked against the exact
directions a finished run saved — without re-running the exact rows.

    python benchmarks/paper_scale_variant.py "matrix_free+max_iters=2" \\
        benchmarks/results/paper_scale_rows/hair_w_matrix_free.npz \\
        benchmarks/results/paper_scale_rows/hair_w_chunked_at_track.npz \\
        --experiment hair --space w --scale cpu-small --steps 2

The checked points must be latents the variant visits too: with ``--steps 2`` the tracked latents
(t = 1) follow from the start solve alone, which the tracking options (``max_iters``, ``tol``) do
not change (verified: the report's ``max_latent_difference``). Writes
``benchmarks/results/paper_scale_variant.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax.numpy as jnp
import numpy as np
import paper_scale as ps
from paper_problems import paper_problem


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("solver")
    ap.add_argument("source_latents", help="npz of the path row the exact row checked")
    ap.add_argument("exact", help="npz of the exact (dense/chunked) row")
    ap.add_argument("--experiment", default="hair")
    ap.add_argument("--space", default="w")
    ap.add_argument("--scale", default="cpu-small")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--step-size", type=float, default=0.2)
    ap.add_argument("--out", default="benchmarks/results/paper_scale_variant.json")
    a = ap.parse_args(argv)
    name = f"{a.experiment}/{a.space}/{a.solver}"
    save = os.path.splitext(a.out)[0] + ".npz"
    spec = {"kind": "path", "experiment": a.experiment, "space": a.space, "solver": a.solver,
            "name": name, "scale": a.scale, "n": 1, "k": 1, "steps": a.steps,
            "step_size": a.step_size, "repeats": 1, "save": save}  # fmt: skip
    rec = ps.worker(spec)
    lat, ref = np.load(save)["latents"], np.load(a.source_latents)["latents"]
    os.remove(save)
    exact = np.load(a.exact)
    pts = [tuple(int(x) for x in p) for p in exact["points"]]
    gen, _, fix, _, _ = paper_problem(a.scale, a.experiment, a.space)
    zs = [jnp.asarray(lat[0, i, t]) for i, t in pts]
    own = [lat[0, i, t + 1] - lat[0, i, t] for i, t in pts]
    rec.update(ps._accuracy(gen, fix, zs, own, list(exact["exact"]), a.step_size))
    rec["max_latent_difference"] = max(
        float(np.abs(lat[0, i, t] - ref[0, i, t]).max()) for i, t in pts
    )
    rec["name"], rec["command"] = name, " ".join(["python", *sys.argv])
    with open(a.out, "w") as fh:
        json.dump(rec, fh, indent=1)
    print(
        json.dumps({k: rec[k] for k in ("step_s", "cos", "drift_ratio", "max_latent_difference")})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
