"""A sorted map of disjoint half-open intervals with a first-fit index of the free gaps.

Both backends keep their address space in one of these (reservations and foreign
mappings), and every reservation keeps the file mappings placed inside it in another,
so placement is the same policy, and gives the same relative layout, on the simulator
and on real mmap.

Theory of operation: ``_spans`` maps an interval's start to ``(end, value)``; ``_gaps``
maps the start of every maximal free range inside ``[low, high)`` to its end; and
``_classes`` files each gap's start under its size class (``size.bit_length()``), so
that first-fit needs only the smallest start of each class that surely fits plus a
short scan of the one class that may or may not. Lookups, inserts and removals are
O(log n); first-fit is O(log n) for the usual layouts (O(k) in the worst case, k the
number of too-small gaps of the requested size class lying lower in the space).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from sortedcontainers import SortedDict, SortedList

__all__ = ["IntervalMap", "Span"]

V = TypeVar("V")

Span = tuple[int, int, V]  # (start, end, value)


class IntervalMap(Generic[V]):
    """Disjoint intervals ``[start, end)`` inside ``[low, high)``, each carrying a value."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"bad interval map bounds [{low:#x}, {high:#x})")
        self._low = low
        self._high = high
        self._spans: SortedDict = SortedDict()  # start -> (end, value)
        self._gaps: SortedDict = SortedDict()  # start -> end
        self._classes: dict[int, SortedList] = {}
        self._used = 0
        if high > low:
            self._add_gap(low, high)

    # -- queries ---------------------------------------------------------------

    @property
    def low(self) -> int:
        """Lowest address covered."""
        return self._low

    @property
    def high(self) -> int:
        """One past the highest address covered."""
        return self._high

    @property
    def used(self) -> int:
        """Total bytes covered by intervals."""
        return self._used

    def __len__(self) -> int:
        return len(self._spans)

    def __iter__(self) -> Iterator[tuple[int, int, V]]:
        for start, (end, value) in self._spans.items():
            yield start, end, value

    def find(self, addr: int) -> tuple[int, int, V] | None:
        """The interval containing ``addr``, or None. O(log n)."""
        i = self._spans.bisect_right(addr) - 1
        if i < 0:
            return None
        start = self._spans.keys()[i]
        end, value = self._spans[start]
        return (start, end, value) if addr < end else None

    def get(self, start: int) -> tuple[int, V] | None:
        """``(end, value)`` of the interval starting exactly at ``start``, or None."""
        item = self._spans.get(start)
        return None if item is None else (item[0], item[1])

    def intersecting(self, start: int, end: int) -> list[tuple[int, int, V]]:
        """All intervals that intersect ``[start, end)``, in address order. O(log n + k)."""
        out: list[tuple[int, int, V]] = []
        i = max(self._spans.bisect_right(start) - 1, 0)
        keys = self._spans.keys()
        while i < len(keys) and keys[i] < end:
            s = keys[i]
            e, v = self._spans[s]
            if e > start:
                out.append((s, e, v))
            i += 1
        return out

    def is_free(self, start: int, end: int) -> bool:
        """True when ``[start, end)`` lies inside the bounds and touches no interval."""
        if start < self._low or end > self._high or start > end:
            return False
        if start == end:
            return True
        i = self._gaps.bisect_right(start) - 1
        if i < 0:
            return False
        gstart = self._gaps.keys()[i]
        return bool(self._gaps[gstart] >= end)

    def free_after(self, addr: int) -> int:
        """How many free bytes start exactly at ``addr`` (0 if ``addr`` is taken or outside)."""
        i = self._gaps.bisect_right(addr) - 1
        if i < 0:
            return 0
        gstart = self._gaps.keys()[i]
        gend: int = self._gaps[gstart]
        return max(gend - addr, 0)

    def first_fit(self, size: int) -> int | None:
        """Lowest start of a free range of ``size`` bytes, or None when none fits."""
        if size <= 0:
            raise ValueError(f"first_fit needs a positive size, got {size}")
        want = size.bit_length()
        best: int | None = None
        for cls, starts in self._classes.items():
            if cls > want and (best is None or starts[0] < best):
                best = starts[0]
        same = self._classes.get(want)
        if same is not None:
            for start in same:
                if best is not None and start >= best:
                    break
                if self._gaps[start] - start >= size:
                    best = start
                    break
        return best

    def gaps(self) -> Iterator[tuple[int, int]]:
        """The free ranges ``(start, end)`` in address order."""
        yield from self._gaps.items()

    # -- mutations -------------------------------------------------------------

    def insert(self, start: int, end: int, value: V) -> None:
        """Add ``[start, end)``; raises ValueError when it is empty, outside or overlaps."""
        if end <= start:
            raise ValueError(f"empty interval [{start:#x}, {end:#x})")
        i = self._gaps.bisect_right(start) - 1
        gstart = self._gaps.keys()[i] if i >= 0 else None
        if gstart is None or self._gaps[gstart] < end:
            raise ValueError(f"[{start:#x}, {end:#x}) is not free")
        gend = self._gaps[gstart]
        self._del_gap(gstart)
        if gstart < start:
            self._add_gap(gstart, start)
        if end < gend:
            self._add_gap(end, gend)
        self._spans[start] = (end, value)
        self._used += end - start

    def remove(self, start: int) -> V:
        """Remove the interval starting at ``start`` and return its value (KeyError if none)."""
        end, value = self._spans.pop(start)
        self._used -= end - start
        self._free(start, end)
        return value  # type: ignore[no-any-return]

    def set_bounds(self, low: int, high: int) -> None:
        """Move the bounds; every interval must stay inside (ValueError otherwise). O(log n)."""
        if not 0 <= low <= high:
            raise ValueError(f"bad bounds [{low:#x}, {high:#x})")
        if not self._spans:
            if self._high > self._low:
                self._del_gap(self._low)
            self._low, self._high = low, high
            if high > low:
                self._add_gap(low, high)
            return
        first = self._spans.keys()[0]
        last_end = self._spans.peekitem(-1)[1][0]
        if first < low or last_end > high:
            raise ValueError(
                f"bounds [{low:#x}, {high:#x}) would cut interval(s) in [{first:#x}, {last_end:#x})"
            )
        # Only the two edge gaps depend on the bounds.
        if first > self._low:
            self._del_gap(self._low)
        if last_end < self._high:
            self._del_gap(last_end)
        self._low, self._high = low, high
        if low < first:
            self._add_gap(low, first)
        if last_end < high:
            self._add_gap(last_end, high)

    # -- internals -------------------------------------------------------------

    def _free(self, start: int, end: int) -> None:
        """Turn ``[start, end)`` into free space, merging with the neighbouring gaps."""
        i = self._gaps.bisect_left(start)
        if i > 0:
            pstart = self._gaps.keys()[i - 1]
            if self._gaps[pstart] == start:
                self._del_gap(pstart)
                start = pstart
        nxt = self._gaps.get(end)
        if nxt is not None:
            self._del_gap(end)
            end = nxt
        self._add_gap(start, end)

    def _add_gap(self, start: int, end: int) -> None:
        self._gaps[start] = end
        cls = (end - start).bit_length()
        lst = self._classes.get(cls)
        if lst is None:
            lst = self._classes[cls] = SortedList()
        lst.add(start)

    def _del_gap(self, start: int) -> None:
        end = self._gaps.pop(start)
        cls = (end - start).bit_length()
        lst = self._classes[cls]
        lst.remove(start)
        if not lst:
            del self._classes[cls]

    def _check(self) -> None:
        """Assert every internal invariant (tests call this after each mutation)."""
        cursor = self._low
        expected_gaps: list[tuple[int, int]] = []
        used = 0
        for start, (end, _value) in self._spans.items():
            assert self._low <= start < end <= self._high, (start, end)
            assert start >= cursor, "overlapping intervals"
            if start > cursor:
                expected_gaps.append((cursor, start))
            cursor = end
            used += end - start
        if cursor < self._high:
            expected_gaps.append((cursor, self._high))
        assert list(self._gaps.items()) == expected_gaps, (list(self._gaps.items()), expected_gaps)
        assert used == self._used
        filed = sorted(s for lst in self._classes.values() for s in lst)
        assert filed == [g[0] for g in expected_gaps]
        for cls, lst in self._classes.items():
            assert lst, "empty size class kept"
            for s in lst:
                assert (self._gaps[s] - s).bit_length() == cls
