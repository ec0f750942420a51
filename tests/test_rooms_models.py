"""Shipped living-room models: checksummed loading, held-out accuracy bars, differentiability.

Bars are set below the accuracy measured on 1024 held-out renders (see
benchmarks/results/rooms_features.md); here they are checked on 64 renders to stay fast.
"""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax import features
from reds_jax.evaluation.judge import rooms_judge
from reds_jax.generators import (
    FACTOR_NAMES,
    factors_to_unit,
    render,
    render_masks,
    rooms_gan,
    sample_dataset,
    unit_to_factors,
)
from reds_jax.train.nets import r2_scores, sofa_iou
from reds_jax.weights import SHA256, WeightsError, weights_path

# R² bars on 64 held-out renders; measured on 1024 renders: mean 0.95 (regressor and judge),
# every factor >= 0.8 except stripe_phase (circular; 0.83 / 0.73), sofa_width 0.86 / 0.81.
_BARS = {name: 0.75 for name in FACTOR_NAMES if name != "stripe_phase"}
R2_BARS = {"regressor": dict(_BARS, sofa_x=0.85), "judge": dict(_BARS, sofa_x=0.85)}
MEAN_R2_BAR = 0.85  # mean over all 15 factors
IOU_BAR = 0.8  # measured 0.90 on 1024 renders


@pytest.fixture(scope="module")
def held_out():
    images, factors = sample_dataset(jax.random.PRNGKey(987_654), 64)
    return images, factors


def test_shipped_files_have_checksums():
    for name, digest in SHA256.items():
        assert len(digest) == 64, name
        assert weights_path(name).stat().st_size < 20 * 2**20


def test_rooms_gan_loads_and_generates():
    gan = rooms_gan()
    assert gan.latent_dim == 64
    z = jax.random.normal(jax.random.PRNGKey(0), (4, gan.latent_dim), jnp.float32)
    images = jax.jit(jax.vmap(gan.generator))(z)
    assert images.shape == (4, 64, 64, 3) and images.dtype == jnp.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert float(jnp.std(images, axis=0).mean()) > 0.02  # different latents, different rooms
    with pytest.raises(ValueError, match="one latent of shape"):
        gan.generator(z)


def test_corrupt_weights_raise_clear_error(tmp_path):
    for name, loader in (
        ("rooms_gan.msgpack", lambda p: rooms_gan(p)),
        ("rooms_judge.msgpack", lambda p: rooms_judge(path=p)),
    ):
        bad = tmp_path / name
        shutil.copyfile(weights_path(name), bad)
        data = bytearray(bad.read_bytes())
        data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
        with pytest.raises(WeightsError, match="checksum"):
            loader(bad)
    with pytest.raises(WeightsError, match="missing"):
        rooms_gan(tmp_path / "absent.msgpack")


@pytest.mark.parametrize("which", ["regressor", "judge"])
def test_factor_nets_r2_on_held_out_renders(which, held_out):
    images, factors = held_out
    if which == "regressor":
        predict = features.room_factors()
    else:
        predict = rooms_judge().predict
    pred = np.asarray(jax.jit(jax.vmap(predict))(images))
    r2 = dict(zip(FACTOR_NAMES, r2_scores(pred, np.asarray(factors_to_unit(factors))), strict=True))
    for name, bar in R2_BARS[which].items():
        assert r2[name] > bar, (name, r2[name])
    assert np.mean(list(r2.values())) > MEAN_R2_BAR, r2


def test_sofa_segmenter_iou(held_out):
    images, factors = held_out
    mask_fn = features.sofa_mask()
    pred = np.asarray(jax.jit(jax.vmap(mask_fn))(images))
    true = np.asarray(jax.vmap(render_masks)(factors)["sofa"])
    assert pred.shape == (64, 64, 64)
    assert sofa_iou(pred, true) > IOU_BAR


def test_features_are_differentiable():
    base = unit_to_factors(jnp.full((len(FACTOR_NAMES),), 0.5))
    e = jnp.zeros_like(base).at[FACTOR_NAMES.index("sofa_x")].set(1.0)

    def through(feature, t):
        return feature(render(base + t[0] * e))

    sofa_x = features.room_factors(names=("sofa_x",))
    jac = jax.jit(jax.jacfwd(functools.partial(through, sofa_x)))(jnp.zeros((1,)))
    assert jac.shape == (1, 1) and np.isfinite(jac).all()
    # d(predicted unit sofa_x) / d(sofa_x) should be near 1 / range width = 2.
    assert 0.5 < float(jac[0, 0]) < 5.0
    fix_sofa = features.region(mask_fn=features.sofa_mask())
    grad = jax.jit(jax.grad(lambda t: jnp.sum(through(fix_sofa, t))))(jnp.zeros((1,)))
    assert np.isfinite(grad).all() and float(jnp.abs(grad[0])) > 0.0
    with pytest.raises(ValueError, match="unknown factor"):
        features.room_factors(names=("sofa_colour",))
    with pytest.raises(ValueError, match="shape"):
        sofa_x(jnp.zeros((32, 32, 3)))
