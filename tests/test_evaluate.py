"""End-to-end evaluation on a tiny rooms oracle (16x16): REDs-local beats linear paths and maxc."""

import json

import numpy as np
import pytest

from reds_jax.evaluation import runner as evaluate


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
    # A later run of another experiment keeps the first one, in suite order, and both commands.
    rc = evaluate.main(
        ["--suite", "rooms_oracle", "--out", str(out), "--quick", "--size", "16"]
        + ["--n-starts", "2", "--steps", "3", "--experiments", "frequency", "--methods", "random"]
    )
    assert rc == 0
    payload = json.loads((out / "rooms_oracle.json").read_text())
    assert [r["experiment"] for r in payload["experiments"]] == ["sofa_pixels", "frequency"]
    assert set(payload["experiments"][0]["methods"]) == {"pca", "sefa", "supervised", "random"}
    assert len(payload["runs"]) == 2 and "--experiments frequency" in payload["command"]
    assert "### frequency" in (out / "quality.md").read_text()
    # Re-running some methods of an experiment with the same settings keeps its other methods.
    before = payload["experiments"][0]["methods"]
    rc = evaluate.main(
        ["--suite", "rooms_oracle", "--out", str(out), "--quick", "--size", "16"]
        + ["--n-starts", "2", "--steps", "3", "--k", "1", "--experiments", "sofa_pixels"]
        + ["--methods", "random"]
    )
    assert rc == 0
    payload = json.loads((out / "rooms_oracle.json").read_text())
    res = payload["experiments"][0]
    assert list(res["methods"]) == ["pca", "sefa", "supervised", "random"]
    assert res["config"]["methods"] == ["pca", "sefa", "supervised", "random"]
    assert res["methods"]["pca"] == before["pca"]
    assert res["methods"]["random"]["drift"] == before["random"]["drift"]  # same seeds
    # A controlled variant takes reds-local's choice: from this run, else from the saved one.
    again = ["--suite", "rooms_oracle", "--out", str(out), "--quick", "--size", "16"]
    again += ["--n-starts", "2", "--steps", "3", "--k", "1", "--experiments", "sofa_pixels"]
    with pytest.raises(SystemExit, match="reds-local-c take reds-local's tuned step size"):
        evaluate.main(again + ["--methods", "reds-local-c"])
    assert evaluate.main(again + ["--methods", "reds-local"]) == 0
    payload = json.loads((out / "rooms_oracle.json").read_text())
    payload["experiments"][0]["methods"]["reds-local"]["settings"] = {
        "step_size": 0.3,
        "ridge": 0.2,
    }
    (out / "rooms_oracle.json").write_text(json.dumps(payload))
    assert evaluate.main(again + ["--methods", "reds-local-c"]) == 0
    res = json.loads((out / "rooms_oracle.json").read_text())["experiments"][0]
    assert res["methods"]["reds-local-c"]["settings"] == {"step_size": 0.3, "ridge": 0.2}


def test_rooms_gan_suite_ganspace_map_is_the_generators_mapping_network():
    import jax
    import jax.numpy as jnp

    from reds_jax.generators import rooms_gan

    exps = {e.name: e for e in evaluate.rooms_gan_suite()}
    assert set(exps) == {"gan_sofa_pixels", "gan_sofa_look", "gan_frequency"}
    gan = rooms_gan()
    z = jax.random.normal(jax.random.key(0), (gan.latent_dim,), jnp.float32)
    _, state = gan.module.apply(gan.params, z, capture_intermediates=True)
    last = state["intermediates"][f"map_{gan.module.mapping_layers - 1}"]["__call__"][0]
    want = jax.nn.leaky_relu(last[0], 0.2)
    exp = exps["gan_sofa_look"]
    np.testing.assert_allclose(exp.pca_fn(z), want, rtol=1e-5, atol=1e-6)
    assert exp.sefa_weight.shape == (want.shape[0], gan.latent_dim)
    # The judged truth is the judge's reading of the generated image, not the fixed regressor's.
    (pos_name, pos_fn, pos_want), (look_name, _, look_want) = exp.truth
    assert (pos_want, look_want) == ("vary", "fix") and "judge" in pos_name + look_name
    assert pos_fn(z).shape == (1,) and bool(jnp.all(jnp.isfinite(pos_fn(z))))


def test_bad_method_name_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown methods"):
        evaluate.main(["--suite", "rooms_oracle", "--out", str(tmp_path), "--methods", "nope"])


def test_start_batches_and_chunked_grams_walk_the_same_paths(experiments):
    exp = experiments["frequency"]
    cfg = evaluate.Config(n_test=3, n_tune=1, k=1, steps=3, n_pairs=8, n_samples=16)
    settings = {"step_size": 0.3, "ridge": 1e-2}
    whole = evaluate._Runner(exp, cfg, lambda s: None)
    split = evaluate._Runner(
        exp, evaluate.Config(**{**cfg.__dict__, "start_batch": 2, "chunk_size": 5}), lambda s: None
    )
    for name in ("reds-local", "reds-linear"):
        a = whole.paths(name, settings, whole.z_test)
        b = split.paths(name, settings, split.z_test)
        assert a.shape == b.shape == (3, 2, 4, 16)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-9)
