"""applog: a tiny append-only log in persistent memory, written against pmemsim's API.

Pool layout (one file mapped as one part map)::

    offset 0    header: u64 used   -- bytes of complete, durable entries after the header
    offset 64   entries: u32 length, u32 crc32(payload), payload, one after another

``append`` makes the entry durable first and only then publishes it by storing the new
``used`` (an aligned 8-byte store, so it reaches media whole or not at all). After a
crash, ``used`` therefore never covers an entry that is not fully on media: every
crash image passes :func:`check`.

:class:`BuggyAppLog` skips the fence between the two steps: the entry and the header
are flushed and then fenced together, so a crash before that fence may leave the new
``used`` on media without the entry it publishes. Its tests show the ``crash_check``
fixture catching that.

:class:`LazyAppLog` skips the last fence: ``append`` returns before the new ``used`` is
durable. Every crash image is still a consistent log, so :func:`check` passes it, but
a crash right after ``append`` returned loses the entry. ``crash_check(recover=parse)``
catches that with no checker written: a crash after an operation must recover to the
value after it (durable linearizability).
"""

from __future__ import annotations

import struct
import zlib

from pmemsim import MemFlags, PmemSet, Source

HEADER = 64
_USED = struct.Struct("<Q")
_ENTRY = struct.Struct("<II")


class LogFull(Exception):
    """The entry does not fit in the rest of the pool."""


class AppLog:
    """An append-only log of byte strings in the part map at ``[addr, addr+size)`` of ``pset``."""

    def __init__(self, pset: PmemSet, addr: int, size: int) -> None:
        if size < HEADER + _ENTRY.size:
            raise ValueError(f"a pool of {size} bytes is too small for a log")
        self.pset = pset
        self.addr = addr
        self.size = size

    @classmethod
    def open(cls, pset: PmemSet, path: str) -> AppLog:
        """Map the whole pool file at ``path`` into ``pset`` (a zero-filled file is an empty log).

        Raises pmemsim.PmemsetError when the file cannot be mapped.
        """
        with Source.from_file(path) as src:
            desc = pset.part_map(pset.part_new(src, 0, 0))
        return cls(pset, desc.addr, desc.size)

    @property
    def used(self) -> int:
        """Bytes of published entries."""
        (used,) = _USED.unpack(self.pset.read(self.addr, _USED.size))
        return int(used)

    def append(self, payload: bytes) -> None:
        """Append ``payload`` durably; raises LogFull when it does not fit."""
        used = self.used
        entry = _ENTRY.pack(len(payload), zlib.crc32(payload)) + payload
        if HEADER + used + len(entry) > self.size:
            raise LogFull(f"{len(entry)} more bytes do not fit ({used} of {self.size - HEADER} used)")
        self.pset.mark("APPEND.BEGIN")
        self._publish(self.addr + HEADER + used, entry, used + len(entry))
        self.pset.mark("APPEND.END")

    def _publish(self, at: int, entry: bytes, used: int) -> None:
        self.pset.memcpy(at, entry)  # stores, flush, fence: the entry is durable
        self.pset.memcpy(self.addr, _USED.pack(used))  # only now does `used` cover it

    def entries(self) -> list[bytes]:
        """Every published entry, oldest first."""
        image = self.pset.read(self.addr, HEADER + self.used)
        return parse(image)


class BuggyAppLog(AppLog):
    """The entry is flushed but not fenced before ``used`` is updated: not crash consistent."""

    def _publish(self, at: int, entry: bytes, used: int) -> None:
        self.pset.memcpy(at, entry, flags=MemFlags.NODRAIN)  # BUG: no fence before publishing
        self.pset.memcpy(self.addr, _USED.pack(used))


class LazyAppLog(AppLog):
    """``used`` is flushed but not fenced: ``append`` returns before the entry is durably published."""

    def _publish(self, at: int, entry: bytes, used: int) -> None:
        self.pset.memcpy(at, entry)
        self.pset.memcpy(self.addr, _USED.pack(used), flags=MemFlags.NODRAIN)  # BUG: not durable on return


def parse(image: bytes | memoryview) -> list[bytes]:
    """The entries of a pool image; ValueError when the image is not a consistent log."""
    (used,) = _USED.unpack_from(image, 0)
    if HEADER + used > len(image):
        raise ValueError(f"used = {used} runs past the end of the {len(image)}-byte pool")
    out = []
    pos, end = HEADER, HEADER + used
    while pos < end:
        if pos + _ENTRY.size > end:
            raise ValueError(f"entry header at {pos} runs past used")
        length, crc = _ENTRY.unpack_from(image, pos)
        payload = bytes(image[pos + _ENTRY.size : pos + _ENTRY.size + length])
        if pos + _ENTRY.size + length > end:
            raise ValueError(f"entry at {pos} ({length} bytes) runs past used")
        if zlib.crc32(payload) != crc:
            raise ValueError(f"entry at {pos} is torn: crc {zlib.crc32(payload):#010x} != {crc:#010x}")
        out.append(payload)
        pos += _ENTRY.size + length
    return out


def check(image: memoryview) -> bool:
    """Crash-image checker: True when ``image`` is a consistent log (raises ValueError saying why not)."""
    parse(image)
    return True
