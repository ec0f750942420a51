"""The benchmark driver end to end (smoke profile) and the reference-style loop against `traverse`."""

import json

import bench_traverse as bench
import jax
import jax.numpy as jnp
import numpy as np
from bench_problems import conv_generator, reference_traverse

import reds_jax
from reds_jax import features as F


def test_reference_loop_walks_the_same_paths_as_traverse():
    # Central differences in float64 vs exact Jacobians: the same local REDs paths.
    d = 8
    gen = conv_generator(d, size=8, channels=(4,), dtype=jnp.float64)
    vary, fix = F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0))
    z0 = jax.random.normal(jax.random.key(1), (d,), jnp.float64)
    batch_fn = jax.jit(
        jax.vmap(lambda z: jnp.concatenate([jnp.ravel(vary(gen(z))), jnp.ravel(fix(gen(z)))]))
    )
    ref = reference_traverse(
        batch_fn, [96, 96], 1, np.asarray(z0), k=1, steps=4, step_size=0.2, eps=1e-5, ridge=1e-6
    )
    problem = reds_jax.Problem(gen, vary, [fix], ridge=1e-6)
    tr = reds_jax.traverse(problem, z0, steps=4, step=reds_jax.FixedStep(0.2))
    got = np.asarray(tr.latents)
    if np.dot(ref[0, 1] - ref[0, 0], got[0, 1] - got[0, 0]) < 0:  # sign convention of ±v
        ref = ref[::-1]
    np.testing.assert_allclose(ref, got, atol=1e-6)


def test_smoke_profile_writes_rows_ratios_and_agreement(tmp_path):
    rc = bench.main(
        ["--profile", "smoke", "--out", str(tmp_path), "--steps", "3", "--repeats", "1"]
    )
    assert rc == 0
    report = json.loads((tmp_path / "smoke.json").read_text())
    rows = {r["solver"]: r for r in report["results"]}
    assert set(rows) == {"dense", "matrix_free", "reference"}
    assert all("error" not in r and r["trajectories_per_s"] > 0 for r in rows.values())
    mf = rows["matrix_free"]
    assert mf["x_dense"] == mf["trajectories_per_s"] / rows["dense"]["trajectories_per_s"]
    assert mf["agreement"]["cos_mean"] >= 0.99
    assert abs(mf["agreement"]["drift_rel_diff"]) <= 0.05
    assert "| conv | 16 | 2 | matrix_free |" in (tmp_path / "smoke.md").read_text()
