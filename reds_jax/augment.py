"""The dataset-augmentation job: start latents -> REDs traversals -> images, in resumable shards.

A job is described by a :class:`JobConfig` (also readable from TOML, see :meth:`JobConfig.from_mapping`)
and writes into one folder::

    config.json          the resolved configuration (written first; a resume must match it)
    manifest.jsonl       one JSON line per completed shard: file, sha256, bytes, items, seeds
    shard-00000.npz      images uint8 [n, 2k, T+1, H, W, 3], latents [n, 2k, T+1, d],
    shard-00001.npz      vary_distances [n, V, 2k, T+1], fix_distances [n, F, 2k, T+1],
    ...                  values [n, k], seeds [n], items [n], vary_features [V], fix_features [F]

Shards are plain ``.npz`` files (``numpy.load`` reads them; no pickle) written byte-for-byte
reproducibly: the same configuration always gives the same sha256. Every file is written to a
temporary name in the same folder, fsynced and renamed; a manifest line is added only after its
shard's rename, and the manifest itself is rewritten the same way, so a job killed at any moment
never lists a partial shard. On restart the job checks ``config.json``, verifies every listed
shard (present, size, sha256), and computes only the missing ones; a shard file that is not in the
manifest is recomputed and overwritten.

Start latents are per-seed deterministic: ``normal(fold_in(key(key), seed), [d])``, and the
traversal key of a seed (used by ``method="random"``) is ``fold_in(fold_in(key(key), seed), 1)``,
so no output depends on the batch size or on which shards were already done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pathlib
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import models
from .traverse import METHODS, OPTIONS, PATHS, traverse

__all__ = [
    "AugmentError",
    "AugmentResult",
    "ConfigError",
    "Experiment",
    "JobConfig",
    "augment",
    "load_dataset",
    "load_shard",
    "parse_seeds",
    "read_manifest",
]

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.jsonl"
LOCK_FILE = ".lock"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ConfigError(ValueError):
    """A configuration field is missing, unknown or has a bad value; the message names the field."""


class AugmentError(RuntimeError):
    """The output folder cannot be used (another configuration, another job writing to it)."""


# ---------------------------------------------------------------------------------------------
# Configuration


def parse_seeds(spec: Any) -> np.ndarray:
    """Seeds from ``"start:stop"`` (half-open), an int, or a list of ints / ``"start:stop"`` strings.

    Args:
      spec: e.g. ``"0:1000"``, ``[0, 1, 2]``, ``["0", "5:8"]``, ``7``.

    Returns:
      ``[N]`` int64 seeds in [0, 2³²), in the given order.

    Raises:
      ConfigError: bad syntax, a negative or too large seed, or no seeds.

    >>> parse_seeds(["0:3", 7]).tolist()
    [0, 1, 2, 7]
    """
    tokens = spec if isinstance(spec, list | tuple) else [spec]
    out: list[np.ndarray] = []
    for tok in tokens:
        if isinstance(tok, bool):
            raise ConfigError(f"seeds: {tok!r} is not a seed; pass ints or 'start:stop'.")
        if isinstance(tok, int | np.integer):
            out.append(np.asarray([int(tok)], np.int64))
            continue
        text = str(tok).strip()
        try:
            if ":" in text:
                a, b = (int(x) for x in text.split(":"))
                if b <= a:
                    raise ConfigError(
                        f"seeds: range {text!r} is empty; write 'start:stop' with stop > start."
                    )
                out.append(np.arange(a, b, dtype=np.int64))
            else:
                out.append(np.asarray([int(text)], np.int64))
        except ValueError as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(
                f"seeds: {tok!r} is not an int or a 'start:stop' range (e.g. '0:1000')."
            ) from None
    seeds = np.concatenate(out) if out else np.zeros((0,), np.int64)
    if seeds.size == 0:
        raise ConfigError("seeds: no seeds given; pass e.g. seeds = '0:100'.")
    if seeds.min() < 0 or seeds.max() >= 2**32:
        raise ConfigError("seeds must lie in [0, 2**32).")
    return seeds


def _seed_tokens(spec: Any) -> list[Any]:
    tokens = spec if isinstance(spec, list | tuple) else [spec]
    return [int(t) if isinstance(t, int | np.integer) else str(t).strip() for t in tokens]


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
      model: a name from :data:`reds_jax.models.MODELS` (``"faces"``, ``"rooms"``, ...).
      model_args: keyword arguments of the model's loader (e.g. ``{"size": 32}`` for rooms).
      seeds: ``"start:stop"``, an int, or a list (see :func:`parse_seeds`); or use ``latents``.
      latents: path to a ``.npy`` file of start latents ``[N, d]`` (items are its rows).
      key: base PRNG seed of the start latents and traversal keys.
      vary: varied feature specs (see :func:`reds_jax.models.parse_feature`); None: the model's.
      fix: fixed feature specs; None: the model's default; ``[]``: none.
      method: REDs method (``reds``, ``nullspace``, ``maxc``, ``minf``, ``random``).
      path: ``local`` or ``linear``.
      k: directions per start latent (``2k`` paths).
      steps: steps per path ``T``.
      step_size: latent step length; None: the model's default.
      options: extra :func:`reds_jax.traverse` options (``ridge``, ``beta_fix``, ...).
      dtype: ``float32`` or ``float64`` (the latter needs ``JAX_ENABLE_X64=1``).
      shard_size: start latents per shard file.
      batch_size: start latents per compiled call (does not change any output).
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
        if self.seeds is not None:
            try:
                parse_seeds(self.seeds)
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
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise bad("options", f"has unknown key(s) {unknown}; valid keys are {OPTIONS}.")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", f"is {self.dtype!r}; pass 'float32' or 'float64'.")
        return dataclasses.replace(
            self,
            model_args=dict(self.model_args),
            options=dict(self.options),
            seeds=None if self.seeds is None else _seed_tokens(self.seeds),
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
      ConfigError: a bad field, or options that :func:`reds_jax.traverse` rejects (e.g. ``k``
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
            jax.eval_shape(self._one, jnp.zeros((d,), self.dtype), jnp.zeros((), jnp.uint32))
        except ValueError as err:
            raise ConfigError(f"config: {err}") from None

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
        """``[N, d]`` start latents of ``seeds`` (see :func:`reds_jax.models.start_latents`)."""
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
        seeds = np.asarray(seeds, np.int64).reshape(-1)
        z = self.start_latents(seeds) if latents is None else np.asarray(latents, self.dtype)
        if z.shape != (len(seeds), self.latent_dim):
            raise ValueError(
                f"latents must have shape [N, d] = [{len(seeds)}, {self.latent_dim}]; got {z.shape}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("latents contain NaN or inf; pass finite start latents.")
        n_dev = len(jax.devices())
        bs = batch_size or min(self.config.batch_size, len(seeds))
        bs = -(-bs // n_dev) * n_dev
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


# ---------------------------------------------------------------------------------------------
# Atomic files


def _fsync_dir(path: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to a temp file in ``path``'s folder, fsync, rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _npz_bytes(arrays: Mapping[str, np.ndarray], compress: bool) -> bytes:
    """A reproducible ``.npz`` (fixed timestamps, fixed order), readable by ``numpy.load``."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def shard_name(index: int) -> str:
    """``shard-00000.npz`` for index 0."""
    return f"shard-{index:05d}.npz"


def read_manifest(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The manifest lines of an augmentation folder (an empty list when there is none).

    Args:
      out: the job's output folder.

    Returns:
      One dict per completed shard, in the order written: ``shard`` (file name), ``index``,
      ``sha256``, ``bytes``, ``items`` (``[start, stop)`` positions in the job's item list),
      ``seed_first``, ``seed_last``, ``count``.
    """
    path = pathlib.Path(out) / MANIFEST_FILE
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            print(f"reds-jax augment: ignoring unreadable line {number} of {path}", file=sys.stderr)
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _write_manifest(out: pathlib.Path, entries: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    _atomic_write(out / MANIFEST_FILE, text.encode())


def load_shard(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All arrays of one shard file (see the module docstring for names and shapes).

    >>> # load_shard("out/shard-00000.npz")["images"].shape -> (n, 2k, T+1, H, W, 3)
    """
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def load_dataset(out: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All completed shards of a job concatenated along the first axis (for small datasets).

    Args:
      out: the job's output folder.

    Returns:
      dict of arrays as in :func:`load_shard`, ``[sum n, ...]`` (feature names not repeated).
    """
    out = pathlib.Path(out)
    entries = sorted(read_manifest(out), key=lambda e: e["index"])
    if not entries:
        raise FileNotFoundError(
            f"{out} has no completed shards ({MANIFEST_FILE} is missing or empty)."
        )
    shards = [load_shard(out / e["shard"]) for e in entries]
    result = {}
    for name in shards[0]:
        if name in ("vary_features", "fix_features"):
            result[name] = shards[0][name]
        else:
            result[name] = np.concatenate([s[name] for s in shards])
    return result


# ---------------------------------------------------------------------------------------------
# The job


class AugmentResult(NamedTuple):
    """What :func:`augment` did.

    Attributes:
      out: the output folder.
      n_items: start latents in the job.
      n_shards: shards in the job.
      written: indices of the shards written by this call.
      skipped: indices of the shards already complete (verified) before this call.
    """

    out: pathlib.Path
    n_items: int
    n_shards: int
    written: tuple[int, ...]
    skipped: tuple[int, ...]


@contextlib.contextmanager
def _locked(out: pathlib.Path) -> Iterator[None]:
    import fcntl

    with open(out / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AugmentError(
                f"another augment job is writing to {out}; wait for it or pass another output folder."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _check_config(out: pathlib.Path, header: dict[str, Any]) -> None:
    path = out / CONFIG_FILE
    if not path.is_file():
        if (out / MANIFEST_FILE).exists():
            raise AugmentError(
                f"{out} has a {MANIFEST_FILE} but no {CONFIG_FILE}; it was not written by this job. "
                "Pass an empty or new output folder."
            )
        _atomic_write(path, (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())
        return
    try:
        old = json.loads(path.read_text())["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AugmentError(
            f"{path} is not a reds-jax augment config ({err}); pass a new output folder."
        ) from None
    new = header["config"]
    diff = [
        f"{name}: {old.get(name)!r} (folder) != {new.get(name)!r} (now)"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
    if diff:
        raise AugmentError(
            f"{out} holds a job with a different configuration, so it cannot be resumed: "
            + "; ".join(diff)
            + ". Pass the same configuration to resume, or a new output folder to start over."
        )


def _verified(out: pathlib.Path, entries: list[dict[str, Any]], n_shards: int, verify: bool):
    done: dict[int, dict[str, Any]] = {}
    for e in entries:
        idx = e.get("index")
        ok = isinstance(idx, int) and 0 <= idx < n_shards and e.get("shard") == shard_name(idx)
        path = out / shard_name(idx) if ok else None
        ok = ok and idx not in done and path.is_file() and path.stat().st_size == e.get("bytes")
        ok = ok and (not verify or _sha256_file(path) == e.get("sha256"))
        if ok:
            done[idx] = e
        else:
            print(f"reds-jax augment: manifest entry {e!r} is invalid; redoing it", file=sys.stderr)
    return done


def augment(
    config: JobConfig | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    verify: bool = True,
) -> AugmentResult:
    """Runs (or resumes) an augmentation job; see the module docstring for the folder layout.

    Args:
      config: a :class:`JobConfig` or a mapping of its fields; needs ``seeds`` or ``latents``.
      out: output folder (created). Resuming requires the same configuration (``batch_size``
        may differ).
      progress: show a tqdm progress bar on stderr.
      verify: check the sha256 of shards already listed in the manifest before skipping them.

    Returns:
      :class:`AugmentResult`.

    Raises:
      ConfigError: a bad configuration field.
      AugmentError: the folder holds another configuration, or another job is writing to it.

    >>> augment({"model": "rooms", "model_args": {"size": 16}, "seeds": "0:4", "k": 1,
    ...          "steps": 2, "shard_size": 2}, "out")  # doctest: +SKIP
    """
    if not isinstance(config, JobConfig):
        config = JobConfig.from_mapping(config)
    cfg = config.resolved()
    if (cfg.seeds is None) == (cfg.latents is None):
        raise ConfigError(
            "config: pass exactly one of 'seeds' (e.g. '0:1000') or 'latents' (a .npy file)."
        )
    latents = None
    if cfg.latents is not None:
        try:
            latents = np.load(cfg.latents, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"config: field 'latents': cannot read {cfg.latents!r}: {err}"
            ) from None
        if latents.ndim != 2 or not np.issubdtype(latents.dtype, np.floating):
            raise ConfigError(
                f"config: field 'latents' must hold a float array [N, d]; got {latents.dtype} {latents.shape}."
            )
        seeds = np.arange(len(latents), dtype=np.int64)
    else:
        seeds = parse_seeds(cfg.seeds)
    n_items = len(seeds)
    n_shards = -(-n_items // cfg.shard_size)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from . import __version__

    header = {
        "config": cfg.identity(),
        "n_items": n_items,
        "n_shards": n_shards,
        "reds_jax_version": __version__,
    }
    with _locked(out):
        _check_config(out, header)
        for stale in out.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        entries = read_manifest(out)
        done = _verified(out, entries, n_shards, verify)
        if len(done) != len(entries):
            _write_manifest(out, list(done.values()))
        manifest = list(done.values())
        pending = [i for i in range(n_shards) if i not in done]
        if pending:
            exp = Experiment(cfg)
            if latents is not None and latents.shape[1] != exp.latent_dim:
                raise ConfigError(
                    f"config: field 'latents' has d={latents.shape[1]} but model {cfg.model!r} "
                    f"needs d={exp.latent_dim}."
                )
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_items,
            initial=sum(e["count"] for e in manifest),
            unit="latent",
            desc="reds-jax augment",
            disable=not progress,
            file=sys.stderr,
        )
        with bar:
            for idx in pending:
                lo, hi = idx * cfg.shard_size, min((idx + 1) * cfg.shard_size, n_items)
                arrays = exp.run(
                    seeds=seeds[lo:hi],
                    latents=None if latents is None else latents[lo:hi],
                    batch_size=min(cfg.batch_size, cfg.shard_size),
                    on_batch=bar.update,
                )
                arrays["items"] = np.arange(lo, hi, dtype=np.int64)
                arrays["vary_features"] = np.asarray(cfg.vary, dtype=str)
                arrays["fix_features"] = np.asarray(cfg.fix, dtype=str).reshape(len(cfg.fix))
                data = _npz_bytes(arrays, cfg.compress)
                _atomic_write(out / shard_name(idx), data)
                manifest.append(
                    {
                        "shard": shard_name(idx),
                        "index": idx,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "bytes": len(data),
                        "items": [lo, hi],
                        "seed_first": int(seeds[lo]),
                        "seed_last": int(seeds[hi - 1]),
                        "count": hi - lo,
                        "paths": 2 * cfg.k,
                        "frames": cfg.steps + 1,
                        "image_shape": list(arrays["images"].shape[3:]),
                    }
                )
                _write_manifest(out, manifest)
    return AugmentResult(out, n_items, n_shards, tuple(pending), tuple(sorted(done)))
