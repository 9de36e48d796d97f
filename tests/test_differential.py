"""Differential testing: the simulator and real mmap must agree on every call (issue 4).

:class:`DifferentialMachine` drives the same random sequence of operations against a set
on a :class:`~pmemsim.SimulatedAddressSpace` and a set on a :class:`~pmemsim.MmapAddressSpace`.
Each backend has its own copy of the files (same names, sizes, contents and device
granularities) in its own directory, and both spaces have the same size, so the placement
code shared by both backends (``addrspace/layout.py``) must give the same layout relative to
``space.low``, the same failures (address-space exhaustion included) and the same bytes.

Operations: ``part_new`` from five sources (plain files, one of a possibly unaligned size,
a TRUNCATE_IF_NEEDED file, a borrowed descriptor, a temporary file; offsets and lengths
mostly in whole pages, sometimes unaligned, past the end of the file, zero = whole source,
or absurd), ``part_map`` (also of consumed parts and of parts whose source was deleted),
part deletion, runs of coalesced parts, ``set_contiguous_part_coalescing`` (NONE,
OPPORTUNISTIC, FULL and an invalid value), first / next / by-address references with
``descriptor``, ``drop`` and ``remove_part_map`` (also of stale references),
``remove_range`` over ranges placed relative to the part maps and their file mappings,
``memcpy`` + ``persist``, ``write``, ``read``, ``memmove`` / ``memset`` / ``flush`` /
``drain``, ``occupy`` / ``free`` on both spaces (right after a part map, anywhere, past
the end, unaligned), and changes behind the set's back (a file truncated or grown by
another program, a source deleted and opened again). Spaces are 24 pages, 48 pages or
256 MiB, placement bottom-up or top-down, granularities mostly PAGE.

After every call the machine compares the outcomes — the same return value (addresses
relative to ``space.low``) or the same exception (type, PmemsetError code and errno) — and,
as invariants after every step: the part maps (descriptors, first/next walk, reference
counts), the set's and the space's reservations and occupied ranges, the coalescing mode
and anchor, the effective granularity, the events delivered, the bytes of every part map
read back through the set, the size and content of every file, and both ``_check()`` of
each set and space (for mmap, against ``/proc/self/maps``). At teardown everything is
closed and nothing may be left: no reservation (the configured one aside, which is then
released), no file mapping, no file descriptor.

:class:`DifferentialReservedMachine` is the same with a reservation configured at the start
(``space.reserve(n)`` on both spaces, sometimes at a chosen address).

The focused tests at the end cover issue 4's "Bad input" list on the mmap backend.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import settings
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

from pmemsim import (
    Coalescing,
    Config,
    ErrorCode,
    Granularity,
    MemFlags,
    PmemSet,
    PmemsetError,
    Source,
    SourceFlags,
)
from pmemsim.addrspace import MmapAddressSpace, SimulatedAddressSpace
from pmemsim.addrspace.base import AddressSpaceError, Reservation
from pmemsim.addrspace.layout import LayoutAddressSpace, Occupied
from pmemsim.addrspace.mmap import OS_PAGE, proc_maps
from pmemsim.events import Event
from pmemsim.pmemset import Part, PartDescriptor, PartMap

PAGE = 4096
SIZE_MAX = (1 << 64) - 1

pytestmark = pytest.mark.skipif(OS_PAGE != PAGE, reason=f"the OS page size is {OS_PAGE}, not {PAGE}")

#: How much of each file the invariant compares byte for byte.
FILE_COMPARE_BYTES = 1 << 20

#: Where the simulator's space starts (the mmap arena starts wherever the kernel put it).
SIM_LOW = 1 << 32

#: The source slots: a plain file, a plain file whose size may be unaligned, a
#: TRUNCATE_IF_NEEDED source that part_map grows, a descriptor the test opened (O_RDWR,
#: sometimes also O_APPEND) and lends with ``from_fd``, and a temporary (unlinked, growing) one.
FILE_SLOTS = ("plain", "unaligned", "grows", "fd")
SLOTS = (*FILE_SLOTS, "temp")
GROWING_SLOTS = ("grows", "temp")
INT64_MAX = (1 << 63) - 1
#: Largest offset or length of a part of a growing source that may really be mapped.
MAX_GROWTH = 32 * PAGE

# -- strategies ------------------------------------------------------------------------------

#: Part offsets: mostly whole pages (0-7, "far" 8-15: past the end of most files), sometimes any byte,
#: sometimes absurd (2**40, above INT64_MAX, near SIZE_MAX) or negative.
_offset = st.tuples(
    st.sampled_from(["pages"] * 10 + ["far", "bytes", "huge", "negative"]), st.integers(0, 1 << 20)
)
#: Part lengths: mostly 1-4 pages, sometimes 0 (the whole source), any byte count, or absurd.
_length = st.tuples(
    st.sampled_from(["pages"] * 8 + ["whole", "whole", "bytes", "huge"]), st.integers(0, 1 << 20)
)
_HUGE_OFFSETS = (1 << 40, 1 << 62, 1 << 63, SIZE_MAX + 1 - PAGE)
_HUGE_LENGTHS = (1 << 40, 1 << 41, 1 << 62, SIZE_MAX + 1 - PAGE, SIZE_MAX)

#: An address, as (kind, i, n): "in" is ``n`` bytes into part map ``i`` (modulo its size;
#: part maps are taken modulo their number), "piece" is ``n % 64`` bytes into the file
#: mapping ``n // 64`` of part map ``i`` (a coalesced part map has several), "end" is
#: ``n % 256 - 128`` bytes from its end, "map" is ``n - 2 pages`` from its start (often
#: outside it), "space" is ``i`` pages + ``n % PAGE`` bytes from ``space.low``.
_where = st.tuples(
    st.sampled_from(["in"] * 4 + ["piece"] * 2 + ["end", "map", "space"]),
    st.integers(0, 7),
    st.integers(0, 20 * PAGE),
)
#: Lengths of memory operations and removed ranges.
_span = st.one_of(
    st.integers(0, 300),
    st.integers(0, 2 * PAGE),
    st.integers(1, 4).map(lambda p: p * PAGE),
    st.sampled_from([0, 1, SIZE_MAX]),
)
_mem_flags = st.sampled_from(
    [0] * 4
    + [
        int(MemFlags.NODRAIN),
        int(MemFlags.NOFLUSH),
        int(MemFlags.NONTEMPORAL),
        int(MemFlags.WC | MemFlags.NODRAIN),
        1 << 10,  # unknown bit: ValueError on both
    ]
)
_granularities = st.sampled_from([Granularity.PAGE] * 6 + [Granularity.CACHE_LINE, Granularity.BYTE])


def _resolve_offset(spec: tuple[str, int]) -> int:
    kind, n = spec
    if kind == "pages":
        return (n % 8) * PAGE
    if kind == "far":
        return (8 + n % 8) * PAGE  # files hold at most 10 pages at the start
    if kind == "bytes":
        return n % (13 * PAGE)
    if kind == "huge":
        return _HUGE_OFFSETS[n % len(_HUGE_OFFSETS)]
    return -1 - n % 2


def _resolve_length(spec: tuple[str, int]) -> int:
    kind, n = spec
    if kind == "pages":
        return (1 + n % 4) * PAGE
    if kind == "whole":
        return 0
    if kind == "bytes":
        return 1 + n % (6 * PAGE)
    return _HUGE_LENGTHS[n % len(_HUGE_LENGTHS)]


def _has_maps(machine: DifferentialMachine) -> bool:
    """Memory operations and removals run once something is mapped (their addresses still
    fall inside and outside the part maps)."""
    return machine.sim is not None and machine.sim.pset is not None and len(machine.sim.pset) > 0


def _tame_growth(slot: str, offset: int, length: int) -> int:
    """The offset to use: part_map grows a growing source to offset + length and preallocates
    the new blocks (``posix_fallocate``), so a huge part of one would fill the disk before
    failing. Keep growth to a few pages; make bigger growth impossible instead (offset +
    length above INT64_MAX: CANNOT_TRUNCATE_SOURCE_FILE before any system call)."""
    if (
        slot in GROWING_SLOTS
        and (offset > MAX_GROWTH or length > MAX_GROWTH)
        and offset + length <= INT64_MAX
    ):
        return offset | (1 << 63) if offset >= 0 else offset
    return offset


def _short(value: Any) -> str:
    """``value`` for an assertion message, with long byte strings cut down to their start."""
    if isinstance(value, bytes):
        return repr(value) if len(value) <= 32 else f"<{len(value)} bytes {value[:16]!r}...>"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value)


def _first_difference(a: Any, b: Any) -> str:
    """Where two observations of part-map contents or files first differ."""
    pairs = list(a.items()) if isinstance(a, dict) else list(enumerate(a))
    for k, x in pairs:
        y = b.get(k) if isinstance(b, dict) else (b[k] if k < len(b) else None)
        if isinstance(x, tuple):  # (size, bytes) of a file
            if x[0] != (y[0] if y else None):
                return f"{k!r}: size {x[0]} vs {y[0] if y else None}"
            x, y = x[1], y[1] if y else None
        if x != y and isinstance(x, bytes) and isinstance(y, bytes):
            i = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
            return f"{k!r}: first difference at byte {i:#x}: {x[i : i + 8]!r} vs {y[i : i + 8]!r}"
        if x != y:
            return f"{k!r}: {_short(x)} vs {_short(y)}"
    return "lengths differ"


def _pattern(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


# -- running one call on both backends ---------------------------------------------------------


def _outcome(fn: Callable[[], Any], norm: Callable[[Any], Any]) -> tuple[tuple[Any, ...], Any]:
    """``(comparable outcome, raw result)`` of ``fn()``.

    A PmemsetError compares by code and errno, the other refusals the API documents
    (ValueError, TypeError, the address space's own errors) by exception type. Anything
    else (OSError, KeyError, AssertionError, ...) propagates: it is a bug on its own.
    """
    try:
        value = fn()
    except PmemsetError as exc:
        assert exc.message, f"{exc!r} has no message"
        return ("PmemsetError", exc.name, exc.errno), None
    except (ValueError, TypeError, MemoryError, AddressSpaceError) as exc:
        assert str(exc), f"{exc!r} has no message"
        return (type(exc).__name__,), None
    return ("ok", norm(value)), value


class _Pair:
    """The same object (part, part map reference) on both backends, for the bundles."""

    __slots__ = ("label", "mm", "sim")

    def __init__(self, label: str, sim: Any, mm: Any) -> None:
        self.label, self.sim, self.mm = label, sim, mm

    def __repr__(self) -> str:
        return f"<{self.label}>"


class World:
    """One backend: its address space, its files, its sources, its set and the events it saw."""

    def __init__(self, name: str, space: LayoutAddressSpace, directory: str) -> None:
        self.name = name
        self.space = space
        self.low = space.low
        self.directory = directory
        self.paths = {slot: os.path.join(directory, f"{slot}.pmem") for slot in FILE_SLOTS}
        self.sources: dict[str, Source] = {}
        self.every_source: list[Source] = []  # kept alive so ids stay unique within an example
        self.source_slot: dict[int, str] = {}
        self.rsv: Reservation | None = None
        self.pset: PmemSet | None = None
        self.events: list[tuple[Any, ...]] = []
        self.borrowed_fd = -1  # the "fd" slot's descriptor, closed by the test at teardown
        self.borrowed_flags = os.O_RDWR

    @property
    def set(self) -> PmemSet:
        assert self.pset is not None
        return self.pset

    def open_source(self, slot: str) -> Source:
        if slot == "temp":
            src = Source.from_temporary(self.directory)
        elif slot == "grows":
            src = Source.xfrom_file(self.paths[slot], SourceFlags.TRUNCATE_IF_NEEDED)
        elif slot == "fd":
            if self.borrowed_fd < 0:
                self.borrowed_fd = os.open(self.paths[slot], self.borrowed_flags | os.O_CLOEXEC)
            src = Source.from_fd(self.borrowed_fd)
        else:
            src = Source.from_file(self.paths[slot])
        self.sources[slot] = src
        self.every_source.append(src)
        self.source_slot[id(src)] = slot
        return src

    def temp_fd(self) -> int:
        """The descriptor of the current temporary source (it has no path)."""
        return self.sources["temp"].file.fd

    def truncate(self, slot: str, size: int) -> None:
        """Change a file's size behind the set's back, as another program would."""
        if slot == "temp":
            os.ftruncate(self.temp_fd(), size)
        else:
            os.truncate(self.paths[slot], size)

    def desc(self, d: PartDescriptor | None) -> tuple[int, int] | None:
        return None if d is None else (d.addr - self.low, d.size)

    def norm(self, value: Any) -> Any:
        """A return value with its addresses made relative to ``space.low``."""
        if isinstance(value, PartDescriptor):
            return self.desc(value)
        if isinstance(value, PartMap):
            return ("PartMap", self.desc(value.descriptor))
        if isinstance(value, Part):
            return ("Part", self.source_slot[id(value.source)], value.offset, value.length)
        if isinstance(value, Reservation):
            return ("Reservation", value.addr - self.low, value.size)
        if isinstance(value, Occupied):
            return ("Occupied", value.addr - self.low, value.size)
        return value

    def on_event(self, _pset: PmemSet, event: Event) -> None:
        fields: list[Any] = [type(event).__name__]
        for f in dataclasses.fields(event):
            v = getattr(event, f.name)
            if f.name in ("addr", "dest"):
                v = v - self.low
            elif isinstance(v, Source):
                v = self.source_slot[id(v)]
            fields.append((f.name, v))
        self.events.append(tuple(fields))

    def observe(self) -> dict[str, Any]:
        """Everything a user can see, with addresses relative to ``space.low``."""
        pset, space, low = self.set, self.space, self.low
        descs = pset.descriptors()
        walk = []
        pmap = pset.first_part_map()
        while pmap is not None:
            walk.append(self.desc(pmap.descriptor))
            nxt = pset.next_part_map(pmap)
            pmap.drop()
            pmap = nxt
        try:
            gran: Any = pset.get_store_granularity()
        except PmemsetError as exc:
            gran = exc.name
        files = {}
        for slot, path in self.paths.items():
            # TRUNCATE_IF_NEEDED may have grown a file (sparsely) to a huge offset: compare its
            # size and its first MiB; what lies further is compared through the part maps.
            with open(path, "rb") as f:
                files[slot] = (os.fstat(f.fileno()).st_size, f.read(FILE_COMPARE_BYTES))
        fd = self.temp_fd()
        files["temp"] = (os.fstat(fd).st_size, os.pread(fd, FILE_COMPARE_BYTES, 0))
        return {
            "descriptors": [self.desc(d) for d in descs],
            "first/next": walk,
            "refcounts": [rec.refcount for rec in pset._maps],
            "mappings": [
                [(m.addr - low, m.length, m.file_offset, m.granularity) for m in rec.mappings]
                for rec in pset._maps
            ],
            "set reservations": [(r.addr - low, r.size) for r in pset.reservations()],
            "space reservations": [(r.addr - low, r.size) for r in space.reservations()],
            "occupied": [(o.addr - low, o.size) for o in space.occupied()],
            "used": space.used,
            "coalescing": pset.coalescing,
            "anchor": self.desc(pset.coalescing_anchor),
            "granularity": gran,
            "len": len(pset),
            "contents": [pset.read(d.addr, d.size) for d in descs],
            "files": files,
            "events": self.events,
        }


class DifferentialMachine(RuleBasedStateMachine):
    """The same operations on a simulator-backed and an mmap-backed set; they must agree."""

    #: Make a reservation at the start and configure the sets with it.
    reserved: ClassVar[bool] = False

    parts = Bundle("parts")
    pmaps = Bundle("pmaps")

    def __init__(self) -> None:
        super().__init__()
        self.sim: World | None = None
        self.mm: World | None = None
        self.directory: str | None = None
        self.fds_at_start = 0
        self.configured: tuple[int, int] | None = None
        self.counter = 0

    # -- set-up and teardown ---------------------------------------------------------------------

    @initialize(
        arena_pages=st.sampled_from([24, 48, 1 << 16]),
        placement=st.sampled_from(["bottom-up"] * 3 + ["top-down"]),
        fd_append=st.booleans(),
        sizes=st.tuples(
            st.integers(2, 10),
            st.integers(0, 8),
            st.sampled_from([0, 0, 100]),
            st.integers(0, 4),
            st.integers(1, 6),
        ),
        seed=st.integers(0, 1 << 32),
        required=st.sampled_from([Granularity.PAGE] * 6 + [Granularity.CACHE_LINE, Granularity.BYTE]),
        devices=st.tuples(_granularities, _granularities, _granularities, _granularities),
        coalescing=st.sampled_from(list(Coalescing)),
        rsv_pages=st.integers(1, 24),
        rsv_at=st.one_of(st.none(), st.integers(0, 4)),
        initial=st.lists(st.tuples(st.sampled_from(SLOTS), st.integers(0, 3), st.integers(1, 3)), max_size=4),
    )
    def setup(
        self,
        arena_pages: int,
        placement: str,
        fd_append: bool,
        sizes: tuple[int, int, int, int, int],
        seed: int,
        required: Granularity,
        devices: tuple[Granularity, Granularity, Granularity, Granularity],
        coalescing: Coalescing,
        rsv_pages: int,
        rsv_at: int | None,
        initial: list[tuple[str, int, int]],
    ) -> None:
        """Two worlds with identical files, spaces of the same size and identical sets.

        The ``initial`` parts (slot, offset in pages, length in pages) are mapped straight
        away (part_new + part_map).
        """
        self.fds_at_start = len(os.listdir("/proc/self/fd"))
        self.directory = tempfile.mkdtemp(prefix="pmemsim-diff-")
        plain, unaligned, extra, grows, fd = sizes
        file_sizes = {
            "plain": plain * PAGE,
            "unaligned": unaligned * PAGE + extra,
            "grows": grows * PAGE,
            "fd": fd * PAGE,
        }
        mm_space = MmapAddressSpace(arena_pages * PAGE, placement=placement)
        sim_space = SimulatedAddressSpace(
            PAGE, low=SIM_LOW, high=SIM_LOW + arena_pages * PAGE, placement=placement
        )
        self.sim = World("sim", sim_space, os.path.join(self.directory, "sim"))
        self.mm = World("mmap", mm_space, os.path.join(self.directory, "mmap"))
        for w in (self.sim, self.mm):
            os.mkdir(w.directory)
            w.borrowed_flags = os.O_RDWR | (os.O_APPEND if fd_append else 0)
            for i, slot in enumerate(FILE_SLOTS):
                with open(w.paths[slot], "wb") as f:
                    f.write(_pattern(seed + i, file_sizes[slot]))
                w.space.set_device_granularity(w.paths[slot], devices[i])
                w.open_source(slot)
            w.open_source("temp")  # empty; part_map grows it
        if self.reserved:
            rsv_pages = min(rsv_pages, arena_pages - 4)
            self.both(
                "reserve",
                lambda w: self._reserve(w, rsv_pages, rsv_at),
            )
            assert self.sim.rsv is not None and self.mm.rsv is not None
            self.configured = (self.sim.rsv.addr - self.sim.low, self.sim.rsv.size)
        for w in (self.sim, self.mm):
            w.pset = PmemSet(
                Config(required, reservation=w.rsv, event_callback=w.on_event, address_space=w.space)
            )
        self.both(
            "set_contiguous_part_coalescing", lambda w: w.set.set_contiguous_part_coalescing(coalescing)
        )
        for slot, offset, length in initial:
            self.map_new_part(slot, ("pages", offset), ("pages", length - 1))

    @staticmethod
    def _reserve(w: World, pages: int, at: int | None) -> Reservation:
        w.rsv = w.space.reserve(pages * PAGE, None if at is None else w.low + at * PAGE)
        return w.rsv

    def teardown(self) -> None:
        """Close the sets, the sources and the spaces; nothing may be left behind."""
        if self.sim is None or self.mm is None or self.directory is None:
            return
        leftovers: list[str] = []
        try:
            for w in (self.sim, self.mm):
                if w.pset is None:
                    continue
                w.pset.close()
                w.space._check()
                left = [r for r in w.space.reservations() if r is not w.rsv]
                if left:
                    leftovers.append(f"{w.name}: closing the set left reservations {left}")
                if w.rsv is not None:
                    if w.rsv.released or (w.rsv.addr - w.low, w.rsv.size) != self.configured:
                        leftovers.append(f"{w.name}: the configured reservation changed: {w.rsv}")
                    w.space.release(w.rsv)
                for occ in w.space.occupied():
                    w.space.free(occ.addr)
                if w.space.reservations():
                    leftovers.append(f"{w.name}: reservations left {w.space.reservations()}")
                w.space._check()
        finally:
            for w in (self.sim, self.mm):
                if w.pset is not None:
                    w.pset.close()
                for src in w.every_source:
                    src.delete()
                if w.borrowed_fd >= 0:
                    os.close(w.borrowed_fd)
            assert isinstance(self.mm.space, MmapAddressSpace)
            self.mm.space.close()
            shutil.rmtree(self.directory, ignore_errors=True)
        mapped = [v for v in proc_maps() if v.path.startswith(self.directory)]
        assert not mapped, f"file mappings left behind: {mapped}"
        fds = len(os.listdir("/proc/self/fd"))
        assert fds == self.fds_at_start, f"{fds - self.fds_at_start} file descriptor(s) leaked"
        assert not leftovers, "; ".join(leftovers)

    # -- helpers -------------------------------------------------------------------------------

    @property
    def worlds(self) -> tuple[World, World]:
        assert self.sim is not None and self.mm is not None
        return self.sim, self.mm

    def both(self, what: str, call: Callable[[World], Any]) -> tuple[tuple[Any, ...], Any, Any]:
        """Run ``call`` on both worlds; assert the same outcome; return it and the raw results."""
        sim, mm = self.worlds
        out_sim, raw_sim = _outcome(lambda: call(sim), sim.norm)
        out_mm, raw_mm = _outcome(lambda: call(mm), mm.norm)
        assert out_sim == out_mm, (
            f"{what}: the backends disagree\n  sim:  {_short(out_sim)}\n  mmap: {_short(out_mm)}"
        )
        return out_sim, raw_sim, raw_mm

    def pair(self, label: str, out: tuple[Any, ...], raw_sim: Any, raw_mm: Any) -> Any:
        """A bundle entry for a call that returned an object on both backends (else nothing)."""
        if out[0] != "ok" or raw_sim is None:
            return multiple()
        self.counter += 1
        return _Pair(f"{label}{self.counter}", raw_sim, raw_mm)

    def rel(self, where: tuple[str, int, int]) -> int:
        """The address ``where`` names, relative to ``space.low`` (the same on both backends)."""
        kind, i, n = where
        sim, _ = self.worlds
        descs = sim.set.descriptors()
        if kind == "space" or not descs:
            return i * PAGE + n % PAGE
        d = descs[i % len(descs)]
        start = d.addr - sim.low
        if kind == "in":
            return start + n % d.size
        if kind == "piece":
            pieces = [m for rec in sim.set._maps if rec.addr == d.addr for m in rec.mappings]
            return pieces[(n // 64) % len(pieces)].addr - sim.low + n % 64
        if kind == "end":
            return start + d.size + n % 256 - 128
        return start + n - 2 * PAGE

    @staticmethod
    def at(w: World, rel: int) -> int:
        return max(w.low + rel, 0)

    # -- parts --------------------------------------------------------------------------------------

    @rule(target=parts, slot=st.sampled_from(SLOTS), offset=_offset, length=_length)
    def part_new(self, slot: str, offset: tuple[str, int], length: tuple[str, int]) -> Any:
        n = _resolve_length(length)
        off = _tame_growth(slot, _resolve_offset(offset), n)
        out, a, b = self.both(
            f"part_new({slot}, {off:#x}, {n:#x})", lambda w: w.set.part_new(w.sources[slot], off, n)
        )
        return self.pair("part", out, a, b)

    @rule(target=parts, slot=st.sampled_from(SLOTS), offset=_offset, length=_length)
    def map_new_part(self, slot: str, offset: tuple[str, int], length: tuple[str, int]) -> Any:
        """part_new + part_map in one step; a part that could not be mapped goes to the bundle."""
        out = self.part_new(slot, offset, length)
        if not isinstance(out, _Pair):
            return out
        res, _, _ = self.both(
            f"part_map({out})", lambda w: w.set.part_map(out.sim if w is self.sim else out.mm)
        )
        return multiple() if res[0] == "ok" else out

    @rule(
        slot=st.sampled_from(SLOTS),
        first=st.integers(0, 7),
        count=st.integers(2, 4),
        mode=st.sampled_from([Coalescing.FULL, Coalescing.OPPORTUNISTIC]),
    )
    def map_run(self, slot: str, first: int, count: int, mode: Coalescing) -> None:
        """Switch coalescing on and map ``count`` one-page parts in a row: one part map of
        several file mappings, which remove_range can then shrink or split."""
        self.set_coalescing(mode)
        for page in range(first, first + count):
            self.map_new_part(slot, ("pages", page), ("pages", 0))

    @rule(part=parts)
    def part_map(self, part: _Pair) -> None:
        """Map a part (consumed parts stay in the bundle: mapping them again is refused on both)."""
        self.both(f"part_map({part})", lambda w: w.set.part_map(part.sim if w is self.sim else part.mm))

    @rule(part=consumes(parts))
    def part_delete(self, part: _Pair) -> None:
        self.both(f"part_delete({part})", lambda w: (part.sim if w is self.sim else part.mm).delete())

    @rule(
        slot=st.sampled_from(SLOTS),
        reopen=st.sampled_from([False] * 3 + [True]),
        size=st.one_of(st.integers(0, 12).map(lambda p: p * PAGE), st.integers(0, 12 * PAGE)),
    )
    def file_event(self, slot: str, reopen: bool, size: int) -> None:
        """Another program changes a file's size under the mappings (reads past EOF give
        zeros, stores past EOF grow it back), or the source is deleted and its file opened
        again (parts still waiting on the deleted source are refused)."""
        if reopen:
            self.both(f"reopen({slot})", lambda w: (w.sources[slot].delete(), w.open_source(slot))[1].size())
        else:
            self.both(f"truncate({slot}, {size:#x})", lambda w: w.truncate(slot, size))

    # -- coalescing ---------------------------------------------------------------------------------

    @rule(value=st.sampled_from([*Coalescing, 3]))
    def set_coalescing(self, value: int) -> None:
        self.both(
            f"set_contiguous_part_coalescing({value})", lambda w: w.set.set_contiguous_part_coalescing(value)
        )

    # -- part map references --------------------------------------------------------------------------

    def _pm(self, w: World, pm: _Pair) -> PartMap:
        return pm.sim if w is self.sim else pm.mm

    @rule(target=pmaps)
    def first_part_map(self) -> Any:
        out, a, b = self.both("first_part_map()", lambda w: w.set.first_part_map())
        return self.pair("pmap", out, a, b)

    @rule(target=pmaps, pm=pmaps)
    def next_part_map(self, pm: _Pair) -> Any:
        out, a, b = self.both(f"next_part_map({pm})", lambda w: w.set.next_part_map(self._pm(w, pm)))
        return self.pair("pmap", out, a, b)

    @precondition(_has_maps)
    @rule(target=pmaps, where=_where)
    def part_map_by_address(self, where: tuple[str, int, int]) -> Any:
        rel = self.rel(where)
        out, a, b = self.both(
            f"part_map_by_address(low+{rel:#x})", lambda w: w.set.part_map_by_address(self.at(w, rel))
        )
        return self.pair("pmap", out, a, b)

    @rule(pm=pmaps)
    def descriptor(self, pm: _Pair) -> None:
        self.both(f"{pm}.descriptor", lambda w: self._pm(w, pm).descriptor)

    @rule(pm=consumes(pmaps))
    def drop(self, pm: _Pair) -> None:
        self.both(f"{pm}.drop()", lambda w: self._pm(w, pm).drop())

    # -- removal -----------------------------------------------------------------------------------

    @rule(pm=pmaps)
    def remove_part_map(self, pm: _Pair) -> None:
        self.both(f"remove_part_map({pm})", lambda w: w.set.remove_part_map(self._pm(w, pm)))

    @precondition(_has_maps)
    @rule(where=_where)
    def remove_by_address(self, where: tuple[str, int, int]) -> None:
        """by_address + remove_part_map, dropping the reference when the removal is refused."""
        rel = self.rel(where)
        out, a, b = self.both(
            f"part_map_by_address(low+{rel:#x})", lambda w: w.set.part_map_by_address(self.at(w, rel))
        )
        if out[0] != "ok":
            return
        refs = {"sim": a, "mmap": b}
        out, _, _ = self.both(
            f"remove_part_map(by address low+{rel:#x})", lambda w: w.set.remove_part_map(refs[w.name])
        )
        if out[0] != "ok":
            self.both("drop()", lambda w: refs[w.name].drop())

    @precondition(_has_maps)
    @rule(where=_where, length=_span)
    def remove_range(self, where: tuple[str, int, int], length: int) -> None:
        rel = self.rel(where)
        self.both(
            f"remove_range(low+{rel:#x}, {length:#x})", lambda w: w.set.remove_range(self.at(w, rel), length)
        )

    # -- memory -------------------------------------------------------------------------------------

    @precondition(_has_maps)
    @rule(where=_where, n=_span, seed=st.integers(0, 255), flags=_mem_flags, persist=st.booleans())
    def memcpy(self, where: tuple[str, int, int], n: int, seed: int, flags: int, persist: bool) -> None:
        rel = self.rel(where)
        data = _pattern(seed, min(n, 4 * PAGE))
        self.both(
            f"memcpy(low+{rel:#x}, {len(data)} bytes, flags={flags:#x})",
            lambda w: w.set.memcpy(self.at(w, rel), data, flags=flags) - w.low,
        )
        if persist:
            self.both(f"persist(low+{rel:#x}, {n:#x})", lambda w: w.set.persist(self.at(w, rel), n))

    @precondition(_has_maps)
    @rule(where=_where, n=_span, seed=st.integers(0, 255))
    def write(self, where: tuple[str, int, int], n: int, seed: int) -> None:
        rel = self.rel(where)
        data = _pattern(seed, min(n, 4 * PAGE))
        self.both(f"write(low+{rel:#x}, {len(data)} bytes)", lambda w: w.set.write(self.at(w, rel), data))

    @precondition(_has_maps)
    @rule(where=_where, n=_span)
    def read(self, where: tuple[str, int, int], n: int) -> None:
        rel = self.rel(where)
        self.both(f"read(low+{rel:#x}, {n:#x})", lambda w: w.set.read(self.at(w, rel), n))

    @precondition(_has_maps)
    @rule(dest=_where, src=_where, n=_span, value=st.integers(0, 255), flags=_mem_flags)
    def memmove_memset(
        self, dest: tuple[str, int, int], src: tuple[str, int, int], n: int, value: int, flags: int
    ) -> None:
        """memmove between two addresses of the set (may overlap), then memset, flush, drain."""
        d, s = self.rel(dest), self.rel(src)
        n = min(n, 4 * PAGE) if n != SIZE_MAX else n
        self.both(
            f"memmove(low+{d:#x}, low+{s:#x}, {n:#x})",
            lambda w: w.set.memmove(self.at(w, d), self.at(w, s), n, flags=flags) - w.low,
        )
        self.both(
            f"memset(low+{s:#x}, {value}, {n:#x})",
            lambda w: w.set.memset(self.at(w, s), value, n, flags=flags) - w.low,
        )
        self.both(f"flush(low+{d:#x}, {n:#x})", lambda w: w.set.flush(self.at(w, d), n))
        self.both("drain()", lambda w: w.set.drain())

    # -- the address space ----------------------------------------------------------------------------

    @rule(
        action=st.sampled_from(["after-map"] * 3 + ["space"] * 2 + ["free"] * 2),
        i=st.integers(0, 50),
        pages=st.integers(0, 8),
        unaligned=st.sampled_from([0] * 9 + [100]),
    )
    def occupy_or_free(self, action: str, i: int, pages: int, unaligned: int) -> None:
        """A foreign mapping (``occupy``) right after a part map (``i % 4`` pages after the end of
        part map ``i``) or ``i`` pages from ``space.low`` — overlapping, past the end or unaligned
        ranges are refused — or ``free`` of an occupied range (or of an address holding none)."""
        sim, _ = self.worlds
        descs = sim.set.descriptors()
        if action == "free":
            occ = sim.space.occupied()
            rel = occ[i % len(occ)].addr - sim.low if occ and i % 5 else i * PAGE
            self.both(f"free(low+{rel:#x})", lambda w: w.space.free(self.at(w, rel)))
            return
        if action == "after-map" and descs:
            rel = descs[i % len(descs)].end - sim.low + (i % 4) * PAGE + unaligned
        else:
            rel = i * PAGE + unaligned
        self.both(
            f"occupy(low+{rel:#x}, {pages} pages)", lambda w: w.space.occupy(self.at(w, rel), pages * PAGE)
        )

    # -- invariants ---------------------------------------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        if self.sim is None or self.sim.pset is None:
            return
        sim, mm = self.worlds
        for w in (sim, mm):
            w.set._check()
            w.space._check()
        a, b = sim.observe(), mm.observe()
        for key in a:
            if key in ("contents", "files") and a[key] != b[key]:
                raise AssertionError(f"{key} differ: {_first_difference(a[key], b[key])} (sim vs mmap)")
            assert a[key] == b[key], f"{key} differ\n  sim:  {_short(a[key])}\n  mmap: {_short(b[key])}"
        if self.configured is not None:
            for w in (sim, mm):
                assert w.rsv is not None and not w.rsv.released
                assert (w.rsv.addr - w.low, w.rsv.size) == self.configured, f"{w.name}: {w.rsv} changed"
        sim.events.clear()
        mm.events.clear()


class DifferentialReservedMachine(DifferentialMachine):
    """The same, with a reservation configured at the start (``space.reserve(n)`` on both)."""

    reserved = True


DifferentialMachine.TestCase.settings = settings(
    DifferentialMachine.TestCase.settings, stateful_step_count=40
)
DifferentialReservedMachine.TestCase.settings = settings(
    DifferentialReservedMachine.TestCase.settings, stateful_step_count=40
)
TestDifferential = DifferentialMachine.TestCase
TestDifferentialReserved = DifferentialReservedMachine.TestCase


# -- issue 4, "Bad input", on the mmap backend -----------------------------------------------------


@pytest.fixture
def mspace() -> Any:
    sp = MmapAddressSpace()
    yield sp
    sp._check()
    sp.close()


def _maps_lines() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _refused(
    pset: PmemSet, space: MmapAddressSpace, call: Callable[[], Any], code: int, *says: str
) -> PmemsetError:
    """``call()`` raises PmemsetError ``code`` whose message names ``says``, and no mapping,
    reservation or set state is left behind (``/proc/self/maps`` has as many lines as before)."""
    lines = _maps_lines()
    rsvs = [(r.addr, r.size) for r in space.reservations()]
    descs = pset.descriptors()
    with pytest.raises(PmemsetError) as info:
        call()
    exc = info.value
    assert exc.code == code, f"expected {code}, got {exc!r}"
    for word in says:
        assert word in str(exc), f"{exc} does not say {word!r}"
    assert _maps_lines() == lines, "a mapping leaked"
    assert [(r.addr, r.size) for r in space.reservations()] == rsvs
    assert pset.descriptors() == descs
    space._check()
    return exc


def test_huge_length_is_enomem_when_the_space_cannot_hold_it(mspace, make_file):
    """part_map: the place is chosen (step 6) before the file is mapped (step 8), so a length
    of 2**40 bytes and more fails with -ENOMEM in the default 64 GiB arena, before the file's
    size is looked at; a page-unaligned one with LENGTH_UNALIGNED (step 6 too)."""
    path = make_file(4 * PAGE)
    with PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset, Source.from_file(path) as src:
        for length in (1 << 40, 1 << 47, 1 << 62, SIZE_MAX + 1 - PAGE):
            part = pset.part_new(src, 0, length)
            exc = _refused(pset, mspace, lambda p=part: pset.part_map(p), ErrorCode.ENOMEM, f"{length:#x}")
            assert exc.name == "ENOMEM" and exc.errno == errno.ENOMEM
            assert not part.consumed
        _refused(
            pset,
            mspace,
            lambda: pset.part_map(pset.part_new(src, 0, SIZE_MAX)),
            ErrorCode.LENGTH_UNALIGNED,
            str(SIZE_MAX),
        )
        # The set is still usable and the file untouched.
        d = pset.part_map(pset.part_new(src, 0, 0))
        assert d.size == 4 * PAGE
    assert os.path.getsize(path) == 4 * PAGE


def test_huge_length_is_invalid_pmem2_map_when_the_space_holds_it(make_file):
    """With an arena larger than the part, the reservation succeeds and mapping the 16 KiB file
    for 2**40 bytes fails (step 8): INVALID_PMEM2_MAP, reservation released again."""
    path = make_file(4 * PAGE)
    try:
        space = MmapAddressSpace(4 << 40)  # PROT_NONE + MAP_NORESERVE: address space only
    except OSError as exc:  # pragma: no cover - e.g. RLIMIT_AS in some CI containers
        pytest.skip(f"cannot set aside 4 TiB of address space: {exc}")
    try:
        with PmemSet(Config(Granularity.PAGE, address_space=space)) as pset, Source.from_file(path) as src:
            part = pset.part_new(src, 0, 1 << 40)
            _refused(
                pset, space, lambda: pset.part_map(part), ErrorCode.INVALID_PMEM2_MAP, "16384", str(1 << 40)
            )
            assert space.reservations() == []
    finally:
        space.close()


def test_growth_of_a_source_is_undone_when_the_part_cannot_be_placed(make_file):
    """TRUNCATE_IF_NEEDED grows the file first (step 2, preallocating the new blocks); the
    failure that follows (here -ENOMEM: an 8-page arena cannot hold 16 pages) shrinks it back.

    Not with a length of 2**40 here: part_map would really try to allocate 1 TiB of disk (see
    ``Source._truncate``) and only fail once the file system is full.
    """
    path = make_file(2 * PAGE, fill=b"g")
    space = MmapAddressSpace(8 * PAGE)
    try:
        with (
            PmemSet(Config(Granularity.PAGE, address_space=space)) as pset,
            Source.xfrom_file(path, SourceFlags.TRUNCATE_IF_NEEDED) as src,
        ):
            _refused(pset, space, lambda: pset.part_map(pset.part_new(src, 0, 16 * PAGE)), ErrorCode.ENOMEM)
            assert os.path.getsize(path) == 2 * PAGE
            assert os.stat(path).st_blocks * 512 <= 3 * PAGE  # the preallocated blocks went too
    finally:
        space.close()
    with open(path, "rb") as f:
        assert f.read() == b"g" * 2 * PAGE


@pytest.mark.parametrize("length", [SIZE_MAX + 1 - PAGE, SIZE_MAX], ids=["page-aligned", "SIZE_MAX"])
def test_growth_beyond_any_file_size_cannot_truncate(mspace, make_file, length):
    """offset + length above INT64_MAX is a size no file can have: CANNOT_TRUNCATE_SOURCE_FILE
    (EFBIG), refused before the file is touched."""
    path = make_file(2 * PAGE, fill=b"g")
    with (
        PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset,
        Source.xfrom_file(path, SourceFlags.TRUNCATE_IF_NEEDED) as src,
    ):
        exc = _refused(
            pset,
            mspace,
            lambda: pset.part_map(pset.part_new(src, 0, length)),
            ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE,
            str(length),
        )
        assert exc.errno == errno.EFBIG
        assert os.path.getsize(path) == 2 * PAGE
    with open(path, "rb") as f:
        assert f.read() == b"g" * 2 * PAGE


def test_huge_length_in_a_configured_reservation_cannot_fit(mspace, make_file):
    path = make_file(4 * PAGE)
    rsv = mspace.reserve(8 * PAGE)
    with (
        PmemSet(Config(Granularity.PAGE, reservation=rsv, address_space=mspace)) as pset,
        Source.from_file(path) as src,
    ):
        _refused(
            pset, mspace, lambda: pset.part_map(pset.part_new(src, 0, 1 << 40)), ErrorCode.CANNOT_FIT_PART_MAP
        )
    assert (rsv.addr, rsv.size, rsv.released) == (mspace.low, 8 * PAGE, False)
    mspace.release(rsv)


@pytest.mark.parametrize(
    ("offset", "length", "says"),
    [
        (8 * PAGE, PAGE, ["16384", "32768"]),  # the part starts past the end
        (3 * PAGE, 2 * PAGE, ["16384", "12288"]),  # it starts inside and ends past the end
        (8 * PAGE, 0, ["16384", "32768"]),  # the whole source, from past its end
        (4 * PAGE, 0, ["16384"]),  # the whole source, from exactly its end
        (PAGE + 1, PAGE, ["4097", "page size"]),  # unaligned offset
        ((1 << 63) - PAGE, PAGE, [str((1 << 63) - PAGE)]),  # a valid off_t far past the end
    ],
    ids=["past-end", "straddles-end", "whole-from-past-end", "whole-from-end", "unaligned", "far"],
)
def test_offset_past_the_end_of_the_file(mspace, make_file, offset, length, says):
    """The file is shorter than offset + length (or the offset is unaligned): INVALID_PMEM2_MAP
    (step 8), after a reservation was made (step 6) and released again."""
    path = make_file(4 * PAGE)
    with PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset, Source.from_file(path) as src:
        part = pset.part_new(src, offset, length)
        _refused(pset, mspace, lambda: pset.part_map(part), ErrorCode.INVALID_PMEM2_MAP, *says)
        assert not part.consumed and mspace.reservations() == []
    assert os.path.getsize(path) == 4 * PAGE


def test_offset_above_int64_max_is_invalid_offset_value(mspace, make_file):
    path = make_file(4 * PAGE)
    with PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset, Source.from_file(path) as src:
        _refused(
            pset,
            mspace,
            lambda: pset.part_map(pset.part_new(src, 1 << 63, PAGE)),
            ErrorCode.INVALID_OFFSET_VALUE,
            "INT64_MAX",
        )


def test_negative_offset_and_length_are_refused(mspace, make_file):
    path = make_file(4 * PAGE)
    lines = _maps_lines()
    with PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset, Source.from_file(path) as src:
        for off, n in ((-1, 0), (0, -PAGE), (-PAGE, PAGE)):
            with pytest.raises(ValueError, match="negative"):
                pset.part_new(src, off, n)
        assert pset.descriptors() == [] and mspace.reservations() == []
    assert _maps_lines() == lines


def test_read_only_descriptor_is_invalid_pmem2_map(mspace, make_file):
    """A descriptor opened O_RDONLY cannot back a shared writable mapping: mmap(2) says EACCES
    (root or not: it is the descriptor's mode, not the file's permission bits)."""
    path = make_file(4 * PAGE, fill=b"r")
    fd = os.open(path, os.O_RDONLY)
    try:
        fds = _fd_count()
        with PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset:
            src = Source.from_fd(fd)
            part = pset.part_new(src, 0, 0)
            exc = _refused(
                pset, mspace, lambda: pset.part_map(part), ErrorCode.INVALID_PMEM2_MAP, "Permission denied"
            )
            assert exc.errno == errno.EACCES
            assert not part.consumed and mspace.reservations() == []
            src.delete()
        assert _fd_count() == fds
        os.fstat(fd)  # borrowed: still open
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == b"r" * 4 * PAGE


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(os.O_RDONLY, id="O_RDONLY"),
        pytest.param(os.O_WRONLY, id="O_WRONLY"),
    ],
)
def test_descriptor_without_read_write_access_is_refused_alike_on_both_backends(make_file, mode):
    """A shared writable mapping needs a descriptor open O_RDWR: INVALID_PMEM2_MAP (EACCES)
    on both backends, before anything is mapped."""
    path = make_file(4 * PAGE)
    outcomes = []
    for space in (SimulatedAddressSpace(PAGE), MmapAddressSpace()):
        fd = os.open(path, mode)
        try:
            with PmemSet(Config(Granularity.PAGE, address_space=space)) as pset, Source.from_fd(fd) as src:
                outcomes.append(
                    _outcome(lambda: pset.part_map(pset.part_new(src, 0, PAGE)), lambda d: d.size)[0]
                )
        finally:
            os.close(fd)
            if isinstance(space, MmapAddressSpace):
                space.close()
    assert outcomes[1] == ("PmemsetError", "PMEMSET_E_INVALID_PMEM2_MAP", errno.EACCES)
    assert outcomes[0] == outcomes[1], f"sim {outcomes[0]} != mmap {outcomes[1]}"


def _borrowed_fd_on_both(path: str, flags: int, body: Callable[[PmemSet, Source, int], Any]) -> list[Any]:
    """Run ``body(pset, source, fd)`` on each backend with a fresh descriptor of ``path``."""
    results = []
    with open(path, "rb") as f:
        original = f.read()
    for space in (SimulatedAddressSpace(PAGE), MmapAddressSpace()):
        with open(path, "wb") as f:
            f.write(original)
        fd = os.open(path, flags)
        try:
            with PmemSet(Config(Granularity.PAGE, address_space=space)) as pset, Source.from_fd(fd) as src:
                results.append(body(pset, src, fd))
        finally:
            os.close(fd)
            if isinstance(space, MmapAddressSpace):
                space.close()
    return results


def test_append_only_descriptor_stores_in_place_on_both_backends(make_file):
    """Stores through a part map of an O_APPEND descriptor land where they were made on both
    backends (the simulator's write()/pwrite() on the borrowed descriptor used to append)."""
    path = make_file(4 * PAGE, fill=b"x")

    def body(pset: PmemSet, src: Source, fd: int) -> Any:
        d = pset.part_map(pset.part_new(src, 0, 2 * PAGE))
        pset.memcpy(d.addr + 10, b"HELLO")
        return pset.read(d.addr + 8, 9), os.fstat(fd).st_size

    sim, mm = _borrowed_fd_on_both(path, os.O_RDWR | os.O_APPEND, body)
    assert mm == (b"xxHELLOxx", 4 * PAGE)
    assert sim == mm, f"sim {sim} != mmap {mm}"


def test_borrowed_descriptor_position_is_left_alone_on_both_backends(make_file):
    """Neither backend moves the file position of a descriptor it borrowed (the simulator
    used to lseek() it for every load and store)."""
    path = make_file(4 * PAGE, fill=b"x")

    def body(pset: PmemSet, src: Source, fd: int) -> Any:
        os.lseek(fd, 7, os.SEEK_SET)
        d = pset.part_map(pset.part_new(src, PAGE, 2 * PAGE))
        pset.memcpy(d.addr + 10, b"HELLO")
        pset.read(d.addr, 100)
        return os.lseek(fd, 0, os.SEEK_CUR)

    sim, mm = _borrowed_fd_on_both(path, os.O_RDWR, body)
    assert mm == 7
    assert sim == mm, f"sim leaves the position at {sim}, mmap at {mm}"


def test_directory_instead_of_a_file(mspace, tmp_path):
    """A directory never becomes a source: by path the OS refuses to open it read-write
    (-EISDIR, the contract: "other OS failures → -errno"); by descriptor it is not a regular
    file (INVALID_SOURCE_TYPE). Nothing is mapped, no descriptor leaks."""
    d = tmp_path / "adir"
    d.mkdir()
    lines, fds = _maps_lines(), _fd_count()
    with pytest.raises(PmemsetError) as info:
        Source.from_file(d)
    assert info.value.code == -errno.EISDIR and info.value.name == "EISDIR"
    assert "adir" in str(info.value) and "Is a directory" in str(info.value)
    with pytest.raises(PmemsetError) as info:
        Source.xfrom_file(d, SourceFlags.TRUNCATE_IF_NEEDED)
    assert info.value.code == -errno.EISDIR
    dfd = os.open(d, os.O_RDONLY)
    try:
        with pytest.raises(PmemsetError) as info:
            Source.from_fd(dfd)
        assert info.value.code == ErrorCode.INVALID_SOURCE_TYPE
        assert "not a regular file" in str(info.value)
        os.fstat(dfd)  # the caller's descriptor is left open
    finally:
        os.close(dfd)
    assert _maps_lines() == lines and _fd_count() == fds
    assert mspace.reservations() == [] and d.is_dir()


def test_source_whose_file_was_unlinked_still_maps(mspace, tmp_path):
    """The descriptor keeps the inode alive: the part maps, stores land in it and read back,
    and once the set and the source are gone nothing of the deleted file stays mapped."""
    path = tmp_path / "gone.pmem"
    path.write_bytes(b"u" * 4 * PAGE)
    lines, fds = _maps_lines(), _fd_count()
    src = Source.from_file(path)
    os.unlink(path)
    with PmemSet(Config(Granularity.PAGE, address_space=mspace)) as pset:
        d = pset.part_map(pset.part_new(src, PAGE, 2 * PAGE))
        assert d.size == 2 * PAGE
        assert [v.path for v in proc_maps() if v.start == d.addr] == [f"{path} (deleted)"]
        assert pset.read(d.addr, 4) == b"uuuu"
        pset.memcpy(d.addr + 10, b"still here")
        pset.persist(d.addr + 10, 10)
        fd = src.file.fd
        assert os.pread(fd, 10, PAGE + 10) == b"still here"
        # Whole-source and past-the-end parts behave as for a linked file.
        whole = pset.part_map(pset.part_new(src, 0, 0))
        assert whole.size == 4 * PAGE
        _refused(
            pset,
            mspace,
            lambda: pset.part_map(pset.part_new(src, 4 * PAGE, PAGE)),
            ErrorCode.INVALID_PMEM2_MAP,
        )
        mspace._check()
    src.delete()
    assert not any(v.path.startswith(str(path)) for v in proc_maps())
    assert _maps_lines() == lines and _fd_count() == fds
    assert mspace.reservations() == []
