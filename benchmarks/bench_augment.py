"""Augmentation throughput: images/s of ``reds_jax.jobs.augment.augment`` per shard format.

For each format (npz, webdataset, parquet) the same job runs into a fresh folder, with the
background writer (``queue_size=2``: encoding and disk writes overlap the next shard's compute)
and without it (``queue_size=0``); ``compute`` is the job's device work alone
(:meth:`Experiment.run` on the same seeds, nothing written) and ``encode`` the format's encoding
alone (``encode_shard`` on precomputed shards). Images = start latents × 2k paths × (T+1) frames.
Every case is run ``--repeats`` times after one warm-up job (compile); medians are reported, and
ratios are taken within this run. The load average is recorded: on a machine shared with other
jobs the absolute numbers move, the ratios less so.

Usage::

    python benchmarks/bench_augment.py --out benchmarks/results            # CPU defaults
    python benchmarks/bench_augment.py --name augment_throughput_gpu --seeds 512 --shard-size 64 \\
        --batch-size 64 --size 64                                         # on a GPU

Writes ``NAME.json`` and ``NAME.md`` (default name ``augment_throughput``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from reds_jax.jobs import augment as A
from reds_jax.jobs.experiment import get_experiment
from reds_jax.jobs.shards import encode_shard, require


def _available() -> tuple[list[str], dict[str, str]]:
    formats, skipped = [], {}
    for fmt in A.FORMATS:
        try:
            require(fmt)
            formats.append(fmt)
        except ImportError as err:
            skipped[fmt] = str(err)
    return formats, skipped


def _config(ns: argparse.Namespace, fmt: str) -> dict:
    return {
        "model": "rooms",
        "model_args": {"size": ns.size, "latent_dim": ns.latent_dim},
        "seeds": f"0:{ns.seeds}",
        "k": ns.k,
        "steps": ns.steps,
        "shard_size": ns.shard_size,
        "batch_size": ns.batch_size,
        "format": fmt,
    }


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="augment_throughput")
    ap.add_argument("--seeds", type=int, default=32, help="start latents per job")
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--size", type=int, default=32, help="rooms oracle image size")
    ap.add_argument("--latent-dim", type=int, default=8)
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--machine", default=None, help="machine description for the report")
    ns = ap.parse_args(argv)

    images = ns.seeds * 2 * ns.k * (ns.steps + 1)
    formats, skipped = _available()
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench_augment_"))
    try:
        A.augment(_config(ns, "npz"), root / "warmup", progress=False)  # compile
        cfg = A.JobConfig.from_mapping(_config(ns, "npz"))
        exp = get_experiment(cfg)
        seeds = np.arange(ns.seeds)
        bs = min(ns.batch_size, ns.shard_size)
        shards = []
        for lo in range(0, ns.seeds, ns.shard_size):
            arrays = exp.run(seeds=seeds[lo : lo + ns.shard_size], batch_size=bs)
            arrays["items"] = seeds[lo : lo + ns.shard_size].astype(np.int64)
            arrays["vary_features"] = np.asarray(cfg.vary, dtype=str)
            arrays["fix_features"] = np.asarray(cfg.fix, dtype=str).reshape(len(cfg.fix))
            shards.append(arrays)

        def compute():
            for lo in range(0, ns.seeds, ns.shard_size):
                exp.run(seeds=seeds[lo : lo + ns.shard_size], batch_size=bs)

        times: dict[str, list[float]] = {"compute": []}
        sizes: dict[str, int] = {}
        for r in range(ns.repeats):
            times["compute"].append(_timed(compute))
            for fmt in formats:
                times.setdefault(f"encode {fmt}", []).append(
                    _timed(lambda fmt=fmt: [encode_shard(s, fmt) for s in shards])
                )
                for q in (2, 0):
                    out = root / f"{fmt}-q{q}-{r}"
                    times.setdefault(f"{fmt} q{q}", []).append(
                        _timed(
                            lambda out=out, fmt=fmt, q=q: A.augment(
                                _config(ns, fmt), out, progress=False, queue_size=q
                            )
                        )
                    )
                    sizes[fmt] = sum(e["bytes"] for e in A.read_manifest(out))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    med = {name: statistics.median(ts) for name, ts in times.items()}
    rows = []
    for fmt in formats:
        rows.append(
            {
                "format": fmt,
                "images_per_s": images / med[f"{fmt} q2"],
                "images_per_s_no_overlap": images / med[f"{fmt} q0"],
                "overlap_speedup": med[f"{fmt} q0"] / med[f"{fmt} q2"],
                "vs_npz": med["npz q2"] / med[f"{fmt} q2"],
                "encode_images_per_s": images / med[f"encode {fmt}"],
                "bytes_per_image": sizes[fmt] / images,
                "seconds": med[f"{fmt} q2"],
                "seconds_no_overlap": med[f"{fmt} q0"],
            }
        )
    result = {
        "machine": ns.machine
        or f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{jax.devices()[0].platform}, jax {jax.__version__}",
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "job": {k: v for k, v in vars(ns).items() if k not in ("out", "name", "machine")},
        "images_per_job": images,
        "compute_only_images_per_s": images / med["compute"],
        "medians_s": med,
        "all_s": times,
        "rows": rows,
        "skipped_formats": skipped,
    }
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{ns.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Augmentation throughput ({ns.name})",
        "",
        f"Machine: {result['machine']}. Load average (1, 5, 15 min) before "
        f"{', '.join(f'{x:.1f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.1f}' for x in load_after)} (shared machine).",
        f"Job: rooms oracle {ns.size}x{ns.size}, d={ns.latent_dim}, {ns.seeds} start latents, "
        f"k={ns.k}, {ns.steps} steps, shards of {ns.shard_size}, batches of {ns.batch_size}: "
        f"{images} images. Medians of {ns.repeats} runs; compute alone "
        f"{result['compute_only_images_per_s']:.0f} images/s.",
        "",
        "| format | images/s | without overlap | overlap speed-up | vs npz | encode only (images/s) "
        "| bytes/image |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['format']} | {row['images_per_s']:.0f} | {row['images_per_s_no_overlap']:.0f} "
            f"| {row['overlap_speedup']:.2f}x | {row['vs_npz']:.2f}x "
            f"| {row['encode_images_per_s']:.0f} | {row['bytes_per_image']:.0f} |"
        )
    lines += [f"| {fmt} | skipped: {why} | | | | | |" for fmt, why in skipped.items()]
    (out / f"{ns.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
