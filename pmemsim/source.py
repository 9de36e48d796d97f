"""Sources: the files parts are mapped from (``pmemset_source_*``).

A :class:`Source` owns an open descriptor (``from_file``, ``xfrom_file``,
``from_temporary``) or borrows one (``from_fd``). The descriptor lives in a
reference-counted :class:`~pmemsim._files.OpenFile` shared with every mapping made from
it, so deleting a source while its parts are still mapped keeps the mappings valid (as
with a real mmap after close) and the descriptor is closed when the last user lets go.
This module is the API only: checking arguments, choosing open flags and turning
``OSError`` into libpmemset's error codes. Every file-system call is made by the file
layer, :mod:`pmemsim._files` (where a fault plan can fail the k-th call of a kind). A
constructor given a ``fault_plan`` activates it for its own system calls, so
``fail("os.open")`` fails a ``from_file``.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from typing import TYPE_CHECKING

from pmemsim import _files
from pmemsim._files import NotRegularFile, OpenFile
from pmemsim.enums import SourceFlags
from pmemsim.errors import ErrorCode, PmemsetError, surfaces
from pmemsim.faults import FaultPlan, FaultSite

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Source"]

_VALID_FLAGS = int(SourceFlags.CREATE_ALWAYS | SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED)
_CREATE_MODE = 0o600
# File descriptors are C ints.
_INT_MAX = (1 << 31) - 1


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

    def __init__(self, file: OpenFile, *, flags: SourceFlags, temporary: bool) -> None:
        self._file: OpenFile | None = file
        self.flags = flags
        self.temporary = temporary
        self.path = file.path

    # -- constructors -------------------------------------------------------------

    @classmethod
    @surfaces
    def from_file(cls, path: str | os.PathLike[str], *, fault_plan: FaultPlan | None = None) -> Source:
        """Open an existing file read-write (``pmemset_source_from_file``).

        Raises PmemsetError INVALID_SOURCE_PATH when it does not exist (``.errno`` is
        ENOENT), ``-errno`` for other OS failures.
        """
        return cls.xfrom_file(path, SourceFlags(0), fault_plan=fault_plan)

    @classmethod
    @surfaces
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
            fd = _files.open_regular(p, oflags, _CREATE_MODE)
        except NotRegularFile as exc:
            raise PmemsetError(ErrorCode.INVALID_SOURCE_TYPE, f"source {p!r} is not a regular file") from exc
        except FileNotFoundError as exc:
            raise PmemsetError(
                ErrorCode.INVALID_SOURCE_PATH, f"cannot open source file {p!r}", os_errno=exc.errno
            ) from exc
        except OSError as exc:
            err = exc.errno or _errno.EIO
            raise PmemsetError(-err, f"cannot open source file {p!r}: {exc.strerror}", os_errno=err) from exc
        return cls(OpenFile(fd, os.path.abspath(p), owned=True), flags=sflags, temporary=False)

    @classmethod
    @surfaces
    def from_temporary(cls, dir: str | os.PathLike[str], *, fault_plan: FaultPlan | None = None) -> Source:
        """An unlinked temporary file in ``dir`` (``pmemset_source_from_temporary``).

        The file starts empty, grows as parts are mapped, and disappears when the
        source and its mappings are gone. A missing or unwritable ``dir`` →
        CANNOT_CREATE_TEMP_FILE.
        """
        d = _check_path(dir)
        _alloc(fault_plan, f"a temporary file in {d!r}")
        with _files.active_plan(fault_plan):
            try:
                fd = _files.open_tmpfile(d, _CREATE_MODE)
                if fd is None:
                    fd = _files.create_and_unlink(d)
            except OSError as exc:
                raise PmemsetError(
                    ErrorCode.CANNOT_CREATE_TEMP_FILE,
                    f"cannot create a temporary file in {d!r}: {exc.strerror}",
                    os_errno=exc.errno or _errno.EIO,
                ) from exc
        return cls(OpenFile(fd, None, owned=True), flags=SourceFlags(0), temporary=True)

    @classmethod
    @surfaces
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
            own = _files.private_descriptor(fd)
        except OSError as exc:
            err = exc.errno or _errno.EBADF
            raise PmemsetError(-err, f"cannot duplicate file descriptor {fd}", os_errno=err) from exc
        return cls(OpenFile(own, None, owned=True, label=f"<fd {fd}>"), flags=SourceFlags(0), temporary=False)

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

    @property
    def file(self) -> OpenFile:
        """The open file behind the source, which the core maps (ValueError once deleted)."""
        if self._file is None:
            raise ValueError(f"{self!r} was deleted")
        return self._file

    @property
    def grows_on_map(self) -> bool:
        """True when part_map may grow the file to fit a part (temporary or TRUNCATE_IF_NEEDED)."""
        return self.temporary or bool(self.flags & SourceFlags.TRUNCATE_IF_NEEDED)

    @surfaces
    def size(self) -> int:
        """Current size of the file in bytes (``-errno`` PmemsetError if it cannot be read)."""
        fd = self.file.fd
        try:
            return _files.fstat(fd).st_size
        except OSError as exc:
            err = exc.errno or _errno.EIO
            raise PmemsetError(-err, f"cannot stat {self!r}", os_errno=err) from exc
