"""Multi-host augmentation on JAX's distributed runtime: which process computes which shard.

A job with ``P`` processes (``jax.process_count()``) gives shard ``i`` to process ``i % P``
(:func:`owned_shards`). Each process computes its shards on its own local devices
(``jax.local_devices()``) and writes them into the shared output folder; no device collective
runs across processes. The only cross-process steps go through the runtime's coordination
service (its key-value store and barriers, no devices involved): process 0 validates the folder
and writes ``config.json``, then tells the others to start (or why not); at the end all processes
meet at a barrier so that process 0 keeps the folder's lock until every process is done.

Because a shard's contents depend only on its index and the configuration, the assignment may
change between runs (another process count): a process skips every shard of its share that any
process's manifest lists and that verifies, and recomputes the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Processes", "initialize", "owned_shards"]

_CALLS = itertools.count()  # same sequence in every process (SPMD), so keys match across processes


class Processes(NamedTuple):
    """This process's place in a job: ``index`` in ``[0, count)``."""

    index: int = 0
    count: int = 1

    @property
    def leader(self) -> bool:
        """Process 0 validates the folder and holds its lock."""
        return self.index == 0


def owned_shards(n_shards: int, procs: Processes) -> range:
    """The shard indices process ``procs.index`` computes: ``i`` with ``i % count == index``.

    A ``range``: nothing is enumerated (a job of 3e9 seeds has 47 M shards of 64), and ``in``
    and ``len`` are constant time.

    >>> list(owned_shards(5, Processes(1, 2)))
    [1, 3]
    """
    return range(procs.index, n_shards, procs.count)


def initialize(distributed: bool | Mapping[str, Any] | None) -> Processes:
    """Starts ``jax.distributed`` when asked and returns this process's place.

    Args:
      distributed: ``None``/``False``: do not initialise (a caller may have done it already; the
        job then reads ``jax.process_index()`` / ``jax.process_count()``). ``True``:
        ``jax.distributed.initialize()`` with its auto-detection (SLURM, TPU pods, Kubernetes,
        MPI). A mapping: keyword arguments of ``jax.distributed.initialize`` (e.g.
        ``coordinator_address="10.0.0.1:1234", num_processes=4, process_id=0``).

    Returns:
      :class:`Processes`.

    Raises:
      ValueError: the runtime cannot start with these arguments (the message says why).

    >>> initialize(None)  # a single process
    Processes(index=0, count=1)
    """
    import jax

    if distributed is not None and distributed is not False:
        from jax._src import distributed as state

        if state.global_state.client is None:  # already initialised: keep it
            kwargs = {} if distributed is True else dict(distributed)
            _check(kwargs)
            try:
                jax.distributed.initialize(**kwargs)
            except (RuntimeError, ValueError, TypeError) as err:
                raise ValueError(
                    f"distributed: jax.distributed.initialize({_show(kwargs)}) failed: "
                    f"{str(err).rstrip('.')}. "
                    "Pass coordinator address, number of processes and process id (or run "
                    "under SLURM / a TPU pod for auto-detection)."
                ) from None
    return Processes(jax.process_index(), jax.process_count())


def _check(kwargs: Mapping[str, Any]) -> None:
    n, i = kwargs.get("num_processes"), kwargs.get("process_id")
    for name, value in (("num_processes", n), ("process_id", i)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"distributed: {name} must be an int; got {value!r}.")
    if n is not None and n < 1:
        raise ValueError(f"distributed: num_processes must be >= 1; got {n}.")
    if i is not None and (i < 0 or (n is not None and i >= n)):
        raise ValueError(
            f"distributed: process_id must lie in [0, num_processes{'' if n is None else f' = {n}'}); "
            f"got {i}."
        )
    address = kwargs.get("coordinator_address")
    if address is not None and (not isinstance(address, str) or ":" not in address):
        raise ValueError(
            f"distributed: coordinator address must be HOST:PORT (e.g. 10.0.0.1:12345); got {address!r}."
        )


def _show(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


class Coordinator:
    """Process 0 -> all messages and barriers over the coordination service (no devices).

    One instance per job call; keys are unique per call (every process makes the same calls in
    the same order). With one process every method returns at once.
    """

    def __init__(self, procs: Processes):
        self.procs = procs
        self.prefix = f"reds_jax/augment/{next(_CALLS)}"
        self.client = None
        if procs.count > 1:
            from jax._src import distributed as state

            self.client = state.global_state.client
            if self.client is None:
                raise ValueError(
                    f"distributed: this process is {procs.index} of {procs.count} but the "
                    "jax.distributed client is missing; initialise it with "
                    "jax.distributed.initialize() (or pass distributed=True)."
                )

    def publish(self, name: str, value: str) -> None:
        """Process 0: sets ``name`` for the others."""
        if self.client is not None:
            self.client.key_value_set(f"{self.prefix}/{name}", value)

    def receive(self, name: str, timeout_s: float) -> str:
        """Other processes: waits for process 0's ``name`` (raises ``TimeoutError``)."""
        try:
            return self.client.blocking_key_value_get(f"{self.prefix}/{name}", int(timeout_s * 1e3))
        except Exception as err:  # the runtime raises its own error types (deadline, unavailable)
            raise TimeoutError(
                f"process {self.procs.index}: no word from process 0 within {timeout_s:.0f} s "
                f"({type(err).__name__}: {err})"
            ) from None

    def barrier(self, name: str, timeout_s: float) -> None:
        """All processes wait here for each other."""
        if self.client is not None:
            self.client.wait_at_barrier(f"{self.prefix}/{name}", int(timeout_s * 1e3))
