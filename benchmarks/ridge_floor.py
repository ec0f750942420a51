"""How much the ridge floor moves the answer at paper scale, and how well the products-only start
finds it (the dense solver's floor is ``10·d·eps·max diag B``; the iterative start of
``MatrixFree`` reads ``max diag B`` off a rank-``probes`` Nyström approximation).

    python benchmarks/ridge_floor.py --scale cpu-small --space s

At the first start latent of :mod:`paper_scale` (seed 0): the exact Grams (float32, as the dense
solver forms them, then float64), ``max diag B`` against the Nyström diagonal at several ranks
(Gaussian probes, :func:`reds_jax.core.matrix_free.nystrom`) and against the upper bound of
``‖B‖_F`` the iterative start used before (the sum of the fixed weights), and the top generalised
eigenvector at ``λ = f·floor`` against the one at the floor (scipy, float64). Writes
``benchmarks/results/ridge_floor.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from paper_problems import paper_problem, start_latents

from reds_jax.core import matrix_free
from reds_jax.core.jacobians import feature_grams

RANKS = (8, 16, 32, 64)
FACTORS = (0.5, 0.8, 1.25, 2.0, 4.0, 8.0)


def measure(scale: str, experiment: str, space: str) -> dict:
    gen, vary, fix, d, g = paper_problem(scale, experiment, space)
    z0 = start_latents(g, 1, seed=0)[0]
    grams = jax.jit(lambda z: feature_grams(gen, (*vary, *fix), z))(z0)
    grams = np.asarray(grams, np.float64)
    scales = 1.0 / np.linalg.norm(grams, axis=(1, 2))  # weights 1 over the Frobenius norms
    n = len(vary)
    a = sum(s * x for s, x in zip(scales[:n], grams[:n], strict=True))
    b = sum(s * x for s, x in zip(scales[n:], grams[n:], strict=True))
    eps = float(np.finfo(np.float32).eps)
    floor = 10 * d * eps * float(b.diagonal().max())
    rng = np.random.default_rng(0)
    nys = {}
    for r in RANKS:
        omega = rng.standard_normal((r, d))
        u, sigma = matrix_free.nystrom(jnp.asarray(omega), jnp.asarray(omega @ b))
        diag = np.asarray(matrix_free.nystrom_diagonal(u, sigma))
        nys[r] = float(diag.max() / b.diagonal().max())

    def top(lam):
        v = scipy.linalg.eigh(a, b + lam * np.eye(d))[1][:, -1]
        return v / np.linalg.norm(v)

    v0 = top(floor)
    cos = {f: float(abs(top(f * floor) @ v0)) for f in FACTORS}
    old = float(len(fix)) / float(b.diagonal().max())  # the old floor over the dense one
    return {
        "experiment": experiment, "space": space, "scale": scale, "d": d,
        "max_diag_b": float(b.diagonal().max()), "norm_b": float(np.linalg.norm(b)),
        "floor": floor, "nystrom_max_diag_ratio": nys, "old_floor_ratio": old,
        "cos_old_floor": float(abs(top(old * floor) @ v0)), "cos_at_factor": cos,
    }  # fmt: skip


def markdown(rows: list[dict]) -> str:
    head = "| problem | d | floor | old bound / floor (\\|cos\\|) | Nyström max diag / max diag B |"
    head += " \\|cos\\| at λ = f·floor |\n|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        nys = ", ".join(f"{k}: {v:.2f}" for k, v in r["nystrom_max_diag_ratio"].items())
        cos = ", ".join(f"{k}: {v:.3f}" for k, v in r["cos_at_factor"].items())
        lines.append(
            f"| {r['experiment']}/{r['space']} | {r['d']} | {r['floor']:.2e} | "
            f"{r['old_floor_ratio']:.1f} ({r['cos_old_floor']:.3f}) | {nys} | {cos} |"
        )
    return (
        "# The ridge floor at paper scale\n\n"
        "`python benchmarks/ridge_floor.py` (first start latent of `paper_scale.py`, "
        f"`{rows[0]['scale']}`; Grams formed in float32, solved in float64). Nyström columns: "
        "probes → the ratio of its largest diagonal entry to the true `max diag B` (a lower "
        "bound, ≤ 1). The |cos| columns compare the top direction at a λ other than the floor "
        "with the one at the floor.\n\n" + head + "\n".join(lines) + "\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="cpu-small")
    ap.add_argument("--space", default="s")
    ap.add_argument("--experiments", default="hair,frequency")
    ap.add_argument("--out", default="benchmarks/results/ridge_floor")
    a = ap.parse_args(argv)
    rows = [measure(a.scale, e, a.space) for e in a.experiments.split(",")]
    with open(a.out + ".json", "w") as fh:
        json.dump({"command": " ".join(["python", *sys.argv]), "rows": rows}, fh, indent=1)
    with open(a.out + ".md", "w") as fh:
        fh.write(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
