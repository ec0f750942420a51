"""The job configuration: what to traverse and how, validated once, with the job's start latents.

:class:`JobConfig` names a model (see :mod:`reds_jax.jobs.models`), features as text specs, and the
traversal settings; it validates every field with errors that name it, so configurations can come
from TOML files and the command line. :meth:`JobConfig.resolved` validates and fills in the model's
defaults once (a resolved config returns itself), and :meth:`JobConfig.starts` is the one place
that checks "exactly one of ``seeds`` or ``latents``" and reads a latents file.
The compiled experiment that runs a config is :mod:`reds_jax.jobs.experiment`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from reds_jax._io import sha256_file
from reds_jax.core import presets, validate
from reds_jax.core.control import Corrector, FeatureStep, FixedStep
from reds_jax.core.path import PATHS
from reds_jax.core.problem import METHODS, Problem
from reds_jax.core.solvers import Dense, MatrixFree, Solver
from reds_jax.core.validate import check_memory
from reds_jax.jobs import models
from reds_jax.jobs.models import _short
from reds_jax.jobs.shards import FORMATS

__all__ = ["ConfigError", "JobConfig", "Seeds", "StartItems", "load_latents", "parse_seeds"]


class ConfigError(ValueError):
    """A configuration field is missing, unknown or has a bad value; the message names the field."""


# ---------------------------------------------------------------------------------------------
# Configuration


TOLERANCES = ("tol", "turn_tol", "cold_tol")  # options in (0, 1)
SEED_LIMIT = 2**32  # seeds lie in [0, 2**32): they are folded into a uint32 PRNG key


class Seeds(Sequence[int]):
    """An ordered set of seeds kept as half-open ranges, materialised only where indexed.

    ``Seeds(((0, 2 * 10**8),))`` costs a few bytes; ``seeds[lo:hi]`` is an int64 array of that
    slice only, so a job over 2·10⁸ seeds never allocates them all. Built by :func:`parse_seeds`,
    which merges touching ranges (``0:20 20:40`` is ``0:40``) and refuses duplicates.

    >>> s = parse_seeds(["0:3", 7])
    >>> len(s), s[1:3].tolist(), s[-1], s.tokens()
    (4, [1, 2], 7, ['0:3', 7])
    """

    __slots__ = ("_begins", "_ends", "_starts", "ranges")

    def __init__(self, ranges: Sequence[tuple[int, int]]):
        self.ranges = tuple((int(a), int(b)) for a, b in ranges)
        lengths = np.asarray([b - a for a, b in self.ranges], np.int64)
        self._starts = np.asarray([a for a, _ in self.ranges], np.int64)  # first seed of each
        self._ends = np.cumsum(lengths)  # position after each range
        self._begins = self._ends - lengths  # position of each range's first seed

    dtype = np.dtype(np.int64)  # what slices and np.asarray give

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def shape(self) -> tuple[int]:
        """``(N,)``, as for the array it stands for."""
        return (len(self),)

    def _at(self, positions: np.ndarray) -> np.ndarray:
        r = np.searchsorted(self._ends, positions, side="right")
        return self._starts[r] + positions - self._begins[r]

    def __getitem__(self, index):  # int -> int, slice -> int64 array [n]
        n = len(self)
        if isinstance(index, slice):
            return self._at(np.arange(*index.indices(n), dtype=np.int64))
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"seed index {i} out of range for {n} seeds")
        return int(self._at(np.asarray([i % n], np.int64))[0])

    def __iter__(self):
        for a, b in self.ranges:
            yield from range(a, b)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def tolist(self) -> list[int]:
        """All seeds as Python ints (materialises them: for small sets)."""
        return self[:].tolist()

    def tokens(self) -> list[int | str]:
        """The canonical spec: one ``"start:stop"`` per range, a bare int per single seed."""
        return [a if b == a + 1 else f"{a}:{b}" for a, b in self.ranges]

    def __repr__(self) -> str:
        return f"Seeds({self.tokens()!r})"


def parse_seeds(spec: Any) -> Seeds:
    """Seeds from ``"start:stop"`` (half-open), an int, or a list of ints / ``"start:stop"`` strings.

    Ranges are never materialised (see :class:`Seeds`); touching ranges merge, so ``["0:20",
    "20:40"]`` and ``"0:40"`` are the same seeds and the same job configuration.

    Args:
      spec: e.g. ``"0:1000"``, ``[0, 1, 2]``, ``["0", "5:8"]``, ``7``.

    Returns:
      :class:`Seeds`: ``N`` seeds in [0, 2³²), in the given order (``np.asarray`` gives ``[N]``
      int64; slicing gives arrays of the slice only).

    Raises:
      ConfigError: bad syntax, a negative or too large seed, a duplicate seed (each start latent
        is traversed once: remove the repeat), or no seeds.

    >>> parse_seeds(["0:3", 7]).tolist()
    [0, 1, 2, 7]
    """
    tokens = spec if isinstance(spec, list | tuple) else [spec]
    ranges: list[list[int]] = []
    for tok in tokens:
        if isinstance(tok, bool) or not isinstance(tok, int | np.integer | str):
            raise ConfigError(f"seeds: {tok!r} is not a seed; pass ints or 'start:stop'.")
        text = str(int(tok)) if isinstance(tok, int | np.integer) else tok.strip()
        try:
            a, b = (int(x) for x in text.split(":")) if ":" in text else (int(text), int(text) + 1)
        except ValueError:
            raise ConfigError(
                f"seeds: {tok!r} is not an int or a 'start:stop' range (e.g. '0:1000')."
            ) from None
        if b <= a:
            raise ConfigError(
                f"seeds: range {text!r} is empty; write 'start:stop' with stop > start."
            )
        if a < 0 or b > SEED_LIMIT:
            raise ConfigError(f"seeds must lie in [0, 2**32); got {tok!r}.")
        if ranges and ranges[-1][1] == a:
            ranges[-1][1] = b  # 0:20 20:40 -> 0:40
        else:
            ranges.append([a, b])
    if not ranges:
        raise ConfigError("seeds: no seeds given; pass e.g. seeds = '0:100'.")
    ordered = sorted(ranges)
    for (_, b0), (a1, _) in zip(ordered, ordered[1:], strict=False):
        if a1 < b0:
            raise ConfigError(
                f"seeds: seed {a1} is given more than once; pass every seed once (each start "
                "latent is traversed once, so a repeat would only duplicate work)."
            )
    return Seeds(ranges)


class StartItems(NamedTuple):
    """A job's start items.

    Attributes:
      seeds: ``[N]`` seeds (:class:`Seeds`, sliced lazily), or int64 ``0..N-1`` for a latents
        file (the traversal keys).
      latents: ``[N, d]`` float start latents from the file, or None (derived from the seeds).
    """

    seeds: Seeds | np.ndarray
    latents: np.ndarray | None


def npy_header(path: str | pathlib.Path, *, where: str = "latents") -> tuple[tuple, np.dtype]:
    """``(shape, dtype)`` of a ``.npy`` file, read from its header alone (nothing is allocated).

    Raises:
      ConfigError: not a ``.npy`` file (e.g. a ``.npz`` archive), an object (pickle) dtype, or
        fewer bytes than the header promises.

    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "z.npy"
    >>> np.save(f, np.zeros((2, 3), np.float32))
    >>> npy_header(f)
    ((2, 3), dtype('float32'))
    """
    from numpy.lib import format as npy

    name = str(path)
    try:
        with open(path, "rb") as f:
            version = npy.read_magic(f)
            read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
            if version not in read:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _, dtype = read[version](f)
            offset = f.tell()
        size = os.path.getsize(path)
    except (OSError, ValueError) as err:
        hint = " (a .npz archive holds several arrays: save one with numpy.save)"
        raise ConfigError(
            f"{where}: {name!r} is not a readable .npy file: {err}"
            f"{hint if name.endswith('.npz') else ''}."
        ) from None
    if dtype.hasobject:
        raise ConfigError(f"{where}: {name!r} holds Python objects; pass a float array.")
    if size < offset + int(np.prod(shape)) * dtype.itemsize:
        raise ConfigError(
            f"{where}: {name!r} is truncated: its header promises {dtype} {shape} but it has "
            f"{size} bytes."
        )
    return tuple(shape), dtype


def load_latents(path: str | pathlib.Path, *, where: str = "config") -> np.ndarray:
    """Reads a start-latents ``.npy`` file: a float array ``[N, d]``, or ``[d]`` for one latent.

    This is the one rule every job applies (``reds-jax traverse``, ``reds-jax augment``).

    Args:
      path: the ``.npy`` file (no pickles).
      where: prefix for error messages.

    Returns:
      ``[N, d]`` finite floats (a ``[d]`` file gives ``N = 1``).

    Raises:
      ConfigError: the file cannot be read, is not a float array of rank 1 or 2, is empty, or
        holds NaN/inf.

    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "z.npy"
    >>> np.save(f, np.zeros(3, np.float32))
    >>> load_latents(f).shape
    (1, 3)
    """
    shape, dtype = npy_header(path, where=f"{where}: field 'latents'")
    if len(shape) not in (1, 2) or dtype.kind != "f" or 0 in shape:
        raise ConfigError(
            f"{where}: field 'latents' must hold a float array [N, d] (or [d] for one latent); "
            f"got {dtype} {shape} in {str(path)!r}."
        )
    nbytes = int(np.prod(shape)) * dtype.itemsize
    try:  # the array and the finiteness check's mask
        check_memory(1.2 * nbytes, f"reading the latents {str(path)!r}", "pass fewer latents")
    except ValueError as err:
        raise ConfigError(f"{where}: field 'latents': {err}") from None
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: field 'latents': cannot read {str(path)!r}: {err}") from None
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or not np.issubdtype(z.dtype, np.floating) or 0 in z.shape:
        raise ConfigError(
            f"{where}: field 'latents' must hold a float array [N, d] (or [d] for one latent); "
            f"got {z.dtype} {z.shape} in {str(path)!r}."
        )
    if not np.all(np.isfinite(z)):
        raise ConfigError(
            f"{where}: field 'latents': {str(path)!r} contains NaN or inf; pass finite latents."
        )
    return z


# The job format's solver names and its flat `options` table: the fields of the Problem (beyond
# generator, features, method and k) and of the named solver. `JobConfig.traverse_args` is the one
# place that maps them onto the library's objects.
SOLVERS: dict[str, type[Solver]] = {"dense": Dense, "matrix_free": MatrixFree}
_PROBLEM_FIELDS = ("generator", "vary", "fix", "method", "k")
PROBLEM_OPTIONS = tuple(
    f.name for f in dataclasses.fields(Problem) if f.name not in _PROBLEM_FIELDS
)
SOLVER_OPTIONS = tuple(
    dict.fromkeys(f.name for cls in SOLVERS.values() for f in dataclasses.fields(cls))
)
OPTIONS = PROBLEM_OPTIONS + SOLVER_OPTIONS


def solver_from(name: str, options: Mapping[str, Any]) -> Solver:
    """The solver object of a job's ``solver`` name and the solver keys of its ``options``.

    Raises:
      ValueError: a key of the other solver, or a bad value.

    >>> solver_from("matrix_free", {"iters": 3, "ridge": 1e-4}).iters
    3
    """
    cls = SOLVERS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in options.items() if k in SOLVER_OPTIONS}
    wrong = sorted(set(given) - fields)
    if wrong:
        other = next(n for n in SOLVERS if n != name)
        raise ValueError(
            f"option(s) {wrong} apply to solver='{other}' only; drop them or pass solver='{other}'."
        )
    return cls(**given)


_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a model name"),
    "model_args": ((dict,), "a table of loader arguments"),
    "seeds": ((str, int, list), "'start:stop', an int, or a list"),
    "latents": ((str,), "a path to a .npy file [N, d] (or [d]: one latent)"),
    "key": ((int,), "an int"),
    "vary": ((str, list), "a feature spec or a list of them"),
    "fix": ((str, list), "a feature spec or a list of them"),
    "method": ((str,), f"one of {METHODS}"),
    "preset": ((str,), f"one of {presets.PRESETS}"),
    "path": ((str,), f"one of {PATHS}"),
    "k": ((int,), "an int >= 1"),
    "steps": ((int,), "an int >= 0"),
    "step_size": ((int, float), "a number > 0"),
    "step_target": ((int, float), "a number > 0 (varied-feature change per step)"),
    "correct": ((int,), "an int >= 0 (corrector iterations per step)"),
    "solver": ((str,), f"one of {tuple(SOLVERS)}"),
    "options": ((dict,), f"a table with keys from {OPTIONS}"),
    "dtype": ((str,), "'float32' or 'float64'"),
    "shard_size": ((int,), "an int >= 1"),
    "batch_size": ((int,), "an int >= 1"),
    "compress": ((bool,), "true or false"),
    "format": ((str,), f"one of {FORMATS}"),
}


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What to traverse and how (shared by ``reds-jax traverse`` and ``reds-jax augment``).

    Attributes:
      model: a name from :data:`reds_jax.jobs.models.MODELS` (``"faces"``, ``"rooms"``, ...).
      model_args: keyword arguments of the model's loader (e.g. ``{"size": 32}`` for rooms).
      seeds: ``"start:stop"``, an int, or a list (see :func:`parse_seeds`); or use ``latents``.
      latents: path to a ``.npy`` file of start latents ``[N, d]`` (items are its rows; a
        ``[d]`` file is one latent). At most one of ``seeds`` and ``latents`` may be set.
      key: base PRNG seed of the start latents and traversal keys.
      vary: varied feature specs (see :func:`reds_jax.jobs.models.parse_feature`); None: the model's.
      fix: fixed feature specs; None: the model's default; ``[]``: none.
      method: REDs method (``reds``, ``nullspace``, ``maxc``, ``minf``, ``random``); None: the
        preset's (``nullspace`` for ``official``), else ``reds``.
      preset: None or ``"official"``: the reference code's defaults
        (:mod:`reds_jax.core.presets`), resolved into ``method`` and ``options`` (explicit fields
        win). A job's shapes are fixed, so ``k`` is not capped at the span rank here
        (``cap_k=False`` unless given): pick ``k`` no larger than it.
      path: ``local`` or ``linear``.
      k: directions per start latent (``2k`` paths).
      steps: steps per path ``T``.
      step_size: latent step length; None: the model's default. With ``step_target`` it is the
        largest step.
      step_target: feature-space steps: varied-feature change per step (None: fixed steps; see
        :mod:`reds_jax.core.control`).
      correct: drift-corrector iterations per step (0: none).
      solver: ``dense`` or ``matrix_free``: :class:`reds_jax.Dense` / :class:`reds_jax.MatrixFree`;
        None: the model's default (``dense`` except for ``rooms_flow``), whose options apply whenever the job uses that solver.
      options: fields of :class:`reds_jax.Problem` (``ridge``, ``beta_fix``, ...) and of the
        solver (``mode``, ``iters``, ...) in one table (:meth:`traverse_args` splits them).
      dtype: ``float32`` or ``float64`` (the latter needs ``JAX_ENABLE_X64=1``).
      shard_size: start latents per shard file.
      batch_size: start latents per compiled call (changes outputs only by float rounding; not
        part of :meth:`identity`, so a resume may use another one).
      compress: deflate the ``.npz`` shards (zstd Parquet columns, PNG zlib level 6 instead of 1).
      format: shard files of ``reds-jax augment``: ``npz``, ``webdataset`` (tar of PNG frames +
        metadata) or ``parquet`` (see :mod:`reds_jax.jobs.shards`).
    """

    model: str = "rooms"
    model_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seeds: Any = None
    latents: str | None = None
    key: int = 0
    vary: tuple[str, ...] | None = None
    fix: tuple[str, ...] | None = None
    method: str | None = None
    preset: str | None = None
    path: str = "local"
    k: int = 2
    steps: int = 8
    step_size: float | None = None
    step_target: float | None = None
    correct: int = 0
    solver: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dtype: str = "float32"
    shard_size: int = 64
    batch_size: int = 16
    compress: bool = True
    format: str = "npz"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "config") -> JobConfig:
        """Builds and validates a config from a dict (e.g. parsed TOML).

        Args:
          data: field name -> value; unknown names are errors.
          where: prefix for error messages (e.g. the TOML file name).

        Returns:
          A validated :class:`JobConfig` (model defaults filled in, see :meth:`resolved`).

        Raises:
          ConfigError: names the offending field and what to pass instead.

        >>> JobConfig.from_mapping({"model": "rooms", "seeds": "0:4", "k": 1}).k
        1
        """
        unknown = sorted(set(data) - set(_TYPES))
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {unknown}; valid fields are {sorted(_TYPES)}."
            )
        values = {}
        for name, value in data.items():
            types, what = _TYPES[name]
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if not ok:
                raise ConfigError(f"{where}: field {name!r} must be {what}; got {value!r}.")
            if name in ("vary", "fix"):
                value = (value,) if isinstance(value, str) else tuple(value)
            if name in ("step_size", "step_target"):
                value = float(value)
            values[name] = value
        return cls(**values).resolved(where=where)

    def resolved(self, *, where: str = "config") -> JobConfig:
        """Validates every field and fills ``vary``/``fix``/``step_size`` from the model's defaults.

        Resolving is idempotent and done once: a resolved config returns itself (a copy made
        with :func:`dataclasses.replace` is validated again).

        Raises:
          ConfigError: names the offending field.

        >>> cfg = JobConfig(model="rooms", seeds="0:2").resolved()
        >>> cfg.resolved() is cfg, cfg.seeds
        (True, ['0:2'])
        """
        if self.__dict__.get("_resolved"):
            return self

        def bad(field: str, msg: str) -> ConfigError:
            return ConfigError(f"{where}: field {field!r} {msg}")

        try:
            entry = models.get_entry(self.model)
        except ValueError as err:
            raise bad("model", f"is bad: {err}") from None
        if not isinstance(self.model_args, Mapping):
            raise bad("model_args", f"must be a table; got {self.model_args!r}.")
        if self.seeds is not None and self.latents is not None:
            raise bad(
                "seeds", "and 'latents' are both set; pass only one of them (--seeds or --latents)."
            )
        seeds = None
        if self.seeds is not None:
            try:
                seeds = parse_seeds(self.seeds).tokens()
            except ConfigError as err:
                raise ConfigError(f"{where}: field {err}") from None
        for field in ("vary", "fix"):
            specs = getattr(self, field)
            if specs is None:
                continue
            if isinstance(specs, str) or not all(isinstance(s, str) for s in specs):
                raise bad(field, f"must be a list of feature specs; got {specs!r}.")
            for spec in specs:
                try:
                    models.parse_feature(spec, resolve=False)
                except ValueError as err:
                    raise bad(field, f"has a bad feature: {err}") from None
        if self.vary is not None and not self.vary:
            raise bad("vary", "needs at least one feature, e.g. vary = ['lowpass:4'].")
        try:
            method, options = presets.resolve(self.preset, self.method, self.options)
        except ValueError as err:
            raise bad("preset", f"is bad: {err}") from None
        if (
            self.preset is not None
            and self.solver == "matrix_free"
            and (self.method is None or "mode" not in self.options)
        ):  # say what the preset brings, not the core's complaint about a mode never typed
            raise bad(
                "solver",
                f"is 'matrix_free', but preset={self.preset!r} uses finite differences with the "
                f"dense solver (the reference code's mode={options.get('mode')!r}, "
                f"method={method!r}); drop --solver matrix_free (TOML: solver) to keep the "
                f"preset, or drop --preset {self.preset} (TOML: preset) to solve matrix-free.",
            )
        if self.preset is not None and "cap_k" not in self.options:
            options["cap_k"] = False  # fixed shapes: see the `preset` field
        solver = entry.solver if self.solver is None else self.solver
        if solver == entry.solver:  # the model's default solver comes with its default options
            options = {**entry.solver_options, **options}
        if method not in METHODS:
            raise bad("method", f"is {method!r}; pass one of {METHODS}.")
        if self.path not in PATHS:
            raise bad("path", f"is {self.path!r}; pass one of {PATHS}.")
        for field, lo in (
            ("k", 1), ("steps", 0), ("correct", 0), ("shard_size", 1), ("batch_size", 1),
        ):  # fmt: skip
            v = getattr(self, field)
            hi = validate.BOUNDS.get(field, math.inf)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                upto = "" if hi == math.inf else f" and <= {hi}"
                raise bad(field, f"must be an int >= {lo}{upto}; got {_short(v)}.")
        if not isinstance(self.key, int) or not 0 <= self.key < 2**32:
            raise bad("key", f"must be an int in [0, 2**32); got {self.key!r}.")
        if self.step_target is not None and not (
            isinstance(self.step_target, int | float)
            and not isinstance(self.step_target, bool)
            and math.isfinite(self.step_target)
            and self.step_target > 0
        ):
            raise bad("step_target", f"must be a finite number > 0; got {self.step_target!r}.")
        if self.step_size is not None and not (
            isinstance(self.step_size, int | float)
            and math.isfinite(self.step_size)
            and self.step_size > 0
        ):
            raise bad("step_size", f"must be a finite number > 0; got {self.step_size!r}.")
        if solver not in SOLVERS:
            raise bad("solver", f"is {solver!r}; pass one of {tuple(SOLVERS)}.")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise bad("options", f"has unknown key(s) {unknown}; valid keys are {OPTIONS}.")
        try:  # counts and tolerances up front (the rest when the solver is built)
            for name, value in options.items():
                if name in validate.BOUNDS:
                    validate.bounded(value, name, 0 if name in ("guard", "sketch_seed") else 1)
                elif name in TOLERANCES and value is not None:
                    validate.tolerance(value, name)
                elif name == "cap_k":
                    validate.flag(value, name)
        except ValueError as err:
            raise bad("options", f"is bad: {err}") from None
        if self.format not in FORMATS:
            raise bad("format", f"is {self.format!r}; pass one of {FORMATS}.")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", f"is {self.dtype!r}; pass 'float32' or 'float64'.")
        out = dataclasses.replace(
            self,
            model_args=dict(self.model_args),
            method=method,
            options=options,
            seeds=seeds,
            vary=entry.vary if self.vary is None else tuple(self.vary),
            fix=entry.fix if self.fix is None else tuple(self.fix),
            step_size=entry.step_size if self.step_size is None else float(self.step_size),
            solver=solver,
        )
        object.__setattr__(out, "_resolved", True)
        return out

    def starts(self, *, default_seeds: Any = None, where: str = "config") -> StartItems:
        """The job's start items: from ``seeds``, or read from the ``latents`` file.

        This is the only place that decides between the two (see :func:`load_latents` for the
        file's rule).

        Args:
          default_seeds: used when neither ``seeds`` nor ``latents`` is set (``reds-jax
            traverse`` defaults to seed 0); None makes that an error.
          where: prefix for error messages.

        Returns:
          :class:`StartItems`.

        Raises:
          ConfigError: neither is set (and no default), or the latents file is unusable.

        >>> JobConfig(model="rooms", seeds="3:5").starts().seeds.tolist()
        [3, 4]
        """
        cfg = self.resolved()
        if cfg.latents is not None:
            z = load_latents(cfg.latents, where=where)
            return StartItems(np.arange(len(z), dtype=np.int64), z)
        spec = cfg.seeds if cfg.seeds is not None else default_seeds
        if spec is None:
            raise ConfigError(
                f"{where}: pass exactly one of 'seeds' (e.g. '0:1000'; --seeds 0:1000) or "
                "'latents' (a .npy file; --latents FILE.npy)."
            )
        return StartItems(parse_seeds(spec), None)

    def traverse_args(
        self, generator: Callable, vary: Sequence[Callable], fix: Sequence[Callable]
    ) -> tuple[Problem, dict[str, Any]]:
        """The :class:`reds_jax.Problem` and the keyword arguments of :func:`reds_jax.traverse` /
        :func:`reds_jax.traverse_one` (``solver``, ``path``, ``steps``, ``step``, ``corrector``)
        that this config sets: the one place where a job's fields become the library's objects.

        Raises:
          ValueError: an option value the objects refuse (names it).

        >>> import jax.numpy as jnp
        >>> cfg = JobConfig(model="rooms", k=3, step_target=0.5, options={"iters": 2},
        ...                 solver="matrix_free")
        >>> problem, kw = cfg.traverse_args(lambda z: z.reshape(1, -1, 1), [jnp.ravel], [])
        >>> problem.k, kw["solver"].iters, type(kw["step"]).__name__, kw["corrector"]
        (3, 2, 'FeatureStep', None)
        """
        cfg = self.resolved()
        options = dict(cfg.options)
        fields = {k: v for k, v in options.items() if k in PROBLEM_OPTIONS}
        problem = Problem(generator, vary, fix, method=cfg.method, k=cfg.k, **fields)
        if cfg.step_target is None:
            step = FixedStep(cfg.step_size)
        else:
            step = FeatureStep(cfg.step_target, max_size=cfg.step_size)
        return problem, dict(
            solver=solver_from(cfg.solver, options),
            path=cfg.path,
            steps=cfg.steps,
            step=step,
            corrector=Corrector(cfg.correct) if cfg.correct else None,
        )

    def identity(self) -> dict[str, Any]:
        """The JSON-able fields that determine the outputs (everything but ``batch_size``)."""
        d = dataclasses.asdict(self.resolved())
        d.pop("batch_size")
        for name, default in (("step_target", None), ("correct", 0), ("preset", None)):
            if d[name] == default:  # off: the identity of jobs made before it existed
                d.pop(name)
        d["vary"], d["fix"] = list(d["vary"]), list(d["fix"])
        if self.latents is not None:
            path = pathlib.Path(self.latents)
            d["latents"] = {"sha256": sha256_file(path) if path.is_file() else None}
        return json.loads(json.dumps(d))
