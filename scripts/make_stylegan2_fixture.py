"""Writes the StyleGAN2 parity fixtures: tiny random generators run by two PyTorch implementations.

Outputs (tests/fixtures/, ~1.1 MB together):

* ``stylegan2_rosinality.pt``: a ``torch.save`` zip ``{"g_ema": state_dict, "latent_avg": [w],
  "args": argparse.Namespace}`` of rosinality's ``model.Generator`` (the layout of checkpoints
  trained with, or converted by, github.com/rosinality/stylegan2-pytorch).
* ``stylegan2_ada.pkl``: a network pickle ``{"G_ema", "D", "augment_pipe", "training_set_kwargs"}``
  written by ``pickle.dump`` exactly as stylegan2-ada-pytorch's ``training_loop.py`` does (its
  ``torch_utils.persistence`` classes), except that the embedded module source is replaced by a
  placeholder so no third-party code is committed.
* ``stylegan2_reference.npz``: latents and the reference forward passes of both (NCHW -> NHWC).

Both generators: 32 x 32 RGB, z = w = 64, channels 32/32/32/16 at 4/8/16/32 px, random weights
with non-trivial biases, noise strengths and (ada) ``w_avg`` and ``conv_clamp``.

Neither implementation is part of reds_jax, nor is torch: run this from a separate environment with
the two repositories checked out anywhere (nothing of theirs is copied into this repository):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    git clone https://github.com/rosinality/stylegan2-pytorch /tmp/sg2ref     # used: commit bef283a
    git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/sg2ada     # used: commit d72cc7d
    /tmp/torchvenv/bin/python scripts/make_stylegan2_fixture.py \\
        --rosinality /tmp/sg2ref --ada /tmp/sg2ada

Both run on the CPU through their pure-PyTorch fallbacks (rosinality's ``upfirdn2d_native`` /
``fused_leaky_relu`` CPU branch, ada's ``impl="ref"`` ops); their CUDA extensions are never built
(``torch.utils.cpp_extension.load`` is stubbed, ``requests`` -- imported by ``dnnlib`` for
downloads -- is stubbed). rosinality's reference runs in float64; ada casts to float32 internally,
so its reference is float32. The test (tests/test_stylegan2.py) needs no torch.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import pickle
import sys
import types

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures"
CHANNELS = {4: 32, 8: 32, 16: 32, 32: 16}
SIZE, DIM, N = 32, 64, 2
ROS_MLP, ADA_MLP = 8, 2
ADA_CLAMP = 1.5  # small enough that the clamp binds somewhere on random weights
TRUNC_ROS = 0.7
TRUNC_ADA, CUTOFF_ADA = 0.6, 3
SOURCE_PLACEHOLDER = "# module source omitted from the reds_jax test fixture\n"


def _randomise(module: torch.nn.Module, gen: torch.Generator, rules) -> None:
    """Re-draws parameters and buffers whose name matches a rule: ``(suffix, fn(shape) -> t)``."""
    with torch.no_grad():
        named = list(module.named_parameters()) + list(module.named_buffers())
        for name, t in named:
            for suffix, fn in rules:
                if name.endswith(suffix):
                    t.copy_(fn(t.shape, gen).to(t.dtype))
                    break


def _randn(scale, shift=0.0):
    return lambda shape, gen: shift + scale * torch.randn(shape, generator=gen)


def rosinality_reference(src: pathlib.Path, z: np.ndarray, ws: np.ndarray, out: pathlib.Path):
    import torch.utils.cpp_extension as cpp_extension

    cpp_extension.load = lambda *a, **k: None  # CUDA ops are never used on the CPU
    sys.path.insert(0, str(src))
    import model  # rosinality's model.py

    class SmallGenerator(model.Generator):
        """rosinality's Generator with a small channel table (its table is a literal dict)."""

        def __setattr__(self, name, value):
            if name == "channels":
                value = dict(CHANNELS)
            super().__setattr__(name, value)

    torch.manual_seed(0)
    g = SmallGenerator(SIZE, DIM, ROS_MLP).eval()
    gen = torch.Generator().manual_seed(1)
    _randomise(
        g,
        gen,
        [
            ("noise.weight", _randn(0.3)),
            ("activate.bias", _randn(0.2)),
            ("modulation.bias", _randn(0.2, 1.0)),
            ("to_rgb1.bias", _randn(0.1)),
            (".bias", _randn(1.0)),  # to_rgbs.*.bias and the mapping (x lr_mul 0.01)
        ],
    )
    with torch.no_grad():
        latent_avg = g.mean_latent(4096)[0]  # [w]
    sd = {k: v.clone() for k, v in g.state_dict().items()}
    ckpt = {
        "g_ema": sd,
        "latent_avg": latent_avg.clone(),
        "args": argparse.Namespace(size=SIZE, latent=DIM, n_mlp=ROS_MLP, channel_multiplier=2),
    }
    torch.save(ckpt, out / "stylegan2_rosinality.pt")

    g = g.double()
    zt, wst = torch.from_numpy(z).double(), torch.from_numpy(ws).double()
    zeros = [torch.zeros_like(getattr(g.noises, f"noise_{i}")) for i in range(g.num_layers)]
    with torch.no_grad():
        res = {
            "ros_w": g.get_latent(zt),
            "ros_img_z": g([zt], randomize_noise=False)[0],
            "ros_img_z_trunc": g(
                [zt],
                truncation=TRUNC_ROS,
                truncation_latent=latent_avg.double()[None],
                randomize_noise=False,
            )[0],
            "ros_img_wplus": g([wst], input_is_latent=True, randomize_noise=False)[0],
            "ros_img_wplus_none": g([wst], input_is_latent=True, noise=zeros)[0],
        }
    return {k: _nhwc(v) for k, v in res.items()}, g.n_latent


def ada_reference(src: pathlib.Path, z: np.ndarray, ws: np.ndarray, out: pathlib.Path):
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # dnnlib imports it
    sys.path.insert(0, str(src))
    import dnnlib
    from torch_utils import persistence
    from training import networks

    torch.manual_seed(0)
    G = networks.Generator(
        z_dim=DIM,
        c_dim=0,
        w_dim=DIM,
        img_resolution=SIZE,
        img_channels=3,
        mapping_kwargs=dnnlib.EasyDict(num_layers=ADA_MLP),
        synthesis_kwargs=dnnlib.EasyDict(
            channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=ADA_CLAMP
        ),
    )
    assert [getattr(G.synthesis, f"b{r}").conv1.weight.shape[0] for r in CHANNELS] == list(
        CHANNELS.values()
    )
    D = networks.Discriminator(
        c_dim=0, img_resolution=SIZE, img_channels=3, channel_base=64, channel_max=8
    )
    gen = torch.Generator().manual_seed(2)
    _randomise(
        G,
        gen,
        [
            ("noise_strength", _randn(0.3)),
            ("affine.bias", _randn(0.2, 1.0)),
            ("w_avg", _randn(0.5)),
            ("bias", _randn(0.2)),
        ],
    )
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    D = copy.deepcopy(D).eval().requires_grad_(False)
    zt, wst = torch.from_numpy(z), torch.from_numpy(ws)
    kw = {"noise_mode": "const", "force_fp32": True}
    with torch.no_grad():
        res = {
            "ada_w": G_ema.mapping(zt, None),
            "ada_img_z": G_ema(zt, None, **kw),
            "ada_img_z_trunc": G_ema(
                zt, None, truncation_psi=TRUNC_ADA, truncation_cutoff=CUTOFF_ADA, **kw
            ),
            "ada_img_ws": G_ema.synthesis(wst, **kw),
            "ada_img_ws_none": G_ema.synthesis(wst, noise_mode="none", force_fp32=True),
            "ada_img_ws_noclamp": _without_clamp(G_ema).synthesis(wst, **kw),
        }
    # Pickle last: with the placeholder source the objects can no longer be deep-copied.
    for cls in list(vars(networks).values()):
        if isinstance(cls, type) and persistence.is_persistent(cls):
            cls._orig_module_src = SOURCE_PLACEHOLDER
    snapshot = {
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset"},
        "G_ema": G_ema,
        "D": D,
        "augment_pipe": None,
    }
    with open(out / "stylegan2_ada.pkl", "wb") as f:
        pickle.dump(snapshot, f)
    return {k: _nhwc(v) for k, v in res.items()}


def _without_clamp(G):
    G = copy.deepcopy(G)
    for m in G.modules():
        if hasattr(m, "conv_clamp"):
            m.conv_clamp = None
    return G


def _nhwc(t: torch.Tensor) -> np.ndarray:
    a = t.detach().numpy()
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rosinality", type=pathlib.Path, required=True, help="checkout dir")
    parser.add_argument("--ada", type=pathlib.Path, required=True, help="checkout dir")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.allow_tf32 = False
    rng = np.random.default_rng(0)
    n_latent = 2 * int(np.log2(SIZE)) - 2
    z = rng.standard_normal((N, DIM)).astype(np.float32)
    ws = (0.7 * rng.standard_normal((N, n_latent, DIM))).astype(np.float32)
    ros, ros_n_latent = rosinality_reference(args.rosinality, z, ws, args.out)
    assert ros_n_latent == n_latent
    ada = ada_reference(args.ada, z, ws, args.out)
    clamped = np.abs(ada["ada_img_ws"] - ada["ada_img_ws_noclamp"]).max()
    assert clamped > 1e-3, f"conv_clamp={ADA_CLAMP} never binds ({clamped})"
    npz = args.out / "stylegan2_reference.npz"
    np.savez_compressed(
        npz,
        z=z,
        ws=ws,
        trunc_ros=np.float64(TRUNC_ROS),
        trunc_ada=np.float64(TRUNC_ADA),
        cutoff_ada=np.int64(CUTOFF_ADA),
        torch_version=np.array(torch.__version__),
        **ros,
        **{k: v for k, v in ada.items() if k != "ada_img_ws_noclamp"},
    )
    for name in ("stylegan2_rosinality.pt", "stylegan2_ada.pkl", npz.name):
        print(f"{name}: {(args.out / name).stat().st_size:,} bytes")
    for k, v in {**ros, **ada}.items():
        print(f"{k}: {v.shape} {v.dtype} range [{v.min():.3f}, {v.max():.3f}]")
    print(f"clamp changes the ws image by up to {clamped:.3f}")


if __name__ == "__main__":
    main()
