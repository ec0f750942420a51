"""Progress a user can follow: a "compiling" line, then a tqdm bar whose rate excludes compilation.

:class:`BatchProgress` is an ``on_batch`` callback for :meth:`reds_jax.jobs.experiment.Experiment.run`
(used by ``reds-jax demo``, ``traverse`` and ``augment``): it prints one line before the first
compiled call, which compiles (or loads the program from the persistent compilation cache, see
:mod:`reds_jax.compile_cache`), says how long that took, and only then starts a tqdm bar, so the bar's
rate and ETA are those of the compiled program. The compile line waits ``announce_after`` seconds, so
an error raised before anything compiles stays a one-line message.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["COMPILING", "BatchProgress"]

COMPILING = "compiling (first run only, cached afterwards)"


class BatchProgress:
    """``on_batch(n)`` callback: a compile line, then a tqdm bar over the remaining items.

    Args:
      total: items in the job (start latents).
      desc: bar label, e.g. ``"reds-jax traverse"``.
      done: items already finished before this call (e.g. shards skipped on resume).
      unit: item unit for the bar.
      enabled: False prints nothing at all.
      cached: whether the persistent compilation cache is on (changes the first line only);
        None: ask :func:`reds_jax.compile_cache.is_enabled`.
      file: where to print (default stderr).
      announce_after: seconds before the "compiling" line is printed if the first batch is not
        done yet (0: at once).

    >>> import io
    >>> buf = io.StringIO()
    >>> p = BatchProgress(4, "job", cached=True, file=buf, announce_after=0)
    >>> import time; time.sleep(0.1); p(2); p(2); p.close()
    >>> buf.getvalue().splitlines()[0]
    'job: compiling (first run only, cached afterwards) ...'
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
        announce_after: float = 0.5,
    ):
        self.total, self.desc, self.done, self.unit = total, desc, done, unit
        self.enabled = enabled
        self.file = sys.stderr if file is None else file
        self.bar: Any = None
        self.compile_s: float | None = None
        self._t0 = time.perf_counter()
        if cached is None:
            from reds_jax.compile_cache import is_enabled

            cached = is_enabled()
        self._what = COMPILING if cached else "compiling (compilation cache off)"
        self._timer = None
        if enabled and done < total:  # said only if the first batch takes a while (an error
            import threading  # before any compile, e.g. bad input, stays a one-line message)

            self._timer = threading.Timer(announce_after, self._announce)
            self._timer.daemon = True
            self._timer.start()

    def _announce(self) -> None:
        print(f"{self.desc}: {self._what} ...", file=self.file, flush=True)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __call__(self, n: int) -> None:
        """Records ``n`` more finished items."""
        self.done += n
        self._cancel()
        if self.bar is not None:
            self.bar.update(n)
            return
        self.compile_s = time.perf_counter() - self._t0
        if not self.enabled:
            return
        print(
            f"{self.desc}: first batch of {n} ready after {self.compile_s:.1f} s "
            "(compile + run); rate below excludes it",
            file=self.file,
            flush=True,
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
        self._cancel()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
