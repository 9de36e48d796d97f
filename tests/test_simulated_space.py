"""LayoutAddressSpace / SimulatedAddressSpace: placement, reservations, foreign ranges, I/O.

Expectations come from the contract (docs/design.md) and the docstrings, not from running the code:
bottom-up placement is the lowest page that fits, top-down the highest, address 0 is
never handed out, the same calls give the same addresses, and a refused call changes
nothing. Tiny spaces (64-byte pages, a few dozen pages) keep every edge close.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule

from pmemsim import Granularity, Occupied, Placement, Reservation, SimulatedAddressSpace
from pmemsim.addrspace import (
    AddressSpaceError,
    LayoutAddressSpace,
    MapFailed,
    Mapping,
    NotMapped,
    OutOfAddressSpace,
    RangeOccupied,
)
from pmemsim.addrspace.simulated import DEFAULT_LOW

P = 64  # tiny page
LOW = 2 * P
NPAGES = 32
HIGH = LOW + NPAGES * P


@dataclass(frozen=True)
class FileRef:
    fd: int
    path: str | None = None


@pytest.fixture
def tiny() -> Iterator[SimulatedAddressSpace]:
    sp = SimulatedAddressSpace(P, low=LOW, high=HIGH)
    yield sp
    sp._check()


@pytest.fixture
def files(tmp_path) -> Iterator[list[FileRef]]:
    """Three open files of 8 tiny pages each, filled with b"a", b"b", b"c"."""
    refs = []
    for ch in b"abc":
        path = tmp_path / f"{chr(ch)}.bin"
        path.write_bytes(bytes([ch]) * 8 * P)
        refs.append(FileRef(os.open(path, os.O_RDWR), str(path)))
    yield refs
    for r in refs:
        os.close(r.fd)


def layout(sp: LayoutAddressSpace) -> tuple[object, ...]:
    """Everything observable about a space's bookkeeping."""
    return (
        [(r.addr, r.size, [(m.addr, m.length) for m in r.mappings]) for r in sp.reservations()],
        [(o.addr, o.size) for o in sp.occupied()],
        sp.used,
    )


# -- construction -------------------------------------------------------------------------------


def test_defaults_never_hand_out_address_zero() -> None:
    sp = SimulatedAddressSpace()
    assert sp.page_size == 4096
    assert sp.low == DEFAULT_LOW and sp.low > 0 and sp.low % 4096 == 0
    assert sp.placement is Placement.BOTTOM_UP
    assert sp.reserve(4096).addr == sp.low
    with pytest.raises(RangeOccupied):
        sp.reserve(4096, addr=0)
    with pytest.raises(ValueError, match="must not be 0"):
        SimulatedAddressSpace(64, low=0, high=HIGH)
    sp._check()


def test_tiny_page_size_works() -> None:
    sp = SimulatedAddressSpace(64, low=64, high=64 * 4)
    assert [sp.reserve(64).addr for _ in range(3)] == [64, 128, 192]
    with pytest.raises(OutOfAddressSpace):
        sp.reserve(64)
    sp._check()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"page_size": 48}, "power of two"),
        ({"page_size": 3}, "power of two"),
        ({"page_size": 0}, "page_size must be positive"),
        ({"page_size": -64}, "page_size must be positive"),
        ({"low": LOW + 1}, "multiples of page_size 64"),
        ({"high": HIGH - 32}, "multiples of page_size 64"),
        ({"low": HIGH, "high": HIGH}, "must be above low"),
        ({"low": HIGH, "high": LOW}, "must be above low"),
        ({"low": -P}, "low must be non-negative"),
        ({"placement": "sideways"}, "unknown placement 'sideways'"),
        ({"limit": -1}, "limit must be non-negative"),
    ],
)
def test_bad_construction_is_a_clear_value_error(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"page_size": P, "low": LOW, "high": HIGH, **kwargs}
    page = args.pop("page_size")
    with pytest.raises(ValueError, match=match):
        SimulatedAddressSpace(page, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"page_size": 64.0}, {"page_size": True}, {"low": "128"}])
def test_non_int_construction_is_a_type_error(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"page_size": P, "low": LOW, "high": HIGH, **kwargs}
    page = args.pop("page_size")
    with pytest.raises(TypeError, match="must be an int"):
        SimulatedAddressSpace(page, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "addr"), [(P + 1, None), (P // 2, None), (P, LOW + 8)])
def test_unaligned_reserve_is_a_value_error(tiny: SimulatedAddressSpace, size: int, addr: int | None) -> None:
    with pytest.raises(ValueError, match="not a multiple of the page size 64"):
        tiny.reserve(size, addr)
    assert tiny.reservations() == []


@pytest.mark.parametrize("size", [0, -P])
def test_empty_or_negative_reserve_is_a_value_error(tiny: SimulatedAddressSpace, size: int) -> None:
    with pytest.raises(ValueError, match="size must be positive"):
        tiny.reserve(size)


# -- placement and determinism ----------------------------------------------------------------------


def script(sp: SimulatedAddressSpace) -> list[object]:
    """A fixed sequence of calls; returns every address and error it produced."""
    out: list[object] = []

    def attempt(fn, *args):  # type: ignore[no-untyped-def]
        try:
            res = fn(*args)
        except AddressSpaceError as exc:
            out.append(f"{type(exc).__name__}: {exc}")
            return None
        out.append((res.addr, res.size) if res is not None else None)
        return res

    a = attempt(sp.reserve, 3 * P)
    b = attempt(sp.reserve, P)
    occ = attempt(sp.occupy, LOW + 16 * P, P)
    attempt(sp.release, a)
    attempt(sp.reserve, 2 * P)  # fits in a's old place
    d = attempt(sp.reserve, 4 * P)
    attempt(sp.extend, b, 3 * P)
    attempt(sp.extend, d, P)
    attempt(sp.shrink, d, 0, P)
    out.append((d.addr, d.size))
    attempt(sp.reserve, 12 * P)
    attempt(sp.reserve, 12 * P)
    attempt(sp.free, occ.addr)
    attempt(sp.reserve, 12 * P)
    attempt(sp.reserve, P)
    return out


@pytest.mark.parametrize("placement", ["bottom-up", "top-down"])
def test_same_calls_give_same_addresses(placement: str) -> None:
    one = SimulatedAddressSpace(P, low=LOW, high=HIGH, placement=placement)
    two = SimulatedAddressSpace(P, low=LOW, high=HIGH, placement=placement)
    assert script(one) == script(two)
    assert layout(one) == layout(two)
    one._check()


def test_bottom_up_packs_from_the_low_end(tiny: SimulatedAddressSpace) -> None:
    rs = [tiny.reserve(n * P) for n in (1, 2, 3)]
    assert [(r.addr, r.size) for r in rs] == [(LOW, P), (LOW + P, 2 * P), (LOW + 3 * P, 3 * P)]
    tiny.release(rs[1])
    # The lowest gap that fits wins: a 1-page request goes into the freed 2-page hole,
    assert tiny.reserve(P).addr == LOW + P
    # and a 2-page request no longer fits there (1 page left), so it goes after the rest.
    assert tiny.reserve(2 * P).addr == LOW + 6 * P
    assert tiny.reserve(P).addr == LOW + 2 * P


def test_top_down_packs_from_the_high_end() -> None:
    sp = SimulatedAddressSpace(P, low=LOW, high=HIGH, placement="top-down")
    assert sp.placement is Placement.TOP_DOWN
    rs = [sp.reserve(n * P) for n in (1, 2, 3)]
    assert [(r.addr, r.size) for r in rs] == [(HIGH - P, P), (HIGH - 3 * P, 2 * P), (HIGH - 6 * P, 3 * P)]
    sp.release(rs[1])
    # The highest gap that fits, at its top end.
    assert sp.reserve(P).addr == HIGH - 2 * P
    assert sp.reserve(2 * P).addr == HIGH - 8 * P
    assert sp.reserve(P).addr == HIGH - 3 * P
    # A request only the low gap can hold goes to that gap's top.
    big = (NPAGES - 8) * P
    assert sp.reserve(big).addr == LOW
    sp._check()


def test_bottom_up_steps_around_occupied_ranges(tiny: SimulatedAddressSpace) -> None:
    tiny.occupy(LOW + P, P)
    assert tiny.reserve(P).addr == LOW
    assert tiny.reserve(P).addr == LOW + 2 * P
    tiny.occupy(LOW + 4 * P, P)
    assert tiny.reserve(2 * P).addr == LOW + 5 * P  # [LOW+3P, LOW+4P) is only one page


def test_reserve_at_fixed_address(tiny: SimulatedAddressSpace) -> None:
    r = tiny.reserve(2 * P, addr=LOW + 10 * P)
    assert (r.addr, r.size, r.end) == (LOW + 10 * P, 2 * P, LOW + 12 * P)
    before = layout(tiny)
    for addr in (LOW + 9 * P, LOW + 11 * P, LOW + 10 * P, LOW - P, HIGH - P, HIGH):
        with pytest.raises(RangeOccupied, match="cannot reserve"):
            tiny.reserve(2 * P, addr=addr)
    assert layout(tiny) == before
    assert tiny.reserve(2 * P, addr=LOW + 8 * P).end == r.addr  # touching is fine
    assert tiny.reserve(P, addr=HIGH - P).end == HIGH


# -- occupy / free -----------------------------------------------------------------------------------


def test_occupy_and_free(tiny: SimulatedAddressSpace) -> None:
    occ = tiny.occupy(LOW + 4 * P, 2 * P)
    assert isinstance(occ, Occupied) and (occ.addr, occ.size) == (LOW + 4 * P, 2 * P)
    assert tiny.occupied() == [occ]
    assert not tiny.is_free(LOW + 5 * P, P)
    assert tiny.is_free(LOW, 4 * P)
    assert tiny.used == 2 * P
    with pytest.raises(RangeOccupied, match="cannot occupy"):
        tiny.occupy(LOW + 5 * P, 2 * P)
    r = tiny.reserve(P, addr=LOW)
    with pytest.raises(RangeOccupied):
        tiny.occupy(LOW, P)
    before = layout(tiny)
    for bad in (LOW + 5 * P, LOW, LOW + 3 * P, "x"):
        with pytest.raises(ValueError, match="no occupied range starts at"):
            tiny.free(bad)  # type: ignore[arg-type]
    assert layout(tiny) == before
    tiny.free(occ.addr)
    assert tiny.occupied() == []
    assert tiny.is_free(LOW + 4 * P, 2 * P)
    with pytest.raises(ValueError):
        tiny.free(occ.addr)
    assert tiny.reservations() == [r]


# -- extend / shrink / release ------------------------------------------------------------------------


def test_extend(tiny: SimulatedAddressSpace, files: list[FileRef]) -> None:
    r = tiny.reserve(P)
    tiny.extend(r, 2 * P)
    assert (r.addr, r.size) == (LOW, 3 * P)
    # The extension is usable for mappings.
    m = tiny.map_file(r, LOW + 2 * P, files[0], 0, P, Granularity.PAGE)
    assert r.mappings == [m]
    tiny.occupy(r.end + P, P)
    before = layout(tiny)
    with pytest.raises(RangeOccupied, match="cannot extend"):
        tiny.extend(r, 2 * P)
    assert layout(tiny) == before
    tiny.extend(r, P)  # exactly up to the occupied range
    assert r.end == LOW + 4 * P
    top = tiny.reserve(P, addr=HIGH - P)
    with pytest.raises(RangeOccupied):
        tiny.extend(top, P)  # past the end of the space
    with pytest.raises(ValueError, match="not a multiple"):
        tiny.extend(r, P // 2)
    with pytest.raises(ValueError, match="size must be positive"):
        tiny.extend(r, 0)


def test_extend_into_next_reservation_is_refused(tiny: SimulatedAddressSpace) -> None:
    a = tiny.reserve(P)
    b = tiny.reserve(P)
    before = layout(tiny)
    with pytest.raises(RangeOccupied):
        tiny.extend(a, P)
    assert layout(tiny) == before
    tiny.extend(b, P)
    assert (b.addr, b.size) == (LOW + P, 2 * P)


def test_shrink_prefix_and_suffix(tiny: SimulatedAddressSpace, files: list[FileRef]) -> None:
    r = tiny.reserve(6 * P)
    m = tiny.map_file(r, LOW + 2 * P, files[0], 0, 2 * P, Granularity.PAGE)
    tiny.shrink(r, 0, P)  # prefix
    assert (r.addr, r.size) == (LOW + P, 5 * P)
    tiny.shrink(r, 4 * P, P)  # suffix
    assert (r.addr, r.end) == (LOW + P, LOW + 5 * P)
    assert tiny.is_free(LOW, P) and tiny.is_free(LOW + 5 * P, P)
    assert tiny.reserve(P).addr == LOW  # the freed prefix is reusable
    before = layout(tiny)
    # Middle cut, the whole reservation, past the end: ValueError, nothing changed.
    for offset, size in [(P, P), (0, 4 * P), (3 * P, 2 * P), (4 * P, P)]:
        with pytest.raises(ValueError, match="proper prefix or suffix"):
            tiny.shrink(r, offset, size)
        assert layout(tiny) == before
    # Cuts holding the mapping: RangeOccupied, nothing changed.
    for offset, size in [(0, 2 * P), (2 * P, 2 * P), (0, 3 * P)]:
        with pytest.raises(RangeOccupied, match="holds mappings"):
            tiny.shrink(r, offset, size)
        assert layout(tiny) == before
    with pytest.raises(ValueError, match="not a multiple"):
        tiny.shrink(r, P // 2, P)
    tiny.shrink(r, 3 * P, P)  # the suffix right after the mapping is free
    assert (r.addr, r.end) == (LOW + P, LOW + 4 * P)
    tiny.unmap(m)
    tiny.shrink(r, 0, 2 * P)
    assert (r.addr, r.size) == (LOW + 3 * P, P)


def test_release(tiny: SimulatedAddressSpace, files: list[FileRef]) -> None:
    r = tiny.reserve(2 * P)
    m = tiny.map_file(r, r.addr, files[0], 0, P, Granularity.PAGE)
    before = layout(tiny)
    with pytest.raises(ValueError, match=r"still holds 1 mapping\(s\)"):
        tiny.release(r)
    assert layout(tiny) == before and not r.released
    tiny.unmap(m)
    tiny.release(r)
    assert r.released and tiny.reservations() == [] and tiny.used == 0
    for call in (lambda: tiny.release(r), lambda: tiny.extend(r, P), lambda: tiny.shrink(r, 0, P)):
        with pytest.raises(ValueError, match="does not belong"):
            call()
    other = SimulatedAddressSpace(P, low=LOW, high=HIGH).reserve(P)
    with pytest.raises(ValueError, match="does not belong"):
        tiny.release(other)
    with pytest.raises(TypeError, match="expected a Reservation"):
        tiny.release("not a reservation")  # type: ignore[arg-type]


def test_limit_gives_out_of_address_space() -> None:
    sp = SimulatedAddressSpace(P, low=LOW, high=HIGH, limit=4 * P)
    a = sp.reserve(2 * P)
    sp.occupy(LOW + 10 * P, P)
    before = layout(sp)
    with pytest.raises(OutOfAddressSpace, match="limit"):
        sp.reserve(2 * P)
    with pytest.raises(OutOfAddressSpace, match="limit"):
        sp.extend(a, 2 * P)
    with pytest.raises(OutOfAddressSpace, match="limit"):
        sp.occupy(LOW + 20 * P, 2 * P)
    assert layout(sp) == before
    sp.extend(a, P)  # exactly at the limit
    assert sp.used == 4 * P
    sp.release(a)
    sp.reserve(3 * P)
    sp._check()


def test_exhausted_space_gives_out_of_address_space(tiny: SimulatedAddressSpace) -> None:
    tiny.reserve(NPAGES * P)
    with pytest.raises(OutOfAddressSpace, match="no free range"):
        tiny.reserve(P)
    fresh = SimulatedAddressSpace(P, low=LOW, high=HIGH)
    with pytest.raises(OutOfAddressSpace):
        fresh.reserve((NPAGES + 1) * P)
    # Fragmented: 16 free pages in total, but no two of them adjacent.
    for i in range(0, NPAGES, 2):
        fresh.occupy(LOW + i * P, P)
    fresh.reserve(P)
    with pytest.raises(OutOfAddressSpace):
        fresh.reserve(2 * P)


# -- mappings, read and write --------------------------------------------------------------------------


def read_file(ref: FileRef, offset: int, n: int) -> bytes:
    return os.pread(ref.fd, n, offset)


def test_map_file_checks(tiny: SimulatedAddressSpace, files: list[FileRef]) -> None:
    r = tiny.reserve(4 * P)
    m = tiny.map_file(r, LOW + P, files[0], 0, 2 * P, Granularity.PAGE)
    assert isinstance(m, Mapping) and (m.addr, m.end, m.file_offset) == (LOW + P, LOW + 3 * P, 0)
    assert tiny.mapping_at(LOW + P) is m and tiny.mapping_at(LOW + 3 * P - 1) is m
    assert tiny.mapping_at(LOW) is None and tiny.mapping_at(LOW + 3 * P) is None
    before = layout(tiny)
    with pytest.raises(RangeOccupied):
        tiny.map_file(r, LOW + 2 * P, files[1], 0, 2 * P, Granularity.PAGE)  # overlaps m
    with pytest.raises(RangeOccupied):
        tiny.map_file(r, LOW + 3 * P, files[1], 0, 2 * P, Granularity.PAGE)  # runs past r
    with pytest.raises(MapFailed, match="shorter"):
        tiny.map_file(r, LOW + 3 * P, files[1], 8 * P, P, Granularity.PAGE)  # past the file's end
    assert layout(tiny) == before
    tiny.unmap(m)
    with pytest.raises(ValueError, match="is not mapped"):
        tiny.unmap(m)
    assert r.mappings == []


def test_read_write_across_two_adjacent_mappings(tiny: SimulatedAddressSpace, files: list[FileRef]) -> None:
    a, b = files[0], files[1]
    r = tiny.reserve(2 * P)
    tiny.map_file(r, LOW, a, 2 * P, P, Granularity.PAGE)
    tiny.map_file(r, LOW + P, b, 0, P, Granularity.PAGE)
    assert tiny.read(LOW + P - 3, 6) == b"aaabbb"
    tiny.write(LOW + P - 4, b"01234567")
    assert tiny.read(LOW + P - 5, 10) == b"a01234567b"
    assert read_file(a, 3 * P - 5, 5) == b"a0123"  # file offset 2P + (P - 4)
    assert read_file(b, 0, 5) == b"4567b"
    # The same across two adjacent reservations, one mapping each.
    r2 = tiny.reserve(P)
    assert r2.addr == r.end
    tiny.map_file(r2, r2.addr, files[2], P, P, Granularity.PAGE)
    tiny.write(r2.addr - 2, bytearray(b"XYZW"))
    assert tiny.read(r2.addr - 3, 6) == b"bXYZWc"
    assert read_file(files[2], P, 3) == b"ZWc"
    tiny.write(LOW, memoryview(b"m" * 3 * P))
    assert tiny.read(LOW, 3 * P) == b"m" * 3 * P


def test_holes_are_not_mapped_and_nothing_is_written(
    tiny: SimulatedAddressSpace, files: list[FileRef]
) -> None:
    r = tiny.reserve(3 * P)
    tiny.map_file(r, LOW, files[0], 0, P, Granularity.PAGE)
    tiny.map_file(r, LOW + 2 * P, files[1], 0, P, Granularity.PAGE)
    with pytest.raises(NotMapped, match=f"{LOW + P:#x} is not mapped"):
        tiny.write(LOW + P - 2, b"!!!!")
    with pytest.raises(NotMapped):
        tiny.write(LOW + 2 * P - 2, b"!!!!")
    with pytest.raises(NotMapped):
        tiny.write(LOW, b"!" * 3 * P)
    assert read_file(files[0], 0, P) == b"a" * P  # nothing written before the hole either
    assert read_file(files[1], 0, P) == b"b" * P
    for addr, n in [
        (LOW + P, 1),
        (LOW + P - 1, 2),
        (LOW, 3 * P),
        (LOW - P, 1),
        (HIGH - 1, 1),
        (LOW + 3 * P, 1),
    ]:
        with pytest.raises(NotMapped):
            tiny.read(addr, n)
    tiny.occupy(LOW + 4 * P, P)
    with pytest.raises(NotMapped):  # a foreign range is not readable either
        tiny.read(LOW + 4 * P, 1)
    assert tiny.read(LOW + 2 * P, P) == b"b" * P


# -- the state machine -----------------------------------------------------------------------------------

pages = st.integers(1, 6)
page_index = st.integers(-2, NPAGES + 1)


class SpaceMachine(RuleBasedStateMachine):
    """Random reserve/extend/shrink/release/occupy/free/map/unmap against a page model.

    A twin space gets the same calls: every result and every error must be the same
    (determinism). Each page of the space is owned by nothing, a reservation or an
    occupied range; each page of a reservation holds a mapping or not.
    """

    reservations = Bundle("reservations")
    occupied = Bundle("occupied")
    mappings = Bundle("mappings")

    def __init__(self) -> None:
        super().__init__()
        fd, path = tempfile.mkstemp(prefix="pmemsim-space-")
        os.unlink(path)
        os.ftruncate(fd, 8 * P)
        self.file = FileRef(fd)
        self.space = SimulatedAddressSpace(P, low=LOW, high=HIGH)
        self.twin = SimulatedAddressSpace(P, low=LOW, high=HIGH)
        self.twin_of: dict[int, object] = {}
        self.rsvs: dict[int, list[int]] = {}  # id(rsv) -> [addr, size]
        self.occs: dict[int, int] = {}  # addr -> size
        self.maps: dict[int, tuple[int, int]] = {}  # id(mapping) -> (addr, length)
        self.limit: int | None = None

    def teardown(self) -> None:
        os.close(self.file.fd)

    @initialize(
        placement=st.sampled_from(["bottom-up", "top-down"]), limit=st.none() | st.integers(0, NPAGES)
    )
    def setup(self, placement: str, limit: int | None) -> None:
        self.limit = None if limit is None else limit * P
        self.space = SimulatedAddressSpace(P, low=LOW, high=HIGH, placement=placement, limit=self.limit)
        self.twin = SimulatedAddressSpace(P, low=LOW, high=HIGH, placement=placement, limit=self.limit)

    # -- the model -------------------------------------------------------------

    def taken(self) -> set[int]:
        out: set[int] = set()
        for addr, size in self.rsvs.values():
            out.update(range(addr, addr + size, P))
        for addr, size in self.occs.items():
            out.update(range(addr, addr + size, P))
        return out

    def free(self, addr: int, size: int) -> bool:
        if addr < LOW or addr + size > HIGH:
            return False
        taken = self.taken()
        return all(a not in taken for a in range(addr, addr + size, P))

    def used(self) -> int:
        return sum(s for _a, s in self.rsvs.values()) + sum(self.occs.values())

    def over_limit(self, size: int) -> bool:
        return self.limit is not None and self.used() + size > self.limit

    def mapped_in(self, rsv: Reservation, addr: int, size: int) -> bool:
        return any(m.addr < addr + size and m.end > addr for m in rsv.mappings if id(m) in self.maps)

    def both(self, call: str, obj: object, *args: object) -> tuple[object, object]:
        """Run ``call`` on the space and on the twin; both must succeed or fail alike."""
        outcomes = []
        for sp, o in ((self.space, obj), (self.twin, self.twin_of.get(id(obj), obj))):
            fn = getattr(sp, call)
            try:
                res = fn(o, *args) if o is not None else fn(*args)
                outcomes.append((res, None))
            except Exception as exc:
                outcomes.append((None, exc))
        (r1, e1), (r2, e2) = outcomes
        assert type(e1) is type(e2) and str(e1) == str(e2)
        if e1 is not None:
            raise e1
        return r1, r2

    # -- rules -----------------------------------------------------------------

    @rule(target=reservations, n=pages, at=st.none() | page_index)
    def reserve(self, n: int, at: int | None) -> Reservation | None:
        size = n * P
        addr = None if at is None else LOW + at * P
        if addr is not None and addr < 0:
            return None
        if addr is not None and not self.free(addr, size):
            expected: type[Exception] | None = RangeOccupied
        elif self.over_limit(size):
            expected = OutOfAddressSpace
        else:
            fits = [a for a in range(LOW, HIGH - size + 1, P) if self.free(a, size)]
            if addr is None and not fits:
                expected = OutOfAddressSpace
            else:
                expected = None
                if addr is None:
                    bottom_up = self.space.placement is Placement.BOTTOM_UP
                    addr = fits[0] if bottom_up else fits[-1]
        before = layout(self.space)
        if expected is not None:
            with pytest.raises(expected):
                self.both("reserve", None, size, None if at is None else LOW + at * P)
            assert layout(self.space) == before
            return None
        rsv, twin = self.both("reserve", None, size, None if at is None else LOW + at * P)
        assert isinstance(rsv, Reservation) and isinstance(twin, Reservation)
        assert (rsv.addr, rsv.size) == (addr, size) == (twin.addr, twin.size)
        assert rsv.addr != 0 and rsv.addr % P == 0
        self.rsvs[id(rsv)] = [rsv.addr, size]
        self.twin_of[id(rsv)] = twin
        return rsv

    @rule(target=occupied, at=page_index, n=pages)
    def occupy(self, at: int, n: int) -> int:
        addr, size = LOW + at * P, n * P
        if addr < 0:
            return 0
        expected: type[Exception] | None = None
        if not self.free(addr, size):
            expected = RangeOccupied
        elif self.over_limit(size):
            expected = OutOfAddressSpace
        before = layout(self.space)
        if expected is not None:
            with pytest.raises(expected):
                self.both("occupy", None, addr, size)
            assert layout(self.space) == before
            return addr
        occ, _twin = self.both("occupy", None, addr, size)
        assert isinstance(occ, Occupied) and (occ.addr, occ.size) == (addr, size)
        self.occs[addr] = size
        return addr

    @rule(addr=occupied)
    def free_occupied(self, addr: int) -> None:
        if addr in self.occs:
            self.both("free", None, addr)
            del self.occs[addr]
        else:
            before = layout(self.space)
            with pytest.raises(ValueError):
                self.both("free", None, addr)
            assert layout(self.space) == before

    @rule(rsv=reservations, n=pages)
    def extend(self, rsv: Reservation | None, n: int) -> None:
        if rsv is None:
            return
        size = n * P
        before = layout(self.space)
        if id(rsv) not in self.rsvs:
            expected: type[Exception] | None = ValueError  # released
        elif not self.free(rsv.end, size):
            expected = RangeOccupied
        elif self.over_limit(size):
            expected = OutOfAddressSpace
        else:
            expected = None
        if expected is not None:
            with pytest.raises(expected):
                self.both("extend", rsv, size)
            assert layout(self.space) == before
            return
        self.both("extend", rsv, size)
        self.rsvs[id(rsv)][1] += size
        assert (rsv.addr, rsv.size) == tuple(self.rsvs[id(rsv)])

    @rule(rsv=reservations, n=pages, where=st.sampled_from(["prefix", "suffix", "middle"]))
    def shrink(self, rsv: Reservation | None, n: int, where: str) -> None:
        if rsv is None:
            return
        size = n * P
        if id(rsv) not in self.rsvs:
            with pytest.raises(ValueError, match="does not belong"):
                self.both("shrink", rsv, 0, size)
            return
        addr, rsize = self.rsvs[id(rsv)]
        offset = {"prefix": 0, "suffix": rsize - size, "middle": P}[where]
        before = layout(self.space)
        if offset < 0:
            with pytest.raises(ValueError, match="offset must be non-negative"):
                self.both("shrink", rsv, offset, size)
        elif offset + size > rsize or size == rsize or (offset != 0 and offset + size != rsize):
            with pytest.raises(ValueError, match="proper prefix or suffix"):
                self.both("shrink", rsv, offset, size)
        elif self.mapped_in(rsv, addr + offset, size):
            with pytest.raises(RangeOccupied, match="holds mappings"):
                self.both("shrink", rsv, offset, size)
        else:
            self.both("shrink", rsv, offset, size)
            self.rsvs[id(rsv)] = [addr + size, rsize - size] if offset == 0 else [addr, rsize - size]
            assert (rsv.addr, rsv.size) == tuple(self.rsvs[id(rsv)])
            return
        assert layout(self.space) == before

    @rule(rsv=reservations)
    def release(self, rsv: Reservation | None) -> None:
        if rsv is None:
            return
        before = layout(self.space)
        if id(rsv) not in self.rsvs:
            with pytest.raises(ValueError, match="does not belong"):
                self.both("release", rsv)
        elif self.mapped_in(rsv, rsv.addr, rsv.size):
            with pytest.raises(ValueError, match="still holds"):
                self.both("release", rsv)
        else:
            self.both("release", rsv)
            del self.rsvs[id(rsv)]
            assert rsv.released
            return
        assert layout(self.space) == before

    @rule(target=mappings, rsv=reservations, at=st.integers(0, 7), n=st.integers(1, 3))
    def map_file(self, rsv: Reservation | None, at: int, n: int) -> Mapping | None:
        if rsv is None or id(rsv) not in self.rsvs:
            return None
        addr, length = rsv.addr + at * P, n * P
        before = layout(self.space)
        inside = addr + length <= rsv.end
        if not inside or self.mapped_in(rsv, addr, length):
            with pytest.raises(RangeOccupied):
                self.both("map_file", rsv, addr, self.file, 0, length, Granularity.PAGE)
            assert layout(self.space) == before
            return None
        m, twin = self.both("map_file", rsv, addr, self.file, 0, length, Granularity.PAGE)
        assert isinstance(m, Mapping)
        assert (m.addr, m.length, m.reservation) == (addr, length, rsv)
        assert self.space.mapping_at(addr + length - 1) is m
        self.maps[id(m)] = (addr, length)
        self.twin_of[id(m)] = twin
        return m

    @rule(m=mappings)
    def unmap(self, m: Mapping | None) -> None:
        if m is None:
            return
        if id(m) in self.maps:
            self.both("unmap", m)
            del self.maps[id(m)]
            assert self.space.mapping_at(m.addr) is None
        else:
            with pytest.raises(ValueError):
                self.both("unmap", m)

    @precondition(lambda self: self.maps)
    @rule(data=st.data())
    def write_read(self, data: st.DataObject) -> None:
        """Bytes written through any mapping read back through the same address."""
        addr, length = data.draw(st.sampled_from(sorted(self.maps.values())))
        off = data.draw(st.integers(0, length - 1))
        payload = data.draw(st.binary(min_size=1, max_size=length - off))
        self.space.write(addr + off, payload)
        assert self.space.read(addr + off, len(payload)) == payload

    @invariant()
    def consistent(self) -> None:
        self.space._check()
        got = sorted((r.addr, r.size) for r in self.space.reservations())
        assert got == sorted((a, s) for a, s in self.rsvs.values())
        assert [(o.addr, o.size) for o in self.space.occupied()] == sorted(self.occs.items())
        assert self.space.used == self.used()
        assert layout(self.space) == layout(self.twin)
        for r in self.space.reservations():
            assert all(m.reservation is r and r.addr <= m.addr < m.end <= r.end for m in r.mappings)


TestSpaceMachine = SpaceMachine.TestCase
