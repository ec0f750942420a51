"""Path control for traversals: feature-space step lengths and a drift corrector.

A REDs path is a first-order continuation: every step moves ``ε`` along the current direction.
Two optional additions turn it into a predictor–corrector method (:func:`reds_jax.traverse`'s
``step=FeatureStep(δ)`` and ``corrector=Corrector(n)``; the default, :class:`FixedStep`, moves
``ε`` every step):

* **Feature-space steps** (:class:`FeatureStep`, ``target=δ``): the varied features' distance from the start,
  ``‖e_t‖`` with ``e_t = f_vary(z_t) − f_vary(z₀)``, should grow by ``δ`` per step: after ``t``
  steps it should be ``t·δ``. Step ``t`` solves the linearised equation

  ``‖e_t + ε·J_vary v‖ = max(‖e_t‖ + δ, (t+1)·δ)``

  for its positive root ``ε`` (one JVP of the concatenated varied features along the direction
  ``v``; the root is unique because the right side exceeds ``‖e_t‖``), clipped to
  ``[min_size, max_size]``. At the start, and on a path whose change stays on one line (a linear
  generator), it is ``ε = δ / ‖J_vary v‖``. Why not that simpler rule everywhere: a REDs path
  curves in feature space (its varied change turns as the directions are re-solved), so equal
  per-step changes add up to much less distance from the start (on the rooms oracle the
  per-step changes summed to 1.4–2.9× the final distance) and paths stall short of their target;
  the steps here lengthen when a step turns away from the start's line and catch up on any
  shortfall of the previous steps (a corrector's move, or the linearisation's second-order
  error, included) — a secant-like correction from the measured distance. The varied features
  are concatenated unweighted, so ``δ`` is in the units of
  :attr:`~reds_jax.core.path.Trajectories.vary_distances`.
* **Corrector** (:class:`Corrector`, ``iters=n``): after each predictor step, ``n`` Gauss–Newton iterations on the
  fixed features' deviation from their start values,

  ``min_δ  Σ_k c_k ‖f_k(G(z + δ)) − f_k(G(z₀))‖²   subject to  δ ⊥ v``,

  with ``c_k = w_k`` (the fixed-feature ``weights``) divided by the Frobenius norm of ``A_k`` at
  ``z₀`` when ``normalize`` (the same weighting as the fixed Grams; estimated from 8 Hutchinson
  probes, and skipped for a single fixed feature, where it does not change the step). Each
  iteration linearises the residual once (``jax.linearize``) and solves the projected normal
  equations ``P Jᵀ J P δ = −P Jᵀ r`` (``P = I − v vᵀ``, so the intended change along ``v`` is not
  undone) with a few conjugate-gradient iterations (``cg_iters``, matrix-free JVP/VJP products),
  warm-started from the previous step's correction (one JVP/VJP call site: see
  :func:`_projected_cg`), inside a trust region: no correction is longer than the predictor's
  step ``ε`` (Steihaug's truncated CG stops on the ball's boundary). Without it, CG's later
  iterates run along the weakly observed directions of ``Jᵀ J``: on the rooms GAN they reached
  10–100× ``ε``, raised the residual, and the accepted ones undid part of the varied change.
  With the ball the corrector alone moves little there (drift 0.209 → 0.184, 44 → 38 % of
  paths arriving), with feature-space steps 0.239 → 0.168 at 94 % arriving
  (``benchmarks/results/path_control``); on the rooms oracle it changes the corrector's drift
  by under 0.002 but raises that of both options together on ``frequency`` (0.041 → 0.070,
  still 2.3× below the uncorrected path's). A
  correction that does not reduce the residual (or is not finite) is rejected: the latent is
  kept and ``diagnostics.rejected_corrections`` counts it.

  What it cannot do: hold a fixed feature that the varied direction *must* change (then the
  constraint ``δ ⊥ v`` leaves nothing to correct with, and the drift stays), or undo drift that
  is outside what the linearisation sees in ``n`` iterations. Cost per step: ``n`` linearisations
  plus ``n·(cg_iters + 1)`` JVP/VJP pairs of generator + fixed features, plus ``n`` generator passes for
  the acceptance test.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core.jacobians import stacked_features
from reds_jax.core.matrix_free import hutchinson
from reds_jax.core.validate import BOUNDS, integer, number

Array = jax.Array

__all__ = ["Corrector", "FeatureStep", "FixedStep", "GaussNewton", "step_length", "varied_change"]


def _size(x: Any, name: str) -> Any:
    """A concrete step length as a finite float > 0; a tracer (under ``jit``) or a placeholder
    that jax's tree utilities put in a pytree passes unchecked."""
    if isinstance(x, jax.core.Tracer) or type(x) is object:
        return x
    return number(x, name, low=0.0, open_low=True)


@dataclasses.dataclass(frozen=True)
class FixedStep:
    """Every step has latent length ``size`` (``ε``).

    A pytree (``size`` is traced under ``jit``: a new size reuses the compiled traversal).

    >>> FixedStep(0.5).length(None, None, None, None, 3)
    0.5
    """

    size: Any = 0.1

    constant = True  # every step the same length: a linear path is closed form

    def __post_init__(self):
        object.__setattr__(self, "size", _size(self.size, "FixedStep(size)"))

    @property
    def max_size(self) -> Any:
        """The largest step (``size``)."""
        return self.size

    def init(self, problem: Any, z0: Array) -> None:
        """Nothing to carry."""

    def length(self, problem: Any, z: Array, v: Array, state: Any, t: Array) -> Any:
        """``ε`` of step ``t`` from ``z`` along ``v``: ``size``."""
        return self.size


@dataclasses.dataclass(frozen=True)
class FeatureStep:
    """Feature-space steps: the varied features' distance from the start grows by ``target`` per
    step (``t·target`` after ``t`` steps); each step is the linearised root (see the module
    docstring and :func:`step_length`), clipped to ``[min_size, max_size]``.

    A pytree (its numbers are traced under ``jit``).

    Args:
      target: ``δ``, in the units of :attr:`~reds_jax.core.path.Trajectories.vary_distances`.
      max_size: the longest latent step (default 0.1).
      min_size: the shortest (default ``max_size / 100``).

    >>> FeatureStep(0.2, max_size=0.5).min_size
    0.005
    >>> FeatureStep(0.2, max_size=0.5, min_size=1.0)
    Traceback (most recent call last):
    ...
    ValueError: FeatureStep(min_size=1.0) exceeds max_size=0.5 (the largest step): pass min_size <= max_size.
    """

    target: Any
    max_size: Any = 0.1
    min_size: Any = None

    constant = False

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)
        put("target", _size(self.target, "FeatureStep(target)"))
        put("max_size", _size(self.max_size, "FeatureStep(max_size)"))
        if self.min_size is None and isinstance(self.max_size, float):
            put("min_size", 0.01 * self.max_size)
        elif self.min_size is not None:
            put("min_size", _size(self.min_size, "FeatureStep(min_size)"))
        lo, hi = self.min_size, self.max_size
        if isinstance(lo, float) and isinstance(hi, float) and lo > hi:
            raise ValueError(
                f"FeatureStep(min_size={lo!r}) exceeds max_size={hi!r} (the largest step): pass "
                "min_size <= max_size."
            )

    def init(self, problem: Any, z0: Array) -> Array:
        """The varied features at the start ``[m]`` (what the distance is measured from)."""
        return stacked_features(problem.generator, problem.vary)(z0)

    def length(self, problem: Any, z: Array, v: Array, ref: Array, t: Array) -> Array:
        """``ε`` of step ``t`` from ``z`` along ``v`` (one JVP of the varied features)."""
        e, jv = varied_change(problem.generator, problem.vary, z, v, ref)
        target = jnp.asarray(self.target, z.dtype)
        lo = 0.01 * self.max_size if self.min_size is None else self.min_size
        behind = (t + 1).astype(z.dtype) * target - jnp.linalg.norm(e)
        hi = jnp.asarray(self.max_size, z.dtype)
        return step_length(e, jv, target, jnp.asarray(lo, z.dtype), hi, behind)


for _cls, _fields in ((FixedStep, ["size"]), (FeatureStep, ["target", "max_size", "min_size"])):
    jax.tree_util.register_dataclass(_cls, data_fields=_fields, meta_fields=[])


@dataclasses.dataclass(frozen=True)
class Corrector:
    """The drift corrector (see the module docstring): after each step, ``iters`` Gauss–Newton
    iterations pull the fixed features back towards their start values, orthogonally to the
    direction, each no longer than that step; ``cg_iters`` conjugate-gradient iterations each.

    >>> Corrector(iters=2)
    Corrector(iters=2, cg_iters=8)
    """

    iters: int = 1
    cg_iters: int = 8

    def __post_init__(self):
        integer(self.iters, "Corrector(iters)", 1, BOUNDS["correct"])
        integer(self.cg_iters, "Corrector(cg_iters)", 1, BOUNDS["cg_iters"])

    def check(self, problem: Any) -> None:
        """Raise a ValueError if ``problem`` has nothing to hold fixed."""
        if not problem.fix:
            raise ValueError(
                "corrector=Corrector(...) needs fixed features to hold (it reduces their drift): "
                "pass Problem(..., fix=[...]) or corrector=None."
            )

    def at(self, problem: Any, z0: Array) -> GaussNewton:
        """The corrector of the paths from ``z0 [d]``."""
        return GaussNewton.at(
            problem.generator, problem.fix, problem.weights, problem.normalize, z0,
            self.iters, self.cg_iters,
        )  # fmt: skip


def varied_change(
    generator: Callable, vary: Sequence[Callable], z: Array, v: Array, ref: Array
) -> tuple[Array, Array]:
    """``(e, J_vary v)``: the concatenated varied features' change from the start, ``e =
    f_vary(z) − ref [m]``, and their linearised change per unit step along ``v`` ``[m]`` (one JVP).

    >>> g = lambda z: jnp.reshape(3.0 * z, (1, 2, 1))
    >>> e, jv = varied_change(g, [lambda x: x], jnp.ones(2), jnp.array([0.6, 0.8]), jnp.zeros(2))
    >>> e.tolist(), [round(float(x), 12) for x in jv]
    ([3.0, 3.0], [1.8, 2.4])
    """
    f, jv = jax.jvp(stacked_features(generator, vary), (z,), (v,))
    return f - ref, jv


def step_length(
    change: Array,
    rate: Array,
    target: Array,
    step_min: Array,
    step_max: Array,
    behind: Array | float = 0.0,
) -> Array:
    """The step that advances the linearised distance from the start by ``target``.

    Solves ``‖e + ε·Jv‖ = ‖e‖ + target`` for its positive root ``ε`` (``e``: ``change``, the
    varied features' change from the start ``[m]``; ``Jv``: ``rate``, their linearised change per
    unit step ``[m]``) and clips it to ``[step_min, step_max]``; ``step_max`` where the root is not
    finite (``Jv = 0``). At the start (``e = 0``) and on a path whose change stays on one line it
    is ``target / ‖Jv‖``; where the path turns away from the start's line it is longer.

    >>> float(step_length(jnp.zeros(2), jnp.array([4.0, 0.0]), 1.0, 0.01, 0.5))
    0.25
    >>> float(step_length(jnp.array([3.0, 0.0]), jnp.array([0.0, 7.0]), 1.0, 0.01, 9.0))  # ⊥: √7/7
    0.3779644730092272
    """
    a = jnp.sum(rate**2)
    b = jnp.dot(change, rate)
    norm = jnp.linalg.norm(change)
    goal = norm + jnp.maximum(target, behind)
    c = (goal - norm) * (goal + norm)  # goal² − ‖e‖² > 0: exactly one positive root
    root = jnp.sqrt(b**2 + a * c)
    safe_a = jnp.where(a > 0, a, 1.0)
    eps = jnp.where(b >= 0, c / jnp.where(b + root > 0, b + root, 1.0), (root - b) / safe_a)
    ok = jnp.isfinite(eps) & (a > 0) & jnp.isfinite(a)
    return jnp.where(ok, jnp.clip(eps, step_min, step_max), step_max)


@dataclasses.dataclass(frozen=True)
class GaussNewton:
    """Gauss–Newton drift corrector for the fixed features of one path (see the module doc).

    Build it once per start latent with :meth:`at`; call it after each predictor step.
    """

    residual: Callable[[Array], Array]  # z [d] -> weighted deviation [m_fix]
    iters: int
    cg_iters: int

    @classmethod
    def at(
        cls,
        generator: Callable,
        fix: Sequence[Callable],
        weights: Sequence[float],
        normalize: bool,
        z0: Array,
        iters: int,
        cg_iters: int,
    ) -> GaussNewton:
        """The corrector holding ``fix`` at their values at ``z0 [d]``."""
        f = stacked_features(generator, fix)
        ref = jax.lax.stop_gradient(f(z0))
        image0 = generator(z0)
        sizes = [int(np.prod(jax.eval_shape(g, image0).shape)) for g in fix]
        w = jnp.asarray(weights, z0.dtype)
        if normalize and len(fix) > 1:
            w = w / _gram_norms(f, z0, sizes)
        root = jnp.sqrt(jnp.where(jnp.isfinite(w) & (w > 0), w, 0.0))
        rows = jnp.concatenate([jnp.full((s,), r) for s, r in zip(sizes, root, strict=True)])

        def residual(z):
            r = f(z) - ref
            return jnp.where(jnp.isfinite(r), r, 0.0) * rows

        return cls(residual, iters, cg_iters)

    def __call__(
        self, z: Array, v: Array, x0: Array, radius: Array | float = jnp.inf
    ) -> tuple[Array, Array, Array]:
        """Correct ``z [d]`` orthogonally to the unit direction ``v [d]``, each Gauss–Newton step
        at most ``radius`` long (the trust region; the predictor's step length in a traversal).

        Returns:
          ``(z_corrected [d], last correction [d] (the next warm start), rejected)`` where
          ``rejected`` is an int32 count of rejected Gauss–Newton iterations.
        """

        def proj(u):
            return u - v * jnp.dot(v, u)

        def iteration(carry, _):
            z, x, rejected = carry
            r, jvp = jax.linearize(self.residual, z)
            vjp = jax.linear_transpose(jvp, z)
            delta = _projected_cg(jvp, vjp, r, proj, proj(x), self.cg_iters, radius)
            z_new = z + delta
            before, after = jnp.sum(r**2), jnp.sum(self.residual(z_new) ** 2)
            ok = jnp.all(jnp.isfinite(z_new)) & jnp.isfinite(after) & (after < before)
            z = jnp.where(ok, z_new, z)
            x = jnp.where(ok, delta, jnp.zeros_like(delta))
            return (z, x, rejected + (~ok).astype(jnp.int32)), None

        init = (z, x0, jnp.zeros((), jnp.int32))
        (z, x, rejected), _ = jax.lax.scan(iteration, init, None, length=self.iters)
        return z, x, rejected


def _projected_cg(
    jvp: Callable,
    vjp: Callable,
    r: Array,
    proj: Callable,
    x0: Array,
    iters: int,
    radius: Array | float = jnp.inf,
) -> Array:
    """``iters`` conjugate-gradient iterations on ``P Jᵀ J P δ = −P Jᵀ r`` from ``x0 [d]``,
    inside the ball ``‖δ‖ ≤ radius`` (Steihaug's truncated CG: the first iterate that would
    leave the ball stops on its boundary; a warm start outside it is scaled into it).

    One JVP/VJP pair per iteration, at ONE call site (a ``fori_loop`` of ``iters + 1`` passes:
    pass 0 applies the operator to ``x0`` with ``r`` added, ``P Jᵀ (J P x0 + r)``, which is the
    initial residual's negative), so the generator's linearisation is compiled once. Stops
    updating once the residual has fallen by 1e-5 (in norm) from its start.

    Why the ball: ``Jᵀ J`` of a generator is badly conditioned, and CG's later iterates grow
    along its weakly observed directions, where the linearisation no longer holds (on the rooms
    GAN, unbounded corrections were 10–100× the predictor's step and raised the residual).
    """
    radius = jnp.asarray(radius, x0.dtype)
    x_norm = jnp.linalg.norm(x0)
    x0 = x0 * jnp.minimum(1.0, 0.5 * radius / jnp.where(x_norm > 0, x_norm, 1.0))

    def apply(u, extra):
        return proj(vjp(jvp(proj(u)) + extra)[0])

    def body(i, state):
        delta, res, p, rs, rs0, inside = state
        first = i == 0
        q = apply(jnp.where(first, delta, p), jnp.where(first, r, jnp.zeros_like(r)))
        pq = jnp.dot(p, q)
        go = inside & (pq > 0) & (rs > 1e-10 * rs0)
        alpha = jnp.where(go, rs / jnp.where(go, pq, 1.0), 0.0)
        step = delta + alpha * p
        out = go & (jnp.sum(step**2) > radius**2)
        # the boundary crossing ‖δ + τp‖ = radius, τ ≥ 0 (δ is inside, so one positive root)
        a, b, c = jnp.dot(p, p), jnp.dot(delta, p), jnp.dot(delta, delta) - radius**2
        tau = (-b + jnp.sqrt(jnp.maximum(b**2 - a * c, 0.0))) / jnp.where(a > 0, a, 1.0)
        delta_n = jnp.where(out, delta + tau * p, step)
        res_n = res - alpha * q
        rs_n = jnp.dot(res_n, res_n)
        p_n = res_n + jnp.where(go, rs_n / jnp.where(go, rs, 1.0), 0.0) * p
        rs_first = jnp.dot(q, q)
        return (
            delta_n,
            jnp.where(first, -q, res_n),
            jnp.where(first, -q, p_n),
            jnp.where(first, rs_first, rs_n),
            jnp.where(first, rs_first, rs0),
            inside & ~out,
        )

    zeros, zero = jnp.zeros_like(x0), jnp.zeros((), x0.dtype)
    init = (x0, zeros, zeros, zero, zero, jnp.ones((), bool))
    delta = jax.lax.fori_loop(0, iters + 1, body, init)[0]
    return proj(delta)


def _gram_norms(f: Callable, z0: Array, sizes: Sequence[int], probes: int = 8) -> Array:
    """Hutchinson estimates of ``‖A_k‖_F = ‖J_kᵀJ_k‖_F`` per fixed feature ``[K]`` at ``z0``."""
    _, jvp = jax.linearize(f, z0)
    vjp = jax.linear_transpose(jvp, z0)
    g = jax.random.normal(jax.random.key(0), (probes, z0.shape[0]), z0.dtype)
    jg = jax.vmap(jvp)(g)  # [s, m]
    _, est = hutchinson(lambda w: vjp(w)[0], jg, sizes, probes)
    return jnp.where(jnp.isfinite(est) & (est > 0), est, 1.0)
