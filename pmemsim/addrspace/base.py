"""The seam between the part-mapping core and an address-space backend.

A backend answers a handful of questions — reserve, extend, shrink, release, map a
file range, unmap, read, write, flush — and raises one of the small
:class:`AddressSpaceError` subclasses when it cannot; the core turns those into
libpmemset's documented errors. Backends never import the core.

:class:`Reservation` (libpmem2's ``pmem2_vm_reservation``) is shared by both backends:
it keeps the file mappings placed inside it in an :class:`IntervalMap`, so "is this
range free?" and "where is the first gap that fits?" have one answer everywhere.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pmemsim.addrspace.intervals import IntervalMap
from pmemsim.enums import Granularity

__all__ = [
    "AddressSpace",
    "AddressSpaceError",
    "FileRef",
    "MapFailed",
    "Mapping",
    "NotMapped",
    "Occupied",
    "OutOfAddressSpace",
    "Placement",
    "RangeOccupied",
    "Reservation",
    "check_address_space",
]


class AddressSpaceError(Exception):
    """A backend could not do what the core asked; the core converts it at the seam."""


class RangeOccupied(AddressSpaceError, ValueError):
    """The requested range overlaps something already there."""


class OutOfAddressSpace(AddressSpaceError, MemoryError):
    """No free range of the requested size is left."""


class MapFailed(AddressSpaceError, OSError):
    """A file range could not be mapped (the OS refused, the file is too short, ...)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class NotMapped(AddressSpaceError, ValueError):
    """Part of the requested range has no file mapped there."""


class Placement(StrEnum):
    """Where new reservations go: the lowest gap that fits, or the highest (like Linux mmap)."""

    BOTTOM_UP = "bottom-up"
    TOP_DOWN = "top-down"


@dataclass(eq=False)
class Occupied:
    """A foreign mapping placed with :meth:`AddressSpace.occupy`."""

    addr: int
    size: int


@runtime_checkable
class FileRef(Protocol):
    """An open file a backend can map: its descriptor and, when known, its path."""

    @property
    def fd(self) -> int:
        """The open file descriptor (read-write)."""
        ...

    @property
    def path(self) -> str | None:
        """The file's path, or None for a descriptor or an unlinked temporary file."""
        ...


@dataclass(eq=False)
class Mapping:
    """One file range mapped at ``[addr, addr + length)`` inside ``reservation``."""

    reservation: Reservation
    addr: int
    length: int
    file: FileRef
    file_offset: int
    granularity: Granularity

    @property
    def end(self) -> int:
        """One past the last mapped byte."""
        return self.addr + self.length


class Reservation:
    """A range of virtual addresses set aside (``pmem2_vm_reservation``).

    ``addr`` and ``size`` describe it; the mappings placed inside are kept by address.
    Only the address space that made it may change it.
    """

    def __init__(self, space: AddressSpace, addr: int, size: int) -> None:
        self.space = space
        self._mappings: IntervalMap[Mapping] = IntervalMap(addr, addr + size)
        self.released = False
        # Made by a PmemSet for its own part maps (never usable as a configured one).
        self.set_owned = False

    @property
    def addr(self) -> int:
        """Start address."""
        return self._mappings.low

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._mappings.high - self._mappings.low

    @property
    def end(self) -> int:
        """One past the last reserved byte."""
        return self._mappings.high

    @property
    def mappings(self) -> list[Mapping]:
        """The mappings inside, in address order."""
        return [m for _s, _e, m in self._mappings]

    def is_free(self, addr: int, length: int) -> bool:
        """True when ``[addr, addr+length)`` is inside and holds no mapping."""
        return self._mappings.is_free(addr, addr + length)

    def first_fit(self, length: int) -> int | None:
        """Lowest address of a free range of ``length`` bytes inside, or None."""
        return self._mappings.first_fit(length)

    def mapping_at(self, addr: int) -> Mapping | None:
        """The mapping containing ``addr``, or None."""
        hit = self._mappings.find(addr)
        return None if hit is None else hit[2]

    def content_bounds(self) -> tuple[int, int] | None:
        """``(lowest mapped address, one past highest)``, or None when empty."""
        return self._mappings.extent()

    # -- for the address space that made it -------------------------------------------------

    def mapping_count(self) -> int:
        """How many mappings are inside (O(1), unlike ``len(mappings)``)."""
        return len(self._mappings)

    def holds(self, mapping: Mapping) -> bool:
        """True when ``mapping`` itself (not an equal copy) is mapped here."""
        hit = self._mappings.get(mapping.addr)
        return hit is not None and hit[1] is mapping

    def add_mapping(self, mapping: Mapping) -> None:
        """Record ``mapping`` at its range, which must be free."""
        self._mappings.insert(mapping.addr, mapping.end, mapping)

    def remove_mapping(self, mapping: Mapping) -> None:
        """Forget ``mapping`` (its range becomes free)."""
        self._mappings.remove(mapping.addr)

    def set_bounds(self, addr: int, end: int) -> None:
        """Move the reservation's bounds to ``[addr, end)`` (they must still hold every mapping)."""
        self._mappings.set_bounds(addr, end)

    def _check(self) -> None:
        """Assert the bookkeeping is consistent (for tests)."""
        self._mappings._check()

    def __repr__(self) -> str:
        state = " released" if self.released else ""
        return f"<Reservation [{self.addr:#x}, {self.end:#x}) size={self.size:#x}{state}>"


class AddressSpace(Protocol):
    """Everything the core and the test tools ask of a backend. Addresses and sizes are ints (bytes).

    Three groups: what a set maps with (reserve ... device_granularity), the set's
    housekeeping (``lock``, ``owns``, ``flush_may_fail``, ``close``), and what tests
    inspect and break on purpose (bounds, placement, ``occupy`` ... ``_check``). Both
    shipped backends get all of it from
    :class:`~pmemsim.addrspace.layout.LayoutAddressSpace`; a new backend subclasses it
    and implements its ``_os_*`` hooks.
    """

    # -- what a set maps with -------------------------------------------------------------

    @property
    def page_size(self) -> int:
        """Allocation granularity: reservations, mappings and file offsets align to it."""
        ...

    @property
    def supported_granularities(self) -> frozenset[Granularity]:
        """Store granularities a set on this space may require (tests narrow them)."""
        ...

    @supported_granularities.setter
    def supported_granularities(self, grans: frozenset[Granularity]) -> None: ...

    def reserve(self, size: int, addr: int | None = None) -> Reservation:
        """Reserve ``size`` bytes (at ``addr`` when given). Raises OutOfAddressSpace / RangeOccupied."""
        ...

    def release(self, rsv: Reservation) -> None:
        """Give a reservation back; it must hold no mapping."""
        ...

    def extend(self, rsv: Reservation, size: int) -> None:
        """Grow ``rsv`` by ``size`` bytes at its end. Raises RangeOccupied."""
        ...

    def shrink(self, rsv: Reservation, offset: int, size: int) -> None:
        """Cut ``[rsv.addr+offset, +size)`` off either end of ``rsv``; the range must be free."""
        ...

    def map_file(
        self,
        rsv: Reservation,
        addr: int,
        file: FileRef,
        file_offset: int,
        length: int,
        granularity: Granularity,
    ) -> Mapping:
        """Map ``length`` bytes of ``file`` from ``file_offset`` at ``addr`` inside ``rsv``."""
        ...

    def unmap(self, mapping: Mapping) -> None:
        """Remove a mapping made by :meth:`map_file`; its range becomes free in its reservation."""
        ...

    def unmap_many(self, mappings: Sequence[Mapping]) -> None:
        """Remove every mapping of ``mappings``, or (raising) none of them."""
        ...

    def read(self, addr: int, length: int) -> bytes:
        """Bytes at ``[addr, addr+length)``; the whole range must be mapped."""
        ...

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``addr``; the whole range must be mapped."""
        ...

    def flush(self, addr: int, length: int) -> None:
        """Make ``[addr, addr+length)`` durable in the files behind it."""
        ...

    def device_granularity(self, file: FileRef) -> Granularity:
        """The store granularity of the device holding ``file`` (PAGE for a regular file)."""
        ...

    # -- the set's housekeeping -----------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """Held by every public call of the space and of every set on it (one call at a time)."""
        ...

    @property
    def flush_may_fail(self) -> bool:
        """False when flush is bookkeeping only: a set then keeps no undo copy for a memcpy."""
        ...

    def owns(self, rsv: Reservation) -> bool:
        """True when ``rsv`` is a live reservation this space made."""
        ...

    def close(self) -> None:
        """Give back whatever the space holds of the system (idempotent; nothing for a simulator)."""
        ...

    # -- what tests inspect and break ------------------------------------------------------

    @property
    def low(self) -> int:
        """Lowest usable address."""
        ...

    @property
    def high(self) -> int:
        """One past the highest usable address."""
        ...

    @property
    def placement(self) -> Placement:
        """Where new reservations go."""
        ...

    @property
    def used(self) -> int:
        """Bytes taken by reservations and occupied ranges."""
        ...

    def reservations(self) -> list[Reservation]:
        """Every live reservation, in address order."""
        ...

    def occupy(self, addr: int, size: int) -> Occupied:
        """Place a foreign mapping at ``[addr, addr+size)`` that sets must step around."""
        ...

    def free(self, addr: int) -> None:
        """Remove the occupied range starting at ``addr``."""
        ...

    def occupied(self) -> list[Occupied]:
        """Every occupied range, in address order."""
        ...

    def is_free(self, addr: int, size: int) -> bool:
        """True when nothing (reservation or occupied range) touches ``[addr, addr+size)``."""
        ...

    def mapping_at(self, addr: int) -> Mapping | None:
        """The file mapping containing ``addr``, or None."""
        ...

    def set_device_granularity(self, path: str | os.PathLike[str], granularity: Granularity) -> None:
        """Pretend the file at ``path`` lives on a device of ``granularity``."""
        ...

    def _check(self) -> None:
        """Assert the bookkeeping is consistent (tests call it after every change)."""
        ...


#: The names an object must have to serve as an :class:`AddressSpace`, in declaration order.
SPACE_MEMBERS: tuple[str, ...] = tuple(
    name
    for name in vars(AddressSpace)
    if not name.startswith("__") and name not in ("_is_protocol", "_abc_impl")
)


def check_address_space(space: object) -> AddressSpace:
    """``space`` when it has every member of :class:`AddressSpace`; TypeError naming what it lacks."""
    missing = [name for name in SPACE_MEMBERS if not hasattr(space, name)]
    if missing:
        raise TypeError(f"{type(space).__name__} is not an address space: it lacks {', '.join(missing)}")
    return space  # type: ignore[return-value]  # checked member by member above
