"""The operations a test performs on a set and its world, as small frozen values.

One vocabulary for every driver: a scenario file's steps parse into these values (each
step class of :mod:`pmemsim.scenario.steps` is one of them plus its expectations), the
hypothesis strategies and the state machine draw them, and one executor,
:class:`pmemsim.testing.ops.Executor`, runs them against a live set. A value says what
to do, never how to check the outcome: expectations belong to the driver.

Things made along the way are named: a part (``PartNew(name=...)``), a descriptor and a
part-map reference (``name`` on the calls that return one). Addresses are :class:`Addr`
values: an offset from the address space's ``low``, from a named descriptor's start or
end, or from the part map at a position (which keeps a drawn sequence meaningful in any
state). Sources are named by the driver (a scenario's source names; positions, modulo
their number, for drawn sequences).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_OFFSET",
    "Addr",
    "ArmFault",
    "DeepFlush",
    "DeletePart",
    "Drain",
    "Drop",
    "FirstPartMap",
    "Flush",
    "Free",
    "MapPart",
    "Mark",
    "Memcpy",
    "Memmove",
    "Memset",
    "NextPartMap",
    "Occupy",
    "Operation",
    "PartMapByAddress",
    "PartNew",
    "Persist",
    "Read",
    "Record",
    "RemovePartMap",
    "RemoveRange",
    "SetCoalescing",
    "StopRecording",
    "Store",
]

#: Largest offset an address may name (as the scenario schema bounds integer addresses): 64 TiB.
MAX_OFFSET = 1 << 46

_ADDR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\.end)?\s*(?:([+-])\s*(0x[0-9A-Fa-f]+|[0-9]+))?$")


@dataclass(frozen=True)
class Addr:
    """An address: ``offset`` bytes from the space's ``low``, from a named descriptor, or from a part map.

    ``base`` names a descriptor; ``index`` picks the part map at that position (modulo
    how many there are; the space's ``low`` when there is none). ``end`` True means the
    descriptor's or part map's end (``addr + size``) rather than its start.
    """

    offset: int = 0
    base: str | None = None
    end: bool = False
    index: int | None = None

    @classmethod
    def parse(cls, value: int | str) -> Addr:
        """From the scenario format: ``4096``, ``"a"``, ``"a.end"``, ``"a+0x1000"``, ``"a.end-4096"``."""
        if isinstance(value, int):
            if not 0 <= value <= MAX_OFFSET:
                raise ValueError(f"address {value} is outside [0, {MAX_OFFSET:#x}]")
            return cls(offset=value)
        m = _ADDR.match(value) if len(value) <= 256 else None
        if m is None:
            raise ValueError(f"not an address: {value[:60]!r}")
        name, end, sign, number = m.groups()
        if number and len(number) > 24:  # checked before int(): a long number costs quadratic time
            raise ValueError(f"the offset in {value[:60]!r} is larger than {MAX_OFFSET:#x}")
        # Base 16 or 10 explicitly: int(x, 0) refuses the leading zeros of "a+0100".
        offset = 0 if not number else int(number[2:], 16) if number[:2] in ("0x", "0X") else int(number)
        if offset > MAX_OFFSET:
            raise ValueError(f"the offset in {value!r} is larger than {MAX_OFFSET:#x}")
        return cls(offset=-offset if sign == "-" else offset, base=name, end=bool(end))

    def __str__(self) -> str:
        if self.base is None and self.index is None:
            return f"low+{self.offset:#x}"
        sign = "-" if self.offset < 0 else "+"
        tail = f"{sign}{abs(self.offset):#x}" if self.offset else ""
        base = self.base if self.base is not None else f"map#{self.index}"
        return f"{base}{'.end' if self.end else ''}{tail}"


@dataclass(frozen=True, kw_only=True)
class Operation:
    """What every operation is: a frozen value :class:`~pmemsim.testing.ops.Executor` can run."""


# -- parts and part maps ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PartNew(Operation):
    """``part_new(source, offset, length)``, kept under ``name``."""

    name: str
    source: str | int
    offset: int = 0
    length: int = 0


@dataclass(frozen=True, kw_only=True)
class MapPart(Operation):
    """``part_map`` of the part ``part``, or of a part made here from ``source``/``offset``/``length``.

    ``name`` keeps the descriptor it returns (for addresses).
    """

    part: str | None = None
    source: str | int | None = None
    offset: int = 0
    length: int = 0
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeletePart(Operation):
    """``part_delete`` of the part ``part``."""

    part: str


@dataclass(frozen=True, kw_only=True)
class SetCoalescing(Operation):
    """``set_contiguous_part_coalescing(mode)`` (a raw int may be out of range on purpose)."""

    mode: int


@dataclass(frozen=True, kw_only=True)
class FirstPartMap(Operation):
    """``first_part_map()``: the reference is kept under ``name`` unless ``drop``."""

    name: str | None = None
    drop: bool = False


@dataclass(frozen=True, kw_only=True)
class NextPartMap(Operation):
    """``next_part_map(map)``: the reference is kept under ``name`` unless ``drop``."""

    map: str
    name: str | None = None
    drop: bool = False


@dataclass(frozen=True, kw_only=True)
class PartMapByAddress(Operation):
    """``part_map_by_address(addr)``: the reference is kept under ``name`` unless ``drop``."""

    addr: Addr
    name: str | None = None
    drop: bool = False


@dataclass(frozen=True, kw_only=True)
class Drop(Operation):
    """``part_map_drop`` of the reference ``map``."""

    map: str


@dataclass(frozen=True, kw_only=True)
class RemovePartMap(Operation):
    """``remove_part_map`` of the reference ``map`` (a name), or of the part map at a position (an int)."""

    map: str | int


@dataclass(frozen=True, kw_only=True)
class RemoveRange(Operation):
    """``remove_range(addr, length)``."""

    addr: Addr
    length: int


# -- memory -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Memcpy(Operation):
    """``memcpy(addr, data, flags)``."""

    addr: Addr
    data: bytes = b""
    flags: int = 0


@dataclass(frozen=True, kw_only=True)
class Memset(Operation):
    """``memset(addr, value, length, flags)``."""

    addr: Addr
    value: int
    length: int
    flags: int = 0


@dataclass(frozen=True, kw_only=True)
class Memmove(Operation):
    """``memmove(dest, src, length, flags)`` (the ranges may overlap)."""

    dest: Addr
    src: Addr
    length: int
    flags: int = 0


@dataclass(frozen=True, kw_only=True)
class Store(Operation):
    """``write(addr, data)``: plain stores (no flush, no fence)."""

    addr: Addr
    data: bytes = b""


@dataclass(frozen=True, kw_only=True)
class Read(Operation):
    """``read(addr, length)``; the executor returns the bytes."""

    addr: Addr
    length: int


@dataclass(frozen=True, kw_only=True)
class Persist(Operation):
    """``persist(addr, length)``: flush and drain."""

    addr: Addr
    length: int


@dataclass(frozen=True, kw_only=True)
class Flush(Operation):
    """``flush(addr, length)``."""

    addr: Addr
    length: int


@dataclass(frozen=True, kw_only=True)
class DeepFlush(Operation):
    """``deep_flush(addr, length)``."""

    addr: Addr
    length: int


@dataclass(frozen=True, kw_only=True)
class Drain(Operation):
    """``drain()``: a fence."""


# -- recording ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Mark(Operation):
    """``mark(name)``: a marker in the store log (``NAME.BEGIN`` / ``NAME.END``)."""

    name: str


@dataclass(frozen=True, kw_only=True)
class Record(Operation):
    """Start recording stores, flushes, fences and markers (the executor keeps the log)."""


@dataclass(frozen=True, kw_only=True)
class StopRecording(Operation):
    """Stop recording (otherwise recording lasts until the executor is closed)."""


# -- the world around the set ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Occupy(Operation):
    """``space.occupy(addr, size)``: a foreign mapping the set must step around."""

    addr: Addr
    size: int


@dataclass(frozen=True, kw_only=True)
class Free(Operation):
    """``space.free(addr)``: remove an occupied range."""

    addr: Addr


@dataclass(frozen=True, kw_only=True)
class ArmFault(Operation):
    """Arm a fault: ``site`` fails at its ``at``-th hit (None: the next one), or at every hit."""

    site: str
    at: int | None = None
    every: bool = False
    errno: int | None = None
