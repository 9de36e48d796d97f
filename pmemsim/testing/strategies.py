"""Hypothesis strategies for pmemsim: enum values, lengths and offsets, layouts, fault plans, operations.

Every strategy takes the page size it should respect (lengths and offsets are drawn as
whole pages unless the strategy says "unaligned"), so the same strategies serve a
simulator with tiny pages and the mmap backend with the kernel's. Values that describe
a setup (:class:`Layout`) are frozen and printable, so a failing example reads as the
setup it stands for; call :meth:`Layout.build` to get the address space.

    from hypothesis import given
    from pmemsim.testing import strategies as pst

    @given(pst.layouts(page_size=4096), pst.aligned_lengths(4096))
    def test_something(layout, length): ...

Requires hypothesis (the ``[test]`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from pmemsim.addrspace.backends import SpaceOptions, make_address_space
from pmemsim.addrspace.base import AddressSpace, Placement
from pmemsim.enums import Coalescing, Granularity, MemFlags, SourceFlags
from pmemsim.faults import FaultPlan, FaultSite
from pmemsim.testing.ops import (
    InjectFault,
    MapPart,
    Occupy,
    Operation,
    Persist,
    Read,
    RemovePartMap,
    RemoveRange,
    SetCoalescing,
    Write,
)

__all__ = [
    "INT64_MAX",
    "SIZE_MAX",
    "Layout",
    "address_spaces",
    "aligned_lengths",
    "aligned_offsets",
    "coalescing_modes",
    "fault_plans",
    "fault_sites",
    "granularities",
    "huge_offsets",
    "layouts",
    "lengths",
    "mem_flags",
    "offsets",
    "operations",
    "source_flags",
    "unaligned_lengths",
    "unaligned_offsets",
]

INT64_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1

_SOURCE_FLAG_BITS = int(
    SourceFlags.CREATE_ALWAYS | SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED
)
_MEM_FLAG_BITS = int(
    MemFlags.NODRAIN | MemFlags.NONTEMPORAL | MemFlags.TEMPORAL | MemFlags.WC | MemFlags.WB | MemFlags.NOFLUSH
)


def _check_page_size(page_size: int) -> None:
    if not isinstance(page_size, int) or page_size <= 0 or page_size & (page_size - 1):
        raise ValueError(f"page_size must be a positive power of two, got {page_size!r}")


def granularities() -> st.SearchStrategy[Granularity]:
    """Every store granularity (BYTE, CACHE_LINE, PAGE); shrinks towards BYTE."""
    return st.sampled_from(list(Granularity))


def coalescing_modes(*, invalid: bool = False) -> st.SearchStrategy[int]:
    """Coalescing modes; ``invalid=True`` also draws out-of-range ints (INVALID_COALESCING_VALUE)."""
    valid: st.SearchStrategy[int] = st.sampled_from(list(Coalescing))
    if not invalid:
        return valid
    bad = st.one_of(st.integers(max_value=-1), st.integers(min_value=len(Coalescing)))
    return st.one_of(valid, bad)


def source_flags(*, invalid: bool = False) -> st.SearchStrategy[int]:
    """Flag combinations for ``Source.xfrom_file``; ``invalid=True`` adds unknown bits.

    Valid draws are :class:`SourceFlags` values; invalid ones are plain ints with at
    least one bit outside ``CREATE_ALWAYS | CREATE_IF_NEEDED | TRUNCATE_IF_NEEDED``.
    """
    valid: st.SearchStrategy[int] = st.integers(0, _SOURCE_FLAG_BITS).map(SourceFlags)
    if not invalid:
        return valid
    bad = st.integers(1, 1 << 16).map(lambda x: (x << 3) | (x & _SOURCE_FLAG_BITS))
    return st.one_of(valid, bad)


def mem_flags(*, invalid: bool = False) -> st.SearchStrategy[int]:
    """Flags for memcpy / memset / memmove; ``invalid=True`` adds unknown bits (ValueError)."""
    valid: st.SearchStrategy[int] = st.integers(0, _MEM_FLAG_BITS).map(MemFlags)
    if not invalid:
        return valid
    return st.one_of(valid, st.integers(1, 1 << 10).map(lambda x: x << 6))


def aligned_lengths(
    page_size: int = 4096, *, min_pages: int = 1, max_pages: int = 16
) -> st.SearchStrategy[int]:
    """Whole-page lengths from ``min_pages`` to ``max_pages`` pages."""
    _check_page_size(page_size)
    return st.integers(min_pages, max_pages).map(lambda n: n * page_size)


def unaligned_lengths(page_size: int = 4096, *, max_pages: int = 16) -> st.SearchStrategy[int]:
    """Positive lengths that are **not** a multiple of ``page_size`` (LENGTH_UNALIGNED)."""
    _check_page_size(page_size)
    if page_size == 1:
        raise ValueError("with page_size 1 every length is aligned")
    return st.tuples(st.integers(0, max_pages), st.integers(1, page_size - 1)).map(
        lambda t: t[0] * page_size + t[1]
    )


def lengths(
    page_size: int = 4096, *, max_pages: int = 16, unaligned: bool = True, whole: bool = True
) -> st.SearchStrategy[int]:
    """Part lengths: mostly whole pages, sometimes 0 (``whole``: the whole source) or unaligned."""
    options = [aligned_lengths(page_size, max_pages=max_pages)]
    if whole:
        options.append(st.just(0))
    if unaligned and page_size > 1:
        options.append(unaligned_lengths(page_size, max_pages=max_pages))
    return st.one_of(*options)


def aligned_offsets(page_size: int = 4096, *, max_pages: int = 16) -> st.SearchStrategy[int]:
    """Page-aligned offsets from 0 to ``max_pages`` pages."""
    _check_page_size(page_size)
    return st.integers(0, max_pages).map(lambda n: n * page_size)


def unaligned_offsets(page_size: int = 4096, *, max_pages: int = 16) -> st.SearchStrategy[int]:
    """Offsets that are not page-aligned (INVALID_PMEM2_MAP when mapped)."""
    return unaligned_lengths(page_size, max_pages=max_pages)


def huge_offsets() -> st.SearchStrategy[int]:
    """Offsets above INT64_MAX that still fit a ``size_t`` (INVALID_OFFSET_VALUE)."""
    return st.integers(INT64_MAX + 1, SIZE_MAX)


def offsets(
    page_size: int = 4096, *, max_pages: int = 16, unaligned: bool = True, huge: bool = True
) -> st.SearchStrategy[int]:
    """Part offsets: mostly page-aligned, sometimes unaligned or above INT64_MAX."""
    options = [aligned_offsets(page_size, max_pages=max_pages)]
    if unaligned and page_size > 1:
        options.append(unaligned_offsets(page_size, max_pages=max_pages))
    if huge:
        options.append(huge_offsets())
    return st.one_of(*options)


def fault_sites(sites: list[FaultSite] | None = None) -> st.SearchStrategy[FaultSite]:
    """Named fault sites (all of them by default)."""
    return st.sampled_from(list(FaultSite) if sites is None else list(sites))


@st.composite
def _fault_plan(draw: st.DrawFn, sites: list[FaultSite] | None, max_faults: int, max_hit: int) -> FaultPlan:
    plan = FaultPlan()
    for _ in range(draw(st.integers(0, max_faults))):
        site = draw(fault_sites(sites))
        if draw(st.integers(0, 9)) == 0:
            plan.fail(site, every=True)
        else:
            plan.fail(site, at=draw(st.integers(1, max_hit)))
    return plan


def fault_plans(
    sites: list[FaultSite] | None = None, *, max_faults: int = 3, max_hit: int = 4
) -> st.SearchStrategy[FaultPlan]:
    """Fresh :class:`FaultPlan` objects failing up to ``max_faults`` (site, hit) pairs.

    Hits are drawn from 1 to ``max_hit``; one rule in ten fails every hit of its site.
    """
    return _fault_plan(sites, max_faults, max_hit)


@dataclass(frozen=True)
class Layout:
    """An address space to build: bounds in pages, placement, occupied ranges (page, pages).

    ``build("sim")`` makes a :class:`SimulatedAddressSpace` whose ``low`` is
    ``low_page * page_size``; ``build("mmap")`` makes a :class:`MmapAddressSpace` of
    ``pages`` pages (its ``page_size`` must be a multiple of the kernel's). Occupied
    ranges are given relative to ``low`` so both backends get the same layout.
    """

    page_size: int
    pages: int
    occupied: tuple[tuple[int, int], ...] = ()
    placement: Placement = Placement.BOTTOM_UP
    low_page: int = 1 << 20

    def build(self, backend: str = "sim") -> AddressSpace:
        """A fresh address space with this layout, of the backend called ``backend``."""
        space = make_address_space(
            backend,
            SpaceOptions(
                page_size=self.page_size,
                size=self.pages * self.page_size,
                low=self.low_page * self.page_size,
                placement=self.placement,
            ),
        )
        for page, n in self.occupied:
            space.occupy(space.low + page * self.page_size, n * self.page_size)
        return space


@st.composite
def _layout(
    draw: st.DrawFn, page_sizes: st.SearchStrategy[int], min_pages: int, max_pages: int, max_occupied: int
) -> Layout:
    page_size = draw(page_sizes)
    pages = draw(st.integers(min_pages, max_pages))
    starts = draw(st.lists(st.integers(0, pages - 1), max_size=max_occupied, unique=True))
    occupied: list[tuple[int, int]] = []
    taken_until = 0
    for start in sorted(starts):
        if start < taken_until:
            continue
        n = draw(st.integers(1, max(1, min(4, pages - start))))
        occupied.append((start, n))
        taken_until = start + n
    placement = draw(st.sampled_from(list(Placement)))
    return Layout(page_size, pages, tuple(occupied), placement)


def layouts(
    page_size: int | None = None,
    *,
    min_pages: int = 16,
    max_pages: int = 256,
    max_occupied: int = 4,
) -> st.SearchStrategy[Layout]:
    """Address-space layouts: a bounded space with up to ``max_occupied`` foreign mappings.

    ``page_size`` None draws 256 or 4096 (small pages make edge cases cheap).
    """
    if page_size is not None:
        _check_page_size(page_size)
    if not 1 <= min_pages <= max_pages:
        raise ValueError(f"need 1 <= min_pages <= max_pages, got {min_pages}, {max_pages}")
    sizes = st.just(page_size) if page_size is not None else st.sampled_from([4096, 256])
    return _layout(sizes, min_pages, max_pages, max_occupied)


def address_spaces(page_size: int | None = None, **kwargs: int) -> st.SearchStrategy[AddressSpace]:
    """Fresh simulated address spaces built from :func:`layouts` (same keyword arguments)."""
    return layouts(page_size, **kwargs).map(lambda layout: layout.build("sim"))


def operations(
    page_size: int = 4096,
    *,
    sources: int = 2,
    max_pages: int = 8,
    min_size: int = 0,
    max_size: int = 30,
    faults: bool = True,
) -> st.SearchStrategy[list[Operation]]:
    """Whole operation sequences for :class:`~pmemsim.testing.ops.OperationRunner`.

    Parts come from ``sources`` sources with page-aligned and (sometimes) unaligned
    offsets and lengths; coalescing switches between every mode and an invalid one;
    removals, writes, reads and persists target part maps by index; ``Occupy`` blocks
    the range after a part map; ``faults=False`` leaves out fault injection.
    """
    _check_page_size(page_size)
    index = st.integers(0, 7)
    in_map = st.integers(0, max_pages * page_size)
    small = st.integers(0, 2 * page_size)
    ops: list[st.SearchStrategy[Operation]] = [
        st.builds(
            MapPart,
            st.integers(0, sources - 1),
            offsets(page_size, max_pages=max_pages, huge=False),
            lengths(page_size, max_pages=max_pages // 2 or 1),
        ),
        st.builds(SetCoalescing, st.integers(-1, len(Coalescing))),  # one invalid value each side
        st.builds(RemovePartMap, index),
        st.builds(RemoveRange, index, in_map, small),
        st.builds(Write, index, in_map, st.binary(min_size=1, max_size=16), mem_flags()),
        st.builds(Read, index, in_map, st.integers(0, 16)),
        st.builds(Persist, index, in_map, st.integers(0, 16)),
        st.builds(Occupy, index, st.integers(1, 2)),
    ]
    if faults:
        ops.append(st.builds(InjectFault, fault_sites().map(str)))
    return st.lists(st.one_of(*ops), min_size=min_size, max_size=max_size)
