"""The manifests of an augmentation folder: append-only JSON lines, one file per process.

``manifest.jsonl`` holds process 0's records (and a single-process job's), ``manifest-P.jsonl``
those of process ``P`` of a multi-host job; only its own process appends to a file. A line is
appended with one ``write`` on an ``O_APPEND`` file and fsynced, after its shard file is in place,
so a kill never lists a partial shard; a torn last line (a kill inside that write) is ignored by
readers and cut off by the owner's next run. A shard listed more than once (recomputed after its
file went bad, possibly by another process) counts by its line with the largest ``seq``.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from reds_jax._io import sha256_file

from .shards import shard_name

__all__ = ["MANIFEST_FILE", "manifest_name", "read_manifest"]

MANIFEST_FILE = "manifest.jsonl"


def manifest_name(process: int) -> str:
    """``manifest.jsonl`` for process 0 (and single-process jobs), ``manifest-P.jsonl`` else."""
    return MANIFEST_FILE if process == 0 else f"manifest-{process}.jsonl"


def manifest_files(out: pathlib.Path) -> list[pathlib.Path]:
    files = [out / MANIFEST_FILE] + sorted(out.glob("manifest-*.jsonl"))
    return [p for p in files if p.is_file()]


def append_line(path: pathlib.Path, entry: Mapping[str, Any]) -> None:
    """Appends one JSON line with a single ``write`` and fsyncs it (crash-safe append)."""
    data = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_torn_tail(path: pathlib.Path) -> None:
    """Drops a last line without its newline (a kill inside :func:`_append_line`)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _manifest_lines(out: pathlib.Path) -> list[dict[str, Any]]:
    entries = []
    for path in manifest_files(out):
        text = path.read_bytes().decode("utf-8", "replace")
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if number < len(lines):  # a torn last line is expected after a kill; others not
                    print(
                        f"reds-jax augment: ignoring unreadable line {number} of {path}",
                        file=sys.stderr,
                    )
                continue
            if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                entries.append(entry)
    return entries


def _latest(entries: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    best: dict[int, dict[str, Any]] = {}
    for e in entries:
        old = best.get(e["index"])
        if old is None or seq(e) >= seq(old):
            best[e["index"]] = dict(e)
    return best


def seq(entry: Mapping[str, Any]) -> int:
    seq = entry.get("seq", 0)
    return seq if isinstance(seq, int) else 0


def read_manifest(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The completed shards of an augmentation folder, one dict per shard, by index.

    Reads every process's manifest (``manifest.jsonl``, ``manifest-1.jsonl``, ...); where a
    shard is listed more than once (recomputed after its file went bad) the line with the largest
    ``seq`` wins.

    Args:
      out: the job's output folder.

    Returns:
      One dict per completed shard (an empty list when there is none), sorted by ``index``:
      ``shard`` (file name), ``index``, ``sha256``, ``bytes``, ``items`` (``[start, stop)``
      positions in the job's item list), ``seed_first``, ``seed_last``, ``count``, ``format``,
      ``process`` (who wrote it), ``seq``.

    >>> read_manifest("no/such/folder")
    []
    """
    latest = latest_entries(pathlib.Path(out))
    return [latest[i] for i in sorted(latest)]


def verified(
    out: pathlib.Path,
    latest: Mapping[int, Mapping[str, Any]],
    owned: Sequence[int],
    fmt: str,
    verify: bool,
) -> dict[int, dict[str, Any]]:
    """The entries of ``owned`` shards whose files are present and intact (walks the manifest's
    entries, not ``owned``: a ``range`` of millions of shards is never enumerated)."""
    done: dict[int, dict[str, Any]] = {}
    for idx in sorted(i for i in latest if i in owned):
        e = latest[idx]
        path = out / shard_name(idx, fmt)
        ok = e.get("shard") == path.name and isinstance(e.get("count"), int)
        ok = ok and path.is_file() and path.stat().st_size == e.get("bytes")
        ok = ok and (not verify or sha256_file(path) == e.get("sha256"))
        if ok:
            done[idx] = dict(e)
        else:
            print(f"reds-jax augment: manifest entry {e!r} is invalid; redoing it", file=sys.stderr)
    return done


def latest_entries(out: pathlib.Path) -> dict[int, dict[str, Any]]:
    """Index -> the line that counts for that shard, over every process's manifest."""
    return _latest(_manifest_lines(out))
