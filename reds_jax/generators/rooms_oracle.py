"""The rooms oracle: a fixed, seeded, entangling latent -> factor map in front of the room renderer.

``z [d] -> R z -> tanh MLP (+ linear skip) -> per-factor affine -> sigmoid -> unit cube -> factor
ranges -> render``. ``R`` is a random orthogonal rotation and the MLP weights are dense, so every
factor depends on many latent coordinates and no latent axis aligns with a factor. The per-factor
affine is calibrated once, at construction, on a seeded sample of ``z ~ N(0, I)`` so that each
factor's pre-sigmoid value has mean 0 and standard deviation ``_TARGET_STD``: normal latents
then cover each factor's range well without saturating. The whole map is smooth, so the exact ground
truth ``factors(z)`` and its Jacobian are available alongside ``generator(z)``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.generators.rooms import NUM_FACTORS, render, render_masks, unit_to_factors

_HIDDEN = 32
_TARGET_STD = 1.4
_CALIBRATION_SAMPLES = 4096


class OracleParams(NamedTuple):
    """Fixed weights of the latent -> unit-cube map (float64 numpy; cast to ``z``'s dtype on use).

    Attributes:
        rotation: ``[d, d]`` orthogonal matrix.
        w1: ``[H, d]`` hidden weights.  b1: ``[H]`` hidden biases.
        w2: ``[F, H]`` output weights.  skip: ``[F, d]`` linear skip weights.
        scale: ``[F]`` and shift: ``[F]`` calibration of the pre-sigmoid values.
    """

    rotation: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    skip: np.ndarray
    scale: np.ndarray
    shift: np.ndarray


def _preactivation(p: OracleParams, z, xp):
    """Uncalibrated pre-sigmoid values ``[..., F]`` for ``z [..., d]`` (``xp`` is numpy or jnp)."""
    r = z @ p.rotation.T
    return xp.tanh(r @ p.w1.T + p.b1) @ p.w2.T + r @ p.skip.T


def _make_params(latent_dim: int, seed: int) -> OracleParams:
    rng = np.random.default_rng([seed, latent_dim])
    q, r = np.linalg.qr(rng.standard_normal((latent_dim, latent_dim)))
    rotation = q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
    w1 = rng.standard_normal((_HIDDEN, latent_dim)) / np.sqrt(latent_dim)
    b1 = 0.3 * rng.standard_normal(_HIDDEN)
    w2 = rng.standard_normal((NUM_FACTORS, _HIDDEN)) / np.sqrt(_HIDDEN)
    skip = 0.5 * rng.standard_normal((NUM_FACTORS, latent_dim)) / np.sqrt(latent_dim)
    uncal = OracleParams(rotation, w1, b1, w2, skip, np.ones(NUM_FACTORS), np.zeros(NUM_FACTORS))
    a = _preactivation(uncal, rng.standard_normal((_CALIBRATION_SAMPLES, latent_dim)), np)
    scale = _TARGET_STD / a.std(axis=0)
    return uncal._replace(scale=scale, shift=-a.mean(axis=0) * scale)


@dataclasses.dataclass(frozen=True, eq=False)
class RoomsOracle:
    """A procedural generator with exact ground truth; build it with :func:`rooms_oracle`.

    All methods take one latent ``z [d]`` (``jax.vmap`` them for batches) and are pure, jit-able and
    differentiable; they compute in ``z``'s floating dtype.

    Attributes:
        latent_dim: ``d``, the latent size.
        size: image height and width ``S`` in pixels.
        seed: the seed of the fixed weights.
        params: the fixed :class:`OracleParams`.
    """

    latent_dim: int
    size: int
    seed: int
    params: OracleParams

    def _check(self, z) -> jax.Array:
        z = jnp.asarray(z)
        if z.shape != (self.latent_dim,):
            raise ValueError(
                f"RoomsOracle expects one latent z of shape ({self.latent_dim},) (latent_dim); got "
                f"shape {z.shape}. For a batch, use jax.vmap(oracle.generator)."
            )
        if not jnp.issubdtype(z.dtype, jnp.floating):
            z = z.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
        return z

    def unit(self, z: jax.Array) -> jax.Array:
        """Ground-truth unit-cube factor coordinates ``[F]`` in (0, 1) for latent ``z [d]``.

        >>> rooms_oracle(latent_dim=4, size=16).unit(jnp.zeros(4)).shape
        (15,)
        """
        z = self._check(z)
        p = OracleParams(*(jnp.asarray(w, z.dtype) for w in self.params))
        return jax.nn.sigmoid(_preactivation(p, z, jnp) * p.scale + p.shift)

    def factors(self, z: jax.Array) -> jax.Array:
        """Exact ground-truth factors ``[F]`` (ordered as ``FACTOR_NAMES``) for latent ``z [d]``.

        >>> rooms_oracle(latent_dim=4, size=16).factors(jnp.zeros(4)).shape
        (15,)
        """
        return unit_to_factors(self.unit(z))

    def generator(self, z: jax.Array) -> jax.Array:
        """Renders latent ``z [d]`` to an image ``[S, S, 3]`` in [0, 1].

        >>> rooms_oracle(latent_dim=4, size=16).generator(jnp.zeros(4)).shape
        (16, 16, 3)
        """
        return render(self.factors(z), size=self.size)

    def masks(self, z: jax.Array) -> dict[str, jax.Array]:
        """Visible soft object masks (dict name -> ``[S, S]``) for latent ``z [d]``.

        >>> sorted(rooms_oracle(latent_dim=4, size=16).masks(jnp.zeros(4)))
        ['floor', 'lamp', 'sofa', 'wall', 'window']
        """
        return render_masks(self.factors(z), size=self.size)


def rooms_oracle(*, latent_dim: int = 16, seed: int = 0, size: int = 64) -> RoomsOracle:
    """Builds the seeded rooms oracle: ``generator(z)``, exact ``factors(z)`` and ``masks(z)``.

    The same ``(latent_dim, seed)`` always gives the same map; ``z ~ N(0, I)`` spreads every factor
    over its range (unit-cube standard deviation about 0.26) without saturating.

    Args:
        latent_dim: ``d``, the latent size (any positive int; below ``F = 15`` the factors lie on a
            ``d``-dimensional manifold).
        seed: seed of the fixed rotation and MLP weights.
        size: image height and width ``S`` in pixels.

    Returns:
        A :class:`RoomsOracle`.

    >>> oracle = rooms_oracle(latent_dim=8, size=32)
    >>> oracle.generator(jnp.zeros(8)).shape, oracle.factors(jnp.zeros(8)).shape
    ((32, 32, 3), (15,))
    """
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive Python int; got {latent_dim!r}.")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative Python int; got {seed!r}.")
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be a Python int >= 2 (pixels per side); got {size!r}.")
    return RoomsOracle(latent_dim, size, seed, _make_params(latent_dim, seed))
