"""Values and handles of a set: descriptors, parts, and references to part maps.

``PartDescriptor`` is a frozen value; ``Part`` is a part waiting to be mapped;
``PartMap`` is one counted reference to the set's own record of a part map
(``PartMapRecord``), as PMDK's first / next / by-address hand out. Argument checks
shared by the set's calls live here too. Names outside ``__all__`` are the core's
(:mod:`pmemsim.pmemset`), not the user's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from pmemsim.addrspace.base import Mapping, Reservation
from pmemsim.addrspace.intervals import floor
from pmemsim.enums import Granularity, MemFlags
from pmemsim.source import Source

if TYPE_CHECKING:
    from pmemsim.pmemset import PmemSet

__all__ = ["Part", "PartDescriptor", "PartMap"]

SIZE_MAX = (1 << 64) - 1
_VALID_MEM_FLAGS = int(
    MemFlags.NODRAIN | MemFlags.NONTEMPORAL | MemFlags.TEMPORAL | MemFlags.WC | MemFlags.WB | MemFlags.NOFLUSH
)


def size_arg(name: str, value: object) -> int:
    """A C ``size_t`` argument: an int in [0, SIZE_MAX]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    if value > SIZE_MAX:
        raise ValueError(f"{name} {value} does not fit in size_t (max {SIZE_MAX})")
    return value


def flags_arg(flags: object) -> int:
    """Memory flags as a plain int (IntFlag arithmetic is slow on the hot path)."""
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise TypeError(f"flags must be an int or MemFlags, not {type(flags).__name__}")
    if flags < 0 or flags & ~_VALID_MEM_FLAGS:
        raise ValueError(f"unknown memory flags {flags:#x}; valid bits are {_VALID_MEM_FLAGS:#x}")
    return int(flags)


@dataclass(frozen=True)
class PartDescriptor:
    """Where a part map lives: ``[addr, addr + size)`` (``struct pmemset_part_descriptor``)."""

    addr: int
    size: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.addr + self.size


class Part:
    """A range of a source waiting to be mapped (``struct pmemset_part``).

    ``consumed`` turns True when ``part_map`` succeeds; a consumed or deleted part
    cannot be used again.
    """

    def __init__(self, pset: PmemSet, source: Source, offset: int, length: int) -> None:
        self.pset = pset
        self.source = source
        self.offset = offset
        self.length = length
        self.consumed = False
        self.deleted = False

    def delete(self) -> None:
        """Discard an unmapped part (``pmemset_part_delete``)."""
        self.deleted = True

    def __repr__(self) -> str:
        state = " consumed" if self.consumed else (" deleted" if self.deleted else "")
        return f"<Part {self.source!r} offset={self.offset:#x} length={self.length:#x}{state}>"


class PartMapRecord:
    """The set's own record of one part map: contiguous file mappings in one reservation."""

    __slots__ = ("granularity", "mappings", "refcount", "reservation")

    def __init__(self, reservation: Reservation, mappings: list[Mapping], granularity: Granularity) -> None:
        self.reservation = reservation
        self.mappings = mappings
        self.granularity = granularity
        self.refcount = 0

    @property
    def addr(self) -> int:
        return self.mappings[0].addr

    @property
    def end(self) -> int:
        return self.mappings[-1].end

    @property
    def size(self) -> int:
        return self.end - self.addr

    @property
    def descriptor(self) -> PartDescriptor:
        return PartDescriptor(self.addr, self.size)


class PartMap:
    """A reference to a part map, from first / next / by-address (``struct pmemset_part_map``).

    Each reference counts (PMDK's refcount): give it back with :meth:`drop`. Two
    references to the same part map compare equal.
    """

    def __init__(self, pset: PmemSet, record: PartMapRecord) -> None:
        self._pset = pset
        self._record: PartMapRecord | None = record
        self._hash = id(record)  # stable after drop, so a reference can sit in a set or dict
        record.refcount += 1

    def _live(self) -> PartMapRecord:
        if self._record is None:
            raise ValueError("this part map reference was dropped or its part map removed")
        return self._record

    @property
    def descriptor(self) -> PartDescriptor:
        """The part map's current address and size (``pmemset_descriptor_part_map``)."""
        return self._live().descriptor

    @property
    def dropped(self) -> bool:
        """True after :meth:`drop` or after the part map was removed through this reference."""
        return self._record is None

    def drop(self) -> None:
        """Give the reference back (``pmemset_part_map_drop``)."""
        with self._pset.address_space.lock:  # another thread may be removing part maps meanwhile
            rec = self._live()
            rec.refcount -= 1
            self._record = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartMap):
            return NotImplemented
        return self is other or (self._record is not None and self._record is other._record)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        if self._record is None:
            return "<PartMap dropped>"
        d = self._record.descriptor
        return f"<PartMap [{d.addr:#x}, {d.end:#x}) size={d.size:#x}>"


def record_of(pmap: object, pset: PmemSet) -> PartMapRecord:
    """The set's record behind the live reference ``pmap`` of ``pset`` (TypeError, ValueError otherwise)."""
    if not isinstance(pmap, PartMap):
        raise TypeError(f"expected a PartMap, not {type(pmap).__name__}")
    if pmap._pset is not pset:
        raise ValueError(f"{pmap!r} belongs to another PmemSet")
    return pmap._live()


def consume(pmap: PartMap) -> None:
    """Mark ``pmap`` dropped: the set removed its part map through it."""
    pmap._record = None


def as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")


def take(data: bytes, length: int | None) -> bytes:
    if length is None:
        return data
    size_arg("length", length)
    if length > len(data):
        raise ValueError(f"length {length} is larger than the {len(data)}-byte source buffer")
    return data[:length]


class RecordIndex:
    """The set's part maps by start address: floor lookups, neighbours, address order.

    A SortedList of starts plus a dict, so the hot lookup (which part map holds this
    address?) is one O(log n) floor search and one dict probe.
    """

    def __init__(self) -> None:
        self._starts = SortedList()
        self._by_start: dict[int, PartMapRecord] = {}

    def __len__(self) -> int:
        return len(self._by_start)

    def __iter__(self) -> Iterator[PartMapRecord]:
        by_start = self._by_start
        return (by_start[a] for a in self._starts)

    def add(self, rec: PartMapRecord) -> None:
        self._starts.add(rec.addr)
        self._by_start[rec.addr] = rec

    def discard(self, addr: int) -> None:
        del self._by_start[addr]
        self._starts.remove(addr)

    def get(self, addr: int) -> PartMapRecord | None:
        return self._by_start.get(addr)

    def containing(self, addr: int) -> PartMapRecord | None:
        """The part map holding ``addr``, or None. O(log n)."""
        start = floor(self._starts, addr)
        if start is None:
            return None
        rec = self._by_start[start]
        return rec if addr < rec.end else None

    def first(self) -> PartMapRecord | None:
        return self._by_start[self._starts[0]] if self._starts else None

    def after(self, addr: int) -> PartMapRecord | None:
        """The first part map starting above ``addr``."""
        i = self._starts.bisect_right(addr)
        return self._by_start[self._starts[i]] if i < len(self._starts) else None

    def before(self, addr: int) -> PartMapRecord | None:
        """The last part map starting below ``addr``."""
        i = self._starts.bisect_left(addr)
        return self._by_start[self._starts[i - 1]] if i else None

    def intersecting(self, start: int, end: int) -> list[PartMapRecord]:
        """Part maps intersecting ``[start, end)``, in address order."""
        out: list[PartMapRecord] = []
        first = self.containing(start)
        if first is not None:
            out.append(first)
        for a in self._starts.irange(start, end, inclusive=(first is None, False)):
            out.append(self._by_start[a])
        return out

    def clear(self) -> None:
        self._starts.clear()
        self._by_start.clear()
