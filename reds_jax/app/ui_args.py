"""The command line of ``reds-jax app`` (:func:`reds_jax.app.ui.main`), without jax or Gradio.

``reds-jax app --help`` and argument errors answer at once: this module imports only the
standard library.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["parser"]


def _auth(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("write USER:PASSWORD (both non-empty)")
    return user, password


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > 1e6:
        raise argparse.ArgumentTypeError(f"pass a number in (0, 1e6]; got {text!r}")
    return value


def parser(prog: str = "reds-jax app") -> argparse.ArgumentParser:
    """The explorer's argument parser (``prog`` names it in usage and errors)."""
    p = argparse.ArgumentParser(
        prog=prog, description="An interactive REDs explorer in the browser."
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any other address warns unless --auth is set: "
        "the page runs computations for whoever reaches it)",
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--model",
        default="rooms",
        help="model selected when the page opens (a registered name; a package.module:factory "
        "or .msgpack checkpoint named here is allowed on the page too)",
    )
    p.add_argument(
        "--allow-model",
        action="append",
        default=[],
        metavar="PKG.MOD:FACTORY",
        help="a model factory the page may load (repeatable). The page never imports a name "
        "typed into it: only the registry's models and these",
    )
    p.add_argument(
        "--allow-checkpoints",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose files the page may name (repeatable): StyleGAN2 .msgpack "
        "checkpoints (offered in the model list), model arguments that are paths, arcface "
        "weights. No other path is opened",
    )
    p.add_argument(
        "--auth",
        type=_auth,
        default=None,
        metavar="USER:PASSWORD",
        help="ask for this user name and password before showing the page",
    )
    p.add_argument(
        "--max-seconds",
        type=_positive,
        default=300.0,
        help="wall-clock limit of one run or inversion (300); one runs at a time",
    )
    p.add_argument(
        "--max-upload-mb", type=_positive, default=20.0, help="largest upload in MiB (20)"
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    return p
