"""Operations on a set as small frozen values, a runner for them, and state snapshots.

:func:`pmemsim.testing.strategies.operations` draws lists of these operations; an
:class:`OperationRunner` applies them to a real set and reports each outcome as a short
string (``"ok [0x0, +0x2000)"`` or the error's C name), with addresses relative to the
address space's ``low`` so that two backends, or two runs, can be compared line by line.
Operations name part maps by index (modulo how many there are) rather than by
address, so any sequence is meaningful in any state.

:func:`snapshot` captures everything a failed call promises not to change
(the promise of docs/design.md): part maps, reservations, occupied ranges, the coalescing anchor and
mode, the effective granularity, file sizes and contents, part states.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pmemsim._files import file_contents
from pmemsim.enums import Coalescing, Granularity, MemFlags
from pmemsim.errors import PmemsetError
from pmemsim.faults import FaultPlan, FaultSite
from pmemsim.pmemset import Part, PartDescriptor, PmemSet
from pmemsim.source import Source

__all__ = [
    "InjectFault",
    "MapPart",
    "Occupy",
    "Operation",
    "OperationRunner",
    "Persist",
    "Read",
    "RemovePartMap",
    "RemoveRange",
    "SetCoalescing",
    "Snapshot",
    "Write",
    "snapshot",
]


@dataclass(frozen=True)
class MapPart:
    """``part_new(sources[source], offset, length)`` then ``part_map`` of it."""

    source: int
    offset: int
    length: int


@dataclass(frozen=True)
class SetCoalescing:
    """``set_contiguous_part_coalescing(mode)`` (``mode`` may be out of range on purpose)."""

    mode: int


@dataclass(frozen=True)
class RemovePartMap:
    """Take a reference to part map ``index`` (first/next) and remove it."""

    index: int


@dataclass(frozen=True)
class RemoveRange:
    """``remove_range`` starting ``offset`` bytes into part map ``index``."""

    index: int
    offset: int
    length: int


@dataclass(frozen=True)
class Write:
    """``memcpy(data)`` at ``offset`` into part map ``index`` with ``flags``."""

    index: int
    offset: int
    data: bytes
    flags: int = 0


@dataclass(frozen=True)
class Read:
    """``read`` of ``length`` bytes at ``offset`` into part map ``index``."""

    index: int
    offset: int
    length: int


@dataclass(frozen=True)
class Persist:
    """``persist`` of ``length`` bytes at ``offset`` into part map ``index``."""

    index: int
    offset: int
    length: int


@dataclass(frozen=True)
class Occupy:
    """Occupy ``pages`` pages right after part map ``index`` (skipped when that range is not free)."""

    index: int
    pages: int


@dataclass(frozen=True)
class InjectFault:
    """``fault_plan.fail_next(site)``."""

    site: str


Operation = (
    MapPart | SetCoalescing | RemovePartMap | RemoveRange | Write | Read | Persist | Occupy | InjectFault
)


@dataclass(frozen=True)
class Snapshot:
    """Everything a failed call promises not to change (compare two with ``==``)."""

    descriptors: tuple[PartDescriptor, ...]
    set_reservations: tuple[tuple[int, int], ...]
    space_reservations: tuple[tuple[int, int], ...]
    occupied: tuple[tuple[int, int], ...]
    anchor: PartDescriptor | None
    coalescing: Coalescing
    granularity: Granularity | None
    files: tuple[tuple[int, str], ...]
    parts: tuple[tuple[bool, bool], ...]


def _file_state(source: Source) -> tuple[int, str]:
    """(size, digest of the content) of a live source's file."""
    content = file_contents(source.file)  # pread, or seek+read under pyfakefs
    return len(content), hashlib.blake2b(content, digest_size=16).hexdigest()


def snapshot(pset: PmemSet, sources: Sequence[Source] = (), parts: Sequence[Part] = ()) -> Snapshot:
    """The observable state of ``pset``, its address space, the files of ``sources`` and ``parts``.

    Takes no part-map reference.
    """
    space = pset.address_space
    return Snapshot(
        descriptors=tuple(pset.descriptors()),
        set_reservations=tuple((r.addr, r.size) for r in pset.reservations()),
        space_reservations=tuple((r.addr, r.size) for r in space.reservations()),
        occupied=tuple((o.addr, o.size) for o in space.occupied()),
        anchor=pset.coalescing_anchor,
        coalescing=pset.coalescing,
        granularity=pset.effective_granularity,
        files=tuple(_file_state(s) for s in sources if not s.deleted),
        parts=tuple((p.consumed, p.deleted) for p in parts),
    )


class OperationRunner:
    """Applies :data:`Operation` values to ``pset`` mapping parts of ``sources``.

    :meth:`run` returns the outcome as a string and checks, for every operation that
    raised, that the state is unchanged (AssertionError otherwise) and, after every
    operation, the set's and the space's ``_check()``. Only :class:`PmemsetError` counts
    as an outcome; any other exception propagates.
    """

    def __init__(self, pset: PmemSet, sources: Sequence[Source], fault_plan: FaultPlan | None = None) -> None:
        space = pset.address_space
        if not sources:
            raise ValueError("OperationRunner needs at least one source")
        self.pset = pset
        self.space = space
        self.sources = list(sources)
        self.plan = fault_plan if fault_plan is not None else pset.fault_plan

    def _rel(self, addr: int) -> int:
        return addr - self.space.low

    def _desc(self, d: PartDescriptor) -> str:
        return f"[{self._rel(d.addr):#x}, +{d.size:#x})"

    def _target(self, index: int) -> PartDescriptor | None:
        descs = self.pset.descriptors()
        return descs[index % len(descs)] if descs else None

    def _addr(self, index: int, offset: int) -> int:
        d = self._target(index)
        return (d.addr if d is not None else self.space.low) + offset

    def run_all(self, ops: Sequence[Operation]) -> list[str]:
        """Run every operation; the outcomes in order."""
        return [self.run(op) for op in ops]

    def run(self, op: Operation) -> str:
        """Run one operation and return its outcome."""
        before = snapshot(self.pset, self.sources)
        try:
            result = self._run(op)
        except PmemsetError as exc:
            after = snapshot(self.pset, self.sources)
            assert after == before, f"{op} failed with {exc.name} but changed the state:\n{before}\n{after}"
            result = exc.name
        self.pset._check()
        self.space._check()
        return result

    def _run(self, op: Operation) -> str:
        pset = self.pset
        if isinstance(op, MapPart):
            part = pset.part_new(self.sources[op.source % len(self.sources)], op.offset, op.length)
            try:
                return "ok " + self._desc(pset.part_map(part))
            except PmemsetError:
                assert not part.consumed, "a failed part_map consumed the part"
                part.delete()
                raise
        if isinstance(op, SetCoalescing):
            pset.set_contiguous_part_coalescing(op.mode)
            return "ok"
        if isinstance(op, RemovePartMap):
            d = self._target(op.index)
            if d is None:
                return "skip"
            ref = pset.part_map_by_address(d.addr)
            pset.remove_part_map(ref)
            return "ok"
        if isinstance(op, RemoveRange):
            pset.remove_range(self._addr(op.index, op.offset), op.length)
            return "ok"
        if isinstance(op, Write):
            pset.memcpy(self._addr(op.index, op.offset), op.data, flags=MemFlags(op.flags))
            return "ok"
        if isinstance(op, Read):
            return "ok " + pset.read(self._addr(op.index, op.offset), op.length).hex()
        if isinstance(op, Persist):
            pset.persist(self._addr(op.index, op.offset), op.length)
            return "ok"
        if isinstance(op, Occupy):
            d = self._target(op.index)
            size = op.pages * self.space.page_size
            if d is None or not self.space.is_free(d.end, size) or d.end + size > self.space.high:
                return "skip"
            self.space.occupy(d.end, size)
            return "ok"
        if isinstance(op, InjectFault):
            self.plan.fail_next(FaultSite(op.site))
            return "ok"
        raise TypeError(f"not an operation: {op!r}")
