"""End-to-end evaluation on a tiny rooms oracle (16x16): REDs-local beats linear paths and maxc."""

import json

import numpy as np
import pytest

from reds_jax import evaluate


@pytest.fixture(scope="module")
def experiments():
    return {e.name: e for e in evaluate.rooms_oracle_suite(size=16, latent_dim=16)}


def test_reds_local_holds_fixed_features_better_at_matched_change(experiments):
    cfg = evaluate.Config(
        n_test=4,
        n_tune=2,
        k=2,
        steps=6,
        n_pairs=32,
        n_samples=64,
        step_sizes=(0.3,),
        ridges=(1e-2,),
        methods=("reds-local", "reds-linear", "maxc-local"),
    )
    res = evaluate.run_experiment(experiments["frequency"], cfg, log=lambda s: None)
    drift = {name: r["drift"] for name, r in res["methods"].items()}
    for r in drift.values():
        assert r["success"] >= 0.5
    assert drift["reds-local"]["median"] < drift["reds-linear"]["median"]
    assert drift["reds-local"]["median"] < 0.5 * drift["maxc-local"]["median"]
    # Ground truth agrees: REDs-local moves colour & light while geometry drifts less than maxc.
    truth = {n: r["truth"]["geometry"]["median"] for n, r in res["methods"].items()}
    assert truth["reds-local"] < truth["maxc-local"]
    table = evaluate.render_table([res])
    assert "| reds-local |" in table and "geometry ↓ @δ" in table


def test_main_writes_json_table_and_figures(tmp_path):
    out = tmp_path / "q"
    rc = evaluate.main(
        [
            "--suite",
            "rooms_oracle",
            "--out",
            str(out),
            "--quick",
            "--size",
            "16",
            "--n-starts",
            "2",
            "--steps",
            "3",
            "--k",
            "1",
            "--experiments",
            "sofa_pixels",
            "--methods",
            "pca,sefa,supervised,random",
        ]
    )
    assert rc == 0
    payload = json.loads((out / "rooms_oracle.json").read_text())
    (res,) = payload["experiments"]
    assert set(res["methods"]) == {"pca", "sefa", "supervised", "random"}
    assert all(np.isfinite(v) and v > 0 for v in res["scales"].values())
    assert (out / "sofa_pixels_drift.png").stat().st_size > 1000
    assert (out / "sofa_pixels_grid.png").stat().st_size > 1000
    assert "sofa_pixels_grid.png" in (out / "quality.md").read_text()


def test_bad_method_name_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown methods"):
        evaluate.main(["--suite", "rooms_oracle", "--out", str(tmp_path), "--methods", "nope"])
