"""PmemSet: parts, part maps and the ``pmemset_part_map`` algorithm (docs/design.md).

Rule 1: everything that decides where a part goes and what a set holds lives here,
written once for every backend. This module never calls mmap, ctypes or the file
system itself: it asks the address space (reserve / extend / shrink / map / unmap /
read / write / flush) and the source (size / truncate) and converts their failures
into libpmemset's documented errors at the seam.

Rule 2: a failed call changes nothing. ``part_map`` records an undo action for every
step that changed something and runs them in reverse when a later step fails;
every other mutating call checks everything before it changes anything. Removal
hands all the mappings it takes away to the address space in one
``unmap_many``, which the backend does completely or not at all, and the set's
records change only after it succeeded. A memcpy / memmove / memset whose flush fails
(an msync error) puts the bytes it stored back and records nothing.

Rule 3 (threads): a set may be shared by threads. Every public call holds the lock of
the set's address space (one reentrant lock per space, shared by every set on it), so
calls run one at a time and an event callback may call back into the set.

Rule 4 (events): events that announce an operation (COPY, MOVE, SET, FLUSH, DRAIN,
PERSIST) are delivered before it; an exception from the callback propagates and the
operation does not happen. PART_ADD and PART_REMOVE are delivered after the change
committed: an ``Exception`` from the callback then cannot undo it, so the call still
returns normally; the exception is kept in :attr:`PmemSet.callback_errors` and logged
(logger ``pmemsim``) instead of turning a done call into a failure.

OS faults: every public call activates the set's fault plan for the system calls it
makes (see :mod:`pmemsim._files`), so the plan's ``os.*`` sites count this set's calls.
"""

from __future__ import annotations

import bisect
import contextlib
import errno as _errno
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from pmemsim import _files
from pmemsim._files import OpenFile
from pmemsim._recording import Piece, SetRecording
from pmemsim.addrspace.base import (
    AddressSpace,
    AddressSpaceError,
    MapFailed,
    Mapping,
    OutOfAddressSpace,
    RangeOccupied,
    Reservation,
)
from pmemsim.config import Config, EventCallback
from pmemsim.enums import Coalescing, Granularity, MemFlags
from pmemsim.errors import ErrorCode, PmemsetError, surfaced, surfaces
from pmemsim.events import (
    CopyEvent,
    DrainEvent,
    Event,
    FlushEvent,
    MoveEvent,
    PartAddEvent,
    PartRemoveEvent,
    PersistEvent,
    SetEvent,
)
from pmemsim.faults import SITE_ERRORS, FaultPlan, FaultSite
from pmemsim.parts import (
    Part,
    PartDescriptor,
    PartMap,
    PartMapRecord,
    RecordIndex,
    as_bytes,
    consume,
    flags_arg,
    record_of,
    size_arg,
    take,
)
from pmemsim.source import Source

if TYPE_CHECKING:
    from types import TracebackType

    from pmemsim.persistence.log import StoreLog

__all__ = ["Part", "PartDescriptor", "PartMap", "PmemSet"]

INT64_MAX = (1 << 63) - 1

_log = logging.getLogger("pmemsim")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _api(method: Callable[Concatenate[PmemSet, _P], _R]) -> Callable[Concatenate[PmemSet, _P], _R]:
    """A public call: hold the space's lock, activate the set's plan for OS calls, and
    report an escaping PmemsetError as an error path reached (:func:`~pmemsim.errors.surfaced`)."""

    def call(self: PmemSet, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            token = _files.set_plan(self._plan)
            try:
                return method(self, *args, **kwargs)
            except PmemsetError as exc:
                surfaced(exc)
                raise
            finally:
                _files.reset_plan(token)

    functools.update_wrapper(call, method)
    return call


@dataclass(frozen=True)
class _Placement:
    reservation: Reservation
    addr: int
    grows: PartMapRecord | None  # coalescing: the part map that grows


def _undo_all(actions: list[Callable[[], None]]) -> None:
    """Run every undo action, newest first, even when one of them fails.

    The undo runs outside the fault plan: a plan fails the call under test at a chosen
    hit, and a failed call must leave the set as it found it (a rollback cut short by
    the same plan would leave a reservation behind that no real kernel leaves: unmapping
    what was just mapped does not fail).
    """
    with _files.active_plan(None):
        for action in reversed(actions):
            # An OS refusal while undoing must not stop the rest of the undo, nor hide
            # the error that made us undo.
            with contextlib.suppress(AddressSpaceError, OSError, ValueError):
                action()


def _release_everything(
    space: AddressSpace,
    maps: RecordIndex,
    own: dict[int, Reservation],
    lock: threading.RLock,
    plan: FaultPlan,
) -> None:
    """Unmap every part map and release the set's own reservations (close and GC).

    The set's own plan counts the system calls, also when a garbage collection in the
    middle of another set's call runs this.
    """
    with lock, _files.active_plan(plan):
        _release_locked(space, maps, own)


def _release_locked(space: AddressSpace, maps: RecordIndex, own: dict[int, Reservation]) -> None:
    for rec in list(maps):
        # All of a part map's pieces in one go: one system call for a coalesced run
        # (piece by piece, each in the middle of a merged VMA, could hit vm.max_map_count).
        # A refusal leaves the mappings to the space (its bookkeeping still agrees with
        # the kernel); the space's close takes them down.
        with contextlib.suppress(AddressSpaceError, OSError, ValueError):
            space.unmap_many(rec.mappings)
        for m in rec.mappings:
            file = m.file
            if isinstance(file, OpenFile):
                file.release()
    maps.clear()
    for rsv in list(own.values()):
        with contextlib.suppress(AddressSpaceError, OSError, ValueError):
            space.release(rsv)
    own.clear()


class PmemSet:
    """A set of part maps (``struct pmemset``). Use as a context manager or call :meth:`close`.

    Threads may share a set: each call holds the lock of the set's address space (the
    calls of every set on that space run one at a time; an event callback may call
    back into the set). Raises PmemsetError GRANULARITY_NOT_SET when the config has no
    granularity.
    """

    @surfaces
    def __init__(self, config: Config) -> None:
        if not isinstance(config, Config):
            raise TypeError(f"PmemSet needs a Config, not {type(config).__name__}")
        if config.granularity is None:
            raise PmemsetError(ErrorCode.GRANULARITY_NOT_SET, "the config has no required store granularity")
        space = config.address_space
        rsv = config.reservation
        if space is None:
            space = rsv.space if rsv is not None else _default_space()
        if rsv is not None:
            if not space.owns(rsv):
                raise ValueError(f"{rsv!r} is not a live reservation of the config's address space")
            if rsv.set_owned:
                raise ValueError(f"{rsv!r} belongs to another PmemSet; reserve one with space.reserve()")
        self._space: AddressSpace = space
        self._granularity: Granularity = config.granularity
        self._reservation: Reservation | None = rsv
        self._callback: EventCallback | None = config.event_callback
        self._plan: FaultPlan = config.fault_plan if config.fault_plan is not None else FaultPlan()
        self._coalescing = Coalescing.NONE
        self._maps = RecordIndex()
        self._own_rsvs: dict[int, Reservation] = {}  # id(rsv) -> rsv
        self._anchor: PartMapRecord | None = None
        self._effective: Granularity | None = None
        self._closed = False
        self._recording: SetRecording | None = None
        #: Exceptions raised by the event callback for PART_ADD / PART_REMOVE (after the
        #: change committed), oldest first, as ``(event, exception)``.
        self.callback_errors: list[tuple[Event, Exception]] = []
        self._flush_may_fail: bool = space.flush_may_fail
        self._lock: threading.RLock = space.lock
        self._finalizer = weakref.finalize(
            self, _release_everything, space, self._maps, self._own_rsvs, self._lock, self._plan
        )

    # -- life cycle -------------------------------------------------------------------------

    @property
    def address_space(self) -> AddressSpace:
        """The backend the set maps parts in."""
        return self._space

    @property
    def fault_plan(self) -> FaultPlan:
        """The fault plan consulted by this set (an empty one when the config had none)."""
        return self._plan

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @_api
    def close(self) -> None:
        """Unmap everything and release the set's reservations (``pmemset_delete``)."""
        if self._closed:
            return
        self._closed = True
        self._anchor = None
        self._finalizer()

    def __enter__(self) -> PmemSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._maps)} part map(s)"
        return f"<PmemSet {state} coalescing={self._coalescing.name}>"

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this PmemSet was closed")

    def _fault(self, site: FaultSite, what: str) -> None:
        fault = self._plan.hit(site)
        if fault is not None:
            raise PmemsetError(
                SITE_ERRORS[site],
                f"{what} (injected fault at {site.value}, hit {fault.hit})",
                os_errno=fault.errno,
            )

    def _emit(self, event: Event) -> None:
        if self._callback is not None:
            self._callback(self, event)

    def _emit_committed(self, event: Event) -> None:
        """Deliver an event about a change already made: the callback cannot fail the call."""
        if self._callback is None:
            return
        try:
            self._callback(self, event)
        except Exception as exc:
            self.callback_errors.append((event, exc))
            _log.warning("the event callback raised %r for %r after the change was made", exc, event)

    # -- parts --------------------------------------------------------------------------------

    @_api
    def part_new(self, source: Source, offset: int = 0, length: int = 0) -> Part:
        """A part of ``source`` starting at ``offset``; ``length`` 0 = to the end of the source.

        Nothing is checked against the file until :meth:`part_map`. Raises -ENOMEM when
        the ``alloc.part`` fault fires, TypeError / ValueError for bad arguments.
        """
        self._check_open()
        if not isinstance(source, Source):
            raise TypeError(f"source must be a Source, not {type(source).__name__}")
        if source.deleted:
            raise ValueError(f"{source!r} was deleted")
        size_arg("offset", offset)
        size_arg("length", length)
        self._fault(FaultSite.ALLOC_PART, "cannot allocate the part")
        return Part(self, source, offset, length)

    def _own_part(self, part: Part) -> None:
        if not isinstance(part, Part):
            raise TypeError(f"expected a Part, not {type(part).__name__}")
        if part.pset is not self:
            raise ValueError(f"{part!r} belongs to another PmemSet")
        if part.consumed or part.deleted:
            raise PmemsetError(
                ErrorCode.PART_NOT_FOUND,
                f"part was already {'consumed by part_map' if part.consumed else 'deleted'}",
            )

    @_api
    def part_map(self, part: Part) -> PartDescriptor:
        """Map ``part`` (``pmemset_part_map``) and consume it; return the part map's descriptor.

        Follows the part_map algorithm of docs/design.md. On failure raises PmemsetError
        with the step's code and leaves the set, the address space, the file and the part
        as they were.
        """
        self._check_open()
        self._own_part(part)
        source = part.source
        file = source.file
        offset = part.offset
        undo: list[Callable[[], None]] = []
        try:
            length = self._step_length(part)
            self._step_truncate(source, offset, length, undo)
            self._fault(FaultSite.ALLOC_CONFIG, "cannot allocate the mapping configuration")
            if offset > INT64_MAX:
                raise PmemsetError(
                    ErrorCode.INVALID_OFFSET_VALUE, f"offset {offset} is larger than INT64_MAX ({INT64_MAX})"
                )
            self._step_granularity()
            place = self._step_place(length, undo)
            if place.grows is None:
                self._fault(FaultSite.ALLOC_PART_MAP, "cannot allocate the part map")
            mapping = self._step_map(place, source, offset, length, undo)
            if self._effective is not None and mapping.granularity != self._effective:
                raise PmemsetError(
                    ErrorCode.GRANULARITY_MISMATCH,
                    f"part has store granularity {mapping.granularity.name} but the set's part maps "
                    f"have {self._effective.name}",
                )
            if self._recording is not None:
                self._track(mapping)  # may refuse (a file shrank while recording)
        except BaseException:
            _undo_all(undo)
            raise
        # Step 10: commit. Nothing below can fail.
        file.acquire()
        if place.grows is not None:
            rec = place.grows
            rec.mappings.append(mapping)
        else:
            rec = PartMapRecord(place.reservation, [mapping], mapping.granularity)
            self._maps.add(rec)
            if place.reservation is not self._reservation:
                place.reservation.set_owned = True
                self._own_rsvs[id(place.reservation)] = place.reservation
        self._anchor = rec
        self._effective = mapping.granularity
        part.consumed = True
        desc = rec.descriptor
        self._emit_committed(PartAddEvent(desc.addr, desc.size, source))
        return desc

    def _track(self, mapping: Mapping) -> None:
        """Register a new mapping's file with the recording (its content is read now)."""
        assert self._recording is not None
        try:
            self._recording.track(mapping)
        except OSError as exc:
            err = exc.errno or _errno.EIO
            raise PmemsetError(-err, f"cannot read the file to record: {exc}", os_errno=err) from exc

    def _step_length(self, part: Part) -> int:
        """Step 1: length 0 means the whole source, at its current size."""
        if part.length:
            return part.length
        size = part.source.size()
        if size == 0:
            raise PmemsetError(
                ErrorCode.INVALID_PMEM2_MAP,
                "length 0 means the whole source, but the source is empty: nothing to map",
            )
        return size

    def _step_truncate(
        self, source: Source, offset: int, length: int, undo: list[Callable[[], None]]
    ) -> None:
        if not source.grows_on_map:
            return
        old = source.size()
        want = offset + length
        if want <= old:
            return
        self._fault(FaultSite.FILE_TRUNCATE, f"cannot grow the source file from {old} to {want} bytes")
        try:
            _files.truncate(source.file.fd, want)
        except (OSError, OverflowError, MemoryError) as exc:
            err = getattr(exc, "errno", None)
            raise PmemsetError(
                ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE,
                f"cannot grow the source file from {old} to offset {offset} + length {length} = {want} bytes",
                os_errno=err if isinstance(err, int) and err > 0 else None,
            ) from exc
        undo.append(lambda: _files.truncate(source.file.fd, old))

    def _step_granularity(self) -> None:
        if self._granularity not in self._space.supported_granularities:
            supported = ", ".join(sorted(g.name for g in self._space.supported_granularities))
            raise PmemsetError(
                ErrorCode.GRANULARITY_NOT_SUPPORTED,
                f"required granularity {self._granularity.name} is not supported by the address "
                f"space (supported: {supported or 'none'})",
            )
        self._fault(FaultSite.CONFIG_GRANULARITY, f"cannot set granularity {self._granularity.name}")

    def _step_place(self, length: int, undo: list[Callable[[], None]]) -> _Placement:
        page = self._space.page_size
        if length % page:
            raise PmemsetError(
                ErrorCode.LENGTH_UNALIGNED,
                f"length {length} is not a multiple of the page size {page}",
            )
        anchor = self._anchor
        if self._coalescing is not Coalescing.NONE and anchor is not None:
            if self._try_coalesce(anchor, length, undo):
                return _Placement(anchor.reservation, anchor.end, anchor)
            if self._coalescing is Coalescing.FULL:
                raise PmemsetError(
                    ErrorCode.CANNOT_COALESCE_PARTS,
                    f"cannot place {length:#x} bytes right after the part map ending at "
                    f"{anchor.end:#x}: [{anchor.end:#x}, {anchor.end + length:#x}) is occupied",
                )
        rsv = self._reservation
        if rsv is not None:
            addr = rsv.first_fit(length)
            if addr is None:
                raise PmemsetError(
                    ErrorCode.CANNOT_FIT_PART_MAP,
                    f"no free range of {length:#x} bytes in the reservation [{rsv.addr:#x}, "
                    f"{rsv.end:#x}) of {rsv.size:#x} bytes",
                )
            return _Placement(rsv, addr, None)
        self._fault(FaultSite.VM_RESERVE, f"cannot reserve {length:#x} bytes of address space")
        try:
            new = self._space.reserve(length)
        except OutOfAddressSpace as exc:
            raise PmemsetError(ErrorCode.ENOMEM, f"cannot reserve {length:#x} bytes: {exc}") from exc
        undo.append(lambda: self._space.release(new))
        return _Placement(new, new.addr, None)

    def _try_coalesce(self, anchor: PartMapRecord, length: int, undo: list[Callable[[], None]]) -> bool:
        rsv = anchor.reservation
        start, end = anchor.end, anchor.end + length
        if rsv is self._reservation:
            # A configured reservation never grows: its end counts as occupied.
            return rsv.is_free(start, length)
        inside = min(end, rsv.end)
        if inside > start and not rsv.is_free(start, inside - start):
            return False
        if end > rsv.end:
            old_size = rsv.size
            grow = end - rsv.end
            try:
                self._space.extend(rsv, grow)
            except RangeOccupied:
                return False
            except OutOfAddressSpace as exc:
                raise PmemsetError(
                    ErrorCode.ENOMEM, f"cannot extend the reservation by {grow:#x} bytes: {exc}"
                ) from exc
            undo.append(lambda: self._space.shrink(rsv, old_size, grow))
        return True

    def _step_map(
        self, place: _Placement, source: Source, offset: int, length: int, undo: list[Callable[[], None]]
    ) -> Mapping:
        page = self._space.page_size
        if offset % page:
            raise PmemsetError(
                ErrorCode.INVALID_PMEM2_MAP, f"offset {offset} is not a multiple of the page size {page}"
            )
        file = source.file
        size = source.size()
        if offset + length > size:
            raise PmemsetError(
                ErrorCode.INVALID_PMEM2_MAP,
                f"the source file has {size} bytes, fewer than offset {offset} + length {length}",
            )
        device = self._space.device_granularity(file)
        if device > self._granularity:
            raise PmemsetError(
                ErrorCode.INVALID_PMEM2_MAP,
                f"the file's device has store granularity {device.name}, coarser than the "
                f"required {self._granularity.name}",
            )
        self._fault(FaultSite.MAP_FILE, f"cannot map {length:#x} bytes at {place.addr:#x}")
        try:
            mapping = self._space.map_file(place.reservation, place.addr, file, offset, length, device)
        except (MapFailed, RangeOccupied) as exc:
            raise PmemsetError(
                ErrorCode.INVALID_PMEM2_MAP,
                f"cannot map {length:#x} bytes at {place.addr:#x}: {exc}",
                os_errno=getattr(exc, "errno", None),
            ) from exc
        undo.append(lambda: self._space.unmap(mapping))
        return mapping

    # -- coalescing and granularity ---------------------------------------------------------

    @property
    def coalescing(self) -> Coalescing:
        """The current contiguous part coalescing mode."""
        return self._coalescing

    @_api
    def set_contiguous_part_coalescing(self, value: Coalescing | int) -> None:
        """Switch coalescing (``pmemset_set_contiguous_part_coalescing``); applies to later maps.

        Raises INVALID_COALESCING_VALUE for an unknown value.
        """
        self._check_open()
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"coalescing must be a Coalescing value, not {type(value).__name__}")
        try:
            self._coalescing = Coalescing(value)
        except ValueError:
            raise PmemsetError(
                ErrorCode.INVALID_COALESCING_VALUE,
                f"coalescing value {value} is not one of "
                + ", ".join(f"{c.name}={c.value}" for c in Coalescing),
            ) from None

    @property
    def coalescing_anchor(self) -> PartDescriptor | None:
        """The part map the next coalesced part would follow (None when there is none)."""
        return None if self._anchor is None else self._anchor.descriptor

    @_api
    def get_store_granularity(self) -> Granularity:
        """The effective store granularity of the set's part maps; NO_PART_MAPPED when empty."""
        self._check_open()
        if self._effective is None:
            raise PmemsetError(ErrorCode.NO_PART_MAPPED, "no part is mapped yet")
        return self._effective

    @property
    def effective_granularity(self) -> Granularity | None:
        """The part maps' store granularity, or None while none is mapped (never raises).

        For introspection: asking :meth:`get_store_granularity` of an empty set creates
        a NO_PART_MAPPED error, which error-path coverage would count as reached.
        """
        return self._effective

    @property
    def required_granularity(self) -> Granularity:
        """The granularity the config required."""
        return self._granularity

    @property
    def reservation(self) -> Reservation | None:
        """The configured reservation, if any."""
        return self._reservation

    # -- iteration and lookup --------------------------------------------------------------

    @_api
    def descriptors(self) -> list[PartDescriptor]:
        """Every part map's descriptor in address order (takes no reference)."""
        return [rec.descriptor for rec in self._maps]

    def __len__(self) -> int:
        return len(self._maps)

    def _record_of(self, pmap: PartMap) -> PartMapRecord:
        return record_of(pmap, self)

    @_api
    def first_part_map(self) -> PartMap | None:
        """A reference to the lowest part map, or None (``pmemset_first_part_map``)."""
        self._check_open()
        rec = self._maps.first()
        return None if rec is None else PartMap(self, rec)

    @_api
    def next_part_map(self, current: PartMap) -> PartMap | None:
        """A reference to the part map after ``current``, or None (``pmemset_next_part_map``)."""
        self._check_open()
        rec = self._record_of(current)
        nxt = self._maps.after(rec.addr)
        return None if nxt is None else PartMap(self, nxt)

    def _find(self, addr: int) -> PartMapRecord | None:
        return self._maps.containing(addr)

    @_api
    def part_map_by_address(self, addr: int) -> PartMap:
        """A reference to the part map containing ``addr``; CANNOT_FIND_PART_MAP if none."""
        self._check_open()
        size_arg("addr", addr)
        rec = self._find(addr)
        if rec is None:
            raise PmemsetError(ErrorCode.CANNOT_FIND_PART_MAP, f"no part map contains address {addr:#x}")
        return PartMap(self, rec)

    # -- removal ---------------------------------------------------------------------------------

    @_api
    def remove_part_map(self, pmap: PartMap) -> None:
        """Unmap a part map (``pmemset_remove_part_map``); the reference becomes dropped.

        Raises PART_MAP_POSSIBLE_USE_AFTER_DROP when another reference is still held.
        """
        self._check_open()
        rec = self._record_of(pmap)
        if rec.refcount > 1:
            raise PmemsetError(
                ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP,
                f"part map [{rec.addr:#x}, {rec.end:#x}) is referenced {rec.refcount} times; "
                "drop the other references first",
            )
        desc = rec.descriptor
        self._unmap_pieces(rec.mappings)
        consume(pmap)
        rec.refcount = 0
        self._forget(rec)
        self._tidy_reservation(rec.reservation)
        self._emit_committed(PartRemoveEvent(desc.addr, desc.size))

    @_api
    def remove_range(self, addr: int, length: int) -> None:
        """Unmap every part that intersects ``[addr, addr+length)`` (``pmemset_remove_range``).

        Whole parts go: a part map shrinks, splits in two or disappears. Raises
        CANNOT_FIND_PART_MAP when nothing is mapped there and
        PART_MAP_POSSIBLE_USE_AFTER_DROP (changing nothing) when an affected part map is
        referenced.
        """
        self._check_open()
        size_arg("addr", addr)
        size_arg("length", length)
        end = addr + length
        affected = self._maps.intersecting(addr, end) if length else []
        if not affected:
            raise PmemsetError(
                ErrorCode.CANNOT_FIND_PART_MAP, f"no part map intersects [{addr:#x}, {end:#x})"
            )
        held = [r for r in affected if r.refcount > 0]
        if held:
            r = held[0]
            raise PmemsetError(
                ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP,
                f"part map [{r.addr:#x}, {r.end:#x}) is still referenced {r.refcount} time(s); "
                "drop it before removing a range of it",
            )
        plan: list[tuple[PartMapRecord, list[Mapping], list[Mapping], list[Mapping]]] = []
        for rec in affected:
            # A part map's mappings are contiguous and sorted: the ones the range touches
            # are one slice, leaving at most a head and a tail.
            ms = rec.mappings
            lo = max(bisect.bisect_right(ms, addr, key=_mapping_addr) - 1, 0)
            hi = bisect.bisect_left(ms, end, key=_mapping_addr)
            plan.append((rec, ms[lo:hi], ms[:lo], ms[hi:]))
        # Every piece of every affected part map in one all-or-nothing unmap: a failure
        # leaves every part map whole.
        self._unmap_pieces([m for _rec, gone, _head, _tail in plan for m in gone])
        for rec, _gone, head, tail in plan:
            if not head and not tail:
                self._forget(rec)
            else:
                # The first remaining run keeps the record (and the anchor role, if it had it).
                self._maps.discard(rec.addr)
                rec.mappings = head or tail
                self._maps.add(rec)
                if head and tail:
                    self._maps.add(PartMapRecord(rec.reservation, tail, rec.granularity))
            self._tidy_reservation(rec.reservation)
        for _rec, gone, _head, _tail in plan:
            self._emit_committed(PartRemoveEvent(gone[0].addr, gone[-1].end - gone[0].addr))

    def _unmap_pieces(self, mappings: list[Mapping]) -> None:
        """Unmap ``mappings`` all together; if the OS refuses, none is unmapped and it is reported.

        Only the real-mmap backend can fail here (laying its arena back over a range);
        it puts back whatever it had unmapped before the error reaches us, so the set's
        records, which the caller updates only after this returns, stay true.
        """
        try:
            self._space.unmap_many(mappings)
        except OSError as exc:
            first, last = min(m.addr for m in mappings), max(m.end for m in mappings)
            raise PmemsetError(
                -(exc.errno or _errno.EIO),
                f"cannot unmap [{first:#x}, {last:#x}): {exc}; nothing was removed",
                os_errno=exc.errno or _errno.EIO,
            ) from exc
        for m in mappings:
            if isinstance(m.file, OpenFile):
                m.file.release()

    def _forget(self, rec: PartMapRecord) -> None:
        """Drop ``rec`` from the set; move the anchor to a neighbour (previous, else next)."""
        self._maps.discard(rec.addr)
        if self._anchor is rec:
            self._anchor = self._maps.before(rec.addr) or self._maps.after(rec.addr)
        if not len(self._maps):
            self._effective = None

    def _tidy_reservation(self, rsv: Reservation) -> None:
        """Shrink one of the set's own reservations to its contents, or release it when empty."""
        if rsv is self._reservation:
            return
        bounds = rsv.content_bounds()
        if bounds is None:
            self._space.release(rsv)
            del self._own_rsvs[id(rsv)]
            return
        lo, hi = bounds
        if hi < rsv.end:
            self._space.shrink(rsv, hi - rsv.addr, rsv.end - hi)
        if lo > rsv.addr:
            self._space.shrink(rsv, 0, lo - rsv.addr)

    # -- memory operations -----------------------------------------------------------------------

    def _check_range(self, addr: int, length: int) -> None:
        """CANNOT_FIND_PART_MAP unless ``[addr, addr+length)`` lies in this set's part maps."""
        size_arg("addr", addr)
        size_arg("length", length)
        cur, end = addr, addr + length
        while True:
            rec = self._find(cur)
            if rec is None:
                raise PmemsetError(
                    ErrorCode.CANNOT_FIND_PART_MAP,
                    f"[{addr:#x}, {end:#x}) is not inside the set's part maps: {cur:#x} is not mapped",
                )
            if rec.end >= end:
                return
            cur = rec.end

    # The backend calls of memory operations, with its failures converted at the seam:
    # a range the backend no longer maps (its space was closed under the set) is
    # CANNOT_FIND_PART_MAP; an OS failure (msync, a file gone bad) is -errno.

    def _space_read(self, addr: int, length: int) -> bytes:
        try:
            return self._space.read(addr, length)
        except (AddressSpaceError, OSError) as exc:
            raise _backend_error(exc, f"read of [{addr:#x}, {addr + length:#x})") from exc

    def _space_write(self, addr: int, data: bytes) -> None:
        try:
            self._space.write(addr, data)
        except (AddressSpaceError, OSError) as exc:
            raise _backend_error(exc, f"store to [{addr:#x}, {addr + len(data):#x})") from exc

    def _space_flush(self, addr: int, length: int) -> None:
        try:
            self._space.flush(addr, length)
        except (AddressSpaceError, OSError) as exc:
            raise _backend_error(exc, f"flush of [{addr:#x}, {addr + length:#x})") from exc

    @_api
    def read(self, addr: int, length: int) -> bytes:
        """The ``length`` bytes at ``addr`` (CANNOT_FIND_PART_MAP outside the part maps)."""
        self._check_open()
        self._check_range(addr, length)
        return self._space_read(addr, length) if length else b""

    @_api
    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Plain stores of ``data`` at ``addr``: no flush, no fence."""
        self._check_open()
        buf = as_bytes(data)
        self._check_range(addr, len(buf))
        if buf:
            self._space_write(addr, buf)
            if self._recording is not None:
                self._recording.store(self._pieces(addr, len(buf)), buf)

    def _store_and_persist(self, addr: int, data: bytes, flags: int) -> None:
        """The stores, flush and fence of memcpy / memmove / memset, as ``flags`` choose.

        NOFLUSH: stores only (it implies NODRAIN). NONTEMPORAL: the stores bypass the
        cache, so no flush is needed before the fence. NODRAIN: no fence.
        """
        rec = self._recording
        if flags & _NOFLUSH:
            if data:
                self._space_write(addr, data)
                if rec is not None:
                    rec.store(self._pieces(addr, len(data)), data)
            return
        if data:
            # The old bytes, to put back should the flush fail: the call then changed nothing.
            old = self._space_read(addr, len(data)) if self._flush_may_fail else None
            self._space_write(addr, data)
            try:
                self._space_flush(addr, len(data))
            except PmemsetError:
                if old is not None:
                    with contextlib.suppress(PmemsetError), _files.active_plan(None):
                        self._space_write(addr, old)
                raise
        if rec is None:
            return
        pieces = self._pieces(addr, len(data)) if data else []
        if flags & _NONTEMPORAL_LIKE:
            rec.store(pieces, data, nontemporal=True)
        else:
            rec.store(pieces, data)
            rec.flush(pieces)
        if not flags & _NODRAIN:
            rec.fence()

    @_api
    def memcpy(
        self,
        dest: int,
        src: bytes | bytearray | memoryview,
        length: int | None = None,
        flags: MemFlags | int = 0,
    ) -> int:
        """Copy ``src`` (its first ``length`` bytes) to ``dest`` and persist it unless ``flags`` say not.

        NOFLUSH skips the flush (and so the drain), NODRAIN skips the drain. Returns ``dest``.
        """
        self._check_open()
        f = flags_arg(flags)
        data = take(as_bytes(src), length)
        self._check_range(dest, len(data))
        if self._callback is not None:
            self._emit(CopyEvent(dest, len(data), MemFlags(f)))
        self._store_and_persist(dest, data, f)
        return dest

    @_api
    def memmove(
        self,
        dest: int,
        src: int | bytes | bytearray | memoryview,
        length: int | None = None,
        flags: MemFlags | int = 0,
    ) -> int:
        """Like memcpy; ``src`` may also be an address inside the set (ranges may overlap)."""
        self._check_open()
        f = flags_arg(flags)
        if isinstance(src, int) and not isinstance(src, bool):
            if length is None:
                raise TypeError("memmove from an address needs a length")
            size_arg("length", length)
            self._check_range(src, length)
            data = self._space_read(src, length) if length else b""
        else:
            data = take(as_bytes(src), length)
        self._check_range(dest, len(data))
        if self._callback is not None:
            self._emit(MoveEvent(dest, len(data), MemFlags(f)))
        self._store_and_persist(dest, data, f)
        return dest

    @_api
    def memset(self, dest: int, value: int, length: int, flags: MemFlags | int = 0) -> int:
        """Fill ``length`` bytes at ``dest`` with the byte ``value`` (0..255) and persist them."""
        self._check_open()
        f = flags_arg(flags)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise ValueError(f"memset value must be a byte (0..255), got {value!r}")
        size_arg("length", length)
        self._check_range(dest, length)
        if self._callback is not None:
            self._emit(SetEvent(dest, value, length, MemFlags(f)))
        self._store_and_persist(dest, bytes([value]) * length, f)
        return dest

    @_api
    def flush(self, addr: int, length: int) -> None:
        """Flush ``[addr, addr+length)`` (durable after the next :meth:`drain`)."""
        self._check_open()
        self._check_range(addr, length)
        self._emit(FlushEvent(addr, length))
        if length:
            self._space_flush(addr, length)
        if self._recording is not None:
            self._recording.flush(self._pieces(addr, length))

    @_api
    def drain(self) -> None:
        """Wait for earlier flushes to complete (a store fence)."""
        self._check_open()
        self._emit(DrainEvent())
        if self._recording is not None:
            self._recording.fence()

    @_api
    def persist(self, addr: int, length: int) -> None:
        """Flush ``[addr, addr+length)`` and drain."""
        self._check_open()
        self._check_range(addr, length)
        self._emit(PersistEvent(addr, length))
        if length:
            self._space_flush(addr, length)
        if self._recording is not None:
            self._recording.flush(self._pieces(addr, length))
            self._recording.fence()

    @_api
    def deep_flush(self, addr: int, length: int) -> None:
        """Flush ``[addr, addr+length)`` all the way to the media; DEEP_FLUSH_FAIL when it cannot."""
        self._check_open()
        self._check_range(addr, length)
        self._fault(FaultSite.FLUSH_DEEP, f"deep flush of [{addr:#x}, {addr + length:#x}) failed")
        if length:
            self._space_flush(addr, length)
        if self._recording is not None:
            self._recording.flush(self._pieces(addr, length))
            self._recording.fence()

    # -- recording --------------------------------------------------------------------------------

    def _pieces(self, addr: int, length: int) -> list[Piece]:
        """The file mappings covering ``[addr, addr+length)`` (already range-checked)."""
        out: list[Piece] = []
        cur, end = addr, addr + length
        while cur < end:
            rec = self._find(cur)
            assert rec is not None
            i = bisect.bisect_right(rec.mappings, cur, key=_mapping_addr) - 1
            m = rec.mappings[i]
            n = min(m.end, end) - cur
            out.append((m, cur - m.addr, n))
            cur += n
        return out

    @property
    def recording(self) -> bool:
        """True inside a :meth:`record` block."""
        return self._recording is not None

    @contextlib.contextmanager
    def record(self) -> Iterator[StoreLog]:
        """Record every store, flush, fence and marker made through the set into a store log.

        ``with pset.record() as log: ...`` — the log's records use file offsets and the
        files are registered with their content when first seen, so the log replays onto
        the files' images (see :mod:`pmemsim.persistence`). Recording blocks do not nest.
        """
        self._check_open()
        if self._recording is not None:
            raise ValueError("this set is already recording; recording blocks do not nest")
        with self._lock, _files.active_plan(self._plan):
            recording = SetRecording(self._effective or self._granularity, self._space.page_size)
            self._recording = recording
            try:
                for rec in self._maps:
                    for m in rec.mappings:
                        self._track(m)
            except BaseException:
                self._recording = None
                raise
        try:
            yield recording.log
        finally:
            self._recording = None

    @_api
    def mark(self, name: str, data: object = None) -> None:
        """Put a marker in the store log (``"NAME.BEGIN"`` / ``"NAME.END"``); no-op when not recording.

        ``data`` (JSON-serializable, to save the log) is what crash checkers taking
        ``check(image, ctx)`` see as ``ctx.data`` for crashes after this marker.
        """
        self._check_open()
        if not isinstance(name, str) or not name:
            raise ValueError(f"marker name must be a non-empty str, got {name!r}")
        if self._recording is not None:
            self._recording.mark(name, data)

    # -- introspection for tests --------------------------------------------------------------

    @_api
    def reservations(self) -> list[Reservation]:
        """The reservations holding this set's part maps, in address order."""
        seen: dict[int, Reservation] = {}
        for rec in self._maps:
            seen.setdefault(id(rec.reservation), rec.reservation)
        return sorted(seen.values(), key=lambda r: r.addr)

    def _check(self) -> None:
        """Assert the set's bookkeeping is consistent (tests call it after each step)."""
        prev_end = None
        for rec in self._maps:
            addr = rec.addr
            assert self._maps.get(addr) is rec
            assert rec.mappings, "empty part map"
            for a, b in zip(rec.mappings, rec.mappings[1:], strict=False):
                assert a.end == b.addr, "part map is not contiguous"
            for m in rec.mappings:
                assert rec.reservation.mapping_at(m.addr) is m
            assert rec.reservation.addr <= rec.addr and rec.end <= rec.reservation.end
            if prev_end is not None:
                assert prev_end <= addr, "part maps overlap"
            prev_end = rec.end
            assert rec.refcount >= 0
        if self._anchor is not None:
            assert self._maps.get(self._anchor.addr) is self._anchor
        else:
            assert not len(self._maps) or self._closed
        for rsv in self._own_rsvs.values():
            assert not rsv.released
            bounds = rsv.content_bounds()
            assert bounds == (rsv.addr, rsv.end), f"own reservation {rsv!r} not tidy: {bounds}"

    def __iter__(self) -> Iterator[PartDescriptor]:
        return iter(self.descriptors())


_NOFLUSH = int(MemFlags.NOFLUSH)
_NODRAIN = int(MemFlags.NODRAIN)
# Write-combining stores bypass the cache like non-temporal ones (the persistence model's view).
_NONTEMPORAL_LIKE = int(MemFlags.NONTEMPORAL | MemFlags.WC)


def _backend_error(exc: BaseException, what: str) -> PmemsetError:
    """A backend failure during a memory operation, as the API reports it."""
    if isinstance(exc, OSError) and exc.errno:
        return PmemsetError(-exc.errno, f"{what} failed", os_errno=exc.errno)
    return PmemsetError(ErrorCode.CANNOT_FIND_PART_MAP, f"{what} failed: {exc}")


def _default_space() -> AddressSpace:
    from pmemsim.addrspace import default_address_space

    try:
        return default_address_space()
    except (AddressSpaceError, OSError) as exc:
        err = getattr(exc, "errno", None) or _errno.ENOMEM
        raise PmemsetError(
            -err,
            f"cannot create the default address space ({exc}); use PMEMSIM_BACKEND=sim or "
            "Config(address_space=...)",
            os_errno=err,
        ) from exc


def _mapping_addr(m: Mapping) -> int:
    return m.addr
