"""reds_jax.jobs.config: resolved once; one rule for seeds vs latents and for the latents file."""

import dataclasses

import numpy as np
import pytest

from reds_jax.jobs.config import ConfigError, JobConfig, load_latents


def test_resolved_is_idempotent_and_replace_revalidates():
    cfg = JobConfig(model="rooms", seeds="0:3").resolved()
    assert cfg.resolved() is cfg
    assert JobConfig.from_mapping({"model": "rooms", "seeds": "0:3"}) == cfg
    with pytest.raises(ConfigError, match="field 'k'"):
        dataclasses.replace(cfg, k=0).resolved()


def test_exactly_one_of_seeds_or_latents(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(ConfigError, match="'seeds' and 'latents' are both set"):
        JobConfig(model="rooms", seeds="0:2", latents=str(tmp_path / "z.npy")).resolved()
    with pytest.raises(ConfigError, match="exactly one of 'seeds'"):
        JobConfig(model="rooms").starts()
    seeds, latents = JobConfig(model="rooms").starts(default_seeds=[0])
    assert seeds.tolist() == [0] and latents is None
    seeds, latents = JobConfig(model="rooms", seeds=["4:6", 9]).starts()
    assert seeds.tolist() == [4, 5, 9] and latents is None and seeds.dtype == np.int64


@pytest.mark.parametrize(
    "array, shape",
    [(np.arange(3.0, dtype=np.float32), (1, 3)), (np.ones((4, 3), np.float64), (4, 3))],
)
def test_latents_file_rule_d_is_one_latent(tmp_path, array, shape):
    np.save(tmp_path / "z.npy", array)
    z = load_latents(tmp_path / "z.npy")
    assert z.shape == shape and z.dtype == array.dtype
    np.testing.assert_array_equal(z, array.reshape(shape))
    seeds, latents = JobConfig(model="rooms", latents=str(tmp_path / "z.npy")).starts()
    assert seeds.tolist() == list(range(shape[0]))
    np.testing.assert_array_equal(latents, z)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((2, 3, 4), np.float32), "float array \\[N, d\\]"),
        (np.zeros((2, 3), np.int64), "float array"),
        (np.zeros((0, 3), np.float32), "float array"),
        (np.asarray([[0.0, np.nan]]), "NaN or inf"),
        (None, "is not a readable .npy file"),
    ],
)
def test_bad_latents_files_name_the_field(tmp_path, array, words):
    path = tmp_path / "z.npy"
    if array is None:
        path.write_text("not numpy")
    else:
        np.save(path, array)
    with pytest.raises(ConfigError, match=f"job.toml: field 'latents'.*{words}"):
        load_latents(path, where="job.toml")
    with pytest.raises(ConfigError, match=words):
        JobConfig(model="rooms", latents=str(path)).starts()


def test_validation_runs_once_per_config(monkeypatch):
    from reds_jax.jobs import models

    calls = []
    get_entry = models.get_entry
    monkeypatch.setattr(models, "get_entry", lambda name: calls.append(name) or get_entry(name))
    cfg = JobConfig.from_mapping({"model": "rooms", "seeds": "0:2", "k": 1})
    for _ in range(3):
        assert cfg.resolved() is cfg
    cfg.identity()
    cfg.starts()
    assert calls == ["rooms"]


def test_official_preset_with_the_matrix_free_solver_names_the_preset(capsys):
    """It blamed mode='fd_official', which the user never set (issue 40 K)."""
    from reds_jax.jobs import cli

    argv = ["traverse", "--model", "rooms", "--preset", "official", "--solver", "matrix_free"]
    assert cli.main([*argv, "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for words in (
        "field 'solver' is 'matrix_free'",
        "preset='official' uses finite differences with the dense solver",
        "drop --solver matrix_free",
        "drop --preset official",
    ):
        assert words in err, err
    assert "is for solver='dense' only" not in err
    for half in ({"options": {"mode": "auto"}}, {"method": "reds"}):  # the preset's other half
        with pytest.raises(ConfigError, match="preset='official' uses finite differences"):
            JobConfig(model="rooms", preset="official", solver="matrix_free", **half).resolved()
    cfg = JobConfig(  # both overridden: the user's own choice, accepted
        model="rooms",
        preset="official",
        solver="matrix_free",
        method="reds",
        options={"mode": "auto"},
    ).resolved()
    assert (cfg.method, cfg.options["mode"], cfg.options["beta_fix"]) == ("reds", "auto", 0.99)
