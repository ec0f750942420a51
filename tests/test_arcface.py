"""ArcFace iresnet: parity with insightface's PyTorch iresnet, the identity feature, strict conversion.

fixtures/arcface_{iresnet_tiny.pth, reference.npz} come from scripts/make_arcface_fixture.py, which
runs insightface's own iresnet.py (tiny widths, random weights) in a separate environment; this test
needs no torch.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax.features.arcface import arcface, convert_iresnet_state_dict, load_iresnet
from reds_jax.formats.torch_zip import load_torch_zip

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
PTH = FIXTURES / "arcface_iresnet_tiny.pth"


@pytest.fixture(scope="module")
def net():
    return load_iresnet(PTH)


def test_parity_with_insightface(net):
    ref = np.load(FIXTURES / "arcface_reference.npz")
    assert net.config.layers == (1, 2, 1, 1) and net.config.widths == (8, 16, 16, 32)
    assert (net.config.stem, net.config.num_features, net.config.input_size) == (8, 16, 32)
    embed = jax.jit(jax.vmap(lambda x: net.module.apply(net.variables, x * 2.0 - 1.0)))
    want = ref["embeddings"]
    np.testing.assert_allclose(
        np.asarray(embed(jnp.asarray(ref["images"], jnp.float64))), want, atol=1e-9
    )
    got32 = np.asarray(embed(jnp.asarray(ref["images"], jnp.float32)))
    np.testing.assert_allclose(got32, want, atol=1e-4)
    feature = arcface(net)
    unit = np.asarray(jax.vmap(feature)(jnp.asarray(ref["images"], jnp.float64)))
    np.testing.assert_allclose(unit, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-9)


def test_feature_crops_resizes_and_differentiates(net):
    f = arcface(net, box=(0.1, 0.2, 0.8, 0.7))
    image = jax.random.uniform(jax.random.key(0), (40, 48, 3), jnp.float64)
    e, g = jax.jit(lambda x: (f(x), jax.grad(lambda y: f(y)[0])(x)))(image)
    assert e.shape == (16,)
    np.testing.assert_allclose(float(jnp.linalg.norm(e)), 1.0, atol=1e-12)
    assert g.shape == image.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
    with pytest.raises(ValueError, match="RGB image"):
        f(jnp.zeros((40, 48, 4), jnp.float64))


def test_conversion_is_strict():
    sd = load_torch_zip(PTH)
    config, _ = convert_iresnet_state_dict({f"module.{k}": v for k, v in sd.items()})
    assert config.layers == (1, 2, 1, 1)
    with pytest.raises(ValueError, match="Unexpected keys"):
        convert_iresnet_state_dict({**sd, "head.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="missing"):
        convert_iresnet_state_dict({k: v for k, v in sd.items() if k != "bn2.running_var"})
