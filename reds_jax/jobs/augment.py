"""The dataset-augmentation job: start latents -> REDs traversals -> images, in resumable shards.

A job is described by a :class:`reds_jax.jobs.experiment.JobConfig` (also readable from TOML, see
:meth:`~reds_jax.jobs.experiment.JobConfig.from_mapping`) and writes into one folder::

    config.json          the resolved configuration (a resume must match it)
    manifest.jsonl       one JSON line per completed shard (process 0, or a single process)
    manifest-1.jsonl     ... those of process 1 of a multi-host job, and so on
    shard-00000.npz      images uint8 [n, 2k, T+1, H, W, 3], latents [n, 2k, T+1, d],
    shard-00001.npz      vary_distances [n, V, 2k, T+1], fix_distances [n, F, 2k, T+1],
    ...                  values [n, k], seeds [n], items [n], vary_features [V], fix_features [F],
                         diagnostics_<field> int32 [n, 2k] (fallback counts per path, see
                         reds_jax.Diagnostics), diagnostics_residual [n, 2k, T+1]

``format`` chooses the shard files: ``npz`` (above; ``numpy.load`` reads them, no pickle),
``webdataset`` (``shard-00000.tar``: one sample per start latent × path, frames as PNGs) or
``parquet`` (``shard-00000.parquet``: one row per start latent × path); see
:mod:`reds_jax.jobs.shards`. :func:`load_shard` / :func:`load_dataset` read every format into the
arrays above.

Guarantees, for every format:

* **Deterministic bytes.** The same configuration on the same machine gives the same sha256 for
  every shard, whichever process wrote it and however many processes the job had.
* **Atomic.** (:mod:`reds_jax.jobs.manifest`) Every shard is written to a temporary name in the same folder, fsynced and renamed;
  only then is its manifest line appended (one ``write`` on an ``O_APPEND`` file, fsynced). A job
  killed at any moment never lists a partial shard; a torn last line (a kill inside that write)
  is cut off by the next run of the process that owns the file.
* **Resume.** A run checks ``config.json``, verifies every listed shard of its share (present,
  size, sha256) and computes only the missing ones; a shard file that no manifest lists is
  recomputed and overwritten. A shard recomputed after its listed file went bad gets a new line
  with a larger ``seq``; readers take the line with the largest ``seq`` of each shard.
* **Validated first.** ``config.json`` is written only after the model loads and the options,
  ``k``, the feature specs, the format and the start latents (shape, finite) passed their checks,
  so a failed first run leaves the folder free for the corrected command.

Start latents are per-seed deterministic: ``normal(fold_in(key(key), seed), [d])``, and the
traversal key of a seed (used by ``method="random"``) is ``fold_in(fold_in(key(key), seed), 1)``,
so no output depends on which shards were already done. ``batch_size`` (and the number of local
devices) may change between runs and resumes; it changes results only by floating-point rounding
(XLA may vectorise different batch sizes differently).

**Multi-host** (:mod:`reds_jax.jobs.distributed`): under ``jax.distributed`` with ``P`` processes,
shard ``i`` is computed by process ``i % P`` on its local devices and written into the shared
folder; each process appends to its own manifest, so a killed process cannot corrupt another's
records. Process 0 validates the folder, holds its lock and writes ``config.json``; the others
start when it says so and check ``config.json`` themselves. A later run may use another process
count: shards are identified by index, so finished ones are verified and skipped whichever
process wrote them.

**Throughput.** Encoding (PNG, zlib, Parquet) and disk writes run on a background thread fed by
a bounded queue (``queue_size`` shards), so the devices compute the next shard meanwhile; an
error in the writer is raised in the calling thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from reds_jax._io import TMP_SUFFIX, atomic_write, sha256_file

from .config import ConfigError, JobConfig, parse_seeds
from .distributed import Coordinator, fatal_cause, initialize, owned_shards
from .experiment import DIAGNOSTICS_PREFIX, Experiment, diagnostics_warning, get_experiment
from .manifest import (
    MANIFEST_FILE,
    append_line,
    cut_torn_tail,
    latest_entries,
    manifest_files,
    manifest_name,
    read_manifest,
    seq,
    verified,
)
from .shards import FORMATS, encode_shard, load_shard, require, shard_name

__all__ = [
    "FORMATS",
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
LOCK_FILE = ".lock"
_START_TIMEOUT_S = 1800.0  # how long processes 1.. wait for process 0 to validate the folder
_DONE_TIMEOUT_S = 7 * 86400.0  # how long a finished process waits for the others
_SEE_CONFIG_S = 30.0  # how long processes 1.. wait to see process 0's config.json


class AugmentError(RuntimeError):
    """The output folder cannot be used (another configuration, another job writing to it)."""


# ---------------------------------------------------------------------------------------------
# Reading a job's folder


def load_dataset(out: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All completed shards of a job concatenated along the first axis (for small datasets).

    Args:
      out: the job's output folder (any format, any number of processes).

    Only the shard files the job itself names are read: each manifest entry must name its own
    shard (``shard-00003.npz`` for index 3) directly inside ``out`` (no absolute path, no ``..``,
    no symlink out of the folder), and the file's sha256 must match the entry's.

    Returns:
      dict of arrays as in :func:`load_shard`, ``[sum n, ...]`` (feature names not repeated).

    Raises:
      FileNotFoundError: no completed shards.
      AugmentError: an entry naming another file, or a shard whose sha256 does not match.

    >>> # load_dataset("out")["seeds"] -> every seed of the job once, in job order
    """
    out = pathlib.Path(out)
    entries = read_manifest(out)
    if not entries:
        raise FileNotFoundError(
            f"{out} has no completed shards ({MANIFEST_FILE} is missing or empty)."
        )
    shards = [load_shard(_checked_shard(out, e)) for e in entries]
    result = {}
    for name in shards[0]:
        if name in ("vary_features", "fix_features"):
            result[name] = shards[0][name]
        else:
            result[name] = np.concatenate([s[name] for s in shards])
    return result


def _checked_shard(out: pathlib.Path, entry: Mapping[str, Any]) -> pathlib.Path:
    """The shard file of a manifest ``entry``, inside ``out`` and with the entry's sha256."""
    name, index, fmt = entry.get("shard"), entry.get("index"), entry.get("format", "npz")
    try:
        expected = shard_name(index, fmt) if isinstance(index, int) else None
    except (KeyError, TypeError, ValueError):
        expected = None
    path = out / str(name)
    if name != expected or path.resolve().parent != out.resolve():
        raise AugmentError(
            f"{out}: manifest entry {index!r} names the shard {str(name)[:200]!r}, not its own "
            f"file {expected!r} inside the folder; refusing to read it (edit or delete the "
            "manifest line, then rerun reds-jax augment to redo the shard)."
        )
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        raise AugmentError(
            f"{path}: missing, or its sha256 does not match the manifest (a changed or "
            "incomplete shard); rerun reds-jax augment on the folder to redo it."
        )
    return path


# ---------------------------------------------------------------------------------------------
# The job


class AugmentResult(NamedTuple):
    """What :func:`augment` did (in this process).

    Attributes:
      out: the output folder.
      n_items: start latents in the job.
      n_shards: shards in the job.
      written: indices of the shards written by this call.
      skipped: indices of this process's shards already complete (verified) before this call.
      process: this process's index (0 for a single process).
      processes: number of processes of the job.
    """

    out: pathlib.Path
    n_items: int
    n_shards: int
    written: tuple[int, ...]
    skipped: tuple[int, ...]
    process: int = 0
    processes: int = 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextlib.contextmanager
def _locked(out: pathlib.Path) -> Iterator[None]:
    """Holds ``out/.lock`` (an exclusive ``flock``; the file holds the pid) and removes it on exit.

    A lock file left by a process that died (the kernel released its ``flock``) is taken over with
    a message naming that pid.
    """
    import fcntl

    path = out / LOCK_FILE
    while True:
        f = open(path, "a+")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise AugmentError(
                f"another augment job (pid {holder}) is writing to {out}; wait for it or pass "
                "another output folder."
            ) from None
        try:  # the holder may have removed the file between our open and our lock: retry
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    try:
        f.seek(0)
        old = f.read().strip()
        if old and old != str(os.getpid()):
            state = (
                "no longer running"
                if not old.isdigit() or not _pid_alive(int(old))
                else ("no longer holding it")
            )
            print(
                f"reds-jax augment: taking over the stale lock {path} of process {old} ({state})",
                file=sys.stderr,
            )
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding the lock (see the retry above)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def _unused(out: pathlib.Path) -> bool:
    """No manifest and no shard file: nothing of a job would be lost by starting another."""
    return not manifest_files(out) and not any(out.glob("shard-*"))


def _check_config(out: pathlib.Path, header: dict[str, Any], *, write: bool) -> None:
    """Compares ``config.json`` with ``header``; writes it first when missing and ``write``.

    With ``write``, a ``config.json`` in a folder without any manifest or shard (a job stopped
    before its first shard) is replaced rather than refused.
    """
    path = out / CONFIG_FILE
    if write and path.is_file() and _unused(out):
        old = path.read_bytes()
        new = (json.dumps(header, indent=2, sort_keys=True) + "\n").encode()
        if old != new:
            print(
                f"reds-jax augment: replacing {path} of a job that finished no shard",
                file=sys.stderr,
            )
            path.unlink()
    if not path.is_file():
        if not write:
            raise AugmentError(
                f"process 0 wrote {path} but this process does not see it: pass an output folder "
                "on a file system that every host of the job shares."
            )
        if manifest_files(out):
            raise AugmentError(
                f"{out} has a {MANIFEST_FILE} but no {CONFIG_FILE}; it was not written by this job. "
                "Pass an empty or new output folder."
            )
        atomic_write(path, (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())
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


class _Writer:
    """Runs ``write(*item)`` on a background thread fed by a bounded queue.

    ``put`` blocks while ``maxsize`` items wait (so memory stays bounded) and raises the writer's
    error, if any, in the calling thread; ``close`` drains the queue, joins, and raises it too.
    ``maxsize=0`` writes in the calling thread instead.
    """

    def __init__(self, write: Callable[..., None], maxsize: int):
        self._write = write
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        if maxsize > 0:
            self._queue = queue.Queue(maxsize=maxsize)
            self._thread = threading.Thread(target=self._loop, name="reds-jax-writer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as err:  # noqa: B036 - handed to the calling thread
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, *item: Any) -> None:
        if self._queue is None:
            self._write(*item)
            return
        while True:
            self._raise()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, *, raise_error: bool = True) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
        if raise_error:
            self._raise()


def _experiment(cfg: JobConfig, latents: np.ndarray | None) -> Experiment:
    """Loads and checks the model and options (no compile yet): every ``ConfigError`` is here."""
    try:
        exp = get_experiment(cfg)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config: {err}") from None
    if latents is not None and latents.shape[1] != exp.latent_dim:
        raise ConfigError(
            f"config: field 'latents' has d={latents.shape[1]} but model {cfg.model!r} "
            f"needs d={exp.latent_dim}."
        )
    return exp


def augment(
    config: JobConfig | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    verify: bool = True,
    distributed: bool | Mapping[str, Any] | None = None,
    queue_size: int = 2,
    names: Sequence[str] | None = None,
) -> AugmentResult:
    """Runs (or resumes) an augmentation job; see the module docstring for the folder layout.

    Args:
      config: a :class:`JobConfig` or a mapping of its fields; needs ``seeds`` or ``latents``.
      out: output folder (created). Resuming requires the same configuration (``batch_size``
        and the number of processes may differ).
      progress: show a tqdm progress bar on stderr.
      verify: check the sha256 of shards already listed in a manifest before skipping them.
      distributed: ``True`` runs ``jax.distributed.initialize()`` (auto-detection), a mapping
        passes its keyword arguments (``coordinator_address``, ``num_processes``,
        ``process_id``); ``None`` initialises nothing but still follows
        ``jax.process_index()`` / ``jax.process_count()`` if the caller initialised the runtime.
        Every process of the job calls :func:`augment` with the same arguments.
      queue_size: computed shards that may wait for the background writer (``0``: write in this
        thread, without overlap).
      names: optional ``[N]`` item names (e.g. the image files of ``--images``), stored per shard
        as ``names``.

    Returns:
      :class:`AugmentResult` of this process.

    Raises:
      ConfigError: a bad configuration field (nothing is written to ``out`` then).
      AugmentError: the folder holds another configuration, or another job is writing to it.

    >>> augment({"model": "rooms", "model_args": {"size": 16}, "seeds": "0:4", "k": 1,
    ...          "steps": 2, "shard_size": 2, "format": "parquet"}, "out")  # compiles, writes ./out  # doctest: +SKIP
    """
    if not isinstance(config, JobConfig):
        config = JobConfig.from_mapping(config)
    cfg = config.resolved()
    if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 0:
        raise ValueError(f"queue_size must be an int >= 0; got {queue_size!r}.")
    try:
        require(cfg.format)
    except ImportError as err:
        raise ConfigError(f"config: field 'format': {err}") from None
    seeds, latents = cfg.starts()
    n_items = len(seeds)
    if names is not None and len(names) != n_items:
        raise ConfigError(f"names has {len(names)} entries; pass one per start latent ({n_items}).")
    n_shards = -(-n_items // cfg.shard_size)
    procs = initialize(distributed)
    coord = Coordinator(procs)
    out = pathlib.Path(out)
    from reds_jax import __version__

    header = {
        "config": cfg.identity(),
        "n_items": n_items,
        "n_shards": n_shards,
        "reds_jax_version": __version__,
    }
    with contextlib.ExitStack() as stack:
        exp = None
        if procs.leader:
            try:
                if not out.exists():  # a refused job leaves no folder behind
                    exp = _experiment(cfg, latents)
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(_locked(out))
                for name in (CONFIG_FILE, MANIFEST_FILE):  # temp files of a killed writer
                    for stale in out.glob(f".{name}.*{TMP_SUFFIX}"):
                        stale.unlink(missing_ok=True)
                if exp is None and (not (out / CONFIG_FILE).is_file() or _unused(out)):
                    exp = _experiment(cfg, latents)  # validate before claiming the folder
                _check_config(out, header, write=True)
            except BaseException as err:
                coord.publish("start", f"{type(err).__name__}: {err}")
                raise
            coord.publish("start", "ok")
        else:
            word = coord.receive("start", _START_TIMEOUT_S)
            if word != "ok":
                raise AugmentError(f"process 0 did not start the job: {word}")
            deadline = time.monotonic() + _SEE_CONFIG_S  # a shared file system may lag a little
            while not (out / CONFIG_FILE).is_file() and time.monotonic() < deadline:
                time.sleep(0.5)
            _check_config(out, header, write=False)
        result = _run(
            cfg, out, procs, exp, latents, seeds, n_shards, progress, verify, queue_size, names
        )
        try:
            coord.barrier("done", _DONE_TIMEOUT_S)
        except Exception as err:  # the runtime raises its own error types
            if "heartbeat" in str(err):  # a peer died while this process waited for it
                raise AugmentError(f"process {procs.index}: {fatal_cause(str(err), 1)}") from None
            raise AugmentError(
                f"process {procs.index} finished its shards, but not every process of the job "
                f"did ({type(err).__name__}: {err}); run the job again to complete it."
            ) from None
    return result


def _run(cfg, out, procs, exp, latents, seeds, n_shards, progress, verify, queue_size, names):
    """This process's share of the job, in a validated folder."""
    fmt, n_items = cfg.format, len(seeds)
    mine = out / manifest_name(procs.index)
    cut_torn_tail(mine)  # only this process appends to it
    owned = owned_shards(n_shards, procs)  # a range: never enumerated up front
    for stale in out.glob(f".shard-*{TMP_SUFFIX}"):  # temp files of a killed run
        index = stale.name[len(".shard-") :].split(".", 1)[0]
        if index.isdigit() and int(index) in owned:  # only this process writes these shards
            stale.unlink(missing_ok=True)
    latest = latest_entries(out)
    done = verified(out, latest, owned, fmt, verify)
    pending = (i for i in owned if i not in done)
    n_pending = len(owned) - len(done)
    if n_pending and exp is None:
        exp = _experiment(cfg, latents)

    def bounds(idx: int) -> tuple[int, int]:
        return idx * cfg.shard_size, min((idx + 1) * cfg.shard_size, n_items)

    def write(idx: int, arrays: dict[str, np.ndarray]) -> None:
        lo, hi = bounds(idx)
        data = encode_shard(arrays, fmt, compress=cfg.compress)
        name = shard_name(idx, fmt)
        atomic_write(out / name, data)
        previous = latest.get(idx)
        entry = {
            "shard": name,
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
            "format": fmt,
            "process": procs.index,
            "seq": max(time.time_ns(), 0 if previous is None else seq(previous) + 1),
        }
        append_line(mine, entry)

    from reds_jax.jobs.progress import BatchProgress

    if done and progress:
        print(
            f"reds-jax augment: resuming {out}: {len(done)} of {len(owned)} shard(s) already "
            f"finished ({'sha256 verified' if verify else 'not verified: --no-verify'}) and "
            f"skipped; {n_pending} to compute",
            file=sys.stderr,
        )
    short = n_shards * cfg.shard_size - n_items  # the last shard's missing items
    total = len(owned) * cfg.shard_size - (short if n_shards - 1 in owned else 0)
    computed: list[int] = []
    bar = BatchProgress(  # compile lines, then a bar whose rate excludes compilation
        total,
        "reds-jax augment" + (f" [{procs.index}/{procs.count}]" if procs.count > 1 else ""),
        done=sum(e["count"] for e in done.values()),
        enabled=progress,
    )
    totals: dict[str, Any] = {}
    writer = _Writer(write, queue_size)
    try:
        with bar:
            for idx in pending:
                lo, hi = bounds(idx)
                arrays = exp.run(
                    seeds=seeds[lo:hi],
                    latents=None if latents is None else latents[lo:hi],
                    batch_size=min(cfg.batch_size, cfg.shard_size),
                    on_batch=bar,
                    fix="lower --shard-size, k, steps or --batch-size",
                    on_compile=bar.compile,
                )
                for name, v in arrays.items():  # fallback totals, one warning at the end
                    if name.startswith(DIAGNOSTICS_PREFIX):
                        totals[name] = totals.get(name, 0) + np.sum(v)
                arrays["items"] = np.arange(lo, hi, dtype=np.int64)
                if names is not None:  # --images: the input files' stems
                    arrays["names"] = np.asarray(names[lo:hi], dtype=str)
                arrays["vary_features"] = np.asarray(cfg.vary, dtype=str)
                arrays["fix_features"] = np.asarray(cfg.fix, dtype=str).reshape(len(cfg.fix))
                writer.put(idx, arrays)
                computed.append(idx)
    except BaseException:
        writer.close(raise_error=False)  # finish what was computed, then the first error wins
        raise
    writer.close()
    warning = diagnostics_warning(totals)
    if warning:
        print(f"reds-jax augment: {warning}", file=sys.stderr)
    return AugmentResult(
        out, n_items, n_shards, tuple(computed), tuple(sorted(done)), procs.index, procs.count
    )
