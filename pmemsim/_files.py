"""The one door to the operating system's file calls, with fault injection at each.

Theory of operation: every system call the core and the backends make on files and
mappings (open, fstat, ftruncate, fallocate, close, pread, pwrite, lseek, and the mmap
backend's mmap, munmap and msync) goes through a function of this module. Before the
real call, :func:`inject` asks the :class:`~pmemsim.faults.FaultPlan` active in the
current thread (a thread-local value, so threads never see each other's plan)
to count one hit of that kind of call; when the plan says this hit fails, the call is
not made and the ``OSError`` the kernel would have returned is raised instead. A set
activates its own plan around each of its calls (:func:`active_plan`), so "the 3rd
msync fails" counts only that set's msyncs.

Functions resolve ``os`` at call time, so pyfakefs (which swaps this module's ``os``)
fakes them too; :func:`real_os` tells the two apart, and this module is the only one
that asks: what a fake descriptor cannot do (pread, ``/proc/self/fd``, fallocate,
``O_TMPFILE``, mmap) is decided here.

Above the calls sit the file operations the core and the backends share: an
:class:`OpenFile` (a reference-counted descriptor shared by a source and its mappings),
opening a regular file, a private descriptor for a borrowed one, temporary files,
growing a file with its blocks allocated (:func:`truncate`, :func:`preallocate`) and
positioned reads and writes (:func:`read_at`, :func:`write_at`). They raise ``OSError``;
the callers turn it into their own errors. The shape follows PMDK's libpmemset, whose
``source.c`` sits on ``file.c`` / ``file_posix.c``.

Last, :func:`read_regular_file` reads the inputs a user names (logs, scenarios,
results, images), refusing anything that is not a regular file.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import stat
import tempfile
import threading
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pmemsim.faults import OsCall

if TYPE_CHECKING:
    from pmemsim.faults import FaultPlan

__all__ = [
    "MAX_FILE_SIZE",
    "InputFileError",
    "NotRegularFile",
    "OpenFile",
    "active_plan",
    "check_mmapable",
    "check_regular_file",
    "close",
    "close_quietly",
    "create_and_unlink",
    "fallocate",
    "file_contents",
    "file_kind",
    "fstat",
    "ftruncate",
    "inject",
    "lseek",
    "not_read_write",
    "open",
    "open_regular",
    "open_tmpfile",
    "pread",
    "preallocate",
    "private_descriptor",
    "pwrite",
    "read_at",
    "read_regular_file",
    "real_os",
    "reset_plan",
    "set_plan",
    "truncate",
    "why_refused",
    "write_at",
]

#: off_t is signed 64-bit: no file can be longer.
MAX_FILE_SIZE = (1 << 63) - 1


class _Active(threading.local):
    """The plan the OS calls of this thread consult (None: no injected failures)."""

    plan: FaultPlan | None = None


# A thread-local attribute, not a ContextVar: a set's finalizer (run by the garbage
# collector at any allocation, so inside another set's call too) activates a plan of its
# own, and CPython's ContextVar.set is not safe against such re-entry (it read the
# context's variables, the collector ran a finalizer that replaced them, and the
# interpreter crashed on the freed map). Setting an attribute and putting the old value
# back is.
_ACTIVE = _Active()


@contextlib.contextmanager
def active_plan(plan: FaultPlan | None) -> Iterator[None]:
    """Make ``plan`` the one the OS calls of this thread consult, for the ``with`` block."""
    token = set_plan(plan)
    try:
        yield
    finally:
        reset_plan(token)


def set_plan(plan: FaultPlan | None) -> object:
    """Activate ``plan`` without a ``with`` block; returns the token for :func:`reset_plan`."""
    old = _ACTIVE.plan
    _ACTIVE.plan = plan
    return old


def reset_plan(token: object) -> None:
    """Undo :func:`set_plan` (``token`` is what it returned: the plan active before)."""
    _ACTIVE.plan = token  # type: ignore[assignment]


def inject(call: OsCall, what: str) -> None:
    """Count one ``call``; raise its OSError when the active plan fails this hit."""
    plan = _ACTIVE.plan
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


# -- file operations over the calls ---------------------------------------------------------


class OpenFile:
    """An open file descriptor shared by a source and the mappings made from it.

    Reference-counted: a source holds one reference, each mapping of it another
    (:meth:`acquire`), so deleting a source while its parts stay mapped keeps the
    descriptor open, as a real mmap survives close. ``owned`` descriptors are closed
    when the last reference goes; ``label`` is how logs name a file without a path
    (``<fd 7>``).
    """

    def __init__(self, fd: int, path: str | None, *, owned: bool, label: str | None = None) -> None:
        self.fd = fd
        self.path = path
        self.owned = owned
        self.label = label
        self._refs = 1
        # A source may be deleted in one thread while a set maps from it in another.
        self._lock = threading.Lock()

    def acquire(self) -> OpenFile:
        """Take one more reference (a new mapping of the file)."""
        with self._lock:
            self._refs += 1
        return self

    def release(self) -> None:
        """Drop one reference; the last one closes an owned descriptor."""
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last and self.owned:
            # Linux frees the descriptor even when close reports an error (EIO, EINTR):
            # retrying could close a number another thread has just been given.
            close_quietly(self.fd)

    @property
    def closed(self) -> bool:
        """True once every reference was released."""
        return self._refs == 0


class NotRegularFile(OSError):
    """:func:`open_regular` opened something that is not a regular file (and closed it again)."""


def close_quietly(fd: int) -> None:
    """Close a descriptor of ours on an error path; its own failure must not hide the first."""
    with contextlib.suppress(OSError):
        close(fd)


def open_regular(path: str, flags: int, mode: int) -> int:
    """Open ``path`` and check it is a regular file; the descriptor, or OSError.

    :class:`NotRegularFile` when it is a directory, device or FIFO (closed again).
    """
    fd = open(path, flags, mode)
    try:
        st = fstat(fd)
    except OSError:
        close_quietly(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        close_quietly(fd)
        raise NotRegularFile(_errno.EINVAL, f"{path!r} is {file_kind(st.st_mode)}, not a regular file")
    return fd


def private_descriptor(fd: int) -> int:
    """A descriptor of our own for the file behind ``fd``, with the same access mode.

    Reopened through ``/proc/self/fd`` where possible, so it has its own file position
    and no O_APPEND (which would send positioned writes to the end of the file); a
    plain ``dup`` elsewhere (and under pyfakefs, which has no /proc).
    """
    if real_os():
        import fcntl

        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        try:
            own = open(f"/proc/self/fd/{fd}", mode | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return os.dup(fd)
        try:
            ours, theirs = fstat(own), fstat(fd)
        except OSError:
            close_quietly(own)  # never leak the private descriptor
            raise
        if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
            return own
        close_quietly(own)  # /proc named another file (a race with the caller): fall back
    return os.dup(fd)


def not_read_write(fd: int) -> bool:
    """True when ``fd`` is not open O_RDWR: a shared writable mapping of it must be refused."""
    if not real_os():
        return False  # pyfakefs descriptors: access modes are not tracked
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDWR


def check_mmapable() -> None:
    """OSError(EBADF) while pyfakefs is active: its descriptors are not the kernel's.

    The kernel would map whatever real file happens to have the fake number.
    """
    if not real_os():
        raise OSError(
            _errno.EBADF,
            "a fake file system (pyfakefs) is active: its descriptors cannot be mmap'ed; "
            "use SimulatedAddressSpace with fake files",
        )


def _check_free_space(fd: int, need: int) -> None:
    """ENOSPC now when the file system cannot hold ``need`` more bytes.

    Preallocating a huge growth would otherwise fill the disk before failing (and
    every other program on the machine would see the disk full meanwhile).
    """
    if not real_os():
        return  # pyfakefs enforces its own disk size on write/truncate
    try:
        st = os.fstatvfs(fd)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise OSError(_errno.ENOSPC, f"{need} more bytes do not fit: the file system has {free} free")


def preallocate(fd: int, offset: int, length: int) -> None:
    """Give ``[offset, offset+length)`` of the file real blocks before it is used as memory.

    A store to a hole of a sparse file on a full file system raises SIGBUS through a
    real mapping, which would kill the interpreter; allocating first turns that into
    ENOSPC here. File systems that cannot preallocate keep their holes; so do read-only
    descriptors (EBADF), which mmap refuses with a clearer EACCES anyway.
    """
    if not real_os():
        return
    allocated = fstat(fd).st_blocks * 512
    _check_free_space(fd, length - allocated)
    try:
        fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno not in (_errno.EOPNOTSUPP, _errno.EINVAL, _errno.ENOSYS, _errno.EBADF):
            raise


def truncate(fd: int, size: int) -> None:
    """Set the file's size; raises OSError (or OverflowError) from the OS.

    Growing also allocates the new blocks where the file system can
    (:func:`preallocate`): a sparse tail on a full file system would otherwise fail
    later, as SIGBUS on a store through a real mapping, instead of here. A failed
    allocation puts the old size back.
    """
    if size > MAX_FILE_SIZE:
        raise OSError(_errno.EFBIG, f"{size} bytes exceeds the largest file size")
    old = fstat(fd).st_size
    if size > old:
        _check_free_space(fd, size - old)  # before the file changes at all
    ftruncate(fd, size)
    if size > old:
        try:
            preallocate(fd, old, size - old)
        except OSError:
            # Put the old size back; the restore is not a fault site (no plan while it runs).
            with active_plan(None):
                ftruncate(fd, old)
            raise


def open_tmpfile(d: str, mode: int) -> int | None:
    """An ``O_TMPFILE`` descriptor in ``d`` (never visible by name), or None where unsupported."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not real_os():
        return None  # pyfakefs would create a named file for O_TMPFILE
    try:
        return open(d, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno in (_errno.EOPNOTSUPP, _errno.EISDIR, _errno.EINVAL):
            return None  # this file system has no O_TMPFILE: create and unlink instead
        raise


def create_and_unlink(d: str) -> int:
    """A descriptor of a new file in ``d`` whose name is already gone (OSError when impossible)."""
    fd, name = tempfile.mkstemp(prefix=".pmemsim-", dir=d)
    try:
        os.unlink(name)
    except OSError as exc:
        close_quietly(fd)
        raise OSError(exc.errno, f"cannot unlink temporary file {name!r}: {exc.strerror}") from exc
    return fd


def file_contents(file: OpenFile) -> bytes:
    """The whole content of an open file (the durable image when recording starts)."""
    size = fstat(file.fd).st_size
    return read_at(file.fd, 0, size)


def read_at(fd: int, offset: int, n: int) -> bytes:
    """``n`` bytes of ``fd`` at ``offset`` (zeros past the end), without moving a shared file position."""
    chunks: list[bytes] = []
    left, pos = n, offset
    while left:
        chunk = pread(fd, min(left, 1 << 24), pos)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        pos += len(chunk)
    data = b"".join(chunks)
    return data + bytes(n - len(data))


def write_at(fd: int, offset: int, data: memoryview) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` without moving a shared file position."""
    pos = offset
    while data:
        written = pwrite(fd, data, pos)
        data = data[written:]
        pos += written


# -- the user's input files -------------------------------------------------------------------


class InputFileError(ValueError):
    """An input file that is no regular file, or larger than its limit.

    ``str()`` names the file and the kind of input; :attr:`reason` is the short why
    (``a FIFO, not a regular file``) for readers that name the file their own way.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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


def _open_input(path: str | os.PathLike[str], max_bytes: int, what: str, prefix: bool) -> int:
    """Open an input without blocking; refuse anything but a regular file within the limit.

    O_NONBLOCK makes opening a FIFO return at once (a plain open waits for a writer);
    fstat on the open descriptor then decides, so nothing is read from a device. A NUL
    byte in the name is an OSError (EINVAL) like any other name the OS refuses.
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except ValueError as exc:  # "embedded null byte": the OS would never find such a name
        raise OSError(_errno.EINVAL, str(exc), name) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            reason = f"{file_kind(st.st_mode)}, not a regular file"
            raise InputFileError(f"{name}: {reason}: {what} must be one", reason)
        if st.st_size > max_bytes and not prefix:
            raise InputFileError(
                f"{name}: {st.st_size} bytes, more than the limit of {max_bytes} for {what}",
                f"{st.st_size} bytes, more than the {max_bytes} allowed",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def why_refused(exc: OSError | InputFileError) -> str:
    """Why an input file was not read, in a few words, for a reader that names the file itself."""
    if isinstance(exc, InputFileError):
        return exc.reason
    return exc.strerror or str(exc)


def check_regular_file(path: str | os.PathLike[str], max_bytes: int, what: str) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``max_bytes`` (read nothing).

    Raises InputFileError or OSError, as :func:`read_regular_file`.
    """
    os.close(_open_input(path, max_bytes, what, prefix=False))


def read_regular_file(
    path: str | os.PathLike[str], max_bytes: int, what: str, *, prefix: bool = False
) -> bytes:
    """The content of the regular file ``path`` (an input the user named: a log, a scenario...).

    Non-regular files are refused before anything is read: the file is opened with
    O_NONBLOCK (a FIFO without a writer does not block the open) and checked with fstat,
    so ``/dev/zero`` or a FIFO can neither exhaust memory nor hang. ``what`` names the
    kind of file in messages ("a store log"). With ``prefix`` only the first ``max_bytes``
    are read and a larger file is fine (an image of which a log uses the start). Never
    reads more than ``max_bytes + 1`` bytes, even from a file that grows meanwhile.
    Raises InputFileError for a non-regular file or one over ``max_bytes``, OSError when
    it cannot be opened or read. No fault injection: this reads the user's inputs, not
    the files under test.
    """
    name = os.fspath(path)
    fd = _open_input(path, max_bytes, what, prefix)
    try:
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
                raise InputFileError(
                    f"{name}: more than the limit of {max_bytes} bytes for {what}",
                    f"more than the {max_bytes} bytes allowed (the file grew while read)",
                )
        return b"".join(chunks)
    finally:
        os.close(fd)
