"""The command line of ``reds-jax app`` (:func:`reds_jax.app.ui.main`), without jax or Gradio.

``reds-jax app --help`` and argument errors answer at once: this module imports only the
standard library.
"""

from __future__ import annotations

import argparse

__all__ = ["parser"]


def parser(prog: str = "reds-jax app") -> argparse.ArgumentParser:
    """The explorer's argument parser (``prog`` names it in usage and errors)."""
    p = argparse.ArgumentParser(
        prog=prog, description="An interactive REDs explorer in the browser."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", default="rooms", help="model selected when the page opens")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (20)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    return p
