"""Sources: the files parts are mapped from (``pmemset_source_*``).

A :class:`Source` owns an open descriptor (``from_file``, ``xfrom_file``,
``from_temporary``) or borrows one (``from_fd``). The descriptor lives in a
reference-counted :class:`_OpenFile` shared with every mapping made from it, so
deleting a source while its parts are still mapped keeps the mappings valid (as with
a real mmap after close) and the descriptor is closed when the last user lets go.
All file-system calls of the package's core go through this module and
:mod:`pmemsim._files` (where a fault plan can fail the k-th call of a kind), by ``os``
functions that pyfakefs also fakes. A constructor given a ``fault_plan`` activates it
for its own system calls, so ``fail("os.open")`` fails a ``from_file``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import stat
import tempfile
import threading
from typing import TYPE_CHECKING

from pmemsim import _files
from pmemsim.enums import SourceFlags
from pmemsim.errors import ErrorCode, PmemsetError
from pmemsim.faults import FaultPlan, FaultSite

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Source"]

_VALID_FLAGS = int(SourceFlags.CREATE_ALWAYS | SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED)
# off_t is signed 64-bit: no file can be longer.
_MAX_FILE_SIZE = (1 << 63) - 1
_CREATE_MODE = 0o600
# File descriptors are C ints.
_INT_MAX = (1 << 31) - 1


class _OpenFile:
    """An open file descriptor shared by a source and the mappings made from it."""

    def __init__(self, fd: int, path: str | None, *, owned: bool, label: str | None = None) -> None:
        self.fd = fd
        self.path = path
        self.owned = owned
        self.label = label  # how logs name a file without a path (e.g. "<fd 7>")
        self._refs = 1
        # A source may be deleted in one thread while a set maps from it in another.
        self._lock = threading.Lock()

    def acquire(self) -> _OpenFile:
        with self._lock:
            self._refs += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last and self.owned:
            # Linux frees the descriptor even when close reports an error (EIO, EINTR):
            # retrying could close a number another thread has just been given.
            with contextlib.suppress(OSError):
                _files.close(self.fd)

    @property
    def closed(self) -> bool:
        return self._refs == 0


def _check_path(path: object) -> str:
    if isinstance(path, bytes):
        return os.fsdecode(path)
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be str, bytes or os.PathLike, not {type(path).__name__}")
    return os.fspath(path)


def _alloc(plan: FaultPlan | None, what: str) -> None:
    if plan is not None and (fault := plan.hit(FaultSite.ALLOC_SOURCE)) is not None:
        raise PmemsetError(
            ErrorCode.ENOMEM, f"cannot allocate the source for {what} (injected fault)", os_errno=fault.errno
        )


class Source:
    """A file to map parts from. Create with the ``from_*`` class methods.

    ``path`` is the file's path (None for ``from_fd`` and temporary sources),
    ``temporary`` tells an unlinked temporary file, ``flags`` the
    :class:`SourceFlags` given to ``xfrom_file``. Use as a context manager or call
    :meth:`delete` to close the descriptor it owns.
    """

    def __init__(self, file: _OpenFile, *, flags: SourceFlags, temporary: bool) -> None:
        self._file: _OpenFile | None = file
        self.flags = flags
        self.temporary = temporary
        self.path = file.path

    # -- constructors -------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, fault_plan: FaultPlan | None = None) -> Source:
        """Open an existing file read-write (``pmemset_source_from_file``).

        Raises PmemsetError INVALID_SOURCE_PATH when it does not exist (``.errno`` is
        ENOENT), ``-errno`` for other OS failures.
        """
        return cls.xfrom_file(path, SourceFlags(0), fault_plan=fault_plan)

    @classmethod
    def xfrom_file(
        cls,
        path: str | os.PathLike[str],
        flags: SourceFlags | int,
        *,
        fault_plan: FaultPlan | None = None,
    ) -> Source:
        """Open ``path`` with creation flags (``pmemset_xsource_from_file``).

        CREATE_ALWAYS creates or empties the file, CREATE_IF_NEEDED creates it when
        missing, TRUNCATE_IF_NEEDED lets part_map grow it to fit a part. Unknown flag
        bits → INVALID_SOURCE_FILE_CREATE_FLAGS.
        """
        p = _check_path(path)
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise TypeError(f"flags must be an int or SourceFlags, not {type(flags).__name__}")
        if flags & ~_VALID_FLAGS or flags < 0:
            raise PmemsetError(
                ErrorCode.INVALID_SOURCE_FILE_CREATE_FLAGS,
                f"invalid source flags {flags:#x}; valid bits are {_VALID_FLAGS:#x} "
                "(CREATE_ALWAYS | CREATE_IF_NEEDED | TRUNCATE_IF_NEEDED)",
            )
        sflags = SourceFlags(flags)
        _alloc(fault_plan, p)
        with _files.active_plan(fault_plan):
            return cls._open_path(p, sflags)

    @classmethod
    def _open_path(cls, p: str, sflags: SourceFlags) -> Source:
        oflags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        if sflags & SourceFlags.CREATE_ALWAYS:
            oflags |= os.O_CREAT | os.O_TRUNC
        elif sflags & SourceFlags.CREATE_IF_NEEDED:
            oflags |= os.O_CREAT
        try:
            fd = _files.open(p, oflags, _CREATE_MODE)
        except FileNotFoundError as exc:
            raise PmemsetError(
                ErrorCode.INVALID_SOURCE_PATH, f"cannot open source file {p!r}", os_errno=exc.errno
            ) from exc
        except OSError as exc:
            err = exc.errno or _errno.EIO
            raise PmemsetError(-err, f"cannot open source file {p!r}", os_errno=err) from exc
        try:
            mode = _files.fstat(fd).st_mode
        except OSError as exc:
            _close_quietly(fd)
            err = exc.errno or _errno.EIO
            raise PmemsetError(-err, f"cannot stat {p!r}", os_errno=err) from exc
        if not stat.S_ISREG(mode):
            _close_quietly(fd)
            raise PmemsetError(ErrorCode.INVALID_SOURCE_TYPE, f"source {p!r} is not a regular file")
        return cls(_OpenFile(fd, os.path.abspath(p), owned=True), flags=sflags, temporary=False)

    @classmethod
    def from_temporary(cls, dir: str | os.PathLike[str], *, fault_plan: FaultPlan | None = None) -> Source:
        """An unlinked temporary file in ``dir`` (``pmemset_source_from_temporary``).

        The file starts empty, grows as parts are mapped, and disappears when the
        source and its mappings are gone. A missing or unwritable ``dir`` →
        CANNOT_CREATE_TEMP_FILE.
        """
        d = _check_path(dir)
        _alloc(fault_plan, f"a temporary file in {d!r}")
        with _files.active_plan(fault_plan):
            fd = _open_tmpfile(d)
            if fd is None:
                fd = _create_and_unlink(d)
        return cls(_OpenFile(fd, None, owned=True), flags=SourceFlags(0), temporary=True)

    @classmethod
    def from_fd(cls, fd: int, *, fault_plan: FaultPlan | None = None) -> Source:
        """Borrow an open read-write descriptor (``pmemset_source_from_fd``); never closes it.

        A descriptor that is not open → ``-EBADF``; not a regular file →
        INVALID_SOURCE_TYPE.
        """
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if not 0 <= fd <= _INT_MAX:
            raise PmemsetError(-_errno.EBADF, f"invalid file descriptor {fd}", os_errno=_errno.EBADF)
        _alloc(fault_plan, f"fd {fd}")
        with _files.active_plan(fault_plan):
            return cls._borrow(fd)

    @classmethod
    def _borrow(cls, fd: int) -> Source:
        try:
            mode = _files.fstat(fd).st_mode
        except OSError as exc:
            err = exc.errno or _errno.EBADF
            raise PmemsetError(-err, f"file descriptor {fd} is not usable", os_errno=err) from exc
        if not stat.S_ISREG(mode):
            raise PmemsetError(ErrorCode.INVALID_SOURCE_TYPE, f"fd {fd} is not a regular file")
        # Work on our own descriptor: the caller may close (and the OS reuse) its number
        # while parts stay mapped, and the caller's descriptor is never closed by us.
        try:
            own = _private_descriptor(fd)
        except OSError as exc:
            err = exc.errno or _errno.EBADF
            raise PmemsetError(-err, f"cannot duplicate file descriptor {fd}", os_errno=err) from exc
        return cls(
            _OpenFile(own, None, owned=True, label=f"<fd {fd}>"), flags=SourceFlags(0), temporary=False
        )

    # -- life cycle ------------------------------------------------------------------

    @property
    def deleted(self) -> bool:
        """True after :meth:`delete`."""
        return self._file is None

    def delete(self) -> None:
        """Let go of the file (``pmemset_source_delete``); mappings made from it stay valid."""
        if self._file is not None:
            self._file.release()
            self._file = None

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    def __del__(self) -> None:
        # A source the user forgot still must not leak its descriptor.
        file = getattr(self, "_file", None)
        if file is not None:
            # Whenever the collector runs: never counted by the plan of the call it interrupts.
            with _files.active_plan(None):
                file.release()

    def __repr__(self) -> str:
        what = "temporary" if self.temporary else (self.path or "fd")
        state = " deleted" if self.deleted else ""
        return f"<Source {what}{state}>"

    # -- used by the core ----------------------------------------------------------------

    def _open_file(self) -> _OpenFile:
        if self._file is None:
            raise ValueError(f"{self!r} was deleted")
        return self._file

    @property
    def grows_on_map(self) -> bool:
        """True when part_map may grow the file to fit a part (temporary or TRUNCATE_IF_NEEDED)."""
        return self.temporary or bool(self.flags & SourceFlags.TRUNCATE_IF_NEEDED)

    def size(self) -> int:
        """Current size of the file in bytes (``-errno`` PmemsetError if it cannot be read)."""
        fd = self._open_file().fd
        try:
            return _files.fstat(fd).st_size
        except OSError as exc:
            err = exc.errno or _errno.EIO
            raise PmemsetError(-err, f"cannot stat {self!r}", os_errno=err) from exc

    def _truncate(self, size: int) -> None:
        """Set the file's size; raises OSError (or OverflowError) from the OS.

        Growing also allocates the new blocks where the file system can
        (``posix_fallocate``): a sparse tail on a full file system would otherwise
        fail later, as SIGBUS on a store through a real mapping, instead of here.
        """
        if size > _MAX_FILE_SIZE:
            raise OSError(_errno.EFBIG, f"{size} bytes exceeds the largest file size")
        fd = self._open_file().fd
        old = _files.fstat(fd).st_size
        if size > old:
            _check_free_space(fd, size - old)  # before the file changes at all
        _files.ftruncate(fd, size)
        if size > old:
            try:
                preallocate(fd, old, size - old)
            except OSError:
                # Put the old size back; the restore is not a fault site (no plan while it runs).
                with _files.active_plan(None):
                    _files.ftruncate(fd, old)
                raise


def _real_os() -> bool:
    """False while pyfakefs has replaced this module's ``os`` (its fds are not the kernel's)."""
    return _files.real_os()


def _close_quietly(fd: int) -> None:
    """Close a descriptor of ours on an error path; its own failure must not hide the first."""
    with contextlib.suppress(OSError):
        _files.close(fd)


def _private_descriptor(fd: int) -> int:
    """A descriptor of our own for the file behind ``fd``, with the same access mode.

    Reopened through ``/proc/self/fd`` where possible, so it has its own file position
    and no O_APPEND (which would send positioned writes to the end of the file); a
    plain ``dup`` elsewhere (and under pyfakefs, which has no /proc).
    """
    if _real_os():
        import fcntl

        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        try:
            own = _files.open(f"/proc/self/fd/{fd}", mode | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return os.dup(fd)
        try:
            ours, theirs = _files.fstat(own), _files.fstat(fd)
        except OSError:
            _close_quietly(own)  # never leak the private descriptor
            raise
        if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
            return own
        _close_quietly(own)  # /proc named another file (a race with the caller): fall back
    return os.dup(fd)


def not_read_write(fd: int) -> bool:
    """True when ``fd`` is not open O_RDWR: a shared writable mapping of it must be refused."""
    if not _real_os():
        return False  # pyfakefs descriptors: access modes are not tracked
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDWR


def _check_free_space(fd: int, need: int) -> None:
    """ENOSPC now when the file system cannot hold ``need`` more bytes.

    Preallocating a huge growth would otherwise fill the disk before failing (and
    every other program on the machine would see the disk full meanwhile).
    """
    if not _real_os():
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
    if not _real_os():
        return
    allocated = _files.fstat(fd).st_blocks * 512
    _check_free_space(fd, length - allocated)
    try:
        _files.fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno not in (_errno.EOPNOTSUPP, _errno.EINVAL, _errno.ENOSYS, _errno.EBADF):
            raise


def _temp_error(d: str, exc: OSError, what: str) -> PmemsetError:
    return PmemsetError(
        ErrorCode.CANNOT_CREATE_TEMP_FILE, f"cannot {what} in {d!r}", os_errno=exc.errno or _errno.EIO
    )


def _open_tmpfile(d: str) -> int | None:
    """An ``O_TMPFILE`` descriptor in ``d`` (never visible by name), or None where unsupported."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not _real_os():
        return None  # pyfakefs would create a named file for O_TMPFILE
    try:
        return _files.open(d, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), _CREATE_MODE)
    except OSError as exc:
        if exc.errno in (_errno.EOPNOTSUPP, _errno.EISDIR, _errno.EINVAL):
            return None  # this file system has no O_TMPFILE: create and unlink instead
        raise _temp_error(d, exc, "create a temporary file") from exc


def _create_and_unlink(d: str) -> int:
    try:
        fd, name = tempfile.mkstemp(prefix=".pmemsim-", dir=d)
    except OSError as exc:
        raise _temp_error(d, exc, "create a temporary file") from exc
    try:
        os.unlink(name)
    except OSError as exc:
        _close_quietly(fd)
        raise _temp_error(d, exc, f"unlink temporary file {name!r}") from exc
    return fd


def _file_contents(file: _OpenFile) -> bytes:
    """The whole content of an open file (the durable image when recording starts)."""
    size = _files.fstat(file.fd).st_size
    return read_at(file.fd, 0, size)


def read_at(fd: int, offset: int, n: int) -> bytes:
    """``n`` bytes of ``fd`` at ``offset`` (zeros past the end), without moving a shared file position.

    ``os.pread`` on real descriptors; pyfakefs has no pread, so fake ones seek and read.
    """
    chunks: list[bytes] = []
    left, pos = n, offset
    while left:
        chunk = _files.pread(fd, min(left, 1 << 24), pos)
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
        written = _files.pwrite(fd, data, pos)
        data = data[written:]
        pos += written
