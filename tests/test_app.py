"""The explorer's callbacks (``reds_jax.app``): page inputs -> the library's traversal, exports that
``reds-jax traverse`` reproduces, no recompile for a new step size or seed, and every bad input as
an :class:`AppError` (the page shows its message). The browser test is tests/test_app_browser.py."""

import dataclasses
import math
import shlex
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import reds_jax
from reds_jax.app import access
from reds_jax.app import explorer as E
from reds_jax.jobs import cli, models
from reds_jax.jobs.experiment import JobConfig

ARGS = "size=16, latent_dim=4"
BOX = "0.25,0.25,0.5,0.5"
INPUTS = E.Inputs(
    model="rooms",
    model_args=ARGS,
    seed=5,
    vary=f"region:{BOX}",
    fix=f"region:{BOX},invert",
    k=1,
    steps=2,
    step_size=0.3,
)


@pytest.fixture(scope="module")
def explorer():
    return E.Explorer()


@pytest.fixture(scope="module")
def first(explorer):
    return explorer.run(INPUTS)


def _library(explorer, inputs, seed):
    """``reds_jax.traverse`` with the CLI's start latent and key for ``seed`` (the same model and
    feature objects, so no second compile)."""
    cfg = explorer.config(inputs)
    model = explorer.model(cfg.model, cfg.model_args)
    z0 = models.start_latents([seed], model.latent_dim, dtype=jnp.float32)[0]
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), seed), 1)
    problem = reds_jax.Problem(
        model.generator, explorer.features(cfg.vary), explorer.features(cfg.fix),
        method=cfg.method, k=cfg.k,
    )  # fmt: skip
    step = reds_jax.FixedStep(cfg.step_size)
    return reds_jax.traverse(problem, z0, path=cfg.path, steps=cfg.steps, step=step, key=key)


def test_run_is_the_library_traversal(explorer, first):
    a = first.arrays
    assert first.config.model_args == {"size": 16, "latent_dim": 4}
    assert a["images"].shape == (1, 2, 3, 16, 16, 3) and a["images"].dtype == np.uint8
    tr = _library(explorer, INPUTS, seed=5)
    np.testing.assert_allclose(a["latents"][0], tr.latents, rtol=1e-6)
    np.testing.assert_allclose(a["vary_distances"][0, 0], tr.vary_distances[0], rtol=1e-5)
    np.testing.assert_allclose(a["fix_distances"][0, 0], tr.fix_distances[0], rtol=1e-5)
    np.testing.assert_allclose(a["values"][0], tr.values, rtol=1e-5)
    # the start latent is the seed's, every step has the requested length
    z0 = models.start_latents([5], 4, dtype=jnp.float32)[0]
    np.testing.assert_allclose(a["latents"][0, :, 0], np.stack([z0, z0]), rtol=0)
    steps = np.linalg.norm(np.diff(a["latents"][0], axis=1), axis=-1)
    np.testing.assert_allclose(steps, 0.3, rtol=1e-5)
    # the images are the generator's
    m = explorer.model("rooms", {"size": 16, "latent_dim": 4})
    img = np.asarray(m.generator(jnp.asarray(a["latents"][0, 1, 2])))
    np.testing.assert_allclose(a["images"][0, 1, 2], np.round(np.clip(img, 0, 1) * 255), atol=1)
    assert first.diagnostics == E.diagnostics_counts(getattr(tr, "diagnostics", None))


def test_new_step_size_or_seed_does_not_recompile(explorer, first):
    del first  # compiled this configuration
    before = E.compile_count()
    second = explorer.run(dataclasses.replace(INPUTS, step_size=0.55, seed=11))
    third = explorer.run(dataclasses.replace(INPUTS, step_size=0.2, seed=2))
    assert E.compile_count() == before
    assert not second.compiled and not third.compiled
    tr = _library(explorer, dataclasses.replace(INPUTS, step_size=0.55), seed=11)
    np.testing.assert_allclose(second.arrays["latents"][0], tr.latents, rtol=1e-6)
    steps = np.linalg.norm(np.diff(second.arrays["latents"][0], axis=1), axis=-1)
    np.testing.assert_allclose(steps, 0.55, rtol=1e-5)


def test_distance_table_and_plot_rows_report_the_distances(first):
    rows = {}
    for line in E.distance_table(first).splitlines():
        head, _, numbers = line.rpartition(": ")
        rows[head] = [float(v) for v in numbers.split()]
    a = first.arrays
    assert list(rows) == [
        f"vary region:{BOX} +v1", f"vary region:{BOX} -v1",
        f"fix region:{BOX},invert +v1", f"fix region:{BOX},invert -v1",
    ]  # fmt: skip
    np.testing.assert_allclose(rows[f"vary region:{BOX} -v1"], a["vary_distances"][0, 0, 1], 1e-5)
    np.testing.assert_allclose(
        rows[f"fix region:{BOX},invert +v1"], a["fix_distances"][0, 0, 0], 1e-5
    )
    plot = E.plot_rows(first)
    assert len(plot) == 2 * 2 * 3
    assert plot[4] == (
        1,
        pytest.approx(float(a["vary_distances"][0, 0, 1, 1])),
        f"vary region:{BOX} -v1",
    )


def test_exports_are_what_reds_jax_traverse_writes(explorer, first, tmp_path, capsys):
    files = explorer.export(first, tmp_path / "app")
    assert sorted(files) == ["command", "grid", "npz", "toml"]
    with Image.open(files["grid"]) as im:
        assert im.size == (3 * (16 * 8 + 2) + 2, 2 * (16 * 8 + 2) + 2)
    with np.load(files["npz"], allow_pickle=False) as npz:
        app = {k: npz[k] for k in npz.files}
    # the command line, run in this process, writes the same traversals.npz
    argv = shlex.split(files["command"].read_text())
    assert argv[:2] == ["reds-jax", "traverse"] and argv[argv.index("--seeds") + 1] == "5"
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert cli.main(argv[1:]) == 0
    with np.load(tmp_path / "cli" / "traversals.npz", allow_pickle=False) as npz:
        assert list(npz.files) == list(app)
        for name in app:
            if app[name].dtype.kind in "fc":
                np.testing.assert_allclose(npz[name], app[name], rtol=1e-4, atol=1e-6)
            elif name == "images":
                assert np.abs(npz[name].astype(int) - app[name]).max() <= 1
            else:
                np.testing.assert_array_equal(npz[name], app[name])
    # the TOML job is the same JobConfig
    job = tomllib.loads(files["toml"].read_text())
    assert job.pop("out") == E.OUT and job.pop("seeds") == [5]
    assert JobConfig.from_mapping(job) == dataclasses.replace(first.config, seeds=None)
    capsys.readouterr()


def test_uploaded_latent_exports_start_npy(explorer, first, tmp_path):
    z = first.arrays["latents"][0, 0, 2]  # a latent on the path: start again from there
    res = explorer.run(INPUTS, latent=z)
    assert res.seed == 0 and not res.compiled
    np.testing.assert_allclose(res.arrays["latents"][0, :, 0], np.stack([z, z]))
    files = explorer.export(res, tmp_path)
    np.testing.assert_array_equal(np.load(files["latents"]), z[None])
    assert "--latents start.npy" in files["command"].read_text()
    assert tomllib.loads(files["toml"].read_text())["latents"] == "start.npy"
    with pytest.raises(E.AppError, match="4 finite numbers"):
        explorer.run(INPUTS, latent=np.zeros(3))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"k": 9}, "k=9 is out of range"),
        ({"k": 5}, "k=5 is out of range for method='reds'"),  # traverse's own check: d = 4
        ({"k": 1.5}, "whole number"),
        ({"steps": -1}, "steps=-1 is out of range"),
        ({"step_size": 0}, "step_size"),
        ({"step_size": "nan"}, "finite"),
        ({"method": "nope"}, "method"),
        ({"vary": ""}, "at least one feature"),
        ({"vary": "nonsense:1"}, "unknown feature 'nonsense'"),
        ({"fix": "lowpass:a"}, "not a number"),
        ({"model": "no_such_model"}, "not allowed on this page"),
        ({"model": "missing.msgpack"}, "not allowed on this page"),
        ({"model_args": "size"}, "KEY=VALUE"),
        ({"model_args": "colour=3"}, "does not accept"),
        ({"seed": -1}, "seed must lie in"),
        ({"options": "nope=1"}, "unknown key"),
    ],
)
def test_bad_inputs_raise_app_errors(explorer, change, message):
    with pytest.raises(E.AppError, match=message):
        explorer.run(dataclasses.replace(INPUTS, **change))


def test_feature_builder_specs():
    assert E.feature_spec("lowpass", 4) == "lowpass:4"
    assert E.feature_spec("lowpass", 2.5, box=BOX) == f"lowpass:2.5@region:{BOX}"
    assert E.feature_spec("pixels", box=BOX) == f"region:{BOX}"
    assert E.feature_spec("pixels", box=BOX, outside=True) == f"region:{BOX},invert"
    assert E.feature_spec("band", 0.05, 0.2) == "band:0.05,0.2"
    assert E.feature_spec("none") == "" and E.feature_spec("identity") == "identity"
    for spec in ("lowpass:4", f"lowpass:2.5@region:{BOX}", "band:0.05,0.2", f"region:{BOX},invert"):
        models.parse_feature(spec, resolve=False)  # every builder spec is a CLI spec
    for args, message in [
        (("lowpass", 0), "sigma must be > 0"),
        (("highpass", None), "must be a number"),
        (("band", 0.3, 0.2), "low < high"),
        (("pixels", None, None, "", True), "needs a box"),
        (("identity", None, None, BOX), "whole face"),
        (("warp",), "unknown feature kind"),
    ]:
        with pytest.raises(E.AppError, match=message):
            E.feature_spec(*args)
    assert "identity" in E.feature_kinds("faces") and "identity" not in E.feature_kinds("rooms")


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.1,0.2,0.3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("0.1,0.2,0,0.3", "empty region"),
        ("0.6,0.2,0.5,0.3", "outside the image"),
        ("-0.1,0.2,0.5,0.3", "outside the image"),
    ],
)
def test_bad_boxes(text, message):
    with pytest.raises(E.AppError, match=message):
        E.parse_box(text)


def test_boxes_and_clicks():
    assert E.parse_box("") is None
    assert E.parse_box("0.1 0.2 0.5 0.6") == (0.1, 0.2, 0.5, 0.6)
    pending, box = E.click_box(None, 192, 64, 256, 256)
    assert pending == (0.75, 0.25) and box is None
    assert E.click_box(pending, 64, 192, 256, 256) == (None, "0.25,0.25,0.5,0.5")  # any corners
    assert E.click_box((0.5, 0.5), 400, -5, 256, 256)[1] == "0,0.5,0.5,0.5"  # clipped to the image
    assert E.model_choice("rooms") == ("rooms", {})
    assert E.parse_model_args('size=32\nname="x", flag=true') == {
        "size": 32,
        "name": "x",
        "flag": True,
    }


def test_msgpack_path_names_the_stylegan2_factory(tmp_path):
    path = tmp_path / "ffhq.msgpack"
    path.write_bytes(b"")
    allowed = access.Allowed.of(folders=[tmp_path])
    model, args = E.model_choice(str(path), allowed)
    path = path.resolve()
    assert model == E.STYLEGAN2_FACTORY and args == {"params_or_path": str(path), "space": "z"}
    explorer = E.Explorer(allowed=allowed)
    cfg = explorer.config(dataclasses.replace(INPUTS, model=str(path), model_args=""))
    line = E.command_line(cfg, seed=0)
    assert f"--model-arg 'params_or_path=\"{path}\"'" in line and 'space=\\"z\\"' not in line
    assert cli.key_value(shlex.split(line)[5])[1] == str(path)
    assert tomllib.loads(E.toml_job(cfg, seed=0))["model_args"]["space"] == "z"


def test_uploads_are_checked(tmp_path):
    ex = E.Explorer(max_upload_bytes=4096)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(E.AppError, match="cannot read the upload"):
        ex.read_upload(garbage, 16, 16)
    with pytest.raises(E.AppError, match="upload an image"):
        ex.read_upload(tmp_path / "missing.png", 16, 16)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(big)
    with pytest.raises(E.AppError, match="the limit is"):
        ex.read_upload(big, 16, 16)
    ok = tmp_path / "wide.png"
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, 10:30] = 255  # the centre crop of a 2:1 image is white
    Image.fromarray(rgb).save(ok)
    img = ex.read_upload(ok, 16, 16)
    assert img.shape == (16, 16, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, 1.0, atol=1e-6)


def test_too_many_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "MAX_UPLOAD_PIXELS", 100)
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(path)
    with pytest.raises(E.AppError, match="400 pixels"):
        E.Explorer().read_upload(path, 16, 16)


def test_invert_an_upload(explorer, tmp_path):
    """An image the generator made is found again (high PSNR); the PSNR is the reconstruction's."""
    cfg = explorer.config(INPUTS)
    target = explorer.image(cfg, explorer.start_latent(cfg, 7))
    path = tmp_path / "room.png"
    Image.fromarray(target).save(path)
    said = []
    latent, psnr, recon = explorer.invert(
        INPUTS, path, steps=150, restarts=2, progress=lambda f, desc="": said.append(desc)
    )
    assert "inverting: step 25 of 150" in said  # steps done, not only elapsed time (issue 35)
    assert latent.shape == (4,) and recon.shape == (16, 16, 3)
    mse = np.mean((explorer.image(cfg, latent) / 255.0 - target / 255.0) ** 2)
    assert psnr == pytest.approx(10 * math.log10(1 / mse), abs=0.5)  # uint8 rounding of the images
    assert psnr > 25.0
    with pytest.raises(E.AppError, match="steps"):
        explorer.invert(INPUTS, path, steps=0)


def test_toml_and_command_line_are_the_same_job():
    cfg = JobConfig.from_mapping(
        {"model": "rooms", "vary": ["lowpass:4"], "fix": [], "options": {"ridge": 1e-4},
         "model_args": {"size": 16}, "key": 3, "solver": "dense", "step_size": 0.25,
         "step_target": 0.1, "correct": 2}
    )  # fmt: skip
    line = E.command_line(cfg, seed=2, out="my out")
    assert "--no-fix" in line and "--option ridge=0.0001" in line and "--key 3" in line
    assert shlex.split(line)[-1] == "my out"
    # the CLI's own parser reads the line back into the same JobConfig
    ns = cli._parser().parse_args(shlex.split(line)[1:])
    parsed, out = cli._job_config(ns, augment=False)
    assert out == "my out" and [int(s) for s in parsed.seeds] == [2]
    assert dataclasses.replace(parsed, seeds=None) == cfg
    job = tomllib.loads(E.toml_job(cfg, seed=2))
    assert job.pop("out") == E.OUT and job.pop("seeds") == [2]
    assert JobConfig.from_mapping(job) == cfg


def test_official_preset_is_a_method_choice():
    """``official`` on the method menu is ``preset = "official"``; the exports name the preset and
    only what differs from it, and read back into the same resolved JobConfig."""
    assert "official" in E.METHOD_CHOICES
    ex = E.Explorer()
    cfg = ex.config(dataclasses.replace(INPUTS, method="official", options="beta_fix=0.9"))
    assert cfg.preset == "official" and cfg.method == "nullspace"
    assert cfg.options["mode"] == "fd_official" and cfg.options["beta_fix"] == 0.9
    line = E.command_line(cfg, seed=1)
    assert "--preset official" in line and "--method" not in line
    assert "--option beta_fix=0.9" in line and "mode=" not in line
    ns = cli._parser().parse_args(shlex.split(line)[1:])
    parsed, _ = cli._job_config(ns, augment=False)
    assert dataclasses.replace(parsed, seeds=None) == cfg
    job = tomllib.loads(E.toml_job(cfg, seed=1))
    assert job["preset"] == "official" and job["options"] == {"beta_fix": 0.9}
    job.pop("out"), job.pop("seeds")
    assert JobConfig.from_mapping(job) == cfg


def test_app_command_arguments_are_checked(capsys):
    pytest.importorskip("gradio")
    assert cli.main(["app", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert cli.main(["app", "--model", "no_such_model"]) == 2
    assert "not allowed on this page" in capsys.readouterr().err


def test_page_callbacks(explorer, first, tmp_path):
    """The Gradio callbacks: the start image with boxes, clicks, the feature builder, a run."""
    gr = pytest.importorskip("gradio")
    from reds_jax.app import ui

    page = ui._Page(explorer, str(tmp_path))
    img = page.start_image("rooms", ARGS, "seed", 5, 0, BOX, "", None, None)
    assert img.shape == (256, 256, 3)
    assert tuple(img[64, 100]) == ui.VARY_COLOR and tuple(img[128, 128]) != ui.VARY_COLOR
    raw = explorer.image(first.config, first.arrays["latents"][0, 0, 0])
    np.testing.assert_array_equal(img[128, 128], raw[8, 8])
    assert page.spec("lowpass", 4, None, BOX, False) == (f"lowpass:4@region:{BOX}", "")
    update, hint = page.spec("lowpass", 4, None, "0.5,0.5,0,0", False)
    assert "empty region" in hint
    evt = type("Evt", (), {"index": [64, 64]})()
    pending, vary_box, fix_box = page.click("fix box", None, "", "", evt)
    evt.index = [192, 128]
    assert page.click("fix box", pending, "", "", evt) == (None, "", "0.25,0.25,0.25,0.5")
    values = [getattr(INPUTS, f) for f in ("model", "model_args", "seed", "key", "vary", "fix",
              "method", "path", "k", "steps", "step_size", "solver", "options", "step_target", "correct")]  # fmt: skip
    out = page.run("seed", None, None, *values)
    grid, _, _, frame, plot, table, status, files, command, toml, res = out
    np.testing.assert_array_equal(res.arrays["latents"], first.arrays["latents"])
    assert grid.shape == (2 * (128 + 2) + 2, 3 * (128 + 2) + 2, 3) and frame.shape == (256, 256, 3)
    assert table == E.distance_table(first) and len(plot) == 12
    assert "reused the compiled traversal" in status and command.startswith("reds-jax traverse")
    assert sorted(p.rsplit("/", 1)[1] for p in files) == sorted(
        ["grid.png", "traversals.npz", "job.toml", "command.sh"]
    )
    np.testing.assert_array_equal(
        page.scrub(res, "-v1", 2), ui._upscale(res.arrays["images"][0, 1, 2])
    )
    with pytest.raises(gr.Error, match="no uploaded image"):
        ui._safe(page.run)("uploaded image", None, None, *values)
    with pytest.raises(gr.Error, match="k=9 is out of range"):
        ui._safe(page.run)("seed", None, None, *values[:8], 9, *values[9:])
    demo = ui.build(explorer, files_root=str(tmp_path))
    assert isinstance(demo, gr.Blocks)


def test_user_errors_reach_the_page_without_a_server_traceback(capsys):
    """The server log printed a traceback per bad input (24 in one session; issue 40 K)."""
    gr = pytest.importorskip("gradio")
    from reds_jax.app import ui

    def raising(err):
        def fn():
            raise err

        return fn

    for err in (E.AppError("upload an image file first."), ValueError("k=9 is out of range")):
        with pytest.raises(gr.Error) as caught:
            ui._safe(raising(err))()
        assert caught.value.message == str(err)  # the message alone, not "the request failed"
        assert capsys.readouterr().err == ""
    for err in (ValueError(), RuntimeError("a bug")):  # bugs keep their server traceback
        with pytest.raises(gr.Error, match=f"the request failed \\({type(err).__name__}"):
            ui._safe(raising(err))()
        log = capsys.readouterr().err
        assert log.startswith("Traceback") and f"{type(err).__name__}" in log
