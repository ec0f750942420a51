"""Known answers for the flow-sampler generator (reds_jax.generators.flow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from reds_jax.generators.flow import epsilon_to_velocity, flow, flow_passes

RNG = np.random.default_rng(0)
D = 4
A = RNG.normal(size=(D, D)) / 2.0  # non-symmetric, non-normal
B = RNG.normal(size=D)
Z = RNG.normal(size=D)


def linear_velocity(p, x, t):
    a, b = p
    return a @ x + b


def linear_exact(z):
    """Flow map of dx/dt = A x + b over t in [0, 1]: e^A z + A^-1 (e^A - I) b."""
    e = expm(A)
    return e @ z + np.linalg.solve(A, (e - np.eye(D)) @ B)


def _errors(method, velocity, params, exact_map, exact_jac, steps_list, **kw):
    out = []
    for n in steps_list:
        gen = flow(velocity, params, (D,), steps=n, method=method, **kw)
        z = jnp.asarray(Z)
        jf, jr = jax.jacfwd(gen)(z), jax.jacrev(gen)(z)
        np.testing.assert_allclose(jf, jr, atol=1e-12)  # forward and reverse agree exactly
        out.append(
            (np.max(np.abs(gen(z) - exact_map(Z))), np.max(np.abs(np.asarray(jf) - exact_jac)))
        )
    return np.array(out)  # [len(steps_list), 2]: value error, Jacobian error


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_linear_field_map_and_jacobian_converge_at_the_method_order(method, order):
    params = (jnp.asarray(A), jnp.asarray(B))
    err = _errors(method, linear_velocity, params, linear_exact, expm(A), [16, 32, 64])
    observed = np.log2(err[:-1] / err[1:])  # [2, 2]
    np.testing.assert_allclose(observed, order, atol=0.12)
    assert err[-1, 0] < (2e-2 if order == 1 else 1e-3)


def test_time_dependent_field_uses_t():
    # dx/dt = t A x: the map over [0, 1] is exp(A / 2); Heun is second order on it
    velocity = lambda a, x, t: t * (a @ x)  # noqa: E731
    err = _errors(
        "heun", velocity, jnp.asarray(A), lambda z: expm(A / 2) @ z, expm(A / 2), [16, 32]
    )
    np.testing.assert_allclose(np.log2(err[0] / err[1]), 2.0, atol=0.15)
    # and a sub-interval [t0, t1] is honoured: over [0.5, 1] the map is exp(3 A / 8)
    gen = flow(velocity, jnp.asarray(A), (D,), steps=64, t0=0.5, t1=1.0)
    np.testing.assert_allclose(gen(jnp.asarray(Z)), expm(3 * A / 8) @ Z, atol=1e-5)


# Rectified flow between N(0, I) and N(m, s^2 I): x_t = alpha x_1 + sigma eps. Given x_t, the
# posterior means are affine in x_t, so the exact velocity and noise predictor are known, and the
# ODE's flow map (which keeps the Gaussian marginals) is the monotone map z -> m + s z.
M = np.array([0.3, -1.2, 0.5, 2.0])
S = 0.4


def _posterior(x, t, schedule):
    (alpha, sigma), (da, ds) = jax.jvp(schedule, (t,), (jnp.ones_like(t),))
    var = alpha**2 * S**2 + sigma**2
    r = x - alpha * M
    x1 = M + alpha * S**2 * r / var  # E[x_1 | x_t]
    eps = sigma * r / var  # E[eps | x_t]
    return x1, eps, da * x1 + ds * eps


def _linear(t):
    return t, 1.0 - t


def _trig(t):
    return jnp.sin(0.5 * jnp.pi * t), jnp.cos(0.5 * jnp.pi * t)


def test_gaussian_rectified_flow_map_is_the_monotone_transport():
    velocity = lambda p, x, t: _posterior(x, t, _linear)[2]  # noqa: E731
    z = jnp.asarray(Z)
    err = []
    for n in (64, 128):
        gen = flow(velocity, None, (D,), steps=n, method="heun")
        err.append(np.max(np.abs(gen(z) - (M + S * Z))))
        np.testing.assert_allclose(jax.jacrev(gen)(z), S * np.eye(D), atol=1e-4)
        np.testing.assert_allclose(jax.jacfwd(gen)(z), jax.jacrev(gen)(z), atol=1e-12)
    assert err[1] < 3e-5 and 3.0 < err[0] / err[1] < 5.0  # second order


@pytest.mark.parametrize("schedule", [_linear, _trig])
def test_epsilon_adapter_gives_the_exact_velocity(schedule):
    velocity = epsilon_to_velocity(lambda p, x, t: _posterior(x, t, schedule)[1], schedule)
    for t in (0.1, 0.5, 0.9):
        x = jnp.asarray(RNG.normal(size=D))
        t = jnp.asarray(t)
        np.testing.assert_allclose(velocity(None, x, t), _posterior(x, t, schedule)[2], atol=1e-12)
    # and the sampler through the adapter, started at t0 > 0 from the exact marginal there,
    # transports to m + s z
    t0 = 0.05
    alpha0, sigma0 = schedule(jnp.asarray(t0))
    x0 = alpha0 * M + jnp.sqrt(alpha0**2 * S**2 + sigma0**2) * Z
    gen = flow(velocity, None, (D,), steps=256, method="heun", t0=t0)
    np.testing.assert_allclose(gen(x0), M + S * Z, atol=3e-5)


def test_remat_is_on_and_cuts_the_vjp_memory():
    w = jax.random.normal(jax.random.PRNGKey(0), (4096, 64)) / 8.0
    velocity = lambda p, x, t: p.T @ jnp.tanh(p @ x)  # noqa: E731  wide hidden layer
    z = jnp.ones(64)
    temp = {}
    for remat in (True, False):
        gen = flow(velocity, w, (64,), steps=32, method="heun", remat=remat)
        assert ("remat" in str(jax.make_jaxpr(gen)(z))) == remat
        loss = lambda z, gen=gen: jnp.sum(gen(z) ** 2)  # noqa: E731
        compiled = jax.jit(jax.grad(loss)).lower(z).compile()
        temp[remat] = compiled.memory_analysis().temp_size_in_bytes
    # without remat the backward pass keeps 2 * 32 hidden activations of 4096 doubles (2 MiB)
    assert temp[False] - temp[True] > 0.75 * 2 * 32 * 4096 * 8


def test_flow_passes_and_bad_arguments():
    assert flow_passes(5, "euler") == 5 and flow_passes(5, "heun") == 10
    with pytest.raises(ValueError, match="method must be one of"):
        flow(linear_velocity, None, (D,), method="rk45")
    with pytest.raises(ValueError, match="steps must be"):
        flow(linear_velocity, None, (D,), steps=0)
    gen = flow(lambda p, x, t: -x, None, (2, 2), steps=64)  # x(1) = e^-1 z, any shape
    np.testing.assert_allclose(gen(jnp.asarray(Z)), np.exp(-1.0) * Z.reshape(2, 2), atol=1e-4)
    with pytest.raises(ValueError, match=r"one latent of shape \(4,\)"):
        gen(jnp.ones(5))
