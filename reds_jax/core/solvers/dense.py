"""The dense solver: exact Grams and a dense eigen-solve at every latent (every method)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from reds_jax.core import rayleigh
from reds_jax.core.jacobians import auto_chunk_size, feature_grams, point_mode
from reds_jax.core.problem import Problem
from reds_jax.core.solvers.base import (
    DENSE_MAX_D,
    MEMORY_BUDGET,
    Diagnostics,
    Solver,
    Start,
    Step,
    as_flag,
    check_dense_size,
    check_jacobian_options,
    count_arg,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Dense(Solver):
    """Exact Grams and a dense eigen-solve at every latent (every method).

    Memory: the unchunked Jacobian of the features through the generator takes what XLA's
    compiled program for one latent holds (its ``memory_analysis()``, asked only when a cheap
    upper bound from the jaxpr is over budget, once per generator and shape; see
    :func:`reds_jax.core.jacobians.jacobian_bytes`). When that exceeds ``memory_budget`` bytes
    and no ``chunk_size`` is given, the tangents are split into chunks that fit
    (:func:`reds_jax.core.jacobians.auto_chunk_size`); a chunked forward Jacobian costs the same
    per tangent as an unchunked one. ``N`` latents under ``vmap`` use ``N`` times the budget.

    Args:
      mode: Jacobian mode (``"auto"``, ``"fwd"``, ``"rev"``, ``"fd"``, ``"fd_forward"``: see
        :func:`reds_jax.core.jacobians.jacobian`; or ``"fd_official"``, the reference code's
        scheme: central differences at the start latent, forward differences along a path, both
        with step ``eps``).
      chunk_size: accumulate each Gram in blocks of this many tangents (bounded memory), or None
        (automatic under ``memory_budget``).
      eps: finite-difference step, or None (default): 1e-3, and with ``mode="fd_official"``
        in a traversal its largest step (:meth:`for_step`), as the reference does.
      memory_budget: bytes of Jacobian working memory per latent before chunking automatically
        (default 2 GiB), or None (never chunk automatically).
      max_d: refuse latent sizes above this (default 4096) with an error that names
        :class:`MatrixFree`: a dense ``[d, d]`` solve per latent takes minutes there. None: no
        limit.

    >>> Dense(chunk_size=16).chunk_size
    16
    """

    mode: str = "auto"
    chunk_size: int | None = None
    eps: float | None = None
    memory_budget: int | None = MEMORY_BUDGET
    max_d: int | None = DENSE_MAX_D

    def __post_init__(self):
        check_jacobian_options(self.mode, self.chunk_size)
        if self.memory_budget is not None:
            count_arg(self.memory_budget, "memory_budget", 1)
        if self.max_d is not None:
            count_arg(self.max_d, "max_d", 1)
        ok = isinstance(self.eps, int | float) and not isinstance(self.eps, bool)
        if self.eps is not None and not (ok and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0 or None; got {self.eps!r}.")

    def for_step(self, size: float) -> Dense:
        """``mode="fd_official"`` with ``eps=None``: the difference step is the traversal's step
        size (the reference's scheme); an explicit ``eps`` is kept."""
        concrete = isinstance(size, int | float) and not isinstance(size, bool)
        if self.mode == "fd_official" and self.eps is None and concrete:
            return dataclasses.replace(self, eps=float(size))
        return self

    def span_rank(self, problem: Problem, z: Array, key: Array) -> Array:
        """Rows of the method's own span (its mask) at the start latent ``z``."""
        return jnp.sum(self.system(problem, z, key, at_start=True)[2])

    def system(self, problem: Problem, z: Array, key: Array, at_start: bool = True):
        """Full sorted system at one latent: ``values [d]``, ``vectors [d, d]``, ``span [d]`` (the
        method's own span mask) and the :class:`Diagnostics` of the solve. ``at_start``: whether
        ``z`` is a start latent (``mode="fd_official"`` differs there)."""
        d = z.shape[0]
        info = Diagnostics.zeros(z.dtype)
        span = jnp.ones((d,), z.dtype)
        if problem.method == "random":
            values, vectors = rayleigh.random_system(key, d, z.dtype, problem.random_dist)
            return values, vectors, span, info
        method, vary, fix = problem.method, problem.vary, problem.fix
        feats = (vary if method != "minf" else ()) + (fix if method != "maxc" else ())
        check_dense_size(d, self.max_d, "Dense", "pass Dense(max_d=None) to force it")
        eps = 1e-3 if self.eps is None else self.eps
        mode, eps = point_mode(self.mode, eps, None, at_start)
        chunk = self.chunk_size
        if chunk is None and self.memory_budget is not None and not mode.startswith("fd"):
            chunk = auto_chunk_size(problem.generator, feats, z, mode, self.memory_budget)
        grams, bad = feature_grams(
            problem.generator, feats, z, mode=mode, chunk_size=chunk, eps=eps, count=True
        )
        info = info._replace(nonfinite_jacobian=bad)
        if problem.gram_noise:  # the reference's noise before normalising, seeded by `key`
            noise = jax.random.normal(jax.random.fold_in(key, 7), grams.shape, z.dtype)
            grams = grams + problem.gram_noise * noise
        if problem.normalize:
            grams = jax.vmap(rayleigh.normalize_gram)(grams)
        n_vary = 0 if method == "minf" else len(vary)
        a_vary = jnp.einsum("k,kij->ij", jnp.asarray(problem.vary_weights, z.dtype), grams[:n_vary])
        a_fix = grams[n_vary:]
        weights = jnp.asarray(problem.weights, z.dtype)
        nothing_fixed = as_flag(~jnp.any(a_fix != 0)) if fix else info.solve_fallback
        beta_fix = jnp.asarray(problem.beta_fix, z.dtype)
        if method == "maxc":
            values, vectors = rayleigh.maxc_system(a_vary)
            span = rayleigh.beta_span(values, span, problem.beta_vary)
        elif method == "minf" and problem.minf_mode == "union":
            values, vectors, span = rayleigh.minf_union_system(a_fix, weights, beta_fix=beta_fix)
            info = info._replace(solve_fallback=nothing_fixed)
        elif method == "minf":
            values, vectors = rayleigh.minf_system(a_fix, weights)
            info = info._replace(solve_fallback=nothing_fixed)
        elif method == "nullspace":
            values, vectors, span = rayleigh.nullspace_system(
                a_vary, a_fix, beta_fix=beta_fix, beta_vary=problem.beta_vary
            )
            info = info._replace(solve_fallback=nothing_fixed)
        else:
            b = jnp.einsum("k,kij->ij", weights, a_fix) if fix else jnp.zeros((d, d), z.dtype)
            values, vectors, lam, fell_back = rayleigh.rayleigh_solve(
                a_vary, b, ridge=problem.ridge
            )
            nothing_fixed = as_flag(~jnp.any(b != 0))
            info = info._replace(
                ridge_raised=as_flag(lam > jnp.asarray(problem.ridge, z.dtype)),
                solve_fallback=as_flag(fell_back) | nothing_fixed,
            )
        return values, vectors, span, info

    def start(self, problem: Problem, z: Array, key: Array) -> Start:
        """Top-``k`` directions at the start latent ``z [d]`` (see :class:`Start`)."""
        values, vectors, _, info = self.system(problem, z, key)
        return Start(values[: problem.k], vectors[: problem.k], None, None, info)

    def track(self, problem: Problem, context: Any, z: Array, state: Any, key: Array) -> Step:
        """The span at a later latent ``z`` of a ``local`` path (see :class:`Step`)."""
        del context
        _, vectors, span, info = self.system(problem, z, key, at_start=False)
        rows = problem.rows(z.shape[0])
        return Step(vectors[:rows], span[:rows], state, info)
