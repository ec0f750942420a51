"""The command line of :mod:`reds_jax.evaluation.runner` (``reds-jax evaluate``), without jax.

Kept apart from the runner so that ``reds-jax evaluate --help`` and argument errors answer at
once: this module imports only the standard library.
"""

from __future__ import annotations

import argparse

__all__ = ["EVAL_METHODS", "SUITE_NAMES", "parser"]

SUITE_NAMES = (
    "rooms_oracle",
    "rooms_gan",
    "faces",
    "rooms_flow",
)  # :data:`reds_jax.evaluation.suites.SUITES`

# name -> (kind, core method, path, tuned settings beyond step_size)
EVAL_METHODS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "reds-local": ("core", "reds", "local", ("ridge",)),
    "reds-linear": ("core", "reds", "linear", ("ridge",)),
    "nullspace-local": ("core", "nullspace", "local", ("beta_fix",)),
    "maxc-local": ("core", "maxc", "local", ()),
    "maxc-linear": ("core", "maxc", "linear", ()),
    "minf-linear": ("core", "minf", "linear", ()),
    "random": ("core", "random", "linear", ()),
    "pca": ("pca", "", "linear", ()),
    "sefa": ("sefa", "", "linear", ()),
    "supervised": ("supervised", "", "linear", ("condition",)),
    "supervised-gt": ("supervised-gt", "", "linear", ()),
    # path control (issue 19): feature-space steps and/or the drift corrector
    "reds-local-fs": ("core", "reds", "local", ("step_target",)),
    "reds-local-c": ("core", "reds", "local", ()),
    "reds-local-pc": ("core", "reds", "local", ("step_target",)),
    "official-local": ("core", "nullspace", "local", ()),
    "official-maxc-local": ("core", "maxc", "local", ()),
    "official-minf-linear": ("core", "minf", "linear", ()),
}


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The runner's argument parser (``prog`` names it in usage and errors)."""
    ap = argparse.ArgumentParser(
        prog=prog or "python -m reds_jax.evaluation.runner",
        description="Quality evaluation: REDs against its linear peers, measured like the paper, "
        "with ground truth.",
    )
    ap.add_argument("--suite", action="append", choices=SUITE_NAMES, required=True)
    ap.add_argument("--out", required=True, help="output folder (JSON, PNGs, quality.md)")
    ap.add_argument("--table", default=None, help="Markdown path (default OUT/quality.md)")
    ap.add_argument("--n-starts", type=int, default=32, help="held-out start latents")
    ap.add_argument("--n-tune", type=int, default=8, help="tuning start latents")
    ap.add_argument("--k", type=int, default=1, help="directions per start (2k paths)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=64, help="rooms oracle image size")
    ap.add_argument("--methods", default=None, help=f"comma list from {','.join(EVAL_METHODS)}")
    ap.add_argument("--experiments", default=None, help="comma list of experiment names")
    ap.add_argument("--quick", action="store_true", help="8 starts, 8 steps, no tuning grid")
    ap.add_argument(
        "--step-sizes", default=None, help="comma list (default 0.25,0.5; × step_scale)"
    )
    ap.add_argument("--ridges", default=None, help="comma list of REDs ridges (default 1e-4,1e-2)")
    ap.add_argument("--conditions", default=None, help="comma list for supervised (default 0,2)")
    ap.add_argument("--chunk-size", type=int, default=None, help="chunked Grams (bounds memory)")
    ap.add_argument("--start-batch", type=int, default=None, help="starts per call (memory)")
    ap.add_argument(
        "--redraw",
        action="store_true",
        help="only redraw the image grids (of --experiments, default all) and the table from "
        "OUT/<suite>.json, without evaluating",
    )
    return ap
