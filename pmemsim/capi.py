"""The C-shaped facade: ``pmemset_*`` functions with libpmemset's names and argument order.

Each function returns 0 or the negative error code instead of raising for a documented
failure (``pmemset_errormsg()`` then tells what went wrong). C out-pointers are
:class:`Ref` boxes whose ``.value`` the call fills, or sets to None where C sets the
pointer to NULL. Misuse that C would not survive (wrong types, deleted objects) still
raises TypeError / ValueError. Constants carry the C names and PMDK's values::

    from pmemsim import capi as c
    cfg = c.Ref(); c.pmemset_config_new(cfg)
    c.pmemset_config_set_required_store_granularity(cfg.value, c.PMEM2_GRANULARITY_PAGE)
    s = c.Ref(); c.pmemset_new(s, cfg.value)
    src = c.Ref(); c.pmemset_source_from_file(src, path)
    part = c.Ref(); c.pmemset_part_new(part, s.value, src.value, 0, 0)
    desc = c.Ref(); rc = c.pmemset_part_map(part, None, desc)   # part.value is None after success
    buf = bytearray(4); rc = c.pmemset_read(s.value, buf, desc.value.addr, 4)   # 0 or a code

The memory functions (``pmemset_memcpy``, ``memmove``, ``memset``) return the destination
address as PMDK does, or a negative code where C's behaviour would be undefined.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from pmemsim.addrspace.base import AddressSpace, Reservation
from pmemsim.config import Config
from pmemsim.enums import Coalescing, EventType, Granularity, MemFlags, SourceFlags
from pmemsim.errors import ErrorCode, PmemsetError, err_to_errno, last_error_message, surfaced
from pmemsim.events import Event, PartAddEvent
from pmemsim.faults import FaultPlan
from pmemsim.pmemset import Part, PartDescriptor, PartMap, PmemSet
from pmemsim.source import Source

T = TypeVar("T")

# -- constants (values come from the enums; the names are C's) ---------------------------------

PMEMSET_E_UNKNOWN: Final = ErrorCode.UNKNOWN
PMEMSET_E_NOSUPP: Final = ErrorCode.NOSUPP
PMEMSET_E_INVALID_PMEM2_SOURCE: Final = ErrorCode.INVALID_PMEM2_SOURCE
PMEMSET_E_INVALID_SOURCE_PATH: Final = ErrorCode.INVALID_SOURCE_PATH
PMEMSET_E_INVALID_SOURCE_TYPE: Final = ErrorCode.INVALID_SOURCE_TYPE
PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE: Final = ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE
PMEMSET_E_INVALID_OFFSET_VALUE: Final = ErrorCode.INVALID_OFFSET_VALUE
PMEMSET_E_GRANULARITY_NOT_SUPPORTED: Final = ErrorCode.GRANULARITY_NOT_SUPPORTED
PMEMSET_E_INVALID_PMEM2_MAP: Final = ErrorCode.INVALID_PMEM2_MAP
PMEMSET_E_PART_EXISTS: Final = ErrorCode.PART_EXISTS
PMEMSET_E_GRANULARITY_NOT_SET: Final = ErrorCode.GRANULARITY_NOT_SET
PMEMSET_E_GRANULARITY_MISMATCH: Final = ErrorCode.GRANULARITY_MISMATCH
PMEMSET_E_NO_PART_MAPPED: Final = ErrorCode.NO_PART_MAPPED
PMEMSET_E_CANNOT_FIND_PART_MAP: Final = ErrorCode.CANNOT_FIND_PART_MAP
PMEMSET_E_CANNOT_COALESCE_PARTS: Final = ErrorCode.CANNOT_COALESCE_PARTS
PMEMSET_E_LENGTH_UNALIGNED: Final = ErrorCode.LENGTH_UNALIGNED
PMEMSET_E_PART_NOT_FOUND: Final = ErrorCode.PART_NOT_FOUND
PMEMSET_E_INVALID_COALESCING_VALUE: Final = ErrorCode.INVALID_COALESCING_VALUE
PMEMSET_E_DEEP_FLUSH_FAIL: Final = ErrorCode.DEEP_FLUSH_FAIL
PMEMSET_E_INVALID_SOURCE_FILE_CREATE_FLAGS: Final = ErrorCode.INVALID_SOURCE_FILE_CREATE_FLAGS
PMEMSET_E_CANNOT_CREATE_TEMP_FILE: Final = ErrorCode.CANNOT_CREATE_TEMP_FILE
PMEMSET_E_CANNOT_TRUNCATE_SOURCE_FILE: Final = ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE
PMEMSET_E_PART_MAP_POSSIBLE_USE_AFTER_DROP: Final = ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP
PMEMSET_E_CANNOT_FIT_PART_MAP: Final = ErrorCode.CANNOT_FIT_PART_MAP

PMEMSET_COALESCING_NONE: Final = Coalescing.NONE
PMEMSET_COALESCING_OPPORTUNISTIC: Final = Coalescing.OPPORTUNISTIC
PMEMSET_COALESCING_FULL: Final = Coalescing.FULL

PMEM2_GRANULARITY_BYTE: Final = Granularity.BYTE
PMEM2_GRANULARITY_CACHE_LINE: Final = Granularity.CACHE_LINE
PMEM2_GRANULARITY_PAGE: Final = Granularity.PAGE

PMEMSET_SOURCE_FILE_CREATE_ALWAYS: Final = SourceFlags.CREATE_ALWAYS
PMEMSET_SOURCE_FILE_CREATE_IF_NEEDED: Final = SourceFlags.CREATE_IF_NEEDED
PMEMSET_SOURCE_FILE_TRUNCATE_IF_NEEDED: Final = SourceFlags.TRUNCATE_IF_NEEDED

PMEMSET_F_MEM_NODRAIN: Final = MemFlags.NODRAIN
PMEMSET_F_MEM_NONTEMPORAL: Final = MemFlags.NONTEMPORAL
PMEMSET_F_MEM_TEMPORAL: Final = MemFlags.TEMPORAL
PMEMSET_F_MEM_WC: Final = MemFlags.WC
PMEMSET_F_MEM_WB: Final = MemFlags.WB
PMEMSET_F_MEM_NOFLUSH: Final = MemFlags.NOFLUSH

PMEMSET_EVENT_COPY: Final = EventType.COPY
PMEMSET_EVENT_MOVE: Final = EventType.MOVE
PMEMSET_EVENT_SET: Final = EventType.SET
PMEMSET_EVENT_FLUSH: Final = EventType.FLUSH
PMEMSET_EVENT_DRAIN: Final = EventType.DRAIN
PMEMSET_EVENT_PERSIST: Final = EventType.PERSIST
PMEMSET_EVENT_BAD_BLOCK: Final = EventType.BAD_BLOCK
PMEMSET_EVENT_PART_ADD: Final = EventType.PART_ADD
PMEMSET_EVENT_PART_REMOVE: Final = EventType.PART_REMOVE


class Ref(Generic[T]):
    """A C out-pointer: the call stores its result in ``.value`` (None for NULL)."""

    __slots__ = ("value",)

    def __init__(self, value: T | None = None) -> None:
        self.value: T | None = value

    def __repr__(self) -> str:
        return f"Ref({self.value!r})"


def _ref(name: str, ref: object) -> Ref[Any]:
    if not isinstance(ref, Ref):
        raise TypeError(f"{name} must be a capi.Ref (a C out-pointer), not {type(ref).__name__}")
    return ref


def _handle(name: str, obj: object, cls: type) -> None:
    """TypeError unless ``obj`` is a ``cls``: C would crash on a wrong pointer; we say which."""
    if isinstance(obj, cls):
        return
    hint = f"; pass {name}.value, not the Ref box" if isinstance(obj, Ref) else ""
    raise TypeError(f"{name} must be a {cls.__name__}, not {type(obj).__name__}{hint}")


def _free(name: str, box: object, cls: type[T], release: Callable[[T], object]) -> int:
    """The shape of every ``pmemset_*_delete``: release what the box holds, set it to NULL."""
    out = _ref(name, box)
    if out.value is not None:
        _handle(f"{name}.value", out.value, cls)
        release(out.value)
    out.value = None
    return 0


def _call(fn: Callable[[], object]) -> int:
    """Run ``fn``; 0 on success, the error code when it raises PmemsetError."""
    try:
        fn()
    except PmemsetError as exc:
        return surfaced(exc).code
    return 0


# -- errors ---------------------------------------------------------------------------------------


def pmemset_errormsg() -> str:
    """The message of the last failure in this thread."""
    return last_error_message()


def pmemset_err_to_errno(err: int) -> int:
    """The errno matching a negative return code."""
    return err_to_errno(err)


# -- config -----------------------------------------------------------------------------------------


def pmemset_config_new(cfg: Ref[Config]) -> int:
    """``cfg.value`` = a new, empty config."""
    _ref("cfg", cfg).value = Config()
    return 0


def pmemset_config_set_required_store_granularity(cfg: Config, g: int) -> int:
    """Require store granularity ``g``; GRANULARITY_NOT_SUPPORTED for an unknown value."""
    _handle("cfg", cfg, Config)
    return _call(lambda: cfg.set_granularity(g))


def pmemset_config_set_reservation(cfg: Config, rsv: Reservation | None) -> int:
    """Confine the set's part maps to ``rsv``."""
    _handle("cfg", cfg, Config)
    cfg.set_reservation(rsv)
    return 0


@dataclass(frozen=True)
class PartAddData:
    """``ctx.data.part_add`` of a PART_ADD event."""

    addr: int
    len: int
    src: Source


@dataclass(frozen=True)
class EventData:
    """``ctx.data``: the member named after the event's kind is set, as in PMDK's union.

    ``copy``/``move``/``set``/``flush``/``persist``/``part_remove``/``bad_block`` are the
    Python events themselves (their fields carry PMDK's names: dest, len, addr, ...);
    ``part_add`` has ``addr``, ``len`` and ``src``. ``event`` is always the Python event.
    """

    event: Event
    part_add: PartAddData | None = None
    part_remove: Event | None = None
    copy: Event | None = None
    move: Event | None = None
    set: Event | None = None
    flush: Event | None = None
    persist: Event | None = None
    bad_block: Event | None = None


def _event_data(event: Event) -> EventData:
    if isinstance(event, PartAddEvent):
        return EventData(event, part_add=PartAddData(event.addr, event.len, event.source))
    member = event.type.name.lower()
    if member in ("part_remove", "copy", "move", "set", "flush", "persist", "bad_block"):
        fields: dict[str, Any] = {member: event}
        return EventData(event, **fields)
    return EventData(event)  # DRAIN carries no data


@dataclass(frozen=True)
class EventContext:
    """``struct pmemset_event_context``: ``type`` and ``data``."""

    type: EventType
    data: EventData


def pmemset_config_set_event_callback(
    cfg: Config, callback: Callable[[PmemSet, EventContext, Any], object] | None, arg: Any = None
) -> int:
    """Call ``callback(set, ctx, arg)`` for every event (its return value is ignored, as in PMDK)."""
    _handle("cfg", cfg, Config)
    if callback is None:
        cfg.set_event_callback(None)
        return 0
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")

    def deliver(pset: PmemSet, event: Event) -> None:
        callback(pset, EventContext(event.type, _event_data(event)), arg)

    cfg.set_event_callback(deliver)
    return 0


def pmemset_config_set_address_space(cfg: Config, space: AddressSpace | None) -> int:
    """Extension: the backend the set will use (default: the process default)."""
    _handle("cfg", cfg, Config)
    cfg.set_address_space(space)
    return 0


def pmemset_config_set_fault_plan(cfg: Config, plan: FaultPlan | None) -> int:
    """Extension: inject the failures ``plan`` describes."""
    _handle("cfg", cfg, Config)
    cfg.set_fault_plan(plan)
    return 0


def pmemset_config_delete(cfg: Ref[Config]) -> int:
    """Free a config; ``cfg.value`` becomes None."""
    _ref("cfg", cfg).value = None
    return 0


# -- sets -------------------------------------------------------------------------------------------


def pmemset_new(set_ref: Ref[PmemSet], cfg: Config) -> int:
    """``set_ref.value`` = a new set made from ``cfg``; GRANULARITY_NOT_SET without a granularity."""
    _handle("cfg", cfg, Config)
    out = _ref("set", set_ref)

    def make() -> None:
        out.value = PmemSet(cfg)

    return _call(make)


def pmemset_delete(set_ref: Ref[PmemSet]) -> int:
    """Unmap everything and free the set; ``set_ref.value`` becomes None."""
    return _free("set", set_ref, PmemSet, PmemSet.close)


# -- sources ----------------------------------------------------------------------------------------


def _make_source(src: Ref[Source], make: Callable[[], Source]) -> int:
    out = _ref("src", src)

    def run() -> None:
        out.value = make()

    return _call(run)


def pmemset_source_from_file(src: Ref[Source], file: str | os.PathLike[str]) -> int:
    """``src.value`` = a source for an existing file (INVALID_SOURCE_PATH if missing)."""
    return _make_source(src, lambda: Source.from_file(file))


def pmemset_xsource_from_file(src: Ref[Source], file: str | os.PathLike[str], flags: int) -> int:
    """``src.value`` = a source opened with PMEMSET_SOURCE_FILE_* ``flags``."""
    return _make_source(src, lambda: Source.xfrom_file(file, flags))


def pmemset_source_from_temporary(src: Ref[Source], dir: str | os.PathLike[str]) -> int:
    """``src.value`` = an unlinked temporary file in ``dir`` (CANNOT_CREATE_TEMP_FILE if impossible)."""
    return _make_source(src, lambda: Source.from_temporary(dir))


def pmemset_source_from_fd(src: Ref[Source], fd: int) -> int:
    """``src.value`` = a source borrowing the open descriptor ``fd``."""
    return _make_source(src, lambda: Source.from_fd(fd))


def pmemset_source_delete(src: Ref[Source]) -> int:
    """Free a source; ``src.value`` becomes None."""
    return _free("src", src, Source, Source.delete)


# -- parts and part maps -------------------------------------------------------------------------------


def pmemset_part_new(part: Ref[Part], pset: PmemSet, src: Source, offset: int, length: int) -> int:
    """``part.value`` = a part of ``src`` for ``pset``."""
    _handle("pset", pset, PmemSet)
    _handle("src", src, Source)
    out = _ref("part", part)

    def make() -> None:
        out.value = pset.part_new(src, offset, length)

    return _call(make)


def pmemset_part_delete(part: Ref[Part]) -> int:
    """Free an unmapped part; ``part.value`` becomes None."""
    return _free("part", part, Part, Part.delete)


def pmemset_part_map(part: Ref[Part], extras: object, desc: Ref[PartDescriptor] | None) -> int:
    """Map ``part.value``; on success it is consumed (``part.value`` None) and ``desc`` filled."""
    box = _ref("part", part)
    if box.value is None:
        raise ValueError("part.value is NULL: no part to map")
    if extras is not None:
        raise ValueError("pmemset_extras are not supported; pass None")
    if desc is not None:
        _ref("desc", desc)
    p = box.value
    _handle("part.value", p, Part)

    def run() -> None:
        d = p.pset.part_map(p)
        box.value = None
        if desc is not None:
            desc.value = d

    return _call(run)


def pmemset_first_part_map(pset: PmemSet, pmap: Ref[PartMap]) -> int:
    """``pmap.value`` = the lowest part map (None when the set is empty)."""
    _handle("pset", pset, PmemSet)
    out = _ref("pmap", pmap)  # check the box before a reference is taken
    out.value = pset.first_part_map()
    return 0


def pmemset_next_part_map(pset: PmemSet, cur: PartMap, next: Ref[PartMap]) -> int:
    """``next.value`` = the part map after ``cur`` (None after the last)."""
    _handle("pset", pset, PmemSet)
    _handle("cur", cur, PartMap)
    out = _ref("next", next)  # check the box before a reference is taken
    out.value = pset.next_part_map(cur)
    return 0


def pmemset_part_map_by_address(pset: PmemSet, pmap: Ref[PartMap], addr: int) -> int:
    """``pmap.value`` = the part map containing ``addr``; CANNOT_FIND_PART_MAP if none."""
    _handle("pset", pset, PmemSet)
    out = _ref("pmap", pmap)

    def run() -> None:
        out.value = pset.part_map_by_address(addr)

    return _call(run)


def pmemset_descriptor_part_map(pmap: PartMap) -> PartDescriptor:
    """The descriptor (address and size) of a part map."""
    _handle("pmap", pmap, PartMap)
    return pmap.descriptor


def pmemset_part_map_drop(pmap: Ref[PartMap]) -> int:
    """Give back a part map reference; ``pmap.value`` becomes None."""
    return _free("pmap", pmap, PartMap, PartMap.drop)


def pmemset_remove_part_map(pset: PmemSet, pmap: Ref[PartMap]) -> int:
    """Unmap a part map; ``pmap.value`` becomes None on success."""
    _handle("pset", pset, PmemSet)
    out = _ref("pmap", pmap)
    if out.value is None:
        raise ValueError("pmap.value is NULL: no part map to remove")
    pm = out.value
    _handle("pmap.value", pm, PartMap)

    def run() -> None:
        pset.remove_part_map(pm)
        out.value = None

    return _call(run)


def pmemset_remove_range(pset: PmemSet, addr: int, length: int) -> int:
    """Unmap every part intersecting ``[addr, addr+length)``."""
    _handle("pset", pset, PmemSet)
    return _call(lambda: pset.remove_range(addr, length))


def pmemset_set_contiguous_part_coalescing(pset: PmemSet, value: int) -> int:
    """Set the coalescing mode; INVALID_COALESCING_VALUE for an unknown value."""
    _handle("pset", pset, PmemSet)
    return _call(lambda: pset.set_contiguous_part_coalescing(value))


def pmemset_get_store_granularity(pset: PmemSet, g: Ref[Granularity]) -> int:
    """``g.value`` = the effective store granularity; NO_PART_MAPPED before the first map."""
    _handle("pset", pset, PmemSet)
    out = _ref("g", g)

    def run() -> None:
        out.value = pset.get_store_granularity()

    return _call(run)


# -- memory operations -------------------------------------------------------------------------------


def _dest(pmemdest: int, fn: Callable[[], object]) -> int:
    """The shape of PMDK's memory functions: the destination address, or the error code.

    PMDK's ``pmemset_memcpy/memmove/memset`` return ``pmemdest`` (a ``void *``). Addresses
    are never negative, so a negative result is unambiguously an error code here.
    """
    rc = _call(fn)
    return pmemdest if rc == 0 else rc


def pmemset_memcpy(pset: PmemSet, pmemdest: int, src: bytes, length: int, flags: int) -> int:
    """Copy ``length`` bytes of ``src`` to ``pmemdest``; returns ``pmemdest`` as PMDK does.

    Outside the set: CANNOT_FIND_PART_MAP (negative), where C would be undefined behaviour.
    """
    _handle("pset", pset, PmemSet)
    return _dest(pmemdest, lambda: pset.memcpy(pmemdest, src, length, flags))


def pmemset_memmove(pset: PmemSet, pmemdest: int, src: bytes | int, length: int, flags: int) -> int:
    """Move ``length`` bytes from ``src`` (bytes, or an address in the set) to ``pmemdest``.

    Returns ``pmemdest`` as PMDK does, or a negative error code.
    """
    _handle("pset", pset, PmemSet)
    return _dest(pmemdest, lambda: pset.memmove(pmemdest, src, length, flags))


def pmemset_memset(pset: PmemSet, pmemdest: int, c: int, length: int, flags: int) -> int:
    """Fill ``length`` bytes at ``pmemdest`` with the byte ``c``; returns ``pmemdest`` as PMDK does.

    Or a negative error code (CANNOT_FIND_PART_MAP outside the set).
    """
    _handle("pset", pset, PmemSet)
    return _dest(pmemdest, lambda: pset.memset(pmemdest, c, length, flags))


def pmemset_flush(pset: PmemSet, ptr: int, size: int) -> int:
    """Flush a range."""
    _handle("pset", pset, PmemSet)
    return _call(lambda: pset.flush(ptr, size))


def pmemset_drain(pset: PmemSet) -> int:
    """Wait for earlier flushes (a fence)."""
    _handle("pset", pset, PmemSet)
    return _call(pset.drain)


def pmemset_persist(pset: PmemSet, ptr: int, size: int) -> int:
    """Flush a range and drain."""
    _handle("pset", pset, PmemSet)
    return _call(lambda: pset.persist(ptr, size))


def pmemset_deep_flush(pset: PmemSet, ptr: int, size: int) -> int:
    """Flush a range to the media; DEEP_FLUSH_FAIL when it cannot."""
    _handle("pset", pset, PmemSet)
    return _call(lambda: pset.deep_flush(ptr, size))


def pmemset_read(pset: PmemSet, buf: bytearray | memoryview, addr: int, length: int) -> int:
    """Extension (Python cannot dereference an address): copy ``length`` bytes at ``addr`` into ``buf``.

    Returns 0 or a negative code like every other call (CANNOT_FIND_PART_MAP when the range
    is not inside one part map; ``buf`` is then left untouched). ``buf`` must be a writable
    buffer of at least ``length`` bytes: TypeError / ValueError otherwise, where C would
    write out of bounds.
    """
    _handle("pset", pset, PmemSet)
    try:
        view = memoryview(buf).cast("B")
    except TypeError:
        kind = type(buf).__name__
        raise TypeError(f"buf must be a writable buffer such as a bytearray, not {kind}") from None
    if view.readonly:
        raise TypeError(f"buf must be writable (a bytearray, not {type(buf).__name__})")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a non-negative int, got {length!r}")
    if len(view) < length:
        raise ValueError(f"buf holds {len(view)} bytes, fewer than length={length}")
    try:
        data = pset.read(addr, length)
    except PmemsetError as exc:
        return surfaced(exc).code
    view[:length] = data
    return 0


def pmemset_write(pset: PmemSet, addr: int, data: bytes) -> int:
    """Extension: plain stores of ``data`` at ``addr`` (no flush, no fence)."""
    _handle("pset", pset, PmemSet)
    return _call(lambda: pset.write(addr, data))


__all__ = [name for name in dir() if name.startswith(("pmemset_", "PMEMSET_", "PMEM2_"))] + [
    "EventContext",
    "EventData",
    "PartAddData",
    "Ref",
]
