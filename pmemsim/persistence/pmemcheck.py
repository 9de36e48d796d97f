"""Import and export pmemcheck's text store log, the format PMDK's pmreorder reads.

The format (see ``reference/pmemcheck-store-log.md``) is one line of ``|``-separated
records between ``START`` and ``STOP``; fields are ``;``-separated and numbers are hex::

    START|REGISTER_FILE;/pool;0x7f0000000000;0x10000;0x0|STORE;0x7f0000000040;0x2a;0x8;0x0: fn (a.c:41)
    |FLUSH;0x7f0000000040;0x40|FENCE|tx.BEGIN|...|STOP

Import (:func:`loads_pmemcheck`) turns addresses into file offsets through the
REGISTER_FILE ranges and reports a malformed record as :class:`PmemcheckFormatError`
naming the record number, line and column. Where pmreorder is lax or wrong we are
strict or right, and say so: ``START``/``STOP`` must be whole records (pmreorder
matches substrings, so a path containing ``START`` breaks it), a missing ``STOP`` is an
error unless ``allow_truncated`` (pmreorder silently checks nothing), REGISTER_FILE's
file offset is honoured (pmreorder ignores it), a record without ``;`` that is not a
known type is kept as a plain marker (pmreorder aborts). A FLUSH of memory outside
every registered file is kept as ``Flush(file="")`` because it still ends a fence epoch.

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
import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from pmemsim.enums import Granularity
from pmemsim.persistence.log import Fence, FileInfo, Flush, LogError, Marker, Record, Store, StoreLog
from pmemsim.persistence.model import ATOMIC_UNIT, CACHE_LINE

__all__ = [
    "PmemcheckFormatError",
    "dump_pmemcheck",
    "dumps_pmemcheck",
    "load_pmemcheck",
    "loads_pmemcheck",
]

#: Where synthetic bases start and how they are spaced (1 GiB aligned, like large mappings).
SYNTHETIC_BASE = 0x7F0000000000
_BASE_ALIGN = 1 << 30

_FRAME_LOCATION = re.compile(r"\(([^()]*:\d+)\)\s*$")


class PmemcheckFormatError(LogError):
    """A pmemcheck log that cannot be parsed; ``record``, ``line`` and ``column`` locate it (1-based)."""

    def __init__(
        self, message: str, record: int | None = None, line: int | None = None, column: int | None = None
    ):
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


@dataclass
class _Registration:
    key: str
    base: int
    size: int
    offset: int

    @property
    def end(self) -> int:
        return self.base + self.size


class _Text:
    """Record numbers to line/column positions."""

    def __init__(self, text: str, starts: list[int]) -> None:
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.starts = starts

    def error(self, index: int, record: str, message: str) -> PmemcheckFormatError:
        pos = self.starts[index] + (len(record) - len(record.lstrip()))
        line = bisect.bisect_left(self.newlines, pos)
        column = pos - (self.newlines[line - 1] + 1 if line else 0) + 1
        shown = record.strip()
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return PmemcheckFormatError(f"{message}: {shown!r}", index + 1, line + 1, column)


def _hex(text: _Text, index: int, record: str, name: str, field: str) -> int:
    try:
        value = int(field.strip(), 16)
    except ValueError:
        raise text.error(index, record, f"{name} {field.strip()!r} is not a hexadecimal number") from None
    if value < 0:
        raise text.error(index, record, f"{name} is negative")
    return value


def _split(text: str) -> tuple[list[str], list[int]]:
    records = text.split("|")
    starts, pos = [], 0
    for rec in records:
        starts.append(pos)
        pos += len(rec) + 1
    return records, starts


def loads_pmemcheck(
    text: str, *, allow_truncated: bool = False, granularity: Granularity | None = None, page_size: int = 4096
) -> StoreLog:
    """Parse a pmemcheck store log; raises :class:`PmemcheckFormatError` naming the bad record.

    ``allow_truncated`` accepts a log without ``STOP`` (pmemcheck killed), parsing to the end.
    Registered files whose path exists are sized as the larger of the file and the mapping.
    """
    if not isinstance(text, str):
        raise TypeError(f"a pmemcheck log is text, not {type(text).__name__}")
    records, starts = _split(text)
    where = _Text(text, starts)
    start = None
    for i, rec in enumerate(records):
        lines = rec.strip().splitlines()
        # The banner valgrind prints without -q precedes START inside the first record.
        if lines and lines[-1].strip() == "START":
            start = i
    if start is None:
        raise PmemcheckFormatError("no START record: not a pmemcheck store log (run with --log-stores=yes)")
    stop = next((i for i in range(start + 1, len(records)) if records[i].strip() == "STOP"), None)
    if stop is None:
        if not allow_truncated:
            raise PmemcheckFormatError(
                "no STOP record after START: the log is truncated (pmemcheck killed?); "
                "pass allow_truncated=True to replay what is there"
            )
        stop = len(records)
        while stop > start + 1 and not records[stop - 1].strip():
            stop -= 1  # a trailing newline or '|' is not a record

    log = StoreLog(granularity=granularity, page_size=page_size)
    regs: list[_Registration] = []
    for index in range(start + 1, stop):
        record = records[index]
        fields = record.split(";")
        kind = fields[0].strip().upper()
        if kind == "STORE":
            log.records.append(_parse_store(where, index, record, fields, regs))
        elif kind == "FLUSH":
            log.records.extend(_parse_flush(where, index, record, fields, regs))
        elif kind == "FENCE":
            log.records.append(Fence())
        elif kind == "REGISTER_FILE":
            _parse_register(where, index, record, fields, regs, log)
        elif not record.strip():
            raise where.error(index, record, "empty record (two '|' in a row?)")
        else:
            head = fields[0].strip()
            if head.endswith((".BEGIN", ".END")) or len(fields) == 1:
                try:
                    log.records.append(Marker(record.strip()))
                except ValueError as exc:
                    raise where.error(index, record, str(exc)) from None
            else:
                raise where.error(
                    index,
                    record,
                    f"unknown record type {head!r} (expected STORE, FLUSH, FENCE, REGISTER_FILE or a marker)",
                )
    return log


def _parse_register(
    where: _Text, index: int, record: str, fields: list[str], regs: list[_Registration], log: StoreLog
) -> None:
    if len(fields) != 5:
        raise where.error(
            index, record, f"REGISTER_FILE needs path;base;size;offset, got {len(fields) - 1} fields"
        )
    path = fields[1].strip()
    if not path:
        raise where.error(index, record, "REGISTER_FILE has an empty path")
    base = _hex(where, index, record, "base", fields[2])
    size = _hex(where, index, record, "size", fields[3])
    offset = _hex(where, index, record, "offset", fields[4])
    regs.append(_Registration(path, base, size, offset))
    needed = offset + size
    # A missing file is fine here: replay then needs images=... or reports it.
    with contextlib.suppress(OSError):
        needed = max(needed, os.path.getsize(path))
    old = log.files.get(path)
    if old is not None:
        log.files[path] = FileInfo(path, path, max(old.size, needed), None, old.base)
    else:
        log.files[path] = FileInfo(path, path, needed, None, base)


def _parse_store(
    where: _Text, index: int, record: str, fields: list[str], regs: list[_Registration]
) -> Store:
    if len(fields) < 4:
        raise where.error(index, record, f"STORE needs addr;value;size, got {len(fields) - 1} fields")
    addr = _hex(where, index, record, "address", fields[1])
    value = _hex(where, index, record, "value", fields[2])
    size = _hex(where, index, record, "size", fields[3])
    if size == 0:
        raise where.error(index, record, "STORE of size 0")
    if value >= 1 << (8 * size):
        raise where.error(index, record, f"value {value:#x} does not fit in {size} bytes")
    frames = tuple(f.strip() for f in fields[4:])
    location = None
    if frames:
        match = _FRAME_LOCATION.search(frames[0])
        location = match.group(1) if match else None
    for reg in regs:
        if reg.base <= addr and addr + size <= reg.end:
            # Stores are logged as machine words in the CPU's (little-endian) byte order.
            data = value.to_bytes(size, "little")
            return Store(reg.key, addr - reg.base + reg.offset, data, addr, location, False, frames)
    if any(addr < reg.end and reg.base < addr + size for reg in regs):
        raise where.error(index, record, "STORE crosses the end of its registered file")
    raise where.error(index, record, f"STORE to {addr:#x} is not inside any registered file")


def _parse_flush(
    where: _Text, index: int, record: str, fields: list[str], regs: list[_Registration]
) -> Iterator[Flush]:
    if len(fields) != 3:
        raise where.error(index, record, f"FLUSH needs addr;size, got {len(fields) - 1} fields")
    addr = _hex(where, index, record, "address", fields[1])
    size = _hex(where, index, record, "size", fields[2])
    hit = False
    for reg in regs:
        lo, hi = max(addr, reg.base), min(addr + size, reg.end)
        if lo < hi or (size == 0 and reg.base <= addr < reg.end):
            hit = True
            yield Flush(reg.key, lo - reg.base + reg.offset, max(hi - lo, 0), lo)
    if not hit:
        yield Flush("", addr, size, addr)


def load_pmemcheck(
    path: str | os.PathLike[str],
    *,
    allow_truncated: bool = False,
    granularity: Granularity | None = None,
    page_size: int = 4096,
) -> StoreLog:
    """:func:`loads_pmemcheck` on the content of ``path`` (raises OSError if it cannot be read)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    return loads_pmemcheck(
        text, allow_truncated=allow_truncated, granularity=granularity, page_size=page_size
    )


def _safe_frame(frame: str) -> str:
    # Frames are informational only; keep them from breaking the record or pmreorder's window.
    return re.sub(r"[|;\r\n]", " ", frame).replace("START", "ST_ART")


def _check_exportable(what: str, text: str, forbidden: str = "|;\n\r") -> None:
    bad = [ch for ch in forbidden if ch in text]
    if bad or "START" in text:
        problem = (
            f"contains {bad[0]!r}" if bad else "contains 'START' (pmreorder would restart its window there)"
        )
        raise LogError(f"cannot export {what} {text!r} to a pmemcheck log: it {problem}")


def _bases(log: StoreLog) -> dict[str, int]:
    bases: dict[str, int] = {}
    taken = [(info.base, info.base + info.size) for info in log.files.values() if info.base is not None]
    nxt = SYNTHETIC_BASE
    for key, info in log.files.items():
        if info.base is not None:
            bases[key] = info.base
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
        # "NAME.BEGIN;text" is pmemcheck's own form; a plain note with ';' would read back as a bad record.
        _check_exportable("marker", rec.name, "|\n\r" if rec.section is not None else "|;\n\r")
        yield rec.name


def dumps_pmemcheck(log: StoreLog) -> str:
    """``log`` as pmemcheck store-log text (one line ending in ``|STOP\\n``).

    Raises LogError for a path or marker pmreorder could not read back (``|``, ``;``,
    line breaks, ``START``) and for records outside their files.
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
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        target.write(text)
