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
