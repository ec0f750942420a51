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


def test_both_key_styles_and_per_image_keys_give_the_same_starts():
    kw = dict(latent_dim=5, steps=0, restarts=2)
    two = TARGETS[:2]
    legacy = reds_jax.invert(gen, two, key=jax.random.PRNGKey(0), **kw)  # uint32[2]: ONE key
    typed = reds_jax.invert(gen, two, key=jax.random.wrap_key_data(jax.random.PRNGKey(0)), **kw)
    np.testing.assert_array_equal(legacy.latents, typed.latents)
    per_image = jax.random.split(jax.random.key(5), 2)
    raw = reds_jax.invert(gen, two, key=jax.random.key_data(per_image), **kw)  # uint32[2, 2]
    new = reds_jax.invert(gen, two, key=per_image, **kw)
    np.testing.assert_array_equal(raw.latents, new.latents)
    assert not np.allclose(new.latents[0], new.latents[1])


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (np.array([0, 1]), r"key int64\[2\] is ambiguous"),  # two seeds? one raw key? say which
        (np.zeros((3, 2), np.uint32), r"is ambiguous"),  # 3 legacy keys for 2 images
        (jax.random.split(jax.random.key(0), 3), "one key or 2 keys"),
    ],
)
def test_an_ambiguous_key_is_a_clear_error(key, match):
    with pytest.raises(ValueError, match=match):
        reds_jax.invert(gen, TARGETS[:2], latent_dim=5, steps=0, key=key)


def test_selection_keeps_the_best_restart_and_early_stopping_ends_a_plateau():
    far = jnp.full((3, 5), 4.0)
    init = jnp.stack([far, TRUE + 1e-2, -far], axis=1)  # [N, restarts=3, d]
    seen = []
    out = reds_jax.invert(
        gen, TARGETS, latent_dim=5, steps=400, restarts=3, init=init, prior_weight=0.0,
        select_after=10, chunk=10, tol=1e-2, progress=lambda done, obj: seen.append(done),
    )  # fmt: skip
    np.testing.assert_allclose(out.latents, TRUE, atol=1e-2)
    assert float(jnp.min(out.psnr)) > 40.0
    assert np.all(np.argmin(np.asarray(out.objective), axis=1) == 1)
    assert seen[0] == 10 and seen[-1] < 400  # stopped on the plateau, well before 400 steps
