"""GAN inversion: find latents whose generated images reproduce given images.

Batched latent optimisation with optax: every image gets ``restarts`` random starting latents, all
``N × restarts`` problems are optimised together (``vmap``, ``lax.scan`` over steps, jit-compiled),
and the restart with the lowest final objective is kept.

Objective for one image ``x`` and latent ``z [d]``::

    pixel(G(z), x) + feature_weight · ‖f(G(z)) − f(x)‖² / m_f + prior_weight · (‖z‖²/d − 1)²

``pixel`` is the mean squared (``"l2"``) or mean absolute (``"l1"``) error; ``f`` an optional feature
(e.g. a face identity embedding); the prior keeps ``z`` near the shell where ``N(0, I)`` latents live.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # optax is imported when invert() runs: `import reds_jax.core` stays light
    import optax

Array = jax.Array

LOSSES = ("l2", "l1")


class Inversion(NamedTuple):
    """Result of :func:`invert`.

    Attributes:
      latents: ``[N, d]`` best latent per image.
      errors: ``[N]`` final pixel loss of the best restart (mean squared or absolute error).
      psnr: ``[N]`` PSNR in dB of the reconstructions (images in [0, 1]).
      reconstructions: ``[N, H, W, C]`` ``G(latents)``.
      objective: ``[N, restarts]`` final objective of every restart.
    """

    latents: Array
    errors: Array
    psnr: Array
    reconstructions: Array
    objective: Array


def _pixel_loss(kind: str, a: Array, b: Array) -> Array:
    diff = a - b
    return jnp.mean(diff**2) if kind == "l2" else jnp.mean(jnp.abs(diff))


def _objective(generator, feature, kind, feature_weight, prior_weight, z, target, target_feat):
    image = generator(z)
    pixel = _pixel_loss(kind, image, target)
    total = pixel + prior_weight * (jnp.sum(z**2) / z.shape[0] - 1.0) ** 2
    if feature is not None:
        feat = jnp.ravel(feature(image))
        total = total + feature_weight * jnp.mean((feat - target_feat) ** 2)
    return total, pixel


def _check_images(images: Any, generator: Callable, latent_dim: int) -> Array:
    images = jnp.asarray(images)
    if images.ndim == 3:
        images = images[None]
    try:
        out = jax.eval_shape(generator, jnp.zeros((latent_dim,), images.dtype))
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"generator could not be applied to a latent of shape [{latent_dim}]: {err}; pass the "
            "generator's latent size as latent_dim."
        ) from err
    if images.ndim != 4 or images.shape[1:] != out.shape:
        raise ValueError(
            f"images must have shape [N, {', '.join(map(str, out.shape))}] (the generator's output); "
            f"got {images.shape}. Resize or crop them first (reds_jax.jobs.cli does it for files)."
        )
    if not bool(jnp.all(jnp.isfinite(images))):
        raise ValueError("images contain non-finite values; pass images in [0, 1].")
    return images


def invert(
    generator: Callable[[Array], Array],
    images: Array,
    *,
    latent_dim: int,
    steps: int = 200,
    optimizer: optax.GradientTransformation | None = None,
    loss: str = "l2",
    feature: Callable[[Array], Array] | None = None,
    feature_weight: float = 1.0,
    prior_weight: float = 1e-3,
    restarts: int = 4,
    key: Array | None = None,
    init: Array | None = None,
    progress: bool = False,
    chunk: int = 50,
) -> Inversion:
    """Invert a generator on a batch of images.

    Args:
      generator: pure ``z [d] -> image [H, W, C]`` in [0, 1].
      images: ``[N, H, W, C]`` (or one ``[H, W, C]``) in [0, 1].
      latent_dim: ``d``.
      steps: optimisation steps per restart.
      optimizer: optax transformation (default ``optax.adam(0.05)``).
      loss: ``"l2"`` or ``"l1"`` pixel loss.
      feature: optional ``image -> array`` feature matched as well (e.g. face identity).
      feature_weight: weight of the feature loss.
      prior_weight: weight of the latent-norm prior ``(‖z‖²/d − 1)²``.
      restarts: random starting latents per image; the best final objective is kept.
      key: PRNG key, or ``[N]`` keys (one per image, so results do not depend on the batch).
      init: optional ``[N, d]`` or ``[N, restarts, d]`` starting latents instead of random ones.
      progress: print progress to stderr every ``chunk`` steps.
      chunk: steps per compiled chunk (progress granularity).

    Returns:
      :class:`Inversion`.

    >>> import jax, jax.numpy as jnp
    >>> w = jax.random.normal(jax.random.key(0), (12, 3))
    >>> g = lambda z: jax.nn.sigmoid(w @ z).reshape(2, 2, 3)
    >>> target = jax.vmap(g)(jnp.ones((1, 3)))
    >>> out = invert(g, target, latent_dim=3, steps=300, restarts=2, key=jax.random.key(1))
    >>> bool(out.psnr[0] > 40)
    True
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}; pass one of {LOSSES}.")
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive int; got {latent_dim!r}.")
    for name, val in (("steps", steps), ("restarts", restarts), ("chunk", chunk)):
        if not isinstance(val, int) or val < (0 if name == "steps" else 1):
            raise ValueError(
                f"{name} must be a {'non-negative' if name == 'steps' else 'positive'} int."
            )
    images = _check_images(images, generator, latent_dim)
    n, dtype = images.shape[0], images.dtype
    import optax

    optimizer = optax.adam(0.05) if optimizer is None else optimizer
    if init is not None:
        z = jnp.asarray(init, dtype)
        if z.shape == (n, latent_dim):
            z = jnp.broadcast_to(z[:, None], (n, restarts, latent_dim))
        if z.shape != (n, restarts, latent_dim):
            raise ValueError(
                f"init must have shape [N, d] or [N, restarts, d] = {(n, restarts, latent_dim)}; "
                f"got {jnp.shape(init)}."
            )
    else:
        if key is None:
            raise ValueError(
                "invert needs a PRNG key for random restarts: pass key=jax.random.key(0)."
            )
        keys = key if jnp.ndim(key) == 1 else jax.random.split(key, n)
        if keys.shape[0] != n:
            raise ValueError(f"key must be one key or {n} keys (one per image); got {keys.shape}.")
        z = jax.vmap(lambda k: jax.random.normal(k, (restarts, latent_dim), dtype))(keys)

    target_feat = (
        jax.vmap(lambda x: jnp.ravel(feature(x)))(images)
        if feature is not None
        else jnp.zeros((n, 0))
    )
    obj = lambda zz, x, fx: _objective(  # noqa: E731
        generator, feature, loss, feature_weight, prior_weight, zz, x, fx
    )

    def one_step(state, _):
        zz, opt_state, x, fx = state
        grad = jax.grad(lambda a: obj(a, x, fx)[0])(zz)
        # optax mixes int step counts with floats: allow standard promotion inside the update even
        # when the caller runs with jax_numpy_dtype_promotion="strict" (scoped, not global).
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grad, opt_state, zz)
        return (optax.apply_updates(zz, updates), opt_state, x, fx), None

    def runner(length: int):
        """Jitted ``length`` steps for all ``[N, restarts]`` problems."""

        def per_problem(z1, s1, x, fx):
            (z1, s1, _, _), _ = jax.lax.scan(one_step, (z1, s1, x, fx), None, length=length)
            return z1, s1

        per_image = jax.vmap(per_problem, in_axes=(0, 0, None, None))
        return jax.jit(jax.vmap(per_image))

    with jax.numpy_dtype_promotion("standard"):
        opt_state = jax.vmap(jax.vmap(optimizer.init))(z)
    full, rest = divmod(steps, chunk)
    run_chunk = runner(chunk) if full else None
    for i in range(full):
        z, opt_state = run_chunk(z, opt_state, images, target_feat)
        if progress:
            print(f"invert: {(i + 1) * chunk}/{steps} steps", file=sys.stderr, flush=True)
    if rest:
        z, opt_state = runner(rest)(z, opt_state, images, target_feat)

    total, pixel = jax.jit(jax.vmap(jax.vmap(obj, in_axes=(0, None, None))))(z, images, target_feat)
    best = jnp.argmin(jnp.where(jnp.isfinite(total), total, jnp.inf), axis=1)
    latents = jnp.take_along_axis(z, best[:, None, None], axis=1)[:, 0]
    errors = jnp.take_along_axis(pixel, best[:, None], axis=1)[:, 0]
    recon = jax.jit(jax.vmap(generator))(latents)
    mse = jnp.mean((recon - images) ** 2, axis=(1, 2, 3))
    psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(mse, jnp.finfo(mse.dtype).tiny))
    return Inversion(latents, errors, psnr, recon, total)
