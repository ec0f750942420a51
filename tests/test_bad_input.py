"""Bad input gives a correct result or a clear error (issue 20): image files and inversion jobs.

Every file here is crafted byte by byte in the test; none is larger than a few hundred bytes.
"""

import json
import os
import re
import time
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import png, registered_model, toy_loader

import reds_jax
from reds_jax import imageio
from reds_jax.core import validate
from reds_jax.jobs import cli
from reds_jax.jobs.augment import read_manifest
from reds_jax.jobs.experiment import ConfigError, JobConfig, get_experiment, parse_seeds
from reds_jax.jobs.inversion import InversionJobError, invert_files, list_images, load_images

# --- image files (item 2 and item 7) ----------------------------------------------------------


def test_16_bit_grey_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    # mid grey 32768 / 65535 and a ramp; 8-bit clipping would read 32768 as pure white
    ramp = np.array([[0, 16384, 32768, 65535]] * 4, ">u2")
    f = tmp_path / "ramp16.png"
    f.write_bytes(png(4, 4, 16, 0, [r.tobytes() for r in ramp]))
    x = imageio.read_image(f, 4, 4)
    assert x.shape == (4, 4, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], ramp / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey replicated to RGB


@pytest.mark.parametrize(
    "colour, channels", [(2, 3), (4, 2), (6, 4)], ids=["rgb48", "grey-alpha32", "rgba64"]
)
def test_16_bit_colour_pngs_are_scaled(tmp_path, colour, channels):
    row = np.full(4 * channels, 32768, ">u2").tobytes()
    f = tmp_path / "c16.png"
    f.write_bytes(png(4, 4, 16, colour, [row] * 4))
    np.testing.assert_allclose(imageio.read_image(f, 4, 4), 128 / 255, atol=1e-6)


def test_palette_and_low_bit_depth_pngs(tmp_path):
    pal = tmp_path / "pal.png"  # palette index 1 = (255, 0, 51) everywhere
    pal.write_bytes(png(4, 4, 8, 3, [bytes([1] * 4)] * 4, palette=bytes([0, 0, 0, 255, 0, 51])))
    np.testing.assert_allclose(imageio.read_image(pal, 4, 4)[1, 2], [1.0, 0.0, 0.2], atol=1e-6)
    two = tmp_path / "grey2.png"  # 2-bit grey, sample 2 of 3 -> 170 / 255
    two.write_bytes(png(4, 4, 2, 0, [bytes([0b10101010])] * 4))
    np.testing.assert_allclose(imageio.read_image(two, 4, 4), 2 / 3, atol=1e-6)


def test_decompression_bomb_is_a_clear_error(tmp_path):
    # a 100-byte PNG declaring 20000 x 20000 pixels: refused from its header by pillow's limit
    f = tmp_path / "bomb.png"
    f.write_bytes(png(20000, 20000, 8, 0, [], idat=b"x"))
    assert f.stat().st_size < 100
    with pytest.raises(ValueError, match=r"bomb\.png.*exceeds limit.*Downscale"):
        imageio.read_image(f, 4, 4)


@pytest.mark.parametrize("kind", ["folder", "loop", "broken", "truncated", "random"])
def test_unreadable_paths_name_the_file(tmp_path, kind):
    f = tmp_path / "x.png"
    if kind == "folder":
        f.mkdir()
    elif kind == "loop":
        f.symlink_to(tmp_path / "y.png")
        (tmp_path / "y.png").symlink_to(f)
    elif kind == "broken":
        f.symlink_to(tmp_path / "gone.png")
    elif kind == "truncated":
        f.write_bytes(png(4, 4, 8, 0, [bytes(range(4))] * 4)[:-30])
    else:
        f.write_bytes(np.random.default_rng(0).bytes(64))
    why = {"folder": "a folder", "loop": "symlink loop", "broken": "broken symlink"}.get(
        kind, "cannot read"
    )
    with pytest.raises(ValueError, match=why):
        imageio.read_image(f, 4, 4)
    with pytest.raises(InversionJobError, match=r"x\.png"):
        load_images(list_images([tmp_path]), 4, 4)  # the folder holding it: named, not skipped


def _invert(tmp_path, *args):
    return cli.main(["invert", *map(str, args), "--model", "rooms", "--out", str(tmp_path / "o")])


@pytest.mark.parametrize("kind", ["folder", "loop"])
def test_invert_on_a_bad_path_is_one_line_exit_2(tmp_path, capsys, kind):
    images = tmp_path / "imgs"
    images.mkdir()
    if kind == "folder":
        (images / "x.png").mkdir()
    else:
        (images / "x.png").symlink_to(images / "x.png")
    assert _invert(tmp_path, images) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "x.png" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"lr": float("nan")}, "--lr must be a finite number > 0"),
        ({"lr": -1.0}, "--lr must be a finite number > 0"),
        ({"prior_weight": float("inf")}, "--prior-weight must be a finite number >= 0"),
        ({"steps": 0}, "--steps must be a whole number >= 1"),
        ({"restarts": True}, "--restarts must be a whole number >= 1"),
    ],
)
def test_invert_files_refuses_bad_settings(tmp_path, settings, words):
    img = tmp_path / "a.png"
    imageio.save_png(np.zeros((4, 4, 3)), img)
    with pytest.raises(InversionJobError, match=words):
        invert_files("rooms", [img], tmp_path / "o", **settings)
    assert not (tmp_path / "o").exists()


def test_corrupt_inversion_npz_names_the_file(tmp_path, capsys):
    img = tmp_path / "a.png"
    imageio.save_png(np.zeros((4, 4, 3)), img)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "inversion.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert _invert(tmp_path, img) == 2
    err = capsys.readouterr().err
    assert "inversion.npz is not a readable inversion" in err and "delete it" in err
    # an object array (what np.load refuses as "pickled (object) data") names the file too
    np.savez(tmp_path / "o" / "inversion.npz", fingerprint=np.array([None], dtype=object))
    assert _invert(tmp_path, img) == 2
    assert "inversion.npz is not a readable inversion" in capsys.readouterr().err


# --- the command line: one line, exit 2, no traceback (items 7, 8, 9) -------------------------


@pytest.fixture
def toy():
    with registered_model("toy_bad", toy_loader, vary=("pixels",), fix=()) as name:
        yield name


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("command", ["traverse", "augment", "invert"])
@pytest.mark.parametrize("kind", ["file", "under-file", "read-only"])
def test_out_that_cannot_be_written(tmp_path, capsys, monkeypatch, toy, command, kind):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    out = {"file": notes, "under-file": notes / "sub", "read-only": locked / "o"}[kind]
    if kind == "read-only":
        locked.chmod(0o500)
        if os.geteuid() == 0:  # root may write anywhere: emulate the permission check
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and p != locked)
    img = tmp_path / "a.png"
    imageio.save_png(np.zeros((8, 8, 3)), img)
    args = {
        "traverse": ["traverse", "--model", toy, "--seeds", "0"],
        "augment": ["augment", "--model", toy, "--seeds", "0:2"],
        "invert": ["invert", str(img), "--model", toy],
    }[command]
    try:
        assert cli.main([*args, "--out", str(out)]) == 2
    finally:
        locked.chmod(0o700)
    want = {"file": "is a file", "under-file": "lies under the file", "read-only": "not writable"}
    _one_line_error(capsys, "--out", want[kind])
    assert not (tmp_path / "locked" / "o").exists()


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["invert", "a.png", "--lr", "nan"], "--lr"),
        (["invert", "a.png", "--prior-weight", "-1"], "--prior-weight"),
        (["traverse", "--step-size", "inf"], "--step-size"),
        (["traverse", "-k", "0"], "-k"),
        (["traverse", "--steps", "1.5"], "--steps"),
        (["augment", "--batch-size", "-3", "--out", "o"], "--batch-size"),
    ],
)
def test_non_finite_or_out_of_range_numbers_are_refused(capsys, argv, flag):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    _one_line_error(capsys, f"argument {flag}", "must be", "--help")


def test_config_that_is_a_folder(tmp_path, capsys, toy):
    assert cli.main(["traverse", "--config", str(tmp_path), "--model", toy]) == 2
    _one_line_error(capsys, "--config", "is a folder", "TOML file")


def test_duplicate_seeds_are_refused_and_touching_ranges_are_one_config(capsys, toy):
    assert cli.main(["traverse", "--model", toy, "--seeds", "0:5", "3"]) == 2
    _one_line_error(capsys, "seed 3 is given more than once")
    split = JobConfig.from_mapping({"model": toy, "seeds": ["0:20", "20:40"]})
    whole = JobConfig.from_mapping({"model": toy, "seeds": "0:40"})
    assert split.identity() == whole.identity() and split.seeds == ["0:40"]
    assert JobConfig.from_mapping({"model": toy, "seeds": [3, 4, 5]}).seeds == ["3:6"]


def test_huge_seed_ranges_are_not_materialised():
    tracemalloc.start()
    try:
        seeds = parse_seeds("0:3000000000")
        cfg = JobConfig.from_mapping({"model": "rooms", "seeds": ["0:200000000"]}).identity()
        chunk = seeds[2_999_999_990:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # bytes, not the 24 GB of an int64 array of them
    assert len(seeds) == 3_000_000_000 and chunk.tolist() == list(range(2_999_999_990, 3 * 10**9))
    assert cfg["seeds"] == ["0:200000000"]


def test_huge_traverse_jobs_get_a_memory_estimate_up_front(capsys, monkeypatch, toy):
    assert cli.main(["traverse", "--model", toy, "--seeds", "0:3000000000"]) == 2
    _one_line_error(capsys, "3000000000 start latent(s)", "GB of memory", "fewer seeds")
    monkeypatch.setattr(validate, "available_memory", lambda: 10**9)  # 1 GB free
    argv = ["traverse", "--model", toy, "--seeds", "0", "-k", "4", "--steps", "1000000"]
    assert cli.main(argv) == 2  # 8e6 frames of 772 floats: 24.7 GB
    _one_line_error(capsys, "k=4, steps=1000000", "GB of memory", "lower k, steps")


def test_unexpected_errors_are_one_line_unless_debug(capsys, monkeypatch):
    def boom(ns):
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli, "_cmd_traverse", boom)
    assert cli.main(["traverse"]) == 1
    _one_line_error(capsys, "internal error RuntimeError: something broke", "--debug")
    with pytest.raises(RuntimeError, match="something broke"):
        cli.main(["traverse", "--debug"])


def test_manifest_entry_without_count_is_redone(tmp_path, capsys, toy):
    out = tmp_path / "o"
    argv = ["augment", "--model", toy, "--seeds", "0:2", "--steps", "1", "-k", "1",
            "--shard-size", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    first = json.loads(lines[0])
    del first["count"]
    manifest.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    capsys.readouterr()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "manifest" in err and "redo" in err and "KeyError" not in err  # named, then redone
    assert len(read_manifest(out)) == 2  # the shard was redone and listed again


# --- core option checks (item 4, item 7's feature errors, item 8's z0 [0, d]) ----------------

_W = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.3, 0.0, 1.0], [0.0, 1.0, 1.0]])


def _gen(z):
    return jnp.tanh(jnp.asarray(_W, z.dtype) @ z).reshape(2, 2, 1)


def _left(x):
    return x[:, 0].ravel()


def _right(x):
    return x[:, 1].ravel()


class _Growing:
    """A feature with hidden state: its output grows on every call (not pure)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return jnp.tile(x.ravel(), self.calls)


def _raises(x):
    raise KeyError("no such landmark")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"ridge": float("inf")}, "ridge must be a finite number >= 0"),
        ({"ridge": float("nan")}, "ridge must be a finite number"),
        ({"ridge": "big"}, "ridge must be a finite number >= 0; got 'big' (a str)"),
        ({"ridge": -1.0}, "ridge must be a finite number >= 0"),
        ({"mode": "fd", "eps": 0}, "eps must be a finite number > 0"),
        ({"vary_weights": 0}, "vary_weights are all zero"),
        ({"vary_weights": "x"}, "vary_weights must be one number"),
        ({"weights": [1.0, 2.0]}, "weights needs 1 values"),
        ({"normalize": "no"}, "normalize must be True or False; got 'no'"),
        ({"step_size": "0.1"}, "FixedStep(size) must be a finite number > 0; got '0.1' (a str)"),
        ({"step_size": float("nan")}, "FixedStep(size) must be a finite number > 0"),
        ({"key": 5}, "key must be a PRNG key, e.g. key=jax.random.key(5)"),
        ({"k": True}, "k must be an int >= 1; got True (a bool)"),
        ({"k": 1.0}, "k must be an int >= 1; got 1.0"),
        ({"steps": True}, "steps must be an int"),
        ({"z0": np.zeros((0, 3))}, "N, d >= 1; got shape (0, 3)"),
        ({"vary": lambda x: (x > 0.5).ravel()}, "vary[0] returns a bool array"),
        ({"vary": lambda x: jnp.round(x * 255).astype(jnp.int32).ravel()}, "returns a int32"),
        ({"fix": [_right, lambda x: (x.ravel(), x.ravel())]}, "fix[1] must return one array"),
        ({"fix": [_raises]}, "fix[0] raised KeyError on an image of shape (2, 2, 1)"),
        ({"vary": _Growing()}, "vary[0] returns shape (4,) on one call and (8,)"),
        ({"k": 2, "steps": 10**9}, "steps must be an int >= 0 and <= 1000000"),
        ({"correct": 10**9}, "Corrector(iters) must be an int >= 1 and <= 100; got 1000000000"),
        ({"correct": 1, "cg_iters": 10**9}, "Corrector(cg_iters) must be an int >= 1 and <= 1000"),
        ({"cap_k": "yes"}, "cap_k must be True or False; got 'yes'"),
    ],
)
def test_core_refuses_bad_options_with_the_name(kwargs, words):
    args = {"z0": jnp.zeros(3), "vary": _left, "fix": [_right], "k": 1, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=re.escape(words)):
        _traverse(args)


def _traverse(args):
    """``reds_jax.traverse`` with ``args`` sorted into the step, the corrector, the solver, the
    Problem and the call (in that order, so each error comes from the object that owns it)."""
    z0 = args.pop("z0")
    call = {name: args.pop(name) for name in ("key", "steps") if name in args}
    step = reds_jax.FixedStep(args.pop("step_size", 0.1))
    if "correct" in args:
        call["corrector"] = reds_jax.Corrector(args.pop("correct"), args.pop("cg_iters", 8))
    solver = reds_jax.Dense(**{name: args.pop(name) for name in ("mode", "eps") if name in args})
    return reds_jax.traverse(reds_jax.Problem(_gen, **args), z0, solver=solver, step=step, **call)


def test_core_accepts_the_neighbouring_valid_values():
    problem = reds_jax.Problem(
        _gen, vary=_left, fix=[_right], ridge=0.0, vary_weights=[2.0], normalize=False
    )
    tr = reds_jax.traverse(problem, jnp.asarray([0.1, -0.2, 0.3]), steps=2, key=jax.random.key(5))
    assert tr.latents.shape == (2, 3, 3) and bool(jnp.all(jnp.isfinite(tr.latents)))
    steps = jnp.linalg.norm(jnp.diff(tr.latents, axis=1), axis=-1)
    np.testing.assert_allclose(steps, 0.1, rtol=1e-6)  # every step has length step_size


def test_fd_eps_zero_in_a_toml_job_names_the_option(toy):
    cfg = JobConfig.from_mapping(
        {"model": toy, "seeds": "0:1", "k": 1, "options": {"mode": "fd", "eps": 0}}
    )
    with pytest.raises(ConfigError, match="eps must be a finite number > 0"):
        get_experiment(cfg)
    cfg = JobConfig.from_mapping({"model": toy, "seeds": "0:1", "options": {"ridge": "big"}})
    with pytest.raises(ConfigError, match="ridge must be a finite number >= 0; got 'big'"):
        get_experiment(cfg)


def test_latents_with_nan_are_one_line(tmp_path, capsys, toy):
    z = np.zeros((2, 4))
    z[1, 2] = np.nan
    np.save(tmp_path / "z.npy", z)
    for command in ("traverse", "augment"):
        argv = [command, "--model", toy, "--latents", str(tmp_path / "z.npy")]
        assert cli.main([*argv, "--out", str(tmp_path / command)]) == 2
        _one_line_error(capsys, "latents", "NaN")
    assert not (tmp_path / "augment" / "config.json").exists()


def test_convert_of_a_hostile_pickle_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.pkl"
    deep.write_bytes(b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b".")
    assert cli.main(["convert", "stylegan2", str(deep), str(tmp_path / "o.msgpack")]) == 2
    _one_line_error(capsys, "deep.pkl", "deeper than")


def test_an_inversion_that_diverges_writes_nothing(tmp_path, monkeypatch, toy):
    from reds_jax.core import invert as core_invert

    real = core_invert.invert

    def diverging(*args, **kwargs):  # the real inversion, with a NaN where Adam blew up
        res = real(*args, **kwargs)
        return res._replace(latents=res.latents.at[0, 1].set(jnp.nan))

    monkeypatch.setattr(core_invert, "invert", diverging)
    img = tmp_path / "a.png"
    imageio.save_png(np.full((8, 8, 3), 0.5), img)
    with pytest.raises(InversionJobError, match=r"diverged .*a\.png.*smaller --lr"):
        invert_files(toy, [img], tmp_path / "o", steps=3, restarts=1, progress=False)
    assert not (tmp_path / "o" / "latents.npy").exists()


# --- upper bounds and named errors (issue 40 B, H) -----------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_iters": 10**12}, "max_iters must be an int >= 1 and <= 10000"),
        ({"cold_iters": 10**12}, "cold_iters must be an int >= 1 and <= 10000"),
        ({"iters": 10**5}, "iters must be an int >= 1 and <= 10000"),
        ({"probes": 10**9}, "probes must be an int >= 1 and <= 4096"),
        ({"guard": 10**6}, "guard must be an int >= 0 and <= 1024"),
        ({"tol": 1.5}, "tol must be a finite number > 0 and < 1"),
        ({"tol": 1.0}, "tol must be a finite number > 0 and < 1"),
        ({"turn_tol": 1e12}, "turn_tol must be a finite number > 0 and < 1"),
        ({"cold_tol": 1.5}, "cold_tol must be a finite number > 0 and < 1"),
        ({"cold_tol": "0.1"}, "cold_tol must be a finite number > 0 and < 1"),
    ],
)
def test_matrix_free_counts_and_tolerances_are_bounded(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        reds_jax.MatrixFree(**kwargs)
    reds_jax.MatrixFree(max_iters=10_000, probes=4096, tol=0.99, turn_tol=1e-9)  # the edges pass


def test_feature_specs_are_bounded():
    from reds_jax.jobs.models import parse_feature

    parse_feature("@".join(["pixels"] * 16), resolve=False)
    with pytest.raises(ValueError, match="composes 17 stages; join at most 16"):
        parse_feature("@".join(["pixels"] * 17), resolve=False)
    with pytest.raises(ValueError, match="has 1000000 characters; at most 1000") as err:
        parse_feature("x" * 10**6)
    assert len(str(err.value)) < 200  # the spec is not echoed in full


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--correct", "1000000000"], "argument --correct: must be an int >= 0 and <= 100"),
        (["--steps", "10000000"], "argument --steps: must be an int >= 0 and <= 1000000"),
        (["--scale", "100000"], "argument --scale: must be an int >= 1 and <= 64"),
        (["--option", "max_iters=1000000000000"], "max_iters must be an int >= 1 and <= 10000"),
        (["--option", "probes=1000000000"], "probes must be an int >= 1 and <= 4096"),
        (["--option", "tol=1.5"], "tol must be a finite number > 0 and < 1"),
        (["--option", 'cap_k="yes"'], "cap_k must be True or False"),
    ],
)
def test_cli_counts_are_bounded_before_any_work(capsys, toy, argv, words):
    argv = ["traverse", "--model", toy, "--seeds", "0", "--solver", "matrix_free", *argv]
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own exit
        code = stop.code
    assert code == 2
    _one_line_error(capsys, words)


@pytest.mark.parametrize(
    "table, words",
    [
        ({"correct": 10**9}, "field 'correct' must be an int >= 0 and <= 100"),
        ({"steps": 10**12}, "field 'steps' must be an int >= 0 and <= 1000000"),
        ({"options": {"cold_iters": 10**12}}, "cold_iters must be an int >= 1 and <= 10000"),
        ({"options": {"turn_tol": 1e12}}, "turn_tol must be a finite number > 0 and < 1"),
    ],
)
def test_toml_counts_are_bounded(toy, table, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        JobConfig.from_mapping({"model": toy, "seeds": "0:1", **table})


def _npy_header_only(path, shape, descr="<f4"):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": descr, "fortran_order": False, "shape": shape}
        )


def test_latents_files_are_checked_by_header_before_reading(tmp_path, capsys, monkeypatch, toy):
    np.savez(tmp_path / "z.npz", a=np.zeros((2, 4)))
    np.save(tmp_path / "obj.npy", np.array([None]), allow_pickle=True)
    _npy_header_only(tmp_path / "huge.npy", (10**9, 4))  # 16 GB promised, 128 bytes on disk
    with open(tmp_path / "big.npy", "wb") as f:  # a sparse 16 MB file with a valid header
        _npy_header_only(f.name, (10**6, 4))
    with open(tmp_path / "big.npy", "r+b") as f:
        f.truncate(128 + 16 * 10**6)
    np.save(tmp_path / "ints.npy", np.zeros((2, 4), np.int32))
    monkeypatch.setattr(validate, "available_memory", lambda: 10**6)  # 1 MB free
    for name, words in [
        ("z.npz", ("is not a readable .npy file", "a .npz archive holds several arrays")),
        ("obj.npy", ("holds Python objects",)),
        ("huge.npy", ("is truncated", "float32 (1000000000, 4)")),
        ("big.npy", ("reading the latents", "GB of memory", "pass fewer latents")),
        ("ints.npy", ("must hold a float array", "int32 (2, 4)")),
    ]:
        argv = ["traverse", "--model", toy, "--latents", str(tmp_path / name)]
        assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
        _one_line_error(capsys, "field 'latents'", *words)


def test_bad_model_factories_are_named_errors(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad_factories_40.py").write_text(
        "def raises(**kw):\n    raise RuntimeError('boom')\n"
        "def negative(**kw):\n    return (lambda z: z), -1\n"
        "def flat(**kw):\n    return (lambda z: z), 2.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, words in [
        ("raises", ("model factory 'bad_factories_40:raises' raised RuntimeError: boom",)),
        ("negative", ("reports latent_dim=-1", "int in [1, 16777216]")),
        ("flat", ("reports latent_dim=2.5",)),
    ]:
        argv = ["traverse", "--model", f"bad_factories_40:{name}", "--out", str(tmp_path / "o")]
        assert cli.main(argv) == 2
        _one_line_error(capsys, *words)


def test_augment_of_a_huge_seed_range_does_not_enumerate_shards(tmp_path, monkeypatch, toy):
    """``augment --seeds 0:3000000000`` globbed once per shard over 47 M shards (issue 40 D): here
    2 M one-item shards; the first shard starts without listing them (bytes, not 2 M entries)."""
    from reds_jax.jobs import augment as aug

    class Stop(Exception):
        pass

    class Stub:
        def run(self, **kwargs):
            assert kwargs["seeds"].tolist() == [0]
            raise Stop

    monkeypatch.setattr(aug, "_experiment", lambda cfg, latents: Stub())
    cfg = {"model": toy, "seeds": "0:2000000", "k": 1, "steps": 1, "shard_size": 1}
    stale = tmp_path / "o" / f".shard-00007.npz.1.ab{aug.TMP_SUFFIX}"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    t0 = time.process_time()
    tracemalloc.start()
    try:
        with pytest.raises(Stop):
            aug.augment(cfg, tmp_path / "o", progress=False, queue_size=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20 and time.process_time() - t0 < 30, (peak, time.process_time() - t0)
    assert not stale.exists()  # temp files of a killed run are still cleaned up


def test_load_dataset_reads_only_its_own_verified_shards(tmp_path):
    """A manifest line naming an absolute path or ``../`` (issue 40 I), a symlink out of the
    folder, or a shard whose bytes changed is refused; the job's own shards load."""
    import hashlib

    from reds_jax.jobs.augment import AugmentError, load_dataset
    from reds_jax.jobs.manifest import append_line

    out, secret = tmp_path / "job", tmp_path / "secret.npz"
    out.mkdir()
    np.savez(secret, seeds=np.arange(3))
    np.savez(out / "shard-00000.npz", seeds=np.arange(2))

    def entry(name, index=0, path=None):
        data = (path or (out / name)).read_bytes()
        return {"shard": name, "index": index, "sha256": hashlib.sha256(data).hexdigest(),
                "format": "npz", "seq": 1, "count": 2}  # fmt: skip

    append_line(out / "manifest.jsonl", entry("shard-00000.npz"))
    np.testing.assert_array_equal(load_dataset(out)["seeds"], [0, 1])
    (out / "shard-00001.npz").symlink_to(secret)
    for name in (str(secret), "../secret.npz", "shard-00001.npz"):
        (out / "manifest.jsonl").unlink()
        append_line(out / "manifest.jsonl", entry(name, index=1, path=secret))
        with pytest.raises(AugmentError, match="not its own file 'shard-00001.npz' inside"):
            load_dataset(out)
    (out / "manifest.jsonl").unlink()
    append_line(out / "manifest.jsonl", entry("shard-00000.npz"))
    np.savez(out / "shard-00000.npz", seeds=np.arange(5))  # changed after the manifest
    with pytest.raises(AugmentError, match="sha256 does not match the manifest"):
        load_dataset(out)


@pytest.mark.parametrize("command", ["traverse", "augment"])
def test_non_utf8_toml_names_the_file(tmp_path, capsys, toy, command):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'model = "caf\xe9"\n')  # Latin-1, not UTF-8
    args = ["--out", str(tmp_path / "o")] if command == "augment" else []
    assert cli.main([command, "--config", str(bad), *args]) == 2
    _one_line_error(capsys, str(bad), "not UTF-8", "0xe9", "save it as UTF-8")
