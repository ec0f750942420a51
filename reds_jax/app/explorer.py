"""The interactive explorer's logic, free of any web framework (the page is :mod:`reds_jax.app.ui`).

One :class:`Explorer` lives in the server process. It keeps the loaded models, their parsed
features (one object per spec string, so JAX's compile cache recognises them) and jitted renderers,
and turns the page's inputs (:class:`Inputs`, plain strings and numbers) into a validated
:class:`reds_jax.jobs.experiment.JobConfig` and then into exactly the library call
``reds_jax.traverse(problem, z0, ...)`` (the job config's objects, :meth:`JobConfig.traverse_args
<reds_jax.jobs.config.JobConfig.traverse_args>`) with the start latent and PRNG key that
``reds-jax traverse --seeds SEED`` uses. A new step size or seed reuses the compiled traversal
(``step_size`` and the start latent are traced arguments of the compiled function); only a new
model, feature, method, path, ``k``, ``steps``, solver or option compiles.

Exports (:meth:`Explorer.export`): the PNG grid, ``traversals.npz`` in the layout ``reds-jax
traverse`` writes, ``job.toml`` (a :class:`~reds_jax.jobs.experiment.JobConfig` for ``--config``)
and the equivalent command line. Every bad input raises :class:`AppError` with a message for the
page.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import json
import math
import os
import pathlib
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import reds_jax
from reds_jax import imageio
from reds_jax.app import access
from reds_jax.app.access import AccessError, Allowed
from reds_jax.core import presets
from reds_jax.core.path import PATHS
from reds_jax.core.problem import METHODS
from reds_jax.jobs import models
from reds_jax.jobs.config import SOLVERS, ConfigError, JobConfig
from reds_jax.jobs.experiment import DIAGNOSTICS_PREFIX

__all__ = [
    "FACE_FEATURES",
    "METHOD_CHOICES",
    "AppError",
    "Explorer",
    "Inputs",
    "Result",
    "box_text",
    "click_box",
    "command_line",
    "distance_table",
    "feature_kinds",
    "feature_spec",
    "model_choice",
    "parse_box",
    "toml_job",
]

METHOD_CHOICES: tuple[str, ...] = tuple(METHODS) + tuple(presets.PRESETS)
"""Methods offered on the page; a preset name (``official``: the reference code's defaults, see
:mod:`reds_jax.core.presets`) runs ``preset = NAME`` with the preset's method."""
PATH_CHOICES: tuple[str, ...] = tuple(PATHS)
SOLVER_CHOICES: tuple[str, ...] = tuple(SOLVERS)
FACE_FEATURES = ("identity", "landmarks", "age", "gender")
"""Feature specs that need a face generator (offered for ``faces`` and StyleGAN2 checkpoints)."""
MAX_K = 8
MAX_STEPS = 64
MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 50_000_000
MAX_SECONDS = 300.0
"""Default wall-clock limit of one run or inversion (``reds-jax app --max-seconds``)."""
MAX_CORRECT = 16
"""Most corrector iterations per step on the page."""
PAGE_BOUNDS = {"iters": 64, "max_iters": 64, "cold_iters": 500, "guard": 16, "probes": 256}
"""Tighter bounds on the page's solver options than the library's
(:data:`reds_jax.core.validate.BOUNDS`): a run shares the server."""
STYLEGAN2_FACTORY = access.STYLEGAN2_FACTORY
OUT = "reds_jax_traverse"
DISPLAY = 256  # pixels of the start image and the scrubbed frame on the page


class AppError(ValueError):
    """A bad input or a request that cannot run; the message is shown on the page."""


# ---------------------------------------------------------------------------------------------
# Compile counting (so the page can say whether a run compiled)


class _CompileCounter:
    """Counts XLA backend compiles in this process (a ``jax.monitoring`` listener)."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            with self._lock:
                self.count += 1


_COMPILES = _CompileCounter()


def compile_count() -> int:
    """XLA compiles so far in this process (increases only when something new is compiled)."""
    return _COMPILES.count


# ---------------------------------------------------------------------------------------------
# Small parsers shared by the page and the exports


def model_choice(text: str, allowed: Allowed | None = None) -> tuple[str, dict[str, Any]]:
    """The model name the job layer understands, plus loader arguments implied by it.

    Only what the operator allowed (see :mod:`reds_jax.app.access`): a registered name, a
    ``package.module:factory`` named with ``reds-jax app --allow-model``, or a ``.msgpack``
    checkpoint (converted with ``reds-jax convert stylegan2``) inside a folder named with
    ``--allow-checkpoints``; the checkpoint becomes the factory
    ``reds_jax.generators.stylegan2:stylegan2`` with ``params_or_path`` set and ``space = "z"``
    (start latents are standard normal). Nothing typed into the page is imported.

    Args:
      text: the page's model field.
      allowed: the operator's allow-list (default: the registry only).

    Returns:
      ``(model, model_args)``.

    Raises:
      AppError: an empty name, a name or path the operator did not allow, or a missing checkpoint.

    >>> model_choice("rooms")
    ('rooms', {})
    >>> model_choice("os:system")
    Traceback (most recent call last):
    ...
    reds_jax.app.explorer.AppError: model 'os:system' is not allowed on this page: ...
    """
    name = (text or "").strip() if isinstance(text, str) else ""
    if not name:
        raise AppError(f"choose a model: one of {list(models.available_models())}.")
    with _access():
        return (allowed or Allowed()).model(name)


@contextlib.contextmanager
def _access():
    """Turns an :class:`~reds_jax.app.access.AccessError` into an :class:`AppError`."""
    try:
        yield
    except AccessError as err:
        raise AppError(str(err)) from None


def parse_model_args(text: str, what: str = "model arguments") -> dict[str, Any]:
    """``"size=32, latent_dim=8"`` (commas or new lines) -> ``{"size": 32, "latent_dim": 8}``.

    Values are read as TOML values (``32``, ``0.5``, ``"text"``, ``true``), else kept as text, as
    ``reds-jax traverse --model-arg`` does.

    Raises:
      AppError: an item without ``=``.

    >>> parse_model_args("size=32\\nlatent_dim=8")
    {'size': 32, 'latent_dim': 8}
    """
    from reds_jax.jobs.cli import key_value

    out: dict[str, Any] = {}
    for item in (text or "").replace("\n", ",").split(","):
        if item.strip():
            try:
                key, value = key_value(item.strip())
            except argparse.ArgumentTypeError as err:
                raise AppError(f"{what}: {err}.") from None
            out[key] = value
    return out


def parse_box(text: str, what: str = "box") -> tuple[float, float, float, float] | None:
    """``"top,left,height,width"`` as fractions of the image; empty text is no box.

    Raises:
      AppError: not four numbers, outside the image, or an empty region.

    >>> parse_box("0.25, 0.25, 0.5, 0.5")
    (0.25, 0.25, 0.5, 0.5)
    """
    text = (text or "").strip()
    if not text:
        return None
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise AppError(
            f"{what} {text!r}: write four numbers top,left,height,width as fractions of the image "
            "(e.g. 0.25,0.25,0.5,0.5), or click two corners on the start image."
        )
    top, left, height, width = box
    if height <= 0 or width <= 0:
        raise AppError(f"{what} {text!r} is an empty region: height and width must be > 0.")
    if top < 0 or left < 0 or top + height > 1 + 1e-9 or left + width > 1 + 1e-9:
        raise AppError(
            f"{what} {text!r} reaches outside the image: need top, left >= 0, top + height <= 1 "
            "and left + width <= 1."
        )
    return top, left, height, width


def box_text(box: Sequence[float] | None) -> str:
    """Inverse of :func:`parse_box` (3 decimals). ``box_text((0.25, 0.25, 0.5, 0.5))`` is
    ``'0.25,0.25,0.5,0.5'``."""
    return "" if box is None else ",".join(f"{v:.3f}".rstrip("0").rstrip(".") for v in box)


def click_box(
    pending: Sequence[float] | None, x: float, y: float, width: int, height: int
) -> tuple[tuple[float, float] | None, str | None]:
    """Two clicks on the start image make a box.

    Args:
      pending: the first corner ``(fx, fy)`` as fractions, or None.
      x, y: the click in pixels of the displayed image.
      width, height: the displayed image's size in pixels.

    Returns:
      ``(pending, box)``: after a first click the corner and None; after the second click None
      and the box text (see :func:`box_text`).

    >>> p, _ = click_box(None, 64, 64, 256, 256)
    >>> click_box(p, 192, 128, 256, 256)
    (None, '0.25,0.25,0.25,0.5')
    """
    fx = min(max(float(x) / max(width, 1), 0.0), 1.0)
    fy = min(max(float(y) / max(height, 1), 0.0), 1.0)
    if pending is None:
        return (fx, fy), None
    (ax, ay) = pending
    top, left = min(ay, fy), min(ax, fx)
    return None, box_text((top, left, abs(fy - ay), abs(fx - ax)))


def feature_kinds(model: str) -> list[str]:
    """Feature kinds to offer for ``model`` (the spec names of :data:`reds_jax.jobs.models.FEATURES`;
    face features only for face generators).

    >>> "lowpass" in feature_kinds("rooms"), "identity" in feature_kinds("rooms")
    (True, False)
    """
    faces = model.strip() == "faces" or model.strip().endswith(".msgpack")
    kinds = [k for k in models.FEATURES if k != "arcface" and (faces or k not in FACE_FEATURES)]
    return kinds


def _number(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AppError(f"{what} must be a number; got {value!r}.") from None
    if not math.isfinite(v):
        raise AppError(f"{what} must be finite; got {value!r}.")
    return v


def _fmt(v: float) -> str:
    return f"{v:g}"


def feature_spec(
    kind: str,
    sigma: float | None = None,
    high: float | None = None,
    box: str = "",
    outside: bool = False,
) -> str:
    """The CLI feature spec for the page's feature builder.

    Args:
      kind: ``none``, ``pixels``, ``lowpass``, ``highpass``, ``band``, or a parameter-free spec
        name (``identity``, ``landmarks``, ``age``, ...).
      sigma: σ of ``lowpass`` / ``highpass``; the low cut-off of ``band`` (cycles per pixel).
      high: the high cut-off of ``band``.
      box: a box (see :func:`parse_box`) restricting the feature to its pixels (``region``).
      outside: use the pixels outside the box instead.

    Returns:
      A spec such as ``"lowpass:4@region:0.25,0.25,0.5,0.5"`` ("" for ``none``).

    Raises:
      AppError: a missing or bad parameter or box.

    >>> feature_spec("highpass", 2, box="0.1,0.2,0.5,0.6")
    'highpass:2@region:0.1,0.2,0.5,0.6'
    >>> feature_spec("pixels", box="0.1,0.2,0.5,0.6", outside=True)
    'region:0.1,0.2,0.5,0.6,invert'
    """
    kind = (kind or "none").strip().lower()
    if kind == "none":
        return ""
    parsed = parse_box(box, "the feature's box")
    if kind in ("lowpass", "highpass"):
        s = _number(sigma, f"{kind} sigma")
        if s <= 0:
            raise AppError(f"{kind} sigma must be > 0; got {sigma!r}.")
        base = f"{kind}:{_fmt(s)}"
    elif kind == "band":
        lo, hi = _number(sigma, "band low"), _number(high, "band high")
        if not 0 <= lo < hi:
            raise AppError(f"band needs 0 <= low < high (cycles per pixel); got {lo:g}, {hi:g}.")
        base = f"band:{_fmt(lo)},{_fmt(hi)}"
    elif kind in models.FEATURES:
        base = kind
    else:
        raise AppError(f"unknown feature kind {kind!r}; choose one of {list(models.FEATURES)}.")
    if parsed is None:
        if outside:
            raise AppError("'outside the box' needs a box: click two corners or type one.")
        return base
    region = f"region:{box_text(parsed)}" + (",invert" if outside else "")
    if base == "pixels":
        return region
    if kind in FACE_FEATURES:
        raise AppError(f"{kind} is computed on the whole face; clear the box for it.")
    return f"{base}@{region}"


def _spec_lines(text: str | Sequence[str]) -> tuple[str, ...]:
    lines = text.splitlines() if isinstance(text, str) else list(text)
    return tuple(s.strip() for line in lines for s in line.split(";") if s.strip())


# ---------------------------------------------------------------------------------------------
# Inputs and results


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Everything the page sends for one traversal (strings and numbers, validated by
    :meth:`Explorer.config`).

    Attributes:
      model: see :func:`model_choice`.
      model_args: ``"key=value"`` items, see :func:`parse_model_args`.
      seed: start seed (ignored when the page starts from an uploaded image).
      key: base PRNG seed (``--key``).
      vary: varied feature specs, one per line.
      fix: fixed feature specs, one per line (may be empty).
      method, path, k, steps, step_size, solver: as in ``reds-jax traverse``.
      step_target: feature-space steps (``--step-target``; None, "" or 0: fixed latent steps).
      correct: drift-corrector iterations per step (``--correct``).
      options: extra traverse options ``"ridge=1e-4, beta_fix=0.99"``.
      dtype: ``float32`` or ``float64``.
    """

    model: str = "rooms"
    model_args: str = ""
    seed: int = 0
    key: int = 0
    vary: str = "lowpass:4"
    fix: str = "highpass:2"
    method: str = "reds"
    path: str = "local"
    k: int = 1
    steps: int = 8
    step_size: float | None = None
    solver: str = "dense"
    options: str = ""
    dtype: str = "float32"
    step_target: float | None = None
    correct: int = 0


@dataclasses.dataclass
class Result:
    """One traversal as shown on the page.

    Attributes:
      config: the resolved job configuration.
      seed: the start seed (0 for an uploaded image, as ``--latents`` numbers its rows).
      latent: the uploaded image's latent ``[d]``, or None when starting from the seed.
      arrays: the ``traversals.npz`` arrays of ``reds-jax traverse`` for one start latent:
        ``images`` uint8 ``[1, 2k, T+1, H, W, 3]``, ``latents [1, 2k, T+1, d]``,
        ``vary_distances [1, V, 2k, T+1]``, ``fix_distances [1, F, 2k, T+1]``, ``values [1, k]``,
        ``seeds [1]``, ``names [1]``, ``vary_features [V]``, ``fix_features [F]``.
      diagnostics: ``name -> count`` from the traversal's diagnostics (empty when it has none).
      compiled: whether this run compiled anything.
      seconds: wall time of the run.
    """

    config: JobConfig
    seed: int
    latent: np.ndarray | None
    arrays: dict[str, np.ndarray]
    diagnostics: dict[str, float]
    compiled: bool
    seconds: float

    @property
    def path_labels(self) -> list[str]:
        """``["+v1", "-v1", "+v2", ...]``: the rows of the grid."""
        k = self.config.k
        return [f"{s}v{i + 1}" for i in range(k) for s in "+-"]


def builder_fields(kind: str | None) -> tuple[str | None, bool]:
    """Which number boxes the feature builder shows for ``kind``: the first box's label (``None``:
    hidden) and whether the second (``band``'s high cut-off) is shown.

    >>> builder_fields("lowpass")
    ('σ (pixels)', False)
    >>> builder_fields("band")
    ('band: low (cycles per pixel)', True)
    >>> builder_fields("pixels")
    (None, False)
    """
    kind = (kind or "none").strip().lower()
    if kind in ("lowpass", "highpass"):
        return "σ (pixels)", False
    if kind == "band":
        return "band: low (cycles per pixel)", True
    return None, False


def summary_lines(values: np.ndarray, diagnostics: Mapping[str, float]) -> list[str]:
    """The labelled numbers of a run's summary: the Rayleigh quotient of each direction at the
    start, and the diagnostics counts that are not zero (one per line; "none" when all are).

    Args:
      values: ``[k]`` quotients of the start latent's directions.
      diagnostics: ``name -> count`` (see :func:`diagnostics_counts`).

    >>> summary_lines(np.array([5788.171, 12.5]), {"fallbacks": 0.0, "ridge_raised": 3.0})
    ['Rayleigh quotient at the start: v1 5788, v2 12.5', 'Diagnostics (totals over the paths): ridge_raised 3']
    """
    quotients = ", ".join(f"v{i + 1} {float(v):.4g}" for i, v in enumerate(np.ravel(values)))
    nonzero = {k: v for k, v in diagnostics.items() if v}
    counts = ", ".join(f"{k} {v:.3g}" for k, v in nonzero.items()) or "none"
    return [
        f"Rayleigh quotient at the start: {quotients}",
        f"Diagnostics (totals over the paths): {counts}",
    ]


def diagnostics_counts(diagnostics: Any) -> dict[str, float]:
    """Flattens a traversal's ``diagnostics`` (a NamedTuple, dataclass or dict of arrays) into
    ``name -> total`` (sums of counts and flags; the maximum of other numbers).

    >>> diagnostics_counts({"fallbacks": np.array([0, 2, 1])})
    {'fallbacks': 3.0}
    """
    if diagnostics is None:
        return {}
    if hasattr(diagnostics, "_asdict"):
        items = diagnostics._asdict()
    elif dataclasses.is_dataclass(diagnostics):
        items = {f.name: getattr(diagnostics, f.name) for f in dataclasses.fields(diagnostics)}
    elif isinstance(diagnostics, Mapping):
        items = dict(diagnostics)
    else:
        return {"diagnostics": float(np.sum(np.asarray(diagnostics)))}
    out = {}
    for name, value in items.items():
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            continue
        if arr.dtype == object or arr.size == 0:
            continue
        if arr.dtype.kind in "biu":
            out[name] = float(np.sum(arr))
        elif arr.dtype.kind == "f":
            out[name] = float(np.max(arr))
    return out


def distance_table(result: Result) -> str:
    """The distances ``‖f(G(z_t)) − f(G(z_0))‖`` per feature, path and step, as text.

    One line per (side, feature, path): ``vary lowpass:4 +v1: 0 0.0123 ...`` with every step's
    distance (``%.6g``), after a header like the CLI's summary.
    """
    a, cfg = result.arrays, result.config
    lines = []
    for side, key, specs in (
        ("vary", "vary_distances", cfg.vary),
        ("fix", "fix_distances", cfg.fix),
    ):
        for j, spec in enumerate(specs):
            for p, label in enumerate(result.path_labels):
                row = " ".join(f"{v:.6g}" for v in a[key][0, j, p])
                lines.append(f"{side} {spec} {label}: {row}")
    return "\n".join(lines)


def plot_rows(result: Result) -> list[tuple[int, float, str]]:
    """``(step, distance, series)`` rows for a line plot; series ``"vary lowpass:4 +v1"``."""
    a, cfg = result.arrays, result.config
    rows = []
    for side, key, specs in (
        ("vary", "vary_distances", cfg.vary),
        ("fix", "fix_distances", cfg.fix),
    ):
        for j, spec in enumerate(specs):
            for p, label in enumerate(result.path_labels):
                for t, v in enumerate(a[key][0, j, p]):
                    rows.append((t, float(v), f"{side} {spec} {label}"))
    return rows


# ---------------------------------------------------------------------------------------------
# Exports


def _explicit(config: JobConfig) -> tuple[str | None, dict[str, Any]]:
    """``(method, options)`` to write next to ``preset``: what differs from the preset's own
    (the resolved config holds the preset's values; writing them again would be noise)."""
    if config.preset is None:
        return config.method, dict(config.options)
    method, table = presets.resolve(config.preset, None, {"cap_k": False})
    options = {k: v for k, v in config.options.items() if k not in table or table[k] != v}
    return (None if config.method == method else config.method), options


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Sequence):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise AppError(f"cannot write {v!r} to TOML.")


def toml_job(config: JobConfig, *, seed: int, latents: str | None = None, out: str = OUT) -> str:
    """A TOML job (``reds-jax traverse --config job.toml``) equivalent to one explorer run.

    Args:
      config: the resolved configuration.
      seed: the start seed (unused with ``latents``).
      latents: path of the start latent ``.npy`` (an uploaded image's inversion), or None.
      out: the output folder written into the job.
    """
    method, options = _explicit(config)
    top: dict[str, Any] = {"model": config.model}
    top |= {"latents": latents} if latents else {"seeds": [int(seed)]}
    top |= {
        "key": config.key,
        "vary": list(config.vary),
        "fix": list(config.fix),
        **({} if config.preset is None else {"preset": config.preset}),
        **({} if method is None else {"method": method}),
        "path": config.path,
        "k": config.k,
        "steps": config.steps,
        "step_size": float(config.step_size),
        **({} if config.step_target is None else {"step_target": float(config.step_target)}),
        **({"correct": config.correct} if config.correct else {}),
        "solver": config.solver,
        "dtype": config.dtype,
        "out": out,
    }
    lines = ["# reds-jax traverse --config job.toml"]
    lines += [f"{name} = {_toml_value(v)}" for name, v in top.items()]
    for table, values in (("model_args", config.model_args), ("options", options)):
        if values:
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def command_line(
    config: JobConfig, *, seed: int, latents: str | None = None, out: str = OUT
) -> str:
    """The ``reds-jax traverse`` command line equivalent to one explorer run (see
    :func:`toml_job` for the arguments)."""
    q = shlex.quote
    method, options = _explicit(config)
    args = ["reds-jax", "traverse", "--model", q(config.model)]
    for k, v in config.model_args.items():
        args += ["--model-arg", q(f"{k}={_toml_value(v)}")]
    args += ["--latents", q(latents)] if latents else ["--seeds", str(int(seed))]
    if config.key:
        args += ["--key", str(config.key)]
    for spec in config.vary:
        args += ["--vary", q(spec)]
    for spec in config.fix:
        args += ["--fix", q(spec)]
    if not config.fix:
        args.append("--no-fix")
    if config.preset is not None:
        args += ["--preset", config.preset]
    if method is not None:
        args += ["--method", method]
    args += ["--path", config.path, "-k", str(config.k)]
    args += ["--steps", str(config.steps), "--step-size", repr(float(config.step_size))]
    if config.step_target is not None:
        args += ["--step-target", repr(float(config.step_target))]
    if config.correct:
        args += ["--correct", str(config.correct)]
    if config.solver != "dense":
        args += ["--solver", config.solver]
    for k, v in options.items():
        args += ["--option", q(f"{k}={_toml_value(v)}")]
    if config.dtype != "float32":
        args += ["--dtype", config.dtype]
    return " ".join(args + ["--out", q(out)])


# ---------------------------------------------------------------------------------------------
# The explorer


def _no_progress(fraction: float, desc: str = "") -> None:
    del fraction, desc


class Explorer:
    """Models, features and compiled functions cached for the life of the server process.

    One compute job (a traversal or an inversion) runs at a time: a second one is refused while
    the first runs. Each has a wall-clock limit, ``max_seconds``: past it the page gets an error
    at once, and new jobs are refused until the overrunning one has finished (JAX cannot stop a
    running computation; the bounds on every input keep a run short, the limit is the backstop).

    Args:
      max_upload_bytes: largest accepted upload.
      allowed: what the page may load (:class:`~reds_jax.app.access.Allowed`: the registry,
        the operator's ``--allow-model`` factories and ``--allow-checkpoints`` folders).
        Default: the registry only.
      max_seconds: wall-clock limit of one compute job (> 0).

    >>> ex = Explorer()
    >>> res = ex.run(Inputs(model="rooms", model_args="size=16, latent_dim=4", k=1,
    ...                     steps=2))  # compiles a traversal  # doctest: +SKIP
    >>> res.arrays["latents"].shape  # compiles a traversal  # doctest: +SKIP
    (1, 2, 3, 4)
    """

    def __init__(
        self,
        *,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        allowed: Allowed | None = None,
        max_seconds: float = MAX_SECONDS,
    ):
        if not (isinstance(max_seconds, int | float) and 0 < max_seconds < math.inf):
            raise ValueError(f"max_seconds must be a finite number > 0; got {max_seconds!r}.")
        self.max_upload_bytes = int(max_upload_bytes)
        self.allowed = allowed or Allowed()
        self.max_seconds = float(max_seconds)
        self._compute = threading.Lock()
        self._models: dict[str, models.Model] = {}
        self._features: dict[str, Any] = {}
        self._render: dict[str, Callable] = {}
        self._lock = threading.RLock()

    # -- configuration ------------------------------------------------------------------------

    def config(self, inputs: Inputs) -> JobConfig:
        """Validates the page's inputs into a resolved :class:`JobConfig`.

        Raises:
          AppError: any bad field, with the job layer's message.
        """
        model, implied = model_choice(inputs.model, self.allowed)
        vary, fix = _spec_lines(inputs.vary), _spec_lines(inputs.fix)
        with _access():
            model_args = self.allowed.arguments({**implied, **parse_model_args(inputs.model_args)})
            self.allowed.specs((*vary, *fix))
        if not vary:
            raise AppError("choose at least one feature to vary (e.g. lowpass:4).")
        k, steps = _int(inputs.k, "k"), _int(inputs.steps, "steps")
        if not 1 <= k <= MAX_K:
            raise AppError(f"k={k} is out of range: pass 1 <= k <= {MAX_K} on this page.")
        if not 0 <= steps <= MAX_STEPS:
            raise AppError(f"steps={steps} is out of range: pass 0 <= steps <= {MAX_STEPS}.")
        data: dict[str, Any] = {
            "model": model,
            "model_args": model_args,
            "key": _int(inputs.key, "key"),
            "vary": list(vary),
            "fix": list(fix),
            **(
                {"preset": inputs.method}
                if inputs.method in presets.PRESETS
                else {"method": inputs.method}
            ),
            "path": inputs.path,
            "k": k,
            "steps": steps,
            "solver": inputs.solver,
            "options": parse_model_args(inputs.options, "options"),
            "dtype": inputs.dtype,
        }
        if inputs.step_size not in (None, ""):
            data["step_size"] = _number(inputs.step_size, "step size")
        if inputs.step_target not in (None, "", 0):
            data["step_target"] = _number(inputs.step_target, "step target")
        if inputs.correct not in (None, "", 0):
            data["correct"] = _int(inputs.correct, "correct")
            if not 0 <= data["correct"] <= MAX_CORRECT:
                raise AppError(
                    f"correct={data['correct']} is out of range: pass 0 <= correct <= "
                    f"{MAX_CORRECT} on this page."
                )
        for name, bound in PAGE_BOUNDS.items():
            value = data["options"].get(name)
            if isinstance(value, int) and value > bound:
                raise AppError(
                    f"options: {name}={value} is too large on this page: pass <= {bound}."
                )
        try:
            return JobConfig.from_mapping(data, where="page")
        except ConfigError as err:
            raise AppError(str(err)) from None

    def model(self, name: str, model_args: Mapping[str, Any]) -> models.Model:
        """The loaded model (cached per name and arguments).

        Raises:
          AppError: unknown, unavailable, or failing to load (missing weights).
        """
        with _access():
            self.allowed.loaded(name, model_args)
        ident = json.dumps([name, dict(model_args)], sort_keys=True, default=str)
        with self._lock:
            if ident not in self._models:
                try:
                    self._models[ident] = models.load_model(name, **model_args)
                except (ValueError, FileNotFoundError, TypeError) as err:
                    raise AppError(f"cannot load model {name!r}: {err}") from None
            return self._models[ident]

    def features(self, specs: Sequence[str]) -> tuple:
        """Parsed features, one object per spec string for the life of the process."""
        out = []
        with _access():
            self.allowed.specs(specs)
        with self._lock:
            for spec in specs:
                if spec not in self._features:
                    try:
                        self._features[spec] = models.parse_feature(spec)
                    except (ValueError, FileNotFoundError) as err:
                        raise AppError(f"feature {spec!r}: {err}") from None
                out.append(self._features[spec])
        return tuple(out)

    def _renderer(self, ident: str, model: models.Model) -> Callable:
        with self._lock:
            if ident not in self._render:
                gen = model.generator

                def render(z):  # [..., d] -> uint8 [..., H, W, 3]
                    flat = z.reshape(-1, z.shape[-1])
                    img = jax.vmap(gen)(flat)
                    img = jnp.round(jnp.clip(img, 0.0, 1.0) * 255.0).astype(jnp.uint8)
                    return img.reshape(*z.shape[:-1], *img.shape[1:])

                self._render[ident] = jax.jit(render)
            return self._render[ident]

    def _dtype(self, config: JobConfig):
        dtype = jnp.dtype(config.dtype)
        if jnp.zeros((), dtype).dtype != dtype:
            raise AppError("float64 needs JAX_ENABLE_X64=1 in the server's environment.")
        return dtype

    def start_latent(self, config: JobConfig, seed: int) -> np.ndarray:
        """``[d]``: the start latent ``reds-jax traverse --seeds SEED --key KEY`` uses."""
        model = self.model(config.model, config.model_args)
        seed = _int(seed, "seed")
        if not 0 <= seed < 2**32:
            raise AppError(f"seed must lie in [0, 2**32); got {seed}.")
        z = models.start_latents(
            [seed], model.latent_dim, key=config.key, dtype=self._dtype(config)
        )
        return np.asarray(z[0])

    def image(self, config: JobConfig, latent: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]``: the generator's image of one latent."""
        model = self.model(config.model, config.model_args)
        ident = json.dumps([config.model, dict(config.model_args)], sort_keys=True, default=str)
        return np.asarray(self._renderer(ident, model)(jnp.asarray(latent)))

    # -- traversal ----------------------------------------------------------------------------

    def run(
        self,
        inputs: Inputs | JobConfig,
        *,
        latent: np.ndarray | None = None,
        progress: Callable[..., Any] = _no_progress,
    ) -> Result:
        """One traversal: ``reds_jax.traverse`` from the seed's start latent (or ``latent``).

        Args:
          inputs: the page's :class:`Inputs` (or an already resolved :class:`JobConfig`).
          latent: ``[d]`` start latent of an uploaded image; None starts from ``inputs.seed``.
          progress: ``progress(fraction, desc=...)`` (e.g. a ``gradio.Progress``).

        Returns:
          A :class:`Result`.

        Raises:
          AppError: bad inputs, or a configuration the library rejects (e.g. ``k`` larger than
            the varied feature's size); another job running; past ``max_seconds``.
        """
        return self._exclusive("run", lambda: self._run(inputs, latent, progress))

    def _exclusive(self, what: str, job: Callable[[], Any]) -> Any:
        """Runs ``job()`` as the one compute job, waiting at most ``max_seconds`` for it."""
        if not self._compute.acquire(blocking=False):
            raise AppError(
                "another run or inversion is in progress on this server (one at a time); wait "
                "for it to finish and try again."
            )
        box: dict[str, Any] = {}

        def work():
            try:
                box["value"] = job()
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = err
            finally:
                self._compute.release()

        # a copy of the context: Gradio finds its progress bar through context variables
        ctx = contextvars.copy_context()
        thread = threading.Thread(target=ctx.run, args=(work,), name=f"reds-jax {what}")
        thread.daemon = True
        thread.start()
        thread.join(self.max_seconds)
        if thread.is_alive():
            raise AppError(
                f"the {what} took longer than this server's limit of {self.max_seconds:g} s and "
                "was abandoned; new jobs are refused until it finishes. Pass fewer steps, a "
                "smaller k, or fewer corrector or solver iterations."
            )
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _run(self, inputs, latent, progress) -> Result:
        t0, c0 = time.perf_counter(), compile_count()
        cfg = inputs if isinstance(inputs, JobConfig) else self.config(inputs)
        seed = 0 if latent is not None else _int(getattr(inputs, "seed", 0), "seed")
        progress(0.05, desc=f"loading model {cfg.model}")
        model = self.model(cfg.model, cfg.model_args)
        vary, fix = self.features(cfg.vary), self.features(cfg.fix)
        dtype = self._dtype(cfg)
        if latent is None:
            z0 = self.start_latent(cfg, seed)
        else:
            z0 = np.asarray(latent, dtype).reshape(-1)
            if z0.shape != (model.latent_dim,) or not np.all(np.isfinite(z0)):
                raise AppError(
                    f"the start latent must be {model.latent_dim} finite numbers (model "
                    f"{cfg.model}); invert the image again with this model."
                )
        # the traversal key of `reds-jax traverse` (reds_jax.jobs.experiment.Experiment)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.key), seed), 1)
        progress(0.2, desc="traversing (the first run of a configuration compiles)")
        try:
            problem, options = cfg.traverse_args(model.generator, vary, fix)
            tr = reds_jax.traverse(problem, jnp.asarray(z0), key=key, **options)
            jax.block_until_ready(tr.latents)
        except ValueError as err:
            raise AppError(str(err)) from None
        progress(0.8, desc="rendering")
        ident = json.dumps([cfg.model, dict(cfg.model_args)], sort_keys=True, default=str)
        images = np.asarray(self._renderer(ident, model)(tr.latents))
        latents = np.asarray(tr.latents)

        def stack(ds):  # as reds_jax.jobs.experiment.Experiment stacks them
            return (
                np.stack([np.asarray(d) for d in ds])
                if ds
                else np.zeros((0, *latents.shape[:2]), latents.dtype)
            )

        computed = {
            "fix_distances": stack(tr.fix_distances)[None],
            "images": images[None],
            "latents": latents[None],
            "values": np.asarray(tr.values)[None],
            "vary_distances": stack(tr.vary_distances)[None],
        }
        if tr.diagnostics is not None:
            for name, value in tr.diagnostics._asdict().items():
                computed[DIAGNOSTICS_PREFIX + name] = np.asarray(value)[None]
        # the key order of reds-jax traverse's traversals.npz (the jitted pytree's sorted keys)
        arrays = {
            **{name: computed[name] for name in sorted(computed)},
            "seeds": np.asarray([seed], np.int64),
            # the CLI's grid file stem (an upload is exported as --latents start.npy: row 0)
            "names": np.asarray([f"{'seed' if latent is None else 'latent'}-{seed}"], dtype=str),
            "vary_features": np.asarray(cfg.vary, dtype=str),
            "fix_features": np.asarray(cfg.fix, dtype=str).reshape(len(cfg.fix)),
        }
        return Result(
            config=cfg,
            seed=seed,
            latent=None if latent is None else z0,
            arrays=arrays,
            diagnostics=diagnostics_counts(getattr(tr, "diagnostics", None)),
            compiled=compile_count() > c0,
            seconds=time.perf_counter() - t0,
        )

    # -- uploads ------------------------------------------------------------------------------

    def read_upload(self, path: str | os.PathLike, height: int, width: int) -> np.ndarray:
        """An uploaded image file as float32 ``[H, W, 3]`` in [0, 1], cropped and resized like
        ``reds-jax invert`` does.

        Raises:
          AppError: missing, too large (bytes or pixels) or not an image.
        """
        from PIL import Image, UnidentifiedImageError

        from reds_jax.jobs.inversion import InversionJobError, load_images

        p = pathlib.Path(path)
        if not p.is_file():
            raise AppError("upload an image file (PNG or JPEG) first.")
        size = p.stat().st_size
        if size > self.max_upload_bytes:
            raise AppError(
                f"the upload has {size / 2**20:.1f} MiB; the limit is "
                f"{self.max_upload_bytes / 2**20:.0f} MiB. Pass a smaller image."
            )
        try:
            with Image.open(p) as im:
                pixels = im.size[0] * im.size[1]
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            raise AppError(
                f"cannot read the upload as an image ({err}); pass PNG or JPEG."
            ) from None
        if pixels > MAX_UPLOAD_PIXELS:
            raise AppError(
                f"the upload has {pixels} pixels; the limit is {MAX_UPLOAD_PIXELS}. Pass a "
                "smaller image."
            )
        try:
            return load_images([p], height, width)[0]
        except (InversionJobError, Image.DecompressionBombError) as err:
            raise AppError(str(err)) from None

    def invert(
        self,
        inputs: Inputs,
        path: str | os.PathLike,
        *,
        steps: int = 300,
        restarts: int = 4,
        progress: Callable[..., Any] = _no_progress,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Inverts an uploaded image with ``reds_jax.invert`` (Adam, random restarts).

        Returns:
          ``(latent [d], PSNR in dB, reconstruction uint8 [H, W, 3])``.

        Raises:
          AppError: a bad upload or settings; another job running; past ``max_seconds``.
        """
        return self._exclusive(
            "inversion", lambda: self._invert(inputs, path, steps, restarts, progress)
        )

    def _invert(self, inputs, path, steps, restarts, progress):
        cfg = self.config(inputs)
        model = self.model(cfg.model, cfg.model_args)
        steps, restarts = _int(steps, "inversion steps"), _int(restarts, "restarts")
        if not 1 <= steps <= 5000 or not 1 <= restarts <= 16:
            raise AppError("inversion needs 1 <= steps <= 5000 and 1 <= restarts <= 16.")
        shape = jax.eval_shape(model.generator, jnp.zeros((model.latent_dim,), self._dtype(cfg)))
        progress(0.05, desc="reading the upload")
        target = self.read_upload(path, shape.shape[0], shape.shape[1])
        progress(0.1, desc=f"inverting: {steps} steps × {restarts} restarts")
        try:
            inv = reds_jax.invert(
                model.generator,
                jnp.asarray(target[None], self._dtype(cfg)),
                latent_dim=model.latent_dim,
                steps=steps,
                restarts=restarts,
                key=jax.random.key(cfg.key),
                progress=lambda done, _: progress(
                    0.1 + 0.85 * done / steps, desc=f"inverting: step {done} of {steps}"
                ),
            )
        except ValueError as err:
            raise AppError(f"inversion failed: {err}") from None
        recon = imageio.to_uint8(np.asarray(inv.reconstructions[0]))
        return np.asarray(inv.latents[0]), float(inv.psnr[0]), recon

    # -- files --------------------------------------------------------------------------------

    def export(self, result: Result, folder: str | os.PathLike) -> dict[str, pathlib.Path]:
        """Writes the downloads of one run into ``folder``.

        Returns:
          ``{"grid": grid.png, "npz": traversals.npz, "toml": job.toml, "command": command.sh}``
          plus ``"latents": start.npy`` when the run started from an uploaded image.
        """
        from reds_jax._io import atomic_write, npz_bytes

        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        images = result.arrays["images"][0]
        files = {
            "grid": imageio.save_grid(
                images, folder / "grid.png", scale=imageio.auto_scale(images.shape[2])
            )
        }
        files["npz"] = folder / "traversals.npz"
        atomic_write(files["npz"], npz_bytes(result.arrays, compress=True))
        latents = None
        if result.latent is not None:
            files["latents"] = folder / "start.npy"
            atomic_write(files["latents"], lambda f: np.save(f, result.latent[None]))
            latents = "start.npy"
        files["toml"] = folder / "job.toml"
        atomic_write(
            files["toml"], toml_job(result.config, seed=result.seed, latents=latents).encode()
        )
        files["command"] = folder / "command.sh"
        command = command_line(result.config, seed=result.seed, latents=latents) + "\n"
        atomic_write(files["command"], command.encode())
        return files


def _int(value: Any, what: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise AppError(f"{what} must be a whole number; got {value!r}.") from None
    if not math.isfinite(f) or f != int(f):
        raise AppError(f"{what} must be a whole number; got {value!r}.")
    return int(f)
