"""The command line of ``benchmarks/bench_traverse.py`` (``reds-jax bench``), without jax.

``reds-jax bench --help`` and argument errors answer at once: this module imports only the
standard library.
"""

from __future__ import annotations

import argparse

__all__ = ["parser"]


def parser(prog: str = "reds-jax bench") -> argparse.ArgumentParser:
    """The benchmark's argument parser (``prog`` names it in usage and errors)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Traversal benchmarks: throughput, per-step latency, compile time and peak "
        "memory per solver.",
    )
    parser.add_argument("--profile", default="cpu", choices=["cpu", "cpu-targets", "gpu", "smoke"])
    parser.add_argument("--machine", default=None, help="label for the machine (report title)")
    parser.add_argument("--name", default=None, help="output file stem (default: the profile)")
    parser.add_argument("--out", default="benchmarks/results", help="output folder")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--step-size", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ref-seeds", type=int, default=1, help="seeds timed in the reference loop"
    )
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    parser.add_argument("--only", default=None, help="comma-separated generator names to keep")
    parser.add_argument(
        "--max-n",
        type=int,
        default=None,
        help="cap every batch size (a quick dry run of a profile)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also compare matrix-free steps with the dense top direction at the same latents",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser
