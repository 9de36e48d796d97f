"""The one door to the operating system's file calls, with fault injection at each.

Theory of operation: every system call the core and the backends make on files and
mappings (open, fstat, ftruncate, fallocate, close, pread, pwrite, lseek, and the mmap
backend's mmap, munmap and msync) goes through a function of this module. Before the
real call, :func:`inject` asks the :class:`~pmemsim.faults.FaultPlan` active in the
current thread (a context variable, so threads and sets never see each other's plan)
to count one hit of that kind of call; when the plan says this hit fails, the call is
not made and the ``OSError`` the kernel would have returned is raised instead. A set
activates its own plan around each of its calls (:func:`active_plan`), so "the 3rd
msync fails" counts only that set's msyncs.

Functions resolve ``os`` at call time, so pyfakefs (which swaps this module's ``os``)
fakes them too; :func:`real_os` tells the two apart.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import stat
import types
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

from pmemsim.faults import OsCall

if TYPE_CHECKING:
    from pmemsim.faults import FaultPlan

__all__ = [
    "InputFileError",
    "active_plan",
    "close",
    "fallocate",
    "file_kind",
    "fstat",
    "ftruncate",
    "inject",
    "lseek",
    "open",
    "pread",
    "pwrite",
    "read_regular_file",
    "real_os",
]

_PLAN: ContextVar[FaultPlan | None] = ContextVar("pmemsim_os_fault_plan", default=None)


@contextlib.contextmanager
def active_plan(plan: FaultPlan | None) -> Iterator[None]:
    """Make ``plan`` the one the OS calls of this thread consult, for the ``with`` block."""
    token = _PLAN.set(plan)
    try:
        yield
    finally:
        _PLAN.reset(token)


def set_plan(plan: FaultPlan | None) -> object:
    """Activate ``plan`` without a ``with`` block; returns the token for :func:`reset_plan`."""
    return _PLAN.set(plan)


def reset_plan(token: object) -> None:
    """Undo :func:`set_plan`."""
    _PLAN.reset(token)  # type: ignore[arg-type]


def inject(call: OsCall, what: str) -> None:
    """Count one ``call``; raise its OSError when the active plan fails this hit."""
    plan = _PLAN.get()
    if plan is None:
        return
    fault = plan.hit(call)
    if fault is not None:
        err = fault.errno or _errno.EIO
        raise OSError(err, f"{what}: {os.strerror(err)} (injected fault at {call.value}, hit {fault.hit})")


def real_os() -> bool:
    """False while pyfakefs has replaced this module's ``os`` (its fds are not the kernel's)."""
    return isinstance(os, types.ModuleType)


def open(path: str, flags: int, mode: int = 0o777) -> int:
    """``os.open``."""
    inject(OsCall.OPEN, f"open({path!r})")
    return os.open(path, flags, mode)


def fstat(fd: int) -> os.stat_result:
    """``os.fstat``."""
    inject(OsCall.FSTAT, f"fstat({fd})")
    return os.fstat(fd)


def ftruncate(fd: int, size: int) -> None:
    """``os.ftruncate``."""
    inject(OsCall.FTRUNCATE, f"ftruncate({fd}, {size})")
    os.ftruncate(fd, size)


def fallocate(fd: int, offset: int, length: int) -> None:
    """``os.posix_fallocate``."""
    inject(OsCall.FALLOCATE, f"posix_fallocate({fd}, {offset}, {length})")
    os.posix_fallocate(fd, offset, length)


def close(fd: int) -> None:
    """``os.close``.

    An injected failure still closes the descriptor, as Linux does when close reports
    an error (EIO, EINTR): the number is free either way, and must never be retried.
    """
    try:
        inject(OsCall.CLOSE, f"close({fd})")
    except OSError:
        os.close(fd)
        raise
    os.close(fd)


def lseek(fd: int, pos: int, how: int) -> int:
    """``os.lseek`` (not a fault site: it cannot fail on a valid descriptor)."""
    return os.lseek(fd, pos, how)


def pread(fd: int, n: int, offset: int) -> bytes:
    """``os.pread`` (seek and read under pyfakefs, which has no pread)."""
    if real_os():
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


def pwrite(fd: int, data: memoryview, offset: int) -> int:
    """``os.pwrite`` (seek and write under pyfakefs, which has no pwrite)."""
    if real_os():
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


class InputFileError(ValueError):
    """An input file that is no regular file, or larger than its limit (the message names it)."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``), for messages."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


def read_regular_file(
    path: str | os.PathLike[str], max_bytes: int, what: str, *, prefix: bool = False
) -> bytes:
    """The content of the regular file ``path`` (an input the user named: a log, a scenario...).

    Non-regular files are refused before anything is read: the file is opened with
    O_NONBLOCK (a FIFO without a writer does not block the open) and checked with fstat,
    so ``/dev/zero`` or a FIFO can neither exhaust memory nor hang. ``what`` names the
    kind of file in messages ("a store log"). With ``prefix`` only the first ``max_bytes``
    are read and a larger file is fine (an image of which a log uses the start). Raises
    InputFileError for a non-regular file or one over ``max_bytes``, OSError when it
    cannot be opened or read. No fault
    injection: this reads the user's inputs, not the files under test.
    """
    name = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{name}: {file_kind(st.st_mode)}, not a regular file: {what} must be one")
        if st.st_size > max_bytes and not prefix:
            raise InputFileError(f"{name}: {st.st_size} bytes, more than the limit of {max_bytes} for {what}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes and prefix:
                return b"".join(chunks)[:max_bytes]
            if total > max_bytes:  # the file grew while we read it
                raise InputFileError(f"{name}: more than the limit of {max_bytes} bytes for {what}")
        return b"".join(chunks)
    finally:
        os.close(fd)
