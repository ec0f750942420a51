"""The shipped living-room flow model: checksum, the sampler it is built from, training, registry."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from reds_jax._io import sha256_file
from reds_jax.generators.rooms_flow import (
    MATRIX_FREE_OPTIONS,
    ROOMS_FLOW_FILE,
    rooms_flow,
    to_image,
)
from reds_jax.jobs.config import JobConfig
from reds_jax.train.common import latest_checkpoint
from reds_jax.train.flow import flow_config, init_flow_state, make_flow_step, train_flow
from reds_jax.weights import SHA256, WeightsError, weights_path


def test_shipped_weights_match_their_checksum_and_corruption_is_caught(tmp_path):
    path = weights_path(ROOMS_FLOW_FILE)
    assert sha256_file(path) == SHA256[ROOMS_FLOW_FILE]
    assert path.stat().st_size < 20 * 2**20
    bad = tmp_path / ROOMS_FLOW_FILE
    shutil.copyfile(path, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum"):
        rooms_flow(bad)


def test_generator_is_the_sampler_of_the_shipped_velocity():
    fm = rooms_flow(steps=1, method="euler", size_out=32)
    assert fm.latent_dim == 3072 and fm.passes == 1
    z = jax.random.normal(jax.random.PRNGKey(0), (3072,))
    x0 = z.reshape(32, 32, 3)
    # one Euler step from t = 0: the image is (z + v(z, 0) + 1) / 2
    params = jax.tree.map(lambda a: a.astype(z.dtype), fm.params)
    want = 0.5 * (x0 + fm.velocity(params, x0, jnp.asarray(0.0)) + 1.0)
    np.testing.assert_allclose(fm.generator(z), want, atol=1e-10)
    big = rooms_flow(steps=1, method="euler")
    np.testing.assert_allclose(big.generator(z), to_image(2.0 * want - 1.0, 64), atol=1e-10)
    # exact derivatives through the two-step sampler (remat, scan) agree with differences
    two = rooms_flow(steps=2, method="euler", size_out=32)
    probe = jax.random.normal(jax.random.PRNGKey(1), (32, 32, 3))
    check_grads(lambda z: jnp.sum(two.generator(z) * probe), (z,), order=1, modes=("fwd", "rev"))


def test_samples_differ_and_bad_latents_are_refused():
    fm = rooms_flow()
    z = jax.random.normal(jax.random.PRNGKey(2), (3, fm.latent_dim), jnp.float32)
    images = jax.vmap(fm.generator)(z)
    assert images.shape == (3, 64, 64, 3) and images.dtype == jnp.float32
    assert float(jnp.std(images, axis=0).mean()) > 0.02
    with pytest.raises(ValueError, match=r"one latent of shape \(3072,\)"):
        fm.generator(z)


def test_flow_training_step_checkpoints_and_resume(tmp_path, capsys):
    cfg = flow_config(size=16, tiny=True)
    state = init_flow_state(cfg, seed=0)
    step = make_flow_step(cfg, seed=0)
    new, metrics = step(*step(state, 0)[:1], 1)  # the learning rate warms up from 0 at step 0
    assert np.isfinite(float(metrics["loss"]))
    before, after = jax.tree.leaves(state["params"]), jax.tree.leaves(new["params"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    out = tmp_path / "flow"
    kw = dict(size=16, tiny=True, ckpt_every=1)
    train_flow(out, steps=1, seed=0, **kw)
    train_flow(out, steps=2, seed=0, **kw)
    assert "resumed from" in capsys.readouterr().out
    assert latest_checkpoint(out).name == "ckpt_2.msgpack"
    assert (out / "ema.msgpack").is_file() and (out / "samples_000002.png").is_file()


def test_registry_defaults_to_matrix_free_with_its_options():
    cfg = JobConfig(model="rooms_flow", seeds="0:1").resolved()
    assert cfg.solver == "matrix_free" and dict(cfg.options) == MATRIX_FREE_OPTIONS
    own = JobConfig(model="rooms_flow", seeds="0:1", options={"cold_iters": 7}).resolved()
    assert own.options["cold_iters"] == 7 and own.options["max_iters"] == 4
    named = JobConfig(model="rooms_flow", seeds="0:1", solver="matrix_free").resolved()
    assert dict(named.options) == MATRIX_FREE_OPTIONS  # the page names the solver it shows
    dense = JobConfig(model="rooms_flow", seeds="0:1", solver="dense").resolved()
    assert dense.solver == "dense" and not dense.options
    assert JobConfig(model="rooms", seeds="0:1").resolved().solver == "dense"
