"""The store log: what a program did to persistent memory, as small frozen records.

Theory of operation
-------------------
A :class:`StoreLog` is a list of records in program order plus the files they refer to.
Every address in a record is a **file offset** (``file`` is the key the file was
registered under), so a log replays onto file images no matter where the program had
the file mapped; the optional ``addr`` keeps the process address for reports.

Records:

* :class:`Store` -- bytes written to a file range. ``nontemporal=True`` marks a
  non-temporal (streaming) store: it bypasses the CPU cache, so the model treats it as
  already flushed -- durable at the next :class:`Fence`, no :class:`Flush` needed. It
  also writes back whatever cached stores were pending in its cache lines (an NT store
  to a cached line evicts that line first).
* :class:`Flush` -- a cache-line write-back request (clwb/clflushopt/msync) for a range.
  It makes nothing durable by itself; ``file=""`` is a flush of memory that belongs to no
  registered file (kept because pmreorder ends a fence epoch only after some flush).
* :class:`Fence` -- sfence/drain: every flushed store becomes durable.
* :class:`Marker` -- a user annotation; ``NAME.BEGIN`` / ``NAME.END`` bracket a section
  (and select a crash-state engine for it, like pmreorder's ``-x NAME=Engine``).

How the core maps libpmemset calls onto records (``pmemset_memcpy``/``memmove``/``memset``
take ``MemFlags``; the first matching row wins):

============================================  ====================================================
call / flags                                  records
============================================  ====================================================
``NOFLUSH`` (with anything)                   ``Store`` only: no flush, and NOFLUSH implies NODRAIN
``NONTEMPORAL`` or ``WC``                     ``Store(nontemporal=True)``, then ``Fence`` unless NODRAIN
default, ``TEMPORAL`` or ``WB``               ``Store``, ``Flush`` of the range, ``Fence`` unless NODRAIN
plain store (``write``)                       ``Store``
``flush(addr, n)``                            ``Flush``
``drain()``                                   ``Fence``
``persist(addr, n)`` / ``deep_flush``         ``Flush``, ``Fence``
============================================  ====================================================

:class:`Recorder` is the convenient way to build a log: it validates every record
against the registered file sizes as it is appended, so a bad range is reported at the
call that made it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from pmemsim.enums import Granularity

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "Fence",
    "FileInfo",
    "Flush",
    "LogError",
    "Marker",
    "Record",
    "Recorder",
    "Store",
    "StoreLog",
    "caller_location",
    "paused_gc",
]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector off inside the block (restored after, even on error).

    Parsing and planning allocate one small object per record and per atom and free none
    of them, so each automatic collection only walks the growing heap again: with the
    collector on, a 1M-store log spends more time collecting than parsing. Nothing built
    there forms a reference cycle, so nothing is lost by not collecting.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class LogError(ValueError):
    """A store log that cannot be replayed: a bad record, range, marker or image.

    The message names the record (by its index in ``StoreLog.records``) or the file.
    """


def _check_int(name: str, value: object, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_opt_addr(addr: object) -> None:
    if addr is not None:
        _check_int("addr", addr)


@dataclass(frozen=True, slots=True)
class Store:
    """``data`` written at ``offset`` of file ``file`` (a key of ``StoreLog.files``).

    ``addr`` is the process address of the store, ``location`` the user's call site as
    ``"path.py:123"`` and ``frames`` the pmemcheck stack frames it came with (import only).
    """

    file: str
    offset: int
    data: bytes
    addr: int | None = None
    location: str | None = None
    nontemporal: bool = False
    frames: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.file, str):
            raise TypeError(f"file must be a str, not {type(self.file).__name__}")
        _check_int("offset", self.offset)
        if isinstance(self.data, bytearray | memoryview):
            object.__setattr__(self, "data", bytes(self.data))
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, not {type(self.data).__name__}")
        if not self.data:
            raise ValueError("a store must write at least one byte")
        _check_opt_addr(self.addr)

    @property
    def end(self) -> int:
        """One past the last file offset written."""
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class Flush:
    """A write-back request for ``[offset, offset+length)`` of ``file`` (``""``: no registered file)."""

    file: str
    offset: int
    length: int
    addr: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.file, str):
            raise TypeError(f"file must be a str, not {type(self.file).__name__}")
        _check_int("offset", self.offset)
        _check_int("length", self.length)
        _check_opt_addr(self.addr)

    @property
    def end(self) -> int:
        """One past the last file offset flushed."""
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Fence:
    """A store fence (sfence, ``pmemset_drain``): flushed stores become durable."""


@dataclass(frozen=True, slots=True)
class Marker:
    """A user annotation: ``NAME.BEGIN`` / ``NAME.END`` bracket a section, anything else is a note.

    Names cannot contain ``|`` or a line break (the pmemcheck log format has no escaping).
    ``data`` is what the program attached (``pset.mark(name, data=...)``): checkers see the
    latest one as ``ctx.data``. It must be JSON-serializable for a log to be saved, and is
    not part of a pmemcheck export.
    """

    name: str
    data: Any = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"marker name must be a str, not {type(self.name).__name__}")
        if not self.name or "|" in self.name or "\n" in self.name or "\r" in self.name:
            raise ValueError(
                f"bad marker name {self.name!r}: it must be non-empty, without '|' or line breaks"
            )

    @property
    def section(self) -> str | None:
        """``NAME`` of ``NAME.BEGIN`` / ``NAME.END`` (up to the first ``.``, as pmreorder), or None."""
        head = self.name.split(";", 1)[0]
        if head.endswith((".BEGIN", ".END")):
            return head.split(".", 1)[0]
        return None

    @property
    def is_begin(self) -> bool:
        """True for ``NAME.BEGIN``."""
        return self.name.split(";", 1)[0].endswith(".BEGIN")

    @property
    def is_end(self) -> bool:
        """True for ``NAME.END``."""
        return self.name.split(";", 1)[0].endswith(".END")


Record: TypeAlias = Store | Flush | Fence | Marker


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file a log writes to.

    ``initial`` is the durable content when recording started; when it is None the
    image is read from ``path`` at replay time, or is all zeros when ``path`` is None
    too. ``base`` is the process address the file was registered at in a pmemcheck log.
    """

    key: str
    path: str | None
    size: int
    initial: bytes | None = field(default=None, repr=False)
    base: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"file key must be a non-empty str, got {self.key!r}")
        _check_int("size", self.size)
        if self.initial is not None and len(self.initial) != self.size:
            raise ValueError(
                f"initial image of {self.key!r} is {len(self.initial)} bytes, size is {self.size}"
            )


@dataclass
class StoreLog:
    """Records in program order and the files they refer to.

    ``granularity`` is the effective store granularity of the set that recorded the log
    (it picks the default persistency model at replay); ``page_size`` sizes PAGE flushes.
    """

    records: list[Record] = field(default_factory=list)
    files: dict[str, FileInfo] = field(default_factory=dict)
    granularity: Granularity | None = None
    page_size: int = 4096

    def append(self, record: Record) -> None:
        """Append a record (not validated here: :func:`pmemsim.persistence.replay` validates)."""
        if not isinstance(record, Store | Flush | Fence | Marker):
            raise TypeError(f"not a log record: {type(record).__name__}")
        self.records.append(record)

    def extend(self, records: Iterable[Record]) -> None:
        """Append several records."""
        for record in records:
            self.append(record)

    def add_file(self, info: FileInfo) -> None:
        """Register (or replace) a file."""
        self.files[info.key] = info

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def stores(self) -> Iterator[tuple[int, Store]]:
        """``(record index, store)`` for every store."""
        for i, rec in enumerate(self.records):
            if isinstance(rec, Store):
                yield i, rec

    def validate(self) -> None:
        """Raise :class:`LogError` naming the first record that refers to an unknown file or outside it."""
        for i, rec in enumerate(self.records):
            check_record(self, i, rec)


def check_record(log: StoreLog, index: int, rec: Record) -> None:
    """Raise :class:`LogError` if ``rec`` (record ``index``) names an unknown file or a range outside it."""
    if isinstance(rec, Store):
        info = log.files.get(rec.file)
        if info is None:
            raise LogError(f"record {index}: STORE to unregistered file {rec.file!r}")
        if rec.end > info.size:
            raise LogError(
                f"record {index}: STORE [{rec.offset:#x}, {rec.end:#x}) is outside file {rec.file!r} "
                f"(size {info.size:#x})"
            )
    elif isinstance(rec, Flush) and rec.file:
        info = log.files.get(rec.file)
        if info is None:
            raise LogError(f"record {index}: FLUSH of unregistered file {rec.file!r}")
        if rec.end > info.size:
            raise LogError(
                f"record {index}: FLUSH [{rec.offset:#x}, {rec.end:#x}) is outside file {rec.file!r} "
                f"(size {info.size:#x})"
            )


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caller_location(frame: FrameType | None = None) -> str | None:
    """``"path.py:123"`` of the innermost frame outside the pmemsim package (the user's call site).

    Runtime: O(stack depth). Returns None when every frame is inside pmemsim.
    """
    f: FrameType | None = frame if frame is not None else sys._getframe(1)
    while f is not None:
        filename = f.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
            return f"{filename}:{f.f_lineno}"
        f = f.f_back
    return None


class Recorder:
    """Builds a :class:`StoreLog`, checking every record against the registered files.

    Misuse raises at once: ``ValueError`` for an unregistered file or a range outside
    it, ``TypeError`` for wrong types. The log is available as :attr:`log` at any time.
    """

    def __init__(self, granularity: Granularity | None = None, page_size: int = 4096) -> None:
        if granularity is not None:
            granularity = Granularity(granularity)
        _check_int("page_size", page_size, 1)
        self._log = StoreLog(granularity=granularity, page_size=page_size)

    @property
    def log(self) -> StoreLog:
        """The log recorded so far (the live object, not a copy)."""
        return self._log

    def register_file(
        self, key: str, path: str | None, size: int, initial: bytes | None = None, *, base: int | None = None
    ) -> FileInfo:
        """Register a file under ``key`` with its durable content ``initial`` (None: read ``path`` / zeros).

        Registering a key again is allowed when the path is the same and the size did not
        shrink (a file that grew); the first registration's initial bytes are kept and the
        new tail is taken from ``initial`` (or zeros).
        """
        _check_int("size", size)
        if initial is not None:
            initial = bytes(initial)
            if len(initial) != size:
                raise ValueError(f"initial image of {key!r} is {len(initial)} bytes, size is {size}")
        old = self._log.files.get(key)
        if old is not None:
            if old.path != path:
                raise ValueError(f"file key {key!r} is already registered for path {old.path!r}")
            if size < old.size:
                raise ValueError(
                    f"file {key!r} cannot shrink from {old.size} to {size} bytes while recording"
                )
            if old.initial is not None:
                tail = initial[old.size :] if initial is not None else bytes(size - old.size)
                initial = old.initial + tail
            else:
                initial = None
            base = old.base if base is None else base
        info = FileInfo(key, path, size, initial, base)
        self._log.add_file(info)
        return info

    def _file(self, key: str) -> FileInfo:
        info = self._log.files.get(key)
        if info is None:
            raise ValueError(f"file {key!r} is not registered (call register_file first)")
        return info

    def store(
        self,
        key: str,
        offset: int,
        data: bytes,
        addr: int | None = None,
        location: str | None = None,
        *,
        nontemporal: bool = False,
    ) -> None:
        """Record a store of ``data`` at ``offset`` of file ``key``."""
        rec = Store(key, offset, bytes(data), addr, location, nontemporal)
        info = self._file(key)
        if rec.end > info.size:
            raise ValueError(
                f"store [{offset:#x}, {rec.end:#x}) is outside file {key!r} (size {info.size:#x})"
            )
        self._log.records.append(rec)

    def flush(self, key: str, offset: int, length: int, addr: int | None = None) -> None:
        """Record a flush of ``[offset, offset+length)`` of file ``key``."""
        rec = Flush(key, offset, length, addr)
        info = self._file(key)
        if rec.end > info.size:
            raise ValueError(
                f"flush [{offset:#x}, {rec.end:#x}) is outside file {key!r} (size {info.size:#x})"
            )
        self._log.records.append(rec)

    def fence(self) -> None:
        """Record a fence (drain)."""
        self._log.records.append(Fence())

    def persist(self, key: str, offset: int, length: int, addr: int | None = None) -> None:
        """Record a flush of the range followed by a fence (``pmemset_persist``)."""
        self.flush(key, offset, length, addr)
        self.fence()

    def mark(self, name: str, data: Any = None) -> None:
        """Record a marker (``NAME.BEGIN``, ``NAME.END`` or a plain note), with optional user ``data``."""
        self._log.records.append(Marker(name, data))
