"""Linear peers on toy problems with planted answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax.core import baselines


def _align(u, v):
    u, v = np.asarray(u), np.asarray(v)
    return abs(float(u @ v)) / (np.linalg.norm(u) * np.linalg.norm(v))


def _orthogonal(key, d):
    q, _ = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    return q


def test_pca_recovers_planted_axis():
    d = 6
    axis = _orthogonal(jax.random.key(1), d)[:, 0]
    z = (
        jax.random.normal(jax.random.key(0), (400, d))
        + 4.0 * jax.random.normal(jax.random.key(2), (400, 1)) * axis[None, :]
    )
    dirs = baselines.pca_directions(z, 2)
    assert dirs.shape == (2, d)
    np.testing.assert_allclose(jnp.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)
    assert _align(dirs[0], axis) > 0.99
    assert _align(dirs[1], axis) < 0.2


def test_pca_of_activations_regresses_back_to_latent_directions():
    # Activations y = A z (+ tanh wouldn't change the top axis much); with isotropic z the activation
    # PCA axes are A's left singular vectors and the regressed latent directions its right ones.
    d, m = 5, 9
    u = _orthogonal(jax.random.key(3), m)[:, :d]
    v = _orthogonal(jax.random.key(4), d)
    s = jnp.array([6.0, 3.0, 1.0, 0.5, 0.2])
    a = (u * s[None, :]) @ v.T  # [m, d]
    z = jax.random.normal(jax.random.key(5), (2000, d))
    dirs = baselines.pca_directions(z, 2, activation_fn=lambda x: a @ x)
    assert _align(dirs[0], v[:, 0]) > 0.99
    assert _align(dirs[1], v[:, 1]) > 0.98


def test_sefa_recovers_right_singular_vectors():
    d, m = 6, 10
    u = _orthogonal(jax.random.key(6), m)[:, :d]
    v = _orthogonal(jax.random.key(7), d)
    s = jnp.array([5.0, 4.0, 2.0, 1.0, 0.5, 0.1])
    w = (u * s[None, :]) @ v.T
    dirs = baselines.sefa_directions(w, 3)
    for i in range(3):
        assert _align(dirs[i], v[:, i]) > 1 - 1e-10


def test_supervised_recovers_planted_normal_and_respects_condition():
    d, n = 8, 600
    z = jax.random.normal(jax.random.key(8), (n, d))
    normal = jax.random.normal(jax.random.key(9), (d,))
    normal = normal / jnp.linalg.norm(normal)
    labels = z @ normal + 0.05 * jax.random.normal(jax.random.key(10), (n,))
    dirs = baselines.supervised_directions(z, labels, ridge=1e-4)
    assert dirs.shape == (1, d)
    assert _align(dirs[0], normal) > 0.999
    # Binary labels (a classifier's view) give the same normal.
    binary = (labels > 0).astype(z.dtype)
    assert _align(baselines.supervised_directions(z, binary)[0], normal) > 0.95
    # Conditioning on a second attribute removes its normal.
    other = jnp.zeros(d).at[0].set(1.0)
    cond = baselines.supervised_directions(z, labels, condition=z @ other, ridge=1e-4)[0]
    assert abs(float(cond @ other)) < 1e-2  # the *fitted* normal of `other` is removed
    expected = normal - (normal @ other) * other
    assert _align(cond, expected) > 0.999


def test_principal_scores_and_random_directions():
    x = jnp.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    scores = baselines.principal_scores(x, 1)
    np.testing.assert_allclose(jnp.abs(scores[:, 0]), [2.0, 0.0, 2.0], atol=1e-12)
    r = baselines.random_directions(jax.random.key(0), 3, 5)
    np.testing.assert_allclose(r @ r.T, jnp.eye(3), atol=1e-12)


def test_linear_paths_shape_order_and_step_length():
    z0 = jnp.zeros((2, 3))
    dirs = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = baselines.linear_paths(z0, dirs, steps=4, step_size=0.5)
    assert p.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(p[0, :, -1], [[2, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -2, 0]])
    steps = jnp.linalg.norm(jnp.diff(p, axis=2), axis=-1)
    np.testing.assert_allclose(steps, 0.5, atol=1e-12)
    per_start = baselines.linear_paths(z0, jnp.stack([dirs, -dirs]), steps=1, step_size=1.0)
    np.testing.assert_allclose(per_start[1, 0, 1], [-1.0, 0.0, 0.0])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="k="):
        baselines.sefa_directions(jnp.eye(3), 4)
    with pytest.raises(ValueError, match="rows"):
        baselines.supervised_directions(jnp.ones((5, 2)), jnp.ones(4))
    with pytest.raises(ValueError, match="directions"):
        baselines.linear_paths(jnp.zeros(3), jnp.ones((1, 2)), steps=2, step_size=0.1)
    with pytest.raises(ValueError, match="non-finite"):
        baselines.pca_directions(jnp.full((4, 2), jnp.nan), 1)
