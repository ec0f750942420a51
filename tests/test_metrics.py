"""Metrics on hand-made curves with known interpolation answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax.evaluation import metrics


def test_value_at_change_interpolates_first_crossing():
    change = jnp.array(
        [
            [0.0, 0.2, 0.6, 1.0],  # crosses 0.5 inside step 1->2, alpha 0.75
            [0.0, 0.5, 0.9, 1.2],  # hits 0.5 exactly at step 1
            [0.0, 0.7, 0.2, 0.9],  # first crossing (step 1) counts, not the later one
            [0.0, 0.1, 0.2, 0.3],  # never reaches: failure
        ]
    )
    drift = jnp.array(
        [
            [0.0, 0.1, 0.5, 2.0],
            [0.0, 0.3, 9.0, 9.0],
            [0.0, 1.4, 5.0, 5.0],
            [0.0, 0.1, 0.1, 0.1],
        ]
    )
    at, ok = metrics.value_at_change(change, drift, 0.5)
    np.testing.assert_allclose(at[:3], [0.1 + 0.75 * 0.4, 0.3, 1.0], atol=1e-12)
    assert np.isnan(at[3])
    assert ok.tolist() == [True, True, True, False]


def test_value_at_change_level_zero_and_shapes():
    at, ok = metrics.value_at_change(jnp.zeros((2, 3, 4)), jnp.ones((2, 3, 4)), 0.0)
    np.testing.assert_allclose(at, 1.0)
    assert at.shape == (2, 3) and bool(jnp.all(ok))
    with pytest.raises(ValueError, match="same shape"):
        metrics.value_at_change(jnp.zeros(3), jnp.zeros(4), 0.1)


def test_drift_curve_and_area():
    change = jnp.array([[0.0, 1.0, 2.0]])
    drift = jnp.array([[0.0, 1.0, 4.0]])  # piecewise linear: d(c) = c on [0,1], 3c-2 on [1,2]
    curve = metrics.drift_curve(change, drift, jnp.array([0.5, 1.5, 3.0]))
    np.testing.assert_allclose(curve[0, :2], [0.5, 2.5], atol=1e-12)
    assert np.isnan(curve[0, 2])
    # (1/2)∫₀² d(c) dc = (0.5 + 2.5) / 2 = 1.5; trapezoid is exact with the kink on the grid.
    area = metrics.area_under_drift(change, drift, 2.0, n_grid=5)
    np.testing.assert_allclose(area, [1.5], atol=1e-12)
    assert np.isnan(metrics.area_under_drift(change, drift, 3.0)[0])


def test_point_at_change_interpolates_latents():
    change = jnp.array([0.0, 1.0, 3.0])
    pts = jnp.array([[0.0, 0.0], [1.0, 2.0], [3.0, 2.0]])
    p, ok = metrics.point_at_change(change, pts, 2.0)
    np.testing.assert_allclose(p, [2.0, 2.0])
    assert bool(ok)
    p, ok = metrics.point_at_change(change, pts, 5.0)
    assert not bool(ok) and bool(jnp.all(jnp.isnan(p)))


def test_summarize_median_iqr_success():
    s = metrics.summarize(jnp.array([0.1, 0.2, 0.3, 0.4, 0.5, jnp.nan]))
    assert s.n == 6 and s.success == pytest.approx(5 / 6)
    assert s.median == pytest.approx(0.3)
    assert (s.q25, s.q75) == (pytest.approx(0.2), pytest.approx(0.4))
    assert s.median_all == pytest.approx(0.35)
    worst = metrics.summarize(jnp.array([0.1, jnp.nan, jnp.nan]))
    assert worst.median_all == np.inf and worst.median == pytest.approx(0.1)
    explicit = metrics.summarize(jnp.array([0.1, 0.2]), jnp.array([True, False]))
    assert explicit.success == 0.5


def test_distances_and_pair_scale():
    values = jnp.array([[[1.0, 1.0], [4.0, 5.0], [1.0, 1.0]]])
    np.testing.assert_allclose(metrics.distances_to_start(values), [[0.0, 5.0, 0.0]])
    # For m(z) = z in d dims, ‖z_a − z_b‖² ~ 2·χ²_d: the median is close to sqrt(2d).
    scale = metrics.pair_scale(lambda z: z, jax.random.key(0), 50, n_pairs=64)
    assert 0.9 * np.sqrt(100.0) < scale < 1.1 * np.sqrt(100.0)
    m = metrics.feature_measure(lambda z: jnp.reshape(z, (1, 2, 1)), lambda im: 3.0 * im)
    np.testing.assert_allclose(metrics.measure_paths(m, jnp.ones((3, 2)), batch=2), 3.0)
