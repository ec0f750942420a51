"""Figures and Markdown tables of quality results (:func:`reds_jax.evaluation.runner.run_experiment`)."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.evaluation.suites import Case

__all__ = ["plot_drift", "image_grid", "render_table"]


def plot_drift(result: dict[str, Any], out: pathlib.Path) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.2, 3.6), dpi=90)
    ax = fig.subplots()
    levels = np.asarray(result["levels"])
    colours = matplotlib.colormaps["tab20"].colors
    for i, (name, r) in enumerate(result["methods"].items()):
        y = [
            np.nan if v is None or f < 0.5 else v
            for v, f in zip(r["curve"], r["reach"], strict=True)
        ]
        style = "-" if r["path"] == "local" else "--"
        ax.plot(levels, y, style, color=colours[2 * (i % 10) + i // 10], label=name, linewidth=1.4)
    ax.axvline(result["delta"], color="0.6", linewidth=0.8)
    ax.set_xlabel("varied change (1 = two random samples)")
    ax.set_ylabel("fixed drift, median over paths")
    ax.set_title(result["experiment"], fontsize=10)
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=6, ncol=2)
    fig.savefig(out / f"{result['experiment']}_drift.png", bbox_inches="tight")


def image_grid(exp: Case, frames: dict[str, np.ndarray], levels, out: pathlib.Path) -> None:
    """Rows = methods, columns = varied-change levels, for the path most methods carry to δ."""
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    render = jax.jit(lambda z: exp.display(exp.generator(z)))
    ok = np.stack([np.all(np.isfinite(f), axis=-1) for f in frames.values()])  # [M, G, 2k, L]
    # Most methods reaching δ (the middle column) first, then most frames reached overall.
    score = ok[..., ok.shape[-1] // 2].sum(axis=0) * (ok[0].size + 1) + ok.sum(axis=(0, -1))
    start, path = np.unravel_index(int(np.argmax(score)), score.shape)
    frames = {name: f[start, path] for name, f in frames.items()}
    rows, cols = len(frames), len(levels)
    fig = Figure(figsize=(1.2 + 0.8 * cols, 0.8 * rows + 0.3), dpi=80)
    axes = np.reshape(fig.subplots(rows, cols, squeeze=False), (rows, cols))
    for i, (name, zs) in enumerate(frames.items()):
        for j, z in enumerate(zs):
            ax = axes[i, j]
            if np.all(np.isfinite(z)):
                ax.imshow(np.clip(np.asarray(render(jnp.asarray(z))), 0.0, 1.0))
            else:
                ax.imshow(np.full((8, 8, 3), 0.85))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
            if i == 0:
                ax.set_title(f"{levels[j]:.2g}", fontsize=7)
    sign = "+-"[path % 2]
    fig.suptitle(
        f"{exp.name}: path {sign}v{path // 2 + 1} of test start {start}, at matched varied change",
        fontsize=8,
    )
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    fig.savefig(out / f"{exp.name}_grid.png", bbox_inches="tight")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _settings(s: dict[str, Any]) -> str:
    short = {"step_size": "ε", "ridge": "λ", "beta_fix": "β", "condition": "q"}
    return ", ".join(f"{short.get(k, k)}={v:g}" for k, v in s.items())


def render_table(results: Sequence[dict[str, Any]], *, image_prefix: str = "") -> str:
    """Markdown report for experiment results (as returned by :func:`run_experiment`).

    Args:
      results: experiment result dicts.
      image_prefix: path prefix for the PNG links (relative to the Markdown file).

    Returns:
      Markdown text.
    """
    lines = []
    for res in results:
        cfg = res["config"]
        lines += [
            f"### {res['experiment']}: {res['title']}",
            "",
            f"Varied: {', '.join(res['vary'])}; fixed: {', '.join(res['fix'])}. δ = {res['delta']:g}; "
            f"{cfg['n_test']} held-out starts × {2 * cfg['k']} paths × {cfg['steps']} steps "
            f"(settings tuned on {cfg['n_tune']} other starts, seed {cfg['seed']}).",
        ]
        if res["notes"]:
            lines += ["", res["notes"]]
        truth = list(res["truth"].items())
        head = "| method | settings | success | fixed drift @δ median [IQR] | AUC₀^δ |"
        head += "".join(f" {n} {'↓' if w == 'fix' else '↑'} @δ |" for n, w in truth)
        lines += ["", head, "|" + "---|" * (5 + len(truth))]
        methods = res["methods"]
        best = min((r["drift"]["median_all"] or math.inf) for r in methods.values())
        for name, r in methods.items():
            d = r["drift"]
            cell = f"{_fmt(d['median'])} [{_fmt(d['q25'])}, {_fmt(d['q75'])}]"
            if d["median_all"] is not None and d["median_all"] == best:
                cell = f"**{cell}**"
            row = f"| {name} | {_settings(r['settings'])} | {d['success']:.0%} | {cell} | {_fmt(r['auc']['median'])} |"
            row += "".join(f" {_fmt(r['truth'][n]['median'])} |" for n, _ in truth)
            lines.append(row)
        name = res["experiment"]
        lines += [
            "",
            f"![{name} drift]({image_prefix}{name}_drift.png) ![{name} grid]({image_prefix}{name}_grid.png)",
            "",
        ]
    return "\n".join(lines)
