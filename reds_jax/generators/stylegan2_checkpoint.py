"""reds_jax's StyleGAN2 checkpoint: an architecture and its variables, checked, as msgpack.

:class:`StyleGAN2Checkpoint` is what both converters (:mod:`reds_jax.generators.stylegan2_convert`
for rosinality ``.pt``, :mod:`reds_jax.generators.stylegan2_ada` for stylegan2-ada ``.pkl``) return
and what :func:`reds_jax.generators.stylegan2.stylegan2` runs; :func:`save_stylegan2_checkpoint`
and :func:`load_stylegan2_checkpoint` store it without pickles.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from reds_jax._io import atomic_write
from reds_jax.generators.stylegan2_nets import StyleGAN2, StyleGAN2Config

__all__ = [
    "StyleGAN2Checkpoint",
    "check_variables",
    "load_stylegan2_checkpoint",
    "save_stylegan2_checkpoint",
]

_FORMAT = "reds_jax.stylegan2"
_VERSION = 1


class StyleGAN2Checkpoint(NamedTuple):
    """A StyleGAN2 architecture and its variables.

    Attributes:
        config: the :class:`~reds_jax.generators.stylegan2_nets.StyleGAN2Config`.
        variables: ``{"params": ..., "buffers": ...}`` (float32 numpy or jax arrays) for
            ``StyleGAN2(config).apply``.
    """

    config: StyleGAN2Config
    variables: dict[str, Any]


def _expected_shapes(config: StyleGAN2Config) -> Any:
    module = StyleGAN2(config)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((config.z_dim,), jnp.float32))
    return jax.tree.map(lambda a: tuple(a.shape), shapes)


def check_variables(config: StyleGAN2Config, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Checks ``variables`` against the architecture; returns them as float32 numpy arrays.

    Raises:
        ValueError: a missing, extra or wrongly shaped entry (all of them are listed).
    """
    want = _expected_shapes(config)
    flat_want = dict(_flatten(want))
    flat_got = dict(_flatten(variables))
    problems = [f"missing {k} {v}" for k, v in flat_want.items() if k not in flat_got]
    problems += [f"unexpected {k}" for k in flat_got if k not in flat_want]
    problems += [
        f"{k} has shape {np.shape(flat_got[k])}, expected {v}"
        for k, v in flat_want.items()
        if k in flat_got and tuple(np.shape(flat_got[k])) != v
    ]
    if problems:
        raise ValueError(
            "StyleGAN2 variables do not fit the architecture "
            f"{config}: " + "; ".join(problems[:20]) + (" ..." if len(problems) > 20 else "")
        )
    return _unflatten({k: np.asarray(v, np.float32) for k, v in flat_got.items()})


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in tree.items():
            out += _flatten(v, f"{prefix}/{k}" if prefix else str(k))
        return out
    return [(prefix, tree)]


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def save_stylegan2_checkpoint(ckpt: StyleGAN2Checkpoint, path: str | os.PathLike[str]) -> None:
    """Writes a checkpoint as msgpack: ``{"format", "version", "config" (JSON), "variables"}``.

    >>> save_stylegan2_checkpoint(ckpt, "ffhq.msgpack")  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    """
    variables = check_variables(ckpt.config, ckpt.variables)
    data = serialization.msgpack_serialize(
        {
            "format": _FORMAT,
            "version": _VERSION,
            "config": json.dumps(ckpt.config.to_dict()),
            "variables": variables,
        }
    )
    atomic_write(path, data)


def load_stylegan2_checkpoint(path: str | os.PathLike[str]) -> StyleGAN2Checkpoint:
    """Reads a checkpoint written by :func:`save_stylegan2_checkpoint`.

    Raises:
        ValueError: not such a file, or its variables do not fit its config.

    >>> ckpt = load_stylegan2_checkpoint("ffhq.msgpack")  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    """
    try:
        data = serialization.msgpack_restore(pathlib.Path(path).read_bytes())
    except (ValueError, TypeError) as err:  # msgpack raises these on foreign bytes
        raise ValueError(f"{os.fspath(path)!r} is not a msgpack file: {err}") from err
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(
            f"{os.fspath(path)!r} is not a reds_jax StyleGAN2 checkpoint; convert a .pt / .pkl "
            "with `reds-jax convert stylegan2 IN OUT.msgpack`."
        )
    if data.get("version") != _VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has checkpoint version {data.get('version')}; this reds_jax "
            f"reads version {_VERSION}. Re-convert the original checkpoint."
        )
    config = StyleGAN2Config.from_dict(json.loads(data["config"]))
    return StyleGAN2Checkpoint(config, check_variables(config, data["variables"]))
