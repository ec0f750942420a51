"""GAN inversion: find latents whose generated images reproduce given images.

Batched latent optimisation with optax: every image gets ``restarts`` random starting latents, all
``N × restarts`` problems are optimised together (``vmap``; one jitted call per step, one compile
per batch shape: see :func:`_chunk_runner` for why not a ``lax.scan``). The default optimiser is
Adam. After ``select_after`` steps only the best ``keep`` restarts of each image go on (a cheap
multi-start: the others are discarded early), and a problem whose objective improved by less than
``tol`` (relative) over the last chunk stops (early stopping on a plateau; results do not depend on
the other images in the batch). A plateau is what it detects: the face DCGAN's inversions of its own
images still gain 4-49 % per 25-step chunk at step 300, so ``tol=1e-3`` does not stop them there.

Objective for one image ``x`` and latent ``z [d]``::

    pixel(G(z), x) + feature_weight · ‖f(G(z)) − f(x)‖² / m_f + prior_weight · (‖z‖²/d − 1)²

``pixel`` is the mean squared (``"l2"``) or mean absolute (``"l1"``) error; ``f`` an optional feature
(e.g. a face identity embedding); the prior keeps ``z`` near the shell where ``N(0, I)`` latents live.
"""

from __future__ import annotations

import math
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


def _keys(key: Any, n: int) -> Array:
    """One PRNG key (new-style ``jax.random.key`` or legacy ``uint32[2]`` ``PRNGKey``) split into
    ``n``, or ``n`` keys (``[n]`` new-style or ``uint32[n, 2]`` legacy) taken as they are."""
    if key is None:
        raise ValueError("invert needs a PRNG key for random restarts: pass key=jax.random.key(0).")
    arr = jnp.asarray(key)
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        keys = jax.random.split(arr, n) if arr.ndim == 0 else arr
    else:
        raw = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape  # (2,)
        if arr.dtype != jnp.uint32 or arr.shape not in (raw, (n, *raw)):
            raise ValueError(
                f"key {arr.dtype}{list(arr.shape)} is ambiguous: pass one key "
                "(jax.random.key(0) or jax.random.PRNGKey(0)) or one key per image "
                f"(jax.random.split(key, {n}): shape [{n}], or legacy uint32 [{n}, {raw[0]}])."
            )
        keys = jax.random.wrap_key_data(arr)
        keys = jax.random.split(keys, n) if arr.shape == raw else keys
    if keys.shape != (n,):
        raise ValueError(
            f"key must be one key or {n} keys (one per image, jax.random.split(key, {n})); got "
            f"{keys.shape[0] if keys.ndim else 0} keys of shape {keys.shape}."
        )
    return keys


def invert(
    generator: Callable[[Array], Array],
    images: Array,
    *,
    latent_dim: int,
    steps: int = 200,
    optimizer: optax.GradientTransformation | None = None,
    lr: float = 0.08,
    loss: str = "l2",
    feature: Callable[[Array], Array] | None = None,
    feature_weight: float = 1.0,
    prior_weight: float = 1e-3,
    restarts: int = 4,
    key: Array | None = None,
    init: Array | None = None,
    select_after: int | None = None,
    keep: int = 1,
    tol: float = 0.0,
    progress: bool | Callable[[int, Array], Any] = False,
    chunk: int = 25,
) -> Inversion:
    """Invert a generator on a batch of images.

    Args:
      generator: pure ``z [d] -> image [H, W, C]`` in [0, 1].
      images: ``[N, H, W, C]`` (or one ``[H, W, C]``) in [0, 1].
      latent_dim: ``d``.
      steps: optimisation steps per restart (at most; see ``tol``).
      optimizer: optax transformation (default ``optax.adam(lr)``; a cosine-decayed learning
        rate measured worse on the face DCGAN: 24.8 vs 28.9 dB median PSNR at 300 steps).
      lr: learning rate of the default optimizer (ignored with ``optimizer``).
      loss: ``"l2"`` or ``"l1"`` pixel loss.
      feature: optional ``image -> array`` feature matched as well (e.g. face identity).
      feature_weight: weight of the feature loss.
      prior_weight: weight of the latent-norm prior ``(‖z‖²/d − 1)²``.
      restarts: random starting latents per image; the best final objective is kept.
      key: one PRNG key (``jax.random.key(0)`` or a legacy ``jax.random.PRNGKey(0)``), split per
        image, or ``[N]`` keys (one per image, so results do not depend on the batch); an array
        that is neither is an error.
      init: optional ``[N, d]`` or ``[N, restarts, d]`` starting latents instead of random ones.
      select_after: after this many steps (rounded up to a whole chunk) keep only the best
        ``keep`` restarts of each image. Default: ``min(100, steps // 3)``; 0 or ``>= steps``
        keeps all restarts to the end.
      keep: restarts per image that survive the selection.
      tol: early stopping: a problem stops when its best objective so far improved by less than
        this fraction over the last chunk (0: run all ``steps``).
      progress: True draws a tqdm bar (stderr) with ETA, from the end of the first chunk (so
        compilation is not in its rate); a callable is called as
        ``progress(steps_done, objective [N])`` after every chunk.
      chunk: steps between checks (selection, stopping and progress granularity).

    Returns:
      :class:`Inversion`. ``objective [N, restarts]`` holds each restart's objective when it
      stopped (discarded restarts: at the selection).

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
    for name, val in (("steps", steps), ("restarts", restarts), ("chunk", chunk), ("keep", keep)):
        if not isinstance(val, int) or isinstance(val, bool) or val < (0 if name == "steps" else 1):
            raise ValueError(
                f"{name} must be a {'non-negative' if name == 'steps' else 'positive'} int; "
                f"got {val!r}."
            )
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0 (0: no early stopping); got {tol!r}.")
    if select_after is not None and (not isinstance(select_after, int) or select_after < 0):
        raise ValueError(f"select_after must be an int >= 0 or None; got {select_after!r}.")
    images = _check_images(images, generator, latent_dim)
    n, dtype = images.shape[0], images.dtype
    import optax

    optimizer = optax.adam(lr) if optimizer is None else optimizer
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
        keys = _keys(key, n)
        z = jax.vmap(lambda k: jax.random.normal(k, (restarts, latent_dim), dtype))(keys)

    target_feat = (
        jax.vmap(lambda x: jnp.ravel(feature(x)))(images)
        if feature is not None
        else jnp.zeros((n, 0), dtype)
    )
    obj = lambda zz, x, fx: _objective(  # noqa: E731
        generator, feature, loss, feature_weight, prior_weight, zz, x, fx
    )
    run_chunk = _chunk_runner(obj, optimizer, chunk)

    # problems: flat [P] = image index x restart; `alive` marks those still optimised
    image_of = jnp.repeat(jnp.arange(n), restarts)
    restart_of = jnp.tile(jnp.arange(restarts), n)
    zp = z.reshape(n * restarts, latent_dim)
    with jax.numpy_dtype_promotion("standard"):
        state = jax.vmap(optimizer.init)(zp)
    bz, last = zp, jnp.full((n * restarts,), jnp.inf, dtype)  # best latent and objective so far
    final = jnp.full((n, restarts), jnp.inf, dtype)  # objective of every restart when it stopped
    alive = jnp.ones((n * restarts,), bool)
    select_at = min(100, steps // 3) if select_after is None else select_after
    selected = not (0 < select_at < steps) or restarts <= keep
    bar = None  # started after the first chunk, so its rate and ETA exclude compilation
    done = 0
    try:
        while done < steps and bool(jnp.any(alive)):
            length = min(chunk, steps - done)
            zp, state, bz, value = run_chunk(
                zp, state, bz, last, alive, images[image_of], target_feat[image_of], length
            )
            done += length
            if tol > 0:
                gain = (last - value) / jnp.maximum(jnp.abs(last), jnp.finfo(dtype).tiny)
                alive = alive & ~(jnp.isfinite(last) & (gain < tol))
            last = value
            final = final.at[image_of, restart_of].set(value)
            if not selected and done >= select_at and done < steps:
                zp, state, bz, last, alive, image_of, restart_of = _select(
                    final, keep, zp, state, bz, last, alive, image_of, restart_of
                )
                selected = True
            if progress is True:
                if bar is None:
                    bar = _bar(steps, first=length)
                else:
                    bar.update(length)
                bar.set_postfix_str(f"objective {float(jnp.median(final.min(axis=1))):.3g}")
            elif callable(progress):
                progress(done, final.min(axis=1))
    finally:
        if bar is not None:
            bar.close()

    zp = jnp.where(jnp.isfinite(last)[:, None], bz, zp)  # the best latent seen (steps=0: init)
    zs = jnp.full((n, restarts, latent_dim), jnp.nan, dtype).at[image_of, restart_of].set(zp)
    total, pixel, recon = _finish(obj, generator)(zp, images[image_of], target_feat[image_of])
    final = final.at[image_of, restart_of].set(total)
    best = jnp.argmin(jnp.where(jnp.isfinite(final), final, jnp.inf), axis=1)  # [N]
    latents = zs[jnp.arange(n), best]
    # the best restart of each image is always among the survivors: gather its rows
    row = jnp.argmax(
        (image_of[None, :] == jnp.arange(n)[:, None]) & (restart_of[None, :] == best[:, None]),
        axis=1,
    )
    errors, recon = pixel[row], recon[row]
    mse = jnp.mean((recon - images) ** 2, axis=(1, 2, 3))
    psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(mse, jnp.finfo(mse.dtype).tiny))
    return Inversion(latents, errors, psnr, recon, final)


def _chunk_runner(obj, optimizer, chunk: int):
    """``(z, state, best_z, best, alive, x, fx, length) -> (z, state, best_z, best)``: ``length``
    (at most ``chunk``) masked steps for ``[P]`` problems, where ``best`` is the lowest objective
    seen so far and ``best_z`` its latent.

    Each step is one jitted call, dispatched from Python without waiting for the previous one:
    on XLA:CPU the generator's convolutions run 2.4× slower inside a ``lax.scan`` body than in a
    straight program (face DCGAN, 12 problems: 25 steps 4.35 s in a scan, 1.76 s as 25 calls;
    the scan also compiled 5× longer), and a step's work dwarfs a dispatch."""
    import optax

    def one_problem(z, s, bz, bv, alive, x, fx):
        (value, _), grad = jax.value_and_grad(lambda a: obj(a, x, fx), has_aux=True)(z)
        # optax mixes int step counts with floats: allow standard promotion inside the
        # update even when the caller runs with jax_numpy_dtype_promotion="strict".
        with jax.numpy_dtype_promotion("standard"):
            updates, s_new = optimizer.update(grad, s, z)
        better = alive & (value < bv)  # value is the objective at z, before this update
        bz, bv = jnp.where(better, z, bz), jnp.where(better, value, bv)
        z = jnp.where(alive, optax.apply_updates(z, updates), z)
        s = jax.tree.map(lambda new, old: jnp.where(alive, new, old), s_new, s)
        return z, s, bz, bv

    step = jax.jit(jax.vmap(one_problem))

    def run(z, s, bz, bv, alive, x, fx, length: int):
        for _ in range(min(int(length), chunk)):
            z, s, bz, bv = step(z, s, bz, bv, alive, x, fx)
        return z, s, bz, bv

    return run


def _finish(obj, generator):
    """Jitted ``(z [P, d], x, fx) -> (objective [P], pixel loss [P], G(z) [P, H, W, C])``."""

    def one(z, x, fx):
        total, pixel = obj(z, x, fx)
        return total, pixel, generator(z)

    return jax.jit(jax.vmap(one))


def _select(final, keep, zp, state, bz, last, alive, image_of, restart_of):
    """Keeps the ``keep`` restarts of each image with the lowest objective so far."""
    order = jnp.argsort(jnp.where(jnp.isfinite(final), final, jnp.inf), axis=1)[
        :, :keep
    ]  # [N, keep]
    n = final.shape[0]
    lookup = jnp.full(final.shape, -1).at[image_of, restart_of].set(jnp.arange(image_of.shape[0]))
    rows = lookup[jnp.arange(n)[:, None], order].reshape(-1)
    take = lambda a: a[rows]  # noqa: E731
    return (
        take(zp), jax.tree.map(take, state), take(bz), take(last), take(alive), take(image_of),
        take(restart_of),
    )  # fmt: skip


def _bar(total: int, first: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=first, unit="step", desc="invert", file=sys.stderr,
        dynamic_ncols=True,
    )  # fmt: skip
