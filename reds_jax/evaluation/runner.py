"""Quality evaluation: REDs against its linear peers, measured like the paper, with ground truth.

``python -m reds_jax.evaluation.runner --suite rooms_oracle --out DIR [--n-starts 32] [--quick]`` runs a
named suite of experiments and writes, into ``DIR``: ``<suite>.json`` (all numbers), per experiment
a drift-vs-change plot ``<experiment>_drift.png`` and an image grid ``<experiment>_grid.png``, and
the Markdown table ``quality.md`` (or ``--table PATH``) built from every ``*.json`` in ``DIR``.

Protocol (per experiment): start latents ``z ~ N(0, I)`` from two disjoint seeds — a *tuning* set on
which each method's settings (step size, ridge, ``beta_fix``, conditioning) are chosen from a small
grid, and a held-out *test* set that is reported. Every method walks ``2k`` paths of ``T`` steps
per start. Distances to the start are normalised by each measure's median distance between random
pairs (:func:`reds_jax.evaluation.metrics.pair_scale`); the score of a path is its fixed-feature drift where
its varied change first reaches ``δ`` (linear interpolation; never reaching it is a failure). The
tuning criterion is the median score with failures ranked worst.

Suites (``rooms_oracle``, ``rooms_gan``, ``faces``, ``rooms_flow``) and their experiments: :mod:`reds_jax.evaluation.suites`;
figures and tables: :mod:`reds_jax.evaluation.report`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax._io import atomic_write
from reds_jax.core import baselines
from reds_jax.core.api import directions, traverse
from reds_jax.core.control import Corrector, FeatureStep, FixedStep
from reds_jax.core.problem import Problem
from reds_jax.core.solvers import Dense, MatrixFree
from reds_jax.evaluation import metrics, runner_args
from reds_jax.evaluation.report import image_grid, plot_drift, render_table
from reds_jax.evaluation.runner_args import EVAL_METHODS
from reds_jax.evaluation.suites import (
    SUITES,
    Case,
    faces_suite,
    rooms_gan_suite,
    rooms_oracle_suite,
)

Array = jax.Array

__all__ = [
    "Config",
    "Case",
    "EVAL_METHODS",
    "SUITES",
    "faces_suite",
    "main",
    "render_table",
    "rooms_gan_suite",
    "rooms_oracle_suite",
    "run_experiment",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """Run settings (the grids are searched on the tuning starts only).

    Attributes:
      n_test: held-out start latents.  n_tune: tuning start latents.  k: directions (2k paths).
      steps: steps per path ``T``.  n_pairs: random pairs for the normalising scales.
      n_samples: latents sampled for PCA / supervised labels.  seed: base seed.
      step_sizes, ridges, betas, conditions: grids for step size, REDs ridge, nullspace
        ``beta_fix``, and the number of fixed-feature principal components the supervised
        direction is conditioned on.
      methods: method names (keys of :data:`EVAL_METHODS`).
      chunk_size: Jacobian columns/rows per chunk in the REDs Grams (None: dense); bounds memory
        for large feature networks (face-api identity/landmarks).
      start_batch: start latents walked per call (None: all at once); bounds memory. The
        ``random`` method draws its directions per call (one key per batch), so its paths
        depend on it.
    """

    n_test: int = 32
    n_tune: int = 8
    k: int = 1
    steps: int = 12
    n_pairs: int = 64
    n_samples: int = 512
    seed: int = 0
    step_sizes: tuple[float, ...] = (0.25, 0.5)
    ridges: tuple[float, ...] = (1e-4, 1e-2)
    betas: tuple[float, ...] = (0.9, 0.99)
    conditions: tuple[int, ...] = (0, 2)
    methods: tuple[str, ...] = ()
    chunk_size: int | None = None
    start_batch: int | None = None


# Methods run with the reference's settings (Problem.official, Dense(mode='fd_official')): the reference code's settings, step size tuned.
PRESET_METHODS = {
    "official-local": "official",
    "official-maxc-local": "official",
    "official-minf-linear": "official",
}

# Controlled variants of reds-local: Gauss-Newton corrector iterations per step, and the
# multipliers of δ/T (the per-step change that reaches δ in T steps) tried as ``step_target``
# (above 1: a path's per-step changes do not add up to its distance from the start when it
# curves in feature space). Their tuning ranks settings whose paths arrive (:data:`ARRIVE`) first.
# They inherit reds-local's tuned ridge and step size (the step size is their cap, 8x for
# feature-space steps, whose steps are chosen below the cap and lengthen where a path must catch
# up with its schedule), so they differ from it only in
# the control; run with reds-local (it is tuned first).
CONTROLLED = {"reds-local-fs": 0, "reds-local-c": 2, "reds-local-pc": 2}
STEP_TARGETS = (2.0, 2.5)
STEP_CAP = 8.0  # feature-space steps: the cap is this multiple of reds-local's step size
ARRIVE = 0.95  # controlled variants: the lowest drift among settings where this share arrives


# ---------------------------------------------------------------------------------------------
# Running


def _grid(
    name: str, cfg: Config, scale: float, base: dict[str, Any] | None = None, unit: float = 1.0
) -> list[dict[str, Any]]:
    """Settings to try: the product of the method's grids. Controlled variants (``CONTROLLED``)
    start from ``base`` (reds-local's choice) and try ``step_target = m·unit`` for ``m`` in
    :data:`STEP_TARGETS`, ``unit`` being the raw varied change per step that reaches δ in T."""
    if name in CONTROLLED:
        base = dict(base or {"step_size": scale * cfg.step_sizes[0], "ridge": cfg.ridges[0]})
        if "step_target" not in EVAL_METHODS[name][3]:
            return [base]
        base["step_size"] = STEP_CAP * base["step_size"]
        return [{**base, "step_target": m * unit} for m in STEP_TARGETS]
    extra = {
        "ridge": cfg.ridges,
        "beta_fix": cfg.betas,
        "condition": cfg.conditions,
    }
    keys = ("step_size", *EVAL_METHODS[name][3])
    values = [tuple(scale * v for v in cfg.step_sizes), *(extra[k] for k in keys[1:])]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


class _Runner:
    """Holds one experiment's measures, scales, samples and global baseline directions."""

    def __init__(self, exp: Case, cfg: Config, log: Callable[[str], None]):
        self.exp, self.cfg, self.log = exp, cfg, log
        key = jax.random.key(cfg.seed)
        keys = [jax.random.fold_in(key, i) for i in range(6)]
        d = exp.latent_dim
        self.z_tune = jax.random.normal(keys[1], (cfg.n_tune, d))
        self.z_test = jax.random.normal(keys[2], (cfg.n_test, d))
        self.samples = jax.random.normal(keys[4], (cfg.n_samples, d))
        self.key_random = keys[5]
        gen = exp.generator
        self.vary = [(f.name, metrics.feature_measure(gen, f)) for f in exp.vary]
        self.fix = [(f.name, metrics.feature_measure(gen, f)) for f in exp.fix]
        self.truth = [(n, fn) for n, fn, _ in exp.truth]
        self.scales = {
            n: metrics.pair_scale(fn, keys[3], d, n_pairs=cfg.n_pairs)
            for n, fn in self.vary + self.fix + self.truth
        }
        self._cache: dict[Any, Array] = {}

    def _global(self, kind: str, condition: int = 0) -> Array:
        k = self.cfg.k
        if (kind, condition) in self._cache:
            return self._cache[kind, condition]
        if kind == "pca":
            dirs = baselines.pca_directions(self.samples, k, activation_fn=self.exp.pca_fn)
        elif kind == "sefa":
            dirs = baselines.sefa_directions(jnp.asarray(self.exp.sefa_weight), k)
        elif kind == "supervised-gt":
            labels, cond = jax.vmap(self.exp.truth_labels)(self.samples)
            dirs = baselines.supervised_directions(self.samples, labels, condition=cond)[:k]
        else:  # supervised, labelled by the features' principal-component scores
            values = [metrics.measure_paths(fn, self.samples) for _, fn in self.vary]
            labels = baselines.principal_scores(jnp.concatenate(values, axis=-1), k)
            cond = None
            if condition:
                cond = jnp.concatenate(
                    [
                        baselines.principal_scores(
                            metrics.measure_paths(fn, self.samples), condition
                        )
                        for _, fn in self.fix
                    ],
                    axis=-1,
                )
            dirs = baselines.supervised_directions(self.samples, labels, condition=cond)
        self._cache[kind, condition] = dirs
        return dirs

    def paths(self, name: str, settings: dict[str, Any], z0: Array) -> Array:
        """``[N, 2k, T+1, d]`` latents of one method."""
        kind, method, path, _ = EVAL_METHODS[name]
        cfg, exp = self.cfg, self.exp
        step = settings["step_size"]
        if kind != "core":
            dirs = self._global(kind, settings.get("condition", 0))
            return baselines.linear_paths(z0, dirs, steps=cfg.steps, step_size=step)
        fields = {k: settings[k] for k in ("ridge", "beta_fix") if k in settings}
        make = Problem.official if name in PRESET_METHODS else Problem
        solver = Dense(chunk_size=cfg.chunk_size or None)
        if name in PRESET_METHODS:  # fd_official's difference step is the step size (linear too)
            solver = dataclasses.replace(solver, mode="fd_official", eps=step)
        target = settings.get("step_target")
        control = FixedStep(step) if target is None else FeatureStep(target, max_size=step)
        corrector = Corrector(CONTROLLED[name]) if CONTROLLED.get(name) else None
        if exp.solver == "matrix_free":  # the suite's own solver (rooms_flow: d = 3,072)
            solver = MatrixFree(**exp.solver_options)

        def walk(z, key):
            problem = make(exp.generator, exp.vary, exp.fix, method=method, k=cfg.k, **fields)
            if path == "linear":
                dirs = directions(problem, z, solver=solver, key=key).vectors
                return baselines.linear_paths(z, dirs, steps=cfg.steps, step_size=step)
            # Distances are measured by `measure` (normalised, with truth measures): skip them here.
            return traverse(
                problem, z, solver=solver, steps=cfg.steps, step=control, corrector=corrector,
                key=key, distances=False,
            ).latents  # fmt: skip

        if not cfg.start_batch:
            return walk(z0, self.key_random)
        size = cfg.start_batch  # one key per batch, so `random` draws fresh directions in each
        return jnp.concatenate(
            [
                walk(z0[i : i + size], jax.random.fold_in(self.key_random, i))
                for i in range(0, z0.shape[0], size)
            ]
        )

    def measure_one(self, name: str, fn: Callable, latents: Array) -> np.ndarray:
        """Normalised distance to the start ``[N, 2k, T+1]`` of one measure."""
        dist = metrics.distances_to_start(metrics.measure_paths(fn, latents))
        return np.asarray(dist) / max(self.scales[name], 1e-12)

    def measure(self, latents: Array) -> dict[str, Any]:
        """Normalised distances ``[N, 2k, T+1]``: varied change, fixed drift, truth groups."""

        def norm(name, fn):
            return self.measure_one(name, fn, latents)

        change = np.mean([norm(n, fn) for n, fn in self.vary], axis=0)
        fixed = {n: norm(n, fn) for n, fn in self.fix}
        return {
            "change": change,
            "fix": fixed,
            "drift": np.mean(list(fixed.values()), axis=0),
            "truth": {n: norm(n, fn) for n, fn in self.truth},
        }

    def score(self, m: dict[str, Any]) -> metrics.Summary:
        at, ok = metrics.value_at_change(m["change"], m["drift"], self.exp.delta)
        return metrics.summarize(at, ok)


def _summary_dict(s: metrics.Summary) -> dict[str, float]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in dataclasses.asdict(s).items()
    }


def run_experiment(
    exp: Case,
    cfg: Config,
    *,
    log: Callable[[str], None] = print,
    out_dir=None,
    saved: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tune every method on the tuning starts, evaluate on the test starts.

    Args:
      exp: the case (see :mod:`reds_jax.evaluation.suites`).
      cfg: run settings.
      log: progress printer.
      out_dir: optional folder for the plot and grid PNGs (None: no figures).
      saved: this experiment's result from an earlier run; where it ran with the same settings
        (all but ``methods``), the controlled variants take its reds-local choice when reds-local
        is not in this run.

    Raises:
      ValueError: a controlled variant (``CONTROLLED``) without reds-local's choice (neither in
        ``cfg.methods`` nor in ``saved``).

    Returns:
      JSON-able dict: experiment info and per method the chosen settings, test summaries (fixed
      drift at ``δ``, area under the drift curve, truth groups at ``δ``), drift curves, timings.
    """
    runner = _Runner(exp, cfg, log)
    default = tuple(m for m in EVAL_METHODS if m not in PRESET_METHODS)  # presets: on request
    names = [m for m in (cfg.methods or default) if _available(exp, m)]
    levels = np.linspace(0.0, 2.0 * exp.delta, 21)
    result: dict[str, Any] = {
        "experiment": exp.name,
        "title": exp.title,
        "notes": exp.notes,
        "delta": exp.delta,
        "config": dataclasses.asdict(cfg),
        "vary": [f.name for f in exp.vary],
        "fix": [f.name for f in exp.fix],
        "truth": {n: want for n, _, want in exp.truth},
        "scales": runner.scales,
        "levels": levels.tolist(),
        "methods": {},
    }
    if saved is not None and _same_settings(saved, result):
        inherited = saved["methods"].get("reds-local", {}).get("settings")
    else:
        inherited = None
    orphans = [n for n in names if n in CONTROLLED] if "reds-local" not in names else []
    if orphans and inherited is None:
        raise ValueError(
            f"methods: {', '.join(orphans)} take reds-local's tuned step size and ridge; add "
            "reds-local to --methods (or re-run into an --out whose saved results have it, "
            "with the same settings)"
        )
    frames = {}
    # raw varied change per step that reaches δ in T steps (controlled variants' step_target unit)
    unit = exp.delta * math.sqrt(sum(runner.scales[f.name] ** 2 for f in exp.vary)) / cfg.steps
    for name in names:
        t0 = time.perf_counter()
        base = result["methods"].get("reds-local", {}).get("settings", inherited)
        grid = _grid(name, cfg, exp.step_scale, base, unit)
        tried = []
        for settings in grid if len(grid) > 1 else []:
            s = runner.score(runner.measure(runner.paths(name, settings, runner.z_tune)))
            tried.append((s.median_all, -s.success, settings))
        rank = lambda x: (x[0], x[1])  # noqa: E731
        if name in CONTROLLED:  # feature-space steps are for arriving: success first
            rank = lambda x: (-x[1] < ARRIVE, x[0], x[1])  # noqa: E731
        best = min(tried, key=rank)[2] if tried else grid[0]
        t1 = time.perf_counter()
        latents = runner.paths(name, best, runner.z_test)
        m = runner.measure(latents)
        at, ok = metrics.value_at_change(m["change"], m["drift"], exp.delta)
        auc = metrics.area_under_drift(m["change"], m["drift"], exp.delta)
        curve = np.asarray(metrics.drift_curve(m["change"], m["drift"], levels))
        reach = np.mean(np.isfinite(curve), axis=(0, 1))
        med = np.full(len(levels), np.nan)
        for j in np.flatnonzero(reach > 0):
            med[j] = np.median(curve[..., j][np.isfinite(curve[..., j])])
        result["methods"][name] = {
            "path": EVAL_METHODS[name][2],
            "settings": best,
            "tuning": [{"settings": st, "median_all": ma, "success": -su} for ma, su, st in tried],
            "drift": _summary_dict(metrics.summarize(at, ok)),
            "fix": {
                n: _summary_dict(
                    metrics.summarize(metrics.value_at_change(m["change"], v, exp.delta)[0])
                )
                for n, v in m["fix"].items()
            },
            "auc": _summary_dict(metrics.summarize(auc)),
            "truth": {
                n: _summary_dict(
                    metrics.summarize(metrics.value_at_change(m["change"], v, exp.delta)[0])
                )
                for n, v in m["truth"].items()
            },
            "max_change": float(np.median(np.max(m["change"], axis=-1))),
            "curve": [None if not math.isfinite(v) else float(v) for v in med],
            "reach": reach.tolist(),
            "seconds_tune": t1 - t0,
            "seconds_test": time.perf_counter() - t1,
        }
        frames[name] = _frames(m["change"], latents, levels[::5])
        r = result["methods"][name]
        log(
            f"  {exp.name} {name:16s} {best} drift@δ {r['drift']['median']} "
            f"success {r['drift']['success']:.2f} ({t1 - t0:.0f}s tune, "
            f"{r['seconds_test']:.0f}s test)"
        )
    if out_dir is not None:
        plot_drift(result, pathlib.Path(out_dir))
        image_grid(exp, frames, levels[::5], pathlib.Path(out_dir))
    return result


GRID_STARTS = 4  # the image grid shows one path from the first GRID_STARTS test starts


def _frames(change: np.ndarray, latents: Array, levels: np.ndarray) -> np.ndarray:
    """``[G, 2k, L, d]`` latents of the first ``G`` test starts' paths at each change level."""
    g = GRID_STARTS
    return np.stack(
        [np.asarray(metrics.point_at_change(change[:g], latents[:g], lv)[0]) for lv in levels],
        axis=2,
    )


def redraw_grid(exp: Case, result: dict[str, Any], out_dir, *, log=print) -> None:
    """Redraw an experiment's image grid from its saved result (chosen settings, same seeds).

    Re-walks only the first :data:`GRID_STARTS` test starts (all of them for ``random``, whose
    per-start keys are split from one key per batch, so that they match the run).
    """
    c = result["config"]
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
    runner = _Runner(exp, cfg, log)
    levels = np.asarray(result["levels"])[::5]
    frames = {}
    for name, r in result["methods"].items():
        z0 = runner.z_test if name == "random" else runner.z_test[:GRID_STARTS]
        latents = runner.paths(name, r["settings"], z0)[:GRID_STARTS]
        change = np.mean([runner.measure_one(n, fn, latents) for n, fn in runner.vary], axis=0)
        frames[name] = _frames(change, latents, levels)
    image_grid(exp, frames, levels, pathlib.Path(out_dir))


def _available(exp: Case, name: str) -> bool:
    kind, method, _, _ = EVAL_METHODS[name]
    if kind == "sefa":
        return exp.sefa_weight is not None
    if kind == "supervised-gt":
        return exp.truth_labels is not None
    return not (method in ("nullspace", "minf") and not exp.fix)


def _same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two results of one experiment can share methods: the same run settings but
    ``methods`` (through JSON: tuples equal lists), and the same measures' scales to 1e-4 (they
    are float32 means, whose last digits move between runs with the reduction order)."""

    def key(r):
        return json.dumps({**r["config"], "methods": None}, default=float)

    sa, sb = a["scales"], b["scales"]
    return (
        key(a) == key(b)
        and sa.keys() == sb.keys()
        and all(np.isclose(sa[n], sb[n], rtol=1e-4, atol=0) for n in sa)
    )


def _merge_methods(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """One experiment's new result; where the old one ran with the same settings (all but
    ``methods``: same starts, seed, scales), its other methods are kept too, old ones first."""
    if old is None or not _same_settings(old, new):
        return new
    methods = {**old["methods"], **new["methods"]}
    return {**new, "config": {**new["config"], "methods": list(methods)}, "methods": methods}


def _merge(old: dict[str, Any], new: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """A suite's saved results updated by a run of some of its experiments (suite order kept)."""
    by_name = {r["experiment"]: r for r in old["experiments"]}
    by_name.update({r["experiment"]: _merge_methods(by_name.get(r["experiment"]), r)
                    for r in new["experiments"]})  # fmt: skip
    rank = {n: i for i, n in enumerate(order)}
    runs = [r for r in old.get("runs", [old]) if "command" in r] + [new]
    return {
        "suite": new["suite"],
        "command": "; ".join(r["command"] for r in runs),
        "seconds": sum(r.get("seconds", 0.0) for r in runs),
        "runs": [{"command": r["command"], "seconds": r.get("seconds", 0.0)} for r in runs],
        "experiments": sorted(by_name.values(), key=lambda r: rank.get(r["experiment"], len(rank))),
    }


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point (see the module docstring); ``prog`` names it in ``--help``."""
    a = runner_args.parser(prog).parse_args(argv)
    methods = tuple(m for m in (a.methods or "").split(",") if m)
    unknown = set(methods) - set(EVAL_METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {list(EVAL_METHODS)}")
    cfg = Config(
        n_test=a.n_starts,
        n_tune=a.n_tune,
        k=a.k,
        steps=a.steps,
        seed=a.seed,
        methods=methods,
        chunk_size=a.chunk_size,
        start_batch=a.start_batch,
    )
    grids = {
        "step_sizes": (a.step_sizes, float),
        "ridges": (a.ridges, float),
        "conditions": (a.conditions, int),
    }
    cfg = dataclasses.replace(
        cfg,
        **{k: tuple(t(x) for x in v.split(",")) for k, (v, t) in grids.items() if v},
    )
    if a.quick:
        cfg = dataclasses.replace(
            cfg,
            n_test=min(cfg.n_test, 8),
            n_tune=2,
            steps=min(cfg.steps, 8),
            step_sizes=cfg.step_sizes[-1:],
            ridges=cfg.ridges[-1:],
            betas=cfg.betas[-1:],
            conditions=cfg.conditions[:1],
        )
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    args = " ".join(sys.argv[1:] if argv is None else argv)
    wanted = set((a.experiments or "").split(",")) - {""}
    for suite in a.suite:
        exps = SUITES[suite](size=a.size) if suite == "rooms_oracle" else SUITES[suite]()
        if a.redraw:
            by_name = {e.name: e for e in exps}
            for res in json.loads((out / f"{suite}.json").read_text())["experiments"]:
                if wanted and res["experiment"] not in wanted:
                    continue
                print(f"[{suite}] redrawing {res['experiment']}", flush=True)
                redraw_grid(by_name[res["experiment"]], res, out)
            continue
        results = []
        t0 = time.perf_counter()
        path = out / f"{suite}.json"
        saved = json.loads(path.read_text())["experiments"] if path.exists() else []
        for exp in exps:
            if wanted and exp.name not in wanted:
                continue
            print(f"[{suite}] {exp.name}: {exp.title}", flush=True)
            old = next((r for r in saved if r["experiment"] == exp.name), None)
            log = lambda s: print(s, flush=True)  # noqa: E731
            try:
                results.append(run_experiment(exp, cfg, out_dir=out, log=log, saved=old))
            except ValueError as err:
                raise SystemExit(str(err)) from None
        payload = {
            "suite": suite,
            "command": "python -m reds_jax.evaluation.runner " + args,
            "seconds": time.perf_counter() - t0,
            "experiments": results,
        }
        if wanted and path.exists():  # a partial run: keep the suite's other experiments
            payload = _merge(json.loads(path.read_text()), payload, [e.name for e in exps])
            by_name = {e.name: e for e in exps}
            for res in payload["experiments"]:  # figures of experiments that kept old methods
                ran = next((r for r in results if r["experiment"] == res["experiment"]), None)
                if ran is not None and set(res["methods"]) != set(ran["methods"]):
                    plot_drift(res, out)
                    redraw_grid(by_name[res["experiment"]], res, out)
        atomic_write(path, json.dumps(payload, indent=1, default=float).encode())
    table = pathlib.Path(a.table) if a.table else out / "quality.md"
    everything, commands = [], []
    order = {name: i for i, name in enumerate(SUITES)}
    for path in sorted(out.glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        payload = json.loads(path.read_text())
        everything += payload["experiments"]
        commands.append(f"`{payload.get('command', '?')}` ({payload.get('seconds', 0):.0f} s)")
    prefix = os.path.relpath(out, table.parent) + "/"
    prefix = "" if prefix == "./" else prefix
    head = [
        "# Quality: REDs against its linear peers",
        "",
        f"Tables generated by {'; '.join(commands)} (re-run to refresh; the findings come "
        f"from `{prefix}findings.md`). Distances are normalised by each measure's "
        "median distance between two random samples (1 = as different as two random images); "
        "*fixed drift @δ* is the fixed feature's drift where the varied change first reaches δ "
        "(linear interpolation; paths that never reach δ are failures and excluded from the "
        "quantiles); AUC₀^δ is the mean drift over varied change in [0, δ]; ground-truth factor "
        "groups are reported at the same point (↓ should stay, ↑ may change). Best median (with "
        "failures ranked worst) in bold.",
        "",
    ]
    findings = out / "findings.md"
    if findings.exists():
        head += [findings.read_text().strip(), ""]
    text = "\n".join(head) + "\n## Tables\n\n" + render_table(everything, image_prefix=prefix)
    atomic_write(table, text.encode())
    print(f"wrote {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
