"""Command line for the training scripts (see ``python -m reds_jax.train --help``)."""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    """Parses arguments and runs one training job."""
    p = argparse.ArgumentParser(prog="python -m reds_jax.train", description=__doc__)
    p.add_argument("kind", choices=["gan", "regressor", "segmenter", "judge", "flow"])
    p.add_argument(
        "--out", required=True, help="run directory (resumes from its latest checkpoint)"
    )
    p.add_argument("--steps", type=int, required=True, help="total optimisation steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument(
        "--size", type=int, default=None, help="image size (power of two; default 64, flow 32)"
    )
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--tiny", action="store_true", help="narrow nets (smoke tests)")
    a = p.parse_args(argv)
    over = {"ckpt_every": a.ckpt_every, "tiny": a.tiny}
    if a.size is not None:
        over["size"] = a.size
    if a.batch is not None:
        over["batch"] = a.batch
    t0 = time.perf_counter()
    if a.kind == "gan":
        from reds_jax.train.gan import train_gan

        train_gan(a.out, a.steps, a.seed, **over)
    elif a.kind == "flow":
        from reds_jax.train.flow import train_flow

        train_flow(a.out, a.steps, a.seed, **over)
    else:
        from reds_jax.train.nets import train_net

        train_net(a.kind, a.out, a.steps, a.seed, **over)
    print(f"done in {time.perf_counter() - t0:.1f} s")
