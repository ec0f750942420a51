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

Failures are one line naming the process and the cause. The runtime's C++ client ends a process
with an ``abort()`` and a stack trace when the coordination service reports a fatal error (a peer
died or was killed, two processes claimed one id); ``reds-jax augment`` with multi-host flags
therefore runs the job in a child process (:func:`supervise`) and turns such an end into one line
(exit status 2). Process 0's coordinator binds the host of ``--coordinator`` (not every interface);
``--num-processes`` must match the job's on every process; a missing coordinator or process is
reported after ``initialization_timeout`` seconds.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["Processes", "initialize", "owned_shards", "supervise"]

SUPERVISED = "REDS_JAX_SUPERVISED"  # set in the child of :func:`supervise`

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
            if kwargs.get("coordinator_address") and kwargs.get("process_id") == 0:
                # bind the given host only (jax binds [::]: every interface)
                kwargs.setdefault("coordinator_bind_address", kwargs["coordinator_address"])
            try:
                jax.distributed.initialize(**kwargs)
            except (RuntimeError, ValueError, TypeError) as err:
                who = kwargs.get("process_id", "?")
                raise ValueError(
                    f"distributed: process {who}: jax.distributed.initialize({_show(kwargs)}) "
                    f"failed: {_cause(str(err))}. Start every process of the job with the same "
                    "--coordinator and --num-processes and its own --process-id (or run under "
                    "SLURM / a TPU pod for auto-detection)."
                ) from None
            _same_count(kwargs, state.global_state.client)  # after initialize: its client
    return Processes(jax.process_index(), jax.process_count())


def _same_count(kwargs: Mapping[str, Any], client: Any) -> None:
    """Every process checks every other's ``num_processes`` (through the coordinator's key-value
    store), so a mismatch stops the whole job at once with one line, not one process."""
    import jax

    n, me = kwargs.get("num_processes"), jax.process_index()
    if n is None or client is None:
        return
    client.key_value_set(f"reds_jax/num_processes/{me}", str(n))  # first: the others read it
    if n != jax.process_count():
        raise ValueError(
            f"distributed: process {me} was started with --num-processes {n}, but the "
            f"coordinator at {kwargs.get('coordinator_address')} runs a job of "
            f"{jax.process_count()} processes; pass the same --num-processes to every process."
        )
    timeout_ms = int(kwargs.get("initialization_timeout", 300)) * 1000
    for other in range(jax.process_count()):
        try:
            theirs = client.blocking_key_value_get(f"reds_jax/num_processes/{other}", timeout_ms)
        except Exception as err:  # noqa: BLE001 - the runtime raises its own error types
            raise ValueError(
                f"distributed: process {me}: process {other} did not report its "
                f"--num-processes ({_cause(str(err))})."
            ) from None
        if theirs != str(n):
            raise ValueError(
                f"distributed: process {me} was started with --num-processes {n}, process "
                f"{other} with {theirs}; pass the same --num-processes to every process."
            )


def _cause(text: str) -> str:
    """The first line of a runtime error, without its RPC and type-URL noise."""
    first = " ".join(text.strip().splitlines()[:1]) or "unknown error"
    first = re.sub(r" ?\[type\.googleapis\.com/[^\]]*\]", "", first).rstrip(". ")
    if "DEADLINE_EXCEEDED" in text or "timed out" in text.lower():
        first += (
            " (not every process connected in time: a process missing, a coordinator that is "
            "not running or not reachable, or a different --num-processes)"
        )
    return first[:400]


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
    if address is not None:
        port = address.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"distributed: the coordinator's port must be in 1..65535; got {address!r}."
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


# ---------------------------------------------------------------------------------------------
# One line instead of the runtime's abort


_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^\]]+\] ")
_FATAL = "Terminating process because the JAX distributed service detected fatal errors"


def supervise(
    argv: Sequence[str], process: Any, *, prog: str = "reds-jax augment", module: str = ""
) -> int:
    """Runs ``python -m MODULE ARGV`` (the same command) as a child and reports how it ended.

    The child's standard output passes through; its standard error passes through until the
    runtime's own log lines start, after which only lines of ours (``reds-jax ...``) are shown.
    If the runtime aborted the child (a peer died, two processes claimed one id), one line says
    so, naming ``process`` and the cause, and the exit status is 2.

    Args:
      argv: the child's arguments (the command line after the program name).
      process: this process's ``--process-id`` (for the message).
      prog: the command's name in messages.
      module: the module to run (default: the command line, :mod:`reds_jax.jobs.cli`).

    Returns:
      The child's exit status (2 after a runtime abort).
    """
    env = dict(os.environ, **{SUPERVISED: "1"})
    cmd = [sys.executable, "-m", module or "reds_jax.jobs.cli", *argv]
    child = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    held: list[str] = []

    said = []  # the child's own error line, if it printed one

    def pump():
        quiet = False
        for raw in iter(child.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            quiet = quiet or bool(_GLOG.match(line)) or line.startswith("*** Check failure")
            said.extend([line] if line.startswith(f"{prog}: error:") else [])
            if not quiet or line.startswith(prog):
                sys.stderr.write(line)
                sys.stderr.flush()
            else:
                held.append(line)
                del held[:-400]  # the runtime's last words are enough

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        code = child.wait()
    reader.join(timeout=5)
    text = "".join(held)
    if said:  # the job's own one-line error came first; the runtime's end is its echo
        return 2
    if _FATAL in text or (code < 0 and text):
        print(f"{prog}: error: process {process}: {fatal_cause(text, code)}", file=sys.stderr)
        return 2
    return 130 if code == -2 else (1 if code < 0 else code)


def _die_with_parent() -> None:
    """In the child (Linux): a SIGKILL of the supervisor kills the job too (no orphan)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def fatal_cause(text: str, code: int) -> str:
    """What stopped a process of the job, in one sentence, from the runtime's own message ``text``
    (and the exit ``code``: a negative one is a signal)."""
    status = text.split("absl::Status:", 1)[-1] if "absl::Status:" in text else text
    lost = re.search(r"stopped sending heartbeats\):\s*([\d,\s]+?)\s*\n?The tasks", status)
    if lost is None:
        lost = re.search(r"Task (\d+) heartbeat timeout", text)
    if lost is not None:
        who = ", ".join(lost.group(1).replace(",", " ").split())
        return (
            f"the job's distributed runtime lost process {who} (it stopped responding: died, "
            "was killed or cut off); this process stopped too. Run the job again on every "
            "process to resume it (finished shards are kept)."
        )
    if "RegisterTask" in text and ("DEADLINE_EXCEEDED" in status or "UNAVAILABLE" in status):
        return (
            "no coordinator answered in time (process 0 not running, not reachable at "
            "--coordinator, or still starting); start process 0 with the same --coordinator, "
            "or raise --distributed-timeout."
        )
    if "different incarnation" in text:
        return (
            "two processes of the job claimed the same --process-id (or one restarted while the "
            "job ran); give every process its own --process-id and start them all again."
        )
    if "RegisterTask" in text or ("already" in text.lower() and "register" in text.lower()):
        return (
            "the coordinator refused this process's registration (another process already "
            "runs with the same --process-id, or the job restarted); give every process its own "
            "--process-id and start them all again."
        )
    if "Shutdown barrier" in text:
        return (
            "another process of the job stopped before this one finished (see its error); "
            "this process stopped too. Fix that, then run the job again on every process."
        )
    first = _cause(status)
    how = f"signal {-code}" if code < 0 else f"exit status {code}"
    return f"the job's distributed runtime stopped this process ({first}; {how})."
