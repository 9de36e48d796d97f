"""IntervalMap against a naive model, in a tiny space so every edge case is close by.

The model is a plain dict ``start -> (end, value)`` plus the bounds; every query is
answered by brute force over the few hundred addresses of the space, and the
structure's own ``_check()`` runs after every mutation (sortedcontainers-style).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from pmemsim.addrspace.intervals import IntervalMap

LOW = 16
UNIT = 8
HIGH = LOW + 64 * UNIT  # 528: 64 "slots" of 8 bytes
TOP = HIGH + 4 * UNIT  # queries reach a little past the space on both sides

# Mostly slot-aligned addresses (so intervals touch and gaps fit exactly), sometimes any byte.
addrs = st.one_of(st.integers(0, TOP // UNIT).map(lambda k: k * UNIT), st.integers(0, TOP))
# Mostly a few slots, so maps hold many intervals (and gaps) and span several sublists.
sizes = st.one_of(
    st.integers(1, 4).map(lambda k: k * UNIT),
    st.integers(1, 66).map(lambda k: k * UNIT),
    st.integers(1, HIGH),
)


class Model:
    """The obvious, slow implementation: a byte map of who covers each address."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.spans: dict[int, tuple[int, object]] = {}

    def owner_map(self) -> list[int | None]:
        """``owner[a]`` is the start of the interval covering address ``a``, or None."""
        owner: list[int | None] = [None] * (2 * TOP + 2)
        for s, (e, _v) in self.spans.items():
            for a in range(s, e):
                owner[a] = s
        return owner

    def covered(self, addr: int) -> bool:
        return self.owner_map()[addr] is not None

    def items(self) -> list[tuple[int, int, object]]:
        return [(s, e, v) for s, (e, v) in sorted(self.spans.items())]

    def is_free(self, start: int, end: int) -> bool:
        # An empty range touches nothing: it is free wherever it lies inside the bounds.
        if not self.low <= start <= end <= self.high:
            return False
        owner = self.owner_map()
        return all(owner[a] is None for a in range(start, end))

    def gaps(self) -> list[tuple[int, int]]:
        owner = self.owner_map()
        out: list[tuple[int, int]] = []
        for a in range(self.low, self.high):
            if owner[a] is None:
                if out and out[-1][1] == a:
                    out[-1] = (out[-1][0], a + 1)
                else:
                    out.append((a, a + 1))
        return out

    def first_fit(self, size: int) -> int | None:
        owner = self.owner_map()
        run = 0
        for a in range(self.low, self.high):
            run = run + 1 if owner[a] is None else 0
            if run == size:
                return a - size + 1
        return None

    def last_fit(self, size: int) -> int | None:
        owner = self.owner_map()
        run = 0
        for a in range(self.high - 1, self.low - 1, -1):
            run = run + 1 if owner[a] is None else 0
            if run == size:
                return a
        return None

    def find(self, addr: int) -> tuple[int, int, object] | None:
        s = self.owner_map()[addr]
        return None if s is None else (s, *self.spans[s])

    def intersecting(self, start: int, end: int) -> list[tuple[int, int, object]]:
        assert start < end
        return [(s, e, v) for s, e, v in self.items() if s < end and e > start]


def state(m: IntervalMap[object]) -> tuple[object, ...]:
    """Everything observable about ``m`` (to show a failed call changed nothing)."""
    return (m.low, m.high, m.used, len(m), list(m), list(m.gaps()))


class IntervalMapMachine(RuleBasedStateMachine):
    starts = Bundle("starts")

    def __init__(self) -> None:
        super().__init__()
        self.map: IntervalMap[object] = IntervalMap(LOW, HIGH)
        self.model = Model(LOW, HIGH)
        self.counter = 0

    @initialize(
        low=st.integers(0, 8).map(lambda k: k * UNIT),
        extra=st.integers(0, 64).map(lambda k: k * UNIT),
        load=st.sampled_from([None, 2, 4]),
    )
    def bounds(self, low: int, extra: int, load: int | None) -> None:
        # Start from an arbitrary (possibly empty) range rather than always [LOW, HIGH),
        # and with tiny sorted-list sublists so lookups cross sublist boundaries.
        self.map = IntervalMap(low, min(low + extra, TOP))
        if load is not None:
            self.map._reset(load)
        self.model = Model(low, min(low + extra, TOP))

    # -- mutations -------------------------------------------------------------

    @rule(target=starts, start=addrs, size=sizes)
    def insert(self, start: int, size: int) -> int:
        end = start + size
        self.counter += 1
        value = ("v", self.counter)
        if self.model.is_free(start, end):
            self.map.insert(start, end, value)
            self.model.spans[start] = (end, value)
        else:
            before = state(self.map)
            with pytest.raises(ValueError):
                self.map.insert(start, end, value)
            assert state(self.map) == before
        self.map._check()
        return start

    @rule(start=addrs, end=addrs)
    def insert_empty_or_reversed(self, start: int, end: int) -> None:
        assume(end <= start)
        before = state(self.map)
        with pytest.raises(ValueError):
            self.map.insert(start, end, "empty")
        assert state(self.map) == before

    @rule(target=starts, data=st.data())
    def insert_first_fit(self, data: st.DataObject) -> int:
        """Insert exactly where first_fit says (what placement does)."""
        size = data.draw(sizes)
        at = self.map.first_fit(size)
        assert at == self.model.first_fit(size)
        if at is None:
            return LOW
        self.counter += 1
        value = ("ff", self.counter)
        self.map.insert(at, at + size, value)
        self.model.spans[at] = (at + size, value)
        self.map._check()
        return at

    @rule(start=starts)
    def remove(self, start: int) -> None:
        if start in self.model.spans:
            _end, value = self.model.spans.pop(start)
            assert self.map.remove(start) is value
        else:
            before = state(self.map)
            with pytest.raises(KeyError):
                self.map.remove(start)
            assert state(self.map) == before
        self.map._check()

    @rule(low=addrs, high=addrs)
    def set_bounds(self, low: int, high: int) -> None:
        items = self.model.items()
        ok = low <= high and all(low <= s and e <= high for s, e, _v in items)
        if ok:
            self.map.set_bounds(low, high)
            self.model.low, self.model.high = low, high
        else:
            before = state(self.map)
            with pytest.raises(ValueError):
                self.map.set_bounds(low, high)
            assert state(self.map) == before
        self.map._check()

    @rule(below=st.integers(0, 3).map(lambda k: k * UNIT), above=st.integers(0, 3).map(lambda k: k * UNIT))
    def set_bounds_tight(self, below: int, above: int) -> None:
        """Bounds at or just around the intervals' extent (what extend/shrink do)."""
        items = self.model.items()
        if not items:
            return
        low = max(items[0][0] - below, 0)
        high = items[-1][1] + above
        self.map.set_bounds(low, high)
        self.model.low, self.model.high = low, high
        self.map._check()

    # -- queries ---------------------------------------------------------------

    @rule(addr=addrs)
    def find(self, addr: int) -> None:
        assert self.map.find(addr) == self.model.find(addr)
        hit = self.model.spans.get(addr)
        assert self.map.get(addr) == hit

    @rule(start=addrs, size=st.integers(0, HIGH))
    def is_free(self, start: int, size: int) -> None:
        assert self.map.is_free(start, start + size) == self.model.is_free(start, start + size)

    @rule(start=addrs, end=addrs)
    def is_free_reversed(self, start: int, end: int) -> None:
        assume(end < start)
        assert self.map.is_free(start, end) is False

    @rule(data=st.data())
    def gap_edges(self, data: st.DataObject) -> None:
        """Queries exactly at, and one byte past, the edges of a free gap."""
        gaps = self.model.gaps()
        if not gaps:
            assert self.map.first_fit(1) is None
            return
        gstart, gend = data.draw(st.sampled_from(gaps))
        inner = data.draw(st.integers(gstart, gend - 1))
        assert self.map.is_free(gstart, gend)
        assert self.map.is_free(inner, gend)
        assert not self.map.is_free(gstart, gend + 1)
        assert not self.map.is_free(gstart - 1, gend)
        assert self.map.first_fit(gend - gstart) == self.model.first_fit(gend - gstart)
        assert self.map.first_fit(gend - gstart + 1) == self.model.first_fit(gend - gstart + 1)
        assert self.map.last_fit(gend - gstart) == self.model.last_fit(gend - gstart)
        assert self.map.last_fit(gend - gstart + 1) == self.model.last_fit(gend - gstart + 1)

    @rule(size=sizes)
    def first_fit(self, size: int) -> None:
        assert self.map.first_fit(size) == self.model.first_fit(size)
        assert self.map.last_fit(size) == self.model.last_fit(size)

    @rule(start=addrs, size=st.integers(1, HIGH))
    def intersecting(self, start: int, size: int) -> None:
        assert self.map.intersecting(start, start + size) == self.model.intersecting(start, start + size)

    @invariant()
    def matches_model(self) -> None:
        self.map._check()
        assert (self.map.low, self.map.high) == (self.model.low, self.model.high)
        items = self.model.items()
        assert list(self.map) == items
        assert len(self.map) == len(items)
        assert self.map.used == sum(e - s for s, e, _v in items)
        assert list(self.map.gaps()) == self.model.gaps()
        assert self.map.extent() == ((items[0][0], items[-1][1]) if items else None)


TestIntervalMapMachine = IntervalMapMachine.TestCase


# -- properties over random layouts -----------------------------------------------------------


@st.composite
def layouts(draw: st.DrawFn) -> tuple[IntervalMap[object], Model]:
    """A map with random disjoint intervals built by random inserts (only the ones that fit)."""
    m: IntervalMap[object] = IntervalMap(LOW, HIGH)
    m._reset(draw(st.sampled_from([2, 1000])))
    model = Model(LOW, HIGH)
    for i, (start, size) in enumerate(draw(st.lists(st.tuples(addrs, sizes), max_size=30))):
        if model.is_free(start, start + size):
            m.insert(start, start + size, i)
            model.spans[start] = (start + size, i)
    note(f"spans={model.items()}")
    return m, model


@given(layouts(), st.integers(1, HIGH))
def test_first_fit_is_lowest_fitting_gap(layout: tuple[IntervalMap[object], Model], size: int) -> None:
    m, model = layout
    m._check()
    got = m.first_fit(size)
    assert got == model.first_fit(size)
    assert m.last_fit(size) == model.last_fit(size)
    if got is not None:
        assert m.is_free(got, got + size)
        # A first fit always starts a gap: the byte before it is taken or out of bounds.
        assert got == LOW or model.covered(got - 1)


@given(layouts(), st.integers(1, HIGH))
def test_every_gap_size_is_found_exactly(layout: tuple[IntervalMap[object], Model], extra: int) -> None:
    """Asking for exactly a gap's size finds that gap or a lower one that also fits."""
    m, model = layout
    for gstart, gend in model.gaps():
        got = m.first_fit(gend - gstart)
        assert got is not None and got <= gstart
        assert got == model.first_fit(gend - gstart)
        top = m.last_fit(gend - gstart)
        assert top is not None and top >= gstart
        assert top == model.last_fit(gend - gstart)


# -- edge cases ---------------------------------------------------------------------------------


def test_empty_map() -> None:
    m: IntervalMap[str] = IntervalMap(LOW, LOW)
    m._check()
    assert len(m) == 0 and m.used == 0
    assert list(m) == [] and list(m.gaps()) == []
    assert m.first_fit(1) is None
    assert m.find(LOW) is None
    assert not m.is_free(LOW, LOW + 1)
    assert m.is_free(LOW, LOW) is True
    assert m.is_free(LOW, LOW + 1) is False
    assert m.intersecting(0, TOP) == []
    with pytest.raises(ValueError, match="not free"):
        m.insert(LOW, LOW + 1, "x")
    with pytest.raises(KeyError):
        m.remove(LOW)
    m._check()


def test_fresh_map_is_one_gap() -> None:
    m: IntervalMap[str] = IntervalMap(LOW, HIGH)
    assert list(m.gaps()) == [(LOW, HIGH)]
    assert m.first_fit(HIGH - LOW) == LOW
    assert m.first_fit(HIGH - LOW + 1) is None
    assert m.is_free(LOW + 3, HIGH) and not m.is_free(LOW + 3, HIGH + 1)
    assert not m.is_free(HIGH, HIGH + 1)
    assert not m.is_free(LOW - 1, LOW)


@pytest.mark.parametrize(("low", "high"), [(-8, 16), (32, 16), (-1, -1)])
def test_bad_bounds(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="bounds"):
        IntervalMap(low, high)
    m: IntervalMap[str] = IntervalMap(LOW, HIGH)
    with pytest.raises(ValueError, match="bounds"):
        m.set_bounds(low, high)
    assert (m.low, m.high) == (LOW, HIGH)
    m._check()


@pytest.mark.parametrize("size", [0, -8])
def test_first_fit_needs_positive_size(size: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        IntervalMap(LOW, HIGH).first_fit(size)
    with pytest.raises(ValueError, match="positive"):
        IntervalMap(LOW, HIGH).last_fit(size)


def test_insert_fills_gap_exactly_and_remove_merges_both_sides() -> None:
    m: IntervalMap[str] = IntervalMap(0, 96)
    m.insert(0, 32, "a")
    m.insert(64, 96, "c")
    assert list(m.gaps()) == [(32, 64)]
    m.insert(32, 64, "b")  # exact fit: no gap left
    m._check()
    assert list(m.gaps()) == []
    assert m.first_fit(1) is None
    assert m.used == 96
    assert m.remove(32) == "b"
    m._check()
    assert list(m.gaps()) == [(32, 64)]
    assert m.remove(0) == "a"
    assert m.remove(64) == "c"
    m._check()
    assert list(m.gaps()) == [(0, 96)]  # merged with both neighbours


def test_insert_overlapping_each_way_is_refused() -> None:
    m: IntervalMap[str] = IntervalMap(0, 100)
    m.insert(40, 60, "x")
    for start, end in [(30, 41), (59, 70), (45, 50), (30, 70), (40, 60), (0, 101), (100, 101)]:
        before = state(m)
        with pytest.raises(ValueError, match="not free"):
            m.insert(start, end, "y")
        assert state(m) == before
    m.insert(30, 40, "left")  # touching is fine
    m.insert(60, 70, "right")
    m._check()


def test_first_fit_prefers_lowest_start_across_size_classes() -> None:
    # Gaps (start, size): (0, 9) and (20, 15) share size class 4; (40, 40) is class 6.
    m: IntervalMap[str] = IntervalMap(0, 120)
    m.insert(9, 20, "a")
    m.insert(35, 40, "b")
    m.insert(80, 120, "c")
    assert list(m.gaps()) == [(0, 9), (20, 35), (40, 80)]
    assert m.first_fit(9) == 0  # exact fit of the lowest gap
    assert m.first_fit(10) == 20  # same class: skips the too-small lower gap
    assert m.first_fit(15) == 20  # exact fit of a same-class gap
    assert m.first_fit(16) == 40  # only the bigger class fits
    assert m.first_fit(40) == 40
    assert m.first_fit(41) is None
    # last_fit: the top of the highest gap that fits.
    assert m.last_fit(9) == 80 - 9
    assert m.last_fit(15) == 80 - 15
    assert m.last_fit(40) == 40
    assert m.last_fit(41) is None
    m.insert(40, 80, "d")  # only the two class-4 gaps are left
    assert m.last_fit(9) == 35 - 9  # same class, highest first
    assert m.last_fit(10) == 35 - 10
    assert m.last_fit(16) is None
    assert m.remove(40) == "d"
    # A bigger class lying lower than a same-class fit wins.
    m2: IntervalMap[str] = IntervalMap(0, 200)
    m2.insert(64, 70, "a")  # gap (0, 64): class 7
    m2.insert(82, 200, "b")  # gap (70, 82): 12 bytes, class 4
    assert m2.first_fit(12) == 0
    assert m2.last_fit(12) == 70  # ... and for last_fit the same-class gap above it wins
    assert m2.last_fit(13) == 64 - 13


def test_set_bounds_grows_and_shrinks_around_intervals() -> None:
    m: IntervalMap[str] = IntervalMap(32, 96)
    m.insert(48, 64, "x")
    m.set_bounds(0, 128)  # grow both sides
    m._check()
    assert list(m.gaps()) == [(0, 48), (64, 128)]
    m.set_bounds(48, 64)  # shrink to exactly the interval
    m._check()
    assert list(m.gaps()) == []
    assert not m.is_free(64, 65)
    for low, high in [(49, 64), (48, 63), (56, 128), (0, 50)]:
        before = state(m)
        with pytest.raises(ValueError, match="cut"):
            m.set_bounds(low, high)
        assert state(m) == before
    m.set_bounds(40, 64)  # grow one side only
    m._check()
    assert list(m.gaps()) == [(40, 48)]
    assert m.remove(48) == "x"
    m._check()
    assert list(m.gaps()) == [(40, 64)]
    m.set_bounds(100, 100)  # with nothing inside, any bounds go, even empty ones
    m._check()
    assert list(m.gaps()) == []
    m.set_bounds(0, 8)
    assert list(m.gaps()) == [(0, 8)]
    m._check()


def test_intersecting_and_find_at_edges() -> None:
    m: IntervalMap[str] = IntervalMap(0, 100)
    m.insert(10, 20, "a")
    m.insert(20, 30, "b")
    m.insert(50, 60, "c")
    assert m.find(9) is None
    assert m.find(10) == (10, 20, "a")
    assert m.find(19) == (10, 20, "a")
    assert m.find(20) == (20, 30, "b")
    assert m.find(30) is None
    assert m.intersecting(0, 10) == []
    assert m.intersecting(0, 11) == [(10, 20, "a")]
    assert m.intersecting(19, 51) == [(10, 20, "a"), (20, 30, "b"), (50, 60, "c")]
    assert m.intersecting(30, 50) == []
    assert m.intersecting(60, 1000) == []
    assert m.get(20) == (30, "b")
    assert m.get(21) is None
    assert m.is_free(30, 50) and not m.is_free(30, 51)
    assert not m.is_free(29, 30)
