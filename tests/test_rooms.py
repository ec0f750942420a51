"""Procedural rooms: renderer gradients, mask consistency, the oracle map, the dataset sampler."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax.generators.rooms import (
    FACTOR_NAMES,
    FACTOR_RANGES,
    MASK_NAMES,
    NUM_FACTORS,
    factors_to_unit,
    render,
    render_masks,
    render_scene,
    sample_dataset,
    unit_to_factors,
)
from reds_jax.generators.rooms_oracle import rooms_oracle

SIZE = 16
# Jit once and reuse: eager dispatch compiles every primitive separately, which is slow on CPU.
_render = jax.jit(functools.partial(render, size=SIZE))
_scene48 = jax.jit(functools.partial(render_scene, size=48))


def _point(seed=0):
    """A float64 factor vector well inside the ranges."""
    unit = jax.random.uniform(jax.random.key(seed), (NUM_FACTORS,), jnp.float64, 0.2, 0.8)
    return unit_to_factors(unit)


def test_factor_table_and_unit_maps():
    assert len(FACTOR_NAMES) == NUM_FACTORS >= 10
    assert len(set(FACTOR_NAMES)) == NUM_FACTORS
    assert FACTOR_RANGES.shape == (NUM_FACTORS, 2)
    assert np.all(FACTOR_RANGES[:, 0] < FACTOR_RANGES[:, 1])
    unit = jax.random.uniform(jax.random.key(1), (3, NUM_FACTORS), jnp.float64)
    factors = unit_to_factors(unit)
    assert np.all((factors >= FACTOR_RANGES[None, :, 0]) & (factors <= FACTOR_RANGES[None, :, 1]))
    np.testing.assert_allclose(factors_to_unit(factors), unit, atol=1e-12)
    with pytest.raises(ValueError, match="FACTOR_NAMES"):
        unit_to_factors(jnp.zeros((3, NUM_FACTORS - 1)))


def test_render_range_dtype_and_errors():
    images = jax.vmap(_render)(
        unit_to_factors(jax.random.uniform(jax.random.key(2), (4, NUM_FACTORS), jnp.float64))
    )
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == jnp.float64
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert _render(_point().astype(jnp.float32)).dtype == jnp.float32
    with pytest.raises(ValueError, match=rf"\({NUM_FACTORS},\).*FACTOR_NAMES"):
        render(jnp.zeros(NUM_FACTORS + 1))
    with pytest.raises(ValueError, match="jax.vmap"):
        render(jnp.zeros((2, NUM_FACTORS)))


def test_render_gradients_match_central_differences():
    f0 = _point()
    fn = _render
    jac = jax.jit(jax.jacfwd(fn))(f0).reshape(-1, NUM_FACTORS)  # [S*S*3, F]
    jac_rev = jax.jit(jax.jacrev(fn))(f0).reshape(-1, NUM_FACTORS)
    np.testing.assert_allclose(jac_rev, jac, atol=1e-12)
    eps = 1e-5
    eye = jnp.eye(NUM_FACTORS, dtype=jnp.float64)
    fd = jax.vmap(lambda e: (fn(f0 + eps * e) - fn(f0 - eps * e)) / (2 * eps))(eye)  # [F, S, S, 3]
    np.testing.assert_allclose(fd.reshape(NUM_FACTORS, -1).T, jac, rtol=1e-5, atol=1e-7)
    # Every factor moves the image, smoothly.
    col_norms = np.linalg.norm(np.asarray(jac), axis=0)
    assert np.all(col_norms > 1e-2), dict(zip(FACTOR_NAMES, col_norms, strict=True))


def test_masks_consistent_with_image():
    f0 = _point(3)
    scene = _scene48(f0)
    masks = jax.jit(functools.partial(render_masks, size=48))(f0)
    assert sorted(masks) == sorted(MASK_NAMES)
    for name in MASK_NAMES:
        np.testing.assert_allclose(masks[name], scene.masks[name], atol=1e-12)
        assert float(masks[name].min()) >= 0.0 and float(masks[name].max()) <= 1.0
    np.testing.assert_allclose(sum(masks.values()), 1.0, atol=1e-9)
    np.testing.assert_allclose(scene.image, scene.albedo * scene.shading[:, :, None], atol=1e-12)

    # Where the sofa mask is ~1 the pixel is the sofa colour times the shading.
    idx = {n: i for i, n in enumerate(FACTOR_NAMES)}
    sofa_rgb = f0[jnp.array([idx["sofa_r"], idx["sofa_g"], idx["sofa_b"]])]
    inside = np.asarray(masks["sofa"] > 0.99)
    assert inside.sum() >= 10
    expected = scene.shading[:, :, None] * sofa_rgb.reshape(1, 1, 3)
    np.testing.assert_allclose(
        np.asarray(scene.image)[inside], np.asarray(expected)[inside], atol=0.01
    )

    # The sofa mask follows sofa_x.
    def centroid_x(factors):
        m = _scene48(factors).masks["sofa"]
        x = jnp.arange(48, dtype=jnp.float64)
        return float(jnp.sum(m * x[None, :]) / jnp.sum(m))

    shifted = f0.at[idx["sofa_x"]].add(0.1)
    assert centroid_x(shifted) - centroid_x(f0) == pytest.approx(0.1 * 48, abs=0.5)


def test_oracle_deterministic_and_in_range():
    z = jax.random.normal(jax.random.key(4), (16,), jnp.float64)
    a, b, c = rooms_oracle(seed=0, size=SIZE), rooms_oracle(seed=0, size=SIZE), rooms_oracle(seed=1)
    for wa, wb in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(wa, wb)
    factors = a.factors(z)  # a few small ops: eager is cheap
    np.testing.assert_array_equal(factors, b.factors(z))
    assert float(jnp.max(jnp.abs(factors - c.factors(z)))) > 1e-3
    assert np.all((factors > FACTOR_RANGES[:, 0]) & (factors < FACTOR_RANGES[:, 1]))
    image = jax.jit(a.generator)(z)
    np.testing.assert_allclose(image, _render(factors), atol=1e-12)
    assert image.shape == (SIZE, SIZE, 3) and a.latent_dim == 16
    masks = jax.jit(a.masks)(z)
    assert sorted(masks) == sorted(MASK_NAMES)
    np.testing.assert_allclose(sum(masks.values()), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="latent_dim"):
        a.factors(jnp.zeros(15))


def test_oracle_map_is_smooth():
    oracle = rooms_oracle(size=SIZE)
    zs = jax.random.normal(jax.random.key(5), (8, 16), jnp.float64)
    jac = jax.jit(jax.vmap(jax.jacfwd(oracle.unit)))(zs)  # [8, F, d]
    assert bool(jnp.all(jnp.isfinite(jac)))
    # Sigmoid slope <= 1/4 times the calibrated weights: a modest, bounded Jacobian.
    assert float(jnp.max(jnp.linalg.norm(jac, axis=(1, 2)))) < 10.0
    z0, eps = zs[0], 1e-6
    eye = jnp.eye(16, dtype=jnp.float64)
    unit = jax.jit(oracle.unit)
    fd = jax.vmap(lambda e: (unit(z0 + eps * e) - unit(z0 - eps * e)) / (2 * eps))(eye)
    np.testing.assert_allclose(fd.T, jac[0], rtol=1e-6, atol=1e-9)
    jac_img = jax.jit(jax.jacrev(oracle.generator))(z0)  # [S, S, 3, d]
    assert bool(jnp.all(jnp.isfinite(jac_img))) and float(jnp.linalg.norm(jac_img)) > 1e-2


def test_oracle_spread_not_saturated():
    oracle = rooms_oracle()
    unit = jax.jit(jax.vmap(oracle.unit))(jax.random.normal(jax.random.key(6), (1000, 16)))
    std = np.asarray(unit.std(axis=0))
    saturated = np.asarray(((unit < 0.01) | (unit > 0.99)).mean(axis=0))
    assert np.all(std > 0.15), dict(zip(FACTOR_NAMES, std, strict=True))
    assert np.all(saturated < 0.05), dict(zip(FACTOR_NAMES, saturated, strict=True))


def test_latent_axes_do_not_align_with_factors():
    oracle = rooms_oracle()
    zs = jax.random.normal(jax.random.key(7), (32, 16), jnp.float64)
    energy = np.asarray(
        jnp.mean(jax.jit(jax.vmap(jax.jacfwd(oracle.unit)))(zs) ** 2, axis=0)
    )  # [F, d]
    per_factor = energy / energy.sum(axis=1, keepdims=True)  # share of each latent coordinate
    per_axis = energy / energy.sum(axis=0, keepdims=True)  # share of each factor
    assert per_factor.max() < 0.5  # no factor is driven by one latent coordinate
    assert np.all((per_factor > 0.02).sum(axis=1) >= 6)  # ... but by many
    assert per_axis.max() < 0.6  # no latent coordinate drives one factor
    assert np.all((per_axis > 0.02).sum(axis=0) >= 6)


def test_dataset_reproducible():
    images, factors = sample_dataset(jax.random.key(8), 4, size=SIZE)
    images2, factors2 = sample_dataset(jax.random.key(8), 4, size=SIZE)
    images3, _ = sample_dataset(jax.random.key(9), 4, size=SIZE)
    assert images.shape == (4, SIZE, SIZE, 3) and factors.shape == (4, NUM_FACTORS)
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(factors, factors2)
    assert float(jnp.max(jnp.abs(images - images3))) > 0.05
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert np.all((factors >= FACTOR_RANGES[None, :, 0]) & (factors <= FACTOR_RANGES[None, :, 1]))
    clean = jax.vmap(_render)(factors)
    assert 0.005 < float(jnp.std(images - clean)) < 0.03  # mild pixel noise
    with pytest.raises(ValueError, match="positive"):
        sample_dataset(jax.random.key(8), 0)
