"""The reds-jax command line: end to end in a subprocess, demo, errors, delegation; feature specs,
the model registry and PNG grids."""

import json
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import cli_command, cli_env, run_main
from PIL import Image

from reds_jax import features as F
from reds_jax import imageio
from reds_jax.jobs import cli, models

pytestmark = pytest.mark.usefixtures("toy_model")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------
# End to end


TRAVERSE_TOML = """
model = "rooms"
seeds = [5]                  # replaced by --seeds on the command line
k = 1
steps = 3
step_size = 0.3
vary = ["lowpass:2"]
fix = ["highpass:1", "highpass:1@region:0.1,0.2,0.5,0.6"]
out = "{out}"

[model_args]
size = 24
latent_dim = 6
"""


def test_traverse_subprocess_with_toml_and_overrides(tmp_path, tmp_path_factory):
    out = tmp_path / "tr"
    (tmp_path / "job.toml").write_text(TRAVERSE_TOML.format(out=out))
    env = cli_env(tmp_path_factory.getbasetemp() / "jax-cache")
    done = subprocess.run(
        [*cli_command(), "traverse", "--config", str(tmp_path / "job.toml"), "--seeds", "0", "1"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 2 grid(s)" in done.stdout and str(out.resolve()) in done.stdout
    with Image.open(out / "seed-0.png") as im:  # rows = 2k = 2 paths, cols = T+1 = 4, 24px x5
        assert im.size == (4 * (24 * 5 + 2) + 2, 2 * (24 * 5 + 2) + 2)
    assert (out / "seed-1.png").is_file() and not (out / "seed-5.png").exists()
    with np.load(out / "traversals.npz") as data:
        assert data["latents"].shape == (2, 2, 4, 6)
        assert data["images"].shape == (2, 2, 4, 24, 24, 3)
        assert data["vary_distances"].shape == (2, 1, 2, 4)
        assert data["fix_distances"].shape == (2, 2, 2, 4)
        assert data["seeds"].tolist() == [0, 1]
        assert data["fix_features"].tolist() == ["highpass:1", "highpass:1@region:0.1,0.2,0.5,0.6"]
        np.testing.assert_allclose(data["vary_distances"][..., 0], 0.0, atol=1e-5)
        # REDs: the fixed high frequencies move much less than the varied low frequencies
        assert data["fix_distances"][:, 0, :, -1].mean() < data["vary_distances"][..., -1].mean()
        steps = np.linalg.norm(np.diff(data["latents"], axis=2), axis=-1)
        np.testing.assert_allclose(steps, 0.3, rtol=1e-4)


def test_demo_writes_a_grid(tmp_path, capsys):
    png = tmp_path / "demo.png"
    code, out, err = run_main(capsys, "demo", "--model", "toy", "-k", "1", "--steps", "2",
                              "--out", str(png))  # fmt: skip
    assert code == 0, err
    assert str(png.resolve()) in out and "lowpass:1" in out
    with Image.open(png) as im:  # 8px tiles upscaled x16; 2 paths x 3 steps
        assert im.size == (3 * (128 + 2) + 2, 2 * (128 + 2) + 2)


# ---------------------------------------------------------------------------------------------
# Errors (all raised before anything compiles)


@pytest.mark.parametrize(
    "toml, words",
    [
        ('k = "two"', ["job.toml", "field 'k'", "an int >= 1"]),
        ("stepsize = 0.1", ["unknown field(s) ['stepsize']", "step_size"]),
        ('vary = ["highpas:2"]', ["field 'vary'", "unknown feature 'highpas'", "highpass:sigma"]),
        ('method = "best"', ["field 'method'", "reds"]),
        ("k = [", ["not valid TOML"]),
        ("out = 3", ["field 'out'"]),
    ],
)
def test_bad_toml_names_the_field(tmp_path, capsys, toml, words):
    (tmp_path / "job.toml").write_text(f'model = "toy"\nseeds = "0:2"\n{toml}\n')
    code, _, err = run_main(capsys, "augment", "--config", str(tmp_path / "job.toml"),
                            "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2
    for w in words:
        assert w in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["traverse", "--vary", "nosuch:2"], ["unknown feature 'nosuch'", "region:top,left"]),
        (["traverse", "--fix", "region:0.1,0.2"], ["takes 4 argument(s)"]),
        (["traverse", "--seeds", "3:1"], ["empty"]),
        (["traverse", "--model", "nosuch"], ["'faces'", "'rooms'"]),
        (["traverse", "--fix", "pixels", "--no-fix"], ["--no-fix"]),
        (["traverse", "--seeds", "0", "--latents", "z.npy"], ["--latents"]),
        (["traverse", "--config", "missing.toml"], ["does not exist"]),
        (["traverse", "--option", "ridg=1"], ["'options'", "ridge"]),
        (["traverse", "--model-arg", "colour=3"], ["does not accept model_args ['colour']"]),
        (["augment", "--seeds", "0:2"], ["--out"]),
        (["augment", "--out", "x"], ["--seeds"]),
    ],
)
def test_bad_arguments(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    args = argv if "--model" in argv else [*argv, "--model", "toy"]
    code, _, err = run_main(capsys, *args)
    assert code == 2, err
    for w in words:
        assert w in err


def test_traverse_only_fields_and_key_values(tmp_path, capsys):
    (tmp_path / "t.toml").write_text('model = "toy"\nshard_size = 4\n')
    code, _, err = run_main(capsys, "traverse", "--config", str(tmp_path / "t.toml"))
    assert code == 2 and "only applies to 'reds-jax augment'" in err
    assert cli.key_value("size=16") == ("size", 16)
    assert cli.key_value("ridge=1e-4") == ("ridge", 1e-4)
    assert cli.key_value("mode=fwd") == ("mode", "fwd")
    with pytest.raises(SystemExit):
        cli.main(["traverse", "--model-arg", "novalue"])


def test_augment_refuses_a_folder_with_another_config(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"config": {"model": "toy", "k": 3}}))
    (out / "manifest.jsonl").write_text(
        ""
    )  # the folder holds a job (a lone config.json is replaced)
    code, _, err = run_main(capsys, "augment", "--model", "toy", "--seeds", "0:2",
                            "--out", str(out))  # fmt: skip
    assert code == 2 and "different configuration" in err and "k: 3 (folder) != 2 (now)" in err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "traverse", "augment", "evaluate", "bench"):
        assert command in out


def test_evaluate_delegates_and_bench_runs_the_checkout_script(capsys, monkeypatch, tmp_path):
    fake_eval = types.ModuleType("reds_jax.evaluation.runner")
    fake_eval.main = lambda argv, prog: 3 if prog == "reds-jax evaluate" else 1
    monkeypatch.setitem(sys.modules, "reds_jax.evaluation.runner", fake_eval)
    assert cli.main(["evaluate", "--suite", "rooms_oracle", "--out", str(tmp_path)]) == 3
    # arguments are checked by the jax-free parser before the runner is imported
    assert cli.main(["evaluate", "--suite", "rooms"]) == 2
    assert "invalid choice: 'rooms'" in capsys.readouterr().err
    script = tmp_path / "bench_traverse.py"
    script.write_text("import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(4)\n")
    bench_args = cli._bench_script().with_name("bench_traverse_args.py")
    (tmp_path / "bench_traverse_args.py").write_text(bench_args.read_text())
    monkeypatch.setattr(cli, "_bench_script", lambda: script)
    assert cli.main(["bench", "--steps", "3"]) == 4
    assert cli.main(["bench", "--quick"]) == 2  # not a flag of the benchmark
    assert "unrecognized arguments: --quick" in capsys.readouterr().err


def test_bench_without_a_checkout_says_what_to_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_bench_script", lambda: tmp_path / "missing.py")
    code, _, err = run_main(capsys, "bench")
    assert (
        code == 2 and "benchmarks/bench_traverse.py" in err and "not part of the installed" in err
    )


# ---------------------------------------------------------------------------------------------
# Feature specs, models, PNG grids


def test_parse_feature_matches_the_library():
    img = jnp.asarray(np.random.default_rng(0).random((16, 16, 3)))
    cases = {
        "pixels": F.pixels(),
        "lowpass:2": F.lowpass(2.0),
        "highpass:1.5": F.highpass(1.5),
        "band:0.1,0.3": F.fourier_band(0.1, 0.3),
        "region:0.25,0.25,0.5,0.5": F.region((0.25, 0.25, 0.5, 0.5)),
        "region:2,3,4,5": F.region((2, 3, 4, 5)),
        "region:0.25,0.25,0.5,0.5,invert": F.region((0.25, 0.25, 0.5, 0.5), invert=True),
        "highpass:2@region:0.1,0.2,0.5,0.6": F.compose(
            F.highpass(2.0), F.region((0.1, 0.2, 0.5, 0.6))
        ),
    }
    for spec, feature in cases.items():
        np.testing.assert_allclose(models.parse_feature(spec)(img), feature(img), err_msg=spec)
    for bad, words in (
        ("nope", "valid features: pixels"),
        ("lowpass", "takes 1 argument"),
        ("lowpass:x", "not a number"),
        ("band:0.3,0.1", "low < high"),
        ("", "non-empty"),
    ):
        with pytest.raises(ValueError, match=words):
            models.parse_feature(bad)


def test_model_registry():
    assert {"faces", "rooms"} <= set(models.available_models())
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        models.load_model("nope")
    m = models.load_model("rooms", latent_dim=3, size=8)
    assert jax.eval_shape(m.generator, jnp.zeros(3)).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="cannot import"):
        models.load_model("tests_factory_missing:make")
    m = models.load_model("reds_jax.generators:rooms_oracle", latent_dim=2, size=8)
    assert m.latent_dim == 2 and m.vary == ("pixels",)
    z = models.start_latents([3, 4], 5)
    np.testing.assert_array_equal(z[0], models.start_latents([3], 5)[0])


def test_grid_and_png(tmp_path):
    images = np.random.default_rng(0).random((2, 3, 4, 5, 3))
    g = imageio.grid(images, pad=1, scale=2)
    assert g.shape == (2 * (8 + 1) + 1, 3 * (10 + 1) + 1, 3) and g.dtype == np.uint8
    np.testing.assert_array_equal(g[1:9:2, 1:11:2], imageio.to_uint8(images[0, 0]))
    path = imageio.save_grid(images, tmp_path / "sub" / "g.png", pad=1, scale=2)
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), g)
    with pytest.raises(ValueError, match="rows, cols"):
        imageio.grid(images[0])
