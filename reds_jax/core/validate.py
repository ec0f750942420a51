"""Argument checks shared by the public entry points: clear ``ValueError``s before any tracing.

Each check names the argument and says what to pass instead. They run once, where a value enters
(:func:`reds_jax.directions`, :func:`reds_jax.traverse`, the job config), never inside ``jit``.

Every count and magnitude a user can pass has an upper bound (:data:`BOUNDS`), checked where it
enters (the library's objects, the command line, TOML jobs, ``--option``, the explorer), so no input
makes a call run for hours or allocate without limit. Tolerances lie in (0, 1)
(:func:`tolerance`). This module imports jax only when a check needs it (the command line's parser
reads :data:`BOUNDS` without it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jax

__all__ = [
    "BOUNDS",
    "available_memory",
    "bounded",
    "check_memory",
    "feature_shape",
    "flag",
    "integer",
    "number",
    "tolerance",
]

BOUNDS: dict[str, int] = {
    "iters": 10_000,  # LOBPCG iterations of one tracking step (MatrixFree.iters)
    "max_iters": 10_000,  # MatrixFree.max_iters: the cap of an adaptive tracking step
    "cold_iters": 10_000,  # MatrixFree.cold_iters: the start solve
    "guard": 1_024,  # extra LOBPCG block rows
    "probes": 4_096,  # Gaussian probes of the iterative cold start (Nystrom rank)
    "sketch": 1 << 20,  # rows of a fixed feature's sketch
    "correct": 100,  # corrector (Gauss-Newton) iterations per step
    "cg_iters": 1_000,  # conjugate-gradient iterations per corrector iteration
    "steps": 1_000_000,  # steps per path
    "stages": 16,  # composed stages of one feature spec (A@B@...)
    "scale": 64,  # PNG upscaling of a grid
}
"""The largest value each count may take (name -> bound), whatever the entry point."""


def integer(value: Any, name: str, low: int, high: float = math.inf) -> int:
    """``value`` as an int in ``[low, high]``; bools, floats and strings are refused.

    >>> integer(3, "k", 1)
    3
    >>> integer(True, "k", 1)
    Traceback (most recent call last):
    ...
    ValueError: k must be an int >= 1; got True (a bool). Pass a whole number, e.g. k=1.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        what = " (a bool)" if isinstance(value, bool | np.bool_) else ""
        raise ValueError(
            f"{name} must be an int >= {low}{_upto(high)}; got {value!r}{what}. Pass a whole "
            f"number, e.g. {name}={low}."
        )
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be an int >= {low}{_upto(high)}; got {value!r}.")
    return int(value)


def number(
    value: Any, name: str, *, low: float = -math.inf, high: float = math.inf, open_low=False
) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` if ``open_low``).

    Strings (``"0.1"``), bools, arrays with more than one element, NaN and inf are refused.

    >>> number(0.5, "step_size", low=0.0, open_low=True)
    0.5
    >>> number("0.1", "step_size", low=0.0, open_low=True)
    Traceback (most recent call last):
    ...
    ValueError: step_size must be a finite number > 0; got '0.1' (a str). Pass a number, e.g. step_size=0.1.
    """
    lo = f"> {low:g}" if open_low else f">= {low:g}"
    rng = "" if low == -math.inf else f" {lo}"
    rng += "" if high == math.inf else f" and <= {high:g}"
    bad = isinstance(value, bool | np.bool_ | str | bytes) or np.ndim(value) != 0
    x = math.nan
    if not bad:
        try:
            x = float(value)
        except (TypeError, ValueError):
            bad = True
    if bad:
        raise ValueError(
            f"{name} must be a finite number{rng}; got {value!r} (a {type(value).__name__}). "
            f"Pass a number, e.g. {name}=0.1."
        )
    if not math.isfinite(x) or x < low or x > high or (open_low and x == low):
        raise ValueError(f"{name} must be a finite number{rng}; got {value!r}.")
    return x


def flag(value: Any, name: str) -> bool:
    """``value`` as a bool: only ``True``/``False`` (``"no"`` would silently be True).

    >>> flag(False, "normalize")
    False
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


def _upto(high: float) -> str:
    if high == math.inf:
        return ""
    return f" and <= {int(high)}" if float(high).is_integer() else f" and <= {high:g}"


def bounded(value: Any, name: str, low: int) -> int:
    """:func:`integer` with the upper bound :data:`BOUNDS` gives ``name``.

    >>> bounded(8, "cg_iters", 1)
    8
    >>> bounded(10**9, "correct", 0)
    Traceback (most recent call last):
    ...
    ValueError: correct must be an int >= 0 and <= 100; got 1000000000.
    """
    return integer(value, name, low, BOUNDS[name])


def tolerance(value: Any, name: str, meaning: str = "") -> float:
    """``value`` as a float in (0, 1): a relative tolerance or a sine (``meaning`` says which,
    e.g. ``"a relative Ritz residual, e.g. 1e-2"``).

    >>> tolerance(1e-2, "tol")
    0.01
    >>> tolerance(1.5, "turn_tol")
    Traceback (most recent call last):
    ...
    ValueError: turn_tol must be a finite number > 0 and < 1; got 1.5.
    """
    what = f" ({meaning})" if meaning else ""
    try:
        x = number(value, name, low=0.0, open_low=True, high=1.0)
    except ValueError:
        x = math.nan
    if not 0 < x < 1:
        raise ValueError(f"{name} must be a finite number > 0 and < 1{what}; got {value!r}.")
    return x


def feature_shape(
    feature: Callable, generator: Callable, z: jax.Array, name: str
) -> jax.ShapeDtypeStruct:
    """The output shape and dtype of ``feature(generator(z))`` for one latent ``z [d]``, checked.

    The feature is traced twice (abstractly, nothing runs; once per feature and image shape in a
    process): an error raised inside it is re-raised as a ``ValueError`` naming ``name``; its output
    must be one floating array (not a bool or int array, which has no derivative, nor a tuple or
    dict), with the same shape on every call.

    Args:
      feature: ``image -> array``.
      generator: ``z [d] -> image``.
      z: one latent ``[d]``.
      name: how the feature is named in errors, e.g. ``"vary[0]"``.

    Returns:
      The output's ``jax.ShapeDtypeStruct``.

    >>> import jax.numpy as jnp
    >>> feature_shape(lambda x: x[:2], lambda z: 2 * z, jnp.zeros(3), "vary[0]").shape
    (2,)
    """
    import jax

    image = jax.eval_shape(generator, z)
    args = (feature, name, tuple(image.shape), np.dtype(image.dtype))
    try:
        hash(args)
    except TypeError:  # an unhashable callable: checked on every call
        return _checked_output.__wrapped__(*args)
    return _checked_output(*args)


@functools.lru_cache(maxsize=64)  # holds the features it saw: keep it small
def _checked_output(feature: Callable, name: str, shape: tuple, dtype) -> jax.ShapeDtypeStruct:
    """:func:`feature_shape` for an image ``shape``/``dtype``; remembered per feature (a repeated
    ``traverse`` call with the same features does not trace them again)."""
    import jax

    image = jax.ShapeDtypeStruct(shape, dtype)

    def trace():
        try:
            return jax.eval_shape(lambda x: feature(x), image)  # a fresh function: not cached
        except Exception as err:  # noqa: BLE001 - re-raised with the argument's name
            raise ValueError(
                f"{name} raised {type(err).__name__} on an image of shape {shape} {dtype}: "
                f"{err}. A feature must be a pure JAX function image [H, W, C] -> array."
            ) from err

    out = trace()
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(
            f"{name} must return one array; got {jax.tree_util.tree_structure(out)}. Return "
            "a single array (concatenate the parts, e.g. jnp.concatenate([a.ravel(), b.ravel()]))."
        )
    if not np.issubdtype(out.dtype, np.floating):
        raise ValueError(
            f"{name} returns a {out.dtype} array, which has no derivative (its Jacobian would be "
            "zero); return floating values (e.g. x.astype(jnp.float32), or a soft score instead "
            "of a threshold)."
        )
    again = trace()
    if not isinstance(again, jax.ShapeDtypeStruct) or again.shape != out.shape:
        raise ValueError(
            f"{name} returns shape {tuple(out.shape)} on one call and "
            f"{getattr(again, 'shape', again)} on the next; a feature must be pure (no state "
            "that changes between calls)."
        )
    if 0 in out.shape:
        raise ValueError(f"{name} returns an empty array of shape {tuple(out.shape)}.")
    return out


@dataclasses.dataclass(frozen=True)
class InDtype:
    """``feature`` with its output cast to ``dtype`` (hashable: equal wrappers share compiles).

    Used for a feature whose floating output differs from the latents' dtype (a float16 or
    float32 feature of float64 latents), so Jacobians and Grams are in the latents' precision.
    """

    feature: Callable
    dtype: Any

    def __call__(self, x):
        import jax.numpy as jnp

        return jnp.asarray(self.feature(x)).astype(self.dtype)


def in_dtype(feature: Callable, out: jax.ShapeDtypeStruct, dtype: Any) -> Callable:
    """``feature`` itself when its output ``out`` is already in ``dtype``, else :class:`InDtype`.

    >>> import jax, jax.numpy as jnp
    >>> f = lambda x: x
    >>> in_dtype(f, jax.ShapeDtypeStruct((2,), jnp.float32), jnp.float32) is f
    True
    """
    return feature if out.dtype == dtype else InDtype(feature, np.dtype(dtype))


def available_memory() -> int | None:
    """Bytes free on the default device (an accelerator's limit, else the host's MemAvailable).

    Returns None where it cannot be told (no ``/proc/meminfo`` and no device statistics).
    """
    import jax

    device = jax.local_devices()[0]  # addressable: under jax.distributed devices()[0] may not be
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def check_memory(nbytes: float, what: str, fix: str, *, available: int | None = None) -> None:
    """Refuses up front a computation estimated to need more memory than is free.

    Args:
      nbytes: the estimate in bytes.
      what: what needs it, e.g. ``"traverse with k=8, steps=100000"``.
      fix: what to change, e.g. ``"lower k or steps"``.
      available: bytes free (default :func:`available_memory`).

    Raises:
      ValueError: ``nbytes`` exceeds the free memory; the message gives both in GB.

    >>> check_memory(1e3, "a tiny job", "nothing", available=10**6)
    """
    free = available_memory() if available is None else available
    if free is not None and nbytes > free:
        raise ValueError(
            f"{what} needs about {nbytes / 1e9:.3g} GB of memory but {free / 1e9:.3g} GB are "
            f"free; {fix}."
        )
