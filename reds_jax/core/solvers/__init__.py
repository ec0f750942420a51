"""Solvers: how a traversal finds the top-``k`` directions at a latent.

A solver is a frozen, hashable dataclass (part of the jit cache key) that subclasses
:class:`Solver` and implements its two operations (:mod:`reds_jax.core.path` applies the one
local-path step rule to what they return; it never asks which solver it holds):

* ``start(problem, z, key) -> Start``: the top-``k`` directions at a start latent, a *context*
  shared by the ``2k`` paths of that latent, the *state* each path carries, and the
  :class:`Diagnostics` of the solve.
* ``track(problem, context, z, state, key) -> Step``: at a later latent of a ``local`` path, the
  rows whose span the previous direction is projected onto, the new state and the diagnostics.

and may override ``check`` (refuse a problem it cannot solve), ``for_step`` (adapt to the
traversal's step size) and ``span_rank`` (for ``Problem(cap_k=True)``).

:class:`Dense` recomputes exact Grams and solves the dense system at every latent (any method).
:class:`MatrixFree` (``reds``/``maxc``) solves the same Rayleigh form from Gram-vector products
and a warm-started block LOBPCG (:mod:`reds_jax.core.matrix_free`, :mod:`reds_jax.core.lobpcg`);
its ``track`` iterates until the relative Ritz residual meets ``tol`` (or the turn rule stops it),
at most ``max_iters`` times per step (``tol=None``: a fixed ``iters``).

>>> MatrixFree(iters=3).iters, Dense().mode
(3, 'auto')
"""

from reds_jax.core.solvers.base import (
    COUNTS,
    DENSE_MAX_D,
    FALLBACKS,
    MEMORY_BUDGET,
    PER_STEP,
    RESULTS,
    Diagnostics,
    Solver,
    Start,
    Step,
    check_dense_size,
)
from reds_jax.core.solvers.dense import Dense
from reds_jax.core.solvers.matrix_free import COLD_STARTS, PRECONDS, TURN_TOL, MatrixFree, MFContext

__all__ = [
    "COLD_STARTS",
    "COUNTS",
    "DENSE_MAX_D",
    "FALLBACKS",
    "MEMORY_BUDGET",
    "PER_STEP",
    "PRECONDS",
    "RESULTS",
    "TURN_TOL",
    "Dense",
    "Diagnostics",
    "MFContext",
    "MatrixFree",
    "Solver",
    "Start",
    "Step",
    "check_dense_size",
]
