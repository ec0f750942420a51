"""The command line of :mod:`reds_jax.generators.stylegan2_convert`, without jax.

``reds-jax convert stylegan2 --help`` and argument errors answer at once: this module imports
only the standard library.
"""

from __future__ import annotations

import argparse
import math
import pathlib

__all__ = ["parser"]


MAX_LR_MUL = 1000.0


def _lr_mul(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_LR_MUL):
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 0 and <= {MAX_LR_MUL:g} (the lr_mlp the generator was "
            f"built with, 0.01 in rosinality's train.py); got {text[:80]!r}"
        )
    return value


def parser(prog: str = "reds-jax convert stylegan2") -> argparse.ArgumentParser:
    """The converter's argument parser (``prog`` names it in usage and errors)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Convert a PyTorch StyleGAN2 checkpoint (rosinality .pt or "
        "stylegan2-ada-pytorch .pkl) to a reds_jax msgpack, without torch.",
    )
    p.add_argument("input", type=pathlib.Path, help="the .pt or .pkl checkpoint")
    p.add_argument("output", type=pathlib.Path, help="the .msgpack to write")
    p.add_argument("--format", default="auto", choices=("auto", "rosinality", "ada"))
    p.add_argument("--network", default=None, help="entry to convert (g_ema / G_ema)")
    p.add_argument(
        "--mapping-lr-mul",
        type=_lr_mul,
        default=0.01,
        help="rosinality lr_mlp: a finite number in (0, 1000] (default 0.01)",
    )
    return p
