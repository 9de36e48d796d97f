"""Process machinery for parallel replay: forked workers, their results, shared counters.

Theory of operation
-------------------
Workers are ``os.fork`` children: they share the log, the images and the checker with
the parent copy-on-write (closures work as checkers) and send back one pickled outcome
through a pipe. A worker that dies (a checker that segfaults, the OOM killer) sends
nothing; :func:`collect` then raises :class:`WorkerDied` with its wait status, and the
shared :class:`StateSlots` tell which crash state the worker was judging. The
exploration itself (what a worker does) is :mod:`pmemsim.persistence.explore`'s.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["BlockClaims", "SharedCounter", "StateSlots", "WorkerDied", "collect", "end", "fork", "stop"]


class WorkerDied(RuntimeError):
    """A forked worker ended without sending its outcome (killed by a signal, or exited).

    ``signal`` is the signal that killed it (0 when it exited), ``slot`` the worker's
    index in the :class:`StateSlots` it reported to.
    """

    def __init__(self, pid: int, status: int, slot: int) -> None:
        self.pid = pid
        self.signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        self.slot = slot
        if self.signal:
            try:
                how = f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                how = f"killed by signal {self.signal}"
        else:
            how = f"exited with status {os.WEXITSTATUS(status) if os.WIFEXITED(status) else status}"
        super().__init__(f"crash-state worker process {pid} {how}")


def context() -> Any:
    """The fork context (ValueError where the platform cannot fork)."""
    import multiprocessing  # here: a replay in one process (or one isolated child) never needs it

    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Linux always forks
        raise ValueError("this needs the 'fork' start method, which this platform lacks")
    return multiprocessing.get_context("fork")


def fork(work: Callable[[], object], slot: int = 0) -> tuple[int, int, int]:
    """Run ``work`` in a forked child; returns (pid, read end of the pipe carrying its outcome, slot)."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        pid = os.fork()
    if pid:
        os.close(write)
        return pid, read, slot
    status = 1  # pragma: no cover - the child's side (coverage does not follow os._exit)
    try:  # pragma: no cover
        # SIGTERM from stop() unwinds the worker, so its finally blocks end its checker
        # programs and remove their temporary files.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        os.close(read)
        try:
            payload: tuple[bool, object] = (True, work())
        except BaseException as exc:
            payload = (False, exc)
        try:
            data = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = pickle.dumps((False, RuntimeError(f"worker {os.getpid()} failed: {payload[1]!r}")))
        with os.fdopen(write, "wb") as f:
            f.write(data)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        status = 0
    finally:  # pragma: no cover
        os._exit(status)


def collect(pid: int, read: int, slot: int) -> Any:
    """The outcome a forked worker sent (its exception is raised here; WorkerDied when it sent none)."""
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise WorkerDied(pid, status, slot)
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


def _interrupt(signum: int, frame: object) -> None:  # pragma: no cover - runs in workers
    # Once: a second signal (Ctrl-C reaches the whole group, then stop() sends SIGTERM) must
    # not cut the clean-up the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


#: How long stop() lets workers clean up after SIGTERM before it kills them.
GRACE_SECONDS = 2.0


def end(pid: int, grace: float = 0.0) -> None:
    """End and reap worker ``pid``: SIGTERM, ``grace`` seconds to unwind, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if not done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:  # pragma: no cover - already reaped
        pass


def stop(children: list[tuple[int, int, int]]) -> None:
    """End and reap the workers still running (after an error or an interrupt).

    Each gets SIGTERM and a moment to unwind (ending its checker programs, removing its
    temporary files), then SIGKILL.
    """
    for pid, _, _ in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for pid, read, _ in children:
        try:
            end(pid, max(0.0, deadline - time.monotonic()))
        finally:
            os.close(read)


class SharedCounter:
    """A counter shared by forked processes: each :meth:`take` returns the next integer."""

    def __init__(self, ctx: Any) -> None:
        self.value = ctx.RawValue("q", 0)
        self.lock = ctx.Lock()

    def take(self) -> int:
        """The next integer (0, 1, 2, ... across all processes)."""
        with self.lock:
            value = int(self.value.value)
            self.value.value = value + 1
            return value


class StateSlots:
    """Per worker, the crash state it is judging now (epoch, state number): read after a worker died.

    The words live in an anonymous shared mapping, which forked children share with the
    parent (``ctx`` is accepted for callers that pass a multiprocessing context, and unused).
    """

    def __init__(self, ctx: Any, workers: int) -> None:
        self.memory = mmap.mmap(-1, 16 * max(workers, 1))  # MAP_SHARED | MAP_ANONYMOUS
        # Item stores through a memoryview are cheap: this runs once per checker call.
        self.words = memoryview(self.memory).cast("q")

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("StateSlots live in shared memory for forked workers only")

    def set(self, slot: int, epoch: int, seq: int) -> None:
        """Record that worker ``slot`` is judging state ``seq`` of ``epoch``."""
        words = self.words
        words[2 * slot] = epoch
        words[2 * slot + 1] = seq

    def get(self, slot: int) -> tuple[int, int]:
        """The last (epoch, state number) worker ``slot`` recorded."""
        return int(self.words[2 * slot]), int(self.words[2 * slot + 1])


class BlockClaims:
    """Which blocks of ``block`` consecutive epochs some process took (shared memory, set before forking).

    A process explores its own blocks front to back, taking them one at a time; once out
    of them it steals the back half of the last run of free blocks it knows the epochs of
    (work stealing: a few large steals, each costing one fast-forward of the image).
    """

    def __init__(self, count: int, block: int, ctx: Any) -> None:
        self.flags = ctx.RawArray("b", max(count, 1))
        self.lock = ctx.Lock()
        self.block = block

    def take(self, index: int) -> bool:
        """Claim block ``index``; False when another process has it."""
        with self.lock:
            if self.flags[index]:
                return False
            self.flags[index] = 1
            return True

    def steal(self, below: int) -> tuple[int, int] | None:
        """Claim the back half (rounded up) of the last run of free blocks under ``below``."""
        flags = self.flags
        with self.lock:
            last = below - 1
            while last >= 0 and flags[last]:
                last -= 1
            if last < 0:
                return None
            first = last
            while first > 0 and not flags[first - 1]:
                first -= 1
            first += (last + 1 - first) // 2
            for i in range(first, last + 1):
                flags[i] = 1
            return first, last + 1
