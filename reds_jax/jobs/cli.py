"""The ``reds-jax`` command line.

Subcommands::

  reds-jax demo      [--model faces|rooms] [--out PNG]          a traversal grid from a real generator
  reds-jax traverse  --seeds 0 1 --vary lowpass:2 --fix highpass:2 ... --out DIR
  reds-jax augment   --seeds 0:1000 --out DIR [--shard-size 64 --batch-size 16]   resumable dataset job
                     [--format npz|webdataset|parquet] [--distributed | --coordinator HOST:PORT
                     --num-processes N --process-id I]   (multi-host: shard i on process i % N)
  reds-jax invert    IMAGES... [--images DIR] --model faces|rooms --out DIR   GAN inversion
  reds-jax evaluate  ...                                         quality suites (reds_jax.evaluation.runner)
  reds-jax bench     ...                                         benchmarks
  reds-jax convert   stylegan2 IN.pkl|IN.pt OUT.msgpack           StyleGAN2 checkpoints, no torch
  reds-jax app       [--host 127.0.0.1 --port 7860]              interactive explorer (extra [app])

``traverse`` and ``augment`` start from ``--seeds``, ``--latents FILE.npy`` or ``--images DIR``
(the images are inverted first, into ``OUT/inverted``; see :mod:`reds_jax.jobs.inversion`).
``traverse`` and ``augment`` also read a TOML file (``--config job.toml``) whose keys are the
fields of :class:`reds_jax.jobs.augment.JobConfig` (plus ``out``); command-line flags override it.
Feature specs: ``pixels``, ``region:top,left,h,w[,invert]``, ``lowpass:σ``, ``highpass:σ``,
``band:low,high``, ``identity``, ``landmarks``, ``age``, ``gender``; join stages with ``@``
(``highpass:2@region:0.1,0.2,0.5,0.6``).

Every command turns on JAX's persistent compilation cache (``<reds_jax cache>/xla``, see
:mod:`reds_jax.compile_cache`) unless given ``--no-compile-cache`` or ``REDS_JAX_NO_COMPILE_CACHE=1``.
This module imports no jax at import time, so ``--help`` is instant; commands import what they need.

Errors: every bad argument, configuration field or input file is one line on stderr naming it and
what to pass instead, exit status 2; an unexpected error is one line with exit status 1; add
``--debug`` anywhere on the line to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

PROG = "reds-jax"

# argparse dest -> JobConfig field, for flags shared by traverse and augment
_JOB_FLAGS = {
    "model": "model",
    "seeds": "seeds",
    "latents": "latents",
    "key": "key",
    "vary": "vary",
    "fix": "fix",
    "method": "method",
    "preset": "preset",
    "path": "path",
    "k": "k",
    "steps": "steps",
    "step_size": "step_size",
    "step_target": "step_target",
    "correct": "correct",
    "solver": "solver",
    "dtype": "dtype",
    "shard_size": "shard_size",
    "batch_size": "batch_size",
    "compress": "compress",
    "format": "format",
}


class _UsageError(Exception):
    """Bad arguments or configuration: printed without a traceback, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``reds-jax traverse: error: ...; see --help``), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind: type, low: float, *, inclusive: bool = True, bound: str | None = None):
    """An argparse type: a finite ``kind`` (int or float) ``>= low`` (``> low`` if not inclusive)
    and at most ``BOUNDS[bound]`` (:data:`reds_jax.core.validate.BOUNDS`) when ``bound`` is set."""
    import math

    from reds_jax.core.validate import BOUNDS

    high = BOUNDS[bound] if bound else math.inf
    what = f"{'an int' if kind is int else 'a finite number'} {'>=' if inclusive else '>'} {low:g}"
    what += f" and <= {high}" if bound else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text[:80]!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {what}; got {text[:80]!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text[:80]!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_COUNT = _number(int, 1)  # k, restarts, batch and shard sizes, scale
_INDEX = _number(int, 0)  # seeds, keys, steps
_POSITIVE = _number(float, 0.0, inclusive=False)  # step sizes, learning rates
_WEIGHT = _number(float, 0.0)  # weights


# ---------------------------------------------------------------------------------------------
# Parsing


def key_value(text: str) -> tuple[str, Any]:
    """``"size=16"`` -> ``("size", 16)``; the value is read as a TOML value, else kept as text."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. size=32); got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def _add_common_flags(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--no-compile-cache``, accepted before or after the command name."""
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="do not use JAX's persistent compilation cache (default: on, in "
        "<reds_jax cache>/xla; or set REDS_JAX_NO_COMPILE_CACHE=1)",
    )


def _add_job_flags(p: argparse.ArgumentParser, *, augment: bool) -> None:
    p.add_argument("--config", type=pathlib.Path, help="TOML file with JobConfig fields (and out)")
    p.add_argument("--model", help="generator name: faces, rooms, rooms_gan (default rooms)")
    p.add_argument(
        "--model-arg",
        dest="model_args",
        action="append",
        type=key_value,
        metavar="KEY=VALUE",
        help="loader argument, repeatable (rooms: latent_dim=16 size=64 seed=0)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        metavar="SEED",
        help="start seeds: ints and/or START:STOP ranges" + (" (e.g. 0:1000)" if augment else ""),
    )
    p.add_argument("--latents", help="a .npy file of start latents [N, d] instead of --seeds")
    p.add_argument(
        "--images",
        help="a folder of PNG/JPEG images: invert them first and start from their latents",
    )
    p.add_argument("--invert-steps", type=_COUNT, default=300, help="inversion steps (--images)")
    p.add_argument("--key", type=_INDEX, help="base PRNG seed (default 0)")
    p.add_argument(
        "--vary", action="append", metavar="FEATURE", help="feature to change, repeatable"
    )
    p.add_argument("--fix", action="append", metavar="FEATURE", help="feature to hold, repeatable")
    p.add_argument(
        "--no-fix", action="store_true", help="no fixed features (instead of the model's default)"
    )
    p.add_argument("--method", help="reds (default), nullspace, maxc, minf, random")
    p.add_argument(
        "--preset",
        help="official: the paper's reference code's defaults (explicit flags override them)",
    )
    p.add_argument("--path", help="local (default) or linear")
    p.add_argument("-k", type=_COUNT, dest="k", help="directions per start latent (2k paths)")
    p.add_argument(
        "--steps", type=_number(int, 0, bound="steps"), help="steps per path (default 8)"
    )
    p.add_argument("--step-size", type=_POSITIVE, help="latent step length (default: the model's)")
    p.add_argument(
        "--step-target", type=_POSITIVE,
        help="feature-space steps: varied-feature change per step (--step-size caps the step)",
    )  # fmt: skip
    p.add_argument(
        "--correct",
        type=_number(int, 0, bound="correct"),
        help="drift-corrector iterations per step (default 0: none; at most 100)",
    )
    p.add_argument("--solver", help="dense (default) or matrix_free (reds/maxc; big features)")
    p.add_argument(
        "--option",
        dest="options",
        action="append",
        type=key_value,
        metavar="KEY=VALUE",
        help="traverse option, repeatable (ridge=1e-4, beta_fix=0.99, mode=fwd, chunk_size=64)",
    )
    p.add_argument("--dtype", help="float32 (default) or float64 (needs JAX_ENABLE_X64=1)")
    p.add_argument("--batch-size", type=_COUNT, help="start latents per compiled call (default 16)")
    p.add_argument("--out", help="output folder")
    if augment:
        p.add_argument(
            "--shard-size", type=_COUNT, help="start latents per shard file (default 64)"
        )
        p.add_argument(
            "--no-compress", dest="compress", action="store_false", default=None,
            help="store shards uncompressed",
        )  # fmt: skip
        p.add_argument(
            "--format", help="shard files: npz (default), webdataset (tar of PNGs) or parquet"
        )
        p.add_argument(
            "--distributed", action="store_true",
            help="multi-host: jax.distributed.initialize() with auto-detection (SLURM, TPU, ...)",
        )  # fmt: skip
        p.add_argument("--coordinator", metavar="HOST:PORT", help="multi-host: process 0's address")
        p.add_argument("--num-processes", type=_COUNT, help="multi-host: number of processes")
        p.add_argument("--process-id", type=_INDEX, help="multi-host: this process's index")
        p.add_argument(
            "--distributed-timeout", type=_number(int, 1), metavar="S",
            help="multi-host: seconds to wait for every process to connect, and for a silent "
            "process before the job stops (default: jax's, 300 and 100)",
        )  # fmt: skip
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument(
            "--no-verify", action="store_true", help="skip sha256 checks of finished shards"
        )
    else:
        p.add_argument(
            "--scale", type=_number(int, 1, bound="scale"), help="PNG upscaling (default: auto)"
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog=PROG,
        description="Rayleigh EigenDirections (REDs): nonlinear latent traversals in JAX.",
        epilog="Run 'reds-jax COMMAND --help' for a command's options. Errors are one line; add "
        "--debug anywhere to see the traceback.",
    )
    ap.add_argument(  # read (and removed) by main() wherever it appears
        "--debug", action="store_true", help="show the traceback of an error (anywhere on the line)"
    )
    _add_common_flags(ap, top=True)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="render a traversal grid PNG with a default experiment")
    d.add_argument(
        "--model",
        default="faces",
        help="faces (default; weights fetched once), rooms (procedural oracle), rooms_gan "
        "(the GAN trained in this repository; its weights ship with the package) or rooms_flow "
        "(the flow-matching model trained here; d=3072, matrix-free)",
    )
    d.add_argument("--out", help="PNG path (default ./reds_jax_demo_MODEL.png)")
    d.add_argument("--seed", type=_INDEX, default=0, help="start seed (default 0)")
    d.add_argument("-k", type=_COUNT, default=2, dest="k", help="directions (default 2: 4 rows)")
    d.add_argument("--steps", type=_INDEX, default=8, help="steps per path (default 8)")
    d.add_argument("--step-size", type=_POSITIVE, default=None, help="default: the model's")
    d.add_argument(
        "--model-arg", dest="model_args", action="append", type=key_value, metavar="KEY=VALUE"
    )
    _add_common_flags(d)

    t = sub.add_parser(
        "traverse", help="traverse from seeds with named features; writes PNG grids and .npz"
    )
    _add_job_flags(t, augment=False)
    _add_common_flags(t)
    a = sub.add_parser(
        "augment", help="resumable dataset augmentation into npz / webdataset / parquet shards"
    )
    _add_job_flags(a, augment=True)
    _add_common_flags(a)
    inv = sub.add_parser("invert", help="invert image files: .npy/.npz latents + reconstructions")
    inv.add_argument("files", nargs="*", help="image files or folders (PNG/JPEG)")
    inv.add_argument("--images", action="append", default=[], help="a folder of images")
    inv.add_argument("--model", default="faces", help="faces (default), rooms, rooms_gan, ...")
    inv.add_argument("--out", default="reds_jax_invert", help="output folder")
    inv.add_argument(
        "--steps", type=_COUNT, default=300, help="Adam steps per restart, at most (300; see --tol)"
    )
    inv.add_argument(
        "--restarts", type=_COUNT, default=4,
        help="random restarts per image (4); only the best goes on after --select-after steps",
    )  # fmt: skip
    inv.add_argument("--lr", type=_POSITIVE, default=0.08, help="Adam learning rate (0.08)")
    inv.add_argument(
        "--tol", type=_WEIGHT, default=1e-3,
        help="stop an image when its objective improved by less than this fraction over 25 "
        "steps (1e-3; 0 runs all --steps)",
    )  # fmt: skip
    inv.add_argument(
        "--select-after", type=_INDEX, default=None,
        help="steps before discarding all but the best restart (default min(100, steps/3))",
    )  # fmt: skip
    inv.add_argument(
        "--min-psnr", type=_WEIGHT, default=20.0,
        help="warn about images reconstructed below this PSNR in dB (20)",
    )  # fmt: skip
    inv.add_argument("--no-progress", action="store_true", help="no progress bar")
    inv.add_argument("--prior-weight", type=_WEIGHT, default=1e-3, help="latent-norm prior (1e-3)")
    inv.add_argument("--feature", help="also match this feature (e.g. identity for faces)")
    inv.add_argument("--feature-weight", type=_WEIGHT, default=1.0, help="its weight (1.0)")
    inv.add_argument("--key", type=_INDEX, default=0, help="PRNG seed (0)")
    inv.add_argument(
        "--model-arg", dest="model_args", action="append", type=key_value, metavar="KEY=VALUE"
    )
    _add_common_flags(inv)
    for name, what in (
        ("evaluate", "quality suites"),
        ("bench", "performance benchmarks"),
        ("convert", "checkpoint converters: 'convert stylegan2 IN.pkl|.pt OUT.msgpack'"),
        ("app", "interactive explorer in the browser (pip install 'reds-jax[app]')"),
    ):
        e = sub.add_parser(name, help=f"{what} (arguments are passed on)", add_help=False)
        e.add_argument("args", nargs=argparse.REMAINDER)
    return ap


def _job_config(ns: argparse.Namespace, *, augment: bool):
    """Merges ``--config`` TOML with the flags; returns ``(JobConfig, out or None)``."""
    import tomllib

    from reds_jax.jobs.experiment import ConfigError, JobConfig

    data: dict[str, Any] = {}
    where = "arguments"
    if ns.config is not None:
        where = str(ns.config)
        try:
            with open(ns.config, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise _UsageError(f"config file {ns.config} does not exist.") from None
        except IsADirectoryError:
            raise _UsageError(
                f"--config {ns.config} is a folder; pass a TOML file (e.g. job.toml)."
            ) from None
        except OSError as err:
            raise _UsageError(f"--config {ns.config}: cannot read it ({err}).") from None
        except tomllib.TOMLDecodeError as err:
            raise _UsageError(f"config file {ns.config} is not valid TOML: {err}.") from None
        except UnicodeDecodeError as err:  # TOML is UTF-8 by definition
            raise _UsageError(
                f"config file {ns.config} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
                f"offset {err.start}); save it as UTF-8."
            ) from None
    out = data.pop("out", None)
    if out is not None and not isinstance(out, str):
        raise _UsageError(f"{where}: field 'out' must be a folder path string; got {out!r}.")
    if not augment:
        for field in ("shard_size", "compress", "format"):
            if field in data:
                raise _UsageError(
                    f"{where}: field {field!r} only applies to 'reds-jax augment'; remove it."
                )
    for dest, field in _JOB_FLAGS.items():
        value = getattr(ns, dest, None)
        if value is not None:
            data[field] = value
    if ns.model_args:
        data["model_args"] = {**data.get("model_args", {}), **dict(ns.model_args)}
    if ns.options:
        data["options"] = {**data.get("options", {}), **dict(ns.options)}
    if ns.no_fix:
        if ns.fix:
            raise _UsageError("pass either --fix or --no-fix, not both.")
        data["fix"] = []
    if ns.out is not None:
        out = ns.out
    if (ns.latents is None) != (ns.seeds is None):  # a flag replaces the TOML file's other one
        data.pop("seeds" if ns.seeds is None else "latents", None)
    try:
        return JobConfig.from_mapping(data, where=where), out
    except ConfigError as err:
        raise _UsageError(str(err)) from None


def _check_out(out: Any, *, flag: str = "--out", file: bool = False) -> pathlib.Path:
    """Refuses, before any work, an output path that cannot be written.

    A folder (``file=False``) must be missing or a folder; a file (``file=True``, the demo PNG)
    must not be a folder; in both cases the nearest existing ancestor must be a writable folder
    (not a file: ``--out notes.txt/x``).
    """
    import os

    path = pathlib.Path(out)
    if path.exists() and path.is_dir() == file:
        what = "a folder" if file else "a file"
        want = "a file path (e.g. out.png)" if file else "a folder path (new or existing)"
        raise _UsageError(f"{flag} {path} is {what}; pass {want}.")
    parent = path if path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _UsageError(f"{flag} {path} lies under the file {parent}; pass a folder path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _UsageError(
            f"{flag} {path}: {parent} is not writable; pass a folder you can write to."
        )
    return path


# ---------------------------------------------------------------------------------------------
# Commands


def _describe(result: dict[str, Any], vary: Sequence[str], fix: Sequence[str], i: int = 0) -> str:
    lines = []
    for name, key, specs in (("varied", "vary_distances", vary), ("fixed", "fix_distances", fix)):
        for j, spec in enumerate(specs):
            last = result[key][i, j, :, -1]
            lines.append(f"  {name:6s} {spec:32s} mean distance at the last step {last.mean():.3g}")
    return "\n".join(lines)


def _cmd_demo(ns: argparse.Namespace) -> int:
    from reds_jax import imageio
    from reds_jax.jobs.experiment import ConfigError, JobConfig, get_experiment

    t0 = time.perf_counter()
    if ns.out is not None:
        _check_out(ns.out, file=True)
    try:
        cfg = JobConfig.from_mapping(
            {
                "model": ns.model,
                "model_args": dict(ns.model_args or ()),
                "seeds": [ns.seed],
                "k": ns.k,
                "steps": ns.steps,
                **({} if ns.step_size is None else {"step_size": ns.step_size}),
            },
            where="arguments",
        )
        print(
            f"{PROG} demo: loading model {cfg.model!r} and tracing REDs local paths from seed "
            f"{ns.seed}: vary {list(cfg.vary)}, fix {list(cfg.fix)}, k={cfg.k}, {cfg.steps} "
            f"steps of {cfg.step_size:g} ...",
            flush=True,
        )
        exp = get_experiment(cfg)
    except ConfigError as err:
        raise _UsageError(str(err)) from None
    from reds_jax.jobs.progress import BatchProgress

    steps = f"{2 * cfg.k} paths x {cfg.steps} steps"
    with BatchProgress(1, f"{PROG} demo", unit=f"start latent ({steps})", file=sys.stdout) as bar:
        result = exp.run(seeds=[ns.seed], on_compile=bar.compile)
    out = pathlib.Path(ns.out or f"reds_jax_demo_{cfg.model}.png")
    print(f"{PROG} demo: writing {out} ...", flush=True)
    images = result["images"][0]  # [2k, T+1, H, W, 3]
    imageio.save_grid(images, out, scale=imageio.auto_scale(images.shape[2]))
    print(_describe(result, cfg.vary, cfg.fix))
    print(
        f"{PROG} demo: wrote {out.resolve()} (rows: paths +v1, -v1, +v2, ...; columns: steps "
        f"0..{cfg.steps}) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _item_names(seeds: Sequence[int], from_latents: bool, names: Sequence[str] | None) -> list[str]:
    """Output names: the input files' stems (``--images``; made unique), else ``seed-S`` or
    ``latent-I``."""
    if names is None:
        return [f"{'latent' if from_latents else 'seed'}-{int(s)}" for s in seeds]
    out, seen = [], set()
    for name in names:
        unique, n = name, 1
        while unique in seen:
            n += 1
            unique = f"{name}-{n}"
        seen.add(unique)
        out.append(unique)
    return out


def _cmd_traverse(ns: argparse.Namespace) -> int:
    import numpy as np

    from reds_jax import imageio
    from reds_jax._io import atomic_write, npz_bytes
    from reds_jax.jobs.experiment import ConfigError, diagnostics_warning, get_experiment
    from reds_jax.jobs.progress import BatchProgress

    t0 = time.perf_counter()
    cfg, out = _job_config(ns, augment=False)
    _check_out(out or "reds_jax_traverse")
    cfg, names = _with_inverted_images(ns, cfg, out)
    try:
        seeds, latents = cfg.starts(default_seeds=[0])
        exp = get_experiment(cfg)
        with BatchProgress(len(seeds), f"{PROG} traverse", enabled=not ns.no_progress) as bar:
            result = exp.run(seeds=seeds, latents=latents, on_batch=bar, on_compile=bar.compile)
    except ConfigError as err:
        raise _UsageError(str(err)) from None
    except ValueError as err:
        raise _UsageError(str(err)) from None
    out = pathlib.Path(out or "reds_jax_traverse")
    out.mkdir(parents=True, exist_ok=True)
    scale = ns.scale or imageio.auto_scale(result["images"].shape[3])
    names = _item_names(seeds, latents is not None, names)
    written = [
        imageio.save_grid(result["images"][i], out / f"{name}.png", scale=scale)
        for i, name in enumerate(names)
    ]
    arrays = dict(result)
    arrays["names"] = np.asarray(names, dtype=str)  # grid file stems, one per start latent
    arrays["vary_features"] = np.asarray(cfg.vary, dtype=str)
    arrays["fix_features"] = np.asarray(cfg.fix, dtype=str).reshape(len(cfg.fix))
    atomic_write(out / "traversals.npz", npz_bytes(arrays, compress=True))
    for i, name in enumerate(names[:4]):
        print(f"{name}:\n{_describe(result, cfg.vary, cfg.fix, i)}")
    print(
        f"{PROG} traverse: wrote {len(written)} grid(s) ({written[0].name}, ...: rows = 2k paths, "
        f"columns = steps) and traversals.npz (latents {list(result['latents'].shape)}, "
        f"vary/fix distances, images) to {out.resolve()} in {time.perf_counter() - t0:.1f} s"
    )
    warning = diagnostics_warning(result)
    if warning:
        print(f"{PROG} traverse: {warning}", file=sys.stderr)
    return 0


def _cmd_invert(ns: argparse.Namespace) -> int:
    from reds_jax.jobs.inversion import InversionJobError, invert_files

    t0 = time.perf_counter()
    _check_out(ns.out)
    try:
        res = _invert(
            invert_files,
            ns.model,
            [*ns.files, *ns.images],
            ns.out,
            steps=ns.steps,
            restarts=ns.restarts,
            lr=ns.lr,
            prior_weight=ns.prior_weight,
            feature=ns.feature,
            feature_weight=ns.feature_weight,
            key=ns.key,
            model_args=dict(ns.model_args or []),
            tol=ns.tol,
            select_after=ns.select_after,
            progress=not ns.no_progress,
        )
    except (InversionJobError, ValueError) as err:
        raise _UsageError(str(err)) from None
    _print_inversion(res, ns.min_psnr)
    print(
        f"{PROG} invert: {len(res['files'])} image(s) -> {res['out'].resolve()} (latents.npy, "
        f"inversion.npz, reconstructions.png){' (reused)' if res['reused'] else ''} in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 0


def _invert(invert_files, *args, progress: bool = True, **kwargs):
    """``invert_files`` with a compile line (the bar starts once the first chunk ran).

    The line is printed after half a second, so bad input stays a one-line error."""
    import threading

    timer = threading.Timer(
        0.5,
        lambda: print(
            f"{PROG} invert: loading the model and preparing the inversion (a bar follows after "
            "its first steps) ...",
            file=sys.stderr,
            flush=True,
        ),
    )
    timer.daemon = True
    if progress:
        timer.start()
    try:
        return invert_files(*args, progress=progress, **kwargs)
    finally:
        timer.cancel()


def _print_inversion(res: dict[str, Any], min_psnr: float) -> None:
    """The per-image table (stdout) and a warning naming weak reconstructions (stderr)."""
    import numpy as np

    from reds_jax.jobs.inversion import report

    table, warning = report(res, min_psnr=min_psnr)
    print(table)
    print(f"median PSNR {float(np.median(res['psnr'])):.1f} dB")
    if warning:
        print(f"{PROG} invert: warning: {warning}", file=sys.stderr)


def _with_inverted_images(ns: argparse.Namespace, cfg, out):
    """``--images DIR``: invert the folder into ``OUT/inverted`` and start from those latents."""
    import dataclasses

    from reds_jax.jobs.inversion import InversionJobError, invert_files

    if ns.images is None:
        return cfg, None
    if ns.seeds is not None or ns.latents is not None:
        raise _UsageError("pass one of --seeds, --latents or --images.")
    target = pathlib.Path(out or "reds_jax_traverse") / "inverted"
    try:
        res = _invert(
            invert_files,
            cfg.model,
            [ns.images],
            target,
            steps=ns.invert_steps,
            key=cfg.key,
            model_args=dict(cfg.model_args),
            progress=not ns.no_progress,
        )
    except (InversionJobError, ValueError) as err:
        raise _UsageError(str(err)) from None
    print(f"{PROG}: inverted {len(res['files'])} image(s) from {ns.images} into {target}:")
    _print_inversion(res, 20.0)
    names = [pathlib.Path(f).stem for f in res["files"]]
    return dataclasses.replace(cfg, seeds=None, latents=str(target / "latents.npy")), names


def _cmd_augment(ns: argparse.Namespace) -> int:
    import os

    from reds_jax.jobs import distributed as dist
    from reds_jax.jobs.augment import AugmentError, augment
    from reds_jax.jobs.experiment import ConfigError

    multi = ns.distributed or ns.coordinator or ns.num_processes or ns.process_id is not None
    if multi and os.environ.get(dist.SUPERVISED) != "1":
        # the runtime aborts a process whose peer died: run the job in a child, report one line
        return dist.supervise(ns.argv, ns.process_id if ns.process_id is not None else "?")
    t0 = time.perf_counter()
    cfg, out = _job_config(ns, augment=True)
    if out is None:
        raise _UsageError(
            "augment needs an output folder: pass --out DIR (or out = '...' in TOML)."
        )
    _check_out(out)
    cfg, names = _with_inverted_images(ns, cfg, out)
    given = {
        "coordinator_address": ns.coordinator,
        "num_processes": ns.num_processes,
        "process_id": ns.process_id,
    }
    if given["coordinator_address"] and ns.distributed_timeout is not None:
        given["initialization_timeout"] = int(ns.distributed_timeout)
        given["heartbeat_timeout_seconds"] = int(ns.distributed_timeout)
    given = {name: value for name, value in given.items() if value is not None}
    distributed = given or (True if ns.distributed else None)
    try:
        res = augment(
            cfg,
            out,
            progress=not ns.no_progress,
            verify=not ns.no_verify,
            distributed=distributed,
            names=names,
        )
    except (ConfigError, AugmentError, ValueError) as err:
        raise _UsageError(str(err)) from None
    who = f" (process {res.process} of {res.processes})" if res.processes > 1 else ""
    print(
        f"{PROG} augment{who}: {res.n_shards} shard(s) of {res.n_items} start latents in "
        f"{res.out.resolve()}: wrote {len(res.written)}, already complete {len(res.skipped)} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return 0


# delegated command -> (its jax-free module with ``parser(prog)``, its module with ``main``)
_DELEGATED = {
    "evaluate": ("reds_jax.evaluation.runner_args", "reds_jax.evaluation.runner"),
    "convert stylegan2": (
        "reds_jax.generators.stylegan2_convert_args",
        "reds_jax.generators.stylegan2_convert",
    ),
    "app": ("reds_jax.app.ui_args", "reds_jax.app.ui"),
}
_CONVERTERS = ("stylegan2",)
_PASSED_ON = ("evaluate", "convert", "bench")


def _status(err: SystemExit, prog: str) -> int:
    """The exit status of a ``SystemExit`` raised by argparse or a delegated ``main`` (``--help``:
    0, errors: 2; a message instead of a status is printed and read as 2)."""
    if not isinstance(err.code, int | None):
        print(f"{prog}: error: {err.code}", file=sys.stderr)
    return err.code if isinstance(err.code, int) else (0 if err.code is None else 2)


def _checked(parser: argparse.ArgumentParser, args: Sequence[str]) -> int | None:
    """Parses ``args`` with a command's jax-free parser: the exit status of ``--help`` or of an
    argument error (answered before any heavy import), else None."""
    try:
        parser.parse_args(list(args))
    except SystemExit as err:
        return _status(err, parser.prog)
    return None


def _delegate(name: str, args: Sequence[str], *, compile_cache: bool | None = None) -> int:
    """Runs the delegated command ``reds-jax NAME``: its arguments are checked by its jax-free
    parser first, then its module's ``main(args[, prog])`` runs (``compile_cache``: whether to
    turn on the persistent compilation cache before, None to leave it alone)."""
    import inspect

    prog = f"{PROG} {name}"
    parser_module, module = _DELEGATED[name]
    code = _checked(importlib.import_module(parser_module).parser(prog), args)
    if code is not None:
        return code
    if compile_cache is not None:
        _compile_cache(not compile_cache)
    entry = importlib.import_module(module).main
    kwargs = {"prog": prog} if "prog" in inspect.signature(entry).parameters else {}
    try:
        code = entry(list(args), **kwargs)
    except SystemExit as err:  # a delegate's own exit
        code = _status(err, prog)
    return code if isinstance(code, int) else 0


def _bench_script() -> pathlib.Path:
    """``benchmarks/bench_traverse.py`` of the checkout this package was installed from."""
    return pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_traverse.py"


def _bench(args: Sequence[str]) -> int:
    """Run the checkout's traversal benchmark (it is not part of the installed package); its
    arguments are checked first by ``bench_traverse_args.py`` beside it, which imports no jax."""
    import importlib.util

    script = _bench_script()
    if not script.is_file():
        print(
            f"{PROG} bench: error: the benchmarks are not part of the installed package; from a "
            "checkout of reds_jax run 'python benchmarks/bench_traverse.py --help' (or install it "
            "with 'pip install -e .' and use 'reds-jax bench').",
            file=sys.stderr,
        )
        return 2
    spec = importlib.util.spec_from_file_location(
        "bench_traverse_args", script.with_name("bench_traverse_args.py")
    )
    parser_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parser_module)
    code = _checked(parser_module.parser(f"{PROG} bench"), args)
    if code is not None:
        return code
    return subprocess.call([sys.executable, str(script), *args])


def _compile_cache(disabled: bool) -> bool:
    """Turns on the persistent compilation cache unless disabled (flag or environment)."""
    from reds_jax import compile_cache

    if disabled or compile_cache.disabled_by_env():
        return False
    compile_cache.enable_compile_cache()
    return True


def _passed_on(command: str, args: list[str], no_cache: bool) -> int:
    """``evaluate``, ``convert`` and ``bench``: their arguments go to their own parsers."""
    args = [a for a in args if a != "--no-compile-cache"]
    if command == "bench":
        return _bench(args)
    if any(a in ("-h", "--help") for a in args[:1]) or (command == "convert" and not args):
        if command == "convert":
            print(
                f"usage: {PROG} convert KIND ARGS...\n\ncheckpoint converters (no torch needed); "
                f"KIND is one of: {', '.join(_CONVERTERS)}.\n  {PROG} convert stylegan2 "
                f"network.pkl|network.pt out.msgpack   (see '{PROG} convert stylegan2 --help')",
                file=sys.stdout if args else sys.stderr,
            )
            return 0 if args else 2
    if command == "convert":
        if args[0] not in _CONVERTERS:
            print(
                f"{PROG} convert: error: unknown converter {args[0]!r}; pass one of "
                f"{', '.join(_CONVERTERS)} (e.g. '{PROG} convert stylegan2 network.pkl "
                "out.msgpack').",
                file=sys.stderr,
            )
            return 2
        return _delegate(f"convert {args[0]}", args[1:])
    return _delegate("evaluate", args, compile_cache=not no_cache)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reds-jax`` console script.

    Every error is one line on stderr naming what was wrong and what to pass instead; ``--debug``
    (anywhere on the command line) shows the traceback instead.

    Args:
      argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
      Exit status: 0 on success, 2 for bad arguments, configuration or input files (printed
      without a traceback), 1 when an asset cannot be obtained or on an internal error, 130 on
      Ctrl-C.

    >>> main(["bench", "--help"])  # runs the benchmark script  # doctest: +SKIP
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place errors become exit codes
        if debug:
            raise
        code, message = _classify(err)
        print(f"{PROG} {command}: error: {message}", file=sys.stderr)
        return code


def _classify(err: Exception) -> tuple[int, str]:
    """Exit status and one-line message of an error that reached :func:`main`."""
    from reds_jax.assets import AssetError

    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, AssetError):
        return 1, text  # says where to put the file
    if isinstance(err, _UsageError | ValueError):  # ConfigError, AugmentError, bad files, ...
        return 2, text
    if isinstance(err, OSError):  # an unwritable --out, a vanished file, a full disk
        where = f" ({err.filename})" if err.filename and str(err.filename) not in text else ""
        return 2, f"{text}{where}; check the path and its permissions."
    return 1, (
        f"internal error {type(err).__name__}: {text} (rerun with --debug for the traceback, "
        "and please report it)"
    )


def _dispatch(argv: list[str]) -> int:
    no_cache = "--no-compile-cache" in argv
    if argv[:1] == ["--no-compile-cache"] and argv[1:2] and argv[1] in _PASSED_ON:
        argv = argv[1:]  # the top-level flag before a passed-on command
    if argv and argv[0] in _PASSED_ON:  # their arguments go to their own parsers, untouched
        return _passed_on(argv[0], argv[1:], no_cache)
    if argv and argv[0] == "app":
        return _delegate("app", argv[1:])
    ns = _parser().parse_args(argv)
    ns.argv = list(argv)  # augment re-runs itself under supervision (multi-host)
    _compile_cache(ns.no_compile_cache)
    commands = {
        "demo": _cmd_demo,
        "traverse": _cmd_traverse,
        "augment": _cmd_augment,
        "invert": _cmd_invert,
    }
    return commands[ns.command](ns)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
