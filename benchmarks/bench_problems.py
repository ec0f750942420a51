"""Benchmark problems: the synthetic conv generator, the named generator + feature problems, solver
specs, and the reference-style loop that the solvers are compared with (:mod:`bench`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "GENERATORS",
    "VARIANTS",
    "conv_generator",
    "parse_solver",
    "problem",
    "reference_traverse",
]

# how a benchmark computes directions: core solvers plus Gram variants and the numpy reference
VARIANTS = ("dense", "chunked", "fd", "matrix_free", "reference")
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
    """``"matrix_free+iters=2+sketch=128"`` -> ``("matrix_free", {"iters": 2, "sketch": 128})``
    (``=None`` gives None)."""
    base, *opts = spec.split("+")
    out: dict[str, Any] = {}
    for o in opts:
        key, _, val = o.partition("=")
        if val == "None":
            out[key] = None
            continue
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
