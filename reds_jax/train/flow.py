"""Rectified-flow training of the living-room velocity U-Net (Adam, EMA of the parameters).

Each step draws a fresh batch of renders from :func:`reds_jax.generators.sample_dataset` at the
model's size with ``fold_in(key(seed + 1), step)`` (reproducible, no dataset on disk), maps them to
``x_1`` in [-1, 1], draws noise ``z`` and times ``t ~ U(0, 1)``, and minimises the mean of
``|v(t x_1 + (1 - t) z, t) - (x_1 - z)|²``. The shipped weights are the EMA of the parameters.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from reds_jax._io import atomic_write
from reds_jax.generators.flow import flow
from reds_jax.generators.rooms import sample_dataset
from reds_jax.generators.rooms_flow import RoomsVelocityUNet, to_image, unet_velocity
from reds_jax.imageio import save_png
from reds_jax.train.common import run_loop

__all__ = ["flow_config", "init_flow_state", "make_flow_step", "train_flow"]


def flow_config(size: int = 32, tiny: bool = False, **overrides) -> dict[str, Any]:
    """Default flow-matching settings (``tiny`` for tests: narrow net on 16x16 images)."""
    cfg = dict(
        size=size,
        batch=32,
        lr=6e-4,
        warmup=200,
        clip=1.0,
        ema_decay=0.999,
        noise=0.0,
        channels=[16, 32, 64],
        temb_dim=128,
        groups=8,
        sample_steps=8,
    )
    if tiny:
        cfg.update(batch=2, channels=[8, 8], temb_dim=16, groups=4, sample_steps=2)
    cfg.update(overrides)
    return cfg


def _module(cfg) -> RoomsVelocityUNet:
    return RoomsVelocityUNet(
        channels=tuple(cfg["channels"]), temb_dim=cfg["temb_dim"], groups=cfg["groups"]
    )


def _optimizer(cfg):
    lr = optax.linear_schedule(0.0, cfg["lr"], cfg["warmup"])
    return optax.chain(optax.clip_by_global_norm(cfg["clip"]), optax.adam(lr))


def init_flow_state(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Initial training state: float32 params, their EMA, the Adam state, step 0."""
    module = _module(cfg)
    s = cfg["size"]
    params = module.init(
        jax.random.PRNGKey(seed), jnp.zeros((1, s, s, 3), jnp.float32), jnp.zeros((1,), jnp.float32)
    )
    return {
        "params": params,
        "ema": jax.tree.map(jnp.array, params),
        "opt": _optimizer(cfg).init(params),
        "step": np.int64(0),
        "wall_s": np.float64(0.0),
    }


def make_flow_step(cfg: dict[str, Any], seed: int):
    """Returns a ``(state, step) -> (state, metrics)`` for one rectified-flow update (jitted)."""
    module = _module(cfg)
    opt = _optimizer(cfg)
    b, size = cfg["batch"], cfg["size"]
    base = jax.random.PRNGKey(seed + 1)

    def loss_fn(params, x1, z, t):
        tb = t[:, None, None, None]
        xt = tb * x1 + (1.0 - tb) * z
        v = module.apply(params, xt, t)
        return jnp.mean(jnp.square(v - (x1 - z)))

    @jax.jit
    def step_arrays(arrays, step):
        k_data, k_z, k_t = jax.random.split(jax.random.fold_in(base, step), 3)
        images, _ = sample_dataset(k_data, b, size=size, noise=cfg["noise"])
        x1 = 2.0 * images.astype(jnp.float32) - 1.0
        z = jax.random.normal(k_z, x1.shape, jnp.float32)
        t = jax.random.uniform(k_t, (b,), jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(arrays["params"], x1, z, t)
        upd, opt_state = opt.update(grads, arrays["opt"], arrays["params"])
        params = optax.apply_updates(arrays["params"], upd)
        tf = step.astype(jnp.float32)
        decay = jnp.minimum(jnp.float32(cfg["ema_decay"]), (1.0 + tf) / (10.0 + tf))
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, arrays["ema"], params)
        return {"params": params, "ema": ema, "opt": opt_state}, {"loss": loss}

    keys = ("params", "ema", "opt")

    def step_fn(state, step):
        with jax.numpy_dtype_promotion("standard"):
            arrays, metrics = step_arrays({k: state[k] for k in keys}, jnp.asarray(step, jnp.int32))
        return dict(state, **arrays), metrics

    return step_fn


def sample_grid(
    module: RoomsVelocityUNet,
    params: Any,
    size: int,
    path: pathlib.Path,
    *,
    steps: int = 8,
    method: str = "heun",
    n: int = 8,
    seed: int = 1234,
) -> np.ndarray:
    """Writes an ``n x n`` grid of samples (noise ``normal(PRNGKey(seed))``) to ``path``."""
    gen = flow(
        functools.partial(unet_velocity, module),
        params,
        (size, size, 3),
        steps=steps,
        method=method,
        postprocess=functools.partial(to_image, size_out=size),
    )
    z = jax.random.normal(jax.random.PRNGKey(seed), (n * n, size * size * 3), jnp.float32)
    imgs = np.clip(np.asarray(jax.jit(jax.vmap(gen))(z)), 0.0, 1.0)
    grid = imgs.reshape(n, n, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(n * size, n * size, 3)
    save_png(grid, path)
    return imgs


def train_flow(out: str | pathlib.Path, steps: int, seed: int = 0, **overrides) -> dict[str, Any]:
    """Trains (or resumes) the living-room flow model; writes checkpoints, logs, grids, EMA weights.

    Args:
        out: run directory.
        steps: total number of updates.
        seed: seed for initialisation, data, noise and times.
        **overrides: entries of :func:`flow_config` (e.g. ``size=16, tiny=True``).

    Returns:
        The final training state.
    """
    out = pathlib.Path(out)
    tiny = overrides.pop("tiny", False)
    ckpt_every = overrides.pop("ckpt_every", 200)
    overrides.setdefault("size", 32)
    cfg = flow_config(tiny=tiny, **overrides)
    module = _module(cfg)

    def on_ckpt(state, step):
        atomic_write(out / "ema.msgpack", serialization.to_bytes(jax.device_get(state["ema"])))
        try:
            sample_grid(
                module,
                state["ema"],
                cfg["size"],
                out / f"samples_{step:06d}.png",
                steps=cfg["sample_steps"],
            )
        except ImportError:
            pass

    return run_loop(
        out=out,
        state=init_flow_state(cfg, seed),
        step_fn=make_flow_step(cfg, seed),
        steps=steps,
        config=dict(cfg, seed=seed, steps=steps, kind="flow"),
        ckpt_every=ckpt_every,
        desc="flow",
        on_checkpoint=on_ckpt,
    )
