"""The path loop: one step rule (:func:`local_step`) and the traversal from one start latent
(:func:`traverse_one`, pure: ``vmap``/``jit`` it yourself; :func:`reds_jax.traverse` does).

Paths (for each of the top-``k`` directions at the start latent, with both signs: ``2k`` paths,
ordered ``[+v1, -v1, +v2, -v2, …]``):

* ``"linear"``: the start direction, unchanged: ``z_t = z_0 + t·ε·v`` with fixed steps.
* ``"local"``: after the first step, the solver re-solves at every latent
  (``solver.track``); the previous direction is projected onto the *span* it returns (the
  problem's ``local_span``), renormalised, and flipped if it turned backwards. If the projection
  vanishes or is not finite, the previous direction is kept (documented fallback, counted in
  ``diagnostics.kept_direction``). One rule, :func:`local_step`, for every solver.

A linear path is the same loop without tracking. Each step's length comes from the step
controller (:class:`~reds_jax.core.control.FixedStep`,
:class:`~reds_jax.core.control.FeatureStep`); an optional
:class:`~reds_jax.core.control.Corrector` moves each new latent back towards the fixed features'
start values.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from reds_jax.core.control import Corrector, FixedStep
from reds_jax.core.linalg import project
from reds_jax.core.problem import Problem
from reds_jax.core.solvers import Dense, Diagnostics, Solver
from reds_jax.core.validate import bounded

Array = jax.Array

__all__ = ["PATHS", "Trajectories", "check_path", "local_step", "traverse_one"]

PATHS = ("linear", "local")


class Trajectories(NamedTuple):
    """Traversals from start latents (leading ``N`` dropped when ``z0`` was one latent ``[d]``).

    Attributes:
      latents: ``[N, 2k, T+1, d]``; step 0 is ``z0``; paths ordered ``[+v1, -v1, +v2, -v2, …]``.
      vary_distances: one ``[N, 2k, T+1]`` array per varied feature: ``‖f(G(z_t)) − f(G(z_0))‖``
        (empty with ``distances=False``).
      fix_distances: one ``[N, 2k, T+1]`` array per fixed feature (empty with ``distances=False``).
      values: ``[N, k]`` scores of the start directions (see :class:`Directions`).
      diagnostics: :class:`~reds_jax.core.solvers.Diagnostics`, counts ``[N, 2k]`` per path,
        ``residual`` ``[N, 2k, T+1]``.
      step_lengths: ``[N, 2k, T]`` latent length ``ε_t`` of each predictor step (from the step
        controller; a corrector's move comes on top of it).
    """

    latents: Array
    vary_distances: tuple[Array, ...]
    fix_distances: tuple[Array, ...]
    values: Array
    diagnostics: Diagnostics | None = None
    step_lengths: Array | None = None

    @property
    def status(self) -> Array:
        """``[N, 2k]`` int32 :class:`~reds_jax.core.solvers.RESULTS` bits of each path: the OR of
        ``diagnostics.status`` over its steps (0: ``RESULTS.successful``)."""
        return jnp.bitwise_or.reduce(self.diagnostics.status, axis=-1)


def check_path(path: Any, steps: Any) -> int:
    """Validate ``path`` and ``steps`` (before tracing); returns ``steps`` as an int."""
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not a traversal path; pass one of {PATHS}.")
    return bounded(steps, "steps", 0)


def local_step(v: Array, rows: Array, span: Array | None = None) -> tuple[Array, Array]:
    """The local-path step rule: the new direction from the previous one and the new span.

    Projects ``v`` onto the span of ``rows`` (the ``span``-selected rows), renormalises, and flips
    the sign if it turned backwards (cosine < 0). Fallback: if the projection vanishes (norm
    ``<= 1e-8``) or is not finite, ``v`` is kept.

    Args:
      v: ``[d]`` previous unit direction.
      rows: ``[s, d]`` directions at the new latent.
      span: optional ``[s]`` 0/1 mask of the rows spanning the step.

    Returns:
      ``(v_new [d], kept)``: the new unit direction and an int32 flag (1 if ``v`` was kept).

    >>> v, kept = local_step(jnp.array([0.6, 0.8]), jnp.array([[-1.0, 0.0]]))
    >>> float(v[0]), float(abs(v[1])), int(kept)  # [0.6, 0] renormalised, sign kept
    (1.0, 0.0, 0)
    """
    p = project(v, rows, span)
    norm = jnp.linalg.norm(p)
    p = p / jnp.where(norm > 0, norm, jnp.ones_like(norm))
    p = jnp.where(jnp.dot(p, v) < 0, -p, p)
    ok = (norm > 1e-8) & jnp.all(jnp.isfinite(p))
    return jnp.where(ok, p, v), (~ok).astype(jnp.int32)


def _per_path(d: Diagnostics, paths: int) -> Diagnostics:
    """The counts of one solve broadcast to ``[paths]`` (the per-step fields are set later)."""
    return jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (paths,)), d)


def paths(
    problem: Problem,
    solver: Solver,
    path: str,
    steps: int,
    step: Any,
    corrector: Corrector | None,
    z0: Array,
    key: Array,
    distances: bool = True,
) -> Trajectories:
    """Paths from one latent, arguments already validated: :class:`Trajectories` without the
    leading ``N``."""
    k, gen = problem.k, problem.generator
    key0, key_paths = jax.random.split(key)
    start = solver.start(problem, z0, key0)
    signs = jnp.tile(jnp.asarray([1.0, -1.0], z0.dtype), k)
    v0 = jnp.repeat(start.vectors, 2, axis=0) * signs[:, None]  # [2k, d]
    d0 = start.diagnostics.with_status()
    res_start = jnp.zeros((steps + 1,), z0.dtype).at[0].set(d0.residual)
    status_start = jnp.zeros((steps + 1,), jnp.int32).at[0].set(d0.status)
    if (path == "linear" or steps < 2) and getattr(step, "constant", False) and corrector is None:
        size = jnp.asarray(step.max_size, z0.dtype)
        t = jnp.arange(steps + 1, dtype=z0.dtype) * size
        latents = z0[None, None, :] + t[None, :, None] * v0[:, None, :]
        counts = _per_path(d0, 2 * k)
        residual = jnp.broadcast_to(res_start, (2 * k, steps + 1))
        status = jnp.broadcast_to(status_start, (2 * k, steps + 1))
        lengths = jnp.broadcast_to(size, (2 * k, steps))
    else:
        step_state = step.init(problem, z0)
        correct = None if corrector is None else corrector.at(problem, z0)

        def advance(z, v, x, t):
            """One predictor (+ corrector) step from ``z`` along ``v``: ``(z', x', ε, rejected)``."""
            eps = jnp.asarray(step.length(problem, z, v, step_state, t), z0.dtype)
            z_new = z + eps * v
            rejected = jnp.zeros((), jnp.int32)
            if correct is not None:
                z_new, x, rejected = correct(z_new, v, x, eps)
            return z_new, x, eps, rejected

        tracked = path == "local"

        def one_path(v, pkey):
            def track(z, v, state, t):
                new = solver.track(problem, start.context, z, state, jax.random.fold_in(pkey, t))
                v_new, kept = local_step(v, new.rows, new.span)
                return v_new, new.state, new.diagnostics._replace(kept_direction=kept)

            def keep(z, v, state, t):  # step 0 walks the start direction
                return v, state, Diagnostics.zeros(z0.dtype)

            # One scan over all T steps, so the predictor/corrector (and the tracking solve) are
            # traced and compiled once; `t` is not batched, so the cond stays a branch under vmap.
            def step(carry, t):
                z, v, state, counts, x = carry
                if tracked:
                    v_new, state, info = jax.lax.cond(t > 0, track, keep, z, v, state, t)
                else:
                    v_new, info = v, Diagnostics.zeros(z0.dtype)
                z_new, x, eps, rejected = advance(z, v_new, x, t)
                info = info._replace(rejected_corrections=rejected).with_status()
                out = (z_new, info.residual, info.status, eps)
                return (z_new, v_new, state, counts.plus(info), x), out

            init = (z0, v, start.state, d0, jnp.zeros_like(z0))
            (_, _, _, counts, _), (zs, res, st, eps) = jax.lax.scan(step, init, jnp.arange(steps))
            latents = jnp.concatenate([z0[None], zs], axis=0)
            residual = res_start.at[1:steps].set(res[1:]) if tracked else res_start
            status = status_start.at[:steps].set(status_start[:steps] | st)
            return latents, counts, residual, status, eps

        if steps == 0:
            latents = jnp.broadcast_to(z0, (2 * k, 1, z0.shape[0]))
            counts = _per_path(d0, 2 * k)
            residual = jnp.broadcast_to(res_start, (2 * k, 1))
            status = jnp.broadcast_to(status_start, (2 * k, 1))
            lengths = jnp.zeros((2 * k, 0), z0.dtype)
        else:
            keys = jax.random.split(key_paths, 2 * k)
            latents, counts, residual, status, lengths = jax.vmap(one_path)(v0, keys)
    diagnostics = counts._replace(residual=residual, status=status)

    vary_d, fix_d = (), ()
    if distances:
        # One generator pass per frame serves every feature. The reference and the path points
        # go through one batched program: an unbatched ``feature(gen(z0))`` rounds differently
        # from its batched twin (≈ 1e-7 at t = 0 on CPU). Every path starts at z0 exactly, so
        # t = 0 is set to 0, not measured.
        feats = problem.vary + problem.fix
        flat = latents.reshape(-1, latents.shape[-1])
        values = jax.vmap(lambda z: (lambda img: [jnp.ravel(f(img)) for f in feats])(gen(z)))(flat)
        dists = tuple(
            jnp.linalg.norm(v - v[:1], axis=-1).reshape(latents.shape[:2]).at[:, 0].set(0.0)
            for v in values
        )
        vary_d, fix_d = dists[: len(problem.vary)], dists[len(problem.vary) :]
    return Trajectories(latents, vary_d, fix_d, start.values, diagnostics, lengths)


def traverse_one(
    problem: Problem,
    z0: Array,
    key: Array,
    *,
    solver: Solver = Dense(),
    path: str = "local",
    steps: int = 10,
    step: Any = FixedStep(),
    corrector: Corrector | None = None,
    distances: bool = True,
) -> Trajectories:
    """The traversal from ONE start latent: pure, no ``vmap``/``jit``/sharding inside.

    ``jax.jit(jax.vmap(...))`` it yourself (as :class:`reds_jax.jobs.experiment.Experiment` does);
    the arguments are validated from shapes only (the latent's values are not checked: pass finite
    ones), and ``Problem(cap_k=True)`` does not apply (the shapes are fixed).
    :func:`reds_jax.traverse` is this function vmapped, jitted and sharded.

    Args:
      problem: the :class:`~reds_jax.core.problem.Problem`.
      z0: ``[d]`` start latent.
      key: PRNG key of this latent.
      solver: see :func:`reds_jax.traverse`.
      path: see :func:`reds_jax.traverse`.
      steps: see :func:`reds_jax.traverse`.
      step: see :func:`reds_jax.traverse` (the step controller's numbers may be traced).
      corrector: see :func:`reds_jax.traverse`.
      distances: see :func:`reds_jax.traverse`.

    Returns:
      :class:`Trajectories` without the leading ``N``: ``latents [2k, T+1, d]``, distances
      ``[2k, T+1]``, ``values [k]``, diagnostics counts ``[2k]`` (``residual``, ``status``
      ``[2k, T+1]``).

    >>> import jax, jax.numpy as jnp
    >>> from reds_jax import features
    >>> g = lambda z: jnp.reshape(jnp.stack([z[0], 2.0 * z[1], z[0] + z[1]]), (1, 3, 1))
    >>> problem = Problem(g, vary=features.pixels(), method="maxc")
    >>> one = lambda z: traverse_one(problem, z, jax.random.key(0), steps=2, distances=False)
    >>> jax.jit(jax.vmap(one))(jnp.zeros((5, 2))).latents.shape
    (5, 2, 3, 2)
    """
    z0 = jnp.asarray(z0)
    if z0.ndim != 1:
        raise ValueError(f"z0 must be one latent of shape [d]; got shape {z0.shape}.")
    problem, solver, steps = prepare(problem, z0, solver, path, steps, step, corrector)
    return paths(problem, solver, path, steps, step, corrector, z0, key, distances)


def prepare(
    problem: Any, z: Array, solver: Any, path: Any, steps: Any, step: Any, corrector: Any
) -> tuple[Problem, Solver, int]:
    """The checks of a traversal's arguments (before tracing): ``(problem checked at z, the
    solver for this step size, steps)``."""
    if not isinstance(problem, Problem):
        raise ValueError(
            f"problem must be a reds_jax.Problem(generator, vary=..., fix=...); got {problem!r}."
        )
    if not isinstance(solver, Solver):
        raise ValueError(
            f"solver must be a reds_jax.Solver (reds_jax.Dense(), reds_jax.MatrixFree(), or your "
            f"own subclass); got {solver!r}."
        )
    steps = check_path(path, steps)
    if not all(hasattr(step, name) for name in ("init", "length", "max_size")):
        raise ValueError(
            f"step must be a step controller, reds_jax.FixedStep(size) or "
            f"reds_jax.FeatureStep(target, max_size=...); got {step!r}."
        )
    if corrector is not None:
        if not isinstance(corrector, Corrector):
            raise ValueError(
                f"corrector must be None or reds_jax.Corrector(iters=...); got {corrector!r}."
            )
        corrector.check(problem)
    solver.check(problem)
    return problem.at(z), solver.for_step(step.max_size), steps
