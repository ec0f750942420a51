"""Progress a user can follow: phase lines (loading, compiling or loaded from the cache, running,
writing), then a tqdm bar whose rate excludes compilation.

:func:`compile_phase` runs an ahead-of-time compile and says what happened: "compiling" only when the
program is not in JAX's persistent compilation cache (see :mod:`reds_jax.compile_cache`; a cache hit
is seen through ``jax.monitoring``'s ``/jax/compilation_cache/cache_hits`` event), then how long it
took. :class:`BatchProgress` is an ``on_batch`` callback for
:meth:`reds_jax.jobs.experiment.Experiment.run` (used by ``reds-jax demo``, ``traverse`` and
``augment``) whose :meth:`BatchProgress.compile` is its ``on_compile``; the bar starts after the first
batch, so its rate and ETA are those of the compiled program.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["COMPILING", "BatchProgress", "CacheWatch", "compile_phase"]

COMPILING = "compiling (first run only, cached afterwards)"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CacheWatch:
    """Counts persistent-compilation-cache hits while it is active (a context manager).

    >>> with CacheWatch() as w:
    ...     pass
    >>> w.hits
    0
    """

    _active: list[CacheWatch] = []
    _listening = False

    def __init__(self):
        self.hits = 0

    @classmethod
    def _listen(cls) -> None:
        if cls._listening:
            return
        import jax

        def on_event(event: str, **kwargs: Any) -> None:
            if event == CACHE_HIT_EVENT:
                for w in cls._active:
                    w.hits += 1

        jax.monitoring.register_event_listener(on_event)
        cls._listening = True

    def __enter__(self) -> CacheWatch:
        self._listen()
        CacheWatch._active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        CacheWatch._active.remove(self)


def compile_phase(
    compile_fn: Callable[[], Any],
    say: Callable[[str], Any],
    *,
    what: str = "program",
    cached: bool | None = None,
    announce_after: float = 3.0,
) -> Any:
    """Runs ``compile_fn()`` (an ahead-of-time compile) and says what it did.

    If it has not finished after ``announce_after`` seconds without a cache hit, ``say`` gets
    "compiling ..." (a load from the cache takes about a second, so a warm run never says it); at
    the end it gets "compiled the {what} in X s" or "loaded the compiled {what} from the cache in
    X s".

    Args:
      compile_fn: returns the compiled program.
      say: prints one line.
      what: what is compiled, for the messages.
      cached: whether the persistent compilation cache is on (None: ask
        :func:`reds_jax.compile_cache.is_enabled`).
      announce_after: seconds before the "compiling" line.

    Returns:
      ``compile_fn()``.

    >>> lines = []
    >>> compile_phase(lambda: 42, lines.append, what="thing", cached=True)
    42
    >>> lines[-1].startswith("compiled the thing in")
    True
    """
    import threading

    if cached is None:
        from reds_jax.compile_cache import is_enabled

        cached = is_enabled()
    t0 = time.perf_counter()
    with CacheWatch() as watch:
        said = threading.Event()

        def announce() -> None:
            if not watch.hits:
                said.set()
                say(f"{COMPILING if cached else 'compiling (compilation cache off)'} ...")

        timer = threading.Timer(announce_after, announce)
        timer.daemon = True
        timer.start()
        try:
            out = compile_fn()
        finally:
            timer.cancel()
    dt = time.perf_counter() - t0
    if watch.hits:
        say(f"loaded the compiled {what} from the cache in {dt:.1f} s")
    else:
        say(f"compiled the {what} in {dt:.1f} s")
    return out


class BatchProgress:
    """``on_batch(n)`` callback: a tqdm bar over the items, started after the first batch.

    Its :meth:`compile` is the ``on_compile`` hook of
    :meth:`~reds_jax.jobs.experiment.Experiment.run`: phase lines around the compile
    (:func:`compile_phase`) and a "running" line.

    Args:
      total: items in the job (start latents).
      desc: bar label, e.g. ``"reds-jax traverse"``.
      done: items already finished before this call (e.g. shards skipped on resume).
      unit: item unit for the bar.
      enabled: False prints nothing at all.
      cached: whether the persistent compilation cache is on (changes the compile line only);
        None: ask :func:`reds_jax.compile_cache.is_enabled`.
      file: where to print (default stderr).
      announce_after: seconds of compiling without a cache hit before the "compiling" line.

    >>> import io
    >>> buf = io.StringIO()
    >>> p = BatchProgress(4, "job", cached=True, file=buf)
    >>> p.compile(lambda: None); p(2); p(2); p.close()
    >>> buf.getvalue().splitlines()[0].startswith("job: compiled the traversal in")
    True
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        done: int = 0,
        unit: str = "latent",
        enabled: bool = True,
        cached: bool | None = None,
        file: TextIO | None = None,
        announce_after: float = 3.0,
    ):
        self.total, self.desc, self.done, self.unit = total, desc, done, unit
        self.enabled = enabled
        self.file = sys.stderr if file is None else file
        self.bar: Any = None
        self.compile_s: float | None = None
        self.cached = cached
        self.announce_after = announce_after
        self._t0 = time.perf_counter()

    def say(self, text: str) -> None:
        """Prints ``desc: text`` (unless disabled)."""
        if self.enabled:
            print(f"{self.desc}: {text}", file=self.file, flush=True)

    def compile(self, compile_fn: Callable[[], Any]) -> Any:
        """``on_compile`` hook: runs ``compile_fn()`` with phase lines (:func:`compile_phase`)."""
        t0 = time.perf_counter()
        out = compile_phase(
            compile_fn,
            self.say,
            what="traversal",
            cached=self.cached,
            announce_after=self.announce_after,
        )
        self.compile_s = time.perf_counter() - t0
        left = self.total - self.done
        self.say(f"running {left} {self.unit}{'s' if left != 1 else ''} ...")
        self._t0 = time.perf_counter()
        return out

    def __call__(self, n: int) -> None:
        """Records ``n`` more finished items."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.enabled:
            return
        self.say(
            f"first batch of {n} ready after {time.perf_counter() - self._t0:.1f} s; "
            "rate below excludes it"
        )
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.total,
            initial=self.done,
            unit=self.unit,
            desc=self.desc,
            file=self.file,
            dynamic_ncols=True,
        )

    def close(self) -> None:
        """Closes the bar (if one was started)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
