"""Bad input gives a correct result or a clear error (issue 20): image files and inversion jobs.

Every file here is crafted byte by byte in the test; none is larger than a few hundred bytes.
"""

import numpy as np
import pytest
from _crafted import png

from reds_jax import imageio
from reds_jax.jobs import cli
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
    "flag, value", [("--lr", "nan"), ("--lr", "-1"), ("--prior-weight", "inf"), ("--steps", "0")]
)
def test_invert_refuses_non_finite_or_negative_options(tmp_path, capsys, flag, value):
    img = tmp_path / "a.png"
    imageio.save_png(np.zeros((4, 4, 3)), img)
    assert _invert(tmp_path, img, flag, value) == 2
    err = capsys.readouterr().err
    assert flag in err and "must be" in err
    with pytest.raises(InversionJobError, match="--lr must be a finite number > 0"):
        invert_files("rooms", [img], tmp_path / "o", lr=float("nan"))


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
