"""Bring-your-own StyleGAN2: a converted checkpoint as a pure generator in Z, W, W+ or style space.

:func:`stylegan2` takes a checkpoint converted by :mod:`reds_jax.generators.stylegan2_convert`
(``.msgpack``), or converts a rosinality ``.pt`` / stylegan2-ada-pytorch ``.pkl`` on the fly (no
torch needed), and returns ``generator(latent [d]) -> image [H, W, 3]`` in ``[0, 1]`` for
:func:`reds_jax.traverse`. The architecture is in :mod:`reds_jax.generators.stylegan2_nets`.

Latent spaces (``space``):

* ``"z"``: ``z [z_dim]`` through the mapping network; ``truncation`` is applied inside.
* ``"w"``: one ``w [w_dim]`` broadcast to every layer.
* ``"w+"``: ``ws`` flattened, ``[num_ws * w_dim]`` (row-major ``[num_ws, w_dim]``).
* ``"s"``: per-layer styles (StyleSpace), the affine outputs concatenated, ``[sum(style_dims)]``.

For ``w``, ``w+`` and ``s`` the generator takes the latent as given; ``from_z`` maps a ``z`` into
the space *with* truncation (start latents for a traversal).
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.generators.stylegan2_checkpoint import StyleGAN2Checkpoint as StyleGAN2Checkpoint
from reds_jax.generators.stylegan2_checkpoint import check_variables as check_variables
from reds_jax.generators.stylegan2_checkpoint import (
    load_stylegan2_checkpoint as load_stylegan2_checkpoint,
)
from reds_jax.generators.stylegan2_checkpoint import (
    save_stylegan2_checkpoint as save_stylegan2_checkpoint,
)
from reds_jax.generators.stylegan2_nets import NOISE_MODES, StyleGAN2, StyleGAN2Config

__all__ = [
    "SPACES",
    "StyleGAN2Checkpoint",
    "StyleGAN2Generator",
    "load_stylegan2_checkpoint",
    "save_stylegan2_checkpoint",
    "stylegan2",
]

SPACES = ("z", "w", "w+", "s")


def _as_checkpoint(params_or_path: Any, **convert_options: Any) -> StyleGAN2Checkpoint:
    if (
        isinstance(params_or_path, tuple)
        and len(params_or_path) == 2
        and isinstance(params_or_path[0], StyleGAN2Config)
    ):
        config, variables = params_or_path
        return StyleGAN2Checkpoint(config, check_variables(config, variables))
    if isinstance(params_or_path, str | os.PathLike):
        path = pathlib.Path(params_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"No StyleGAN2 checkpoint at {os.fspath(path)!r}.")
        if path.suffix == ".msgpack":
            if convert_options:
                raise ValueError(f"{sorted(convert_options)} apply to .pt / .pkl files only.")
            return load_stylegan2_checkpoint(path)
        from reds_jax.generators.stylegan2_convert import (
            convert_stylegan2,  # lazy: the converter is optional
        )

        return convert_stylegan2(path, **convert_options)
    raise TypeError(
        "stylegan2() takes a path (.msgpack, rosinality .pt, stylegan2-ada .pkl) or a "
        f"StyleGAN2Checkpoint / (config, variables); got {type(params_or_path).__name__}."
    )


class StyleGAN2Generator(NamedTuple):
    """A StyleGAN2 generator as a pure function of one latent in the chosen space.

    Attributes:
        generator: ``latent [latent_dim] -> image [H, W, 3]`` in ``[0, 1]``, in the latent's
            floating dtype; pure, jit / vmap / jacfwd / jacrev-able.
        latent_dim: ``d`` of ``space`` (``z_dim``, ``w_dim``, ``num_ws * w_dim`` or
            ``sum(style_dims)``).
        space: ``"z"``, ``"w"``, ``"w+"`` or ``"s"``.
        from_z: ``z [z_dim] -> latent [latent_dim]``: mapping and truncation (identity for ``z``).
        module: the :class:`StyleGAN2` Flax module.
        variables: its variables (jax float32 arrays).
        config: the architecture.
    """

    generator: Callable[[jax.Array], jax.Array]
    latent_dim: int
    space: str
    from_z: Callable[[jax.Array], jax.Array]
    module: StyleGAN2
    variables: dict[str, Any]
    config: StyleGAN2Config


def _to_unit(img: jax.Array, clip: bool) -> jax.Array:
    img = (img + 1.0) * 0.5
    return jnp.clip(img, 0.0, 1.0) if clip else img


def _generate(module, variables, space, trunc, cutoff, noise_mode, noise, clip, latent):
    cfg = module.config
    apply = functools.partial(module.apply, variables)
    kw = {"noise_mode": noise_mode, "noise": noise}
    if space == "z":
        ws = apply(latent, trunc, cutoff, method=StyleGAN2.map)
        img = apply(ws, method=StyleGAN2.synthesize, **kw)
    elif space == "w":
        _check_shape(latent, cfg.w_dim, space)
        ws = jnp.broadcast_to(latent[None], (cfg.num_ws, cfg.w_dim))
        img = apply(ws, method=StyleGAN2.synthesize, **kw)
    elif space == "w+":
        _check_shape(latent, cfg.num_ws * cfg.w_dim, space)
        img = apply(latent.reshape(cfg.num_ws, cfg.w_dim), method=StyleGAN2.synthesize, **kw)
    else:
        img = apply(latent, method=StyleGAN2.synthesize_styles, **kw)
    return _to_unit(img, clip)


def _from_z(module, variables, space, trunc, cutoff, z):
    if space == "z":
        return z
    ws = module.apply(variables, z, trunc, cutoff, method=StyleGAN2.map)
    if space == "w":
        return ws[0]
    if space == "w+":
        return ws.reshape(-1)
    return module.apply(variables, ws, method=StyleGAN2.styles)


def _check_shape(latent: jax.Array, d: int, space: str) -> None:
    if latent.shape != (d,):
        raise ValueError(
            f"space={space!r} takes one latent of shape ({d},), got {latent.shape}; use jax.vmap "
            "for a batch."
        )


def stylegan2(
    params_or_path: str | os.PathLike[str] | StyleGAN2Checkpoint,
    *,
    space: str = "w",
    truncation: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    key: jax.Array | None = None,
    clip: bool = True,
    **convert_options: Any,
) -> StyleGAN2Generator:
    """A StyleGAN2 checkpoint as ``generator(latent) -> image [H, W, 3]`` in ``[0, 1]``.

    Args:
        params_or_path: a converted ``.msgpack`` (:func:`save_stylegan2_checkpoint`), a rosinality
            ``.pt`` or a stylegan2-ada-pytorch ``.pkl`` (converted now, without torch; convert
            once with ``reds-jax convert stylegan2`` to skip that), or a
            :class:`StyleGAN2Checkpoint` / ``(config, variables)`` (e.g. from
            ``StyleGAN2(config).init``).
        space: latent space of ``generator``: ``"z"``, ``"w"``, ``"w+"`` or ``"s"`` (styles).
        truncation: ``psi``: ``w <- w_avg + psi (w - w_avg)``; inside ``generator`` for
            ``space="z"``, in ``from_z`` otherwise. A Python float.
        truncation_cutoff: truncate only the first this many ``ws`` rows (``None``: all). Not
            expressible in ``space="w"``.
        noise_mode: ``"const"`` (the checkpoint's fixed noise), ``"none"``, or ``"random"``: noise
            drawn once from ``key`` and then held fixed, so the generator stays deterministic.
        key: PRNG key, for ``noise_mode="random"`` only.
        clip: clip the image to ``[0, 1]`` (its gradient is zero where it clips).
        **convert_options: passed to
            :func:`~reds_jax.generators.stylegan2_convert.convert_stylegan2` for ``.pt`` / ``.pkl``.

    Returns:
        A :class:`StyleGAN2Generator`.

    Raises:
        ValueError: an unknown ``space`` / ``noise_mode``, a missing ``key``, a cutoff in ``w``
            space, or a checkpoint that does not fit.

    >>> g = stylegan2("ffhq.msgpack", space="w+", truncation=0.7)  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    >>> w0 = jax.vmap(g.from_z)(jax.random.normal(jax.random.key(0), (4, 512)))  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    >>> reds_jax.traverse(reds_jax.Problem(g.generator, vary=features.lowpass(4.0)), w0)  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    """
    if space not in SPACES:
        raise ValueError(f"space={space!r}; pass one of {SPACES}.")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode={noise_mode!r}; pass one of {NOISE_MODES}.")
    if not (np.ndim(truncation) == 0 and np.isfinite(truncation)):
        raise ValueError(f"truncation must be a finite Python float; got {truncation!r}.")
    truncation = float(truncation)
    if truncation_cutoff is not None and space == "w":
        raise ValueError(
            'truncation_cutoff truncates only some layers, which space="w" cannot express; '
            'use space="w+" or "s" (or no cutoff).'
        )
    ckpt = _as_checkpoint(params_or_path, **convert_options)
    cfg = ckpt.config
    module = StyleGAN2(cfg)
    variables = jax.tree.map(jnp.asarray, ckpt.variables)
    noise = None
    if noise_mode == "random":
        if key is None:
            raise ValueError('noise_mode="random" needs key=jax.random.key(...).')
        keys = jax.random.split(key, len(cfg.noise_shapes))
        noise = tuple(
            jax.random.normal(k, s, jnp.float32)
            for k, s in zip(keys, cfg.noise_shapes, strict=True)
        )
    elif key is not None:
        raise ValueError(f'key is only used with noise_mode="random", not {noise_mode!r}.')
    dims = {
        "z": cfg.z_dim,
        "w": cfg.w_dim,
        "w+": cfg.num_ws * cfg.w_dim,
        "s": sum(cfg.style_dims),
    }
    args = (module, variables, space, truncation, truncation_cutoff)
    return StyleGAN2Generator(
        generator=functools.partial(_generate, *args, noise_mode, noise, clip),
        latent_dim=dims[space],
        space=space,
        from_z=functools.partial(_from_z, *args),
        module=module,
        variables=variables,
        config=cfg,
    )
