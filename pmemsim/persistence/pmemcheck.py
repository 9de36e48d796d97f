"""Import and export pmemcheck's text store log, the format PMDK's pmreorder reads.

Theory of operation
-------------------
``valgrind --tool=pmemcheck --log-stores=yes --log-file=F`` writes one line of
``|``-separated records between ``START`` and ``STOP``; fields are ``;``-separated and
numbers are hex (``reference/pmemcheck-store-log.md``)::

    ==4242== pmemcheck-1.0, a simple persistent store checker
    ==4242== START|REGISTER_FILE;/pool;0x7f0000000000;0x10000;0x0|STORE;0x7f0000000040;0x2a;0x8
    ;0x4012a7: fn (a.c:41);0x4013f0: main (a.c:9)|FLUSH;0x7f0000000040;0x40|FENCE|tx.BEGIN|...|STOP
    ==4242== ERROR SUMMARY: 0 errors

(the second and third lines are one line in a real log). :func:`loads_pmemcheck` reads
it in three steps.

*Framing.* Valgrind's line prefixes (``==PID==``, ``--PID--``, ``**PID**``) are removed
from every line. Lines before the one whose first record is ``START`` are ignored (the
banner). After it, a line is part of the log when it starts with ``|`` or carries no
valgrind prefix; a prefixed line that does not start with ``|`` is a valgrind message:
skipped, with a :class:`LogWarning` when it comes before the last STOP (pmemcheck may
have missed a store it says it could not trace). A line break ends a record, like ``|``
(pmemcheck never breaks one), so a record broken over two lines fails to parse, while a
log written one record per line reads. Everything after the **last** ``STOP`` is ignored, as pmreorder
does (valgrind's summary follows it); a record between two STOPs, or a second START, is
bad input (two runs in one log). No STOP at all is bad input unless ``allow_truncated``:
then the last record, if it does not parse, is the one a killed pmemcheck cut in half and
is dropped with a :class:`LogWarning`. (A cut that still parses can only have shortened
a trailing FLUSH size, a REGISTER_FILE offset, a marker's text or the frames of a STORE:
a narrower flush means more crash states, never fewer.)

*Records.* Types are matched case-insensitively, like pmreorder.

* ``STORE;addr;value;size[;frame...]`` -- a :class:`Store` of ``size`` (1..8)
  little-endian bytes; the frames are kept, the first one's ``(file:line)`` is the location.
* ``FLUSH;addr;size`` -- one :class:`Flush` per registered piece of the range (any
  alignment), or ``Flush(file="")`` when it touches no registered file (it still ends a
  fence epoch).
* ``FENCE`` -- a :class:`Fence`, also before the first REGISTER_FILE.
* ``REGISTER_FILE;path;base;size;offset`` -- a file mapping (see *Registrations*); the
  path may hold ``;`` (the last three fields are the numbers).
* ``DEEP_SYNC`` or ``DEEP_SYNC;addr;size`` -- the Flush of the range, if given, then a Fence.
* ``NAME.BEGIN[;text]`` / ``NAME.END[;text]`` -- a section :class:`Marker` (sections nest);
  one word such as ``PMREORDER_MARKER_UNDEFINED`` -- a plain :class:`Marker`.
* ``COMMIT``, ``FREORDER``, ``PREORDER``, ``FAULT_ONLY``, ``NO_REORDER_FAULT`` -- records of
  older pmemcheck versions (the pcommit era and engine hints): no record, a :class:`LogWarning`.

``DEEP_SYNC`` comes from pmemcheck's deep-flush client request (pmem/valgrind#81), made
for ``pmem2_deep_flush``: write back the CPU caches of a range, then drain the memory
controller's write queue. Its maintainers call it "logically an equivalent of explicit
FLUSH+FENCE", so that is what it becomes, with or without the range fields; without a
range it is a Fence only, because claiming cached stores durable without knowing which
would hide crash states.
``COMMIT`` made fenced stores durable on pcommit-era CPUs; on ADR and eADR platforms the
fence already does, so dropping it loses nothing.

*Markers* are the strings programs emit verbatim with ``VALGRIND_PMC_EMIT_LOG``, so any
record could be one; a corrupted record (``FENCEE``) must not silently become one and flip
a verdict. The rule: a record that is no known type is a marker when it is a section
marker (the text before the first ``;`` is ``NAME.BEGIN`` or ``NAME.END``, NAME non-empty,
no whitespace), or a *plain* marker: one word (no whitespace, no ``;``, at most 4096
characters, starting with a letter, digit or ``_``) that is not a bare hex number and
not a near miss of a record type (starting with a type name, a prefix of three or more of
its letters, or one edit away from it, case-insensitively). Anything else is bad input
naming the record. :func:`dumps_pmemcheck` refuses to write a marker that would not read
back as one.

*Registrations.* pmemcheck logs a REGISTER_FILE for every mapping (libpmemobj registers
one pool 2-4 times) and never an unmapping, so a range can be registered again later for
another file: a pool closed and another mapped at the reused address. Two registrations
are *compatible* when they name the same path and map every address to the same file
offset (``base - offset`` equal); compatible registrations are one mapping, however often
repeated. Every address belongs to its **latest** registration. A registration that
overlaps an older incompatible one *retires* that older registration as a whole: reusing
an address needs the old mapping gone, and pmemcheck does not say whether the rest of it
went too. (Only that registration: other, compatible registrations of the same file are
left alone, since pieces of one file can be mapped and unmapped separately.)
A STORE that touches a retired range no newer registration covers is therefore bad input
naming both registrations (guessing would write bytes into the wrong file); a FLUSH there
is ignored like a flush of unregistered memory (flushing volatile memory is legal). A
STORE spanning two incompatible registrations, or leaving its registration, is bad input.

*Numbers* are checked before anything is built from them: hex of 1-16 digits (``0x``
optional; no sign, no ``_``), so below 2^64; ``addr + size`` must not pass 2^64; a STORE
is 1..8 bytes (:data:`MAX_STORE_SIZE`: pmemcheck logs the value as one 64-bit word and
splits SSE/AVX stores into 8-byte parts, so a larger size cannot carry its data) and its
value must fit its size; a registration ends in its file at most :data:`MAX_FILE_SIZE`
bytes in (replay holds each file in memory); a path is at most 4096 characters
(pmemcheck's own limit). At most :data:`MAX_RANGES` separately registered ranges are
kept, and flushes may visit a bounded number of them in total, so time and memory stay
proportional to the log. :func:`load_pmemcheck` refuses non-regular files (a FIFO, a
device) before reading and reads at most ``max_bytes``.

*Errors and warnings.* Every malformed log raises :class:`PmemcheckFormatError` (a
:class:`~pmemsim.persistence.log.LogError`, so a ``ValueError``) with one line naming
the record number (``START`` is record 1), line and column; a file that cannot be used
at all (not regular, too large) raises a plain ``LogError`` naming it. Recoverable
oddities are reported with ``warnings.warn(..., LogWarning)``.

*Deliberate differences from pmreorder's parser* (``reference/pmemcheck-store-log.md``),
each because pmreorder's behaviour gives a wrong or no verdict:

* valgrind's prefixes and messages are recognised line by line, and ``START``/``STOP``
  are whole records (pmreorder looks for them as substrings of any record: a path
  containing ``START`` moves its window, a valgrind message inside the log aborts it); a
  second START or records between two STOPs are refused (pmreorder uses the last START);
* a missing STOP is an error unless ``allow_truncated`` (pmreorder then checks nothing
  and exits 0); unknown records are refused, plain one-word markers are kept (pmreorder
  aborts on both), ``DEEP_SYNC`` and historical records are understood (pmreorder aborts);
* REGISTER_FILE's offset is honoured (pmreorder ignores it); the latest registration
  wins and retired ones are refused (pmreorder applies a store to every overlapping file);
* numbers are range-checked (pmreorder raises a traceback or allocates the size).

Export (:func:`dumps_pmemcheck`) writes what pmreorder can replay with our semantics:
stores split into 8-byte-aligned pieces (our atoms, so pmreorder reorders the same
units), flushes widened to whole cache lines (pmreorder matches flush ranges
byte-exactly, clflush works on lines), a non-temporal store followed by a FLUSH of its
lines, the source location as a valgrind-style frame ``0x0: pmemsim (file.py:12)``.
Files keep the base they were imported with, or get a synthetic one. Exporting the
import of an export gives the same text.
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from pmemsim._files import InputFileError, file_kind, read_regular_file
from pmemsim.enums import Granularity
from pmemsim.persistence.log import (
    Fence,
    FileInfo,
    Flush,
    LogError,
    Marker,
    Record,
    Store,
    StoreLog,
    paused_gc,
)
from pmemsim.persistence.model import ATOMIC_UNIT, CACHE_LINE

__all__ = [
    "MAX_FILE_SIZE",
    "MAX_LOG_BYTES",
    "MAX_RANGES",
    "MAX_STORE_SIZE",
    "LogWarning",
    "PmemcheckFormatError",
    "PmemcheckStream",
    "StreamFallback",
    "dump_pmemcheck",
    "dumps_pmemcheck",
    "load_pmemcheck",
    "loads_pmemcheck",
]

#: Where synthetic bases start and how they are spaced (1 GiB aligned, like large mappings).
SYNTHETIC_BASE = 0x7F0000000000
_BASE_ALIGN = 1 << 30

#: The largest log file the loaders read (bytes); larger files are refused before reading.
MAX_LOG_BYTES = 1 << 30
#: The largest file a registration may reach into (bytes): replay holds each file in memory.
MAX_FILE_SIZE = 1 << 40
#: The largest STORE: pmemcheck logs the stored value as one 64-bit word.
MAX_STORE_SIZE = 8
#: At most this many separately registered address ranges are tracked at once.
MAX_RANGES = 16384

_ADDRESS_LIMIT = 1 << 64
_MAX_PATH = 4096  # pmemcheck's MAX_PATH_SIZE: it cannot log a longer path
_MAX_MARKER = 4096
_HEX_DIGITS = 16
# Flushes may visit this many registered ranges per character of the log, in total: plenty
# for real logs (a flush touches one or two), and it keeps a hostile log linear.
_FLUSH_VISITS_PER_CHAR = 8
_FLUSH_VISITS_BASE = 65536

_FRAME_LOCATION = re.compile(r"\(([^()]*:\d+)\)\s*$")
_VALGRIND_PREFIX = re.compile(r"(==|--|\*\*)\d+\1 ?")
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SECTION = re.compile(r"[^\W][^\s;|]*\.(?:BEGIN|END)")
_SECTION_NAME = re.compile(r"[^.]+\.")
_PLAIN = re.compile(r"[^\W][^\s;|]*")
_BARE_NUMBER = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")

#: Record types of current pmemcheck (START and STOP frame the log).
_TYPES = ("START", "STOP", "STORE", "FLUSH", "FENCE", "REGISTER_FILE", "DEEP_SYNC")
#: Records older pmemcheck versions wrote; read and ignored, with the reason.
_HISTORICAL = {
    "COMMIT": "a pcommit-era commit; on ADR and eADR platforms the fence makes flushed stores durable",
    "FREORDER": "an engine hint of old pmemcheck; choose engines with markers instead",
    "PREORDER": "an engine hint of old pmemcheck; choose engines with markers instead",
    "FAULT_ONLY": "an engine hint of old pmemcheck; choose engines with markers instead",
    "NO_REORDER_FAULT": "an engine hint of old pmemcheck; choose engines with markers instead",
}
_KEYWORDS = (*_TYPES, *_HISTORICAL)


class LogWarning(UserWarning):
    """Something in a store log was read but deserves attention.

    Issued with :func:`warnings.warn`: a historical record ignored, a valgrind message
    inside the log, an incomplete last record dropped under ``allow_truncated``.
    """


class PmemcheckFormatError(LogError):
    """A pmemcheck log that cannot be parsed; ``record``, ``line`` and ``column`` locate it (1-based).

    ``detail`` is the message without the location.
    """

    def __init__(
        self, message: str, record: int | None = None, line: int | None = None, column: int | None = None
    ):
        self.detail = message
        where = ""
        if record is not None:
            where = f"record {record}"
            if line is not None:
                where += f" (line {line}, column {column})"
            where += ": "
        super().__init__(where + message)
        self.record = record
        self.line = line
        self.column = column


# -- framing -------------------------------------------------------------------------------------


class _RecLike(Protocol):
    """What the record parsers need of a record: its text, and the error to raise about it."""

    @property
    def text(self) -> str: ...

    @property
    def number(self) -> int: ...

    def error(self, message: str) -> Exception: ...


@dataclass(frozen=True, slots=True)
class _Rec:
    """One ``|``-separated record: its text, number (START is 1) and position (1-based)."""

    text: str
    number: int
    line: int
    column: int

    def error(self, message: str) -> PmemcheckFormatError:
        """A PmemcheckFormatError at this record, quoting it."""
        shown = _short(self.text.strip())
        return PmemcheckFormatError(f"{message}: {shown}", self.number, self.line, self.column)


def _short(text: str, limit: int = 80) -> str:
    """``repr`` of ``text``, cut to about ``limit`` characters (messages stay one short line)."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


@dataclass
class _Framed:
    records: list[_Rec]
    #: Valgrind message lines after START: (records before it, line number, text).
    messages: list[tuple[int, int, str]]
    #: The last record ends the text (no '|' or line break after it): it may be cut short.
    open_end: bool


def _frame(text: str) -> _Framed:
    """Split ``text`` into records, dropping valgrind prefixes, banner and message lines."""
    records: list[_Rec] = []
    messages: list[tuple[int, int, str]] = []
    started = False
    open_end = False
    lines = text.split("\n")
    for line_no, line in enumerate(lines, 1):
        prefix = _VALGRIND_PREFIX.match(line)
        skip = prefix.end() if prefix else 0
        content = line[skip:] if skip else line
        if not started:
            if content.split("|", 1)[0].strip().upper() != "START":
                continue  # valgrind's banner, or anything else before the log
            started = True
        elif not content.strip():
            continue
        elif prefix and not content.lstrip().startswith("|"):
            messages.append((len(records), line_no, content.strip()))
            continue
        pieces = content.split("|")
        last = len(pieces) - 1
        column = skip
        for k, piece in enumerate(pieces):
            # pmemcheck writes '|' before each record: an empty piece before the line's first
            # '|' or after its last one is a line break between records, not an empty record.
            if piece.strip() or last == 0 or 0 < k < last:
                lead = len(piece) - len(piece.lstrip())
                records.append(_Rec(piece, len(records) + 1, line_no, column + lead + 1))
                open_end = line_no == len(lines) and k == last
            column += len(piece) + 1
    return _Framed(records, messages, open_end)


# -- numbers ---------------------------------------------------------------------------------------


def _hex(rec: _RecLike, name: str, field: str) -> int:
    """``field`` as a 64-bit hex number; PmemcheckFormatError naming ``name`` otherwise."""
    text = field.strip()
    match = _HEX.fullmatch(text)
    if match is None:
        if text.startswith("-"):
            raise rec.error(f"{name} {_short(text, 40)} is negative")
        raise rec.error(f"{name} {_short(text, 40)} is not a hexadecimal number")
    digits = match.group(1).lstrip("0")
    if len(digits) > _HEX_DIGITS:
        raise rec.error(
            f"{name} {_short(text, 40)} has {len(digits)} significant hex digits, "
            f"more than the {_HEX_DIGITS} of a 64-bit value"
        )
    return int(digits or "0", 16)


def _range(rec: _RecLike, what: str, addr: int, size: int) -> None:
    if addr + size > _ADDRESS_LIMIT:
        raise rec.error(f"{what} [{addr:#x}, +{size:#x}) runs past the end of the 64-bit address space")


# -- markers ----------------------------------------------------------------------------------------


def _one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion or substitution."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + 1 :] == b[i + 1 :] if len(a) == len(b) else a[i:] == b[i + 1 :]


def _near_keyword(word: str) -> str | None:
    """The record type ``word`` is a near miss of (a likely corruption of it), or None."""
    upper = word.upper()
    for keyword in _KEYWORDS:
        if upper.startswith(keyword) or (len(upper) >= 3 and keyword.startswith(upper)):
            return keyword
        if _one_edit(upper, keyword):
            return keyword
    return None


def _marker_problem(text: str) -> str | None:
    """Why ``text`` (a stripped record that is no known type) is not a marker, or None if it is one."""
    head, sep, _ = text.partition(";")
    head = head.strip()
    if head.endswith((".BEGIN", ".END")):
        if not _SECTION_NAME.match(head):
            return "a section marker needs a name before '.BEGIN' or '.END'"
        if not _SECTION.fullmatch(head):
            return "a section marker name is one word (no whitespace)"
        return None
    if sep:
        return (
            f"unknown record type {_short(head, 40)} (expected STORE, FLUSH, FENCE, REGISTER_FILE, "
            "DEEP_SYNC or a NAME.BEGIN/NAME.END marker)"
        )
    if len(text) > _MAX_MARKER:
        return f"unknown record of {len(text)} characters (a plain marker has at most {_MAX_MARKER})"
    if not _PLAIN.fullmatch(text):
        return "unknown record (a plain marker is one word: no whitespace, starts with a letter, digit or _)"
    if _BARE_NUMBER.fullmatch(text):
        return "a bare number is no record (a field cut off by a '|'?)"
    near = _near_keyword(text)
    if near is not None:
        return f"unknown record type, too close to {near} to be a marker (a corrupted record?)"
    return None


# -- registrations ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Registration:
    path: str
    base: int
    size: int
    offset: int
    record: int
    retired_by: _Registration | None = None

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def shift(self) -> int:
        """File offset minus address: the same for every address of the mapping."""
        return self.offset - self.base

    def compatible(self, other: _Registration) -> bool:
        return self.path == other.path and self.shift == other.shift

    def describe(self) -> str:
        return f"{_short(self.path, 60)} (REGISTER_FILE at record {self.record})"


@dataclass(eq=False)
class _Segment:
    lo: int
    hi: int
    reg: _Registration


class _Ranges:
    """Registered address ranges, latest registration first: sorted, non-overlapping segments.

    Runtime: registering is O(log n + k) plus a list splice (k = segments it overlaps);
    finding the segments of a range is O(log n + its segments).
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.segments: list[_Segment] = []

    def _first(self, addr: int) -> int:
        """Index of the first segment ending after ``addr``."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0 or self.segments[i].hi <= addr:
            i += 1
        return i

    def register(self, reg: _Registration) -> None:
        lo, hi = reg.base, reg.end
        if lo == hi:
            return
        i = j = self._first(lo)
        new: list[_Segment] = []
        tail: _Segment | None = None
        while j < len(self.segments) and self.segments[j].lo < hi:
            old = self.segments[j]
            if old.lo < lo:
                new.append(_Segment(old.lo, lo, old.reg))
            if old.hi > hi:
                tail = _Segment(hi, old.hi, old.reg)
            if old.reg.retired_by is None and not old.reg.compatible(reg):
                old.reg.retired_by = reg
            j += 1
        new.append(_Segment(lo, hi, reg))
        if tail is not None:
            new.append(tail)
        self.segments[i:j] = new
        self.starts[i:j] = [s.lo for s in new]

    def overlapping(self, lo: int, hi: int) -> Iterator[_Segment]:
        """The segments overlapping ``[lo, hi)``, in address order."""
        i = self._first(lo)
        while i < len(self.segments) and self.segments[i].lo < hi:
            yield self.segments[i]
            i += 1

    def at(self, addr: int) -> _Segment | None:
        """The segment holding ``addr``, or None."""
        i = self._first(addr)
        if i < len(self.segments) and self.segments[i].lo <= addr:
            return self.segments[i]
        return None


# -- parsing ----------------------------------------------------------------------------------------


class _Parser:
    """Turns framed records into a StoreLog (one instance per log)."""

    def __init__(self, log: StoreLog, text_length: int) -> None:
        self.log = log
        self.ranges = _Ranges()
        self.files: dict[str, FileInfo] = {}
        self.historical: dict[str, list[_Rec]] = {}
        self.flush_visits = _FLUSH_VISITS_PER_CHAR * text_length + _FLUSH_VISITS_BASE

    def parse(self, rec: _RecLike) -> list[Record]:
        """The records ``rec`` becomes (after checking it whole); raises PmemcheckFormatError."""
        text = rec.text.strip()
        if not text:
            raise rec.error("empty record (two '|' in a row?)")
        control = _CONTROL.search(text)
        if control is not None:
            raise rec.error(f"control character {control.group()!r} in a record")
        fields = text.split(";")
        kind = fields[0].strip().upper()
        if kind == "STORE":
            return [self._store(rec, fields)]
        if kind == "FLUSH":
            if len(fields) != 3:
                raise rec.error(f"FLUSH needs addr;size, got {len(fields) - 1} fields")
            return list(self._flush(rec, fields[1], fields[2]))
        if kind == "FENCE":
            if len(fields) != 1:
                raise rec.error("FENCE takes no fields")
            return [Fence()]
        if kind == "REGISTER_FILE":
            self._register(rec, fields)
            return []
        if kind == "DEEP_SYNC":
            if len(fields) == 1:
                return [Fence()]
            if len(fields) != 3:
                raise rec.error(f"DEEP_SYNC takes no fields or addr;size, got {len(fields) - 1} fields")
            return [*self._flush(rec, fields[1], fields[2]), Fence()]
        if kind == "START":
            raise rec.error("a second START record (two runs in one log?)")
        if kind in _HISTORICAL:
            if len(fields) != 1:
                raise rec.error(f"{kind} takes no fields")
            assert isinstance(rec, _Rec)  # the fast reader hands historical records to the full one
            self.historical.setdefault(kind, []).append(rec)
            return []
        problem = _marker_problem(text)
        if problem is not None:
            raise rec.error(problem)
        return [Marker(text)]

    def _store(self, rec: _RecLike, fields: list[str]) -> Store:
        if len(fields) < 4:
            raise rec.error(f"STORE needs addr;value;size, got {len(fields) - 1} fields")
        addr = _hex(rec, "address", fields[1])
        value = _hex(rec, "value", fields[2])
        size = _hex(rec, "size", fields[3])
        if size == 0:
            raise rec.error("STORE of size 0")
        if size > MAX_STORE_SIZE:
            raise rec.error(
                f"STORE of size {size:#x}: pmemcheck logs at most {MAX_STORE_SIZE} bytes per STORE "
                "(a 64-bit value; wider stores are split)"
            )
        if value >= 1 << (8 * size):
            raise rec.error(f"value {value:#x} does not fit in {size} bytes")
        _range(rec, "STORE", addr, size)
        frames = tuple(f for f in (f.strip() for f in fields[4:]) if f)
        location = None
        if frames:
            match = _FRAME_LOCATION.search(frames[0])
            location = match.group(1) if match else None
        reg = self._store_registration(rec, addr, addr + size)
        # Stores are logged as machine words in the CPU's (little-endian) byte order.
        data = value.to_bytes(size, "little")
        return Store(reg.path, addr + reg.shift, data, addr, location, False, frames)

    def _store_registration(self, rec: _RecLike, lo: int, hi: int) -> _Registration:
        segments = list(self.ranges.overlapping(lo, hi))
        if not segments:
            raise rec.error(f"STORE to {lo:#x} is not inside any registered file")
        for seg in segments:
            if seg.reg.retired_by is not None:
                raise rec.error(
                    f"STORE to {lo:#x} is in the mapping of {seg.reg.describe()}, whose addresses were "
                    f"reused by {seg.reg.retired_by.describe()}; pmemcheck logs no unmapping, so it is "
                    "unknown which file this store went to"
                )
        reg = segments[0].reg
        covered = segments[0].lo <= lo and segments[-1].hi >= hi
        contiguous = all(a.hi == b.lo for a, b in itertools.pairwise(segments))
        if not (covered and contiguous):
            raise rec.error(
                f"STORE [{lo:#x}, {hi:#x}) crosses the end of its registered file {_short(reg.path, 60)}"
            )
        for seg in segments[1:]:
            if not seg.reg.compatible(reg):
                raise rec.error(
                    f"STORE [{lo:#x}, {hi:#x}) spans two mappings, of {reg.describe()} "
                    f"and {seg.reg.describe()}"
                )
        return reg

    def _flush(self, rec: _RecLike, addr_field: str, size_field: str) -> Iterator[Flush]:
        addr = _hex(rec, "address", addr_field)
        size = _hex(rec, "size", size_field)
        _range(rec, "FLUSH", addr, size)
        pieces: list[Flush] = []
        if size == 0:
            seg = self.ranges.at(addr)
            if seg is not None and seg.reg.retired_by is None:
                pieces.append(Flush(seg.reg.path, addr + seg.reg.shift, 0, addr))
            return iter(pieces or [Flush("", addr, 0, addr)])
        for seg in self.ranges.overlapping(addr, addr + size):
            self.flush_visits -= 1
            if self.flush_visits < 0:
                raise rec.error(
                    "the log's flushes cover too many registered ranges in total "
                    f"(over {_FLUSH_VISITS_PER_CHAR} per character of the log)"
                )
            if seg.reg.retired_by is not None:
                continue  # unmapped pmem: the address may hold volatile memory now
            lo, hi = max(addr, seg.lo), min(addr + size, seg.hi)
            path, offset = seg.reg.path, lo + seg.reg.shift
            if pieces and pieces[-1].file == path and pieces[-1].end == offset:
                prev = pieces[-1]
                pieces[-1] = Flush(path, prev.offset, prev.length + hi - lo, prev.addr)
            else:
                pieces.append(Flush(path, offset, hi - lo, lo))
        if not pieces:
            pieces.append(Flush("", addr, size, addr))
        return iter(pieces)

    def _register(self, rec: _RecLike, fields: list[str]) -> None:
        if len(fields) < 5:
            raise rec.error(f"REGISTER_FILE needs path;base;size;offset, got {len(fields) - 1} fields")
        # pmemcheck writes the path as is: a ';' in it is the only way to get more fields.
        path = ";".join(fields[1:-3]).strip()
        if not path:
            raise rec.error("REGISTER_FILE has an empty path")
        if len(path) > _MAX_PATH:
            raise rec.error(f"REGISTER_FILE path of {len(path)} characters (pmemcheck's limit: {_MAX_PATH})")
        base = _hex(rec, "base", fields[-3])
        size = _hex(rec, "size", fields[-2])
        offset = _hex(rec, "offset", fields[-1])
        _range(rec, "REGISTER_FILE", base, size)
        if offset + size > MAX_FILE_SIZE:
            raise rec.error(
                f"REGISTER_FILE reaches {offset + size:#x} bytes into {_short(path, 60)}, "
                f"more than the limit of {MAX_FILE_SIZE:#x}"
            )
        self.ranges.register(_Registration(path, base, size, offset, rec.number))
        if len(self.ranges.segments) > MAX_RANGES:
            raise rec.error(f"more than {MAX_RANGES} separately registered address ranges")
        needed = offset + size
        old = self.files.get(path)
        if old is None:
            needed = max(needed, self._existing_size(rec, path))
            self.files[path] = FileInfo(path, path, needed, None, base)
        elif needed > old.size:
            self.files[path] = FileInfo(path, path, needed, None, old.base)

    @staticmethod
    def _existing_size(rec: _RecLike, path: str) -> int:
        """The size of regular file ``path`` if it exists (a missing file is fine: images=... gives it)."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return 0
        if not stat.S_ISREG(st.st_mode):
            return 0  # device DAX and the like: the mapping says how much is used
        if st.st_size > MAX_FILE_SIZE:
            raise rec.error(
                f"registered file {_short(path, 60)} has {st.st_size} bytes, more than {MAX_FILE_SIZE:#x}"
            )
        return st.st_size

    def historical_warnings(self) -> list[str]:
        """One line per historical record type seen."""
        lines = []
        for kind, recs in self.historical.items():
            first = recs[0]
            count = f"{len(recs)} {kind} records" if len(recs) > 1 else f"a {kind} record"
            lines.append(
                f"{count} ignored (first: record {first.number}, line {first.line}, column "
                f"{first.column}): {_HISTORICAL[kind]}"
            )
        return lines


# -- the fast reader --------------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast reader met something only the full reader handles: an error, a warning, a rare form."""


class _LightRec:
    """A record of the fast reader: its text only; an error about it becomes a :class:`_Fallback`."""

    __slots__ = ("number", "text")

    def __init__(self) -> None:
        self.text = ""
        self.number = 0  # counted only where a registration needs it (its messages name it)

    def error(self, message: str) -> Exception:
        return _Fallback(message)


# A STORE as pmemcheck writes it: hex fields of at most 16 digits, a size of 1 to 8, frames
# without control characters. Anything else goes through the full parser.
_FAST_STORE = re.compile(
    r"STORE;(?:0[xX])?([0-9a-fA-F]{1,16});(?:0[xX])?([0-9a-fA-F]{1,16});(?:0[xX])?0*([1-8])(?=;|$)"
)
_FAST_FLUSH = re.compile(r"FLUSH;(?:0[xX])?([0-9a-fA-F]{1,16});(?:0[xX])?([0-9a-fA-F]{1,16})")
# Store(...) and Flush(...) without the frozen dataclass __init__ and its checks: the fast
# reader builds only values it has checked (one per STORE or FLUSH record: most of a log).
_new_record = object.__new__
_STORE_SETTERS = tuple(
    getattr(Store, name).__set__
    for name in ("file", "offset", "data", "addr", "location", "nontemporal", "frames")
)
_FLUSH_SETTERS = tuple(getattr(Flush, name).__set__ for name in ("file", "offset", "length", "addr"))
#: A line (or a record) the fast reader carries over this many characters without a
#: separator is left to the full reader (it would be quadratic to keep concatenating).
_MAX_CARRY = 1 << 22
_BODY, _STOPPED, _TAIL = 0, 1, 2


class _FastReader:
    """Reads a pmemcheck log as it comes, in chunks, without locating records (see :func:`loads_pmemcheck`).

    It builds exactly what the full reader builds for the logs it accepts, and raises
    :class:`_Fallback` on anything else: a malformed record, a valgrind message or a
    historical record before the last STOP (a warning), no STOP, a second START. The full
    reader then parses the whole text again and reports with record, line and column,
    so the line index is built only when an error or a warning needs it.
    """

    def __init__(self, log: StoreLog, length: int) -> None:
        self.log = log
        self.parser = _Parser(log, length)
        self.light = _LightRec()
        self.started = False  # the START line was seen
        self.seen_start = False  # the START record was consumed
        self.stage = _TAIL  # until the START record: then _BODY
        self.line_open = False  # the current line's start was handled (it is being read in parts)
        self.line_skip = False  # the rest of the current line is ignored (a banner line)
        self.line_k = 0  # pieces of the current line handled so far
        self.carry = ""
        # The registered segment of the last store: (lo, hi, path, shift), or None.
        self.seg: tuple[int, int, str, int] | None = None
        self.frames: dict[str, tuple[tuple[str, ...], str | None]] = {}  # frames text -> (frames, location)
        self.markers: dict[str, Marker] = {}  # marker records seen: one frozen Marker each
        self.fence = Fence()
        self.chars = 0
        self.budget = self.parser.flush_visits

    def feed(self, chunk: str) -> None:
        """Read the next piece of text."""
        self.chars += len(chunk)
        buf = self.carry + chunk if self.carry else chunk
        lines = buf.split("\n")
        carry = lines.pop()
        for line in lines:
            self._segment(line, True)
        if carry and "|" in carry and not self.line_skip:
            carry = self._segment(carry, False)
        elif self.line_skip and carry:
            carry = ""  # the rest of a skipped line is not needed
        if len(carry) > _MAX_CARRY:
            raise _Fallback("a record too long to read in pieces")
        self.carry = carry

    def finish(self) -> None:
        """The text ended: read what is left; raises _Fallback when the log is not complete."""
        self._segment(self.carry, True)
        self.carry = ""
        if not self.seen_start or self.stage == _BODY:
            raise _Fallback("no START, or no STOP")
        # The flush budget is per character of the text; a file's size in bytes only bounds it.
        if self.budget - self.parser.flush_visits > _FLUSH_VISITS_PER_CHAR * self.chars + _FLUSH_VISITS_BASE:
            raise _Fallback("too many flush visits")
        self.log.files.update(self.parser.files)

    def _segment(self, seg: str, line_end: bool) -> str:
        """Handle part of a line (the whole rest of it when ``line_end``); returns the unread tail."""
        if self.line_skip:
            self.line_skip = not line_end
            return ""
        if not self.line_open:
            prefix = _VALGRIND_PREFIX.match(seg)
            if prefix:
                seg = seg[prefix.end() :]
            if not self.started:
                if seg.split("|", 1)[0].strip().upper() != "START":
                    self.line_skip = not line_end  # valgrind's banner, or anything before the log
                    return ""
                self.started = True
            elif not seg.strip():
                return ""
            elif prefix and not seg.lstrip().startswith("|"):
                # A valgrind message: ignored after the last STOP, a warning before it.
                if self.stage == _BODY:
                    raise _Fallback("a valgrind message inside the log")
                self.stage = _TAIL
                self.line_skip = not line_end
                return ""
        pieces = seg.split("|")
        tail = "" if line_end else pieces.pop()
        k0 = self.line_k
        last = k0 + len(pieces) - 1 if line_end else -1
        self._records(pieces, k0, last)
        if line_end:
            self.line_open, self.line_k = False, 0
        else:
            self.line_open, self.line_k = True, k0 + len(pieces)
        return tail

    def _records(self, pieces: list[str], k0: int, last: int) -> None:
        """Parse the records of ``pieces`` (the ``k0``-th piece of its line first; ``last``: the index
        of the line's last piece, -1 while the line goes on)."""
        out = self.log.records
        append = out.append
        parser = self.parser
        frames_cache, markers = self.frames, self.markers
        fence = self.fence
        store_head, fast_flush = _FAST_STORE.match, _FAST_FLUSH.fullmatch
        set_file, set_offset, set_data, set_addr, set_location, set_nt, set_frames = _STORE_SETTERS
        flush_file, flush_offset, flush_length, flush_addr = _FLUSH_SETTERS
        new = _new_record
        seg = self.seg
        stage = self.stage
        k = k0 - 1
        for piece in pieces:
            k += 1
            # pmemcheck writes '|' before each record: an empty piece before the line's first
            # '|' or after its last one is a line break between records, not an empty record.
            text = piece.strip()
            if not text and last != 0 and not 0 < k < last and not (k > 0 and last < 0):
                continue
            if stage != _BODY:
                if not self.seen_start:
                    self.seen_start = True  # the first piece of the START line is START
                    stage = _BODY
                elif text.upper() == "STOP":
                    if stage == _TAIL:
                        raise _Fallback("a record between two STOPs")
                else:
                    stage = _TAIL
                continue
            if text[:6] == "STORE;":
                m = store_head(text)
                if m is not None:
                    addr, value, size = int(m[1], 16), int(m[2], 16), int(m[3])
                    hi = addr + size
                    if seg is None or not (seg[0] <= addr and hi <= seg[1]):
                        seg = self.seg = self._segment_of(addr, hi)
                    if value >> (8 * size):
                        raise _Fallback("a value wider than its store")
                    tail = text[m.end() :]
                    known = frames_cache.get(tail)
                    if known is None and (not tail or tail[0] == ";") and _CONTROL.search(tail) is None:
                        frames = tuple(f for f in (f.strip() for f in tail.split(";")[1:]) if f)
                        found = _FRAME_LOCATION.search(frames[0]) if frames else None
                        known = frames_cache[tail] = (frames, found.group(1) if found else None)
                    if known is not None and seg is not None:
                        store = new(Store)
                        set_file(store, seg[2])
                        set_offset(store, addr + seg[3])
                        # Stores are logged as machine words in the CPU's (little-endian) byte order.
                        set_data(store, value.to_bytes(size, "little"))
                        set_addr(store, addr)
                        set_location(store, known[1])
                        set_nt(store, False)
                        set_frames(store, known[0])
                        append(store)
                        continue
            elif text == "FENCE":
                append(fence)
                continue
            elif text[:6] == "FLUSH;":
                m = fast_flush(text)
                if m is not None and seg is not None:
                    addr, size = int(m[1], 16), int(m[2], 16)
                    if size and seg[0] <= addr and addr + size <= seg[1]:
                        parser.flush_visits -= 1  # the one registered range it visits
                        if parser.flush_visits < 0:
                            raise _Fallback("too many flush visits")
                        flush = new(Flush)
                        flush_file(flush, seg[2])
                        flush_offset(flush, addr + seg[3])
                        flush_length(flush, size)
                        flush_addr(flush, addr)
                        append(flush)
                        continue
            elif text.upper() == "STOP":
                stage = self.stage = _STOPPED
                continue
            else:
                marker = markers.get(text)
                if marker is not None:
                    append(marker)
                    continue
            kind = text.split(";", 1)[0].strip().upper()
            if kind in _HISTORICAL or kind == "START":
                raise _Fallback("a record that warns or fails")
            if kind == "REGISTER_FILE":
                seg = self.seg = None  # a registration may retire the cached one
            self.light.text = text
            self.light.number = len(out)  # not the record number: only for a message never shown
            try:
                parsed = parser.parse(self.light)
            except PmemcheckFormatError as exc:  # pragma: no cover - light records raise _Fallback
                raise _Fallback(str(exc)) from None
            if len(parsed) == 1 and type(parsed[0]) is Marker and parsed[0].name == text:
                markers[text] = parsed[0]  # the same marker again is the same (frozen) record
            out.extend(parsed)
        self.stage = stage

    def _segment_of(self, lo: int, hi: int) -> tuple[int, int, str, int] | None:
        """The live registered segment holding ``[lo, hi)`` whole, or None."""
        if hi > _ADDRESS_LIMIT:
            return None
        seg = self.parser.ranges.at(lo)
        if seg is None or seg.hi < hi or seg.reg.retired_by is not None:
            return None
        return seg.lo, seg.hi, seg.reg.path, seg.reg.shift


def _read_fast(
    chunks: Iterable[str], length: int, granularity: Granularity | None, page_size: int
) -> StoreLog:
    """The log of ``chunks`` read by :class:`_FastReader`; raises _Fallback when it cannot."""
    log = StoreLog(granularity=granularity, page_size=page_size)
    reader = _FastReader(log, length)
    for chunk in chunks:
        reader.feed(chunk)
    reader.finish()
    return log


def _read_full(
    text: str, allow_truncated: bool, granularity: Granularity | None, page_size: int
) -> tuple[StoreLog, list[str]]:
    """The log of ``text`` read record by record, locating each; the warnings to issue."""
    framed = _frame(text)
    records = framed.records
    if not records:
        raise PmemcheckFormatError(
            "no START record: not a pmemcheck store log (run valgrind --tool=pmemcheck --log-stores=yes)"
        )
    stops = [i for i, rec in enumerate(records) if rec.text.strip().upper() == "STOP"]
    if stops:
        for rec in records[stops[0] + 1 : stops[-1]]:
            if rec.text.strip().upper() != "STOP":
                raise rec.error("a record after STOP, before another STOP (two runs in one log?)")
        body, end = records[1 : stops[0]], stops[-1]
    elif not allow_truncated:
        raise PmemcheckFormatError(
            "no STOP record after START: the log is truncated (pmemcheck killed?); "
            "use --allow-truncated (allow_truncated=True) to replay the records before the cut"
        )
    else:
        body, end = records[1:], len(records)

    log = StoreLog(granularity=granularity, page_size=page_size)
    parser = _Parser(log, len(text))
    dropped: tuple[_Rec, PmemcheckFormatError] | None = None
    for index, rec in enumerate(body):
        try:
            log.records.extend(parser.parse(rec))
        except PmemcheckFormatError as exc:
            if stops or not framed.open_end or index != len(body) - 1:
                raise
            dropped = (rec, exc)
    log.files.update(parser.files)

    notes = parser.historical_warnings()
    inside = [m for m in framed.messages if m[0] <= end]
    if inside:
        _, line, message = inside[0]
        more = f" and {len(inside) - 1} more" if len(inside) > 1 else ""
        notes.append(f"valgrind message inside the store log skipped (line {line}{more}): {_short(message)}")
    if dropped is not None:
        cut, why = dropped
        notes.append(
            f"record {cut.number} (line {cut.line}, column {cut.column}) dropped: the log has no STOP "
            f"and its last record is incomplete: {why.detail}"
        )
    return log, notes


def loads_pmemcheck(
    text: str, *, allow_truncated: bool = False, granularity: Granularity | None = None, page_size: int = 4096
) -> StoreLog:
    """Parse a pmemcheck store log (see the module docstring for what is accepted).

    ``allow_truncated`` accepts a log without ``STOP`` (pmemcheck killed): its last record
    is dropped with a :class:`LogWarning` if it does not parse (cut in half). Registered
    files whose path exists are sized as the larger of the file and the mapping. Raises
    :class:`PmemcheckFormatError` naming the record, line and column; TypeError if
    ``text`` is not a str. Runtime: linear in the length of ``text``.

    A well-formed log is read in one pass that locates nothing; only a log with an error
    or a warning is read again, record by record, to say where (same result either way).
    """
    if not isinstance(text, str):
        raise TypeError(f"a pmemcheck log is text, not {type(text).__name__}")
    with paused_gc():
        try:
            return _read_fast((text,), len(text), granularity, page_size)
        except _Fallback:
            log, notes = _read_full(text, allow_truncated, granularity, page_size)
    for note in notes:
        warnings.warn(note, LogWarning, stacklevel=2)
    return log


def _read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The content of the regular file ``path`` (at most ``max_bytes``); LogError for a non-regular
    or too large file, OSError when it cannot be read."""
    try:
        return read_regular_file(path, max_bytes, "a store log")
    except InputFileError as exc:
        raise LogError(str(exc)) from None


#: Bytes read at a time when a log is streamed.
_CHUNK = 1 << 20


def _stream_bytes(path: str | os.PathLike[str], max_bytes: int, chunk_size: int = _CHUNK) -> Iterator[bytes]:
    """The bytes of the regular file ``path`` in chunks.

    Refuses non-regular files and files over ``max_bytes`` like :func:`_read_regular_file`
    (LogError) before reading anything (opened with O_NONBLOCK: a FIFO without a writer
    does not block); OSError when it cannot be opened or read.
    """
    name = os.fspath(path)
    what = "a store log"
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LogError(f"{name}: {file_kind(st.st_mode)}, not a regular file: {what} must be one")
        if st.st_size > max_bytes:
            raise LogError(f"{name}: {st.st_size} bytes, more than the limit of {max_bytes} for {what}")
        total = 0
        while chunk := os.read(fd, min(chunk_size, max_bytes + 1 - total)):
            total += len(chunk)
            if total > max_bytes:  # the file grew while we read it
                raise LogError(f"{name}: more than the limit of {max_bytes} bytes for {what}")
            yield chunk
    finally:
        os.close(fd)


def _decoded(chunks: Iterable[bytes]) -> Iterator[str]:
    """``chunks`` decoded as UTF-8, bytes that are not kept as surrogate escapes (paths may hold any)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    for chunk in chunks:
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def read_pmemcheck_file(
    path: str | os.PathLike[str],
    *,
    allow_truncated: bool = False,
    granularity: Granularity | None = None,
    page_size: int = 4096,
    max_bytes: int = MAX_LOG_BYTES,
    chunks: Iterable[bytes] | None = None,
) -> StoreLog:
    """The pmemcheck log in file ``path``, parsed as it is read (``chunks``: its bytes, when already
    being read).

    Memory holds the log being built and one chunk of text, never the whole text, unless
    the log needs the full reader (an error or a warning to locate): then the file is read
    again, whole. Warnings are issued as :class:`LogWarning`. Errors as :func:`load_pmemcheck`.
    """
    try:
        size = os.stat(path).st_size
    except (OSError, ValueError):
        size = 0
    with paused_gc():
        try:
            stream = _stream_bytes(path, max_bytes) if chunks is None else chunks
            return _read_fast(_decoded(stream), size, granularity, page_size)
        except _Fallback:
            text = _read_regular_file(path, max_bytes).decode("utf-8", errors="surrogateescape")
            log, notes = _read_full(text, allow_truncated, granularity, page_size)
    for note in notes:
        warnings.warn(note, LogWarning, stacklevel=3)
    return log


class StreamFallback(Exception):
    """What :class:`PmemcheckStream` raises when the log needs the full reader: an error or a
    warning to locate, a rare form, no STOP. Nothing read is kept: read the file whole
    (:func:`read_pmemcheck_file`), which reports with record, line and column."""


class PmemcheckStream:
    """A pmemcheck log file handed out in batches of records as it is read (a streaming replay).

    :meth:`batches` reads the file a chunk at a time and yields the records each chunk
    completes; nothing of an earlier batch is kept here. ``log.files`` is the live table
    of the files registered so far (it may still grow while batches come: the reader of
    the batches checks). ``done`` and ``total`` are the bytes read and the file's size,
    for a progress bar; ``on_read`` (if set) gets ``done`` after each chunk (of
    ``chunk_size`` bytes).

    Only logs the fast reader accepts stream; anything else raises
    :class:`StreamFallback` (possibly after some batches), and the caller reads the file
    again with :func:`read_pmemcheck_file`. Errors: OSError and LogError as
    :func:`load_pmemcheck` for a file that cannot be read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        granularity: Granularity | None = None,
        page_size: int = 4096,
        max_bytes: int = MAX_LOG_BYTES,
        chunk_size: int = _CHUNK,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.chunk_size = chunk_size
        try:
            self.total = os.stat(path).st_size
        except (OSError, ValueError):
            self.total = 0
        self.done = 0
        self.log = StoreLog(granularity=granularity, page_size=page_size)
        self._reader = _FastReader(self.log, self.total)
        self.log.files = self._reader.parser.files  # live: registrations show as they are read
        self.on_read: Callable[[int], None] | None = None

    def _counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.done += len(chunk)
            if self.on_read is not None:
                self.on_read(self.done)
            yield chunk

    def batches(self) -> Iterator[list[Record]]:
        """The records, one list per chunk of text read (raises StreamFallback, OSError, LogError).

        Once only: the reader's state is this object's.
        """
        log, reader = self.log, self._reader
        try:
            for text in _decoded(self._counted(_stream_bytes(self.path, self.max_bytes, self.chunk_size))):
                # The collector is kept out of reading only (a batch's records form no cycle),
                # not out of the caller's work between batches.
                with paused_gc():
                    reader.feed(text)
                if log.records:
                    batch, log.records = log.records, []
                    yield batch
            reader.finish()
        except _Fallback as exc:
            raise StreamFallback(str(exc)) from None
        if log.records:
            batch, log.records = log.records, []
            yield batch


def load_pmemcheck(
    path: str | os.PathLike[str],
    *,
    allow_truncated: bool = False,
    granularity: Granularity | None = None,
    page_size: int = 4096,
    max_bytes: int = MAX_LOG_BYTES,
) -> StoreLog:
    """:func:`loads_pmemcheck` on the content of ``path``, parsed as it is read.

    Raises OSError if it cannot be opened or read, LogError if it is not a regular file or
    has more than ``max_bytes`` bytes, PmemcheckFormatError if it is malformed. Bytes that
    are not UTF-8 are kept (surrogate escapes), as paths may hold any bytes.
    """
    return read_pmemcheck_file(
        path,
        allow_truncated=allow_truncated,
        granularity=granularity,
        page_size=page_size,
        max_bytes=max_bytes,
    )


# -- export -----------------------------------------------------------------------------------------


def _safe_frame(frame: str) -> str:
    # Frames are informational only; keep them from breaking the record or pmreorder's window.
    return re.sub(r"[|;\x00-\x1f\x7f]", " ", frame).replace("START", "ST_ART")


def _check_exportable(what: str, text: str, forbidden: str = "|;\n\r") -> None:
    bad = [ch for ch in forbidden if ch in text]
    if bad or "START" in text:
        problem = (
            f"contains {bad[0]!r}" if bad else "contains 'START' (pmreorder would restart its window there)"
        )
        raise LogError(f"cannot export {what} {_short(text)} to a pmemcheck log: it {problem}")


def _check_marker(name: str, section: bool) -> None:
    # "NAME.BEGIN;text" is pmemcheck's own form; a plain note with ';' would read back as a bad record.
    _check_exportable("marker", name, "|\n\r" if section else "|;\n\r")
    text = name.strip()
    kind = text.split(";", 1)[0].strip().upper()
    problem = "it would read back as a record" if kind in _KEYWORDS else _marker_problem(text)
    if problem is not None or text != name:
        reason = problem or "leading or trailing whitespace would be lost"
        raise LogError(f"cannot export marker {_short(name)} to a pmemcheck log: {reason}")


def _bases(log: StoreLog) -> dict[str, int]:
    # A file keeps its base unless that range is another file's already (files imported from
    # a reused address share a base) or runs past 2^64 (the file on disk grew the size):
    # exported registrations must not overlap, or the latest would take the other's stores.
    bases: dict[str, int] = {}
    taken: list[tuple[int, int]] = []
    for key, info in log.files.items():
        if info.base is None or info.base + max(info.size, 1) > _ADDRESS_LIMIT:
            continue
        lo, hi = info.base, info.base + max(info.size, 1)
        if not any(a < hi and lo < b for a, b in taken):
            bases[key] = info.base
            taken.append((lo, hi))
    nxt = SYNTHETIC_BASE
    for key, info in log.files.items():
        if key in bases:
            continue
        while any(lo < nxt + max(info.size, 1) and nxt < hi for lo, hi in taken):
            nxt += _BASE_ALIGN
        bases[key] = nxt
        taken.append((nxt, nxt + info.size))
        nxt += (info.size + _BASE_ALIGN) // _BASE_ALIGN * _BASE_ALIGN
    return bases


def _flush_unit(log: StoreLog) -> int:
    return log.page_size if log.granularity is Granularity.PAGE else CACHE_LINE


def _export_record(rec: Record, bases: dict[str, int], unit: int) -> Iterator[str]:
    if isinstance(rec, Store):
        base = bases[rec.file]
        frames = rec.frames or ((f"0x0: pmemsim ({rec.location})",) if rec.location else ())
        tail = "".join(";" + _safe_frame(f) for f in frames)
        pos = rec.offset
        while pos < rec.end:
            stop = min(rec.end, (pos // ATOMIC_UNIT + 1) * ATOMIC_UNIT)
            value = int.from_bytes(rec.data[pos - rec.offset : stop - rec.offset], "little")
            yield f"STORE;{base + pos:#x};{value:#x};{stop - pos:#x}{tail}"
            pos = stop
        if rec.nontemporal:
            lo, hi = rec.offset // unit * unit, -(-rec.end // unit) * unit
            yield f"FLUSH;{base + lo:#x};{hi - lo:#x}"
    elif isinstance(rec, Flush):
        if not rec.file:
            yield f"FLUSH;{rec.offset:#x};{rec.length:#x}"
        else:
            lo = rec.offset // unit * unit
            hi = lo if rec.length == 0 else -(-rec.end // unit) * unit  # an empty flush stays empty
            yield f"FLUSH;{bases[rec.file] + lo:#x};{hi - lo:#x}"
    elif isinstance(rec, Fence):
        yield "FENCE"
    else:
        _check_marker(rec.name, rec.section is not None)
        yield rec.name


def dumps_pmemcheck(log: StoreLog) -> str:
    """``log`` as pmemcheck store-log text (one line ending in ``|STOP\\n``).

    Raises LogError for a path or marker pmreorder or :func:`loads_pmemcheck` could not
    read back (``|``, ``;``, line breaks, ``START``, a marker that is no marker on
    import) and for records outside their files.
    """
    log.validate()
    bases = _bases(log)
    unit = _flush_unit(log)
    parts = ["START"]
    for key, info in log.files.items():
        path = info.path if info.path is not None else key
        _check_exportable("file path", path)
        parts.append(f"REGISTER_FILE;{path};{bases[key]:#x};{info.size:#x};0x0")
    for rec in log.records:
        parts.extend(_export_record(rec, bases, unit))
    parts.append("STOP\n")
    return "|".join(parts)


def dump_pmemcheck(log: StoreLog, target: str | os.PathLike[str] | IO[str]) -> None:
    """Write :func:`dumps_pmemcheck` to a path or an open text file."""
    text = dumps_pmemcheck(log)
    if isinstance(target, str | os.PathLike):
        # Paths read from a log may hold any bytes (surrogate escapes): write them back as they were.
        with open(target, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    else:
        target.write(text)
