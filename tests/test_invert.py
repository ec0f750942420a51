"""GAN inversion: known latents are recovered, batching, restarts, features, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import reds_jax
from reds_jax import features as F

W = jax.random.normal(jax.random.key(0), (4 * 4 * 3, 5), jnp.float64) * 0.7


def gen(z):
    return jax.nn.sigmoid(W @ z).reshape(4, 4, 3)


TRUE = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
TARGETS = jax.vmap(gen)(TRUE)


def test_inverting_generated_images_recovers_them():
    out = reds_jax.invert(
        gen, TARGETS, latent_dim=5, steps=400, restarts=3, key=jax.random.key(2), prior_weight=0.0
    )
    assert out.latents.shape == (3, 5) and out.reconstructions.shape == TARGETS.shape
    assert out.objective.shape == (3, 3)
    assert float(jnp.min(out.psnr)) > 45.0  # the generator is injective here: exact recovery
    np.testing.assert_allclose(out.latents, TRUE, atol=1e-2)
    np.testing.assert_allclose(
        out.errors, jnp.mean((out.reconstructions - TARGETS) ** 2, axis=(1, 2, 3))
    )


def test_batched_equals_unbatched_with_per_image_keys():
    keys = jax.random.split(jax.random.key(3), 3)
    kw = dict(latent_dim=5, steps=60, restarts=2, chunk=25)
    batched = reds_jax.invert(gen, TARGETS, key=keys, **kw)
    single = reds_jax.invert(gen, TARGETS[1], key=keys[1:2], **kw)
    np.testing.assert_allclose(single.latents[0], batched.latents[1], atol=1e-10)


def test_restarts_pick_the_best():
    far = jnp.full((3, 5), 4.0)
    init = jnp.stack([far, TRUE + 1e-3, -far], axis=1)  # [N, restarts=3, d]
    out = reds_jax.invert(
        gen, TARGETS, latent_dim=5, steps=5, restarts=3, init=init, optimizer=optax.sgd(1e-3)
    )
    assert np.all(np.argmin(np.asarray(out.objective), axis=1) == 1)
    np.testing.assert_allclose(out.latents, TRUE, atol=1e-2)


def test_feature_loss_and_l1_pixel_loss():
    out = reds_jax.invert(
        gen,
        TARGETS,
        latent_dim=5,
        steps=300,
        restarts=2,
        key=jax.random.key(4),
        loss="l1",
        feature=F.lowpass(1.0),
        feature_weight=10.0,
        prior_weight=0.0,
    )
    assert float(jnp.min(out.psnr)) > 35.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": jnp.zeros((2, 5, 5, 3))}, r"images must have shape \[N, 4, 4, 3\]"),
        ({"images": TARGETS.at[0, 0, 0, 0].set(jnp.nan)}, "non-finite"),
        ({"key": None}, "PRNG key"),
        ({"loss": "l3"}, "loss="),
        ({"latent_dim": 0}, "latent_dim"),
        ({"latent_dim": 6}, "latent_dim"),
        ({"init": jnp.zeros((3, 4))}, "init must have shape"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(images=TARGETS, latent_dim=5, steps=2, key=jax.random.key(0))
    args.update(kwargs)
    images = args.pop("images")
    with pytest.raises(ValueError, match=match):
        reds_jax.invert(gen, images, **args)
