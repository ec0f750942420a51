"""JAX's persistent compilation cache, for reds_jax: compile a configuration once, ever.

The library never changes global JAX configuration by itself; :func:`enable_compile_cache` does it
when asked. The ``reds-jax`` command line calls it by default (``--no-compile-cache`` or
``REDS_JAX_NO_COMPILE_CACHE=1`` turn that off), so a second ``reds-jax demo`` loads the compiled
traversal from disk instead of compiling it again.

The cache folder is ``<reds_jax cache>/xla`` (see :func:`reds_jax.assets.cache_dir`; JAX's cache keys
include the JAX version, the backend and the compiler flags, so one folder serves them all). It can
be deleted at any time.

This module imports jax only inside :func:`enable_compile_cache`.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Mapping

__all__ = [
    "DISABLE_ENV",
    "cache_folder",
    "disabled_by_env",
    "enable_compile_cache",
    "is_enabled",
]

DISABLE_ENV = "REDS_JAX_NO_COMPILE_CACHE"
"""Set to ``1`` to keep the ``reds-jax`` CLI from turning the compilation cache on."""


def cache_folder() -> pathlib.Path:
    """The default cache folder, ``<reds_jax cache>/xla``.

    >>> cache_folder().name
    'xla'
    """
    from reds_jax import assets

    return assets.cache_dir() / "xla"


def disabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$REDS_JAX_NO_COMPILE_CACHE`` is set to something other than ``0``/``false``/``no``.

    Args:
      environ: the environment to read (default ``os.environ``).

    >>> disabled_by_env({}), disabled_by_env({DISABLE_ENV: "1"}), disabled_by_env({DISABLE_ENV: "0"})
    (False, True, False)
    """
    value = (os.environ if environ is None else environ).get(DISABLE_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def is_enabled() -> bool:
    """Whether this process has JAX's persistent compilation cache on (jax is not imported here).

    >>> isinstance(is_enabled(), bool)
    True
    """
    jax = sys.modules.get("jax")
    return bool(jax is not None and jax.config.jax_compilation_cache_dir)


def enable_compile_cache(
    path: str | os.PathLike[str] | None = None, *, min_compile_time_secs: float = 0.0
) -> pathlib.Path:
    """Turns on JAX's persistent compilation cache (global JAX configuration).

    Every XLA compile that takes at least ``min_compile_time_secs`` is written to ``path`` and
    read back by later processes that compile the same program (same shapes, dtypes, constants,
    JAX version and flags), so a job compiles once. Tracing and lowering still run each time.

    Args:
      path: cache folder (created); default :func:`cache_folder` (``<reds_jax cache>/xla``).
      min_compile_time_secs: cache only compiles at least this long (JAX's default is 1 s; the
        default 0 caches every compile, so the many small ones of a job are reused too).

    Returns:
      The cache folder.

    Skipped as a doctest because it changes the global JAX configuration of the test process:

    >>> import reds_jax, tempfile
    >>> reds_jax.enable_compile_cache(tempfile.mkdtemp()).is_dir()  # changes this process's jax config  # doctest: +SKIP
    True
    """
    folder = pathlib.Path(path) if path is not None else cache_folder()
    folder = folder.expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:  # a cache that JAX already initialised without a folder would ignore the new one
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        pass
    return folder
