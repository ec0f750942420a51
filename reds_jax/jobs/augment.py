"""The dataset-augmentation job: start latents -> REDs traversals -> images, in resumable shards.

A job is described by a :class:`reds_jax.jobs.experiment.JobConfig` (also readable from TOML, see
:meth:`~reds_jax.jobs.experiment.JobConfig.from_mapping`) and writes into one folder::

    config.json          the resolved configuration (written first; a resume must match it)
    manifest.jsonl       one JSON line per completed shard: file, sha256, bytes, items, seeds
    shard-00000.npz      images uint8 [n, 2k, T+1, H, W, 3], latents [n, 2k, T+1, d],
    shard-00001.npz      vary_distances [n, V, 2k, T+1], fix_distances [n, F, 2k, T+1],
    ...                  values [n, k], seeds [n], items [n], vary_features [V], fix_features [F],
                         diagnostics_<field> int32 [n, 2k] (fallback counts per path, see
                         reds_jax.Diagnostics), diagnostics_residual [n, 2k, T+1]

Shards are plain ``.npz`` files (``numpy.load`` reads them; no pickle) written byte-for-byte
reproducibly: the same configuration on the same machine gives the same sha256. Every file is written to a
temporary name in the same folder, fsynced and renamed; a manifest line is added only after its
shard's rename, and the manifest itself is rewritten the same way, so a job killed at any moment
never lists a partial shard. On restart the job checks ``config.json``, verifies every listed
shard (present, size, sha256), and computes only the missing ones; a shard file that is not in the
manifest is recomputed and overwritten.

Start latents are per-seed deterministic: ``normal(fold_in(key(key), seed), [d])``, and the
traversal key of a seed (used by ``method="random"``) is ``fold_in(fold_in(key(key), seed), 1)``,
so no output depends on which shards were already done. ``batch_size`` (and the number of
devices) may change between runs and resumes; it changes results only by floating-point rounding
(XLA may vectorise different batch sizes differently).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from reds_jax._io import TMP_SUFFIX, atomic_write, npz_bytes, sha256_file

from .config import ConfigError, JobConfig, parse_seeds
from .experiment import DIAGNOSTICS_PREFIX, Experiment, diagnostics_warning, get_experiment

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


class AugmentError(RuntimeError):
    """The output folder cannot be used (another configuration, another job writing to it)."""


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
    atomic_write(out / MANIFEST_FILE, text.encode())


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


def _check_config(out: pathlib.Path, header: dict[str, Any]) -> None:
    path = out / CONFIG_FILE
    if not path.is_file():
        if (out / MANIFEST_FILE).exists():
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


def _verified(out: pathlib.Path, entries: list[dict[str, Any]], n_shards: int, verify: bool):
    done: dict[int, dict[str, Any]] = {}
    for e in entries:
        idx = e.get("index")
        ok = isinstance(idx, int) and 0 <= idx < n_shards and e.get("shard") == shard_name(idx)
        path = out / shard_name(idx) if ok else None
        ok = ok and idx not in done and path.is_file() and path.stat().st_size == e.get("bytes")
        ok = ok and (not verify or sha256_file(path) == e.get("sha256"))
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
    names: Sequence[str] | None = None,
) -> AugmentResult:
    """Runs (or resumes) an augmentation job; see the module docstring for the folder layout.

    Args:
      config: a :class:`JobConfig` or a mapping of its fields; needs ``seeds`` or ``latents``.
      out: output folder (created). Resuming requires the same configuration (``batch_size``
        may differ).
      progress: show a tqdm progress bar on stderr.
      verify: check the sha256 of shards already listed in the manifest before skipping them.
      names: optional ``[N]`` item names (e.g. the image files of ``--images``), stored per shard
        as ``names``.

    Returns:
      :class:`AugmentResult`.

    Raises:
      ConfigError: a bad configuration field.
      AugmentError: the folder holds another configuration, or another job is writing to it.

    >>> augment({"model": "rooms", "model_args": {"size": 16}, "seeds": "0:4", "k": 1,
    ...          "steps": 2, "shard_size": 2}, "out")  # writes a job folder  # doctest: +SKIP
    """
    if not isinstance(config, JobConfig):
        config = JobConfig.from_mapping(config)
    cfg = config.resolved()
    seeds, latents = cfg.starts()
    n_items = len(seeds)
    if names is not None and len(names) != n_items:
        raise ConfigError(f"names has {len(names)} entries; pass one per start latent ({n_items}).")
    n_shards = -(-n_items // cfg.shard_size)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from reds_jax import __version__

    header = {
        "config": cfg.identity(),
        "n_items": n_items,
        "n_shards": n_shards,
        "reds_jax_version": __version__,
    }
    with _locked(out):
        _check_config(out, header)
        for stale in out.glob(f".*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
        entries = read_manifest(out)
        done = _verified(out, entries, n_shards, verify)
        if len(done) != len(entries):
            _write_manifest(out, list(done.values()))
        manifest = list(done.values())
        pending = [i for i in range(n_shards) if i not in done]
        if done and progress:
            print(
                f"reds-jax augment: resuming {out}: {len(done)} of {n_shards} shard(s) already "
                f"finished ({'sha256 verified' if verify else 'not verified: --no-verify'}) "
                f"and skipped; {len(pending)} to compute",
                file=sys.stderr,
            )
        if pending:
            exp = get_experiment(cfg)
            if latents is not None and latents.shape[1] != exp.latent_dim:
                raise ConfigError(
                    f"config: field 'latents' has d={latents.shape[1]} but model {cfg.model!r} "
                    f"needs d={exp.latent_dim}."
                )
        from reds_jax.jobs.progress import BatchProgress

        bar = BatchProgress(
            n_items,
            "reds-jax augment",
            done=sum(e["count"] for e in manifest),
            enabled=progress,
        )
        totals: dict[str, Any] = {}
        with bar:
            for idx in pending:
                lo, hi = idx * cfg.shard_size, min((idx + 1) * cfg.shard_size, n_items)
                arrays = exp.run(
                    seeds=seeds[lo:hi],
                    latents=None if latents is None else latents[lo:hi],
                    batch_size=min(cfg.batch_size, cfg.shard_size),
                    on_batch=bar,
                )
                for name, v in arrays.items():  # fallback totals, one warning at the end
                    if name.startswith(DIAGNOSTICS_PREFIX):
                        totals[name] = totals.get(name, 0) + np.sum(v)
                arrays["items"] = np.arange(lo, hi, dtype=np.int64)
                if names is not None:  # --images: the input files' stems
                    arrays["names"] = np.asarray(names[lo:hi], dtype=str)
                arrays["vary_features"] = np.asarray(cfg.vary, dtype=str)
                arrays["fix_features"] = np.asarray(cfg.fix, dtype=str).reshape(len(cfg.fix))
                data = npz_bytes(arrays, cfg.compress)
                atomic_write(out / shard_name(idx), data)
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
        warning = diagnostics_warning(totals)
        if warning:
            print(f"reds-jax augment: {warning}", file=sys.stderr)
    return AugmentResult(out, n_items, n_shards, tuple(pending), tuple(sorted(done)))
