"""Training and held-out evaluation of the living-room feature networks.

* ``regressor``: :class:`reds_jax.features.rooms_nets.RoomRegressor`, MSE on unit-cube factors.
* ``judge``: :class:`reds_jax.evaluation.judge.RoomsJudgeNet` (other architecture), same loss, other seed.
* ``segmenter``: :class:`reds_jax.features.rooms_nets.SofaSegmenter`, per-pixel cross-entropy
  against the renderer's soft sofa mask.

Each step draws fresh renders from :func:`reds_jax.generators.sample_dataset` keyed by
``fold_in(key(seed), step)``; evaluation uses a disjoint key (``seed + 10_000``).
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from reds_jax._io import atomic_write
from reds_jax.evaluation.judge import RoomsJudgeNet
from reds_jax.features.rooms_nets import RoomRegressor, SofaSegmenter
from reds_jax.generators.rooms import FACTOR_NAMES, factors_to_unit, render_masks, sample_dataset
from reds_jax.train.common import run_loop

__all__ = ["evaluate_net", "make_net", "net_config", "r2_scores", "sofa_iou", "train_net"]

KINDS = ("regressor", "judge", "segmenter")


def net_config(kind: str, size: int = 64, tiny: bool = False, **overrides) -> dict[str, Any]:
    """Default settings for one feature network."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}.")
    cfg = dict(kind=kind, size=size, batch=64, lr=2e-3, warmup=100, noise=0.02, tiny=tiny)
    cfg.update(overrides)
    return cfg


def make_net(cfg: dict[str, Any]):
    """The Flax module for ``cfg["kind"]`` (narrow versions when ``cfg["tiny"]``)."""
    tiny = cfg["tiny"]
    if cfg["kind"] == "regressor":
        return RoomRegressor(channels=(8, 8, 8, 8), hidden=16) if tiny else RoomRegressor()
    if cfg["kind"] == "judge":
        return RoomsJudgeNet(channels=(8, 8, 8, 8), hidden=16) if tiny else RoomsJudgeNet()
    return SofaSegmenter(channels=(8, 8, 8, 8)) if tiny else SofaSegmenter()


def _batch(key, n: int, size: int, noise: float, with_masks: bool):
    images, factors = sample_dataset(key, n, size=size, noise=noise)
    images = images.astype(jnp.float32)
    target = factors_to_unit(factors).astype(jnp.float32)
    if with_masks:
        masks = jax.vmap(functools.partial(render_masks, size=size))(factors)["sofa"]
        target = masks.astype(jnp.float32)
    return images, target


def _loss(module, params, images, target, seg: bool):
    out = module.apply(params, images)
    if seg:
        return jnp.mean(optax.sigmoid_binary_cross_entropy(out, target))
    return jnp.mean(jnp.square(out - target))


def _schedule(cfg, steps):
    return optax.warmup_cosine_decay_schedule(
        0.0,
        cfg["lr"],
        min(cfg["warmup"], max(steps // 2, 1)),
        max(steps, 2),
        end_value=cfg["lr"] * 0.02,
    )


def init_net_state(cfg: dict[str, Any], seed: int, steps: int) -> dict[str, Any]:
    """Initial state: float32 params, Adam state, step 0."""
    module = make_net(cfg)
    x = jnp.zeros((1, cfg["size"], cfg["size"], 3), jnp.float32)
    params = module.init(jax.random.PRNGKey(seed), x)
    opt = optax.adam(_schedule(cfg, steps))
    return {
        "params": params,
        "opt": opt.init(params),
        "step": np.int64(0),
        "wall_s": np.float64(0.0),
    }


def make_net_step(cfg: dict[str, Any], seed: int, steps: int):
    """Jitted ``(state, step) -> (state, metrics)``."""
    module = make_net(cfg)
    opt = optax.adam(_schedule(cfg, steps))
    seg = cfg["kind"] == "segmenter"
    base = jax.random.PRNGKey(seed + 1)

    @jax.jit
    def step_arrays(params, opt_state, step):
        images, target = _batch(
            jax.random.fold_in(base, step), cfg["batch"], cfg["size"], cfg["noise"], seg
        )
        loss, grads = jax.value_and_grad(functools.partial(_loss, module, seg=seg))(
            params, images, target
        )
        upd, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, upd), opt_state, {"loss": loss}

    def step_fn(state, step):
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32
            params, opt_state, metrics = step_arrays(
                state["params"], state["opt"], jnp.asarray(step, jnp.int32)
            )
        return dict(state, params=params, opt=opt_state), metrics

    return step_fn


def r2_scores(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column: ``1 - SSE / SST``; ``[N, F] x2 -> [F]``."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    sse = np.sum((pred - target) ** 2, axis=0)
    sst = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
    return 1.0 - sse / sst


def sofa_iou(prob: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of thresholded predicted and true masks, pooled over all images."""
    p, m = np.asarray(prob) > threshold, np.asarray(mask) > threshold
    return float(np.sum(p & m) / max(np.sum(p | m), 1))


def evaluate_net(
    cfg: dict[str, Any], params: Any, n: int = 1024, seed: int = 10_000, chunk: int = 128
) -> dict[str, Any]:
    """Held-out accuracy: R² per factor (regressor, judge) or IoU and mean abs error (segmenter)."""
    module = make_net(cfg)
    seg = cfg["kind"] == "segmenter"
    apply = jax.jit(module.apply)
    preds, targets = [], []
    for i in range(0, n, chunk):
        images, target = _batch(
            jax.random.fold_in(jax.random.PRNGKey(seed), i),
            min(chunk, n - i),
            cfg["size"],
            cfg["noise"],
            seg,
        )
        out = apply(params, images)
        preds.append(np.asarray(jax.nn.sigmoid(out) if seg else out))
        targets.append(np.asarray(target))
    pred, target = np.concatenate(preds), np.concatenate(targets)
    if seg:
        return {"n": n, "iou": sofa_iou(pred, target), "mae": float(np.mean(np.abs(pred - target)))}
    r2 = r2_scores(pred, target)
    return {"n": n, "r2": {name: float(r) for name, r in zip(FACTOR_NAMES, r2, strict=True)}}


def train_net(
    kind: str, out: str | pathlib.Path, steps: int, seed: int = 0, **overrides
) -> dict[str, Any]:
    """Trains (or resumes) one feature network; writes ``weights.msgpack`` and ``eval.json``.

    Args:
        kind: ``"regressor"``, ``"judge"`` or ``"segmenter"``.
        out: run directory.
        steps: total number of steps.
        seed: seed for initialisation and data.
        **overrides: entries of :func:`net_config`, plus ``ckpt_every``.

    Returns:
        The final training state.
    """
    out = pathlib.Path(out)
    ckpt_every = overrides.pop("ckpt_every", 200)
    cfg = net_config(kind, **overrides)
    state = run_loop(
        out=out,
        state=init_net_state(cfg, seed, steps),
        step_fn=make_net_step(cfg, seed, steps),
        steps=steps,
        config=dict(cfg, seed=seed, steps=steps),
        ckpt_every=ckpt_every,
        desc=kind,
    )
    atomic_write(out / "weights.msgpack", serialization.to_bytes(jax.device_get(state["params"])))
    result = evaluate_net(cfg, state["params"], n=16 if cfg["tiny"] else 1024)
    atomic_write(out / "eval.json", json.dumps(result, indent=1).encode())
    print(json.dumps(result))
    return state
