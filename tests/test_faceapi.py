"""face-api ports: tfjs loading, preprocessing, parity with the original JS nets, gradients, errors.

The reference outputs in fixtures/faceapi_reference.npz come from the original face-api package run
in Node 20 on the pure-JS tfjs CPU backend (scripts/make_faceapi_fixture.py + .mjs), on three face
DCGAN images and one non-square pattern, stored as uint8. The weights are fetched with
reds_jax.assets.fetch (npm pack once); a failure there fails the tests (no silent skips).
"""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax import assets, features
from reds_jax.features import faceapi
from reds_jax.formats.tfjs import TfjsFormatError, load_tfjs_weights, nest

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "faceapi_reference.npz"


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def feats():
    for stem in ("recognition", "landmark68", "age_gender"):  # downloads once; never skipped
        assets.fetch(f"face_api_{stem}_manifest")
        assets.fetch(f"face_api_{stem}_weights")
    return {
        "identity": features.face_identity(),
        "landmarks": features.face_landmarks(),
        "age_gender": features.age_gender(),
    }


@pytest.fixture(scope="module")
def jitted(feats):
    """The features jitted once and shared by the tests (compiling dominates their run time)."""
    return {k: jax.jit(f) for k, f in feats.items()}


def _image(ref, name, dtype=jnp.float64):
    return jnp.asarray(ref[f"{name}/image"], dtype) / 255.0


# --- tfjs weights ---------------------------------------------------------------------------------


def _write_manifest(tmp_path, weights, blob):
    (tmp_path / "m.bin").write_bytes(blob)
    manifest = tmp_path / "m-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": ["m.bin"], "weights": weights}]))
    return manifest


def test_tfjs_dequantisation_and_layout(tmp_path):
    q = np.array([0, 1, 255, 7, 8, 9], np.uint8)
    f = np.array([1.5, -2.25], np.float32)
    weights = [
        {
            "name": "a/b/filters",
            "shape": [2, 3],
            "dtype": "float32",
            "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
        },
        {"name": "a/bias", "shape": [2], "dtype": "float32"},
    ]
    manifest = _write_manifest(tmp_path, weights, q.tobytes() + f.tobytes())
    w = load_tfjs_weights(manifest)
    np.testing.assert_array_equal(w["a/b/filters"], (q * 0.5 - 1.0).reshape(2, 3))
    assert w["a/b/filters"].dtype == np.float32
    np.testing.assert_array_equal(w["a/bias"], f)
    tree = nest(w)
    assert tree["a"]["b"]["filters"].shape == (2, 3) and tree["a"]["bias"].shape == (2,)


def test_tfjs_bad_files(tmp_path):
    weights = [{"name": "x", "shape": [4], "dtype": "float32"}]
    manifest = _write_manifest(tmp_path, weights, b"\0" * 12)  # 3 floats, 4 declared
    with pytest.raises(TfjsFormatError, match="runs past the end"):
        load_tfjs_weights(manifest)
    manifest = _write_manifest(tmp_path, weights, b"\0" * 20)
    with pytest.raises(TfjsFormatError, match="do not belong"):
        load_tfjs_weights(manifest)
    (tmp_path / "m.bin").unlink()
    with pytest.raises(FileNotFoundError, match="m.bin"):
        load_tfjs_weights(manifest)


# --- preprocessing ----------------------------------------------------------------------------


def test_resize_matches_tfjs(ref):
    for case in ("down", "up", "x150"):
        x, want = ref[f"resize/{case}/input"], ref[f"resize/{case}/output"]
        got = faceapi.resize_bilinear_tf1(jnp.asarray(x, jnp.float64), want.shape[:2])
        # the reference is rounded to float32 (values up to 255)
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=3e-5)


def test_resize_identity_and_pad_to_square():
    x = jnp.arange(24.0).reshape(2, 4, 3)
    np.testing.assert_array_equal(faceapi.resize_bilinear_tf1(x, (2, 4)), x)
    sq = faceapi.pad_to_square(jnp.ones((1, 4, 1)))  # diff 3: round(1.5) = 2 after, 1 before
    assert sq[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0]
    sq = faceapi.pad_to_square(jnp.ones((4, 2, 1)))
    assert sq[0, :, 0].tolist() == [0.0, 1.0, 1.0, 0.0]


# --- parity with face-api ---------------------------------------------------------------------


def test_parity_with_faceapi_js(ref, feats, jitted):
    names = [str(n) for n in ref["names"]]
    assert "pattern_48x64" in names  # non-square input: padding and landmark post-processing
    worst = {}
    for name in names:
        img = _image(ref, name)
        fns = jitted if img.shape == (64, 64, 3) else feats  # one compile per feature
        d = np.asarray(fns["identity"](img))
        lm = np.asarray(fns["landmarks"](img))
        ag = np.asarray(fns["age_gender"](img))
        errs = {
            "descriptor": np.abs(d - ref[f"{name}/descriptor"]).max()
            / np.abs(ref[f"{name}/descriptor"]).max(),
            "landmarks": np.abs(lm - ref[f"{name}/landmarks"]).max(),
            "age": abs(ag[0] - ref[f"{name}/age"]) / abs(ref[f"{name}/age"]),
            "gender": np.abs(ag[1:] - ref[f"{name}/gender"]).max(),
        }
        for k, v in errs.items():
            worst[k] = max(worst.get(k, 0.0), float(v))
    print("max errors vs face-api (float64 port vs float32 tfjs):", worst)
    # measured: descriptor 5.5e-7 rel, landmarks 2.3e-7, age 3e-7 rel, gender 5e-7
    assert worst["descriptor"] < 1e-5
    assert worst["landmarks"] < 1e-5
    assert worst["age"] < 1e-5
    assert worst["gender"] < 1e-5


def test_float32_vmap_and_jit(ref, feats):
    faces = jnp.stack([_image(ref, f"face{i}", jnp.float32) for i in range(3)])
    for key, size in (("identity", 128), ("landmarks", 136), ("age_gender", 3)):
        out = jax.jit(jax.vmap(feats[key]))(faces)
        assert out.shape == (3, size) and out.dtype == jnp.float32
        if key == "identity":
            want = np.stack([ref[f"face{i}/descriptor"] for i in range(3)])
            assert np.abs(np.asarray(out) - want).max() / np.abs(want).max() < 1e-4
        if key == "landmarks":
            want = np.stack([ref[f"face{i}/landmarks"] for i in range(3)])
            assert np.abs(np.asarray(out) - want).max() < 1e-5


def test_landmarks_of_generated_faces_lie_inside(ref, jitted):
    for i in range(3):
        pts = np.asarray(jitted["landmarks"](_image(ref, f"face{i}"))).reshape(68, 2)
        assert pts.shape == (68, 2)
        assert pts.min() > 0.0 and pts.max() < 1.0
        # jaw (0-16) spans the face horizontally; eyes (36-47) above the mouth (48-67)
        assert pts[16, 0] - pts[0, 0] > 0.3
        assert pts[36:48, 1].mean() < pts[48:68, 1].mean()


def test_identity_separates_faces_and_options(ref, jitted):
    d = np.stack([np.asarray(jitted["identity"](_image(ref, f"face{i}"))) for i in range(3)])
    between = [np.linalg.norm(d[i] - d[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(between) > 0.1
    unit = features.face_identity(normalize=True)(_image(ref, "face0"))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(unit)), 1.0, rtol=1e-12)
    age = features.age_gender("age")(_image(ref, "face0"))
    gender = features.age_gender("gender")(_image(ref, "face0"))
    assert age.shape == (1,) and gender.shape == (2,)
    np.testing.assert_allclose(float(jnp.sum(gender)), 1.0, rtol=1e-12)


# --- gradients -----------------------------------------------------------------------------------


def test_gradients_through_a_small_generator(ref, feats, jitted):
    """jacfwd and jacrev of feature(G(z)) (as REDs uses them) against central differences, float64.

    G(z) = face + Σ z_i B_i with two random image directions B_i, at one point z.
    """
    face = _image(ref, "face1")
    basis = 0.05 * jax.random.normal(jax.random.key(2), (2,) + face.shape, jnp.float64)
    z = jnp.asarray([0.1, -0.2])

    def gen(z):
        return face + jnp.tensordot(z, basis, axes=1)

    # The nets are piecewise linear (ReLU, max pooling): a large step crosses kinks (here age's
    # error is 9e-3 at a step of 1e-4, 2e-5 at 1e-6 and 5e-9 at 1e-7, rounding-limited).
    eps = 1e-7
    rows = slice(0, 8)
    for key, feat in feats.items():
        fd = jnp.stack(
            [
                (jitted[key](gen(z + eps * e)) - jitted[key](gen(z - eps * e))) / (2 * eps)
                for e in jnp.eye(2)
            ],
            axis=1,
        )
        jf = jax.jit(jax.jacfwd(lambda z, feat=feat: feat(gen(z))))(z)
        # reverse mode on a slice of the outputs: 128 backward passes of the 150x150 ResNet in
        # float64 would dominate the suite's run time
        jr = jax.jit(jax.jacrev(lambda z, feat=feat: feat(gen(z))[rows]))(z)
        m = {"identity": 128, "landmarks": 136, "age_gender": 3}[key]
        assert jf.shape == fd.shape == (m, 2) and jr.shape == (min(m, 8), 2)
        err = float(jnp.abs(jf - fd).max() / jnp.abs(fd).max())
        assert err < 1e-6, (key, err)
        np.testing.assert_allclose(jf[rows], jr, rtol=1e-9, atol=1e-12 * float(jnp.abs(jf).max()))


# --- errors -------------------------------------------------------------------------------------


def test_missing_cache_file_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.OFFLINE_ENV, "1")
    with pytest.raises(assets.AssetError) as info:
        features.face_landmarks(root=tmp_path)
    msg = str(info.value)
    assert "face_landmark_68_model" in msg and "npm pack @vladmandic/face-api@1.7.15" in msg
    assert str(tmp_path) in msg
    # the manifest alone is not enough: the missing weight shard is named
    for kind in ("manifest", "weights"):
        src = assets.fetch(f"face_api_landmark68_{kind}")
        dst = assets.cache_path(f"face_api_landmark68_{kind}", tmp_path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if kind == "manifest":
            shutil.copy(src, dst)
    with pytest.raises(assets.AssetError, match="face_landmark_68_model.bin"):
        features.face_landmarks(root=tmp_path)


def test_corrupt_converted_cache_is_rebuilt(tmp_path, ref):
    for kind in ("manifest", "weights"):
        dst = assets.cache_path(f"face_api_landmark68_{kind}", tmp_path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(assets.fetch(f"face_api_landmark68_{kind}"), dst)
    manifest = assets.cache_path("face_api_landmark68_manifest", tmp_path)
    first = faceapi._convert(manifest, faceapi.FaceLandmark68Net(), 112)
    cached = manifest.with_name(manifest.name + ".flax-v1.msgpack")
    assert cached.is_file()
    cached.write_bytes(b"garbage")
    again = faceapi._convert(manifest, faceapi.FaceLandmark68Net(), 112)
    jax.tree.map(np.testing.assert_array_equal, first, again)
    assert cached.read_bytes() != b"garbage"


def test_bad_input(feats):
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        feats["identity"](jnp.zeros((64, 64, 1)))
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        feats["landmarks"](jnp.zeros((2, 64, 64, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        feats["age_gender"](jnp.zeros((64, 64, 3), jnp.uint8))
    with pytest.raises(ValueError, match="output="):
        features.age_gender("height")
    with pytest.raises(ValueError, match="Unknown face-api net"):
        features.load_faceapi_net("expression")
