"""Eigen-solves against scipy, planted spectra, null spaces and numerical fallbacks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import reds_jax
from reds_jax.core import linalg, rayleigh


def spd(rng, d, rank=None):
    x = rng.standard_normal((d, rank or d))
    return x @ x.T


def assert_same_directions(a, b, atol=1e-8):
    """Rows of a and b are the same unit directions up to sign."""
    cos = np.abs(np.sum(np.asarray(a) * np.asarray(b), axis=-1))
    np.testing.assert_allclose(cos, 1.0, atol=atol)


@pytest.mark.parametrize("seed", range(4))
def test_solve_rayleigh_matches_scipy_generalised_eigh(seed):
    rng = np.random.default_rng(seed)
    d, k, ridge = 7, 3, 1e-3
    a, b = spd(rng, d), spd(rng, d, rank=4)  # singular B: the ridge makes the pencil definite
    values, vectors = reds_jax.solve_rayleigh(jnp.asarray(a), jnp.asarray(b), k=k, ridge=ridge)
    ref_vals, ref_vecs = scipy.linalg.eigh(a, b + ridge * np.eye(d))
    ref_vecs = ref_vecs[:, ::-1][:, :k].T
    ref_vecs /= np.linalg.norm(ref_vecs, axis=1, keepdims=True)
    np.testing.assert_allclose(values, ref_vals[::-1][:k], rtol=1e-8)
    assert_same_directions(vectors, ref_vecs)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-12)
    # The values are the Rayleigh quotients of the returned vectors.
    v = np.asarray(vectors)
    quotient = np.einsum("kd,de,ke->k", v, a, v) / np.einsum(
        "kd,de,ke->k", v, b + ridge * np.eye(d), v
    )
    np.testing.assert_allclose(values, quotient, rtol=1e-8)


def test_planted_generalised_spectrum():
    rng = np.random.default_rng(7)
    d = 5
    x = rng.standard_normal((d, d)) + 3 * np.eye(d)  # columns: the planted eigenvectors
    mu = np.array([0.5, 9.0, 2.0, 0.1, 4.0])
    xinv = np.linalg.inv(x)
    a = xinv.T @ np.diag(mu) @ xinv  # A x_i = mu_i B x_i with B = X^-T X^-1
    b = xinv.T @ xinv
    values, vectors = jax.jit(functools.partial(reds_jax.solve_rayleigh, k=d, ridge=0.0))(
        jnp.asarray(a), jnp.asarray(b)
    )
    order = np.argsort(mu)[::-1]
    np.testing.assert_allclose(values, mu[order], rtol=1e-7)
    planted = (x / np.linalg.norm(x, axis=0))[:, order].T
    assert_same_directions(vectors, planted, atol=1e-7)


def test_signs_are_deterministic():
    rng = np.random.default_rng(1)
    a, b = jnp.asarray(spd(rng, 4)), jnp.asarray(spd(rng, 4))
    _, v1 = reds_jax.solve_rayleigh(a, b, k=4)
    _, v2 = reds_jax.solve_rayleigh(a * 3.0, b, k=4)
    np.testing.assert_allclose(v1, v2, atol=1e-10)
    idx = np.argmax(np.abs(np.asarray(v1)), axis=1)
    assert np.all(np.asarray(v1)[np.arange(4), idx] > 0)


def test_zero_fixed_gram_falls_back_to_ridge_and_equals_maxc():
    rng = np.random.default_rng(2)
    a = jnp.asarray(spd(rng, 6))
    values, vectors = reds_jax.solve_rayleigh(a, jnp.zeros((6, 6)), k=2, ridge=1e-6)
    ref_vals, ref_vecs = rayleigh.maxc_system(a)
    assert_same_directions(vectors, ref_vecs[:2])
    np.testing.assert_allclose(values, ref_vals[:2] / 1e-6, rtol=1e-8)


def test_ridge_floor_keeps_float32_cholesky_finite():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    b = jnp.asarray(x @ x.T)  # rank 3 in float32: rounding makes it slightly indefinite
    a = jnp.asarray(spd(rng, 64).astype(np.float32))
    values, vectors = reds_jax.solve_rayleigh(a, b, k=4, ridge=1e-12)
    assert bool(jnp.all(jnp.isfinite(values))) and bool(jnp.all(jnp.isfinite(vectors)))
    # The best directions lie (almost) in B's null space.
    assert float(jnp.max(jnp.abs(vectors @ jnp.asarray(x)))) < 1e-2


def test_non_finite_input_falls_back_to_finite_maxc():
    a = jnp.eye(3).at[0, 1].set(jnp.nan)
    values, vectors = rayleigh.rayleigh_system(a, jnp.full((3, 3), jnp.inf))
    assert bool(jnp.all(jnp.isfinite(values))) and bool(jnp.all(jnp.isfinite(vectors)))


def test_explained_rank_follows_reference_rule():
    e = jnp.array([3.0, 2.0, 1.0, 0.0])  # squared fractions: 9/14, 13/14, 1, 1
    assert [int(rayleigh.explained_rank(e, b)) for b in (0.5, 0.9, 0.95, 1.0)] == [1, 2, 3, 4]


def test_nullspace_directions_are_orthogonal_to_fixed_rows():
    rng = np.random.default_rng(4)
    d = 8
    f1, f2 = rng.standard_normal((2, d)), rng.standard_normal((1, d))  # fixed rows, rank 3
    a_fix = jnp.asarray(np.stack([f1.T @ f1, f2.T @ f2]))
    a_fix = a_fix / jnp.linalg.norm(a_fix, axis=(1, 2), keepdims=True)
    a_vary = jnp.asarray(spd(rng, d))
    values, vectors, span = rayleigh.nullspace_system(
        a_vary, a_fix, beta_fix=jnp.array([0.999999, 0.999999])
    )
    assert float(jnp.sum(span)) == d - 3
    inside = np.asarray(vectors)[: d - 3]
    fixed_rows = np.concatenate([f1, f2])
    np.testing.assert_allclose(inside @ fixed_rows.T, 0.0, atol=1e-8)
    # They are the top eigenvectors of the varied Gram restricted to the null space.
    null = scipy.linalg.null_space(fixed_rows)
    ref_vals, ref_vecs = np.linalg.eigh(null.T @ np.asarray(a_vary) @ null)
    np.testing.assert_allclose(values[: d - 3], ref_vals[::-1], rtol=1e-8)
    assert_same_directions(inside, (null @ ref_vecs[:, ::-1]).T)
    # Rows past the null space are unit, fixed-space directions with value 0.
    np.testing.assert_allclose(values[d - 3 :], 0.0)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-10)


def test_nullspace_beta_vary_cuts_the_span():
    rng = np.random.default_rng(5)
    d = 6
    f = rng.standard_normal((1, d))
    a_fix = jnp.asarray((f.T @ f)[None])
    a_vary = jnp.diag(jnp.array([100.0, 1.0, 0.01, 0.001, 0.0001, 0.0]))
    _, _, span = rayleigh.nullspace_system(
        a_vary, a_fix, beta_fix=jnp.ones(1) * 0.99, beta_vary=0.99
    )
    assert float(jnp.sum(span)) == 1


def test_minf_and_random_systems():
    rng = np.random.default_rng(6)
    f = rng.standard_normal((2, 5))
    values, vectors = rayleigh.minf_system(jnp.asarray((f.T @ f)[None]), jnp.ones(1))
    np.testing.assert_allclose(np.asarray(vectors)[:3] @ f.T, 0.0, atol=1e-10)
    np.testing.assert_allclose(values[:3], 0.0, atol=1e-10)
    _, q = rayleigh.random_system(jax.random.key(0), 5, jnp.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(5), atol=1e-12)


def test_project_onto_span_matches_least_squares():
    rng = np.random.default_rng(8)
    vecs = rng.standard_normal((4, 6))
    v = rng.standard_normal(6)
    span = np.array([1.0, 0.0, 1.0, 1.0])
    got = linalg.project(jnp.asarray(v), jnp.asarray(vecs), jnp.asarray(span))
    basis = vecs[span > 0].T
    coef, *_ = np.linalg.lstsq(basis, v, rcond=None)
    np.testing.assert_allclose(got, basis @ coef, atol=1e-10)


def test_solve_rayleigh_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        reds_jax.solve_rayleigh(jnp.eye(3), jnp.eye(3), k=4)
    with pytest.raises(ValueError, match="square"):
        reds_jax.solve_rayleigh(jnp.eye(3), jnp.eye(2), k=1)
    with pytest.raises(ValueError, match="ridge"):
        reds_jax.solve_rayleigh(jnp.eye(3), jnp.eye(3), k=1, ridge=-1.0)
