"""What a new user met on the first runs: a default run prints no warning, a refused job leaves
nothing on disk, and the notebook extra brings what tqdm's notebook bars need."""

import pathlib
import tomllib

import numpy as np

from reds_jax.jobs import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROOMS = ["--model", "rooms", "--model-arg", "size=16", "--model-arg", "latent_dim=8"]


def test_default_traverse_prints_no_warning_but_records_the_raised_ridge(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["traverse", *ROOMS, "--seeds", "0", "1", "-k", "1", "--steps", "2", "--out", str(out)]
    assert cli.main([*args, "--no-progress", "--no-compile-cache"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "ridge" not in err, err
    with np.load(out / "traversals.npz") as npz:
        # float32 and the default ridge=1e-6: the precision floor was used, and it is on record
        assert npz["diagnostics_ridge_raised"].sum() > 0
        assert npz["diagnostics_ridge_raised"].shape == (2, 2)
        assert list(npz["names"]) == ["seed-0", "seed-1"]  # names are always written


def test_refused_augment_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "data" / "bad_k"
    code = cli.main(["augment", *ROOMS, "--seeds", "0:4", "-k", "99", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "k" in err, err
    assert not out.exists() and not out.parent.exists()


def test_notebook_extra_has_ipywidgets():
    # without ipywidgets, tqdm.auto in a notebook prints "TqdmWarning: IProgress not found"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("ipywidgets") for dep in extras["notebook"])
    assert any(dep.startswith("ipywidgets") for dep in extras["dev"])
