"""stylegan2-ada-pytorch network pickles, read without torch or NVIDIA's code.

A network pickle (``network-snapshot-*.pkl``, ``ffhq.pkl``) is a plain ``pickle.dump`` of
``{"G": ..., "D": ..., "G_ema": ..., "augment_pipe": ..., "training_set_kwargs": ...}`` whose
networks are ``torch_utils.persistence`` objects: ``_reconstruct_persistent_obj(meta)`` with the
class name, the *source code* of its module and the module's state. Unpickling it normally imports
and executes that source. :func:`load_ada_pickle` reads it with
:func:`~reds_jax.formats.torch_zip.load_torch_pickle`, resolving ``_reconstruct_persistent_obj`` to
an inert :class:`PersistentRecord` (class name + state; the source is never looked at),
``dnnlib.util.EasyDict`` to a dict and ``argparse.Namespace`` to an attribute record; every other
global is refused before it can run. The conversion to Flax is
:mod:`reds_jax.generators.stylegan2_ada`.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from reds_jax.formats.torch_zip import Rebuild, load_torch_pickle

__all__ = ["ADA_GLOBALS", "NAMESPACE_GLOBALS", "PersistentRecord", "load_ada_pickle"]

# --- inert stand-ins for the globals a network pickle names ----------------------------------


class PersistentRecord:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` unpickles to here.

    Attributes:
        class_name: the original class name (e.g. ``"SynthesisLayer"``); nothing is imported.
        state: the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, plain
            attributes), tensors as numpy arrays.
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict[str, Any]):
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("Refusing to set state on a persistent record.")

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r})"


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError(f"Unsupported persistent object record {type(meta)}.")
    name, state = meta.get("class_name"), meta.get("state")
    if not (isinstance(name, str) and name.isidentifier() and isinstance(state, dict)):
        raise pickle.UnpicklingError(f"Bad persistent object record for class {name!r}.")
    return PersistentRecord(name, dict(state))  # meta["module_src"] is never used


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (no attribute magic)."""

    def __setstate__(self, state: Any) -> None:
        if state not in (None, {}):
            raise pickle.UnpicklingError("Refusing to set attributes on an EasyDict.")


class _Namespace:
    """Stand-in for ``argparse.Namespace``: keeps its attributes as a dict, runs nothing."""

    def __init__(self, *args: Any) -> None:
        if args:
            raise pickle.UnpicklingError("argparse.Namespace takes no positional arguments.")
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("argparse.Namespace state must be a dict.")
        self.attrs = dict(state)


NAMESPACE_GLOBALS = {("argparse", "Namespace"): _Namespace}
"""Stand-ins for a pickle that names ``argparse.Namespace`` (rosinality's saved ``args``)."""

ADA_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Rebuild(
        "torch_utils.persistence._reconstruct_persistent_obj", _reconstruct_persistent_obj
    ),
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("argparse", "Namespace"): _Namespace,
}
"""Every stand-in a stylegan2-ada-pytorch network pickle needs."""


def load_ada_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickles a stylegan2-ada-pytorch network pickle with the inert stand-ins above.

    Args:
        path: e.g. ``network-snapshot-025000.pkl`` or ``ffhq.pkl``.

    Returns:
        The unpickled object (usually a dict of :class:`PersistentRecord`), tensors as numpy.

    Raises:
        pickle.UnpicklingError: the pickle names anything outside the allow-list.

    >>> data = load_ada_pickle("ffhq.pkl")  # needs a network pickle  # doctest: +SKIP
    """
    return load_torch_pickle(path, extra_globals=ADA_GLOBALS)
