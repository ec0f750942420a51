"""Linear peers of REDs: global latent directions to walk as straight lines.

Every function returns unit directions ``[k, d]`` (rows, deterministic signs) that are the same for
every start latent; :func:`linear_paths` walks them like ``traverse(..., path="linear")`` does
(``z_t = z_0 + t·ε·v``, both signs, paths ordered ``[+v1, -v1, +v2, -v2, …]``).

* :func:`pca_directions` — GANSpace (Härkönen et al., 2020): principal axes of sampled latents, or of
  an intermediate activation map; for an activation map, the activation-space components are
  transferred back to the latent space by least-squares regression of the latents on the component
  coordinates (GANSpace's recipe for generators without a mapping network, e.g. BigGAN).
* :func:`sefa_directions` — SeFa (Shen & Zhou, 2021): top right-singular vectors of the weight
  matrix ``W [m, d]`` that first acts on the latent (eigenvectors of ``WᵀW``).
* :func:`supervised_directions` — InterFaceGAN (Shen et al., 2020): the normal of a linear model fit
  on latents labelled by an attribute (closed-form ridge regression), optionally made orthogonal
  to the normals of attributes to keep ("conditional manipulation").
* :func:`random_directions` — orthonormal random directions.
* :func:`principal_scores` — turn a vector feature (pixels, …) into scalar labels: its top
  principal-component scores over samples.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core.rayleigh import fix_signs, random_system, top_eigh, unit_rows

Array = jax.Array

__all__ = [
    "linear_paths",
    "pca_directions",
    "principal_scores",
    "random_directions",
    "sefa_directions",
    "supervised_directions",
]


def _matrix(x, name: str, what: str) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim != 2 or min(x.shape) < 1:
        raise ValueError(f"{name} must be a 2-D array {what}; got shape {x.shape}.")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains non-finite values (NaN/inf); pass finite values.")
    return x


def _check_k(k, limit: int, what: str) -> int:
    if not isinstance(k, int | np.integer) or not 1 <= k <= limit:
        raise ValueError(f"k={k!r} is out of range: pass 1 <= k <= {limit} ({what}).")
    return int(k)


def _centered(x: Array) -> Array:
    return x - jnp.mean(x, axis=0, keepdims=True)


def _principal_axes(x: Array, k: int) -> Array:
    """Top-``k`` principal axes ``[k, m]`` of centred rows ``x [n, m]`` (deterministic signs)."""
    _, _, vt = jnp.linalg.svd(x, full_matrices=False)
    return fix_signs(vt[:k])


def principal_scores(values: Array, p: int) -> Array:
    """Scores of samples on the top-``p`` principal axes of a feature (scalar labels from vectors).

    Args:
      values: ``[n, m]`` feature values of ``n`` samples (e.g. flattened pixels).
      p: number of components, ``1 <= p <= min(n, m)``.

    Returns:
      ``[n, p]`` centred scores ``(values - mean) @ axesᵀ`` (largest variance first).

    >>> import jax.numpy as jnp
    >>> principal_scores(jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.1]]), 1).shape
    (3, 1)
    """
    values = _matrix(values, "values", "[n, m] (one flattened feature per sample)")
    p = _check_k(p, min(values.shape), f"n={values.shape[0]} samples, m={values.shape[1]}")
    centred = _centered(values)
    return centred @ _principal_axes(centred, p).T


def pca_directions(
    z: Array, k: int, *, activation_fn: Callable[[Array], Array] | None = None
) -> Array:
    """GANSpace-style directions: principal axes of latents or of an activation map.

    Without ``activation_fn`` the directions are the top-``k`` principal axes of ``z`` (for a
    generator with a mapping network, pass the mapped latents). With ``activation_fn`` (e.g. the
    first layer's output), the principal axes ``U [k, m]`` of the activations ``Y`` are computed, each
    sample's coordinates ``X = (Y - ȳ) Uᵀ [n, k]`` are regressed onto the latents
    (``min_B ‖X B - (Z - z̄)‖``) and the rows of ``B [k, d]`` are the latent directions.

    Args:
      z: ``[n, d]`` sampled latents (``n > k``).
      k: number of directions.
      activation_fn: optional pure ``z [d] -> array`` (any shape; flattened), vmapped over ``z``.

    Returns:
      ``[k, d]`` unit directions, largest activation variance first.

    >>> import jax, jax.numpy as jnp
    >>> z = jax.random.normal(jax.random.key(0), (256, 3)) * jnp.array([[1.0, 5.0, 1.0]])
    >>> [round(abs(float(c)), 1) for c in pca_directions(z, 1)[0]]
    [0.0, 1.0, 0.0]
    """
    z = _matrix(z, "z", "[n, d] of sampled latents")
    n, d = z.shape
    k = _check_k(k, min(n - 1, d) if activation_fn is None else n - 1, f"n={n} samples, d={d}")
    zc = _centered(z)
    if activation_fn is None:
        return _principal_axes(zc, k)
    acts = jax.vmap(lambda v: jnp.ravel(activation_fn(v)))(z)
    if acts.ndim != 2:
        raise ValueError(f"activation_fn must map one latent [d] to an array; got {acts.shape}.")
    k = _check_k(k, min(n - 1, acts.shape[1]), f"activation size m={acts.shape[1]}")
    centred = _centered(acts.astype(z.dtype))
    coords = centred @ _principal_axes(centred, k).T  # [n, k]
    basis, *_ = jnp.linalg.lstsq(coords, zc)  # [k, d]
    return fix_signs(unit_rows(basis))


def sefa_directions(weight: Array, k: int) -> Array:
    """SeFa directions: top-``k`` right-singular vectors of the first weight acting on ``z``.

    Args:
      weight: ``[m, d]`` matrix of the first (linear) layer, ``y = W z`` (for a transposed
        convolution on a 1x1 input, reshape its kernel so the latent axis is last).
      k: number of directions, ``1 <= k <= d``.

    Returns:
      ``[k, d]`` unit directions (eigenvectors of ``WᵀW``, largest first).

    >>> import jax.numpy as jnp
    >>> sefa_directions(jnp.array([[1.0, 0.0], [0.0, 3.0]]), 1).tolist()
    [[0.0, 1.0]]
    """
    weight = _matrix(weight, "weight", "[m, d] (output rows, latent columns)")
    k = _check_k(k, weight.shape[1], f"latent size d={weight.shape[1]}")
    _, vectors = top_eigh(weight.T @ weight)
    return vectors[:k]


def supervised_directions(
    z: Array, labels: Array, *, ridge: float = 1e-3, condition: Array | None = None
) -> Array:
    """InterFaceGAN-style directions: normals of ridge regressions of labels on latents.

    For each label column ``y``, ``w = (Z̃ᵀZ̃ + ridge·n·I)⁻¹ Z̃ᵀ ỹ`` on centred data; its unit normal is
    the direction along which the label grows fastest. With ``condition`` (labels to keep), the
    normals of those labels are fit the same way and projected out (InterFaceGAN's conditional
    manipulation, generalised to several conditions by orthogonalising against their span).

    Args:
      z: ``[n, d]`` latents.
      labels: ``[n]`` or ``[n, c]`` attribute values (binary or continuous).
      ridge: ``>= 0`` ridge strength, relative to ``n``.
      condition: optional ``[n]`` or ``[n, q]`` labels whose normals the directions must avoid
        (``q < d``).

    Returns:
      ``[c, d]`` unit directions (one per label column; ``c = 1`` for ``[n]`` labels).

    >>> import jax, jax.numpy as jnp
    >>> z = jax.random.normal(jax.random.key(0), (200, 3))
    >>> [round(abs(float(c)), 2) for c in supervised_directions(z, z[:, 2] - z[:, 0])[0]]
    [0.71, 0.0, 0.71]
    """
    z = _matrix(z, "z", "[n, d] of latents")
    n, d = z.shape
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0; got {ridge!r}.")

    def normals(y, name):
        y = jnp.asarray(y)
        y = y[:, None] if y.ndim == 1 else y
        y = _matrix(y, name, "[n] or [n, c] of labels").astype(z.dtype)
        if y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0]} rows but z has {n}; pass one per latent.")
        zc = _centered(z)
        lhs = zc.T @ zc + jnp.asarray(ridge * n, z.dtype) * jnp.eye(d, dtype=z.dtype)
        return jnp.linalg.solve(lhs, zc.T @ _centered(y)).T  # [c, d]

    w = normals(labels, "labels")
    if condition is not None:
        c = normals(condition, "condition")
        if c.shape[0] >= d:
            raise ValueError(
                f"condition has {c.shape[0]} label columns but the latent has d={d}; pass fewer "
                "than d (nothing would be left to move along)."
            )
        q, _ = jnp.linalg.qr(c.T)  # [d, q] orthonormal span of the condition normals
        w = w - (w @ q) @ q.T
    return fix_signs(unit_rows(w))


def random_directions(key: Array, k: int, d: int, dtype=None) -> Array:
    """``k`` orthonormal random directions (rows of a Haar-random orthogonal matrix).

    Args:
      key: PRNG key.
      k: number of directions, ``1 <= k <= d``.
      d: latent size.
      dtype: floating dtype (default: JAX's default float).

    Returns:
      ``[k, d]`` orthonormal rows.

    >>> import jax
    >>> random_directions(jax.random.key(0), 2, 5).shape
    (2, 5)
    """
    k = _check_k(k, d, f"latent size d={d}")
    dtype = jnp.result_type(float) if dtype is None else dtype
    return random_system(key, d, dtype, "orthogonal")[1][:k]


def linear_paths(z0: Array, directions: Array, *, steps: int, step_size: float) -> Array:
    """Straight paths ``z_t = z_0 + t·ε·v`` along given directions, both signs.

    Args:
      z0: ``[d]`` or ``[N, d]`` start latents.
      directions: ``[k, d]`` (shared) or ``[N, k, d]`` (per start) directions; rows are
        normalised to unit length, so every step has length ``step_size``.
      steps: number of steps ``T >= 0``.
      step_size: step length ``ε > 0``.

    Returns:
      ``[N, 2k, T+1, d]`` latents (``[2k, T+1, d]`` for ``z0 [d]``), paths ordered
      ``[+v1, -v1, +v2, -v2, …]`` as in :mod:`reds_jax.core.path`.

    >>> import jax.numpy as jnp
    >>> linear_paths(jnp.zeros(2), jnp.array([[1.0, 0.0]]), steps=2, step_size=0.5)[:, -1].tolist()
    [[1.0, 0.0], [-1.0, 0.0]]
    """
    z0 = jnp.asarray(z0)
    single = z0.ndim == 1
    batch = z0[None] if single else z0
    if batch.ndim != 2:
        raise ValueError(f"z0 must have shape [d] or [N, d]; got {z0.shape}.")
    n, d = batch.shape
    v = jnp.asarray(directions, batch.dtype)
    if v.ndim == 2:
        v = jnp.broadcast_to(v[None], (n, *v.shape))
    if v.ndim != 3 or v.shape[0] != n or v.shape[2] != d:
        raise ValueError(
            f"directions must have shape [k, {d}] or [{n}, k, {d}] for z0 of shape {z0.shape}; "
            f"got {jnp.shape(directions)}."
        )
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}.")
    if not (np.ndim(step_size) == 0 and np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a finite number > 0; got {step_size!r}.")
    v = unit_rows(v)
    k = v.shape[1]
    signs = jnp.tile(jnp.asarray([1.0, -1.0], batch.dtype), k)  # [2k]
    v2 = jnp.repeat(v, 2, axis=1) * signs[None, :, None]  # [N, 2k, d]
    t = jnp.arange(steps + 1, dtype=batch.dtype) * jnp.asarray(step_size, batch.dtype)  # [T+1]
    out = batch[:, None, None, :] + t[None, None, :, None] * v2[:, :, None, :]
    return out[0] if single else out
