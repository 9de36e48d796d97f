"""What a scenario is made of, as small frozen values: set-up specs, steps, addresses.

A loaded :class:`Scenario` holds no live object: the runner builds the address space,
files, set and fault plan from it afresh for every backend. ``STEP_TYPES`` maps each
``op`` of the file format to its step class (the schema lists the same ops; a test
keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pmemsim.addrspace.backends import DEFAULT_BACKENDS
from pmemsim.addrspace.base import Placement
from pmemsim.enums import Coalescing, Granularity, MemFlags, SourceFlags
from pmemsim.errors import ErrorCode
from pmemsim.testing import operations as ops
from pmemsim.testing.operations import MAX_OFFSET, Addr

__all__ = [
    "MAX_OFFSET",
    "STEP_TYPES",
    "Addr",
    "Check",
    "ConfigSpec",
    "CrashSpec",
    "DeepFlush",
    "Drain",
    "Drop",
    "FaultSpec",
    "FirstPartMap",
    "Flush",
    "Free",
    "Mark",
    "Memcpy",
    "Memset",
    "NextPartMap",
    "Occupy",
    "PartMapByAddress",
    "PartMapStep",
    "PartNew",
    "Persist",
    "Read",
    "Record",
    "RemovePartMap",
    "RemoveRange",
    "Scenario",
    "SetCoalescing",
    "SourceSpec",
    "SpaceSpec",
    "Step",
    "StopRecording",
    "Write",
]

_NO_SOURCE_FLAGS = SourceFlags(0)
_NO_MEM_FLAGS = MemFlags(0)

# -- set-up ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceSpec:
    """The address space: page size, bounds, limit, placement, granularities, occupied ranges."""

    page_size: int = 4096
    size: int | None = None
    limit: int | None = None
    placement: Placement = Placement.BOTTOM_UP
    granularities: frozenset[Granularity] | None = None
    occupied: tuple[tuple[int, int], ...] = ()  # (offset from low, size)


@dataclass(frozen=True)
class SourceSpec:
    """A source: a file (created with ``size`` bytes or copied from ``image``) or a temporary file."""

    name: str
    line: int | None = None
    file: str | None = None
    temporary: bool = False
    size: int | None = None
    image: Path | None = None
    flags: SourceFlags = _NO_SOURCE_FLAGS
    device_granularity: Granularity | None = None


@dataclass(frozen=True)
class ConfigSpec:
    """The set's config: required granularity and an optional reservation."""

    granularity: Granularity = Granularity.PAGE
    reservation: int | None = None
    reservation_at: int | None = None


@dataclass(frozen=True)
class FaultSpec:
    """One planned failure: ``site`` fails at its ``at``-th hit (or every hit) with ``errno``."""

    site: str
    at: int | None = None
    every: bool = False
    errno: int | None = None


@dataclass(frozen=True)
class CrashSpec:
    """Crash-consistency check of what was recorded: engine(s), checker, expected verdict.

    Exactly one of ``checker`` (module:function), ``program`` (a checker command),
    ``recover`` (module:function ``recover(image) -> value``) and ``recover_program`` (a
    command printing the value) judges; the two ``recover`` forms check durable
    linearizability (:mod:`pmemsim.persistence.linearizability`).
    """

    expect: str
    line: int | None = None
    engine: str = "Exhaustive"
    markers: tuple[tuple[str, str], ...] = ()
    checker: str | None = None
    program: tuple[str, ...] | None = None
    seed: int | None = None
    timeout: float | None = None
    checker_line: int | None = None
    recover: str | None = None
    recover_program: tuple[str, ...] | None = None

    @property
    def judge_key(self) -> str:
        """The key naming what judges the states: checker, program, recover or recover_program."""
        for key in ("recover", "recover_program", "program"):
            if getattr(self, key) is not None:
                return key
        return "checker"


# -- steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Step:
    """What every step has: where it is written and what it must achieve.

    ``expect`` None means the call must succeed; an ErrorCode means it must fail with
    exactly that code (and change nothing). ``expect_part_maps`` is checked afterwards.
    """

    op: str = field(init=False, default="")
    line: int | None = None
    index: int = 0
    note: str = ""
    expect: ErrorCode | None = None
    expect_part_maps: int | None = None

    def where(self) -> str:
        """``step 3 (part_map, line 27)`` for messages."""
        at = f", line {self.line}" if self.line is not None else ""
        return f"step {self.index + 1} ({self.op}{at})"


@dataclass(frozen=True, kw_only=True)
class _DescriptorExpect(Step):
    name: str | None = None
    expect_size: int | None = None
    expect_addr_relative: Addr | None = None


@dataclass(frozen=True, kw_only=True)
class PartNew(Step, ops.PartNew):
    """``part_new(source, offset, length)``, kept under ``name``."""

    op: str = field(init=False, default="part_new")


@dataclass(frozen=True, kw_only=True)
class PartMapStep(_DescriptorExpect, ops.MapPart):
    """``part_map`` of a named part, or of a part made here from ``source``/``offset``/``length``."""

    op: str = field(init=False, default="part_map")


@dataclass(frozen=True, kw_only=True)
class SetCoalescing(Step, ops.SetCoalescing):
    """``set_contiguous_part_coalescing(mode)``."""

    op: str = field(init=False, default="set_coalescing")
    mode: Coalescing


@dataclass(frozen=True, kw_only=True)
class RemovePartMap(Step, ops.RemovePartMap):
    """``remove_part_map`` of a reference taken by first/next/by-address."""

    op: str = field(init=False, default="remove_part_map")


@dataclass(frozen=True, kw_only=True)
class RemoveRange(Step, ops.RemoveRange):
    """``remove_range(addr, length)``."""

    op: str = field(init=False, default="remove_range")


@dataclass(frozen=True, kw_only=True)
class Memcpy(Step, ops.Memcpy):
    """``memcpy(addr, data, flags)``."""

    op: str = field(init=False, default="memcpy")
    flags: MemFlags = _NO_MEM_FLAGS


@dataclass(frozen=True, kw_only=True)
class Memset(Step, ops.Memset):
    """``memset(addr, value, length, flags)``."""

    op: str = field(init=False, default="memset")
    flags: MemFlags = _NO_MEM_FLAGS


@dataclass(frozen=True, kw_only=True)
class Write(Step, ops.Store):
    """Plain stores of ``data`` at ``addr`` (no flush, no fence)."""

    op: str = field(init=False, default="write")


@dataclass(frozen=True, kw_only=True)
class Read(Step, ops.Read):
    """``read(addr, length)``, compared with ``expect_data`` when given."""

    op: str = field(init=False, default="read")
    expect_data: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class Persist(Step, ops.Persist):
    """``persist(addr, length)``: flush and drain."""

    op: str = field(init=False, default="persist")


@dataclass(frozen=True, kw_only=True)
class Flush(Step, ops.Flush):
    """``flush(addr, length)``."""

    op: str = field(init=False, default="flush")


@dataclass(frozen=True, kw_only=True)
class DeepFlush(Step, ops.DeepFlush):
    """``deep_flush(addr, length)``."""

    op: str = field(init=False, default="deep_flush")


@dataclass(frozen=True, kw_only=True)
class Drain(Step, ops.Drain):
    """``drain()``: a fence."""

    op: str = field(init=False, default="drain")


@dataclass(frozen=True, kw_only=True)
class Mark(Step, ops.Mark):
    """``mark(name)``: a marker in the store log (``NAME.BEGIN`` / ``NAME.END``)."""

    op: str = field(init=False, default="mark")


@dataclass(frozen=True, kw_only=True)
class FirstPartMap(_DescriptorExpect, ops.FirstPartMap):
    """``first_part_map()``: keeps the reference under ``name`` unless ``drop``."""

    op: str = field(init=False, default="first_part_map")


@dataclass(frozen=True, kw_only=True)
class NextPartMap(_DescriptorExpect, ops.NextPartMap):
    """``next_part_map(map)``."""

    op: str = field(init=False, default="next_part_map")


@dataclass(frozen=True, kw_only=True)
class PartMapByAddress(_DescriptorExpect, ops.PartMapByAddress):
    """``part_map_by_address(addr)``."""

    op: str = field(init=False, default="part_map_by_address")


@dataclass(frozen=True, kw_only=True)
class Drop(Step, ops.Drop):
    """``part_map_drop`` of a named reference."""

    op: str = field(init=False, default="drop")


@dataclass(frozen=True, kw_only=True)
class Occupy(Step, ops.Occupy):
    """``space.occupy(addr, size)``: a foreign mapping the set must step around."""

    op: str = field(init=False, default="occupy")


@dataclass(frozen=True, kw_only=True)
class Free(Step, ops.Free):
    """``space.free(addr)``: remove an occupied range."""

    op: str = field(init=False, default="free")


@dataclass(frozen=True, kw_only=True)
class Record(Step, ops.Record):
    """Start recording stores, flushes, fences and markers for the ``[crash]`` check."""

    op: str = field(init=False, default="record")


@dataclass(frozen=True, kw_only=True)
class StopRecording(Step, ops.StopRecording):
    """Stop recording (otherwise recording lasts to the last step)."""

    op: str = field(init=False, default="stop_recording")


@dataclass(frozen=True, kw_only=True)
class Check(Step):
    """Only expectations (``expect_part_maps``), no call."""

    op: str = field(init=False, default="check")


#: Step class for each ``op`` of the file format.
STEP_TYPES: dict[str, type[Step]] = {
    "part_new": PartNew,
    "part_map": PartMapStep,
    "set_coalescing": SetCoalescing,
    "remove_part_map": RemovePartMap,
    "remove_range": RemoveRange,
    "memcpy": Memcpy,
    "memset": Memset,
    "write": Write,
    "read": Read,
    "persist": Persist,
    "flush": Flush,
    "deep_flush": DeepFlush,
    "drain": Drain,
    "mark": Mark,
    "first_part_map": FirstPartMap,
    "next_part_map": NextPartMap,
    "part_map_by_address": PartMapByAddress,
    "drop": Drop,
    "occupy": Occupy,
    "free": Free,
    "record": Record,
    "stop_recording": StopRecording,
    "check": Check,
}


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario file."""

    path: Path
    name: str
    steps: tuple[Step, ...]
    description: str = ""
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    fake_fs: bool = False
    space: SpaceSpec = SpaceSpec()
    sources: tuple[SourceSpec, ...] = ()
    config: ConfigSpec = ConfigSpec()
    faults: tuple[FaultSpec, ...] = ()
    crash: CrashSpec | None = None
