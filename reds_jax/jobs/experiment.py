"""What to traverse and how: the job configuration and the compiled, batched experiment.

:class:`JobConfig` names a model (see :mod:`reds_jax.jobs.models`), features as text specs, and the
traversal settings; it validates every field with errors that name it, so configurations can come
from TOML files and the command line. :class:`Experiment` turns a config into one compiled
function ``(start latents [B, d], seeds [B]) -> images, latents, distances`` that ``reds-jax
traverse``, ``reds-jax demo`` and the augmentation job (:mod:`reds_jax.jobs.augment`) share.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reds_jax.core.traverse import METHODS, OPTIONS, PATHS, traverse
from reds_jax.core.validate import check_memory
from reds_jax.jobs import models

try:
    from reds_jax.core.matrix_free import SOLVERS
except ImportError:  # pragma: no cover - older core without the matrix-free solver
    SOLVERS = ("dense",)

__all__ = ["ConfigError", "Experiment", "JobConfig", "Seeds", "get_experiment", "parse_seeds"]


class ConfigError(ValueError):
    """A configuration field is missing, unknown or has a bad value; the message names the field."""


# ---------------------------------------------------------------------------------------------
# Configuration


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

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

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


def _sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a model name"),
    "model_args": ((dict,), "a table of loader arguments"),
    "seeds": ((str, int, list), "'start:stop', an int, or a list"),
    "latents": ((str,), "a path to a .npy file [N, d]"),
    "key": ((int,), "an int"),
    "vary": ((str, list), "a feature spec or a list of them"),
    "fix": ((str, list), "a feature spec or a list of them"),
    "method": ((str,), f"one of {METHODS}"),
    "path": ((str,), f"one of {PATHS}"),
    "k": ((int,), "an int >= 1"),
    "steps": ((int,), "an int >= 0"),
    "step_size": ((int, float), "a number > 0"),
    "solver": ((str,), f"one of {SOLVERS}"),
    "options": ((dict,), f"a table with keys from {OPTIONS}"),
    "dtype": ((str,), "'float32' or 'float64'"),
    "shard_size": ((int,), "an int >= 1"),
    "batch_size": ((int,), "an int >= 1"),
    "compress": ((bool,), "true or false"),
}


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What to traverse and how (shared by ``reds-jax traverse`` and ``reds-jax augment``).

    Attributes:
      model: a name from :data:`reds_jax.jobs.models.MODELS` (``"faces"``, ``"rooms"``, ...).
      model_args: keyword arguments of the model's loader (e.g. ``{"size": 32}`` for rooms).
      seeds: ``"start:stop"``, an int, or a list (see :func:`parse_seeds`); or use ``latents``.
      latents: path to a ``.npy`` file of start latents ``[N, d]`` (items are its rows).
      key: base PRNG seed of the start latents and traversal keys.
      vary: varied feature specs (see :func:`reds_jax.jobs.models.parse_feature`); None: the model's.
      fix: fixed feature specs; None: the model's default; ``[]``: none.
      method: REDs method (``reds``, ``nullspace``, ``maxc``, ``minf``, ``random``).
      path: ``local`` or ``linear``.
      k: directions per start latent (``2k`` paths).
      steps: steps per path ``T``.
      step_size: latent step length; None: the model's default.
      solver: ``dense`` (default) or ``matrix_free`` (see :func:`reds_jax.core.traverse`).
      options: extra :func:`reds_jax.core.traverse` options (``ridge``, ``beta_fix``, ...).
      dtype: ``float32`` or ``float64`` (the latter needs ``JAX_ENABLE_X64=1``).
      shard_size: start latents per shard file.
      batch_size: start latents per compiled call (changes outputs only by float rounding; not
        part of :meth:`identity`, so a resume may use another one).
      compress: deflate the ``.npz`` shards.
    """

    model: str = "rooms"
    model_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seeds: Any = None
    latents: str | None = None
    key: int = 0
    vary: tuple[str, ...] | None = None
    fix: tuple[str, ...] | None = None
    method: str = "reds"
    path: str = "local"
    k: int = 2
    steps: int = 8
    step_size: float | None = None
    solver: str = "dense"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dtype: str = "float32"
    shard_size: int = 64
    batch_size: int = 16
    compress: bool = True

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
            if name == "step_size":
                value = float(value)
            values[name] = value
        return cls(**values).resolved(where=where)

    def resolved(self, *, where: str = "config") -> JobConfig:
        """Validates every field and fills ``vary``/``fix``/``step_size`` from the model's defaults.

        Raises:
          ConfigError: names the offending field.
        """

        def bad(field: str, msg: str) -> ConfigError:
            return ConfigError(f"{where}: field {field!r} {msg}")

        try:
            entry = models.get_entry(self.model)
        except ValueError as err:
            raise bad("model", f"is bad: {err}") from None
        if not isinstance(self.model_args, Mapping):
            raise bad("model_args", f"must be a table; got {self.model_args!r}.")
        if self.seeds is not None and self.latents is not None:
            raise bad("seeds", "and 'latents' are both set; pass only one of them.")
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
        if self.method not in METHODS:
            raise bad("method", f"is {self.method!r}; pass one of {METHODS}.")
        if self.path not in PATHS:
            raise bad("path", f"is {self.path!r}; pass one of {PATHS}.")
        for field, lo in (("k", 1), ("steps", 0), ("shard_size", 1), ("batch_size", 1)):
            v = getattr(self, field)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise bad(field, f"must be an int >= {lo}; got {v!r}.")
        if not isinstance(self.key, int) or not 0 <= self.key < 2**32:
            raise bad("key", f"must be an int in [0, 2**32); got {self.key!r}.")
        if self.step_size is not None and not (
            isinstance(self.step_size, int | float)
            and math.isfinite(self.step_size)
            and self.step_size > 0
        ):
            raise bad("step_size", f"must be a finite number > 0; got {self.step_size!r}.")
        if self.solver not in SOLVERS:
            raise bad("solver", f"is {self.solver!r}; pass one of {SOLVERS}.")
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise bad("options", f"has unknown key(s) {unknown}; valid keys are {OPTIONS}.")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", f"is {self.dtype!r}; pass 'float32' or 'float64'.")
        return dataclasses.replace(
            self,
            model_args=dict(self.model_args),
            options=dict(self.options),
            seeds=seeds,
            vary=entry.vary if self.vary is None else tuple(self.vary),
            fix=entry.fix if self.fix is None else tuple(self.fix),
            step_size=entry.step_size if self.step_size is None else float(self.step_size),
        )

    def identity(self) -> dict[str, Any]:
        """The JSON-able fields that determine the outputs (everything but ``batch_size``)."""
        d = dataclasses.asdict(self.resolved())
        d.pop("batch_size")
        d["vary"], d["fix"] = list(d["vary"]), list(d["fix"])
        if self.latents is not None:
            path = pathlib.Path(self.latents)
            d["latents"] = {"sha256": _sha256_file(path) if path.is_file() else None}
        return json.loads(json.dumps(d))


# ---------------------------------------------------------------------------------------------
# The compiled experiment


def _shard_batch(x: jax.Array) -> jax.Array:
    devices = jax.devices()
    if len(devices) == 1:
        return x
    mesh = Mesh(np.asarray(devices), ("batch",))
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec("batch", *([None] * (x.ndim - 1)))))


class Experiment:
    """A model, its features and a traversal setting, compiled once for a fixed batch size.

    Args:
      config: a :class:`JobConfig` (``seeds``/``latents``/sharding fields are not used here).

    Raises:
      ConfigError: a bad field, or options that :func:`reds_jax.core.traverse` rejects (e.g. ``k``
        larger than the varied feature or latent size).

    >>> exp = Experiment(JobConfig(model="rooms", model_args={"latent_dim": 4, "size": 16},
    ...                            k=1, steps=1))  # doctest: +SKIP
    >>> exp.run(seeds=[0, 1])["images"].shape  # doctest: +SKIP
    (2, 2, 2, 16, 16, 3)
    """

    def __init__(self, config: JobConfig):
        self.config = cfg = config.resolved()
        try:
            self.model = models.load_model(cfg.model, **cfg.model_args)
        except ValueError as err:
            raise ConfigError(f"config: field 'model': cannot load {cfg.model!r}: {err}") from None
        self.vary = models.parse_features(cfg.vary)
        self.fix = models.parse_features(cfg.fix)
        self.dtype = jnp.dtype(cfg.dtype)
        if jnp.zeros((), self.dtype).dtype != self.dtype:
            raise ConfigError(
                f"config: field 'dtype' is {cfg.dtype!r} but JAX runs without 64-bit support; "
                "pass dtype = 'float32' or set JAX_ENABLE_X64=1."
            )
        self._fn = jax.jit(jax.vmap(self._one))
        d = self.model.latent_dim
        try:  # validate against traverse's own checks before any compile
            shapes = jax.eval_shape(
                self._one, jnp.zeros((d,), self.dtype), jnp.zeros((), jnp.uint32)
            )
        except ValueError as err:
            raise ConfigError(f"config: {err}") from None
        # bytes kept per start latent, and (a rough upper estimate) needed while computing one:
        # the float images of every frame, their features and distances, besides the outputs
        self._out_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
        self._work_bytes = self._out_bytes + 3 * shapes["images"].size * self.dtype.itemsize

    @property
    def latent_dim(self) -> int:
        """``d``."""
        return self.model.latent_dim

    def _one(self, z: jax.Array, seed: jax.Array):
        cfg = self.config
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.key), seed), 1)
        tr = traverse(
            self.model.generator,
            z,
            vary=self.vary,
            fix=self.fix,
            method=cfg.method,
            path=cfg.path,
            k=cfg.k,
            steps=cfg.steps,
            step_size=cfg.step_size,
            key=key,
            **({} if cfg.solver == "dense" else {"solver": cfg.solver}),
            **cfg.options,
        )
        images = jax.vmap(jax.vmap(self.model.generator))(tr.latents)
        images = jnp.round(jnp.clip(images, 0.0, 1.0) * 255.0).astype(jnp.uint8)
        paths = tr.latents.shape[:2]

        def stack(ds):
            return jnp.stack(ds) if ds else jnp.zeros((0, *paths), tr.latents.dtype)

        return {
            "images": images,
            "latents": tr.latents,
            "vary_distances": stack(tr.vary_distances),
            "fix_distances": stack(tr.fix_distances),
            "values": tr.values,
        }

    def start_latents(self, seeds: Sequence[int]) -> np.ndarray:
        """``[N, d]`` start latents of ``seeds`` (see :func:`reds_jax.jobs.models.start_latents`)."""
        return np.asarray(
            models.start_latents(seeds, self.latent_dim, key=self.config.key, dtype=self.dtype)
        )

    def run(
        self,
        *,
        seeds: Sequence[int] | np.ndarray,
        latents: np.ndarray | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[int], Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Traverses from the start latents of ``seeds`` (or the given ``latents``) and renders.

        Every compiled call gets exactly ``batch_size`` latents (the last batch is padded), so a
        job compiles once; the batch is sharded over ``jax.devices()``.

        Args:
          seeds: ``[N]`` seeds (the traversal keys; the start latents too unless ``latents``).
          latents: optional ``[N, d]`` start latents.
          batch_size: latents per compiled call; every call gets exactly this many (padded).
            Default: ``min(config.batch_size, N)``.
          on_batch: called with the number of latents done after every compiled call.

        Returns:
          dict of numpy arrays: ``images`` uint8 ``[N, 2k, T+1, H, W, 3]``, ``latents``
          ``[N, 2k, T+1, d]``, ``vary_distances`` ``[N, V, 2k, T+1]``, ``fix_distances``
          ``[N, F, 2k, T+1]``, ``values`` ``[N, k]``, ``seeds`` int64 ``[N]``.
        """
        n_dev = len(jax.devices())
        bs = batch_size or min(self.config.batch_size, len(seeds))
        bs = -(-bs // n_dev) * n_dev
        cfg = self.config
        check_memory(
            len(seeds) * self._out_bytes + bs * self._work_bytes,
            f"traversing {len(seeds)} start latent(s) with k={cfg.k}, steps={cfg.steps} "
            f"(2k·(T+1) = {2 * cfg.k * (cfg.steps + 1)} frames each, {bs} per compiled call)",
            "pass fewer seeds (reds-jax augment writes them in shards), or lower k, steps or "
            "batch_size",
        )
        seeds = np.asarray(seeds, np.int64).reshape(-1)
        z = self.start_latents(seeds) if latents is None else np.asarray(latents, self.dtype)
        if z.shape != (len(seeds), self.latent_dim):
            raise ValueError(
                f"latents must have shape [N, d] = [{len(seeds)}, {self.latent_dim}]; got {z.shape}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("latents contain NaN or inf; pass finite start latents.")
        parts = []
        for start in range(0, len(seeds), bs):
            zb, sb = z[start : start + bs], seeds[start : start + bs]
            pad = bs - len(sb)
            if pad:
                zb = np.concatenate([zb, np.repeat(zb[-1:], pad, axis=0)])
                sb = np.concatenate([sb, np.repeat(sb[-1:], pad)])
            out = self._fn(_shard_batch(jnp.asarray(zb)), _shard_batch(jnp.asarray(sb, jnp.uint32)))
            parts.append({name: np.asarray(v)[: bs - pad] for name, v in out.items()})
            if on_batch is not None:
                on_batch(bs - pad)
        result = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        result["seeds"] = seeds
        return result


@functools.lru_cache(maxsize=8)
def _cached(identity: str, loader_id: int) -> Experiment:
    del loader_id
    return Experiment(JobConfig(**json.loads(identity)))


def get_experiment(config: JobConfig) -> Experiment:
    """A compiled :class:`Experiment` for ``config``, reused across calls in this process.

    The last 8 configurations are kept (keyed by every field but ``seeds``, ``latents``,
    ``shard_size``, ``batch_size`` and ``compress``), so repeated jobs compile once.

    Args:
      config: a :class:`JobConfig`.

    Returns:
      An :class:`Experiment`.
    """
    cfg = config.resolved()
    fields = dataclasses.asdict(cfg)
    for name in ("seeds", "latents", "shard_size", "batch_size", "compress"):
        fields.pop(name)
    fields["vary"], fields["fix"] = list(cfg.vary), list(cfg.fix)
    try:
        identity = json.dumps(fields, sort_keys=True)
    except TypeError:  # model_args / options that JSON cannot hold: no caching
        return Experiment(cfg)
    exp = copy.copy(_cached(identity, id(models.get_entry(cfg.model).loader)))
    exp.config = cfg  # same compiled function; this call's seeds / batch size
    return exp
