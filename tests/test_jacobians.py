"""Jacobians and Grams against central differences, modes, chunking and the non-finite fallback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import reds_jax
from reds_jax.core.jacobians import feature_grams


def wide(z):  # [4] -> [2, 3] (m=6 >= d=4)
    return jnp.stack(
        [
            jnp.stack([jnp.sin(z[0] * z[1]), z[2] ** 3, jnp.exp(z[0]) * z[3]]),
            jnp.stack([jnp.tanh(z[1] + z[2]), z[0] * z[3] ** 2, jnp.cos(z[3])]),
        ]
    )


def narrow(z):  # [4] -> [2] (m=2 < d=4)
    return jnp.stack([jnp.sum(jnp.sin(z) * z), jnp.prod(jnp.tanh(z + 1.0))])


def central(fn, z, h=1e-5):
    z = np.asarray(z, np.float64)
    cols = []
    for i in range(z.size):
        e = np.zeros_like(z)
        e[i] = h
        cols.append((np.ravel(fn(z + e)) - np.ravel(fn(z - e))) / (2 * h))
    return np.stack(cols, axis=1)


Z = jnp.array([0.3, -0.7, 1.1, 0.5])


@pytest.mark.parametrize("fn", [wide, narrow])
@pytest.mark.parametrize("mode", ["auto", "fwd", "rev", "fd"])
def test_jacobian_matches_central_differences(fn, mode):
    jac = reds_jax.jacobian(fn, Z, mode=mode, eps=1e-5)
    ref = central(fn, Z)
    assert jac.shape == ref.shape
    np.testing.assert_allclose(jac, ref, atol=1e-7 if mode != "fd" else 1e-6)


def test_exact_gradients_pass_check_grads():
    check_grads(lambda z: jnp.sum(wide(z) ** 2), (Z,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("fn", [wide, narrow])
@pytest.mark.parametrize("mode", ["auto", "fwd", "rev"])
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_gram_chunked_equals_dense(fn, mode, chunk):
    dense = reds_jax.gram(fn, Z, mode=mode)
    ref = central(fn, Z)
    np.testing.assert_allclose(dense, ref.T @ ref, atol=1e-7)
    np.testing.assert_allclose(reds_jax.gram(fn, Z, mode=mode, chunk_size=chunk), dense, atol=1e-12)


def test_chunked_pixel_gram_matches_dense_under_jit():
    w = jax.random.normal(jax.random.key(0), (16 * 16 * 3, 6), jnp.float64)
    gen = lambda z: jnp.tanh(w @ z).reshape(16, 16, 3)  # noqa: E731
    z = jnp.linspace(-0.5, 0.5, 6)
    dense = reds_jax.gram(gen, z)
    chunked = jax.jit(lambda v: reds_jax.gram(gen, v, chunk_size=4))(z)
    np.testing.assert_allclose(chunked, dense, atol=1e-10)
    # The Gram is J^T J with J = diag(1 - tanh^2) W.
    jac = (1 - np.tanh(np.asarray(w) @ np.asarray(z)) ** 2)[:, None] * np.asarray(w)
    np.testing.assert_allclose(dense, jac.T @ jac, atol=1e-10)


def test_feature_grams_share_one_pass_and_match_separate_grams():
    gen = lambda z: wide(z)[:, :, None]  # noqa: E731
    feats = [lambda x: x[0], lambda x: x[1] ** 2]
    both = feature_grams(gen, feats, Z)
    for i, f in enumerate(feats):
        np.testing.assert_allclose(both[i], reds_jax.gram(lambda z, f=f: f(gen(z)), Z), atol=1e-12)
    chunked = feature_grams(gen, feats, Z, chunk_size=2)
    np.testing.assert_allclose(chunked, both, atol=1e-12)


@pytest.mark.parametrize("mode", ["fwd", "rev", "fd"])
def test_non_finite_jacobian_entries_are_zeroed(mode):
    fn = lambda z: jnp.stack([jnp.sqrt(z[0]), z[1] * 2.0, z[0] + z[1]])  # noqa: E731
    z = jnp.array([0.0, 1.0])  # d sqrt/dz0 = inf at 0
    jac = reds_jax.jacobian(fn, z, mode=mode)
    assert bool(jnp.all(jnp.isfinite(jac)))
    # Column 1 never meets the infinite partial; in reverse mode 0 * inf contaminates column 0 of
    # every row (zeroed too), forward mode and differences keep the finite entries.
    np.testing.assert_allclose(jac[1:, 1], [2.0, 1.0], atol=1e-6)
    if mode != "rev":
        np.testing.assert_allclose(jac[1:, 0], [0.0, 1.0], atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(reds_jax.gram(fn, z, mode=mode))))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="mode="):
        reds_jax.jacobian(wide, Z, mode="sideways")
    with pytest.raises(ValueError, match=r"shape \[d\]"):
        reds_jax.jacobian(wide, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="chunk_size"):
        reds_jax.gram(wide, Z, chunk_size=0)
