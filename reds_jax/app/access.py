"""What the explorer may run: the operator's allow-list (:class:`Allowed`).

The page and its HTTP API (every Gradio endpoint: ``/start_image``, ``/run``, ``/invert``, ...) take
plain text from whoever can reach the server. Text must never name code or files: a
``package.module:factory`` typed into the page would be imported and called (``os:system`` runs a
shell command), and a path would be read. So the explorer runs only

* the registered models (:func:`reds_jax.jobs.models.available_models`);
* factories the operator named when starting the server (``reds-jax app --allow-model
  pkg.mod:factory``, repeatable; ``--model pkg.mod:factory`` counts too);
* checkpoints, weights and other files inside folders the operator named (``reds-jax app
  --allow-checkpoints DIR``, repeatable), resolved through symlinks, so ``..`` and absolute paths
  elsewhere are refused.

Everything else is refused with an :class:`~reds_jax.app.explorer.AppError` before any import or
file access. This module imports neither jax nor Gradio.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["MAX_CHECKPOINTS", "AccessError", "Allowed", "LOOPBACK", "is_loopback"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""Host names that only this machine can reach (``reds-jax app --host`` warns for others)."""
MAX_CHECKPOINTS = 200
"""At most this many ``.msgpack`` files of the allowed folders are offered on the page."""
STYLEGAN2_FACTORY = "reds_jax.generators.stylegan2:stylegan2"
# loader arguments that name files or folders (checked as paths whatever their text looks like)
PATH_ARGS = frozenset({"root", "path", "params_or_path", "checkpoint", "weights", "file"})
PATH_FEATURES = frozenset({"arcface"})  # feature specs whose first argument is a weights file


class AccessError(ValueError):
    """A model, checkpoint or file the operator did not allow."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
    (True, False)
    """
    host = host.strip().strip("[]").lower()
    return host in LOOPBACK or host.startswith("127.")


def _looks_like_path(value: str) -> bool:
    return (
        any(sep in value for sep in ("/", "\\", os.sep))
        or value.startswith(("~", "."))
        or value.endswith((".msgpack", ".pt", ".pth", ".pkl", ".npz", ".npy", ".json"))
        or os.path.lexists(value)
    )


@dataclasses.dataclass(frozen=True)
class Allowed:
    """The operator's allow-list.

    Attributes:
      factories: ``package.module:factory`` names the page may load (besides the registry).
      folders: resolved folders whose files (at any depth) the page may name: StyleGAN2
        ``.msgpack`` checkpoints, model arguments that are paths (``root``, ``path``, ...), the
        weights of ``arcface:FILE``.

    >>> allowed = Allowed()
    >>> allowed.model("rooms")
    ('rooms', {})
    >>> allowed.model("os:system")
    Traceback (most recent call last):
    ...
    reds_jax.app.access.AccessError: model 'os:system' is not allowed on this page: ...
    """

    factories: tuple[str, ...] = ()
    folders: tuple[pathlib.Path, ...] = ()

    @classmethod
    def of(
        cls, factories: Iterable[str] = (), folders: Iterable[str | os.PathLike] = ()
    ) -> Allowed:
        """Checks the operator's ``--allow-model`` and ``--allow-checkpoints`` values.

        Raises:
          AccessError: a factory not written ``package.module:factory`` or a folder that does
            not exist.
        """
        names = []
        for name in factories:
            module, _, attr = str(name).partition(":")
            if not module or not attr or not all(p.isidentifier() for p in module.split(".")):
                raise AccessError(
                    f"--allow-model {name!r}: write package.module:factory (e.g. "
                    "mypkg.models:make_generator)."
                )
            names.append(str(name))
        dirs = []
        for folder in folders:
            path = pathlib.Path(folder).expanduser()
            if not path.is_dir():
                raise AccessError(f"--allow-checkpoints {str(folder)!r}: no such folder.")
            dirs.append(path.resolve())
        return cls(tuple(names), tuple(dirs))

    # -- files --------------------------------------------------------------------------------

    def file(self, text: str, what: str) -> str:
        """The path ``text`` when it lies inside an allowed folder (after resolving symlinks).

        Relative paths are read relative to each allowed folder, then to the server's folder.

        Raises:
          AccessError: no allowed folder holds it.
        """
        raw = pathlib.Path(str(text).strip()).expanduser()
        candidates = [raw] if raw.is_absolute() else [d / raw for d in self.folders] + [raw]
        for cand in candidates:
            resolved = cand.resolve()
            if any(resolved.is_relative_to(d) for d in self.folders):
                return str(resolved)
        where = (
            f"inside the allowed folders {[str(d) for d in self.folders]}"
            if self.folders
            else "inside a folder the operator allowed (none is: start the server with "
            "`reds-jax app --allow-checkpoints DIR`)"
        )
        raise AccessError(
            f"{what} {str(text)[:200]!r} is not allowed on this page: name a file {where}."
        )

    def checkpoints(self) -> list[str]:
        """The StyleGAN2 ``.msgpack`` files inside the allowed folders (at most
        :data:`MAX_CHECKPOINTS`, sorted)."""
        found: list[str] = []
        for folder in self.folders:
            for path in sorted(folder.rglob("*.msgpack")):
                if len(found) >= MAX_CHECKPOINTS:
                    return found
                if path.is_file() and path.resolve().is_relative_to(folder):
                    found.append(str(path))
        return found

    # -- models -------------------------------------------------------------------------------

    def choices(self, registry: Sequence[str]) -> list[str]:
        """Every model the page may offer: ``registry``, the allowed factories, the checkpoints."""
        return [*registry, *self.factories, *self.checkpoints()]

    def model(self, text: str, registry: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
        """The model name the job layer understands, plus loader arguments implied by it.

        Args:
          text: a registered name, an allowed ``package.module:factory``, or a ``.msgpack``
            checkpoint inside an allowed folder (it becomes the StyleGAN2 factory with
            ``params_or_path`` and ``space = "z"``).
          registry: the registered model names (default: :func:`reds_jax.jobs.models.MODELS`).

        Raises:
          AccessError: anything else (nothing is imported or opened).
        """
        if not registry:
            from reds_jax.jobs import models

            registry = tuple(models.MODELS)
        name = (text or "").strip() if isinstance(text, str) else ""
        if name in registry or name in self.factories:
            return name, {}
        if name.endswith(".msgpack"):
            path = self.file(name, "the checkpoint")
            if not pathlib.Path(path).is_file():
                raise AccessError(
                    f"no StyleGAN2 checkpoint at {name[:200]!r}; pass an existing .msgpack path."
                )
            return STYLEGAN2_FACTORY, {"params_or_path": path, "space": "z"}
        hint = (
            "; the operator can allow a factory with `reds-jax app --allow-model "
            "package.module:factory`"
            if ":" in name
            else ""
        )
        raise AccessError(
            f"model {name[:200]!r} is not allowed on this page: choose one of "
            f"{list(registry) + list(self.factories)} or a .msgpack checkpoint inside a folder "
            f"the operator allowed{hint}."
        )

    def loaded(self, name: str, model_args: Mapping[str, Any]) -> None:
        """Checks a resolved ``(model, model_args)`` pair right before loading it.

        Raises:
          AccessError: a model outside the allow-list or a path argument outside the folders.
        """
        from reds_jax.jobs import models

        if name == STYLEGAN2_FACTORY and name not in self.factories:
            path = model_args.get("params_or_path")
            if not isinstance(path, str):
                raise AccessError(
                    f"model {name!r} is not allowed on this page without a checkpoint."
                )
        elif name not in models.MODELS and name not in self.factories:
            self.model(name)  # raises the message
        self.arguments(model_args)

    def arguments(self, model_args: Mapping[str, Any]) -> dict[str, Any]:
        """``model_args`` with every path argument checked (and resolved).

        A text value is a path when its key names one (``root``, ``path``, ``params_or_path``,
        ...) or it looks like one (a separator, a leading ``.`` or ``~``, a weights suffix, or an
        existing file); such a value must lie inside an allowed folder.

        Raises:
          AccessError: a path outside the allowed folders.
        """
        out = dict(model_args)
        for key, value in model_args.items():
            if isinstance(value, str) and (key in PATH_ARGS or _looks_like_path(value)):
                out[key] = self.file(value, f"model argument {key}=")
            elif not isinstance(value, str | int | float | bool):
                raise AccessError(
                    f"model argument {key}={value!r}: pass a number, true/false or short text."
                )
        return out

    def specs(self, specs: Iterable[str]) -> None:
        """Checks the files named by feature specs (``arcface:FILE``).

        Raises:
          AccessError: a weights file outside the allowed folders.
        """
        for spec in specs:
            for part in str(spec).split("@"):
                name, _, rest = part.strip().partition(":")
                if name.strip().lower() in PATH_FEATURES and rest.strip():
                    self.file(rest.split(",")[0].strip(), f"the weights of feature {name!r}:")
