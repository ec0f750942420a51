"""An independently trained judge of room factors, for evaluation only (never use it as a feature).

The judge is a different architecture (max-pooling CNN with GELU and coordinate channels) from the regressor
behind :func:`reds_jax.features.room_factors`, trained with another seed
(``python -m reds_jax.train judge``). Measuring a traversal or a GAN with the judge avoids grading
a method with the same network it optimised against. Held-out R² per factor is in
``benchmarks/results/rooms_features.md``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from reds_jax.features.rooms_nets import apply_net, check_image, load_net
from reds_jax.generators.rooms import NUM_FACTORS

__all__ = ["RoomsJudge", "RoomsJudgeNet", "rooms_judge"]

JUDGE_FILE = "rooms_judge.msgpack"


class RoomsJudgeNet(nn.Module):
    """Conv + max-pool stages with GELU on the image plus two coordinate channels (CoordConv).

    ``images [N, 64, 64, 3] -> [N, F]`` unit-cube factors. Deliberately unlike
    :class:`reds_jax.features.rooms_nets.RoomRegressor` (strided ReLU convs, no coordinates).

    Attributes:
        channels: channels of the conv at resolutions 64, 32, 16, 8 (each followed by 2x2 max-pool).
        hidden: width of the dense layer.
        outputs: number of outputs ``F``.
    """

    channels: Sequence[int] = (24, 48, 64, 96)
    hidden: int = 256
    outputs: int = NUM_FACTORS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, _ = x.shape
        ys = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, h, dtype=x.dtype)[:, None], (h, w))
        xs = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, w, dtype=x.dtype)[None, :], (h, w))
        coords = jnp.broadcast_to(jnp.stack([xs, ys], axis=-1)[None], (n, h, w, 2))
        x = jnp.concatenate([x - 0.5, coords], axis=-1)
        for i, c in enumerate(self.channels):
            x = nn.gelu(nn.Conv(c, (3, 3), name=f"conv_{i}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.gelu(nn.Dense(self.hidden, name="fc")(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.outputs, name="out")(x)


class RoomsJudge(NamedTuple):
    """The evaluation judge.

    Attributes:
        predict: pure ``image [64, 64, 3] -> [F]`` factor estimates in unit-cube coordinates
            (ordered as :data:`reds_jax.generators.FACTOR_NAMES`).
        module: the :class:`RoomsJudgeNet`.
        params: its float32 Flax variables.
    """

    predict: Callable[[jax.Array], jax.Array]
    module: RoomsJudgeNet
    params: Any


def _predict(module, params, image):
    return apply_net(module, params, check_image(image, "rooms_judge"))


@functools.cache
def _load(path, sha256):
    module = RoomsJudgeNet()
    return module, load_net(module, JUDGE_FILE, path, sha256)


def rooms_judge(
    *, path: str | os.PathLike[str] | None = None, sha256: str | None = "shipped"
) -> RoomsJudge:
    """Loads the shipped judge (sha256-checked).

    Args:
        path: weights file (default: the shipped ``rooms_judge.msgpack``).
        sha256: expected digest; ``"shipped"`` checks the shipped file's, None skips the check.

    Returns:
        A :class:`RoomsJudge`; vmap ``predict`` for batches.

    >>> judge = rooms_judge()
    >>> judge.predict(jnp.zeros((64, 64, 3))).shape
    (15,)
    """
    module, params = _load(None if path is None else str(path), sha256)
    return RoomsJudge(functools.partial(_predict, module, params), module, params)
