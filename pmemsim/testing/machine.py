"""PmemsetStateMachine: a hypothesis rule-based machine driving one set through the whole API.

Every rule predicts its outcome with a reference model (:mod:`pmemsim.testing._model`,
a second plain implementation of the part_map algorithm), makes the real call, and compares:
the error code or the returned descriptor, the fault sites that fired, the events.
A call that fails must leave a :func:`~pmemsim.testing.ops.snapshot` of the state
unchanged and emit no event. Invariants, checked after every step:

* the set's and the space's own ``_check()``;
* first/next iteration yields the descriptors in address order, equal to the model's;
* part maps never overlap and each lies inside one of the set's reservations;
* the space's reservations and occupied ranges are the model's; a configured
  reservation keeps its address and size;
* the coalescing anchor and the effective granularity are the model's;
* every file holds the bytes the model expects, and reading every part map returns
  the last bytes written there.

Use it as is (``TestPmemset = PmemsetStateMachine.TestCase``) or subclass it: set
``backend`` to another backend's name (or override :meth:`make_space`), change
``page_size`` / ``file_pages`` / ``space_pages``, and add rules of your own that use ``self.pset`` (and keep
``self.model`` up to date through :meth:`expect_write` when they store bytes).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from pmemsim.addrspace.backends import SpaceOptions, make_address_space
from pmemsim.addrspace.base import AddressSpace, RangeOccupied
from pmemsim.config import Config
from pmemsim.enums import Coalescing, Granularity, SourceFlags
from pmemsim.errors import ErrorCode, PmemsetError, code_name
from pmemsim.events import Event, PartAddEvent, PartRemoveEvent
from pmemsim.faults import FaultPlan, FaultSite
from pmemsim.pmemset import Part, PartDescriptor, PartMap, PmemSet
from pmemsim.source import Source
from pmemsim.testing import operations as o
from pmemsim.testing import strategies as pst
from pmemsim.testing._model import FileModel, MapModel, Prediction, RsvModel, SetModel
from pmemsim.testing.operations import Addr
from pmemsim.testing.ops import Executor, Snapshot, snapshot

__all__ = ["PmemsetStateMachine"]

T = TypeVar("T")

_FAILED = object()

#: Where in the space a memory operation or removal goes: (part map index, offset from its start).
_where = st.tuples(st.integers(0, 7), st.one_of(st.integers(0, 3), st.integers(-2, 18)))
_valid_flags = pst.mem_flags()
# Part offsets and lengths as (kind, n), weighted towards parts that map: "pages" (n pages),
# "whole" (length 0), "bytes" (any byte count, mostly unaligned) or "huge" (above INT64_MAX).
_offset_spec = st.tuples(st.sampled_from(["pages"] * 6 + ["bytes", "huge"]), st.integers(0, 1 << 64))
_length_spec = st.tuples(st.sampled_from(["pages"] * 6 + ["whole", "bytes"]), st.integers(0, 1 << 64))


def _has_maps(machine: PmemsetStateMachine) -> bool:
    return machine.pset is not None and bool(machine.model.maps)


def _resolve(spec: tuple[str, int], page: int, low: int, high: int) -> int:
    """A byte count from a drawn ``(kind, n)``: ``low..high`` pages, 0, any bytes below, or huge."""
    kind, n = spec
    if kind == "pages":
        return (low + n % (high - low + 1)) * page
    if kind == "whole":
        return 0
    if kind == "bytes":
        return n % ((high + 1) * page)
    return pst.INT64_MAX + 1 + n % (1 << 63)


def _describe(error: ErrorCode | type[Exception] | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, type):
        return error.__name__
    return code_name(error)


class _SourceModel:
    def __init__(self, source: Source, file: FileModel, grows: bool, key: str) -> None:
        self.key = key  # the name operations give it
        self.source = source
        self.file = file
        self.grows = grows


class _PartModel:
    def __init__(self, src: _SourceModel, offset: int, length: int) -> None:
        self.src = src
        self.offset = offset
        self.length = length
        self.consumed = False
        self.deleted = False


class PmemsetStateMachine(RuleBasedStateMachine):
    """Drives one :class:`~pmemsim.PmemSet` through every API call, fault and layout change.

    Class attributes choose and size the world: ``backend`` (a name of
    :data:`pmemsim.addrspace.BACKENDS`, default ``"sim"``), ``page_size`` (bytes; small
    pages keep files small),
    ``file_pages`` (size of each regular file), ``space_pages`` (how big the address space
    is, so exhaustion is reachable). Attributes available to subclass rules: ``space``,
    ``pset`` (None until the machine's ``initialize`` ran), ``plan``, ``model``,
    ``directory``.
    """

    backend: ClassVar[str] = "sim"
    page_size: ClassVar[int] = 256
    file_pages: ClassVar[int] = 16
    space_pages: ClassVar[int] = 256

    parts = Bundle("parts")
    part_maps = Bundle("part_maps")

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="pmemsim-machine-")
        self.space: AddressSpace = self.make_space()
        self.plan = FaultPlan()
        self.pset: PmemSet | None = None
        self.model = SetModel(
            page_size=self.space.page_size,
            low=self.space.low,
            high=self.space.high,
            placement=self.space.placement,
            granularity=Granularity.PAGE,
            supported=self.space.supported_granularities,
        )
        self.events: list[Event] = []
        self.sources: list[_SourceModel] = []
        self.base_sources: list[_SourceModel] = []
        self.part_models: dict[int, tuple[Part, _PartModel]] = {}
        self.refs: dict[int, tuple[PartMap, MapModel | None]] = {}
        self.configured: tuple[int, int] | None = None
        self.foreign: list[tuple[Any, RsvModel]] = []
        #: Runs the operations the rules draw; parts and references are named in it.
        self.x: Executor | None = None
        self.names: dict[int, str] = {}  # id(part or reference) -> its name in the executor
        self._counter = itertools.count()

    # -- hooks for subclasses --------------------------------------------------------------

    def make_space(self) -> AddressSpace:
        """The address space under test: ``space_pages`` pages of the ``backend`` (default: simulator)."""
        return make_address_space(
            self.backend, SpaceOptions(page_size=self.page_size, size=self.space_pages * self.page_size)
        )

    def expect_write(self, addr: int, data: bytes) -> None:
        """Tell the model about bytes a subclass rule stored through ``self.pset`` at ``addr``."""
        self.model.write(addr, data)

    # -- set-up ------------------------------------------------------------------------------

    @initialize(
        granularity=st.sampled_from([Granularity.PAGE] * 10 + [Granularity.CACHE_LINE, Granularity.BYTE]),
        reservation_pages=st.one_of(st.none(), st.integers(2, 48)),
        devices=st.lists(
            st.sampled_from([Granularity.PAGE] * 4 + [Granularity.CACHE_LINE, Granularity.BYTE]),
            min_size=3,
            max_size=3,
        ),
        unsupported=st.integers(0, 19).map(lambda x: x == 0),
        coalescing=st.sampled_from([Coalescing.NONE, *Coalescing]),
        initial=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 12), st.integers(1, 4)), max_size=6),
    )
    def setup(
        self,
        granularity: Granularity,
        reservation_pages: int | None,
        devices: list[Granularity],
        unsupported: bool,
        coalescing: Coalescing,
        initial: list[tuple[int, int, int]],
    ) -> None:
        """Files (two regular, one growing, one temporary), the set, maybe a configured reservation.

        ``initial`` parts (source, offset pages, length pages) are mapped straight away.
        """
        page = self.space.page_size
        m = self.model
        m.granularity = granularity
        if unsupported:
            self.space.supported_granularities = frozenset(set(Granularity) - {granularity})
        m.supported = self.space.supported_granularities
        files = []
        for i in range(3):
            path = os.path.join(self.directory, f"file{i}.pmem")
            size = self.file_pages * page if i < 2 else 2 * page
            with open(path, "wb") as f:
                f.write(bytes((i * 37 + j) % 251 for j in range(size)))
            with open(path, "rb") as f:
                data = bytearray(f.read())
            self.space.set_device_granularity(path, devices[i])
            files.append((path, FileModel(path, data, devices[i])))
        for i, (path, fm) in enumerate(files):
            src = Source.from_file(path) if i < 2 else Source.xfrom_file(path, SourceFlags.TRUNCATE_IF_NEEDED)
            self.base_sources.append(_SourceModel(src, fm, grows=i == 2, key=f"base{i}"))
        tmp = Source.from_temporary(self.directory)
        self.base_sources.append(
            _SourceModel(tmp, FileModel("<temporary>", bytearray()), grows=True, key="base3")
        )
        self.sources = list(self.base_sources)
        rsv = None
        if reservation_pages is not None:
            expected = m.place(reservation_pages * page)
            rsv = self.space.reserve(reservation_pages * page)
            assert rsv.addr == expected, f"the space placed {rsv} where the model did not ({expected})"
            m.configured = m.reserve(rsv.size, "configured", rsv.addr)
            self.configured = (rsv.addr, rsv.size)
        self.pset = PmemSet(
            Config(
                granularity,
                reservation=rsv,
                event_callback=lambda _pset, event: self.events.append(event),
                address_space=self.space,
                fault_plan=self.plan,
            )
        )
        self.x = Executor(self.pset, {s.key: s.source for s in self.base_sources}, self.plan)
        self.pset.set_contiguous_part_coalescing(coalescing)
        m.coalescing = coalescing
        for source, offset, length in initial:
            self.map_new_part(source, ("pages", offset), ("pages", length - 1))  # n-1 -> n pages

    def teardown(self) -> None:
        """Close everything; the set must give back every reservation it made."""
        try:
            if self.pset is not None:
                own = [r for r in self.pset.reservations() if r is not self.pset.reservation]
                self.pset.close()
                assert all(r.released for r in own), "closing the set leaked a reservation"
                self.space._check()
            for s in self.sources:
                s.source.delete()
            self.space.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    @property
    def _set(self) -> PmemSet:
        assert self.pset is not None, "the machine's initialize rule has not run"
        return self.pset

    def _run(self, op: o.Operation) -> Any:
        """Run a drawn operation through the executor."""
        assert self.x is not None, "the machine's initialize rule has not run"
        return self.x.run(op)

    def _name(self, kind: str) -> str:
        return f"{kind}{next(self._counter)}"

    def _at(self, addr: int) -> Addr:
        """``addr`` as an operation's address (relative to the space's low)."""
        return Addr(addr - self.space.low)

    def _ref_op(self, op: o.FirstPartMap | o.NextPartMap | o.PartMapByAddress) -> PartMap | None:
        """Run ``op`` (which names its reference) and return the reference it took, or None."""
        assert op.name is not None and self.x is not None
        self._run(op)
        ref = self.x.refs.get(op.name)
        if ref is not None:
            self.names[id(ref)] = op.name
        return ref

    def _snapshot(self) -> Snapshot:
        parts = [p for p, _ in self.part_models.values()]
        return snapshot(self._set, [s.source for s in self.base_sources], parts)

    def _call(self, what: str, prediction: Prediction, fn: Callable[[], T]) -> T | object:
        """Run ``fn`` and compare with ``prediction``; returns its result, or ``_FAILED``."""
        before = self._snapshot()
        nevents = len(self.events)
        nfired = len(self.plan.fired)
        expected = prediction.error
        try:
            result = fn()
        except PmemsetError as exc:
            assert expected == exc.code, f"{what}: raised {exc} but expected {_describe(expected)}"
            self._after_failure(what, before, nevents, nfired, prediction)
            return _FAILED
        except (ValueError, TypeError) as exc:
            if not (isinstance(expected, type) and isinstance(exc, expected)):
                raise AssertionError(f"{what}: raised {exc!r} but expected {_describe(expected)}") from exc
            self._after_failure(what, before, nevents, nfired, prediction)
            return _FAILED
        assert expected is None, f"{what}: succeeded but expected {_describe(expected)}"
        self._check_fired(what, nfired, prediction)
        return result

    def _check_fired(self, what: str, nfired: int, prediction: Prediction) -> None:
        fired = [f.site for f in self.plan.fired[nfired:]]
        assert fired == prediction.fired, f"{what}: faults fired {fired}, expected {prediction.fired}"
        self.model.armed -= set(fired)

    def _after_failure(
        self, what: str, before: Snapshot, nevents: int, nfired: int, prediction: Prediction
    ) -> None:
        after = self._snapshot()
        assert after == before, f"{what} failed but changed the state:\nbefore {before}\nafter  {after}"
        assert len(self.events) == nevents, f"{what} failed but emitted {self.events[nevents:]}"
        self._check_fired(what, nfired, prediction)

    def _addr(self, where: tuple[int, int]) -> int:
        """An address near part map ``where[0]`` (its start + ``where[1]`` units of a quarter page)."""
        index, units = where
        maps = self.model.maps
        base = maps[index % len(maps)].addr if maps else self.model.low
        return max(0, base + units * self.space.page_size // 4)

    def _range_prediction(self, addr: int, length: int) -> Prediction:
        return Prediction(None if self.model.covered(addr, length) else ErrorCode.CANNOT_FIND_PART_MAP)

    def _new_ref(self, ref: PartMap | None, expected: MapModel | None, what: str) -> Any:
        if expected is None:
            assert ref is None, f"{what} returned {ref!r}, expected None"
            return multiple()
        assert ref is not None, f"{what} returned None, expected the part map at {expected.addr:#x}"
        d = ref.descriptor
        assert (d.addr, d.size) == expected.desc, f"{what} returned {d}, expected {expected.desc}"
        expected.refs += 1
        self.refs[id(ref)] = (ref, expected)
        return ref

    def _ref_model(self, ref: PartMap) -> MapModel | None:
        return self.refs[id(ref)][1]

    # -- parts -----------------------------------------------------------------------------------

    @precondition(lambda self: self.pset is not None)
    @rule(target=parts, source=st.integers(0, 15), offset=_offset_spec, length=_length_spec)
    def new_part(self, source: int, offset: tuple[str, int], length: tuple[str, int]) -> Any:
        """``part_new``: offsets and lengths in pages, unaligned, or huge, from any live source."""
        page = self.space.page_size
        live = [s for s in self.sources if not s.source.deleted]
        src = live[source % len(live)]
        off = _resolve(offset, page, 0, max(0, self.file_pages - 4))
        length_ = _resolve(length, page, 1, 4)
        faults = set(self.model.armed)
        fired = [FaultSite.ALLOC_PART] if FaultSite.ALLOC_PART in faults else []
        prediction = Prediction(ErrorCode.ENOMEM if fired else None, fired)
        op = o.PartNew(name=self._name("part"), source=src.key, offset=off, length=length_)
        part = self._call(
            f"part_new({src.file.name}, {off:#x}, {length_:#x})", prediction, lambda: self._run(op)
        )
        if part is _FAILED:
            return multiple()
        assert isinstance(part, Part)
        self.names[id(part)] = op.name
        self.part_models[id(part)] = (part, _PartModel(src, off, length_))
        return part

    @precondition(lambda self: self.pset is not None)
    @rule(source=st.integers(0, 15), offset=_offset_spec, length=_length_spec)
    def map_new_part(self, source: int, offset: tuple[str, int], length: tuple[str, int]) -> None:
        """``part_new`` then ``part_map`` in one step (keeps the set busy)."""
        part = self.new_part(source, offset, length)
        if isinstance(part, Part):
            self.map_part(part)

    @precondition(lambda self: self.pset is not None)
    @rule(source=st.integers(0, 15), offset=st.integers(0, 12), length=st.integers(1, 4))
    def map_well_formed_part(self, source: int, offset: int, length: int) -> None:
        """Map a page-aligned part that fits its file (so sets grow to several part maps)."""
        self.map_new_part(source, ("pages", offset), ("pages", length - 1))  # n-1 -> n pages

    @rule(part=parts)
    def map_part(self, part: Part) -> None:
        """``part_map``: the model predicts the error or the descriptor."""
        pm = self.part_models[id(part)][1]
        what = f"part_map(part of {pm.src.file.name} at {pm.offset:#x} length {pm.length:#x})"
        if pm.consumed or pm.deleted:
            prediction = Prediction(ErrorCode.PART_NOT_FOUND)
        elif pm.src.source.deleted:
            prediction = Prediction(ValueError)
        else:
            prediction = self.model.predict_map(pm.src.file, pm.src.grows, pm.offset, pm.length)
        nevents = len(self.events)
        desc = self._call(what, prediction, lambda: self._run(o.MapPart(part=self.names[id(part)])))
        if desc is _FAILED:
            assert part.consumed == pm.consumed, f"{what} failed but consumed the part"
            return
        assert isinstance(desc, PartDescriptor) and prediction.apply is not None
        expected = prediction.apply()
        assert (desc.addr, desc.size) == expected, f"{what} returned {desc}, the model expected {expected}"
        assert part.consumed
        pm.consumed = True
        new = self.events[nevents:]
        assert new == [PartAddEvent(desc.addr, desc.size, pm.src.source)], f"{what}: events {new}"

    @rule(part=parts)
    def delete_part(self, part: Part) -> None:
        """``part_delete``."""
        self._run(o.DeletePart(part=self.names[id(part)]))
        self.part_models[id(part)][1].deleted = True

    @precondition(lambda self: self.pset is not None)
    @rule(
        file=st.integers(0, 2),
        flags=st.sampled_from([0, SourceFlags.TRUNCATE_IF_NEEDED]),
        delete=st.integers(0, 15) | st.none(),
    )
    def open_or_delete_source(self, file: int, flags: int, delete: int | None) -> None:
        """Open another source on a file (``alloc.source`` may be armed), or delete one opened so.

        Mappings made from a deleted source stay valid; parts of it can no longer be mapped.
        """
        if delete is not None:
            extra = [s for s in self.sources if s not in self.base_sources and not s.source.deleted]
            if extra:
                extra[delete % len(extra)].source.delete()
            return
        base = self.base_sources[file]
        fired = [FaultSite.ALLOC_SOURCE] if FaultSite.ALLOC_SOURCE in self.model.armed else []
        prediction = Prediction(ErrorCode.ENOMEM if fired else None, fired)
        assert base.source.path is not None
        path = base.source.path
        src = self._call(
            f"xfrom_file({path}, {flags})",
            prediction,
            lambda: Source.xfrom_file(path, flags, fault_plan=self.plan),
        )
        if src is not _FAILED:
            assert isinstance(src, Source) and self.x is not None
            key = self._name("source")
            self.x.sources[key] = src
            self.sources.append(_SourceModel(src, base.file, grows=bool(flags), key=key))

    # -- coalescing and granularity ------------------------------------------------------------------

    @precondition(lambda self: self.pset is not None)
    @rule(mode=st.sampled_from([Coalescing.NONE, *Coalescing, Coalescing.NONE, *Coalescing, -1, 3]))
    def set_coalescing(self, mode: int) -> None:
        """``set_contiguous_part_coalescing``, sometimes with an invalid value."""
        valid = mode in {c.value for c in Coalescing}
        prediction = Prediction(None if valid else ErrorCode.INVALID_COALESCING_VALUE)
        if (
            self._call(f"set_coalescing({mode})", prediction, lambda: self._run(o.SetCoalescing(mode=mode)))
            is not _FAILED
        ):
            self.model.coalescing = Coalescing(mode)

    # -- part map references -------------------------------------------------------------------------

    @precondition(lambda self: self.pset is not None)
    @rule(target=part_maps)
    def first_part_map(self) -> Any:
        """``first_part_map``."""
        ref = self._ref_op(o.FirstPartMap(name=self._name("ref")))
        return self._new_ref(ref, self.model.maps[0] if self.model.maps else None, "first_part_map()")

    @rule(target=part_maps, ref=part_maps)
    def next_part_map(self, ref: PartMap) -> Any:
        """``next_part_map`` (ValueError on a dropped reference)."""
        rec = self._ref_model(ref)
        op = o.NextPartMap(map=self.names[id(ref)], name=self._name("ref"))
        if rec is None:
            self._call("next_part_map(dropped)", Prediction(ValueError), lambda: self._run(op))
            return multiple()
        i = self.model.maps.index(rec)
        nxt = self.model.maps[i + 1] if i + 1 < len(self.model.maps) else None
        return self._new_ref(self._ref_op(op), nxt, "next_part_map()")

    @precondition(_has_maps)
    @rule(target=part_maps, where=_where)
    def part_map_by_address(self, where: tuple[int, int]) -> Any:
        """``part_map_by_address`` (CANNOT_FIND_PART_MAP outside the part maps)."""
        addr = self._addr(where)
        rec = self.model.map_at(addr)
        prediction = Prediction(None if rec is not None else ErrorCode.CANNOT_FIND_PART_MAP)
        op = o.PartMapByAddress(addr=self._at(addr), name=self._name("ref"))
        ref = self._call(f"part_map_by_address({addr:#x})", prediction, lambda: self._ref_op(op))
        if ref is _FAILED:
            return multiple()
        assert isinstance(ref, PartMap)
        return self._new_ref(ref, rec, f"part_map_by_address({addr:#x})")

    @rule(ref=consumes(part_maps))
    def drop(self, ref: PartMap) -> None:
        """``part_map_drop`` (ValueError when already dropped)."""
        rec = self._ref_model(ref)
        prediction = Prediction(ValueError if rec is None else None)
        if (
            self._call("drop()", prediction, lambda: self._run(o.Drop(map=self.names[id(ref)])))
            is not _FAILED
        ):
            assert rec is not None
            rec.refs -= 1
            self.refs[id(ref)] = (ref, None)

    @rule()
    def drop_all(self) -> None:
        """Drop every reference still held (so removals are no longer refused)."""
        for ref, rec in list(self.refs.values()):
            if rec is not None:
                self._run(o.Drop(map=self.names[id(ref)]))
                rec.refs -= 1
                self.refs[id(ref)] = (ref, None)

    @rule(ref=part_maps)
    def remove_part_map(self, ref: PartMap) -> None:
        """``remove_part_map`` (USE_AFTER_DROP while another reference is held)."""
        rec = self._ref_model(ref)
        op = o.RemovePartMap(map=self.names[id(ref)])
        if rec is None:
            self._call("remove_part_map(dropped)", Prediction(ValueError), lambda: self._run(op))
            return
        prediction = self.model.predict_remove_part_map(rec)
        nevents = len(self.events)
        if self._call(f"remove_part_map({rec.desc})", prediction, lambda: self._run(op)) is _FAILED:
            return
        assert prediction.apply is not None
        desc = prediction.apply()
        assert isinstance(desc, tuple)
        addr, size = desc
        self.refs[id(ref)] = (ref, None)
        assert ref.dropped
        assert self.events[nevents:] == [PartRemoveEvent(addr, size)], self.events[nevents:]

    @precondition(_has_maps)
    @rule(where=_where, length=st.integers(0, 24))
    def remove_range(self, where: tuple[int, int], length: int) -> None:
        """``remove_range`` over (parts of) part maps, gaps, or nothing."""
        addr = self._addr(where)
        length = length * self.space.page_size // 4
        prediction = self.model.predict_remove_range(addr, length)
        nevents = len(self.events)
        what = f"remove_range({addr:#x}, {length:#x})"
        op = o.RemoveRange(addr=self._at(addr), length=length)
        if self._call(what, prediction, lambda: self._run(op)) is _FAILED:
            return
        assert prediction.apply is not None
        removed = prediction.apply()
        got = [(e.addr, e.len) for e in self.events[nevents:] if isinstance(e, PartRemoveEvent)]
        assert got == removed, f"{what}: PART_REMOVE events {got}, expected {removed}"

    @precondition(lambda self: self.pset is not None and len(self.model.maps) >= 2)
    @rule(by_range=st.booleans())
    def remove_anchor(self, by_range: bool) -> None:
        """Remove the coalescing anchor (the part map last mapped into), so the anchor must move."""
        anchor = self.model.anchor
        assert anchor is not None
        if by_range:
            self.remove_range((self.model.maps.index(anchor), 0), 1)
            return
        ref = self._ref_op(o.PartMapByAddress(addr=self._at(anchor.addr), name=self._name("ref")))
        assert ref is not None, "the anchor's address is in no part map"
        self._new_ref(ref, anchor, "part_map_by_address(anchor)")
        self.remove_part_map(ref)
        if not ref.dropped:  # refused: other references are held
            self.drop(ref)

    # -- memory --------------------------------------------------------------------------------------

    def _flags_prediction(self, flags: int, addr: int, length: int) -> Prediction:
        if flags & ~0x3F:
            return Prediction(ValueError)
        return self._range_prediction(addr, length)

    @precondition(_has_maps)
    @rule(
        where=_where,
        data=st.binary(min_size=0, max_size=80),
        flags=st.one_of(_valid_flags, st.none(), st.just(1 << 9)),
    )
    def memcpy(self, where: tuple[int, int], data: bytes, flags: int | None) -> None:
        """``memcpy`` (``flags`` None: a plain ``write``) into, across or outside part maps."""
        addr = self._addr(where)
        op: o.Operation
        if flags is None:
            prediction = self._range_prediction(addr, len(data))
            what, op = f"write({addr:#x}, {len(data)} B)", o.Store(addr=self._at(addr), data=data)
        else:
            prediction = self._flags_prediction(flags, addr, len(data))
            what = f"memcpy({addr:#x}, {len(data)} B, {flags:#x})"
            op = o.Memcpy(addr=self._at(addr), data=data, flags=flags)
        if self._call(what, prediction, lambda: self._run(op)) is not _FAILED:
            self.model.write(addr, data)

    @precondition(_has_maps)
    @rule(where=_where, value=st.integers(0, 255), length=st.integers(0, 300), flags=_valid_flags)
    def memset(self, where: tuple[int, int], value: int, length: int, flags: int) -> None:
        """``memset``."""
        addr = self._addr(where)
        prediction = self._flags_prediction(flags, addr, length)
        if (
            self._call(
                f"memset({addr:#x}, {value}, {length})",
                prediction,
                lambda: self._run(o.Memset(addr=self._at(addr), value=value, length=length, flags=flags)),
            )
            is not _FAILED
        ):
            self.model.write(addr, bytes([value]) * length)

    @precondition(_has_maps)
    @rule(dest=_where, src=_where, length=st.integers(0, 300), flags=_valid_flags)
    def memmove(self, dest: tuple[int, int], src: tuple[int, int], length: int, flags: int) -> None:
        """``memmove`` between addresses of the set (ranges may overlap)."""
        d, s = self._addr(dest), self._addr(src)
        ok = self.model.covered(s, length) and self.model.covered(d, length)
        prediction = Prediction(None if ok else ErrorCode.CANNOT_FIND_PART_MAP)
        data = self.model.read(s, length) if ok else b""
        if (
            self._call(
                f"memmove({d:#x}, {s:#x}, {length})",
                prediction,
                lambda: self._run(o.Memmove(dest=self._at(d), src=self._at(s), length=length, flags=flags)),
            )
            is not _FAILED
        ):
            self.model.write(d, data)

    @precondition(_has_maps)
    @rule(where=_where, length=st.integers(0, 300))
    def read(self, where: tuple[int, int], length: int) -> None:
        """``read`` returns the last bytes written."""
        addr = self._addr(where)
        got = self._call(
            f"read({addr:#x}, {length})",
            self._range_prediction(addr, length),
            lambda: self._run(o.Read(addr=self._at(addr), length=length)),
        )
        if got is not _FAILED:
            expected = self.model.read(addr, length)
            assert got == expected, f"read({addr:#x}, {length}) = {got!r}, expected {expected!r}"

    @precondition(_has_maps)
    @rule(
        where=_where,
        length=st.integers(0, 300),
        how=st.sampled_from(["flush", "persist", "deep_flush", "drain"]),
    )
    def flush(self, where: tuple[int, int], length: int, how: str) -> None:
        """``flush``, ``persist``, ``deep_flush`` (``flush.deep`` may be armed) or ``drain``."""
        if how == "drain":
            self._run(o.Drain())
            return
        addr = self._addr(where)
        prediction = self._range_prediction(addr, length)
        if how == "deep_flush" and prediction.error is None and FaultSite.FLUSH_DEEP in self.model.armed:
            prediction = Prediction(ErrorCode.DEEP_FLUSH_FAIL, [FaultSite.FLUSH_DEEP])
        kind = {"flush": o.Flush, "persist": o.Persist, "deep_flush": o.DeepFlush}[how]
        op = kind(addr=self._at(addr), length=length)
        self._call(f"{how}({addr:#x}, {length})", prediction, lambda: self._run(op))

    # -- the world around the set ---------------------------------------------------------------------

    @precondition(lambda self: self.pset is not None)
    @rule(where=_where, pages=st.integers(1, 4), how=st.sampled_from(["after_anchor"] * 3 + ["near", "free"]))
    def occupy(self, where: tuple[int, int], pages: int, how: str) -> None:
        """A foreign mapping right after the coalescing anchor or near a part map; or free one."""
        m = self.model
        if how == "free":
            if m.occupied:
                addr, _size = m.occupied.pop(where[0] % len(m.occupied))
                self._run(o.Free(addr=self._at(addr)))
            return
        after_anchor = how == "after_anchor"
        size = pages * self.space.page_size
        if after_anchor and m.anchor is not None:
            addr = m.anchor.end
        else:
            addr = self._addr(where) // self.space.page_size * self.space.page_size
        if addr < m.low or addr + size > m.high:
            return
        if not m.space_is_free(addr, addr + size):
            try:
                self._run(o.Occupy(addr=self._at(addr), size=size))
            except RangeOccupied:
                return
            raise AssertionError(f"occupy({addr:#x}, {size:#x}) succeeded on a range the model says is taken")
        self._run(o.Occupy(addr=self._at(addr), size=size))
        m.occupied.append((addr, size))

    @precondition(lambda self: self.pset is not None)
    @rule(pages=st.integers(1, 8), release=st.integers(0, 15) | st.none())
    def reserve_foreign(self, pages: int, release: int | None) -> None:
        """Another user's reservation, placed by the space's policy; or release one."""
        if release is not None:
            if self.foreign:
                rsv, rm = self.foreign.pop(release % len(self.foreign))
                self.space.release(rsv)
                self.model.rsvs.remove(rm)
            return
        size = pages * self.space.page_size
        addr = self.model.place(size)
        if addr is None:
            return
        rsv = self.space.reserve(size)
        assert rsv.addr == addr, f"reserve({size:#x}) placed at {rsv.addr:#x}, the model expected {addr:#x}"
        self.foreign.append((rsv, self.model.reserve(size, "foreign", addr)))

    @precondition(lambda self: self.pset is not None)
    @rule(site=st.sampled_from(list(FaultSite)))
    def inject_fault(self, site: FaultSite) -> None:
        """Arm a fault: the next hit of ``site`` fails."""
        self._run(o.ArmFault(site=site.value))
        self.model.armed.add(site)

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        """The set's and the space's own consistency checks."""
        if self.pset is None:
            return
        self.pset._check()
        self.space._check()

    @invariant()
    def iteration_matches_descriptors(self) -> None:
        """first/next yields every part map in address order, as the model has them."""
        if self.pset is None:
            return
        seen: list[PartDescriptor] = []
        ref = self.pset.first_part_map()
        while ref is not None:
            seen.append(ref.descriptor)
            nxt = self.pset.next_part_map(ref)
            ref.drop()
            ref = nxt
        assert seen == self.pset.descriptors(), (
            f"first/next gave {seen}, descriptors() {self.pset.descriptors()}"
        )
        expected = [m.desc for m in self.model.maps]
        assert [(d.addr, d.size) for d in seen] == expected, (
            f"part maps {seen}, the model expected {expected}"
        )
        for a, b in itertools.pairwise(seen):
            assert a.end <= b.addr, f"part maps {a} and {b} overlap"

    @invariant()
    def part_maps_inside_reservations(self) -> None:
        """Each part map lies in one of the set's reservations; the space holds what the model holds."""
        if self.pset is None:
            return
        rsvs = self.pset.reservations()
        for d in self.pset.descriptors():
            assert any(r.addr <= d.addr and d.end <= r.end for r in rsvs), f"{d} is outside {rsvs}"
        got = sorted((r.addr, r.end) for r in self.space.reservations())
        expected = sorted((r.addr, r.end) for r in self.model.rsvs)
        assert got == expected, f"reservations {got}, the model expected {expected}"
        occ = sorted((o.addr, o.size) for o in self.space.occupied())
        assert occ == sorted(self.model.occupied), f"occupied {occ}, expected {sorted(self.model.occupied)}"
        if self.configured is not None:
            rsv = self.pset.reservation
            assert rsv is not None and not rsv.released
            assert (rsv.addr, rsv.size) == self.configured, f"configured reservation changed to {rsv}"

    @invariant()
    def anchor_and_granularity(self) -> None:
        """The coalescing anchor, mode and effective granularity are the model's."""
        if self.pset is None:
            return
        a = self.pset.coalescing_anchor
        expected = self.model.anchor.desc if self.model.anchor is not None else None
        assert (None if a is None else (a.addr, a.size)) == expected, f"anchor {a}, expected {expected}"
        assert self.pset.coalescing == self.model.coalescing
        try:
            eff: Granularity | None = self.pset.get_store_granularity()
        except PmemsetError as exc:
            assert exc.code == ErrorCode.NO_PART_MAPPED, exc
            eff = None
        assert eff == self.model.effective, f"effective granularity {eff}, expected {self.model.effective}"

    @invariant()
    def bytes_match_the_model(self) -> None:
        """Files hold the expected bytes; reading every part map returns the last bytes written."""
        if self.pset is None:
            return
        for s in self.base_sources:
            if s.source.path is not None:
                with open(s.source.path, "rb") as f:
                    data = f.read()
                assert data == bytes(s.file.data), f"{s.file.name}: content differs from the model"
            size = s.source.size()
            assert size == len(s.file.data), f"{s.file.name}: size {size}, expected {len(s.file.data)}"
        for m in self.model.maps:
            got = self.pset.read(m.addr, m.end - m.addr)
            assert got == self.model.read(m.addr, m.end - m.addr), f"part map {m.desc}: bytes differ"
