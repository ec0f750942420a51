"""Traversal benchmarks: throughput, per-step latency, compile time and peak memory per solver.

``reds-jax bench`` and ``benchmarks/bench_traverse.py`` call :func:`main`. Each configuration
(generator, latent size ``d``, batch ``N``, solver) runs in its own subprocess so that its peak
resident memory (``VmHWM`` from ``/proc/self/status``, which counts XLA's buffers, unlike
``tracemalloc``) is its own. Within a configuration: one call compiles (its time is reported
separately), then ``repeats`` timed calls (``block_until_ready``); medians are reported. Ratios are
computed pair-by-pair within the same run (same machine, same load) and written as JSON and a
Markdown summary.

Solvers compared on the same jitted generator and features:

* ``dense``: exact Grams (``jax.jacfwd``) and a dense eigen-solve at every step, ``vmap``-ed.
* ``chunked``: the same with ``chunk_size`` (never the full ``[m, d]`` Jacobian).
* ``fd``: central-difference Jacobians (paper parity), otherwise as ``dense``.
* ``matrix_free``: :mod:`reds_jax.matrix_free` (dense start, warm-started LOBPCG tracking).
* ``reference``: the way the reference code works: one seed and one path at a time in Python,
  central-difference Jacobians in batches of 10 latents through the *same jitted generator*, and
  the Gram, eigen-solve and projection in numpy on the host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

SOLVERS = ("dense", "chunked", "fd", "matrix_free", "reference")
GENERATORS = ("conv", "face_dcgan", "rooms_oracle")


def conv_generator(
    latent_dim: int,
    *,
    size: int = 32,
    channels: Sequence[int] = (32, 16, 8),
    seed: int = 0,
    dtype: Any = jnp.float32,
) -> Callable[[Array], Array]:
    """A seeded synthetic convolutional generator ``z [d] -> image [size, size, 3]`` in (0, 1).

    Dense layer to ``4 × 4 × channels[0]``, then per doubling of the resolution a nearest-neighbour
    upsampling and a 3×3 convolution (tanh), the last one to 3 channels (sigmoid). Smooth, so its
    Jacobians vary continuously; plain JAX, no parameters to load.

    Args:
      latent_dim: ``d``.
      size: output side, ``4·2^n`` (8, 16, 32, 64, …).
      channels: channels after the dense layer and after each upsampling but the last.
      seed: weight seed.
      dtype: floating dtype of the weights (the latent must match).

    Returns:
      Pure jit-able ``generator(z [d]) -> [size, size, 3]``.

    >>> g = conv_generator(8, size=8)
    >>> g(jnp.zeros(8, jnp.float32)).shape
    (8, 8, 3)
    """
    n_up = int(round(np.log2(size / 4)))
    if size < 8 or 4 * 2**n_up != size:
        raise ValueError(f"size must be 4·2^n >= 8 (8, 16, 32, 64, ...); got {size!r}.")
    chans = [int(c) for c in channels][:n_up]
    chans += [chans[-1]] * (n_up - len(chans)) + [3]
    rng = np.random.default_rng([seed, latent_dim])
    w0 = jnp.asarray(rng.standard_normal((latent_dim, 16 * chans[0])) / np.sqrt(latent_dim), dtype)
    ws = [
        jnp.asarray(rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci), dtype)
        for ci, co in zip(chans[:-1], chans[1:], strict=True)
    ]

    def generator(z: Array) -> Array:
        h = jnp.tanh(z @ w0).reshape(1, 4, 4, chans[0])
        for i, w in enumerate(ws):
            h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
            h = jax.lax.conv_general_dilated(
                h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            h = jnp.tanh(h) if i < len(ws) - 1 else jax.nn.sigmoid(2.0 * h)
        return h[0]

    return generator


# ---------------------------------------------------------------------------------------------
# Problems: generator + features


def problem(name: str, latent_dim: int | None, dtype: Any):
    """``(generator, vary, fix, d)`` for a benchmark generator name.

    * ``conv``: :func:`conv_generator` (32×32), vary = top-half pixels, fix = bottom-half pixels.
    * ``face_dcgan``: the pretrained 64×64 face DCGAN (d = 100), vary = the top quarter (hair),
      fix = the rest of the image (pixels).
    * ``rooms_oracle``: procedural rooms (d = 16 unless given), vary = low-pass(4), fix = high-pass(2).
    * ``rooms_gan``: the shipped rooms GAN (d = 64) when its weights are present, same features.
    """
    from reds_jax import features as F
    from reds_jax import generators

    if name == "conv":
        d = int(latent_dim or 64)
        gen = conv_generator(d, dtype=dtype)
        return gen, F.region((0.0, 0.0, 0.5, 1.0)), F.region((0.5, 0.0, 0.5, 1.0)), d
    if name == "face_dcgan":
        gan = generators.face_dcgan()
        return gan.generator, F.region((0.0, 0.0, 0.25, 1.0)), F.region((0.25, 0.0, 0.75, 1.0)), 100
    if name == "rooms_oracle":
        oracle = generators.rooms_oracle(latent_dim=int(latent_dim or 16))
        return oracle.generator, F.lowpass(4.0), F.highpass(2.0), oracle.latent_dim
    if name == "rooms_gan":
        gan = generators.rooms_gan()
        return gan.generator, F.lowpass(4.0), F.highpass(2.0), gan.latent_dim
    raise ValueError(f"generator {name!r} is unknown; pass one of {GENERATORS + ('rooms_gan',)}.")


def parse_solver(spec: str) -> tuple[str, dict[str, Any]]:
    """``"matrix_free+iters=2+sketch=128"`` -> ``("matrix_free", {"iters": 2, "sketch": 128})``."""
    base, *opts = spec.split("+")
    out: dict[str, Any] = {}
    for o in opts:
        key, _, val = o.partition("=")
        try:
            out[key] = int(val)
        except ValueError:
            try:
                out[key] = float(val)
            except ValueError:
                out[key] = val
    return base, out


# ---------------------------------------------------------------------------------------------
# The reference-style loop (host numpy, Python loops, FD Jacobians in batches of 10)


def reference_traverse(
    batch_fn: Callable[[np.ndarray], np.ndarray],
    sizes: Sequence[int],
    n_vary: int,
    z0: np.ndarray,
    *,
    k: int,
    steps: int,
    step_size: float,
    eps: float = 1e-3,
    ridge: float = 1e-6,
    batch: int = 10,
    one_sided_tracking: bool = False,
) -> np.ndarray:
    """Paths from one latent the way the reference code computes them: ``[2k, T+1, d]``.

    ``batch_fn`` maps ``[batch, d]`` latents to ``[batch, m]`` concatenated features (the jitted
    generator and features). Jacobians by central differences (forward differences during tracking
    if ``one_sided_tracking``, as the reference code's local steps do), evaluated ``batch`` latents
    per call; Frobenius-normalised Grams, Rayleigh form by Cholesky whitening, projection and step,
    all in numpy on the host. The features of every visited latent are evaluated too (the reference
    renders an image per step).
    """
    d = z0.shape[0]
    bounds = np.cumsum([0, *sizes])

    def run(latents):
        out = []
        for i in range(0, len(latents), batch):
            chunk = latents[i : i + batch]
            pad = batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            out.append(np.asarray(batch_fn(chunk))[: batch - pad])
        return np.concatenate(out)

    def dirs(z, two_sided):
        eye = np.eye(d, dtype=z.dtype) * eps
        if two_sided:
            f = run(np.concatenate([z + eye, z - eye]))
            jac = (f[:d] - f[d:]).T / (2 * eps)
        else:
            f = run(np.concatenate([z + eye, z[None]]))
            jac = (f[:d] - f[d:]).T / eps
        grams = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            g = jac[lo:hi].T @ jac[lo:hi]
            grams.append(g / max(np.linalg.norm(g), 1e-30))
        a = sum(grams[:n_vary])
        b = sum(grams[n_vary:]) if len(grams) > n_vary else np.zeros_like(a)
        chol = np.linalg.cholesky(b + ridge * np.eye(d, dtype=z.dtype))
        linv = np.linalg.inv(chol)
        _, u = np.linalg.eigh(linv @ a @ linv.T)
        v = (linv.T @ u[:, ::-1]).T
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    start = dirs(z0, True)
    paths = np.zeros((2 * k, steps + 1, d), z0.dtype)
    for t in range(2 * k):
        v = start[t // 2] * (1.0 if t % 2 == 0 else -1.0)
        z = z0.copy()
        paths[t, 0] = z
        for j in range(steps):
            if j > 0:
                basis = dirs(z, not one_sided_tracking)[:k]
                coef = np.linalg.solve(basis @ basis.T, basis @ v)
                new = coef @ basis
                new /= np.linalg.norm(new)
                v = new if np.dot(new, v) > 0 else -new
            z = z + step_size * v
            paths[t, j + 1] = z
            run(z[None])  # the image / features of the new latent
    return paths


# ---------------------------------------------------------------------------------------------
# One configuration (runs in its own process)


def _proc_status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MiB from ``/proc/self/status`` (None elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _device_peak_mb() -> float | None:
    """Peak bytes in use on the first device (GPU/TPU; None where the backend has no stats)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU backends may not implement it
        return None
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def solver_check(spec: dict[str, Any], path: str, limit: int = 48) -> dict[str, float]:
    """Same-latent agreement of a saved run with the dense solver (``k = 1`` paths).

    At up to ``limit`` latents ``z_t`` (``1 <= t < T``) of the saved paths, the dense top direction
    is computed and compared with the saved step ``z_{t+1} − z_t`` (|cos|): the solver's own error,
    without the divergence of whole paths.
    """
    import reds_jax

    dtype = jnp.dtype(spec.get("dtype", "float32"))
    gen, vary, fix, d = problem(spec["generator"], spec.get("d"), dtype)
    lat = np.load(path)["latents"]
    zs = lat[..., 1:-1, :].reshape(-1, d)
    steps = np.diff(lat, axis=-2)[..., 1:, :].reshape(-1, d)
    pick = np.unique(np.linspace(0, len(zs) - 1, min(limit, len(zs))).astype(int))
    dirs = reds_jax.directions(gen, jnp.asarray(zs[pick], dtype), vary=vary, fix=[fix], k=1)
    top = np.asarray(dirs.vectors[:, 0])
    cos = np.abs(np.sum(top * steps[pick], -1)) / np.linalg.norm(steps[pick], axis=-1)
    return {
        "same_latent_cos_mean": float(cos.mean()),
        "same_latent_cos_min": float(cos.min()),
        "same_latent_cos_p05": float(np.quantile(cos, 0.05)),
        "same_latent_points": int(len(pick)),
    }


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one configuration in this process; returns a JSON-able record.

    ``spec`` keys: ``generator``, ``d``, ``n``, ``solver`` (``parse_solver`` syntax), ``k``,
    ``steps``, ``step_size``, ``repeats``, ``seed``, ``dtype``, ``ref_seeds``, ``save`` (npz path
    for the latents and distances, or None).
    """
    import reds_jax

    dtype = jnp.dtype(spec.get("dtype", "float32"))
    gen, vary, fix, d = problem(spec["generator"], spec.get("d"), dtype)
    n, k, steps = int(spec["n"]), int(spec["k"]), int(spec["steps"])
    size, repeats = float(spec["step_size"]), int(spec["repeats"])
    z0 = jax.random.normal(jax.random.key(int(spec.get("seed", 0))), (n, d), dtype)
    base, opts = parse_solver(spec["solver"])
    rss0 = _proc_status_mb("VmRSS")
    times: list[float] = []
    xla_temp_mb = None
    if base.startswith("reference"):
        feats = (vary, fix)
        sizes = [int(np.prod(jax.eval_shape(lambda v, f=f: f(gen(v)), z0[0]).shape)) for f in feats]
        batch_fn = jax.jit(
            jax.vmap(lambda z: jnp.concatenate([jnp.ravel(f(gen(z))) for f in feats]))
        )
        n_paths = min(n, int(spec.get("ref_seeds", 1)))
        seeds = np.asarray(z0[:n_paths])
        t0 = time.perf_counter()
        jax.block_until_ready(batch_fn(jnp.zeros((10, d), dtype)))
        compile_s = time.perf_counter() - t0
        for _ in range(repeats):
            t0 = time.perf_counter()
            latents = np.stack(
                [
                    reference_traverse(
                        batch_fn, sizes, 1, z, k=k, steps=steps, step_size=size, **opts
                    )
                    for z in seeds
                ]
            )
            times.append(time.perf_counter() - t0)
        out = {"latents": latents}
    else:
        kw: dict[str, Any] = {}
        if base == "chunked":
            kw["chunk_size"] = int(opts.pop("chunk_size", 64))
        elif base == "fd":
            kw["mode"] = "fd"
        elif base == "matrix_free":
            kw["solver"] = "matrix_free"
        elif base != "dense":
            raise ValueError(f"solver {base!r} is unknown; pass one of {SOLVERS}.")
        kw.update(opts)

        def run(z):
            return reds_jax.traverse(
                gen, z, vary=vary, fix=[fix], k=k, steps=steps, step_size=size, **kw
            )

        # One compile (timed on its own), XLA's memory plan, one warm-up call, timed repeats.
        t0 = time.perf_counter()
        compiled = jax.jit(run).lower(z0).compile()
        compile_s = time.perf_counter() - t0
        try:
            mem = compiled.memory_analysis()
            xla_temp_mb = mem.temp_size_in_bytes / 2**20
        except Exception:  # noqa: BLE001 - not every backend reports it
            xla_temp_mb = None
        tr = jax.block_until_ready(compiled(z0))
        for _ in range(repeats):
            t0 = time.perf_counter()
            tr = jax.block_until_ready(compiled(z0))
            times.append(time.perf_counter() - t0)
        n_paths = n
        out = {
            "latents": np.asarray(tr.latents),
            "fix": np.asarray(tr.fix_distances[0]),
            "vary": np.asarray(tr.vary_distances[0]),
        }
    median = float(np.median(times))
    if spec.get("save"):
        np.savez(spec["save"], **out)
    return {
        **{key: spec[key] for key in ("generator", "n", "solver", "k", "steps")},
        "d": d,
        "seeds_timed": n_paths,
        "times_s": times,
        "median_s": median,
        "trajectories_per_s": n_paths * 2 * k / median,
        "step_latency_ms": 1e3 * median / max(steps, 1),
        "compile_s": compile_s,
        "rss_before_mb": rss0,
        "xla_temp_mb": xla_temp_mb,
        "device_peak_mb": _device_peak_mb(),
        "peak_rss_mb": _proc_status_mb("VmHWM"),
    }


# ---------------------------------------------------------------------------------------------
# The grid, the driver, the reports


def grid(profile: str) -> list[dict[str, Any]]:
    """Configurations ``{generator, d, n, solvers}`` of a profile.

    Profiles: ``cpu``, ``cpu-targets`` (only the rows behind the CPU targets), ``gpu``, ``smoke``.

    ``cpu`` is cut to what a 2-core CPU runs in minutes: N = 256 and the larger batches at
    d ≥ 128 are left out, FD and chunked run at the smaller batches, the face DCGAN at N = 1.
    """
    mf = "matrix_free"
    sketches = [f"{mf}+sketch={m}" for m in (32, 64, 128, 256)]
    if profile == "smoke":
        return [{"generator": "conv", "d": 16, "n": 2, "solvers": ["dense", mf, "reference"]}]
    if profile == "cpu":
        once = {"dense": 1, "reference": 1}  # the slowest rows: one timed call after the warm-up
        return [
            {"generator": "conv", "d": 64, "n": 1, "solvers": ["dense", "fd", mf, "reference"]},
            {
                "generator": "conv",
                "d": 64,
                "n": 8,
                "solvers": [
                    "dense",
                    "chunked",
                    "fd",
                    mf,
                    f"{mf}+guard=0",
                    f"{mf}+cold_start=iterative+iters=3",
                    *sketches[:3],
                ],
            },
            {"generator": "conv", "d": 64, "n": 64, "solvers": ["dense", mf]},
            {"generator": "conv", "d": 128, "n": 8, "solvers": ["dense", mf, "reference"]},
            {
                "generator": "conv",
                "d": 512,
                "n": 1,
                "solvers": ["dense", mf, f"{mf}+guard=0", "reference"],
                "repeats": once,
            },
            {"generator": "conv", "d": 512, "n": 8, "solvers": [mf]},
            {
                "generator": "face_dcgan",
                "d": 100,
                "n": 1,
                "solvers": ["dense", mf, "reference"],
                "repeats": once,
            },
            {"generator": "rooms_oracle", "d": 16, "n": 8, "solvers": ["dense", mf, "reference"]},
        ]
    if profile == "cpu-targets":  # the rows behind the CPU targets, in one run
        once = {"dense": 1, "reference": 1}
        return [
            {"generator": "conv", "d": 64, "n": 64, "solvers": ["dense", mf, "reference"]},
            {
                "generator": "conv",
                "d": 512,
                "n": 1,
                "solvers": ["dense", mf, "reference"],
                "repeats": once,
            },
            {"generator": "conv", "d": 512, "n": 8, "solvers": [mf]},
        ]
    if profile == "gpu":  # sized for about five minutes of one accelerator, compiles included
        ref = ["reference"]
        return [
            {"generator": "conv", "d": 64, "n": 256, "solvers": ["dense", "fd", mf, *ref]},
            {"generator": "conv", "d": 512, "n": 256, "solvers": ["dense", "chunked", mf, *ref]},
            {"generator": "face_dcgan", "d": 100, "n": 256, "solvers": ["dense", mf, *ref]},
            {"generator": "rooms_gan", "d": 64, "n": 256, "solvers": ["dense", mf, *ref]},
            {"generator": "rooms_oracle", "d": 16, "n": 256, "solvers": ["dense", mf, *ref]},
            {"generator": "conv", "d": 128, "n": 1024, "solvers": ["dense", mf, sketches[2]]},
        ]
    raise ValueError(f"profile {profile!r} is unknown; pass cpu, cpu-targets, gpu or smoke.")


def _run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "reds_jax.bench", "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {**spec, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1][len("RESULT ") :])


def _agreement(ref_path: str, other_path: str) -> dict[str, float]:
    """Per-step |cos| of path directions and fixed-feature drift of one solver against dense."""
    a, b = np.load(ref_path), np.load(other_path)
    da, db = np.diff(a["latents"], axis=-2), np.diff(b["latents"], axis=-2)
    cos = np.abs(np.sum(da * db, -1)) / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))
    drift_a, drift_b = a["fix"][..., -1], b["fix"][..., -1]
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "cos_p05": float(np.quantile(cos, 0.05)),
        "drift_dense_median": float(np.median(drift_a)),
        "drift_median": float(np.median(drift_b)),
        "drift_rel_diff": float(np.median(drift_b) / max(np.median(drift_a), 1e-30) - 1.0),
    }


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}g}"
    return str(x)


def markdown(report: dict[str, Any]) -> str:
    """Markdown summary of a report (tables per configuration, agreement, targets)."""
    lines = [
        f"# Traversal benchmark — {report['machine']}",
        "",
        f"jax {report['jax']}, devices: {report['devices']}, dtype {report['dtype']}, "
        f"load average (1 min) {report['load_average']['start'][0]:.1f} at the start and "
        f"{report['load_average']['end'][0]:.1f} at the end, "
        f"k = {report['k']} ({2 * report['k']} paths per start latent), T = {report['steps']} "
        f"steps, step {report['step_size']}, {report['repeats']} timed repeats (median) after one "
        "compiling call. Ratios are trajectories/s of a row over the reference loop / the dense "
        "solver of the same generator, d and N, measured in this run.",
        "",
        "| generator | d | N | solver | traj/s | step ms | compile s | peak RSS MB | XLA temp MB | "
        "× reference | × dense | step cos vs dense (mean / min) | fixed drift vs dense |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(
                f"| {r['generator']} | {r.get('d')} | {r['n']} | {r['solver']} | "
                f"error: {r['error']} ||||||||| "
            )
            continue
        ag = r.get("agreement") or {}
        cos = f"{ag['cos_mean']:.4f} / {ag['cos_min']:.3f}" if "cos_mean" in ag else "–"
        if "same_latent_cos_mean" in ag:
            cos += (
                f" (same latents: {ag['same_latent_cos_mean']:.4f} / "
                f"{ag['same_latent_cos_min']:.3f})"
            )
        drift = f"{100 * ag['drift_rel_diff']:+.1f} %" if "drift_rel_diff" in ag else "–"
        lines.append(
            f"| {r['generator']} | {r['d']} | {r['n']} | {r['solver']} | "
            f"{_fmt(r['trajectories_per_s'])} | {_fmt(r['step_latency_ms'])} | "
            f"{_fmt(r['compile_s'], 2)} | {_fmt(r['peak_rss_mb'], 4)} | "
            f"{_fmt(r.get('xla_temp_mb'), 3)} | "
            f"{_fmt(r.get('x_reference'))} | {_fmt(r.get('x_dense'))} | {cos} | {drift} |"
        )
    lines += ["", "## Targets (issue 7)", "", "| target | measured | met |", "|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {x}" for x in report["notes"]]
    return "\n".join(lines) + "\n"


def _targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def get(gen, d, n, solver):
        for r in results:
            if (r["generator"], r.get("d"), r["n"], r["solver"]) == (gen, d, n, solver):
                return None if "error" in r else r
        return None

    out = []

    def add(target, value, ok, fmt="{:.2f}×"):
        out.append(
            {
                "target": target,
                "measured": "not run" if value is None else fmt.format(value),
                "met": None if value is None else bool(ok(value)),
            }
        )

    for r in results:
        if r["solver"] == "dense" and "error" not in r:
            fd = get(r["generator"], r["d"], r["n"], "fd")
            if fd:
                add(
                    f"dense step ≥ 2× FD step ({r['generator']}, d={r['d']}, N={r['n']})",
                    fd["median_s"] / r["median_s"],
                    lambda v: v >= 2,
                )
    dense, mf = get("conv", 64, 64, "dense"), get("conv", 64, 64, "matrix_free")
    add(
        "d=64, N=64: dense ≥ 1.5× reference", dense and dense.get("x_reference"), lambda v: v >= 1.5
    )
    add("d=64, N=64: matrix-free ≥ 5× reference", mf and mf.get("x_reference"), lambda v: v >= 5)
    n512 = max([r["n"] for r in results if r.get("d") == 512 and r["solver"] == "dense"], default=0)
    mf = get("conv", 512, n512, "matrix_free")
    add(
        f"d=512 (N={n512}): matrix-free ≥ 10× reference",
        mf and mf.get("x_reference"),
        lambda v: v >= 10,
    )
    add(f"d=512 (N={n512}): matrix-free ≥ 5× dense", mf and mf.get("x_dense"), lambda v: v >= 5)
    ag = (mf or {}).get("agreement")
    add(
        f"d=512 (N={n512}): per-step |cos| to dense ≥ 0.99 (mean)",
        ag and ag["cos_mean"],
        lambda v: v >= 0.99,
        "{:.4f}",
    )
    if ag and "same_latent_cos_mean" in ag:
        add(
            f"d=512 (N={n512}): same-latent |cos| to the dense top direction ≥ 0.99 (mean)",
            ag["same_latent_cos_mean"],
            lambda v: v >= 0.99,
            "{:.4f}",
        )
    add(
        f"d=512 (N={n512}): fixed drift within 10 % of dense",
        ag and 100 * ag["drift_rel_diff"],
        lambda v: abs(v) <= 10,
        "{:+.1f} %",
    )
    for r in results:
        if r["solver"] == "dense" and r["n"] == 256 and "x_reference" in r:
            add(
                f"N=256 (GPU target): dense ≥ 10× reference ({r['generator']}, d={r['d']})",
                r["x_reference"],
                lambda v: v >= 10,
            )
    return out


def _write_report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    refs: dict[tuple, dict[str, Any]],
    load_start: tuple[float, ...],
    name: str,
) -> dict[str, Any]:
    """Add the pair-wise ratios to ``results`` and write ``<out>/<name>.json`` and ``.md``.

    Called after every configuration, so that a run cut short (a device lease, a timeout) still
    leaves the rows it finished on disk.
    """
    for r in results:
        if "error" in r:
            continue
        ref = refs.get((r["generator"], r["d"]))
        if ref and r["solver"] != "reference":
            r["x_reference"] = r["trajectories_per_s"] / ref["trajectories_per_s"]
        dense = next(
            (
                x
                for x in results
                if "error" not in x
                and x["solver"] == "dense"
                and (x["generator"], x["d"], x["n"]) == (r["generator"], r["d"], r["n"])
            ),
            None,
        )
        if dense and r is not dense:
            r["x_dense"] = r["trajectories_per_s"] / dense["trajectories_per_s"]
    report = {
        "machine": args.machine or f"{platform.machine()} ({os.cpu_count()} CPUs)",
        "jax": jax.__version__,
        "devices": [str(x) for x in jax.devices()],
        "profile": args.profile,
        "dtype": args.dtype,
        "k": args.k,
        "steps": args.steps,
        "step_size": args.step_size,
        "repeats": args.repeats,
        "ref_seeds": args.ref_seeds,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": results,
        "targets": _targets(results),
        "notes": [
            "The reference loop is sequential, so its trajectories/s does not depend on N: it is "
            f"timed on {args.ref_seeds} seed(s) and used for every N of the same generator and d.",
            "Peak RSS is VmHWM of the configuration's own process (includes the Python/JAX "
            "baseline, see rss_before_mb in the JSON, and compilation). XLA temp MB is the "
            "compiled traversal's temporary buffer plan (memory_analysis): the working memory "
            "of the solve, where a full [m, d] Jacobian per path would show.",
            "Step cos: |cos| between the per-step directions of a solver's paths and the dense "
            "solver's paths from the same start latents (the whole path, so it also counts any "
            "divergence of the paths); 'same latents' (with --check): |cos| between a "
            "matrix-free step and the dense top direction at the same latent (the solver's own "
            "error); fixed drift: median over paths of the fixed feature's final distance, "
            "relative to dense.",
        ],
    }
    with open(os.path.join(args.out, f"{name}.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    with open(os.path.join(args.out, f"{name}.md"), "w") as fh:
        fh.write(markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark grid; write ``<out>/<name>.json`` and ``<out>/<name>.md``.

    Args:
      argv: command-line arguments (see ``--help``); ``None`` reads ``sys.argv``.

    Returns:
      Process exit status (0 on success).
    """
    parser = argparse.ArgumentParser(prog="reds-jax bench", description=__doc__.split("\n")[0])
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
    args = parser.parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        if "check" in spec:
            print("RESULT " + json.dumps(solver_check(spec, spec["check"])), flush=True)
        else:
            print("RESULT " + json.dumps(run_config(spec)), flush=True)
        return 0

    import tempfile

    os.makedirs(args.out, exist_ok=True)
    name = args.name or args.profile
    configs = grid(args.profile)
    if args.only:
        keep = set(args.only.split(","))
        configs = [c for c in configs if c["generator"] in keep]
    if args.max_n:
        configs = [{**c, "n": min(c["n"], args.max_n)} for c in configs]
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        refs: dict[tuple, dict[str, Any]] = {}
        for c in configs:
            saved: dict[str, str] = {}
            for solver in c["solvers"]:
                path = os.path.join(tmp, f"{c['generator']}_{c['d']}_{c['n']}_{len(results)}.npz")
                spec = {
                    "generator": c["generator"],
                    "d": c["d"],
                    "n": c["n"],
                    "solver": solver,
                    "k": args.k,
                    "steps": args.steps,
                    "step_size": args.step_size,
                    "repeats": c.get("repeats", {}).get(solver, args.repeats),
                    "dtype": args.dtype,
                    "ref_seeds": args.ref_seeds,
                    "seed": 0,
                    "save": path,
                }
                t0 = time.perf_counter()
                rec = _run_worker(spec, args.timeout)
                if "error" in rec:  # one retry (a stalled or crashed worker)
                    rec = {**_run_worker(spec, args.timeout), "first_error": rec["error"]}
                rec.setdefault("d", c["d"])
                print(
                    f"[{time.perf_counter() - t0:6.1f} s] {c['generator']} d={c['d']} N={c['n']} "
                    f"{solver}: "
                    + (
                        f"{rec['trajectories_per_s']:.3g} traj/s, step {rec['step_latency_ms']:.3g} ms"
                        if "error" not in rec
                        else f"error {rec['error']}"
                    ),
                    flush=True,
                )
                results.append(rec)
                if "error" not in rec:
                    saved[solver] = path
                    if solver == "reference":
                        refs[(c["generator"], c["d"])] = rec
            for r in results[-len(c["solvers"]) :]:
                if "error" in r:
                    continue
                if (
                    r["solver"] != "dense"
                    and "dense" in saved
                    and not r["solver"].startswith("reference")
                ):
                    r["agreement"] = _agreement(saved["dense"], saved[r["solver"]])
                if args.check and r["solver"].startswith("matrix_free") and r["k"] == 1:
                    spec = {
                        "generator": c["generator"],
                        "d": c["d"],
                        "dtype": args.dtype,
                        "check": saved[r["solver"]],
                    }
                    chk = _run_worker(spec, args.timeout)
                    if "error" not in chk:
                        r.setdefault("agreement", {}).update(chk)
            _write_report(args, results, refs, load_start, name)
    report = _write_report(args, results, refs, load_start, name)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
