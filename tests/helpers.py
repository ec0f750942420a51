"""Shared test helpers: a toy model that compiles in a second, model registration, the CLI runners
(in process and as a subprocess), a runner for code that needs N forced host devices, PNG files
written byte by byte (bad-input tests), and the skip rule of the browser tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence

import jax.numpy as jnp
import numpy as np
import pytest

from reds_jax.jobs import cli, models


def toy_weights(latent_dim: int = 4, size: int = 8) -> np.ndarray:
    """``[size·size·3, d]`` fixed random weights (seed 0) scaled by ``1/sqrt(d)``."""
    w = np.random.default_rng(0).standard_normal((size * size * 3, latent_dim))
    return w / np.sqrt(latent_dim)


def toy_loader(latent_dim: int = 4, size: int = 8):
    """A model loader: ``z [d] -> 0.5·(tanh(W z) + 1)`` as a ``[size, size, 3]`` image."""
    w = toy_weights(latent_dim, size)

    def generator(z):
        x = jnp.tanh(jnp.asarray(w, z.dtype) @ z)
        return 0.5 * (x.reshape(size, size, 3) + 1.0)

    return None, generator, latent_dim


@contextlib.contextmanager
def registered_model(name: str, loader, **defaults) -> Iterator[str]:
    """Registers ``loader`` as model ``name`` (defaults: the toy's experiment) for the block."""
    kw = dict(description="test toy", vary=("lowpass:1",), fix=("highpass:1",), step_size=0.2)
    models.register_model(name, loader, **{**kw, **defaults})
    try:
        yield name
    finally:
        models.MODELS.pop(name, None)


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """``reds-jax ARGV`` in this process: ``(exit status, stdout, stderr)``."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_command() -> list[str]:
    """The ``reds-jax`` console script next to this interpreter, or ``python -m`` the CLI."""
    script = pathlib.Path(sys.executable).with_name("reds-jax")
    return [str(script)] if script.exists() else [sys.executable, "-m", "reds_jax.jobs.cli"]


def cli_env(cache: str | os.PathLike[str]) -> dict[str, str]:
    """A subprocess environment: CPU only, unbuffered, a persistent compilation cache."""
    return dict(
        os.environ, JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1"
    )


def arrays_on_devices(code: str, counts: Sequence[int] = (8, 1)) -> list[np.ndarray]:
    """Runs ``code`` once per device count (``XLA_FLAGS`` forces that many host devices).

    ``code`` saves one array to the path ``OUT`` (``np.save("OUT", ...)``) and may assert
    ``len(jax.devices()) == 8``; both are replaced per run. Returns the saved arrays.
    """
    outs = []
    for n in counts:
        out = f"/tmp/reds_devices_{os.getpid()}_{n}.npy"
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        # benchmarks/ (bench_problems) is not in the package: put it on the child's path
        paths = [os.path.join(os.path.dirname(__file__), "..", "benchmarks")]
        env["PYTHONPATH"] = os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")])
        src = code.replace("OUT", out).replace("== 8", f"== {n}")
        subprocess.run([sys.executable, "-c", src], check=True, env=env, timeout=300)
        outs.append(np.load(out))
        os.remove(out)
    return outs


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, depth, colour, rows, palette=None, idat=None):
    """A PNG of raw scanlines ``rows`` (filter type 0 is prepended to each).

    ``colour``: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA; ``depth`` 1..16 bits per sample.
    ``idat`` replaces the compressed pixel data (e.g. a few bytes for a header-only bomb).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = zlib.compress(b"".join(b"\0" + r for r in rows)) if idat is None else idat
    out = PNG_SIGNATURE + png_chunk(b"IHDR", ihdr)
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    return out + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def chromium() -> str | None:
    """The system Chromium the browser tests drive: ``REDS_JAX_CHROMIUM``, else ``chromium``."""
    return os.environ.get("REDS_JAX_CHROMIUM") or shutil.which("chromium")


def browser_mark(modules: dict[str, str]):
    """``pytestmark`` of a browser test: skipped with the reason when a module (name -> the extra
    that installs it) or Chromium is missing; under ``REDS_JAX_REQUIRE_BROWSER=1`` (set by
    ``.ci/run``) that is an error at import instead."""
    missing = None
    for module, extra in modules.items():
        try:
            __import__(module)
        except ImportError:
            missing = f"{module} is not installed (pip install -e '.[{extra}]')"
            break
    if missing is None and chromium() is None:
        missing = "no Chromium (apt-get install chromium, or set REDS_JAX_CHROMIUM)"
    if missing and os.environ.get("REDS_JAX_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"REDS_JAX_REQUIRE_BROWSER=1 but {missing}")
    return pytest.mark.skipif(missing is not None, reason=str(missing))
