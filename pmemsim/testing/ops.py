"""Run the operations of :mod:`pmemsim.testing.operations`; shorthands for drawn sequences; snapshots.

:class:`Executor` is the one place an operation value becomes calls on a set, its
address space and its fault plan: the scenario runner, :class:`OperationRunner` and the
state machine all run their operations through it. It keeps what the operations name
(parts, descriptors, part-map references, the store log) and resolves addresses.

:func:`pmemsim.testing.strategies.operations` draws lists of the index-addressed
shorthands below (``MapPart``, ``Write``, ``Occupy``...); each one :meth:`lowers
<MapPart.lower>` into an operation value. An :class:`OperationRunner` applies them to a
real set and reports each outcome as a short string (``"ok [0x0, +0x2000)"`` or the
error's C name), with addresses relative to the address space's ``low`` so that two
backends, or two runs, can be compared line by line. Shorthands name part maps by
index (modulo how many there are) rather than by address, so any sequence is
meaningful in any state.

:func:`snapshot` captures everything a failed call promises not to change: part maps,
reservations, occupied ranges, the coalescing anchor and mode, the effective
granularity, file sizes and contents, part states.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pmemsim._files import file_contents
from pmemsim.enums import Coalescing, Granularity, MemFlags
from pmemsim.errors import PmemsetError
from pmemsim.faults import FaultPlan
from pmemsim.pmemset import Part, PartDescriptor, PartMap, PmemSet
from pmemsim.source import Source
from pmemsim.testing import operations as o
from pmemsim.testing.operations import Addr

__all__ = [
    "Executor",
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
    "Shorthand",
    "Snapshot",
    "Unresolved",
    "Write",
    "snapshot",
]


class Unresolved(LookupError):
    """An operation names something the executor does not hold (a descriptor never set...)."""


class Executor:
    """Runs operation values against ``pset``, with parts made from ``sources``.

    ``sources`` maps the names operations use to sources (a sequence: names are
    positions, taken modulo its length). ``plan`` is the plan :class:`~pmemsim.testing.
    operations.ArmFault` arms (default: the set's). :meth:`run` returns what the call
    returned (a descriptor, bytes, a reference, or None) and raises what it raised;
    :class:`Unresolved` when an operation names a part, descriptor or reference that is
    not held. The calls that return a part-map reference (first, next, by address)
    return its descriptor; the reference is kept in ``refs`` under the operation's name.
    :meth:`close` stops recording and drops the references still held.
    """

    def __init__(
        self,
        pset: PmemSet,
        sources: Mapping[str, Source] | Sequence[Source] = (),
        plan: FaultPlan | None = None,
    ) -> None:
        self.pset = pset
        self.space = pset.address_space
        self.plan = plan if plan is not None else pset.fault_plan
        self.sources: dict[str | int, Source] = {}
        self.sources.update(sources.items() if isinstance(sources, Mapping) else enumerate(sources))
        self.parts: dict[str, Part] = {}
        self.descs: dict[str, PartDescriptor] = {}
        self.refs: dict[str, PartMap] = {}
        self.log: Any = None
        self._recording: contextlib.ExitStack | None = None

    # -- names --------------------------------------------------------------------------------

    def source(self, key: str | int) -> Source:
        """The source called ``key`` (an int: the position, modulo how many there are)."""
        if isinstance(key, int) and key not in self.sources:
            keys = list(self.sources)
            if not keys:
                raise Unresolved("no sources to make a part from")
            key = keys[key % len(keys)]
        try:
            return self.sources[key]
        except KeyError:
            raise Unresolved(f"source {key!r} is not known") from None

    def part(self, name: str) -> Part:
        """The part made under ``name``."""
        try:
            return self.parts[name]
        except KeyError:
            raise Unresolved(f"part {name!r} was never made") from None

    def ref(self, name: str) -> PartMap:
        """The part-map reference taken under ``name`` (once dropped, the set refuses it itself)."""
        ref = self.refs.get(name)
        if ref is None:
            raise Unresolved(f"part-map reference {name!r} was never taken")
        return ref

    def target(self, index: int) -> PartDescriptor | None:
        """The part map at position ``index`` (modulo how many there are), or None when there is none."""
        descs = self.pset.descriptors()
        return descs[index % len(descs)] if descs else None

    def address(self, a: Addr) -> int:
        """The address ``a`` names now."""
        if a.base is not None:
            desc = self.descs.get(a.base)
            if desc is None:
                raise Unresolved(f"descriptor {a.base!r} was never set (its step found no part map)")
            return (desc.end if a.end else desc.addr) + a.offset
        if a.index is not None:
            d = self.target(a.index)
            if d is not None:
                return (d.end if a.end else d.addr) + a.offset
        return self.space.low + a.offset

    def _keep(
        self, op: o.FirstPartMap | o.NextPartMap | o.PartMapByAddress, ref: PartMap | None
    ) -> PartDescriptor | None:
        """Keep ``ref`` under the operation's name (dropping what that name held) or drop it.

        Returns the part map's descriptor (None when there was no part map); the
        reference itself is ``refs[name]``.
        """
        if ref is None:
            return None
        desc = ref.descriptor
        if op.name is not None:
            self.descs[op.name] = desc
        if op.name is not None and not op.drop:
            old = self.refs.get(op.name)
            if old is not None and not old.dropped:
                old.drop()
            self.refs[op.name] = ref
        else:
            ref.drop()
        return desc

    # -- running ------------------------------------------------------------------------------

    def run(self, op: o.Operation) -> object:
        """Run ``op``; what the call returned."""
        for kind in type(op).__mro__:
            handler = _HANDLERS.get(kind)
            if handler is not None:
                return handler(self, op)
        raise TypeError(f"not an operation: {op!r}")

    @property
    def recording(self) -> bool:
        """True between a Record and a StopRecording (or :meth:`close`)."""
        return self._recording is not None

    def stop_recording(self) -> None:
        """End recording, if it runs; the log stays in :attr:`log`."""
        if self._recording is not None:
            self._recording.close()
            self._recording = None

    def close(self) -> None:
        """Stop recording; drop every reference still held."""
        self.stop_recording()
        for ref in self.refs.values():
            if not ref.dropped:
                ref.drop()


def _part_new(x: Executor, op: o.PartNew) -> Part:
    part = x.pset.part_new(x.source(op.source), op.offset, op.length)
    x.parts[op.name] = part
    return part


def _map_part(x: Executor, op: o.MapPart) -> PartDescriptor:
    if op.part is not None:
        desc = x.pset.part_map(x.part(op.part))
    else:
        assert op.source is not None, "MapPart needs a part or a source"
        part = x.pset.part_new(x.source(op.source), op.offset, op.length)
        try:
            desc = x.pset.part_map(part)
        except PmemsetError:
            assert not part.consumed, "a failed part_map consumed the part"
            part.delete()  # made here for this call: nobody else could delete it
            raise
    if op.name is not None:
        x.descs[op.name] = desc
    return desc


def _remove_part_map(x: Executor, op: o.RemovePartMap) -> None:
    if isinstance(op.map, str):
        x.pset.remove_part_map(x.ref(op.map))
        return
    d = x.target(op.map)
    if d is None:
        raise Unresolved("no part map to remove")
    x.pset.remove_part_map(x.pset.part_map_by_address(d.addr))


def _arm_fault(x: Executor, op: o.ArmFault) -> None:
    if op.at is None and not op.every:
        x.plan.fail_next(op.site, errno=op.errno)
    else:
        x.plan.fail(op.site, at=op.at, every=op.every, errno=op.errno)


def _record(x: Executor, op: o.Record) -> None:
    stack = contextlib.ExitStack()
    x.log = stack.enter_context(x.pset.record())
    x._recording = stack


_HANDLERS: dict[type, Callable[[Executor, Any], object]] = {
    o.PartNew: _part_new,
    o.MapPart: _map_part,
    o.DeletePart: lambda x, op: x.part(op.part).delete(),
    o.SetCoalescing: lambda x, op: x.pset.set_contiguous_part_coalescing(op.mode),
    o.FirstPartMap: lambda x, op: x._keep(op, x.pset.first_part_map()),
    o.NextPartMap: lambda x, op: x._keep(op, x.pset.next_part_map(x.ref(op.map))),
    o.PartMapByAddress: lambda x, op: x._keep(op, x.pset.part_map_by_address(x.address(op.addr))),
    o.Drop: lambda x, op: x.ref(op.map).drop(),
    o.RemovePartMap: _remove_part_map,
    o.RemoveRange: lambda x, op: x.pset.remove_range(x.address(op.addr), op.length),
    o.Memcpy: lambda x, op: x.pset.memcpy(x.address(op.addr), op.data, flags=op.flags),
    o.Memset: lambda x, op: x.pset.memset(x.address(op.addr), op.value, op.length, op.flags),
    o.Memmove: lambda x, op: x.pset.memmove(x.address(op.dest), x.address(op.src), op.length, op.flags),
    o.Store: lambda x, op: x.pset.write(x.address(op.addr), op.data),
    o.Read: lambda x, op: x.pset.read(x.address(op.addr), op.length),
    o.Persist: lambda x, op: x.pset.persist(x.address(op.addr), op.length),
    o.Flush: lambda x, op: x.pset.flush(x.address(op.addr), op.length),
    o.DeepFlush: lambda x, op: x.pset.deep_flush(x.address(op.addr), op.length),
    o.Drain: lambda x, op: x.pset.drain(),
    o.Mark: lambda x, op: x.pset.mark(op.name),
    o.Record: _record,
    o.StopRecording: lambda x, op: x.stop_recording(),
    o.Occupy: lambda x, op: x.space.occupy(x.address(op.addr), op.size),
    o.Free: lambda x, op: x.space.free(x.address(op.addr)),
    o.ArmFault: _arm_fault,
}


# -- index-addressed shorthands for drawn sequences ---------------------------------------------


@dataclass(frozen=True)
class MapPart:
    """``part_new(sources[source], offset, length)`` then ``part_map`` of it."""

    source: int
    offset: int
    length: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.MapPart(source=self.source, offset=self.offset, length=self.length)


@dataclass(frozen=True)
class SetCoalescing:
    """``set_contiguous_part_coalescing(mode)`` (``mode`` may be out of range on purpose)."""

    mode: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.SetCoalescing(mode=self.mode)


@dataclass(frozen=True)
class RemovePartMap:
    """Take a reference to part map ``index`` (first/next) and remove it."""

    index: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.RemovePartMap(map=self.index)


@dataclass(frozen=True)
class RemoveRange:
    """``remove_range`` starting ``offset`` bytes into part map ``index``."""

    index: int
    offset: int
    length: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.RemoveRange(addr=Addr(self.offset, index=self.index), length=self.length)


@dataclass(frozen=True)
class Write:
    """``memcpy(data)`` at ``offset`` into part map ``index`` with ``flags``."""

    index: int
    offset: int
    data: bytes
    flags: int = 0

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.Memcpy(addr=Addr(self.offset, index=self.index), data=self.data, flags=MemFlags(self.flags))


@dataclass(frozen=True)
class Read:
    """``read`` of ``length`` bytes at ``offset`` into part map ``index``."""

    index: int
    offset: int
    length: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.Read(addr=Addr(self.offset, index=self.index), length=self.length)


@dataclass(frozen=True)
class Persist:
    """``persist`` of ``length`` bytes at ``offset`` into part map ``index``."""

    index: int
    offset: int
    length: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.Persist(addr=Addr(self.offset, index=self.index), length=self.length)


@dataclass(frozen=True)
class Occupy:
    """Occupy ``pages`` pages right after part map ``index`` (skipped when that range is not free)."""

    index: int
    pages: int

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.Occupy(addr=Addr(0, index=self.index, end=True), size=self.pages * page_size)


@dataclass(frozen=True)
class InjectFault:
    """``fault_plan.fail_next(site)``."""

    site: str

    def lower(self, page_size: int) -> o.Operation:
        """The operation value this shorthand stands for (on a space of ``page_size``)."""
        return o.ArmFault(site=self.site)


#: The index-addressed shorthands :func:`~pmemsim.testing.strategies.operations` draws.
Shorthand = (
    MapPart | SetCoalescing | RemovePartMap | RemoveRange | Write | Read | Persist | Occupy | InjectFault
)
#: What an :class:`OperationRunner` runs: a shorthand or any operation value.
Operation = Shorthand | o.Operation


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
    """Applies operations (shorthands or operation values) to ``pset`` mapping parts of ``sources``.

    :meth:`run` returns the outcome as a string and checks, for every operation that
    raised, that the state is unchanged (AssertionError otherwise) and, after every
    operation, the set's and the space's ``_check()``. Only :class:`PmemsetError` counts
    as an outcome; any other exception propagates. An operation with nothing to act on
    (no part map to remove, a range to occupy that is taken) is ``"skip"``.
    """

    def __init__(self, pset: PmemSet, sources: Sequence[Source], fault_plan: FaultPlan | None = None) -> None:
        if not sources:
            raise ValueError("OperationRunner needs at least one source")
        self.pset = pset
        self.space = pset.address_space
        self.sources = list(sources)
        self.plan = fault_plan if fault_plan is not None else pset.fault_plan
        self.executor = Executor(pset, self.sources, self.plan)

    def _desc(self, d: PartDescriptor) -> str:
        return f"[{d.addr - self.space.low:#x}, +{d.size:#x})"

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
        value = op if isinstance(op, o.Operation) else op.lower(self.space.page_size)
        if isinstance(op, Occupy):  # the shorthand skips a range that is taken
            d = self.executor.target(op.index)
            size = op.pages * self.space.page_size
            if d is None or not self.space.is_free(d.end, size) or d.end + size > self.space.high:
                return "skip"
        index = value.map if isinstance(value, o.RemovePartMap) else None
        if isinstance(index, int) and self.executor.target(index) is None:  # nothing to remove
            return "skip"
        result = self.executor.run(value)
        if isinstance(result, PartDescriptor):
            return "ok " + self._desc(result)
        if isinstance(value, o.Read) and isinstance(result, bytes):
            return "ok " + result.hex()
        return "ok"
