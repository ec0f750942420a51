"""REDs at paper scale: StyleGAN2 (FFHQ architectures, seeded random weights) in W, W+ and
StyleSpace with identity and regions fixed — time per step, peak memory, compile time, accuracy.

    python benchmarks/paper_scale.py --scale cpu            # the reduced configuration (CPU)
    python benchmarks/paper_scale.py --scale 1024 --n 8     # on an accelerator (benchmarks/gpu.sh)

Problems: :mod:`paper_problems` (experiments ``hair`` and ``frequency``). Every row runs in its own
subprocess, so its peak resident memory (``VmHWM``) and compile time are its own; the JSON and
Markdown reports are rewritten after every row (a killed run keeps what finished). Rows, per
experiment, in order:

* ``path`` rows (``matrix_free`` in ``w``, ``w+``, ``s``): one compiled ``traverse`` (``local``,
  k = 1, ``T`` steps, ``N`` start latents; its compile time is the row's), timed (AOT-compiled:
  no warm-up call);
  the start solve alone (``directions``) is timed too, and the **step** is the rest divided by the
  ``N·2k·(T − 1)`` tracking solves. The latents are saved for the accuracy rows.
* ``solve`` rows at the latents a ``path`` row visited (start latent and tracked latents of its
  first start latent): ``dense`` in ``w`` at all of them — the exact reference and the dense step
  time (one solve per latent = one step of one path) — ``chunked`` (``Dense(chunk_size=...)``) at
  the first tracked latent only (its step time; a solve takes minutes), and ``exact``
  in ``w+``/``s``: a long LOBPCG (``MatrixFree.track`` with a tight tolerance) warm-started at each
  latent from the path's own direction, since a ``[d, d]`` Gram at d in the thousands is what the
  matrix-free solver exists to avoid.
* ``reference``: the reference code's way on the same jitted generator in ``w``: central
  differences in batches of 10 (``2d`` passes), numpy Gram and eigen-solve, one seed at a time;
  ONE step is timed (a whole path is ``T`` times that).
* ``pass`` (``w``, ``w+``, ``s``): one forward + backward pass of generator + features (a VJP at
  the first start latent), compiled and run in a process of its own: the matrix-free rows' peak
  memory is reported as a multiple of this row's.

The path rows' programs compute no feature distances along the paths (``distances=False``): a
step is the solve and the move, as the reference loop's step is.

Accuracy of a path row: per tracked step, |cos| between the step it took and the exact top
direction at the same latent, and the fixed features' change over that step relative to a step
of the same length along the exact direction ("drift ratio"; 1 = as good as exact).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_problems import parse_solver, reference_traverse
from bench_report import fmt
from bench_traverse import device_peak_mb, proc_status_mb
from paper_problems import paper_problem, start_latents

Array = jax.Array

# ---------------------------------------------------------------------------------------------
# Solvers and rows


def make_solver(spec: str):
    """``"matrix_free+tol=1e-3"`` -> ``reds_jax.MatrixFree(tol=1e-3)``; ``"chunked"`` ->
    ``Dense(chunk_size=64)``; ``"dense"`` -> ``Dense()``."""
    import reds_jax

    base, opts = parse_solver(spec)
    if base == "dense":
        return reds_jax.Dense(**opts)
    if base == "chunked":
        return reds_jax.Dense(chunk_size=int(opts.pop("chunk_size", 64)), **opts)
    if base in ("matrix_free", "exact"):
        return reds_jax.MatrixFree(**opts)
    raise ValueError(f"solver {spec!r}: pass dense, chunked, matrix_free or exact (+options).")


MF_W = "matrix_free"
MF_BIG = "matrix_free+cold_start=iterative"  # W+ / S: no [d, d] array, the start included
EXACT = "exact+max_iters=200+tol=1e-6+guard=2+turn_tol=None"  # the residual rule only


# "Peak memory a small multiple of one forward + backward pass" (issue 14), made a number: the
# path program runs the 2k = 2 paths of a latent at once, each with a linearization and up to
# 2(k + guard) = 4 product rows, and the start solve; a Jacobian would hold d (512-5120) tangents.
PLAN_MULTIPLE = 32


def checked_path(exp: str, space: str) -> str:
    """The path row of ``exp`` in ``space`` that the exact solves check (W: the dense start)."""
    return f"{exp}/{space}/{MF_W if space == 'w' else MF_BIG}"


def grid(scale: str, experiments: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of a scale, most important first (accuracy rows after the path rows they check)."""
    rows: list[dict[str, Any]] = []
    ordered = scale != "tiny"
    for exp in experiments:
        path = lambda space, solver, exp=exp: {  # noqa: E731
            "kind": "path", "experiment": exp, "space": space, "solver": solver,
            "name": f"{exp}/{space}/{solver}",
        }  # fmt: skip
        rows += [path("w+", MF_BIG), path("w", MF_W), path("s", MF_BIG)]
        rows.append(path("w", MF_BIG))
        for space, solver, at in [
            ("w", "dense", "all"),
            ("w", "chunked", "track1"),
            ("w+", EXACT, "all"),
            ("s", EXACT, "all"),
        ]:
            src = checked_path(exp, space)
            rows.append(
                {"kind": "solve", "experiment": exp, "space": space, "solver": solver, "at": at,
                 "source": src, "name": f"{exp}/{space}/{solver.split('+')[0]}@{at}"}
            )  # fmt: skip
        rows.append(
            {"kind": "reference", "experiment": exp, "space": "w", "solver": "reference",
             "name": f"{exp}/w/reference"}
        )  # fmt: skip
        rows += [
            {"kind": "pass", "experiment": exp, "space": space, "solver": "pass",
             "name": f"{exp}/{space}/pass"}
            for space in ("w", "w+", "s")
        ]  # fmt: skip
    if ordered:  # the target row first, the least informative last (a --budget cuts the tail)
        first = [f"/w+/{MF_BIG}", f"/w/{MF_W}", "/w/chunked@track1", "/w/dense@all",
                 "/w+/exact@all", f"/s/{MF_BIG}", "/w/reference", "/s/exact@all"]  # fmt: skip
        rank = lambda r: next((i for i, f in enumerate(first) if r["name"].endswith(f)), 99)  # noqa: E731
        rows.sort(key=lambda r: (rank(r), r["experiment"] != experiments[0]))
    return rows


# ---------------------------------------------------------------------------------------------
# Workers (one per row, in their own process)


def _timed(fn, *args, repeats: int = 1) -> tuple[Any, float]:
    """Median seconds of ``repeats`` calls of an AOT-compiled ``fn`` (``_compile``: no warm-up)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def _say(msg: str) -> None:
    """Progress of a worker, on its stderr (the parent shows the tail of a failed row)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _compile(fn, *args) -> tuple[Any, float]:
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _plan_mb(compiled) -> float | None:
    """MB of buffers in a compiled program's XLA memory plan (temporaries + arguments + outputs):
    the working memory of one call, without the compiler's own and the runtime's."""
    try:
        m = compiled.memory_analysis()
        used = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
        return (used - m.alias_size_in_bytes) / 2**20
    except Exception:  # a backend without memory analysis
        return None


def _diag(diagnostics) -> dict[str, Any]:
    if diagnostics is None:
        return {}
    out = {}
    for name, x in diagnostics._asdict().items():
        a = np.asarray(x)
        out[name] = a.tolist() if a.size <= 64 else float(a.max())
    return out


def run_path(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``path`` row: compiled local traversal and start solve; saves latents."""
    import reds_jax

    t0 = time.perf_counter()
    gen, vary, fix, d, g = paper_problem(spec["scale"], spec["experiment"], spec["space"])
    n, k, steps, size = spec["n"], spec["k"], spec["steps"], spec["step_size"]
    z0 = jax.block_until_ready(start_latents(g, n, seed=spec.get("seed", 0)))
    _say(f"{spec['name']}: problem and start latents built in {time.perf_counter() - t0:.1f} s")
    solver = make_solver(spec["solver"])
    problem = reds_jax.Problem(gen, vary, fix, k=k)
    step = reds_jax.FixedStep(size)

    def path(z):
        return reds_jax.traverse(problem, z, solver=solver, steps=steps, step=step, distances=False)

    def start(z):
        return reds_jax.directions(problem, z, solver=solver)

    compiled, compile_s = _compile(path, z0)
    _say(f"{spec['name']}: path compiled in {compile_s:.1f} s")
    tr, path_s = _timed(compiled, z0, repeats=spec["repeats"])
    _say(f"{spec['name']}: path {path_s:.1f} s")
    peak_after_path = proc_status_mb("VmHWM")
    compiled_start, start_compile_s = _compile(start, z0)
    _, start_s = _timed(compiled_start, z0, repeats=spec["repeats"])
    _say(f"{spec['name']}: start {start_s:.1f} s (compiled in {start_compile_s:.1f} s)")
    solves = n * 2 * k * max(steps - 1, 1)
    np.savez(spec["save"], latents=np.asarray(tr.latents), step_size=size)
    # The tracking time is the difference of two timings: at or below 0 it is inside their noise
    # and is reported as not measured (None), never as a zero-cost step.
    track_s = path_s - start_s if path_s > start_s else None
    return {
        "d": d,
        "path_s": path_s,
        "start_s": start_s,
        "step_s": None if track_s is None else track_s / solves,
        "step_s_per_latent": None if track_s is None else track_s / (2 * k * max(steps - 1, 1)),
        "compile_s": compile_s,
        "start_compile_s": start_compile_s,
        "peak_rss_path_mb": peak_after_path,
        "plan_mb": _plan_mb(compiled),
        "n": n,
        "diagnostics": _diag(getattr(tr, "diagnostics", None)),
    }


def _points(latents: np.ndarray, at: str) -> list[tuple[int, int]]:
    """``(path, t)`` pairs of the first start latent: ``start`` (0, 0), ``track`` t >= 1,
    ``track1`` the first of those (one solve: a chunked solve takes minutes), ``all``."""
    _, p, t1, _ = latents.shape
    start = [(0, 0)]
    track = [(i, t) for i in range(p) for t in range(1, t1 - 1)]
    return {"start": start, "track": track, "track1": track[:1], "all": start + track}[at]


def run_solve(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``solve`` row: exact top directions at a path row's latents (timed per latent), and the
    accuracy of that row's steps there."""
    import reds_jax

    gen, vary, fix, d, g = paper_problem(spec["scale"], spec["experiment"], spec["space"])
    saved = np.load(spec["source_npz"])
    latents, size = saved["latents"], float(saved["step_size"])
    pts = _points(latents, spec["at"])
    dtype = jnp.float32
    solver = make_solver(spec["solver"])
    zs = [jnp.asarray(latents[0, i, t], dtype) for i, t in pts]
    # the path row's own direction at each point: its step from there
    own = [latents[0, i, t + 1] - latents[0, i, t] for i, t in pts]
    if spec["solver"].startswith("exact"):
        problem = reds_jax.Problem(gen, vary, fix).at(zs[0])
        key = jax.random.key(0)
        z_start = jnp.asarray(latents[0, 0, 0], dtype)
        # The context (Gram norms, ridge) of the path's start latent, as the path row used it:
        # from the same key (traverse's default key(0), split into one key per latent, the first
        # half of latent 0's to its start solve). The iterative start's ridge floor comes from
        # random probes, so another key poses a (slightly) different problem.
        path_key = jax.random.split(jax.random.split(key, spec["n"])[0])[0]
        ctx = jax.jit(lambda z: solver.start(problem, z, path_key).context)(z_start)

        def solve(z, x0, ctx):
            block = jnp.concatenate([x0[None], jax.random.normal(key, (solver.guard, d), dtype)])
            step = solver.track(problem, ctx, z, block, key)
            return step.rows[0], step.diagnostics.residual

        x0s = [jnp.asarray(o / np.linalg.norm(o), dtype) for o in own]
        compiled, compile_s = _compile(solve, zs[0], x0s[0], ctx)
        outs, times = [], []
        for z, x0 in zip(zs, x0s, strict=True):
            out, t = _timed(compiled, z, x0, ctx)
            outs.append(out)
            times.append(t)
        exact = [np.asarray(o[0]) for o in outs]
        residual = [float(o[1]) for o in outs]
    else:

        def solve(z):
            dirs = reds_jax.directions(reds_jax.Problem(gen, vary, fix), z, solver=solver)
            return dirs.vectors[0]

        compiled, compile_s = _compile(solve, zs[0])
        exact, times = [], []
        for z in zs:
            out, t = _timed(compiled, z)
            exact.append(np.asarray(out))
            times.append(t)
        residual = None
    acc = _accuracy(gen, fix, zs, own, exact, size)
    np.savez(spec["save"], exact=np.stack(exact), points=np.asarray(pts))
    return {
        "d": d,
        "step_s": float(np.median(times)),
        "times_s": times,
        "compile_s": compile_s,
        "exact_residual": residual,
        "points": pts,
        **acc,
    }


def _accuracy(gen, fix, zs, own, exact, size) -> dict[str, Any]:
    """|cos| of the path's step to the exact direction, and the fixed features' change over the
    step relative to a step along the exact direction (per point)."""
    feats = jax.jit(lambda z: [jnp.ravel(f(gen(z))) for f in fix])
    cos, drift = [], []
    for z, u, v in zip(zs, own, exact, strict=True):
        u = u / np.linalg.norm(u)
        c = float(np.dot(u, v) / np.linalg.norm(v))
        cos.append(abs(c))
        v = np.sign(c or 1.0) * v / np.linalg.norm(v)
        base = feats(z)
        du = feats(z + size * jnp.asarray(u, z.dtype))
        dv = feats(z + size * jnp.asarray(v, z.dtype))
        num = sum(float(jnp.linalg.norm(a - b)) for a, b in zip(du, base, strict=True))
        den = sum(float(jnp.linalg.norm(a - b)) for a, b in zip(dv, base, strict=True))
        drift.append(num / max(den, 1e-30))
    return {"cos": cos, "drift_ratio": drift}


def run_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """The reference-style loop in W: ONE step of one path from the first start latent."""
    gen, vary, fix, d, g = paper_problem(spec["scale"], spec["experiment"], spec["space"])
    z0 = np.asarray(start_latents(g, 1, seed=spec.get("seed", 0))[0])
    feats = (*vary, *fix)
    sizes = [int(np.prod(jax.eval_shape(lambda v, f=f: f(gen(v)), z0).shape)) for f in feats]
    batch_fn = jax.jit(jax.vmap(lambda z: jnp.concatenate([jnp.ravel(f(gen(z))) for f in feats])))
    t0 = time.perf_counter()
    jax.block_until_ready(batch_fn(jnp.zeros((10, d), jnp.float32)))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    paths = reference_traverse(
        batch_fn, sizes, len(vary), z0, k=1, steps=1, step_size=spec["step_size"]
    )
    step_s = time.perf_counter() - t0
    np.savez(spec["save"], latents=paths[None])
    return {"d": d, "step_s": step_s, "compile_s": compile_s, "generator_passes": 2 * d + 2}


def run_pass(spec: dict[str, Any]) -> dict[str, Any]:
    """One forward + backward pass (a VJP) of generator + features at the first start latent."""
    gen, vary, fix, d, g = paper_problem(spec["scale"], spec["experiment"], spec["space"])
    z0 = start_latents(g, 1, seed=spec.get("seed", 0))[0]
    feats = (*vary, *fix)

    def forward_backward(z):
        out, vjp = jax.vjp(lambda v: jnp.concatenate([jnp.ravel(f(gen(v))) for f in feats]), z)
        return vjp(jnp.ones_like(out))[0]

    compiled, compile_s = _compile(forward_backward, z0)
    _, pass_s = _timed(compiled, z0, repeats=spec["repeats"])
    return {"d": d, "step_s": None, "pass_s": pass_s, "compile_s": compile_s,
            "plan_mb": _plan_mb(compiled)}  # fmt: skip


WORKERS = {"path": run_path, "solve": run_solve, "reference": run_reference, "pass": run_pass}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    rss0 = proc_status_mb("VmRSS")
    load = os.getloadavg()
    t0 = time.perf_counter()
    rec = WORKERS[spec["kind"]](spec)
    return {
        **rec,
        "wall_s": time.perf_counter() - t0,
        "rss_before_mb": rss0,
        "peak_rss_mb": proc_status_mb("VmHWM"),
        "device_peak_mb": device_peak_mb(),
        "load_start": load,
        "load_end": os.getloadavg(),
    }


def _run_worker(spec: dict[str, Any], timeout: float, nice: int) -> dict[str, Any]:
    """Run a row in its own process; its progress (stderr) goes to ``<save>.log`` (``tail -f`` it)
    and the last lines of that log explain a failed or timed-out row."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    log = spec["save"] + ".log"
    print(f"  {spec['name']}: progress in {log}", flush=True)
    with open(log, "w") as err:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            proc = None
    with open(log) as fh:
        tail = [x.strip() for x in fh.read().strip().splitlines()[-2:]]
    if proc is None:
        return {"error": f"timed out after {timeout:.0f} s (last: {' / '.join(tail)})"}
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": " / ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(lines[-1][len("RESULT ") :])


# ---------------------------------------------------------------------------------------------
# Report


def _row(results, name):
    """The finished row called ``name`` (``name`` ending in ``@``: the first row it begins)."""
    for r in results:
        hit = r["name"].startswith(name) if name.endswith("@") else r["name"] == name
        if hit and "error" not in r:
            return r
    return None


def summarise(results: list[dict[str, Any]]) -> None:
    """Attach accuracy (from solve rows) and ratios (same run) to the path rows, in place."""
    for r in results:
        if r["kind"] != "path" or "error" in r:
            continue
        exp, space = r["experiment"], r["space"]
        checked = {}  # point -> (|cos|, drift): a point that two solve rows checked counts once
        for s in results:
            if s["kind"] == "solve" and s.get("source") == r["name"] and "cos" in s:
                for pt, c, dr in zip(s["points"], s["cos"], s["drift_ratio"], strict=True):
                    checked.setdefault(tuple(pt), (c, dr))
        cos, drift = [c for c, _ in checked.values()], [dr for _, dr in checked.values()]
        if cos:
            r["cos_mean"], r["cos_min"] = float(np.mean(cos)), float(np.min(cos))
            r["drift_ratio_median"] = float(np.median(drift))
        ref = _row(results, f"{exp}/w/reference")
        chunk = _row(results, f"{exp}/w/chunked@")  # @track1 (before 2026-12-07: @track)
        dense = _row(results, f"{exp}/w/dense@")
        w_mf = _row(results, f"{exp}/w/{MF_W}")
        if ref:
            r["x_reference"] = ref["step_s"] / r["step_s"] if r["step_s"] else None
        if chunk:
            r["x_chunked"] = chunk["step_s"] / r["step_s"] if r["step_s"] else None
        if dense:
            r["x_dense"] = dense["step_s"] / r["step_s"] if r["step_s"] else None
        if w_mf and space != "w":
            ok = w_mf["step_s"] and r["step_s"] is not None
            r["vs_w_mf"] = r["step_s"] / w_mf["step_s"] if ok else None
        one_pass = _row(results, f"{exp}/{space}/pass")
        if one_pass and one_pass.get("peak_rss_mb"):
            r["x_pass_rss"] = r["peak_rss_mb"] / one_pass["peak_rss_mb"]
        if one_pass and one_pass.get("plan_mb") and r.get("plan_mb"):  # per start latent
            r["x_pass_plan"] = r["plan_mb"] / r.get("n", 1) / one_pass["plan_mb"]


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's CPU targets, met or missed, per experiment."""
    out = []

    def add(name, value, ok, fmt="{:.3g}", missing="not run"):
        out.append(
            {"target": name, "measured": missing if value is None else fmt.format(value),
             "met": None if value is None else bool(ok(value))}
        )  # fmt: skip

    exps = sorted({r["experiment"] for r in results})
    for exp in exps:
        w = _row(results, f"{exp}/w/{MF_W}")
        add(f"{exp}: W matrix-free step ≥ 50× reference step", (w or {}).get("x_reference"),
            lambda x: x >= 50, "{:.1f}×")  # fmt: skip
        add(f"{exp}: W matrix-free step ≥ 20× chunked dense step", (w or {}).get("x_chunked"),
            lambda x: x >= 20, "{:.1f}×")  # fmt: skip
        for space in ("w+", "s"):
            r = _row(results, f"{exp}/{space}/{MF_BIG}")
            unmeasured = r is not None and r.get("step_s") is None
            add(f"{exp}: {space} matrix-free step ≤ 3× W matrix-free step",
                (r or {}).get("vs_w_mf"), lambda x: x <= 3, "{:.2f}×",
                "not measured (path − start ≤ 0)" if unmeasured else "not run")  # fmt: skip
        for r in results:  # the products-only rows (a dense start holds [d, d] Grams)
            if r["experiment"] == exp and r["kind"] == "path" and "error" not in r:
                if r["solver"] == MF_BIG:
                    add(f"{exp}: {r['space']} {r['solver']}: working memory (XLA plan) per "
                        f"start latent ≤ {PLAN_MULTIPLE}× one forward + backward pass",
                        r.get("x_pass_plan"),
                        lambda x: x <= PLAN_MULTIPLE, "{:.1f}×")  # fmt: skip
        for r in results:  # the W row with the products-only start has no exact check
            checked = r["name"] == checked_path(exp, r["space"])
            if r["experiment"] != exp or r["kind"] != "path" or "error" in r or not checked:
                continue
            add(f"{exp}: {r['space']} {r['solver']}: per-step |cos| to exact ≥ 0.98 (mean)",
                r.get("cos_mean"), lambda x: x >= 0.98, "{:.4f}")  # fmt: skip
    ok_rows = [r for r in results if "error" not in r]
    if ok_rows:
        peak = max(r["peak_rss_mb"] or 0 for r in ok_rows)
        add("peak RSS < 8 GB (every row)", peak / 1024, lambda x: x < 8, "{:.2f} GB max")
        comp = max(r["compile_s"] for r in ok_rows)
        add("compile < 120 s (every row)", comp, lambda x: x < 120, "{:.0f} s max")
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# REDs at paper scale — {report['machine']}",
        "",
        f"Scale `{report['scale']}`: {report['scale_note']}. jax {report['jax']}, devices "
        f"{report['devices']}, float32, N = {report['n']}, k = {report['k']}, local paths, "
        f"T = {report['steps']}, step {report['step_size']}. Every row in its own process; "
        "ratios from this run. Load average (1 min) per row: the machine is shared, so absolute "
        "times move with it.",
        "",
        "| row | d | step s | start s | compile s | peak RSS MB | load | × reference | "
        "× chunked | vs W mf | |cos| to exact (mean / min) | drift ratio | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | | error: {r['error']} |||||||||| |")
            continue
        cos = f"{r['cos_mean']:.4f} / {r['cos_min']:.3f}" if "cos_mean" in r else "–"
        if r["kind"] == "solve" and r.get("cos"):
            cos = f"(checks {r['source']})"
        note = ""
        if r["kind"] == "path":
            diag = r.get("diagnostics", {})
            its = diag.get("iterations")
            note = f"iterations {its}" if its is not None else ""
            if r.get("x_pass_plan") is not None:
                note += (f"; working memory {fmt(r['plan_mb'])} MB, per start latent "
                         f"{r['x_pass_plan']:.2f}× one forward + backward pass (peak RSS "
                         f"{r['x_pass_rss']:.2f}×)")  # fmt: skip
        elif r["kind"] == "solve" and r.get("exact_residual"):
            note = f"residual ≤ {max(r['exact_residual']):.1e}"
        elif r["kind"] == "reference":
            note = f"one step: {r['generator_passes']} generator passes"
        elif r["kind"] == "pass":
            note = (
                f"one forward + backward pass: {fmt(r['pass_s'])} s, working memory "
                f"{fmt(r.get('plan_mb'))} MB"
            )
        lines.append(
            f"| {r['name']} | {r['d']} | {fmt(r['step_s'])} | {fmt(r.get('start_s'))} | "
            f"{fmt(r['compile_s'], 2)} | {fmt(r['peak_rss_mb'], 4)} | "
            f"{r['load_start'][0]:.1f}–{r['load_end'][0]:.1f} | {fmt(r.get('x_reference'))} | "
            f"{fmt(r.get('x_chunked'))} | {fmt(r.get('vs_w_mf'))} | {cos} | "
            f"{fmt(r.get('drift_ratio_median'))} | {note} |"
        )
    lines += ["", "## Targets (issue 14)", "", "| target | measured | met |", "|---|---|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {x}" for x in report["notes"]]
    return "\n".join(lines) + "\n"


SCALE_NOTES = {
    "cpu": "128 px StyleGAN2 (12 ws, channels capped at 64, w_dim 512, 8-layer mapping), "
    "iresnet-50 on a 64 px face crop — the reduced configuration of the FFHQ architectures",
    "cpu-small": "64 px StyleGAN2 (10 ws, channels capped at 32, w_dim 512, 8-layer mapping), "
    "iresnet-50 on a 32 px face crop — the 128 px `cpu` configuration made 4× cheaper so that "
    "every row finishes on a 2-core CPU",
    "256": "FFHQ 256 px (stylegan2-ada paper256 channels, 14 ws), iresnet-50 at 112 px",
    "1024": "FFHQ 1024 px (StyleGAN2 config F channels, 18 ws), iresnet-50 at 112 px",
    "tiny": "16 px StyleGAN2, 8 channels (smoke test)",
}


def write(args, results, load_start) -> dict[str, Any]:
    summarise(results)
    report = {
        "command": " ".join(["python benchmarks/paper_scale.py", *args.argv]),
        "machine": args.machine or f"{platform.machine()} {jax.default_backend()}",
        "scale": args.scale,
        "scale_note": SCALE_NOTES[args.scale],
        "jax": jax.__version__,
        "devices": [str(x) for x in jax.devices()],
        "n": args.n,
        "k": 1,
        "steps": args.steps,
        "step_size": args.step_size,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": results,
        "targets": targets(results),
        "notes": args.notes,
    }
    save(report, os.path.join(args.out, args.name))
    return report


def save(report: dict[str, Any], path: str) -> None:
    """``path.json`` and its Markdown ``path.md``."""
    with open(path + ".json", "w") as fh:
        json.dump(report, fh, indent=1)
    with open(path + ".md", "w") as fh:
        fh.write(markdown(report))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", default="cpu", choices=sorted(SCALE_NOTES))
    parser.add_argument("--experiments", default="hair,frequency")
    parser.add_argument("--only", default=None, help="comma-separated row-name substrings")
    parser.add_argument("--n", type=int, default=1, help="start latents of the path rows")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-size", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per row")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument(
        "--budget", type=float, default=None, help="start no row after this many seconds"
    )
    parser.add_argument("--machine", default=None)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="paper_scale")
    parser.add_argument("--note", dest="notes", action="append", default=[])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--render", default=None, metavar="JSON",
        help="re-derive the targets of a results JSON and rewrite it and its Markdown; run nothing",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.render is not None:
        with open(args.render) as fh:
            report = json.load(fh)
        summarise(report["results"])
        report["targets"] = targets(report["results"])
        report["notes"] = report.get("notes", []) + args.notes
        save(report, args.render.removesuffix(".json"))
        return 0
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    os.makedirs(args.out, exist_ok=True)
    rows = grid(args.scale, args.experiments.split(","))
    if args.only:
        keys = args.only.split(",")
        rows = [r for r in rows if any(key in r["name"] for key in keys)]
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        saved: dict[str, str] = {}
        t_run = time.perf_counter()
        for i, row in enumerate(rows):
            if args.budget is not None and time.perf_counter() - t_run > args.budget:
                results.append({**row, "error": f"not started: --budget {args.budget:.0f} s spent"})
                continue
            spec = {**row, "scale": args.scale, "n": args.n, "k": 1, "steps": args.steps,
                    "step_size": args.step_size, "repeats": args.repeats,
                    "save": os.path.join(tmp, f"row{i}.npz")}  # fmt: skip
            if row["kind"] == "solve":
                if row["source"] not in saved:
                    results.append({**row, "error": f"needs the row {row['source']}"})
                    continue
                spec["source_npz"] = saved[row["source"]]
            t0 = time.perf_counter()
            rec = {**row, **_run_worker(spec, args.timeout, args.nice)}
            if "error" not in rec:
                saved[row["name"]] = spec["save"]
            print(f"[{time.perf_counter() - t0:6.1f} s] {row['name']}: "
                  + (f"step {fmt(rec['step_s'])} s, compile {rec['compile_s']:.1f} s, "
                     f"peak {rec['peak_rss_mb']:.0f} MB" if "error" not in rec
                     else f"error {rec['error']}"), flush=True)  # fmt: skip
            results.append(rec)
            write(args, results, load_start)
    report = write(args, results, load_start)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
