"""StyleGAN2: parity with two PyTorch implementations, safe converters, latent spaces, traversals.

fixtures/stylegan2_{rosinality.pt, ada.pkl, reference.npz} come from
scripts/make_stylegan2_fixture.py, which runs rosinality's and NVlabs' PyTorch code on random
weights in a separate environment; these tests need no torch and no third-party code.
"""

import contextlib
import os
import pathlib
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reds_jax
from reds_jax import features
from reds_jax.formats.ada_pickle import ADA_GLOBALS, PersistentRecord
from reds_jax.formats.torch_zip import load_torch_pickle, load_torch_zip
from reds_jax.generators.stylegan2 import (
    StyleGAN2Checkpoint,
    load_stylegan2_checkpoint,
    stylegan2,
)
from reds_jax.generators.stylegan2_ada import convert_ada_network, load_stylegan2_ada
from reds_jax.generators.stylegan2_convert import (
    convert_rosinality_state_dict,
    convert_stylegan2,
    load_stylegan2_rosinality,
    main,
)
from reds_jax.generators.stylegan2_nets import StyleGAN2, StyleGAN2Config

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
ROS = FIXTURES / "stylegan2_rosinality.pt"
ADA = FIXTURES / "stylegan2_ada.pkl"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURES / "stylegan2_reference.npz"))


def _outputs(ckpt, ref, runs):
    """All reference comparisons of one checkpoint in one jit: ``name -> (kwargs, input, dtype)``;
    images are ``2 x - 1`` of the unclipped [0, 1] output, ``from_z`` gives latents."""
    fns = {}
    for name, (kw, _, _) in runs.items():
        g = stylegan2(ckpt, clip=False, **kw)
        fns[name] = g.from_z if name.endswith("_w") else g.generator
    inputs = {
        name: jnp.asarray(ref[src].reshape(len(ref[src]), -1), dt)
        for name, (_, src, dt) in runs.items()
    }
    out = jax.jit(lambda xs: {n: jax.vmap(fns[n])(x) for n, x in xs.items()})(inputs)
    return {n: np.asarray(v) if n.endswith("_w") else np.asarray(v) * 2 - 1 for n, v in out.items()}


def test_rosinality_parity(ref):
    ckpt = load_stylegan2_rosinality(ROS)
    cfg = ckpt.config
    assert (cfg.resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers) == (32, 64, 64, 8)
    assert cfg.channels == (32, 32, 32, 16) and cfg.conv_clamp is None
    f32, f64 = jnp.float32, jnp.float64
    got = _outputs(
        ckpt,
        ref,
        {
            "ros_w": ({"space": "w"}, "z", f64),
            "ros_img_z": ({"space": "z"}, "z", f32),
            "ros_img_z_trunc": ({"space": "z", "truncation": float(ref["trunc_ros"])}, "z", f32),
            "ros_img_wplus": ({"space": "w+"}, "ws", f32),
            "ros_img_wplus_none": ({"space": "w+", "noise_mode": "none"}, "ws", f32),
            "f64": ({"space": "z"}, "z", f64),
        },
    )
    np.testing.assert_allclose(got.pop("ros_w"), ref["ros_w"], atol=1e-9)
    # float64 reference on float32 weights: only the folded conv scale is rounded to float32
    np.testing.assert_allclose(got.pop("f64"), ref["ros_img_z"], atol=5e-6)
    for name, img in got.items():
        assert img.shape == (2, 32, 32, 3)
        np.testing.assert_allclose(img, ref[name], atol=TOL, err_msg=name)


def test_ada_parity(ref):
    ckpt = load_stylegan2_ada(ADA)
    cfg = ckpt.config
    assert (cfg.resolution, cfg.mapping_layers, cfg.conv_clamp) == (32, 2, 1.5)
    trunc = {"truncation": float(ref["trunc_ada"]), "truncation_cutoff": int(ref["cutoff_ada"])}
    f32 = jnp.float32
    got = _outputs(
        ckpt,
        ref,
        {
            "ada_w": ({"space": "w+"}, "z", f32),
            "ada_img_z": ({"space": "z"}, "z", f32),
            "ada_img_z_trunc": ({"space": "z", **trunc}, "z", f32),
            "ada_img_ws": ({"space": "w+"}, "ws", f32),
            "ada_img_ws_none": ({"space": "w+", "noise_mode": "none"}, "ws", f32),
        },
    )
    w = got.pop("ada_w").reshape(ref["ada_w"].shape)
    np.testing.assert_allclose(w, ref["ada_w"], atol=1e-5)
    for name, img in got.items():
        np.testing.assert_allclose(img, ref[name], atol=TOL, err_msg=name)


def test_rosinality_without_latent_avg_estimates_it():
    sd = load_torch_zip(ROS, extra_globals={("argparse", "Namespace"): _Inert})
    est = convert_rosinality_state_dict(sd["g_ema"]).variables["buffers"]["mapping"]["w_avg"]
    # the torch side used its own 4096 samples: agreement up to Monte Carlo error
    np.testing.assert_allclose(est, sd["latent_avg"], atol=0.05)


class _Inert:
    def __setstate__(self, state):
        self.state = state


def test_convert_cli_and_msgpack_roundtrip(tmp_path, capsys):
    out = tmp_path / "ada.msgpack"
    assert main([str(ADA), str(out)]) == 0
    assert "32x32 StyleGAN2" in capsys.readouterr().out
    loaded = load_stylegan2_checkpoint(out)
    direct = convert_stylegan2(ADA)
    assert loaded.config == direct.config
    jax.tree.map(np.testing.assert_array_equal, loaded.variables, direct.variables)
    assert stylegan2(out, space="w+").latent_dim == 8 * 64
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), str(tmp_path / "x.msgpack")]) == 2
    assert "neither a torch.save zip" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a reds_jax StyleGAN2 checkpoint"):
        load_stylegan2_checkpoint(_write(tmp_path / "o.msgpack", b"\x80"))


# --- refusing unknown / malicious pickle content ----------------------------------------------


def _write(path, data):
    path.write_bytes(data)
    return path


class _Evil:
    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args


def _named(module, name, fn):
    """A new function calling ``fn``, importable (for pickle) as ``module.name``."""

    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper.__module__, wrapper.__qualname__, wrapper.__name__ = module, name, name
    return wrapper


@contextlib.contextmanager
def _fake_modules(specs):
    """Registers modules ``{name: {attr: fn}}`` so pickle.dumps can name their functions."""
    mods = {}
    for name, attrs in specs.items():
        mods[name] = types.ModuleType(name)
        for parent in [name.rsplit(".", 1)[0]] if "." in name else []:
            mods.setdefault(parent, types.ModuleType(parent))
        for attr, fn in attrs.items():
            setattr(mods[name], attr, _named(name, attr, fn))
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_malicious_pickles_are_refused_unexecuted(tmp_path):
    marker = tmp_path / "executed"
    cmd = f"touch {marker}"
    cases = {
        "os.system": pickle.dumps({"G_ema": _Evil(os.system, cmd)}),
        "eval": pickle.dumps(_Evil(eval, f"open({str(marker)!r}, 'w')"), protocol=2),
        "exec": pickle.dumps(_Evil(exec, "x = 1")),
        "numpy object dtype": pickle.dumps(np.float64(1.0)).replace(b"f8", b"O8"),
    }

    def trap(*args, **kwargs):
        marker.write_text("executed")

    specs = {
        "torch_utils.persistence": {"_reconstruct_persistent_obj": trap, "persistent_class": trap},
        "dnnlib.util": {"call_func_by_name": trap},
    }
    with _fake_modules(specs) as mods:
        persistence = mods["torch_utils.persistence"]
        cases["persistent_class"] = pickle.dumps(_Evil(persistence.persistent_class, 1))
        cases["call_func_by_name"] = pickle.dumps(_Evil(mods["dnnlib.util"].call_func_by_name))
        meta = {"type": "module", "class_name": "G", "module_src": "", "state": {}}
        cases["module record"] = pickle.dumps(_Evil(persistence._reconstruct_persistent_obj, meta))
        src = f"open({str(marker)!r}, 'w').write('pwned')\nclass Generator: pass\n"
        meta = {"type": "class", "version": 4, "module_src": src, "class_name": "Generator"}
        meta["state"] = {"c_dim": 0, "_modules": {}}
        source_pkl = pickle.dumps({"G_ema": _Evil(persistence._reconstruct_persistent_obj, meta)})
    for name, data in cases.items():
        with pytest.raises(pickle.UnpicklingError):
            load_torch_pickle(_write(tmp_path / f"{name}.pkl", data), extra_globals=ADA_GLOBALS)
        with pytest.raises(pickle.UnpicklingError):
            load_stylegan2_ada(tmp_path / f"{name}.pkl")
    # a record whose module source would run code: the source is never looked at
    with pytest.raises(ValueError, match="no submodule 'mapping'"):
        load_stylegan2_ada(_write(tmp_path / "src.pkl", source_pkl))
    # a storage stream that smuggles a global into its inner pickle
    inner = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
    with _fake_modules({"torch.storage": {"_load_from_bytes": trap}}) as mods:
        data = pickle.dumps(_Evil(mods["torch.storage"]._load_from_bytes, inner))
    with pytest.raises(pickle.UnpicklingError, match="posix.system"):
        load_torch_pickle(_write(tmp_path / "storage.pkl", data))
    assert not marker.exists()


def test_unsupported_networks_are_refused():
    G = load_torch_pickle(ADA, extra_globals=ADA_GLOBALS)["G_ema"]
    assert isinstance(G, PersistentRecord) and G.class_name == "Generator"
    G.state["c_dim"] = 1
    with pytest.raises(ValueError, match="Conditional"):
        convert_ada_network(G)
    G.state["c_dim"] = 0
    block = G.state["_modules"]["synthesis"].state["_modules"]["b8"]
    block.state["architecture"] = "resnet"
    with pytest.raises(ValueError, match="architecture must be 'skip'"):
        convert_ada_network(G)
    block.state["architecture"] = "skip"
    G.state["_modules"]["synthesis"].class_name = "SynthesisNetwork3"  # e.g. StyleGAN3
    with pytest.raises(ValueError, match="not StyleGAN3"):
        convert_ada_network(G)
    sd = load_torch_zip(ROS, extra_globals={("argparse", "Namespace"): _Inert})["g_ema"]
    with pytest.raises(ValueError, match="Unexpected keys"):
        convert_rosinality_state_dict({**sd, "extra.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="missing"):
        convert_rosinality_state_dict({k: v for k, v in sd.items() if k != "conv1.noise.weight"})


# --- latent spaces and traversals on a tiny random model -------------------------------------

TINY = StyleGAN2Config(8, z_dim=6, w_dim=4, channels=(6, 4), mapping_layers=2)


@pytest.fixture(scope="module")
def tiny():
    """Random variables (numpy, no compile): weights N(0, 1), affine biases 1 + N(0, 0.1^2)."""
    shapes = jax.eval_shape(
        StyleGAN2(TINY).init, jax.random.key(0), jnp.zeros(TINY.z_dim, jnp.float32)
    )
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        x = rng.standard_normal(leaf.shape).astype(np.float32)
        keys = jax.tree_util.keystr(path)
        if "affine']['bias" in keys:
            return 1.0 + 0.1 * x
        return 0.3 * x if "bias" in keys or "noise_strength" in keys or "w_avg" in keys else x

    return StyleGAN2Checkpoint(TINY, jax.tree_util.tree_map_with_path(draw, shapes))


def test_latent_spaces_agree(tiny):
    z = jax.random.normal(jax.random.key(2), (TINY.z_dim,), jnp.float64)
    kw = {"truncation": 0.7, "truncation_cutoff": 3}
    gens = {s: stylegan2(tiny, space=s, **kw) for s in ("z", "w+", "s")}
    gens["w"] = stylegan2(tiny, space="w", truncation=0.7)
    gens["z_w"] = stylegan2(tiny, space="z", truncation=0.7)
    images = jax.jit(lambda z: {s: g.generator(g.from_z(z)) for s, g in gens.items()})(z)
    assert images["z"].shape == (8, 8, 3) and images["z"].dtype == jnp.float64
    dims = {"z": TINY.z_dim, "w": TINY.w_dim, "w+": TINY.num_ws * TINY.w_dim}
    dims["s"] = sum(TINY.style_dims)
    for space, d in dims.items():
        assert gens[space].latent_dim == d
        assert gens[space].from_z(z).shape == (d,)
    for space, want in [("w+", "z"), ("s", "z"), ("w", "z_w")]:
        np.testing.assert_allclose(images[space], images[want], atol=1e-12, err_msg=space)
    assert not np.allclose(images["z"], images["z_w"])  # the cutoff matters


def test_noise_modes_and_bad_input(tiny):
    w = jnp.full((TINY.w_dim,), 0.3, jnp.float64)
    gens = [
        stylegan2(tiny).generator,
        stylegan2(tiny, noise_mode="none").generator,
        *(stylegan2(tiny, noise_mode="random", key=jax.random.key(k)).generator for k in (0, 0, 1)),
    ]
    const, none, rand0, rand0_again, rand1 = jax.jit(lambda w: [g(w) for g in gens])(w)
    np.testing.assert_allclose(rand0, rand0_again, atol=1e-12)  # a function of the key only
    for other in (const, none, rand1):
        assert not np.allclose(rand0, other)
    with pytest.raises(ValueError, match="needs key"):
        stylegan2(tiny, noise_mode="random")
    with pytest.raises(ValueError, match="space="):
        stylegan2(tiny, space="x")
    with pytest.raises(ValueError, match="cannot express"):
        stylegan2(tiny, space="w", truncation=0.5, truncation_cutoff=2)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        stylegan2(tiny).generator(jnp.zeros(5, jnp.float64))
    with pytest.raises(ValueError, match="do not fit"):
        stylegan2(StyleGAN2Checkpoint(StyleGAN2Config(16, z_dim=6, w_dim=4), tiny.variables))


@pytest.mark.parametrize("space", ["z", "w", "w+", "s"])
def test_traverse_shapes_in_every_space(tiny, space):
    g = stylegan2(tiny, space=space, truncation=0.8)
    z = jax.random.normal(jax.random.key(3), (2, TINY.z_dim), jnp.float64)
    z0 = jax.vmap(g.from_z)(z)
    problem = reds_jax.Problem(g.generator, features.pixels(), method="random")
    tr = reds_jax.traverse(problem, z0, path="linear", steps=2, key=jax.random.key(4))
    assert tr.latents.shape == (2, 2, 3, g.latent_dim)
    np.testing.assert_allclose(np.asarray(tr.latents[:, :, 0]), np.repeat(z0[:, None], 2, 1))


def test_reds_traversal_end_to_end(tiny):
    g = stylegan2(tiny, space="w", truncation=0.8)
    z0 = jax.vmap(g.from_z)(jax.random.normal(jax.random.key(5), (2, TINY.z_dim), jnp.float64))
    problem = reds_jax.Problem(g.generator, features.lowpass(1.0), [features.highpass(1.0)])
    tr = reds_jax.traverse(problem, z0, steps=3, step=reds_jax.FixedStep(0.2))
    assert tr.latents.shape == (2, 2, 4, TINY.w_dim)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tr))
    vary, fix = tr.vary_distances[0], tr.fix_distances[0]
    assert fix.shape == vary.shape == (2, 2, 4)
    assert bool(jnp.all(vary[:, :, -1] > 0))
