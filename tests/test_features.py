"""Closed-form features against scipy and hand-computed answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from reds_jax import features as F

RNG = np.random.default_rng(0)
IMG = jnp.asarray(RNG.uniform(size=(16, 12, 3)))


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_lowpass_matches_scipy_gaussian_filter(sigma):
    got = np.asarray(F.lowpass(sigma)(IMG)).reshape(IMG.shape)
    ref = scipy.ndimage.gaussian_filter(
        np.asarray(IMG), sigma, mode="mirror", truncate=3.0, axes=(0, 1)
    )
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_highpass_is_gray_minus_its_lowpass():
    gray = np.asarray(IMG) @ np.array([0.30, 0.59, 0.11])
    ref = gray - scipy.ndimage.gaussian_filter(gray, 2.0, mode="mirror", truncate=3.0)
    got = np.asarray(F.highpass(2.0)(IMG)).reshape(16, 12)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert float(jnp.abs(F.highpass(2.0)(jnp.ones((16, 12, 3)))).max()) < 1e-12


def test_fourier_bands_partition_the_image_and_select_frequencies():
    low, high = F.fourier_band(0.0, 0.15), F.fourier_band(0.15, 1.0)
    np.testing.assert_allclose(low(IMG) + high(IMG), jnp.ravel(IMG), atol=1e-12)
    y = np.arange(16)[:, None, None] * np.ones((1, 12, 1))
    wave = jnp.asarray(np.cos(2 * np.pi * 0.25 * y))  # 0.25 cycles/pixel along rows
    np.testing.assert_allclose(F.fourier_band(0.2, 0.3)(wave), jnp.ravel(wave), atol=1e-12)
    np.testing.assert_allclose(F.fourier_band(0.0, 0.2)(wave), 0.0, atol=1e-12)


def test_region_box_relative_and_pixels_and_invert():
    crop = np.asarray(IMG)[4:12, 3:9]
    np.testing.assert_allclose(F.region((4, 3, 8, 6))(IMG), crop.ravel())
    np.testing.assert_allclose(F.region((0.25, 0.25, 0.5, 0.5))(IMG), crop.ravel())
    inv = np.asarray(F.region((4, 3, 8, 6), invert=True)(IMG)).reshape(IMG.shape)
    assert np.all(inv[4:12, 3:9] == 0)
    np.testing.assert_allclose(inv[:4], np.asarray(IMG)[:4])


def test_region_soft_mask_and_mask_fn():
    mask = jnp.asarray(RNG.uniform(size=(16, 12)))
    ref = np.asarray(IMG) * np.asarray(mask)[:, :, None]
    np.testing.assert_allclose(F.region(mask=mask)(IMG), ref.ravel())
    np.testing.assert_allclose(
        F.region(mask=mask, invert=True)(IMG), (np.asarray(IMG) - ref).ravel(), atol=1e-12
    )
    bright = F.region(mask_fn=lambda im: jnp.mean(im, axis=-1))
    np.testing.assert_allclose(
        bright(IMG), (np.asarray(IMG) * np.asarray(IMG).mean(-1, keepdims=True)).ravel()
    )


def test_compose_filter_then_region():
    feat = F.compose(F.highpass(2.0), F.region((4, 3, 8, 6)))
    full = np.asarray(F.highpass(2.0)(IMG)).reshape(16, 12)
    np.testing.assert_allclose(feat(IMG), full[4:12, 3:9].ravel())
    assert "highpass" in feat.name


def test_features_are_differentiable_under_jit_and_vmap():
    feat = F.compose(F.lowpass(1.0), F.region((0.0, 0.0, 0.5, 0.5)))
    jac = jax.jit(jax.jacfwd(feat))(IMG)
    assert jac.shape == (8 * 6 * 3,) + IMG.shape
    batch = jax.vmap(F.highpass(1.0))(jnp.stack([IMG, IMG * 2.0]))
    np.testing.assert_allclose(batch[1], 2.0 * batch[0], atol=1e-12)


def test_bad_feature_arguments():
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        F.pixels()(jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="does not fit"):
        F.region((10, 0, 8, 4))(IMG)
    with pytest.raises(ValueError, match="exactly one"):
        F.region((0, 0, 1, 1), mask=jnp.ones((16, 12)))
    with pytest.raises(ValueError, match="relative box"):
        F.region((0.5, 0.5, 1.5, 0.2))
    with pytest.raises(ValueError, match="sigma"):
        F.lowpass(0.0)
    with pytest.raises(ValueError, match="too wide"):
        F.lowpass(5.0)(IMG)
    with pytest.raises(ValueError, match="mask must have shape"):
        F.region(mask=jnp.ones((3, 3)))(IMG)
    with pytest.raises(ValueError, match="low < high"):
        F.fourier_band(0.3, 0.1)
