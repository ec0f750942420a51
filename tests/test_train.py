"""Training scripts on tiny shapes: one GAN step, checkpoints and resume, weight export checks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax.train.common import latest_checkpoint
from reds_jax.train.gan import gan_config, init_gan_state, make_gan_step
from reds_jax.train.nets import r2_scores, sofa_iou, train_net
from reds_jax.weights import WeightsError, load_weights


def test_one_gan_step_tiny_changes_params_finite_losses():
    cfg = gan_config(size=16, tiny=True)
    assert cfg["batch"] == 2
    state = init_gan_state(cfg, seed=0)
    step = make_gan_step(cfg, seed=0)
    new, metrics = step(state, 0)
    for k, v in metrics.items():
        assert np.isfinite(float(v)), k
    for part in ("g", "d", "g_ema"):
        before, after = jax.tree.leaves(state[part]), jax.tree.leaves(new[part])
        assert all(a.dtype == jnp.float32 for a in after)
        assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True)), part
    g = jax.tree.leaves(new["g"])[0]
    assert np.all(np.isfinite(np.asarray(g)))


def test_net_training_checkpoints_and_resumes(tmp_path, capsys):
    out = tmp_path / "reg"
    kw = dict(size=16, tiny=True, batch=2, ckpt_every=1)
    train_net("regressor", out, steps=2, seed=3, **kw)
    assert latest_checkpoint(out).name == "ckpt_2.msgpack"
    train_net("regressor", out, steps=3, seed=3, **kw)
    assert "resumed from" in capsys.readouterr().out
    assert latest_checkpoint(out).name == "ckpt_3.msgpack"
    assert len(list(out.glob("ckpt_*.msgpack"))) == 2  # older ones pruned
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]
    result = json.loads((out / "eval.json").read_text())
    assert set(result["r2"]) >= {"sofa_x", "lamp_x"}
    assert (out / "weights.msgpack").is_file()


def test_load_weights_errors(tmp_path):
    template = {"params": {"w": jnp.zeros((2, 3), jnp.float32)}}
    with pytest.raises(WeightsError, match="missing"):
        load_weights(tmp_path / "nope.msgpack", None, template)
    from flax import serialization

    path = tmp_path / "w.msgpack"
    path.write_bytes(serialization.to_bytes(template))
    with pytest.raises(WeightsError, match="checksum"):
        load_weights(path, "0" * 64, template)
    with pytest.raises(WeightsError, match="do not match|could not be read"):
        load_weights(path, None, {"params": {"w": jnp.zeros((4,), jnp.float32)}})


def test_scores():
    t = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    np.testing.assert_allclose(r2_scores(t, t), [1.0, 1.0])
    np.testing.assert_allclose(r2_scores(np.full_like(t, t.mean(0)), t), [0.0, 0.0])
    m = np.zeros((2, 4, 4))
    m[:, :2] = 1.0
    assert sofa_iou(m, m) == 1.0
    assert sofa_iou(np.roll(m, 1, axis=1), m) == pytest.approx(1 / 3)
