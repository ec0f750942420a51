"""Inverting image files: reading/resizing rules, the `reds-jax invert` command, `--images DIR`
for traverse, reuse of a finished inversion, and clear errors for bad files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import registered_model, toy_weights
from PIL import Image

from reds_jax.jobs import cli
from reds_jax.jobs.inversion import InversionJobError, list_images, load_images

W = toy_weights(4, 8)


def _toy():
    def generator(z):
        return jax.nn.sigmoid(jnp.asarray(W, z.dtype) @ z).reshape(8, 8, 3)

    return None, generator, 4


@pytest.fixture(autouse=True)
def toy_model():
    with registered_model("toy_inv", _toy):
        yield


@pytest.fixture
def image_dir(tmp_path):
    """Three toy images at known latents, saved 16x16 (upscaled: the job resizes them back)."""
    z = np.random.default_rng(1).standard_normal((3, 4))
    gen = _toy()[1]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        img = np.asarray(gen(jnp.asarray(z[i], jnp.float32)))
        Image.fromarray((img * 255).round().astype(np.uint8)).resize((16, 16)).save(
            folder / f"photo-{'abc'[i]}.png"
        )
    (folder / "readme.txt").write_text("not an image")  # ignored: not an image suffix
    return folder


def test_load_images_converts_modes_and_centre_crops(tmp_path):
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, 5:15] = 255  # the centre square is white, the sides black
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(np.full((6, 6), 128, np.uint8), mode="L").save(tmp_path / "gray.png")
    Image.fromarray(np.full((6, 6, 4), 200, np.uint8), mode="RGBA").save(tmp_path / "rgba.png")
    paths = list_images([tmp_path])
    assert [p.name for p in paths] == ["gray.png", "rgba.png", "wide.png"]
    imgs = load_images(paths, 5, 5)
    assert imgs.shape == (3, 5, 5, 3) and imgs.dtype == np.float32
    np.testing.assert_allclose(imgs[0], 128 / 255, atol=1e-6)
    np.testing.assert_allclose(imgs[1], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(imgs[2], 1.0, atol=1e-6)  # only the white centre survives the crop


def test_invert_command_writes_latents_and_reuses_a_finished_run(image_dir, tmp_path, capsys):
    out = tmp_path / "inv"
    args = [
        "invert",
        str(image_dir),
        "--model",
        "toy_inv",
        "--out",
        str(out),
        "--steps",
        "150",
        "--restarts",
        "2",
    ]
    assert cli.main(args) == 0
    latents = np.load(out / "latents.npy")
    assert latents.shape == (3, 4)
    with np.load(out / "inversion.npz") as res:
        assert list(res["files"]) == ["photo-a.png", "photo-b.png", "photo-c.png"]
        assert res["reconstructions"].shape == (3, 8, 8, 3)
        assert float(np.median(res["psnr"])) > 30.0  # resize round trip limits it, not the fit
    assert (out / "reconstructions.png").is_file()
    table = capsys.readouterr().out
    assert "photo-b.png" in table and "PSNR dB" in table  # one row per file
    assert cli.main(args) == 0
    assert "(reused)" in capsys.readouterr().out


def test_traverse_from_an_image_folder(image_dir, tmp_path):
    out = tmp_path / "trav"
    base = ["traverse", "--model", "toy_inv", "--images", str(image_dir), "--out", str(out)]
    assert cli.main([*base, *"--invert-steps 20 --steps 2 -k 1".split()]) == 0
    with np.load(out / "traversals.npz") as res:
        np.testing.assert_allclose(
            res["latents"][:, 0, 0], np.load(out / "inverted" / "latents.npy"), atol=1e-6
        )
        assert list(res["names"]) == ["photo-a", "photo-b", "photo-c"]  # index of the grids
    assert sorted(p.name for p in out.glob("*.png")) == [
        "photo-a.png",
        "photo-b.png",
        "photo-c.png",
    ]
    assert cli.main([*base, "--seeds", "1"]) == 2  # --images and --seeds together


def test_weak_reconstructions_are_named_with_what_to_try(image_dir, tmp_path, capsys):
    out = tmp_path / "inv"
    args = ["invert", str(image_dir), "--model", "toy_inv", "--out", str(out), "--steps", "1",
            "--restarts", "1", "--min-psnr", "99"]  # fmt: skip
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "3 of 3 image(s) below 99 dB: photo-a.png (" in err and "--steps 600" in err


@pytest.mark.parametrize("make", ["missing", "empty", "garbage"])
def test_bad_files_give_clear_errors(tmp_path, make, capsys):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
    elif make == "garbage":
        target = tmp_path / "x.png"
        target.write_bytes(b"not a png")
    assert (
        cli.main(["invert", str(target), "--model", "toy_inv", "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert {"missing": "does not exist", "empty": "has no images", "garbage": "cannot read"}[
        make
    ] in err
    with pytest.raises(InversionJobError):
        list_images([]) if make == "missing" else load_images(list_images([target]), 4, 4)
