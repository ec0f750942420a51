"""Converts PyTorch StyleGAN2 checkpoints to reds_jax's Flax StyleGAN2, without torch.

Two layouts are read:

* **rosinality** (github.com/rosinality/stylegan2-pytorch): a ``torch.save`` zip
  ``{"g_ema": state_dict, "latent_avg"?: [w], "args"?: Namespace, ...}`` (or a bare generator
  state dict), read by :func:`~reds_jax.formats.torch_zip.load_torch_zip`. The mapping's
  learning-rate multiplier is not stored (``mapping_lr_mul``, default 0.01 as in its
  ``Generator``). Without ``latent_avg`` the truncation centre is the mean of the mapping over
  10,000 ``z ~ N(0, I)`` drawn from ``jax.random.key(0)``.
* **stylegan2-ada-pytorch** (NVlabs): a network pickle ``{"G_ema": ..., "G", "D", ...}``, read
  by a restricted unpickler that never imports or runs the code it names (see
  :mod:`reds_jax.formats.ada_pickle`; converted in :mod:`reds_jax.generators.stylegan2_ada`).

Each returns a :class:`~reds_jax.generators.stylegan2_checkpoint.StyleGAN2Checkpoint`;
:func:`convert_stylegan2` also writes it as msgpack, and :func:`main` is the command line
(``reds-jax convert stylegan2 IN OUT``).
"""

from __future__ import annotations

import math
import os
import pathlib
import pickle
import sys
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reds_jax.core import validate
from reds_jax.formats.ada_pickle import NAMESPACE_GLOBALS
from reds_jax.formats.torch_zip import load_torch_zip
from reds_jax.generators import stylegan2_convert_args
from reds_jax.generators.stylegan2_ada import DEFAULT_BLUR, convert_ada_network, load_stylegan2_ada
from reds_jax.generators.stylegan2_checkpoint import (
    StyleGAN2Checkpoint,
    check_variables,
    save_stylegan2_checkpoint,
)
from reds_jax.generators.stylegan2_nets import MappingNetwork, StyleGAN2Config
from reds_jax.generators.stylegan2_ops import fir_kernel

__all__ = [
    "convert_ada_network",
    "convert_rosinality_state_dict",
    "convert_stylegan2",
    "load_stylegan2_ada",
    "load_stylegan2_rosinality",
    "main",
]

# --- rosinality ----------------------------------------------------------------------------


def _w_avg_from_mapping(config: StyleGAN2Config, params: dict[str, Any]) -> np.ndarray:
    """Mean of the mapping over 10,000 ``z ~ N(0, I)`` from ``jax.random.key(0)`` (float32)."""
    z = jax.random.normal(jax.random.key(0), (10_000, config.z_dim), jnp.float32)
    variables = {
        "params": params["mapping"],
        "buffers": {"w_avg": np.zeros((config.w_dim,), np.float32)},
    }
    w = jax.jit(jax.vmap(lambda v: MappingNetwork(config).apply(variables, v)))(z)
    return np.asarray(jnp.mean(w, axis=0), np.float32)


def _take(sd: dict[str, np.ndarray], key: str, shape: Sequence[int] | None = None) -> np.ndarray:
    if key not in sd:
        raise ValueError(f"Not a rosinality StyleGAN2 generator state dict: {key!r} is missing.")
    a = np.asarray(sd.pop(key), np.float32)
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{key} has shape {a.shape}, expected {tuple(shape)}.")
    return a


def _check_kernel(sd: dict[str, np.ndarray], key: str, gain: float) -> None:
    got = np.asarray(sd.pop(key), np.float64)
    want = fir_kernel(DEFAULT_BLUR) * gain
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-6):
        raise ValueError(
            f"{key} is not the [1, 3, 3, 1] FIR filter; other filters are unsupported."
        )


def _ros_layer(sd: dict[str, np.ndarray], prefix: str, w_dim: int) -> dict[str, np.ndarray]:
    w = _take(sd, f"{prefix}.conv.weight")
    if w.ndim != 5 or w.shape[0] != 1 or w.shape[3:] != (3, 3):
        raise ValueError(f"{prefix}.conv.weight has shape {w.shape}, expected [1, O, I, 3, 3].")
    cin = w.shape[2]
    out = {
        "weight": np.ascontiguousarray(w[0].transpose(2, 3, 1, 0)) / np.float32(math.sqrt(cin * 9)),
        "affine": {
            "weight": np.ascontiguousarray(_take(sd, f"{prefix}.conv.modulation.weight").T),
            "bias": _take(sd, f"{prefix}.conv.modulation.bias"),
        },
        "bias": _take(sd, f"{prefix}.activate.bias"),
        "noise_strength": _take(sd, f"{prefix}.noise.weight", (1,)).reshape(()),
    }
    if f"{prefix}.conv.blur.kernel" in sd:
        _check_kernel(sd, f"{prefix}.conv.blur.kernel", 4.0)
    if out["affine"]["weight"].shape[0] != w_dim:
        raise ValueError(f"{prefix}.conv.modulation.weight does not take w_dim={w_dim} inputs.")
    return out


def _ros_torgb(sd: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    w = _take(sd, f"{prefix}.conv.weight")
    if w.ndim != 5 or w.shape[0] != 1 or w.shape[3:] != (1, 1):
        raise ValueError(f"{prefix}.conv.weight has shape {w.shape}, expected [1, 3, I, 1, 1].")
    if f"{prefix}.upsample.kernel" in sd:
        _check_kernel(sd, f"{prefix}.upsample.kernel", 4.0)
    return {
        "weight": np.ascontiguousarray(w[0].transpose(2, 3, 1, 0)),
        "affine": {
            "weight": np.ascontiguousarray(_take(sd, f"{prefix}.conv.modulation.weight").T),
            "bias": _take(sd, f"{prefix}.conv.modulation.bias"),
        },
        "bias": _take(sd, f"{prefix}.bias").reshape(-1),
    }


def convert_rosinality_state_dict(
    state_dict: Mapping[str, np.ndarray],
    *,
    latent_avg: np.ndarray | None = None,
    mapping_lr_mul: float = 0.01,
) -> StyleGAN2Checkpoint:
    """Converts a rosinality ``Generator.state_dict()`` (numpy arrays) to Flax variables.

    Sizes are inferred from the shapes (resolution from the number of toRGB layers, channels
    from the conv weights). rosinality's modulated-conv scale ``1/sqrt(fan_in)`` is folded into
    the conv weights, which reproduces its demodulation epsilon exactly.

    Args:
        state_dict: ``style.{1..n}``, ``input.input``, ``conv1``, ``to_rgb1``, ``convs.*``,
            ``to_rgbs.*``, ``noises.noise_*`` entries; nothing else is accepted.
        latent_avg: truncation centre ``[w_dim]`` (``[1, w_dim]`` is fine); ``None`` estimates it.
        mapping_lr_mul: the ``lr_mlp`` the generator was built with.

    Returns:
        A :class:`StyleGAN2Checkpoint` of float32 numpy arrays.

    Raises:
        ValueError: a missing or unexpected key, or a shape that does not fit.

    >>> ckpt = convert_rosinality_state_dict(load_torch_zip("550000.pt")["g_ema"])  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    """
    lr_mul = validate.number(mapping_lr_mul, "mapping_lr_mul", low=0.0, open_low=True, high=1e3)
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in sd:
        n_rgbs += 1
    if n_mlp == 0 or "input.input" not in sd:
        raise ValueError(
            "Not a rosinality StyleGAN2 generator state dict (no style.1.weight / input.input); "
            "pass checkpoint['g_ema']."
        )
    w_dim = sd["style.1.weight"].shape[1]
    mapping = {}
    for j in range(n_mlp):
        mapping[f"fc{j}"] = {
            "weight": np.ascontiguousarray(_take(sd, f"style.{j + 1}.weight").T),
            "bias": _take(sd, f"style.{j + 1}.bias"),
        }
    const = _take(sd, "input.input")
    blocks: dict[str, Any] = {
        "b4": {
            "const": np.ascontiguousarray(const[0].transpose(1, 2, 0)),
            "conv1": _ros_layer(sd, "conv1", w_dim),
            "torgb": _ros_torgb(sd, "to_rgb1"),
        }
    }
    for j in range(n_rgbs):
        blocks[f"b{2 ** (j + 3)}"] = {
            "conv0": _ros_layer(sd, f"convs.{2 * j}", w_dim),
            "conv1": _ros_layer(sd, f"convs.{2 * j + 1}", w_dim),
            "torgb": _ros_torgb(sd, f"to_rgbs.{j}"),
        }
    resolution = 2 ** (n_rgbs + 2)
    channels = tuple(b["conv1"]["bias"].shape[0] for b in blocks.values())
    config = StyleGAN2Config(
        resolution,
        z_dim=mapping["fc0"]["weight"].shape[0],
        w_dim=w_dim,
        channels=channels,
        mapping_layers=n_mlp,
        mapping_features=mapping["fc0"]["weight"].shape[1] if n_mlp > 1 else None,
        mapping_lr_mul=lr_mul,
        img_channels=blocks["b4"]["torgb"]["bias"].shape[0],
    )
    noise_buffers: dict[str, Any] = {}
    names = [
        (f"b{r}", c)
        for r in config.resolutions
        for c in (("conv1",) if r == 4 else ("conv0", "conv1"))
    ]
    for i, (b, c) in enumerate(names):
        n = _take(sd, f"noises.noise_{i}")
        noise_buffers.setdefault(b, {})[c] = {"noise_const": n.reshape(n.shape[-2:])}
    if sd:
        raise ValueError(
            f"Unexpected keys {sorted(sd)[:10]} in the state dict: not the rosinality StyleGAN2 "
            "Generator layout (a SWAGAN or modified model?)."
        )
    variables = {
        "params": {"mapping": mapping, "synthesis": blocks},
        "buffers": {
            "mapping": {"w_avg": np.zeros((w_dim,), np.float32)},
            "synthesis": noise_buffers,
        },
    }
    variables = check_variables(config, variables)
    if latent_avg is None:
        w_avg = _w_avg_from_mapping(config, variables["params"])
    else:
        w_avg = np.asarray(latent_avg, np.float32).reshape(-1)
        if w_avg.shape != (w_dim,):
            raise ValueError(f"latent_avg has {w_avg.size} entries, expected w_dim={w_dim}.")
    variables["buffers"]["mapping"]["w_avg"] = w_avg
    return StyleGAN2Checkpoint(config, variables)


def load_stylegan2_rosinality(
    path: str | os.PathLike[str], *, network: str = "g_ema", mapping_lr_mul: float = 0.01
) -> StyleGAN2Checkpoint:
    """Reads and converts a rosinality checkpoint (``torch.save`` zip), without torch.

    Args:
        path: e.g. ``550000.pt`` from its ``train.py`` or ``stylegan2-ffhq-config-f.pt`` from its
            ``convert_weight.py``.
        network: the entry holding the generator (``"g_ema"``; ``"g"`` for the raw generator).
            A bare generator state dict is accepted as well.
        mapping_lr_mul: see :func:`convert_rosinality_state_dict`.

    Returns:
        A :class:`StyleGAN2Checkpoint`; ``w_avg`` is the checkpoint's ``latent_avg`` if present.

    Raises:
        pickle.UnpicklingError: the pickle names anything but tensors, dicts and
            ``argparse.Namespace`` (nothing from it is executed).
        ValueError: not a rosinality generator.

    >>> ckpt = load_stylegan2_rosinality("stylegan2-ffhq-config-f.pt")  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    """
    ckpt = load_torch_zip(path, extra_globals=NAMESPACE_GLOBALS)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(ckpt).__name__}, not a dict.")
    if "input.input" in ckpt:
        state, latent_avg = ckpt, None
    elif network in ckpt and isinstance(ckpt[network], dict):
        state, latent_avg = ckpt[network], ckpt.get("latent_avg")
    else:
        keys = sorted(map(str, ckpt))
        raise ValueError(
            f"{os.fspath(path)!r} has no {network!r} entry (keys: {keys[:8]}"
            f"{' ...' if len(keys) > 8 else ''}) and is not a rosinality generator state dict; "
            "pass network=... naming the generator's state dict."
        )
    return convert_rosinality_state_dict(
        state, latent_avg=latent_avg, mapping_lr_mul=mapping_lr_mul
    )


# --- entry points ----------------------------------------------------------------------------


def _detect_format(path: pathlib.Path) -> str:
    if zipfile.is_zipfile(path):
        return "rosinality"
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) == 2 and head[0] == 0x80:  # pickle PROTO opcode
        return "ada"
    raise ValueError(
        f"{os.fspath(path)!r} is neither a torch.save zip (rosinality .pt) nor a pickle "
        "(stylegan2-ada-pytorch .pkl); pass format= explicitly if you are sure."
    )


def convert_stylegan2(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    format: str = "auto",
    network: str | None = None,
    mapping_lr_mul: float = 0.01,
) -> StyleGAN2Checkpoint:
    """Converts a rosinality ``.pt`` or stylegan2-ada-pytorch ``.pkl`` (and saves it as msgpack).

    Args:
        path: the PyTorch checkpoint.
        out: where to write the Flax checkpoint (``.msgpack``); ``None`` writes nothing.
        format: ``"rosinality"``, ``"ada"`` or ``"auto"`` (torch.save zip -> rosinality, plain
            pickle -> ada).
        network: entry to convert (default ``"g_ema"`` / ``"G_ema"``).
        mapping_lr_mul: rosinality only (not stored there; 0.01 by default).

    Returns:
        The :class:`StyleGAN2Checkpoint`; load a saved one with
        :func:`~reds_jax.generators.stylegan2` or ``load_stylegan2_checkpoint``.

    >>> convert_stylegan2("ffhq.pkl", "ffhq.msgpack")  # needs a StyleGAN2 checkpoint  # doctest: +SKIP
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {os.fspath(path)!r}.")
    if out is not None and pathlib.Path(out).is_dir():  # refused before the conversion's work
        raise IsADirectoryError(
            f"out {os.fspath(out)!r} is a folder; pass a file path such as "
            f"{os.fspath(pathlib.Path(out) / path.with_suffix('.msgpack').name)!r}."
        )
    fmt = _detect_format(path) if format == "auto" else format
    if format != "auto" and fmt in ("rosinality", "ada") and _detect_format(path) != fmt:
        raise ValueError(
            f"{os.fspath(path)!r} does not look like a {fmt!r}-format checkpoint (a rosinality .pt is a "
            "torch.save zip, a stylegan2-ada .pkl a plain pickle); try format='auto'."
        )
    if fmt == "rosinality":
        ckpt = load_stylegan2_rosinality(
            path, network=network or "g_ema", mapping_lr_mul=mapping_lr_mul
        )
    elif fmt == "ada":
        ckpt = load_stylegan2_ada(path, network=network or "G_ema")
    else:
        raise ValueError(f"format={format!r}; pass 'auto', 'rosinality' or 'ada'.")
    if out is not None:
        save_stylegan2_checkpoint(ckpt, out)
    return ckpt


def main(argv: Sequence[str] | None = None, prog: str = "reds-jax convert stylegan2") -> int:
    """``reds-jax convert stylegan2 IN OUT.msgpack [--format F] [--network N]``.

    Args:
        argv: arguments after the subcommand (``sys.argv[1:]`` when ``None``).
        prog: program name shown in usage and errors.

    Returns:
        0 on success, 2 when the checkpoint cannot be converted (a one-line reason on stderr).
    """
    args = stylegan2_convert_args.parser(prog).parse_args(argv)
    try:
        ckpt = convert_stylegan2(
            args.input,
            args.output,
            format=args.format,
            network=args.network,
            mapping_lr_mul=args.mapping_lr_mul,
        )
    except (OSError, ValueError, pickle.UnpicklingError) as err:
        print(f"reds-jax convert stylegan2: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    cfg = ckpt.config
    print(
        f"wrote {args.output}: {cfg.resolution}x{cfg.resolution} StyleGAN2, z {cfg.z_dim}, "
        f"w {cfg.w_dim}, {cfg.num_ws} ws, channels {list(cfg.channels)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
