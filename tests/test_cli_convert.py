"""`reds-jax convert stylegan2` converts the rosinality fixture to a loadable msgpack."""

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.generators import stylegan2
from reds_jax.jobs import cli

FIXTURE = "tests/fixtures/stylegan2_rosinality.pt"


def test_convert_stylegan2_command(tmp_path, capsys):
    out = tmp_path / "g.msgpack"
    assert cli.main(["convert", "stylegan2", FIXTURE, str(out)]) == 0
    from_file = stylegan2(str(out), space="w")
    direct = stylegan2(FIXTURE, space="w")
    w = jax.random.normal(jax.random.key(0), (from_file.latent_dim,), jnp.float32)
    np.testing.assert_allclose(from_file.generator(w), direct.generator(w), atol=1e-6)
    assert cli.main(["convert"]) == 2
    assert "stylegan2" in capsys.readouterr().err
    assert cli.main(["convert", "stylegan2", str(tmp_path / "missing.pt"), str(out)]) != 0


def test_mapping_lr_mul_must_be_finite_and_positive(tmp_path, capsys):
    """nan, inf, -1 and 0 made all-NaN generators or an internal error (issue 40 G)."""
    import pytest

    from reds_jax.generators.stylegan2_convert import load_stylegan2_rosinality

    out = tmp_path / "o.msgpack"
    for bad in ("nan", "inf", "-1", "0", "1e9", "x"):
        code = cli.main(["convert", "stylegan2", FIXTURE, str(out), "--mapping-lr-mul", bad])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and "argument --mapping-lr-mul: must be a finite number > 0" in err
        assert not out.exists()
    for bad in (float("nan"), 0.0, -1.0, "0.01"):
        with pytest.raises(ValueError, match="mapping_lr_mul must be a finite number > 0"):
            load_stylegan2_rosinality(FIXTURE, mapping_lr_mul=bad)


def test_convert_to_a_folder_names_the_folder_and_a_file_to_pass(tmp_path, capsys):
    """It showed the temporary file '.out.<pid>.<hex>.tmp' of the write (issue 40 K)."""
    folder = tmp_path / "out"
    folder.mkdir()
    assert cli.main(["convert", "stylegan2", FIXTURE, f"{folder}/"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".tmp" not in err, err
    assert f"out '{folder}' is a folder" in err
    assert f"'{folder / 'stylegan2_rosinality.msgpack'}'" in err
    assert not any(folder.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
