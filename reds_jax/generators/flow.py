"""Flow-matching and diffusion samplers as deterministic generators ``z -> image``.

A flow-matching (rectified-flow) model is a velocity field ``velocity(params, x, t) -> dx/dt``;
its sampler integrates the ODE ``dx/dt = v(x, t)`` from ``t = 0`` (the noise ``x = z``) to ``t = 1``
(the image). With a fixed solver and step count the sampler is a pure, differentiable function of
``z``, so REDs (and every exact JVP/VJP in reds_jax) applies to it as to a GAN generator whose
latent is the noise: ``d = prod(shape)``.

:func:`flow` builds that generator. The integration is a :func:`jax.lax.scan` over the steps, and
each step is wrapped in :func:`jax.checkpoint` (rematerialisation): a VJP through the sampler keeps
only the ``steps + 1`` states ``x_t`` between forward and backward passes and recomputes one step's
model activations at a time, so its working memory is that of one model pass (plus the states),
not of all ``steps`` passes. Its cost is one extra model pass per model evaluation.

Costs, in passes of the velocity model, for ``steps = n``: Euler ``n`` per forward, Heun ``2n``
(``2n - 1`` would do, but the last step's second pass is kept for a uniform scan body); a JVP
costs one forward plus one tangent pass per evaluation, a VJP one forward, one rematerialised
forward and one backward per evaluation.

:func:`epsilon_to_velocity` adapts a noise-prediction (epsilon) model to a velocity for the same
ODE (see its docstring for the schedule convention).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["FLOW_METHODS", "epsilon_to_velocity", "flow", "flow_passes", "linear_schedule"]

Array = jax.Array
Velocity = Callable[[Any, Array, Array], Array]

FLOW_METHODS: tuple[str, ...] = ("euler", "heun", "midpoint")
"""ODE solvers accepted by :func:`flow` (``euler``: order 1; ``heun``, ``midpoint``: order 2)."""

_EVALS = {"euler": 1, "heun": 2, "midpoint": 2}


def _euler(velocity: Velocity, params, x: Array, t: Array, dt: Array) -> Array:
    return x + dt * velocity(params, x, t)


def _heun(velocity: Velocity, params, x: Array, t: Array, dt: Array) -> Array:
    k1 = velocity(params, x, t)
    k2 = velocity(params, x + dt * k1, t + dt)
    return x + (0.5 * dt) * (k1 + k2)


def _midpoint(velocity: Velocity, params, x: Array, t: Array, dt: Array) -> Array:
    k1 = velocity(params, x, t)
    return x + dt * velocity(params, x + (0.5 * dt) * k1, t + 0.5 * dt)


_STEPS = {"euler": _euler, "heun": _heun, "midpoint": _midpoint}


def flow_passes(steps: int, method: str = "heun") -> int:
    """Velocity-model passes in one forward run of the sampler (``steps`` x evaluations per step).

    >>> flow_passes(4, "heun")
    8
    """
    return int(steps) * _EVALS[_check_method(method)]


def _check_method(method: str) -> str:
    if method not in _STEPS:
        raise ValueError(f"method must be one of {FLOW_METHODS}; got {method!r}.")
    return method


def flow(
    velocity: Velocity,
    params: Any,
    shape: Sequence[int],
    *,
    steps: int = 8,
    method: str = "heun",
    t0: float = 0.0,
    t1: float = 1.0,
    remat: bool = True,
    postprocess: Callable[[Array], Array] | None = None,
) -> Callable[[Array], Array]:
    """Turns a velocity model into a deterministic generator ``z [d] -> image [*shape]``.

    Integrates ``dx/dt = velocity(params, x, t)`` from ``x(t0) = z.reshape(shape)`` to ``t1`` with
    ``steps`` equal steps of ``method``, as a ``lax.scan`` whose step is rematerialised.

    Args:
        velocity: pure ``velocity(params, x [*shape], t []) -> dx/dt [*shape]`` for one sample,
            ``t`` a scalar in the dtype of ``x`` (0 at the noise, 1 at the image).
        params: its parameters (any pytree; cast to the latent's dtype when floating).
        shape: the image shape, e.g. ``(32, 32, 3)``; the latent has ``d = prod(shape)`` entries.
        steps: number of solver steps (a Python int >= 1).
        method: one of :data:`FLOW_METHODS`.
        t0: start time (the noise). Use a small positive value for velocities that are singular at
            0 (e.g. :func:`epsilon_to_velocity` of a schedule with ``alpha(0) = 0``).
        t1: end time (the image).
        remat: wrap each step in :func:`jax.checkpoint` (keep True; False only for comparisons).
        postprocess: optional pure ``x(t1) -> image`` (e.g. map [-1, 1] to [0, 1], resize).

    Returns:
        A pure ``generator(z [d]) -> [*shape]`` (or ``postprocess``'s output), computed in the dtype
        of ``z``; jit/vmap/jacfwd/jacrev-able.

    Raises:
        ValueError: bad ``shape``, ``steps``, ``method`` or times; at call time, a latent of the
            wrong size.

    >>> a = jnp.array([[0.0, 1.0], [-1.0, 0.0]])  # rotation: exact map after t = 1 is expm(a)
    >>> gen = flow(lambda p, x, t: p @ x, a, (2,), steps=64, method="heun")
    >>> bool(jnp.allclose(gen(jnp.array([1.0, 0.0])), jnp.array([0.5403, -0.8415]), atol=1e-4))
    True
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape must be a non-empty sequence of positive ints; got {shape}.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a Python int >= 1; got {steps!r}.")
    step_fn = _STEPS[_check_method(method)]
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"t0 and t1 must be finite and different; got t0={t0}, t1={t1}.")
    d = math.prod(shape)
    body = functools.partial(step_fn, velocity)
    if remat:
        body = jax.checkpoint(body)

    def generator(z: Array) -> Array:
        z = jnp.asarray(z)
        if not jnp.issubdtype(z.dtype, jnp.floating):
            raise TypeError(f"flow generator expects a floating-point latent; got {z.dtype}.")
        if z.size != d or z.ndim != 1:
            raise ValueError(
                f"flow generator expects one latent of shape ({d},) (= prod{shape}); got "
                f"{z.shape}. For a batch, use jax.vmap."
            )
        dtype = z.dtype
        p = jax.tree.map(
            lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a,
            params,
        )
        ts = jnp.linspace(t0, t1, steps + 1, dtype=dtype)

        def scan_step(x, t_pair):
            t, t_next = t_pair
            return body(p, x, t, t_next - t), None

        x, _ = jax.lax.scan(scan_step, z.reshape(shape), (ts[:-1], ts[1:]))
        return x if postprocess is None else postprocess(x)

    return generator


def linear_schedule(t: Array) -> tuple[Array, Array]:
    """The rectified-flow interpolation ``x_t = alpha(t) x_1 + sigma(t) eps``: ``(t, 1 - t)``."""
    return t, 1.0 - t


def epsilon_to_velocity(
    epsilon: Callable[[Any, Array, Array], Array],
    schedule: Callable[[Array], tuple[Array, Array]] = linear_schedule,
) -> Velocity:
    """Adapts a noise-prediction model to the velocity of its probability-flow ODE.

    Convention: the noised sample is ``x_t = alpha(t) x_1 + sigma(t) eps`` with ``t = 0`` pure noise
    (``alpha = 0, sigma = 1``) and ``t = 1`` the image (``alpha = 1, sigma = 0``), and
    ``epsilon(params, x_t, t)`` predicts ``eps``. The image estimate is
    ``x̂_1 = (x_t - sigma epŝ) / alpha`` and the velocity ``v = alpha' x̂_1 + sigma' epŝ`` (schedule
    derivatives by forward-mode autodiff). A DDPM/VP model indexed by its own diffusion time ``s``
    (noise at ``s = 1``) and ``alpha_bar(s)`` fits with ``t = 1 - s``,
    ``alpha(t) = sqrt(alpha_bar(1 - t))``, ``sigma(t) = sqrt(1 - alpha_bar(1 - t))``; wrap it so it
    takes ``t``. The velocity divides by ``alpha(t)``: start :func:`flow` at ``t0 > 0`` when
    ``alpha(0) = 0``.

    Args:
        epsilon: pure ``epsilon(params, x [*shape], t []) -> epŝ [*shape]``.
        schedule: ``t -> (alpha(t), sigma(t))``, differentiable (default :func:`linear_schedule`).

    Returns:
        ``velocity(params, x, t) -> dx/dt`` for :func:`flow`.

    >>> v = epsilon_to_velocity(lambda p, x, t: jnp.zeros_like(x))  # epŝ = 0: x̂_1 = x / t
    >>> v(None, jnp.array([1.0, 2.0]), jnp.asarray(0.5)).tolist()
    [2.0, 4.0]
    """

    def velocity(params, x: Array, t: Array) -> Array:
        (alpha, sigma), (dalpha, dsigma) = jax.jvp(schedule, (t,), (jnp.ones_like(t),))
        eps = epsilon(params, x, t)
        x1 = (x - sigma * eps) / alpha
        return dalpha * x1 + dsigma * eps

    return velocity
