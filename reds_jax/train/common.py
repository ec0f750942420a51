"""Shared training plumbing: checkpoints (flax msgpack), resumable loops, JSON-lines logs.

A run directory holds ``ckpt_<step>.msgpack`` (the whole training state, the latest
``keep`` of them), ``log.jsonl`` (one JSON object per logged step) and ``config.json``.
Training resumes from the newest checkpoint when the directory already has one.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import serialization

from reds_jax._io import atomic_write

__all__ = ["latest_checkpoint", "restore_checkpoint", "run_loop", "save_checkpoint"]


def latest_checkpoint(out: pathlib.Path) -> pathlib.Path | None:
    """Returns the newest ``ckpt_<step>.msgpack`` in ``out`` (by step), or None."""
    ckpts = sorted(out.glob("ckpt_*.msgpack"), key=lambda p: int(p.stem.split("_")[1]))
    return ckpts[-1] if ckpts else None


def save_checkpoint(out: pathlib.Path, step: int, state: Any, keep: int = 2) -> pathlib.Path:
    """Writes ``state`` to ``out/ckpt_<step>.msgpack`` atomically and prunes old checkpoints."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ckpt_{step}.msgpack"
    atomic_write(path, serialization.to_bytes(jax.device_get(state)))
    ckpts = sorted(out.glob("ckpt_*.msgpack"), key=lambda p: int(p.stem.split("_")[1]))
    for old in ckpts[:-keep]:
        old.unlink()
    return path


def restore_checkpoint(path: pathlib.Path, template: Any) -> Any:
    """Restores a checkpoint written by :func:`save_checkpoint` into ``template``'s structure."""
    return serialization.from_bytes(template, path.read_bytes())


def run_loop(
    *,
    out: pathlib.Path,
    state: Any,
    step_fn: Callable[[Any, int], tuple[Any, dict[str, jax.Array]]],
    steps: int,
    config: dict[str, Any],
    ckpt_every: int = 200,
    log_every: int = 20,
    desc: str = "train",
    on_checkpoint: Callable[[Any, int], None] | None = None,
) -> Any:
    """Runs ``state, metrics = step_fn(state, step)`` for ``step < steps`` with a progress bar.

    Resumes from the newest checkpoint in ``out`` (``state`` is then only the template). Logs
    metrics (means over the last ``log_every`` steps) with wall time to ``out/log.jsonl`` and
    checkpoints every ``ckpt_every`` steps and at the end.

    Args:
        out: run directory (created).
        state: initial training state; a pytree whose ``step`` entry is the next step to run.
        step_fn: jitted update, ``(state, step) -> (state, metrics)``.
        steps: total number of steps.
        config: settings recorded in ``out/config.json``.
        ckpt_every: checkpoint period in steps.
        log_every: logging period in steps.
        desc: progress-bar label.
        on_checkpoint: optional callback ``(state, step)`` after each checkpoint.

    Returns:
        The final state.
    """
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        state = restore_checkpoint(ckpt, state)
        print(f"resumed from {ckpt}")
    start = int(state["step"])
    atomic_write(out / "config.json", json.dumps(config, indent=1, sort_keys=True).encode())
    wall0 = float(state.get("wall_s", 0.0))
    t0 = time.perf_counter()
    acc: dict[str, list[float]] = {}
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, mininterval=5.0)
    for step in bar:
        state, metrics = step_fn(state, step)
        for k, v in metrics.items():
            acc.setdefault(k, []).append(v)
        done = step + 1
        if done % log_every == 0 or done == steps:
            means = {k: float(np.mean(jax.device_get(v))) for k, v in acc.items()}
            acc = {}
            wall = wall0 + time.perf_counter() - t0
            rec = {
                "step": done,
                "wall_s": round(wall, 1),
                **{k: round(v, 5) for k, v in means.items()},
            }
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()})
        if done % ckpt_every == 0 or done == steps:
            state = dict(
                state, step=np.int64(done), wall_s=np.float64(wall0 + time.perf_counter() - t0)
            )
            save_checkpoint(out, done, state)
            if on_checkpoint is not None:
                on_checkpoint(state, done)
    return state
