"""A sorted map of disjoint half-open intervals with a first-fit index of the free gaps.

Both backends keep their address space in one of these (reservations and foreign
mappings), and every reservation keeps the file mappings placed inside it in another,
so placement is the same policy, and gives the same relative layout, on the simulator
and on real mmap.

Theory of operation: ``_spans`` maps an interval's start to ``(end, value)`` and
``_starts`` keeps those starts sorted; ``_gaps`` maps the start of every maximal free
range inside ``[low, high)`` to its end, ``_gap_ends`` maps its end back to its start,
and ``_gap_starts`` keeps the gap starts sorted; ``_classes`` files each gap's start
under its size class (``size.bit_length()``), so that first-fit (and last-fit) needs
only the smallest (largest) start of each class that surely fits plus a short scan of
the one class that may or may not.

Point lookups go through :func:`floor`, which bisects the sorted list's sublists
directly instead of converting a position into an index (that conversion walks a
positional tree and dominated lookups in large maps). Plain dicts plus
``SortedList`` rather than ``SortedDict`` keep an empty map cheap: every reservation
owns one. Lookups, inserts and removals are O(log n); first-fit and last-fit are
O(log n) for the usual layouts (O(k) in the worst case, k the number of too-small gaps
of the requested size class lying on the wrong side of the answer).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from sortedcontainers import SortedList

__all__ = ["IntervalMap", "Span"]

V = TypeVar("V")

Span = tuple[int, int, V]  # (start, end, value)


def floor(sl: Any, x: int) -> int | None:
    """The largest element of the SortedList ``sl`` that is ``<= x``, or None. O(log n).

    Uses ``_maxes`` / ``_lists``, sortedcontainers' documented implementation (a list
    of sorted sublists and their maxima), which ``sl.bisect_right(x)`` + ``sl[i]``
    would also walk, plus a positional index we do not need.
    """
    maxes = sl._maxes
    if not maxes:
        return None
    pos = bisect_right(maxes, x)
    if pos == len(maxes):
        return maxes[-1]  # type: ignore[no-any-return]
    sub = sl._lists[pos]
    i = bisect_right(sub, x)
    if i:
        return sub[i - 1]  # type: ignore[no-any-return]
    return sl._lists[pos - 1][-1] if pos else None


class IntervalMap(Generic[V]):
    """Disjoint intervals ``[start, end)`` inside ``[low, high)``, each carrying a value."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"bad interval map bounds [{low:#x}, {high:#x})")
        self._low = low
        self._high = high
        self._load: int | None = None  # sublist size for tests (see _reset)
        self._spans: dict[int, tuple[int, V]] = {}  # start -> (end, value)
        self._starts = SortedList()  # sorted interval starts
        self._gaps: dict[int, int] = {}  # start -> end
        self._gap_ends: dict[int, int] = {}  # end -> start
        self._gap_starts = SortedList()  # sorted gap starts
        self._classes: dict[int, Any] = {}  # size class -> SortedList of gap starts
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
        spans = self._spans
        for start in self._starts:
            end, value = spans[start]
            yield start, end, value

    def find(self, addr: int) -> tuple[int, int, V] | None:
        """The interval containing ``addr``, or None. O(log n)."""
        start = floor(self._starts, addr)
        if start is None:
            return None
        end, value = self._spans[start]
        return (start, end, value) if addr < end else None

    def get(self, start: int) -> tuple[int, V] | None:
        """``(end, value)`` of the interval starting exactly at ``start``, or None. O(1)."""
        return self._spans.get(start)

    def intersecting(self, start: int, end: int) -> list[tuple[int, int, V]]:
        """All intervals that intersect ``[start, end)``, in address order. O(log n + k)."""
        out: list[tuple[int, int, V]] = []
        first = floor(self._starts, start)
        if first is None:
            first = start
        spans = self._spans
        for s in self._starts.irange(first, end, inclusive=(True, False)):
            e, v = spans[s]
            if e > start:
                out.append((s, e, v))
        return out

    def extent(self) -> tuple[int, int] | None:
        """``(first start, last end)`` of the intervals, or None when empty. O(1)."""
        if not self._spans:
            return None
        return self._starts[0], self._spans[self._starts[-1]][0]

    def _gap_at(self, addr: int) -> tuple[int, int] | None:
        """The gap whose start is the largest one ``<= addr``, as ``(start, end)``."""
        gstart = floor(self._gap_starts, addr)
        return None if gstart is None else (gstart, self._gaps[gstart])

    def is_free(self, start: int, end: int) -> bool:
        """True when ``[start, end)`` lies inside the bounds and touches no interval. O(log n)."""
        if start < self._low or end > self._high or start > end:
            return False
        if start == end:
            return True
        gap = self._gap_at(start)
        return gap is not None and gap[1] >= end

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

    def last_fit(self, size: int) -> int | None:
        """Highest start of a free range of ``size`` bytes (the top of the highest gap
        that fits), or None when none fits."""
        if size <= 0:
            raise ValueError(f"last_fit needs a positive size, got {size}")
        want = size.bit_length()
        best: int | None = None  # start of the highest gap that fits
        for cls, starts in self._classes.items():
            if cls > want and (best is None or starts[-1] > best):
                best = starts[-1]
        same = self._classes.get(want)
        if same is not None:
            for start in reversed(same):
                if best is not None and start <= best:
                    break
                if self._gaps[start] - start >= size:
                    best = start
                    break
        return None if best is None else self._gaps[best] - size

    def gaps(self) -> Iterator[tuple[int, int]]:
        """The free ranges ``(start, end)`` in address order."""
        gaps = self._gaps
        for start in self._gap_starts:
            yield start, gaps[start]

    # -- mutations -------------------------------------------------------------

    def insert(self, start: int, end: int, value: V) -> None:
        """Add ``[start, end)``; raises ValueError when it is empty, outside or overlaps. O(log n)."""
        if end <= start:
            raise ValueError(f"empty interval [{start:#x}, {end:#x})")
        gap = self._gap_at(start)
        if gap is None or gap[1] < end:
            raise ValueError(f"[{start:#x}, {end:#x}) is not free")
        gstart, gend = gap
        self._del_gap(gstart)
        if gstart < start:
            self._add_gap(gstart, start)
        if end < gend:
            self._add_gap(end, gend)
        self._spans[start] = (end, value)
        self._starts.add(start)
        self._used += end - start

    def remove(self, start: int) -> V:
        """Remove the interval starting at ``start`` and return its value (KeyError if none)."""
        end, value = self._spans.pop(start)
        self._starts.remove(start)
        self._used -= end - start
        self._free(start, end)
        return value

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
        first, last_end = self._starts[0], self._spans[self._starts[-1]][0]
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
        """Turn ``[start, end)`` into free space, merging with the neighbouring gaps. O(log n)."""
        prev = self._gap_ends.get(start)
        if prev is not None:
            self._del_gap(prev)
            start = prev
        nxt = self._gaps.get(end)
        if nxt is not None:
            self._del_gap(end)
            end = nxt
        self._add_gap(start, end)

    def _new_list(self) -> Any:
        lst = SortedList()
        if self._load is not None:
            lst._reset(self._load)
        return lst

    def _add_gap(self, start: int, end: int) -> None:
        self._gaps[start] = end
        self._gap_ends[end] = start
        self._gap_starts.add(start)
        cls = (end - start).bit_length()
        lst = self._classes.get(cls)
        if lst is None:
            lst = self._classes[cls] = self._new_list()
        lst.add(start)

    def _del_gap(self, start: int) -> None:
        end = self._gaps.pop(start)
        del self._gap_ends[end]
        self._gap_starts.remove(start)
        cls = (end - start).bit_length()
        lst = self._classes[cls]
        lst.remove(start)
        if not lst:
            del self._classes[cls]

    def _reset(self, load: int) -> None:
        """Use sublists of ``load`` elements (tests: tiny sublists reach every edge case)."""
        self._load = load
        self._starts._reset(load)
        self._gap_starts._reset(load)
        for lst in self._classes.values():
            lst._reset(load)

    def _check(self) -> None:
        """Assert every internal invariant (tests call this after each mutation)."""
        assert list(self._starts) == sorted(self._spans)
        assert list(self._gap_starts) == sorted(self._gaps)
        assert self._gap_ends == {e: s for s, e in self._gaps.items()}
        cursor = self._low
        expected_gaps: list[tuple[int, int]] = []
        used = 0
        for start in self._starts:
            end, _value = self._spans[start]
            assert self._low <= start < end <= self._high, (start, end)
            assert start >= cursor, "overlapping intervals"
            if start > cursor:
                expected_gaps.append((cursor, start))
            cursor = end
            used += end - start
        if cursor < self._high:
            expected_gaps.append((cursor, self._high))
        assert list(self.gaps()) == expected_gaps, (list(self.gaps()), expected_gaps)
        assert used == self._used
        filed = sorted(s for lst in self._classes.values() for s in lst)
        assert filed == [g[0] for g in expected_gaps]
        for cls, lst in self._classes.items():
            assert lst, "empty size class kept"
            for s in lst:
                assert (self._gaps[s] - s).bit_length() == cls
        # floor agrees with a plain bisect on both sorted lists, around every element.
        for sl in (self._starts, self._gap_starts):
            flat = list(sl)
            for x in {p + d for p in flat for d in (-1, 0, 1)} | {self._low - 1, self._high}:
                i = bisect_right(flat, x)
                assert floor(sl, x) == (flat[i - 1] if i else None), x
