"""Benchmark reports: Markdown tables, the issue's targets, and the JSON/Markdown files written after
every configuration (:mod:`bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import jax

__all__ = ["fmt", "markdown", "write_report"]


def fmt(x: Any, nd: int = 3) -> str:
    """A table cell: ``–`` for None, floats to ``nd`` significant digits."""
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
            f"{fmt(r['trajectories_per_s'])} | {fmt(r['step_latency_ms'])} | "
            f"{fmt(r['compile_s'], 2)} | {fmt(r['peak_rss_mb'], 4)} | "
            f"{fmt(r.get('xla_temp_mb'), 3)} | "
            f"{fmt(r.get('x_reference'))} | {fmt(r.get('x_dense'))} | {cos} | {drift} |"
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


def write_report(
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
