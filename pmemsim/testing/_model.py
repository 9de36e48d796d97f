"""A reference model of a set and its address space, for :class:`PmemsetStateMachine`.

It is a second, deliberately plain implementation of the part_map algorithm and the
address-space rules (docs/design.md): lists instead
of interval maps, linear scans instead of bisection, written from the contract rather
than from :mod:`pmemsim.pmemset`. For each call it predicts the outcome (the error code,
or the descriptor and the new state) before the real call runs; the machine compares.
Fault sites are modelled as "armed": the machine arms a site with ``fail_next`` and the
model disarms it when its prediction reaches that site.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pmemsim.addrspace.base import Placement
from pmemsim.enums import Coalescing, Granularity
from pmemsim.errors import ErrorCode
from pmemsim.faults import FaultSite

INT64_MAX = (1 << 63) - 1
MAX_FILE_SIZE = (1 << 63) - 1


@dataclass(eq=False)
class FileModel:
    """A file's expected bytes (its size is ``len(data)``) and its device granularity."""

    name: str
    data: bytearray
    device: Granularity = Granularity.PAGE


@dataclass(eq=False)
class RsvModel:
    """A reservation: the set's own, the configured one, or a foreign one."""

    addr: int
    end: int
    kind: str  # "own" | "configured" | "foreign"


@dataclass(eq=False)
class Piece:
    """One part mapped at ``[addr, addr+length)`` from ``file`` at ``offset``."""

    addr: int
    length: int
    file: FileModel
    offset: int

    @property
    def end(self) -> int:
        return self.addr + self.length


@dataclass(eq=False)
class MapModel:
    """A part map: contiguous pieces in one reservation, with its reference count."""

    pieces: list[Piece]
    rsv: RsvModel
    refs: int = 0

    @property
    def addr(self) -> int:
        return self.pieces[0].addr

    @property
    def end(self) -> int:
        return self.pieces[-1].end

    @property
    def desc(self) -> tuple[int, int]:
        return (self.addr, self.end - self.addr)


@dataclass
class Prediction:
    """What a call should do: fail with ``error`` (an ErrorCode, or an exception type), or succeed.

    ``fired`` lists the fault sites the call reaches while armed; ``apply`` (on success)
    updates the model and returns what the call should return.
    """

    error: ErrorCode | type[Exception] | None
    fired: list[FaultSite] = field(default_factory=list)
    apply: Callable[[], object] | None = None


class _Faults:
    """The armed sites as one prediction consumes them."""

    def __init__(self, armed: set[FaultSite]) -> None:
        self.armed = set(armed)
        self.fired: list[FaultSite] = []

    def hit(self, site: FaultSite) -> bool:
        if site in self.armed:
            self.armed.discard(site)
            self.fired.append(site)
            return True
        return False


class SetModel:
    """The expected state of one set on one address space."""

    def __init__(
        self,
        *,
        page_size: int,
        low: int,
        high: int,
        placement: Placement,
        granularity: Granularity,
        supported: frozenset[Granularity],
    ) -> None:
        self.page_size = page_size
        self.low = low
        self.high = high
        self.placement = placement
        self.granularity = granularity
        self.supported = supported
        self.rsvs: list[RsvModel] = []
        self.occupied: list[tuple[int, int]] = []
        self.maps: list[MapModel] = []
        self.anchor: MapModel | None = None
        self.effective: Granularity | None = None
        self.coalescing = Coalescing.NONE
        self.armed: set[FaultSite] = set()
        self.configured: RsvModel | None = None

    # -- the address space -------------------------------------------------------------

    def taken(self) -> list[tuple[int, int]]:
        """Every reservation and occupied range as sorted ``(start, end)`` pairs."""
        ranges = [(r.addr, r.end) for r in self.rsvs] + [(a, a + n) for a, n in self.occupied]
        return sorted(ranges)

    def space_is_free(self, addr: int, end: int) -> bool:
        """Nothing reserved or occupied in ``[addr, end)``, and inside the space."""
        if addr < self.low or end > self.high:
            return False
        return all(e <= addr or s >= end for s, e in self.taken())

    def place(self, size: int) -> int | None:
        """Where the placement policy puts a new reservation of ``size`` bytes."""
        gaps: list[tuple[int, int]] = []
        cur = self.low
        for s, e in self.taken():
            if s > cur:
                gaps.append((cur, s))
            cur = max(cur, e)
        if cur < self.high:
            gaps.append((cur, self.high))
        fits = [(s, e) for s, e in gaps if e - s >= size]
        if not fits:
            return None
        if self.placement is Placement.BOTTOM_UP:
            return fits[0][0]
        return fits[-1][1] - size

    def reserve(self, size: int, kind: str, addr: int | None = None) -> RsvModel:
        """Record a new reservation (the caller checked it fits)."""
        start = self.place(size) if addr is None else addr
        assert start is not None
        rsv = RsvModel(start, start + size, kind)
        self.rsvs.append(rsv)
        return rsv

    # -- part maps -----------------------------------------------------------------------

    def pieces_in(self, rsv: RsvModel) -> list[Piece]:
        return sorted((p for m in self.maps if m.rsv is rsv for p in m.pieces), key=lambda p: p.addr)

    def rsv_is_free(self, rsv: RsvModel, addr: int, end: int) -> bool:
        """``[addr, end)`` is inside ``rsv`` and holds no piece."""
        if addr < rsv.addr or end > rsv.end:
            return False
        return all(p.end <= addr or p.addr >= end for p in self.pieces_in(rsv))

    def rsv_first_fit(self, rsv: RsvModel, length: int) -> int | None:
        cur = rsv.addr
        for p in self.pieces_in(rsv):
            if p.addr - cur >= length:
                return cur
            cur = max(cur, p.end)
        return cur if rsv.end - cur >= length else None

    def map_at(self, addr: int) -> MapModel | None:
        for m in self.maps:
            if m.addr <= addr < m.end:
                return m
        return None

    def _coalesce(self, anchor: MapModel, length: int) -> tuple[bool, int]:
        """Whether the part fits right after ``anchor``, and how far its reservation must grow."""
        rsv = anchor.rsv
        start, end = anchor.end, anchor.end + length
        if rsv.kind == "configured":
            return self.rsv_is_free(rsv, start, end), 0
        inside = min(end, rsv.end)
        if inside > start and not self.rsv_is_free(rsv, start, inside):
            return False, 0
        if end > rsv.end:
            if not self.space_is_free(rsv.end, end):
                return False, 0
            return True, end - rsv.end
        return True, 0

    def predict_map(self, file: FileModel, grows: bool, offset: int, length: int) -> Prediction:
        """part_map step by step, for a part of ``file`` (``grows``: TRUNCATE_IF_NEEDED/temporary)."""
        faults = _Faults(self.armed)

        def fail(code: ErrorCode) -> Prediction:
            return Prediction(code, faults.fired)

        size = len(file.data)
        if length == 0:
            length = size
            if length == 0:
                return fail(ErrorCode.INVALID_PMEM2_MAP)
        new_size = size
        if grows and offset + length > size:
            if faults.hit(FaultSite.FILE_TRUNCATE) or offset + length > MAX_FILE_SIZE:
                return fail(ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE)
            new_size = offset + length
        if faults.hit(FaultSite.ALLOC_CONFIG):
            return fail(ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE)
        if offset > INT64_MAX:
            return fail(ErrorCode.INVALID_OFFSET_VALUE)
        if self.granularity not in self.supported or faults.hit(FaultSite.CONFIG_GRANULARITY):
            return fail(ErrorCode.GRANULARITY_NOT_SUPPORTED)
        if length % self.page_size:
            return fail(ErrorCode.LENGTH_UNALIGNED)
        grows_map: MapModel | None = None
        grow_rsv = 0
        addr: int | None = None
        new_rsv_at: int | None = None
        target: RsvModel | None = None
        anchor = self.anchor
        if self.coalescing is not Coalescing.NONE and anchor is not None:
            ok, grow_rsv = self._coalesce(anchor, length)
            if ok:
                grows_map, addr, target = anchor, anchor.end, anchor.rsv
            elif self.coalescing is Coalescing.FULL:
                return fail(ErrorCode.CANNOT_COALESCE_PARTS)
        if addr is None:
            if self.configured is not None:
                addr = self.rsv_first_fit(self.configured, length)
                if addr is None:
                    return fail(ErrorCode.CANNOT_FIT_PART_MAP)
                target = self.configured
            else:
                if faults.hit(FaultSite.VM_RESERVE):
                    return fail(ErrorCode.ENOMEM)
                addr = new_rsv_at = self.place(length)
                if addr is None:
                    return fail(ErrorCode.ENOMEM)
        if grows_map is None and faults.hit(FaultSite.ALLOC_PART_MAP):
            return fail(ErrorCode.ENOMEM)
        if offset % self.page_size or offset + length > new_size:
            return fail(ErrorCode.INVALID_PMEM2_MAP)
        if file.device > self.granularity or faults.hit(FaultSite.MAP_FILE):
            return fail(ErrorCode.INVALID_PMEM2_MAP)
        if self.effective is not None and file.device != self.effective:
            return fail(ErrorCode.GRANULARITY_MISMATCH)

        def apply() -> tuple[int, int]:
            assert addr is not None
            if new_size > len(file.data):
                file.data.extend(bytes(new_size - len(file.data)))
            piece = Piece(addr, length, file, offset)
            if grows_map is not None:
                grows_map.pieces.append(piece)
                grows_map.rsv.end += grow_rsv
                rec = grows_map
            else:
                rsv = target if target is not None else self.reserve(length, "own", new_rsv_at)
                rec = MapModel([piece], rsv)
                self.maps.append(rec)
                self.maps.sort(key=lambda m: m.addr)
            self.anchor = rec
            self.effective = file.device
            return rec.desc

        return Prediction(None, faults.fired, apply)

    # -- removal ----------------------------------------------------------------------------

    def _forget(self, rec: MapModel) -> None:
        i = self.maps.index(rec)
        del self.maps[i]
        if self.anchor is rec:
            if i > 0:
                self.anchor = self.maps[i - 1]
            elif self.maps:
                self.anchor = self.maps[0]
            else:
                self.anchor = None
        if not self.maps:
            self.effective = None

    def _tidy(self, rsv: RsvModel) -> None:
        if rsv.kind != "own":
            return
        pieces = self.pieces_in(rsv)
        if not pieces:
            self.rsvs.remove(rsv)
            return
        rsv.addr = pieces[0].addr
        rsv.end = max(p.end for p in pieces)

    def predict_remove_part_map(self, rec: MapModel) -> Prediction:
        """``remove_part_map`` through one reference to ``rec``."""
        if rec.refs > 1:
            return Prediction(ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP)

        def apply() -> tuple[int, int]:
            desc = rec.desc
            rec.refs = 0
            self._forget(rec)
            self._tidy(rec.rsv)
            return desc

        return Prediction(None, apply=apply)

    def predict_remove_range(self, addr: int, length: int) -> Prediction:
        """``remove_range(addr, length)``: whole pieces go; maps shrink, split or vanish."""
        end = addr + length
        affected = [m for m in self.maps if length and m.addr < end and m.end > addr]
        if not affected:
            return Prediction(ErrorCode.CANNOT_FIND_PART_MAP)
        if any(m.refs > 0 for m in affected):
            return Prediction(ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP)

        def apply() -> list[tuple[int, int]]:
            removed: list[tuple[int, int]] = []
            for rec in affected:
                gone = [p for p in rec.pieces if p.addr < end and p.end > addr]
                runs: list[list[Piece]] = [[]]
                for p in rec.pieces:
                    if p in gone:
                        if runs[-1]:
                            runs.append([])
                    else:
                        runs[-1].append(p)
                runs = [r for r in runs if r]
                if not runs:
                    self._forget(rec)
                else:
                    rec.pieces = runs[0]
                    for run in runs[1:]:
                        self.maps.append(MapModel(run, rec.rsv))
                    self.maps.sort(key=lambda m: m.addr)
                self._tidy(rec.rsv)
                merged: list[tuple[int, int]] = []
                for p in gone:
                    if merged and merged[-1][1] == p.addr:
                        merged[-1] = (merged[-1][0], p.end)
                    else:
                        merged.append((p.addr, p.end))
                removed += [(s, e - s) for s, e in merged]
            return removed

        return Prediction(None, apply=apply)

    # -- memory -----------------------------------------------------------------------------

    def covered(self, addr: int, length: int) -> bool:
        """Whether ``[addr, addr+length)`` lies in part maps (as the API's range check walks them)."""
        cur, end = addr, addr + length
        while True:
            m = self.map_at(cur)
            if m is None:
                return False
            if m.end >= end:
                return True
            cur = m.end

    def _spans(self, addr: int, length: int) -> list[tuple[FileModel, int, int, int]]:
        """``(file, file offset, position in the buffer, n)`` covering a covered range."""
        out = []
        cur, end = addr, addr + length
        while cur < end:
            m = self.map_at(cur)
            assert m is not None
            p = next(p for p in m.pieces if p.addr <= cur < p.end)
            n = min(p.end, end) - cur
            out.append((p.file, p.offset + cur - p.addr, cur - addr, n))
            cur += n
        return out

    def read(self, addr: int, length: int) -> bytes:
        """The expected bytes of a covered range."""
        buf = bytearray(length)
        for f, off, pos, n in self._spans(addr, length):
            buf[pos : pos + n] = f.data[off : off + n]
        return bytes(buf)

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at a covered range."""
        for f, off, pos, n in self._spans(addr, len(data)):
            f.data[off : off + n] = data[pos : pos + n]
