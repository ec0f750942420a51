"""Writes tests/fixtures/dcgan_reference.npz: the ORIGINAL PyTorch face DCGAN on fixed latents.

Needs torch, which reds_jax never depends on: run it from a separate environment, e.g.

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    /tmp/torchvenv/bin/python scripts/make_dcgan_fixture.py

The weights come from reds_jax/assets.py (loaded by file path: it uses the standard library only,
so neither jax nor reds_jax needs to be installed here), or from ``--weights PATH``.
The torch architecture below is written from the checkpoint's key names and shapes (the DCGAN
tutorial generator); it is independent of reds_jax's Flax port, which the test compares against.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import numpy as np
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "dcgan_reference.npz"


def _assets_module():
    spec = importlib.util.spec_from_file_location(
        "_reds_jax_assets", ROOT / "reds_jax" / "assets.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def build_generator(state_dict: dict[str, torch.Tensor]) -> nn.Sequential:
    """DCGAN generator from the state-dict shapes: 5 ConvTranspose2d, 4 BatchNorm2d, ReLU, tanh."""
    convs = ("main.0", "main.3", "main.6", "main.9", "main.12")
    layers: list[nn.Module] = []
    for i, key in enumerate(convs):
        cin, cout, kh, kw = state_dict[f"{key}.weight"].shape
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers.append(nn.ConvTranspose2d(cin, cout, (kh, kw), stride, pad, bias=False))
        if i < len(convs) - 1:
            layers += [nn.BatchNorm2d(cout), nn.ReLU()]
        else:
            layers.append(nn.Tanh())
    # index layout matches the checkpoint: main.0 conv, main.1 bn, main.2 relu, main.3 conv, ...
    model = nn.Sequential()
    model.add_module("main", nn.Sequential(*layers))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=pathlib.Path, help="gan_face_generate/weights.tar")
    parser.add_argument("--num", type=int, default=4, help="number of latents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    weights = args.weights or _assets_module().fetch("face_dcgan")
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    model = build_generator(ckpt["netG_state_dict"])

    latents = np.random.default_rng(args.seed).standard_normal((args.num, 100)).astype(np.float32)
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        z = torch.from_numpy(latents)[:, :, None, None].double()
        out64 = model.double()(z).numpy()  # [N, 3, 64, 64] tanh, float64 reference
    images = np.ascontiguousarray(out64.transpose(0, 2, 3, 1)).astype(np.float32)  # NHWC
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        latents=latents,
        images=images,
        torch_version=np.array(torch.__version__),
    )
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} bytes): latents {latents.shape}, "
        f"images {images.shape} tanh in [{images.min():.3f}, {images.max():.3f}]"
    )


if __name__ == "__main__":
    main()
