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
