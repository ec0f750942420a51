"""GAN training on procedural living rooms: non-saturating loss + R1 penalty, Adam, EMA generator.

Each step draws a fresh batch of renders from :func:`reds_jax.generators.sample_dataset` with
``fold_in(key(seed), step)`` (reproducible, no dataset on disk), updates the discriminator, then
the generator, then the generator's exponential moving average (the weights that are shipped).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from reds_jax._io import atomic_write
from reds_jax.generators.rooms import sample_dataset
from reds_jax.generators.rooms_gan import RoomsGANGenerator
from reds_jax.imageio import save_png
from reds_jax.train.common import run_loop

__all__ = ["RoomsDiscriminator", "gan_config", "init_gan_state", "make_gan_step", "train_gan"]


class RoomsDiscriminator(nn.Module):
    """Strided conv net with a minibatch-stddev channel; ``images [N, S, S, 3] -> logits [N]``.

    Attributes:
        channels: channels at resolutions ``S, S/2, ..., 4`` (one entry per resolution).
    """

    channels: tuple[int, ...] = (32, 64, 128, 192, 256)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = functools.partial(jax.nn.leaky_relu, negative_slope=0.2)
        x = act(nn.Conv(self.channels[0], (3, 3), name="from_rgb")(2.0 * x - 1.0))
        for i, c in enumerate(self.channels[1:]):
            x = act(nn.Conv(c, (3, 3), strides=(2, 2), name=f"down_{i}")(x))
        if x.shape[1] != 4:
            raise ValueError(f"discriminator channels must reach 4x4; ended at {x.shape[1:3]}.")
        std = jnp.sqrt(jnp.var(x, axis=0) + 1e-8)  # [4, 4, C] minibatch stddev
        feat = jnp.broadcast_to(jnp.mean(std), x.shape[:-1] + (1,))
        x = jnp.concatenate([x, feat.astype(x.dtype)], axis=-1)
        x = act(nn.Conv(self.channels[-1], (3, 3), name="conv_4")(x))
        x = act(nn.Dense(self.channels[-1], name="fc")(x.reshape(x.shape[0], -1)))
        return nn.Dense(1, name="out")(x)[:, 0]


def gan_config(size: int = 64, tiny: bool = False, **overrides) -> dict[str, Any]:
    """Default GAN settings (``tiny`` for tests: narrow nets on 16x16 images)."""
    cfg = dict(
        size=size,
        latent_dim=64,
        batch=32,
        lr_g=5e-4,
        lr_d=5e-4,
        beta1=0.0,
        beta2=0.99,
        r1_gamma=0.5,
        ema_decay=0.999,
        noise=0.02,
        g_channels=[128, 96, 48, 24, 12],
        d_channels=[16, 32, 64, 128, 128],
        r1_batch=8,
        w_dim=256,
        double_conv_max_res=8,
    )
    if tiny:
        cfg.update(batch=2, g_channels=[8, 8, 8], d_channels=[8, 8, 8], w_dim=16, r1_batch=2)
    cfg.update(overrides)
    n_res = int(np.log2(cfg["size"])) - 1  # resolutions S, S/2, ..., 4
    cfg["g_channels"] = list(cfg["g_channels"])[:n_res]
    cfg["d_channels"] = list(cfg["d_channels"])[-n_res:]
    return cfg


def _modules(cfg):
    g = RoomsGANGenerator(
        latent_dim=cfg["latent_dim"],
        size=cfg["size"],
        w_dim=cfg["w_dim"],
        channels=tuple(cfg["g_channels"]),
        double_conv_max_res=cfg["double_conv_max_res"],
    )
    d = RoomsDiscriminator(channels=tuple(cfg["d_channels"]))
    return g, d


def _optimizers(cfg):
    opt_g = optax.adam(cfg["lr_g"], b1=cfg["beta1"], b2=cfg["beta2"])
    opt_d = optax.adam(cfg["lr_d"], b1=cfg["beta1"], b2=cfg["beta2"])
    return opt_g, opt_d


def init_gan_state(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Initial training state: float32 params of G, D and EMA-G, Adam states, step 0."""
    g, d = _modules(cfg)
    kg, kd = jax.random.split(jax.random.PRNGKey(seed))
    z = jnp.zeros((1, cfg["latent_dim"]), jnp.float32)
    x = jnp.zeros((1, cfg["size"], cfg["size"], 3), jnp.float32)
    gp = g.init(kg, z)
    dp = d.init(kd, x)
    opt_g, opt_d = _optimizers(cfg)
    return {
        "g": gp,
        "d": dp,
        "g_ema": jax.tree.map(jnp.array, gp),
        "g_opt": opt_g.init(gp),
        "d_opt": opt_d.init(dp),
        "step": np.int64(0),
        "wall_s": np.float64(0.0),
    }


def make_gan_step(cfg: dict[str, Any], seed: int):
    """Returns a jitted ``(state, step) -> (state, metrics)`` for one D + G update."""
    g, d = _modules(cfg)
    opt_g, opt_d = _optimizers(cfg)
    b, size, gamma = cfg["batch"], cfg["size"], cfg["r1_gamma"]
    base = jax.random.PRNGKey(seed + 1)

    def d_loss_fn(dp, real, fake):
        def d_sum(x):
            return jnp.sum(d.apply(dp, x))

        real_logits = d.apply(dp, real)
        fake_logits = d.apply(dp, fake)
        loss = jnp.mean(jax.nn.softplus(fake_logits)) + jnp.mean(jax.nn.softplus(-real_logits))
        grad = jax.grad(d_sum)(real[: cfg["r1_batch"]])
        r1 = jnp.mean(jnp.sum(jnp.square(grad), axis=(1, 2, 3)))
        return loss + 0.5 * gamma * r1, (loss, r1, jnp.mean(real_logits), jnp.mean(fake_logits))

    def g_loss_fn(fake, dp):
        return jnp.mean(jax.nn.softplus(-d.apply(dp, fake)))

    @jax.jit
    def step_arrays(arrays, step):
        key = jax.random.fold_in(base, step)
        k_data, k_z = jax.random.split(key)
        real, _ = sample_dataset(k_data, b, size=size, noise=cfg["noise"])
        real = real.astype(jnp.float32)
        z = jax.random.normal(k_z, (b, cfg["latent_dim"]), jnp.float32)
        # One generator forward pass serves both updates: D sees the fakes, then G's gradient is
        # pulled back through the same forward pass from the updated D.
        fake, g_vjp = jax.vjp(lambda gp: g.apply(gp, z), arrays["g"])
        (_, (d_loss, r1, rl, fl)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            arrays["d"], real, jax.lax.stop_gradient(fake)
        )
        d_upd, d_opt = opt_d.update(d_grads, arrays["d_opt"], arrays["d"])
        dp = optax.apply_updates(arrays["d"], d_upd)
        g_loss, d_fake = jax.value_and_grad(g_loss_fn)(fake, dp)
        (g_grads,) = g_vjp(d_fake)
        g_upd, g_opt = opt_g.update(g_grads, arrays["g_opt"], arrays["g"])
        gp = optax.apply_updates(arrays["g"], g_upd)
        t = step.astype(jnp.float32)
        decay = jnp.minimum(jnp.float32(cfg["ema_decay"]), (1.0 + t) / (10.0 + t))
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, arrays["g_ema"], gp)
        new = {"g": gp, "d": dp, "g_ema": ema, "g_opt": g_opt, "d_opt": d_opt}
        metrics = {"d_loss": d_loss, "g_loss": g_loss, "r1": r1, "d_real": rl, "d_fake": fl}
        return new, metrics

    keys = ("g", "d", "g_ema", "g_opt", "d_opt")

    def step_fn(state, step):
        # optax mixes Python floats with int32 counters; keep that working under a caller's
        # strict promotion setting (a local context, not a global config change).
        with jax.numpy_dtype_promotion("standard"):
            arrays, metrics = step_arrays({k: state[k] for k in keys}, jnp.asarray(step, jnp.int32))
        return dict(state, **arrays), metrics

    return step_fn


def _sample_grid(module, params, latent_dim: int, path: pathlib.Path, n: int = 8, seed: int = 1234):

    z = jax.random.normal(jax.random.PRNGKey(seed), (n * n, latent_dim), jnp.float32)
    imgs = np.asarray(jax.jit(module.apply)(params, z))
    s = imgs.shape[1]
    grid = imgs.reshape(n, n, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(n * s, n * s, 3)
    save_png(grid, path)


def train_gan(out: str | pathlib.Path, steps: int, seed: int = 0, **overrides) -> dict[str, Any]:
    """Trains (or resumes) the living-room GAN; writes checkpoints, logs, sample grids, EMA weights.

    Args:
        out: run directory.
        steps: total number of D+G steps.
        seed: seed for initialisation, data and latents.
        **overrides: entries of :func:`gan_config` (e.g. ``size=16, tiny=True``).

    Returns:
        The final training state.
    """
    out = pathlib.Path(out)
    tiny = overrides.pop("tiny", False)
    ckpt_every = overrides.pop("ckpt_every", 200)
    cfg = gan_config(tiny=tiny, **overrides)
    g, _ = _modules(cfg)

    def on_ckpt(state, step):
        atomic_write(out / "g_ema.msgpack", serialization.to_bytes(jax.device_get(state["g_ema"])))
        try:
            _sample_grid(g, state["g_ema"], cfg["latent_dim"], out / f"samples_{step:06d}.png")
        except ImportError:
            pass

    return run_loop(
        out=out,
        state=init_gan_state(cfg, seed),
        step_fn=make_gan_step(cfg, seed),
        steps=steps,
        config=dict(cfg, seed=seed, steps=steps, kind="gan"),
        ckpt_every=ckpt_every,
        desc="gan",
        on_checkpoint=on_ckpt,
    )
