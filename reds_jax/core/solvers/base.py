"""What every solver shares: the :class:`Solver` interface (``start`` / ``track``), what they
return (:class:`Start`, :class:`Step`), the :class:`Diagnostics` of a solve with its
:class:`RESULTS` status, and the argument checks and limits of the built-in solvers.
"""

from __future__ import annotations

import abc
import enum
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core import validate
from reds_jax.core.jacobians import MODES
from reds_jax.core.problem import Problem

Array = jax.Array


class RESULTS(enum.IntFlag):
    """The status of a solve, a step or a path: ``successful`` (0), or the OR of what happened.

    ``diagnostics.status`` holds these bits (int32) per solve; :attr:`Trajectories.status
    <reds_jax.core.path.Trajectories.status>` ORs them over a path. ``throw=True`` in
    :func:`~reds_jax.core.api.traverse` / :func:`~reds_jax.core.api.directions` raises
    instead of returning a result with any bit set.

    Attributes:
      successful: nothing to report.
      fallback: a documented fallback was taken (``solve_fallback``, ``kept_direction``,
        ``rejected_corrections``): the result is defined but not what the method asks for there.
      cap_reached: an iterative solve stopped at its iteration cap before its stopping rule
        (``capped_solves``; matrix-free with ``tol``).
      nonfinite: non-finite numbers were met and set aside (``nonfinite_jacobian``,
        ``skipped_iterations``).

    >>> RESULTS.describe(RESULTS.fallback | RESULTS.nonfinite)
    ['fallback', 'nonfinite']
    """

    successful = 0
    fallback = 1
    cap_reached = 2
    nonfinite = 4

    @classmethod
    def describe(cls, status: Any) -> list[str]:
        """Names of the bits set anywhere in ``status`` (an int or an int array; host side)."""
        bits = int(np.bitwise_or.reduce(np.ravel(np.asarray(status, np.int64)), initial=0))
        return [m.name for m in cls if m.value and bits & m.value]


# Which counts set which status bit (ridge_raised is routine in float32 and iterations is work).
_STATUS_OF = {
    "solve_fallback": RESULTS.fallback,
    "kept_direction": RESULTS.fallback,
    "rejected_corrections": RESULTS.fallback,
    "capped_solves": RESULTS.cap_reached,
    "nonfinite_jacobian": RESULTS.nonfinite,
    "skipped_iterations": RESULTS.nonfinite,
}


class Diagnostics(NamedTuple):
    """What a solve did: fallback counts, work done, its residual and its status (one pytree for
    every solver; read it by name).

    Shapes: per path ``[N, 2k]`` in :class:`~reds_jax.core.path.Trajectories` for the counts
    (:data:`COUNTS`, summed over the solves of a path; the start solve counts on every path of its
    latent), per step ``[N, 2k, T+1]`` for ``residual`` and ``status`` (:data:`PER_STEP`); per
    start latent ``[N]`` in :class:`~reds_jax.core.api.Directions` (leading ``N`` dropped for
    one latent ``[d]``). Counts are int32. All counts zero on a healthy traversal (in float64; in
    float32 the ridge floor can exceed a small ``ridge``).

    Attributes:
      nonfinite_jacobian: non-finite Jacobian entries (dense) or Gram-vector product entries
        (matrix-free) that were set to zero.
      ridge_raised: solves whose ridge was raised to the precision floor
        (:func:`~reds_jax.core.linalg.safe_ridge`).
      solve_fallback: solves that fell back: the whitened Rayleigh solve (or the matrix-free start
        factor) was not finite and the ``maxc`` directions were used; the fixed Grams were exactly
        zero (nothing to hold fixed: the answer is ``maxc``'s); a matrix-free tracking solve was
        not finite and the previous block was kept.
      kept_direction: ``local`` steps whose projection onto the new span vanished or was not
        finite, so the previous direction was kept.
      skipped_iterations: LOBPCG iterations skipped because their Rayleigh-Ritz step was not
        finite (matrix-free; zero for dense).
      rejected_corrections: corrector iterations whose step did not reduce the fixed features'
        deviation or was not finite, so the latent was kept.
      capped_solves: iterative solves stopped by their iteration cap (``cold_iters`` at the
        start, ``max_iters`` along a path) before their stopping rule (matrix-free with ``tol``
        or ``cold_tol``; zero for dense).
      iterations: LOBPCG iterations run (matrix-free: the start solve's and every tracking
        step's, summed like the counts; zero for dense).
      residual: float, relative Ritz residual ``max_i ‖A xᵢ − θᵢ B xᵢ‖·‖xᵢ‖ / (|θᵢ|·xᵢᵀBxᵢ)``
        over the top-``k`` block of the solve at each latent, measured before LOBPCG's last
        iteration (matrix-free; zero for dense, and where no solve ran: the last latent, and every
        latent after the start of a ``linear`` path).
      status: int32 :class:`RESULTS` bits of the solve (and step) at each latent.
    """

    nonfinite_jacobian: Array
    ridge_raised: Array
    solve_fallback: Array
    kept_direction: Array
    skipped_iterations: Array
    rejected_corrections: Array
    capped_solves: Array
    iterations: Array
    residual: Array
    status: Array

    @classmethod
    def zeros(cls, dtype) -> Diagnostics:
        """Scalars of one solve where nothing happened."""
        zero = jnp.zeros((), jnp.int32)
        return cls(**dict.fromkeys(COUNTS, zero), residual=jnp.zeros((), dtype), status=zero)

    def counts(self) -> dict[str, Array]:
        """The count fields (:data:`COUNTS`) by name."""
        return {f: getattr(self, f) for f in COUNTS}

    def plus(self, other: Diagnostics) -> Diagnostics:
        """The counts of both added (``residual`` and ``status`` are ``self``'s)."""
        return self._replace(**{f: getattr(self, f) + getattr(other, f) for f in COUNTS})

    def with_status(self) -> Diagnostics:
        """``status`` set from this solve's counts (the :class:`RESULTS` bits they imply)."""
        status = jnp.zeros((), jnp.int32)
        for name, bit in _STATUS_OF.items():
            status = status | jnp.where(getattr(self, name) > 0, int(bit), 0).astype(jnp.int32)
        return self._replace(status=status)

    def nonzero(self) -> dict[str, int]:
        """Totals of the non-zero fallback counts (:data:`FALLBACKS`, host side), e.g. for a
        warning line."""
        counts = {f: int(np.sum(np.asarray(getattr(self, f)))) for f in FALLBACKS}
        return {f: c for f, c in counts.items() if c}


PER_STEP = ("residual", "status")  # Diagnostics fields with a step axis in a traversal
COUNTS = tuple(f for f in Diagnostics._fields if f not in PER_STEP)  # summed along a path
# Counts of things that went wrong (for warnings): not work (iterations), nor a designed stop
# (capped_solves: with tol the cap is part of the rule; its RESULTS bit still reports it).
FALLBACKS = tuple(f for f in COUNTS if f not in ("iterations", "capped_solves"))


def as_flag(x: Array) -> Array:
    return jnp.asarray(x, jnp.int32)


class Start(NamedTuple):
    """A start solve: ``values [k]``, unit ``vectors [k, d]``, the ``context`` shared by the paths
    of the latent, the ``state`` each path carries and the solve's :class:`Diagnostics`."""

    values: Array
    vectors: Array
    context: Any
    state: Any
    diagnostics: Diagnostics


class Step(NamedTuple):
    """A tracking solve: ``rows [s, d]`` and ``span [s]`` (0/1) of the new span, the new
    ``state`` and the solve's :class:`Diagnostics`."""

    rows: Array
    span: Array
    state: Any
    diagnostics: Diagnostics


class Solver(abc.ABC):
    """The interface a traversal needs of a solver; subclass it (as a frozen dataclass, so it is
    hashable) to bring your own.

    >>> import dataclasses, jax.numpy as jnp
    >>> @dataclasses.dataclass(frozen=True)
    ... class Axes(Solver):  # the first k coordinate axes everywhere
    ...     def start(self, problem, z, key):
    ...         rows = jnp.eye(z.shape[0], dtype=z.dtype)[: problem.k]
    ...         zeros = jnp.zeros(problem.k, z.dtype)
    ...         return Start(zeros, rows, None, None, Diagnostics.zeros(z.dtype))
    ...     def track(self, problem, context, z, state, key):
    ...         rows = jnp.eye(z.shape[0], dtype=z.dtype)[: problem.k]
    ...         ones = jnp.ones(problem.k, z.dtype)
    ...         return Step(rows, ones, state, Diagnostics.zeros(z.dtype))
    >>> hash(Axes()) == hash(Axes())
    True
    """

    @abc.abstractmethod
    def start(self, problem: Problem, z: Array, key: Array) -> Start:
        """Top-``k`` directions at the start latent ``z [d]`` (see :class:`Start`)."""

    @abc.abstractmethod
    def track(self, problem: Problem, context: Any, z: Array, state: Any, key: Array) -> Step:
        """The span at a later latent ``z`` of a ``local`` path (see :class:`Step`)."""

    def check(self, problem: Problem) -> None:  # noqa: B027 - optional hook
        """Raise a ValueError naming what to change if ``problem`` cannot be solved (default:
        every problem can)."""

    def for_step(self, size: float) -> Solver:
        """This solver for a traversal whose largest step is ``size`` (default: unchanged)."""
        del size
        return self

    def span_rank(self, problem: Problem, z: Array, key: Array) -> Array | None:
        """Rows of the method's own span at the start latent ``z`` (``Problem(cap_k=True)`` cuts
        ``k`` to it), or None when the solver does not know it (default: ``k`` is not cut)."""
        del problem, z, key


def count_arg(x: Any, name: str, lo: int) -> int:
    """A solver field: an int ``>= lo``, and at most its :data:`~reds_jax.core.validate.BOUNDS` entry if any."""
    return validate.integer(x, name, lo, validate.BOUNDS.get(name, math.inf))


def check_jacobian_options(mode: Any, chunk_size: Any) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a Jacobian mode; pass one of {MODES}.")
    if chunk_size is not None:
        count_arg(chunk_size, "chunk_size", 1)


MEMORY_BUDGET = 2**31  # bytes of Jacobian working memory per latent (Dense.memory_budget)
DENSE_MAX_D = 4096  # the largest d a dense [d, d] solve is attempted at (Dense.max_d)


def check_dense_size(d: int, max_d: int | None, who: str, force: str) -> None:
    """Refuse a dense ``[d, d]`` solve above ``max_d`` with an error that names the way out.

    Raises:
      ValueError: ``d > max_d``.
    """
    if max_d is not None and d > max_d:
        gb = d * d * 4 / 2**30
        raise ValueError(
            f"{who} at latent size d={d} builds [{d}, {d}] Grams ({gb:.2g} GB each in float32) "
            f"from {d} Jacobian columns and runs a dense [{d}, {d}] eigen-solve at every latent: "
            f"minutes per step. Use solver=reds_jax.MatrixFree() (Gram-vector products, no "
            f"[d, d] array), or {force}."
        )
