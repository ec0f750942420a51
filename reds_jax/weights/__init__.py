"""Weights trained in this repository and shipped inside the package, with their sha256 digests.

Files (flax msgpack of ``{"params": ...}``, float32), each written by ``python -m reds_jax.train``:

* ``rooms_gan.msgpack``: EMA generator of :func:`reds_jax.generators.rooms_gan`.
* ``rooms_regressor.msgpack``: factor regressor of :func:`reds_jax.features.room_factors`.
* ``rooms_segmenter.msgpack``: sofa segmenter of :func:`reds_jax.features.sofa_mask`.
* ``rooms_judge.msgpack``: evaluation-only judge of :func:`reds_jax.evaluation.judge.rooms_judge`.
* ``rooms_flow.msgpack``: EMA velocity U-Net of :func:`reds_jax.generators.rooms_flow.rooms_flow`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Any

__all__ = ["SHA256", "WEIGHTS_DIR", "WeightsError", "load_weights", "weights_path"]

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent
"""Directory of the shipped weights."""

SHA256: dict[str, str] = {
    "rooms_gan.msgpack": "9081c15f4526f23618d49ccf9ba0647796f487a1da530559d95b3e8d483cf97b",
    "rooms_regressor.msgpack": "88eb1fef38b3affddb9191944757f758624540e3424d4702e1d882bc8b84a361",
    "rooms_segmenter.msgpack": "d5cc738552df7f37009f6b30f3908c49421414337d427df4267181682d905623",
    "rooms_judge.msgpack": "81bff1ed2a8084dfbcb24ea3fd850955186d15e235bbd30329c00bbc8a40700c",
    "rooms_flow.msgpack": "f6fe507d78a2d94e67b9cf41ca74712218aee22ef2f0100f6e06a6ed74dc44ee",
}
"""Expected sha256 hex digest of each shipped file (updated whenever a file is re-exported)."""


class WeightsError(ValueError):
    """A weights file is missing, corrupt, or does not match the model it is loaded into."""


def weights_path(name: str) -> pathlib.Path:
    """Path of the shipped file ``name`` (a key of :data:`SHA256`)."""
    if name not in SHA256:
        raise WeightsError(f"unknown shipped weights {name!r}; choose one of {sorted(SHA256)}.")
    return WEIGHTS_DIR / name


def load_weights(path: str | os.PathLike[str], sha256: str | None, template: Any) -> Any:
    """Reads a flax msgpack file, checks its sha256, and restores it into ``template``'s structure.

    Args:
        path: the ``.msgpack`` file.
        sha256: expected hex digest, or None to skip the check.
        template: pytree with the expected structure and shapes (e.g. ``module.init`` output).

    Returns:
        The restored pytree (arrays as stored).

    Raises:
        WeightsError: the file is missing, fails its checksum, or does not match ``template``.

    >>> load_weights(WEIGHTS_DIR / "missing.msgpack", None, {})
    Traceback (most recent call last):
    ...
    reds_jax.weights.WeightsError: weights file ... is missing; ...
    """
    import jax
    import numpy as np
    from flax import serialization

    path = pathlib.Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} is missing; reinstall reds-jax, or retrain it with "
            f"`python -m reds_jax.train ...` and pass its path."
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise WeightsError(
            f"weights file {path} failed its checksum: sha256 {digest}, expected {sha256}. The file "
            f"is corrupt or was replaced; reinstall reds-jax (or pass sha256=None for your own file)."
        )
    try:
        restored = serialization.from_bytes(template, data)
    except Exception as err:  # msgpack raises several types on garbage
        raise WeightsError(f"weights file {path} could not be read into the model: {err}") from err
    if jax.tree.structure(restored) != jax.tree.structure(template) or jax.tree.map(
        np.shape, restored
    ) != jax.tree.map(np.shape, template):
        raise WeightsError(f"weights file {path} has parameters that do not match the model.")
    return restored
