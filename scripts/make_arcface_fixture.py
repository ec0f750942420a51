"""Writes the ArcFace (iresnet) parity fixture: a tiny random iresnet run by insightface's PyTorch code.

Outputs (tests/fixtures/):

* ``arcface_iresnet_tiny.pth``: ``torch.save(model.state_dict())`` (zip), the layout of the
  ``backbone.pth`` files distributed for insightface's ``recognition/arcface_torch``.
* ``arcface_reference.npz``: input images (NHWC, in [0, 1]) and the float64 reference embeddings
  (before L2 normalisation), from ``model((image - 0.5) / 0.5)`` in eval mode.

The network is insightface's ``IResNet`` with ``IBasicBlock`` and layers ``(1, 2, 1, 1)``, made
tiny for the fixture: stem 8 and stage widths 8 / 16 / 16 / 32 instead of 64 / 128 / 256 / 512,
32 x 32 input (``fc_scale = 2 * 2`` instead of ``7 * 7``), 16 features; every weight, BatchNorm
statistic and PReLU slope random. The width change is made from outside (a subclass that rewrites
the literal sizes), so the forward pass is insightface's own.

insightface is not part of reds_jax, nor is torch: run this from a separate environment with the
backbone file from a checkout of https://github.com/deepinsight/insightface (used: commit
7fadd420, ``recognition/arcface_torch/backbones/iresnet.py``); nothing of it is copied here:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    /tmp/torchvenv/bin/python scripts/make_arcface_fixture.py \\
        --iresnet /path/to/insightface/recognition/arcface_torch/backbones/iresnet.py
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures"
STEM = 8
WIDTHS = {64: 8, 128: 16, 256: 16, 512: 32}
LAYERS = [1, 2, 1, 1]
SIZE, FEATURES, N = 32, 16, 2


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location("insightface_iresnet", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_iresnet(mod) -> torch.nn.Module:
    class TinyIResNet(mod.IResNet):
        fc_scale = (SIZE // 16) ** 2

        def __setattr__(self, name, value):
            if name == "inplanes" and not self.__dict__.get("_stem_done"):
                self.__dict__["_stem_done"] = True
                value = STEM
            elif name == "bn2" and isinstance(value, torch.nn.BatchNorm2d):
                value = torch.nn.BatchNorm2d(WIDTHS[512], eps=1e-05)
            elif name == "fc":
                value = torch.nn.Linear(WIDTHS[512] * self.fc_scale, value.out_features)
            super().__setattr__(name, value)

        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
            return super()._make_layer(block, WIDTHS[planes], blocks, stride, dilate)

    return TinyIResNet(mod.IBasicBlock, LAYERS, num_features=FEATURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iresnet", type=pathlib.Path, required=True, help="iresnet.py")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = tiny_iresnet(_load(args.iresnet))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("prelu.weight"):
                t.copy_(0.25 + 0.1 * torch.randn(t.shape, generator=gen))
            elif "bn" in name or "downsample.1" in name or name.startswith("features"):
                shift = 1.0 if name.endswith(".weight") else 0.0
                t.copy_(shift + 0.2 * torch.randn(t.shape, generator=gen))
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "arcface_iresnet_tiny.pth")

    images = np.random.default_rng(0).random((N, SIZE, SIZE, 3)).astype(np.float32)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2)).double()
    with torch.no_grad():
        emb = model.double()((x - 0.5) / 0.5).numpy()
    np.savez_compressed(
        args.out / "arcface_reference.npz",
        images=images,
        embeddings=emb,
        torch_version=np.array(torch.__version__),
    )
    for name in ("arcface_iresnet_tiny.pth", "arcface_reference.npz"):
        print(f"{name}: {(args.out / name).stat().st_size:,} bytes")
    print(f"embeddings {emb.shape}, norms {np.linalg.norm(emb, axis=1)}")


if __name__ == "__main__":
    main()
