"""stylegan2-ada-pytorch network pickles -> Flax StyleGAN2, read without torch or NVIDIA's code.

The pickle is read by :func:`reds_jax.formats.ada_pickle.load_ada_pickle` (inert
:class:`~reds_jax.formats.ada_pickle.PersistentRecord` stand-ins; nothing in the file runs).
:func:`convert_ada_network` then reads the unconditional "skip" StyleGAN2 generator out of the records (StyleGAN3,
conditional and orig / resnet generators are refused with a message). Blocks trained in float16
run in float32 here.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from reds_jax.formats.ada_pickle import PersistentRecord, load_ada_pickle
from reds_jax.generators.stylegan2_checkpoint import StyleGAN2Checkpoint, check_variables
from reds_jax.generators.stylegan2_nets import StyleGAN2Config
from reds_jax.generators.stylegan2_ops import fir_kernel

__all__ = ["PersistentRecord", "convert_ada_network", "load_stylegan2_ada"]

DEFAULT_BLUR = (1, 3, 3, 1)

# --- stylegan2-ada-pytorch -------------------------------------------------------------------


def _record(obj: Any, class_name: str, where: str) -> PersistentRecord:
    if not isinstance(obj, PersistentRecord) or obj.class_name != class_name:
        got = obj.class_name if isinstance(obj, PersistentRecord) else type(obj).__name__
        raise ValueError(
            f"{where} is a {got}, expected a stylegan2-ada-pytorch {class_name}. Only the "
            "StyleGAN2 skip generator is supported (not StyleGAN3 or orig/resnet generators)."
        )
    return obj


def _child(rec: PersistentRecord, name: str, class_name: str, where: str) -> PersistentRecord:
    modules = rec.state.get("_modules") or {}
    if name not in modules:
        raise ValueError(f"{where} has no submodule {name!r}.")
    return _record(modules[name], class_name, f"{where}.{name}")


def _tensor(rec: PersistentRecord, name: str, where: str, shape=None) -> np.ndarray:
    for group in ("_parameters", "_buffers"):
        value = (rec.state.get(group) or {}).get(name)
        if value is not None:
            a = np.asarray(value, np.float32)
            if shape is not None and a.shape != tuple(shape):
                raise ValueError(f"{where}.{name} has shape {a.shape}, expected {tuple(shape)}.")
            return a
    raise ValueError(f"{where} has no tensor {name!r}.")


def _attr(rec: PersistentRecord, name: str, where: str) -> Any:
    if name not in rec.state:
        raise ValueError(f"{where} has no attribute {name!r}.")
    value = rec.state[name]
    return value.item() if isinstance(value, np.generic) else value


def _ada_fc(rec: PersistentRecord, where: str, lr_mul: float) -> dict[str, np.ndarray]:
    w = _tensor(rec, "weight", where)
    if not math.isclose(float(_attr(rec, "bias_gain", where)), lr_mul, rel_tol=1e-6):
        raise ValueError(f"{where} has a learning-rate multiplier other than {lr_mul}.")
    gain = float(_attr(rec, "weight_gain", where))
    if not math.isclose(gain, lr_mul / math.sqrt(w.shape[1]), rel_tol=1e-6):
        raise ValueError(f"{where}.weight_gain={gain} is not lr_mul / sqrt(in_features).")
    return {"weight": np.ascontiguousarray(w.T), "bias": _tensor(rec, "bias", where)}


def _ada_layer(rec: PersistentRecord, where: str) -> tuple[dict, dict, Any]:
    if _attr(rec, "activation", where) != "lrelu":
        raise ValueError(f"{where}.activation must be 'lrelu'.")
    f = _tensor(rec, "resample_filter", where)
    if f.shape != (4, 4) or not np.allclose(f, fir_kernel(DEFAULT_BLUR), atol=1e-6):
        raise ValueError(f"{where}.resample_filter is not the [1, 3, 3, 1] FIR filter.")
    w = _tensor(rec, "weight", where)
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"{where}.weight has shape {w.shape}, expected [O, I, 3, 3].")
    affine = _child(rec, "affine", "FullyConnectedLayer", where)
    r = int(_attr(rec, "resolution", where))
    if _attr(rec, "use_noise", where):
        strength = _tensor(rec, "noise_strength", where, ()).reshape(())
        noise = _tensor(rec, "noise_const", where, (r, r))
    else:
        strength, noise = np.zeros((), np.float32), np.zeros((r, r), np.float32)
    params = {
        "weight": np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
        "bias": _tensor(rec, "bias", where),
        "noise_strength": strength,
        "affine": _ada_fc(affine, f"{where}.affine", 1.0),
    }
    return params, {"noise_const": noise}, _attr(rec, "conv_clamp", where)


def convert_ada_network(G: PersistentRecord) -> StyleGAN2Checkpoint:
    """Converts an unpickled stylegan2-ada-pytorch ``Generator`` record to Flax variables.

    Args:
        G: the ``G_ema`` (or ``G``) entry of a network pickle read by :func:`load_stylegan2_ada`'s
            restricted unpickler.

    Returns:
        A :class:`StyleGAN2Checkpoint` of float32 numpy arrays (``w_avg`` from the mapping's
        buffer, ``conv_clamp`` from its layers).

    Raises:
        ValueError: a conditional, StyleGAN3, non-"skip" or otherwise unexpected network.
    """
    G = _record(G, "Generator", "G")
    if int(_attr(G, "c_dim", "G")) != 0:
        raise ValueError("Conditional generators (c_dim > 0) are not supported.")
    mapping = _child(G, "mapping", "MappingNetwork", "G")
    synthesis = _child(G, "synthesis", "SynthesisNetwork", "G")
    n_layers = int(_attr(mapping, "num_layers", "G.mapping"))
    if (mapping.state.get("_modules") or {}).get("embed") is not None:
        raise ValueError("G.mapping has a label embedding; conditional models are unsupported.")
    fc0 = _child(mapping, "fc0", "FullyConnectedLayer", "G.mapping")
    lr_mul = float(_attr(fc0, "bias_gain", "G.mapping.fc0"))
    mp = {}
    for i in range(n_layers):
        fc = _child(mapping, f"fc{i}", "FullyConnectedLayer", "G.mapping")
        if _attr(fc, "activation", f"G.mapping.fc{i}") != "lrelu":
            raise ValueError(f"G.mapping.fc{i}.activation must be 'lrelu'.")
        mp[f"fc{i}"] = _ada_fc(fc, f"G.mapping.fc{i}", lr_mul)
    w_dim = int(_attr(G, "w_dim", "G"))
    try:
        w_avg = _tensor(mapping, "w_avg", "G.mapping", (w_dim,))
    except ValueError:
        w_avg = np.zeros((w_dim,), np.float32)  # trained with w_avg_beta=None
    resolutions = [int(r) for r in _attr(synthesis, "block_resolutions", "G.synthesis")]
    blocks: dict[str, Any] = {}
    noise: dict[str, Any] = {}
    clamps = set()
    for res in resolutions:
        where = f"G.synthesis.b{res}"
        b = _child(synthesis, f"b{res}", "SynthesisBlock", "G.synthesis")
        if _attr(b, "architecture", where) != "skip":
            raise ValueError(f"{where}.architecture must be 'skip'.")
        names = ("conv1",) if res == 4 else ("conv0", "conv1")
        blocks[f"b{res}"], noise[f"b{res}"] = {}, {}
        if res == 4:
            const = _tensor(b, "const", where)
            blocks["b4"]["const"] = np.ascontiguousarray(const.transpose(1, 2, 0))
        for name in names:
            p, buf, clamp = _ada_layer(_child(b, name, "SynthesisLayer", where), f"{where}.{name}")
            blocks[f"b{res}"][name], noise[f"b{res}"][name] = p, buf
            clamps.add(clamp)
        rgb = _child(b, "torgb", "ToRGBLayer", where)
        w = _tensor(rgb, "weight", f"{where}.torgb")
        affine = _child(rgb, "affine", "FullyConnectedLayer", f"{where}.torgb")
        blocks[f"b{res}"]["torgb"] = {
            "weight": np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
            "bias": _tensor(rgb, "bias", f"{where}.torgb"),
            "affine": _ada_fc(affine, f"{where}.torgb.affine", 1.0),
        }
        clamps.add(_attr(rgb, "conv_clamp", f"{where}.torgb"))
    if len(clamps) != 1:
        raise ValueError(f"Layers use different conv_clamp values {clamps}; unsupported.")
    clamp = clamps.pop()
    config = StyleGAN2Config(
        int(_attr(G, "img_resolution", "G")),
        z_dim=int(_attr(G, "z_dim", "G")),
        w_dim=w_dim,
        channels=tuple(blocks[f"b{r}"]["conv1"]["bias"].shape[0] for r in resolutions),
        mapping_layers=n_layers,
        mapping_features=mp["fc0"]["weight"].shape[1] if n_layers > 1 else None,
        mapping_lr_mul=lr_mul,
        img_channels=int(_attr(G, "img_channels", "G")),
        conv_clamp=None if clamp is None else float(clamp),
    )
    if list(config.resolutions) != resolutions:
        raise ValueError(
            f"G.synthesis.block_resolutions {resolutions} do not match the image size."
        )
    variables = {
        "params": {"mapping": mp, "synthesis": blocks},
        "buffers": {"mapping": {"w_avg": w_avg}, "synthesis": noise},
    }
    return StyleGAN2Checkpoint(config, check_variables(config, variables))


def load_stylegan2_ada(
    path: str | os.PathLike[str], *, network: str = "G_ema"
) -> StyleGAN2Checkpoint:
    """Reads and converts a stylegan2-ada-pytorch network pickle without torch or its code.

    The pickle is read by a restricted unpickler: only tensors, numpy scalars, containers,
    ``torch_utils.persistence`` records (class name + state; the embedded source code is ignored),
    ``dnnlib.util.EasyDict`` and ``argparse.Namespace`` are allowed. Anything else -- a foreign
    class, ``os.system``, ``builtins.eval`` -- raises before it can run.

    Args:
        path: e.g. ``network-snapshot-025000.pkl`` or ``ffhq.pkl``.
        network: the entry to convert (``"G_ema"``; ``"G"`` for the raw generator).

    Returns:
        A :class:`StyleGAN2Checkpoint`.

    Raises:
        pickle.UnpicklingError: the pickle names anything outside the allow-list.
        ValueError: no such entry, or not an unconditional StyleGAN2 skip generator.

    >>> ckpt = load_stylegan2_ada("ffhq.pkl")  # needs a network pickle  # doctest: +SKIP
    """
    data = load_ada_pickle(path)
    if isinstance(data, PersistentRecord):
        return convert_ada_network(data)
    if not isinstance(data, dict) or network not in data:
        keys = sorted(map(str, data))[:8] if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{os.fspath(path)!r} has no {network!r} entry (found {keys}).")
    return convert_ada_network(data[network])
