"""pmemsim.testing.strategies: every strategy keeps its promise, and operation sequences run cleanly."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pmemsim
from pmemsim import Coalescing, Config, FaultPlan, Granularity, MemFlags, PmemSet, Source, SourceFlags
from pmemsim.testing import strategies as pst
from pmemsim.testing.ops import InjectFault, MapPart, OperationRunner, Persist, Read, Write, snapshot

PAGE = 4096


@given(pst.granularities())
def test_granularities(g):
    assert isinstance(g, Granularity)


@given(pst.coalescing_modes())
def test_coalescing_modes_are_valid(mode):
    Coalescing(mode)


@given(pst.coalescing_modes(invalid=True))
def test_invalid_coalescing_modes_are_refused(mode):
    pset = PmemSet(Config(Granularity.PAGE, address_space=pmemsim.SimulatedAddressSpace()))
    if mode in set(Coalescing):
        pset.set_contiguous_part_coalescing(mode)
    else:
        with pytest.raises(pmemsim.PmemsetError) as info:
            pset.set_contiguous_part_coalescing(mode)
        assert info.value.code == pmemsim.ErrorCode.INVALID_COALESCING_VALUE
    pset.close()


@given(pst.source_flags())
def test_source_flags_are_valid(flags):
    assert isinstance(flags, SourceFlags)


@given(pst.source_flags(invalid=True))
def test_invalid_source_flags_are_refused(flags):
    if flags & ~7:
        with pytest.raises(pmemsim.PmemsetError) as info:
            Source.xfrom_file("/nonexistent/never-opened", flags)
        assert info.value.code == pmemsim.ErrorCode.INVALID_SOURCE_FILE_CREATE_FLAGS


@given(pst.mem_flags(), pst.mem_flags(invalid=True))
def test_mem_flags(valid, maybe_invalid):
    assert valid == MemFlags(valid)
    assert maybe_invalid >= 0


@given(st.sampled_from([256, 4096, 65536]), st.data())
def test_lengths_and_offsets(page, data):
    assert data.draw(pst.aligned_lengths(page)) % page == 0
    assert data.draw(pst.aligned_lengths(page, min_pages=2)) >= 2 * page
    assert data.draw(pst.unaligned_lengths(page)) % page != 0
    assert data.draw(pst.aligned_offsets(page)) % page == 0
    assert data.draw(pst.unaligned_offsets(page)) % page != 0
    assert pst.INT64_MAX < data.draw(pst.huge_offsets()) <= pst.SIZE_MAX
    assert data.draw(pst.lengths(page, unaligned=False, whole=False)) % page == 0
    off = data.draw(pst.offsets(page, huge=False, unaligned=False))
    assert off % page == 0 and off <= 16 * page


def test_strategy_arguments_are_checked():
    with pytest.raises(ValueError, match="power of two"):
        pst.aligned_lengths(1000)
    with pytest.raises(ValueError, match="min_pages"):
        pst.layouts(min_pages=0)


@given(pst.layouts())
def test_layouts_build_spaces_with_their_occupied_ranges(layout):
    space = layout.build()
    assert space.page_size == layout.page_size
    assert space.high - space.low == layout.pages * layout.page_size
    assert [(o.addr - space.low, o.size) for o in space.occupied()] == [
        (p * layout.page_size, n * layout.page_size) for p, n in layout.occupied
    ]
    assert space.placement is layout.placement
    space._check()


@pytest.mark.skipif(sys.platform != "linux", reason="the mmap backend is Linux-only")
@settings(max_examples=10)
@given(pst.layouts(page_size=PAGE, max_pages=64))
def test_layouts_build_on_mmap_too(layout):
    space = layout.build("mmap")
    try:
        sim = layout.build("sim")
        rel = [(o.addr - space.low, o.size) for o in space.occupied()]
        assert rel == [(o.addr - sim.low, o.size) for o in sim.occupied()]
    finally:
        space.close()  # type: ignore[attr-defined]


@given(pst.address_spaces(page_size=256, max_pages=32))
def test_address_spaces(space):
    assert isinstance(space, pmemsim.SimulatedAddressSpace)
    assert space.page_size == 256


@given(pst.fault_plans())
def test_fault_plans_fire_as_planned(plan):
    assert isinstance(plan, FaultPlan)
    expected = []
    for site in pmemsim.FaultSite:
        rules = plan._rules.get(site, [])
        for hit in range(1, 6):
            if any(r.every or r.at == hit for r in rules):
                expected.append((site, hit))
            plan.hit(site)
    assert [(f.site, f.hit) for f in plan.fired] == expected


@contextmanager
def _world(backend: str = "sim", page: int = PAGE) -> Iterator[tuple[PmemSet, list[Source], FaultPlan]]:
    """A set on a fresh space with two 16-page files and a growing one."""
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(2):
            path = os.path.join(d, f"f{i}")
            with open(path, "wb") as f:
                f.write(bytes(range(256)) * (16 * page // 256))
            paths.append(path)
        space = pmemsim.SimulatedAddressSpace(page) if backend == "sim" else _mmap(page)
        plan = FaultPlan()
        sources = [Source.from_file(paths[0]), Source.from_file(paths[1])]
        sources.append(Source.xfrom_file(os.path.join(d, "grow"), SourceFlags.CREATE_IF_NEEDED | 4))
        pset = PmemSet(Config(Granularity.PAGE, address_space=space, fault_plan=plan))
        try:
            yield pset, sources, plan
        finally:
            pset.close()
            for s in sources:
                s.delete()
            close = getattr(space, "close", None)
            if close is not None:
                close()


def _mmap(page: int) -> pmemsim.LayoutAddressSpace:
    from pmemsim.addrspace.mmap import MmapAddressSpace

    return MmapAddressSpace(1 << 24, page_size=page)


@given(pst.operations(256, sources=3))
def test_operation_sequences_keep_every_promise(ops):
    # The runner asserts that a failed operation changes nothing and runs _check() after each.
    with _world(page=256) as (pset, sources, plan):
        outcomes = OperationRunner(pset, sources, plan).run_all(ops)
    assert len(outcomes) == len(ops)


@given(pst.operations(256, sources=3, faults=False, min_size=1))
def test_operation_sequences_are_deterministic(ops):
    with _world(page=256) as (pset, sources, _):
        first = OperationRunner(pset, sources).run_all(ops)
    with _world(page=256) as (pset, sources, _):
        assert OperationRunner(pset, sources).run_all(ops) == first


@pytest.mark.skipif(sys.platform != "linux", reason="the mmap backend is Linux-only")
@settings(max_examples=30)
@given(pst.operations(PAGE, sources=3))
def test_operation_sequences_agree_across_backends(ops):
    with _world("sim") as (pset, sources, plan):
        sim = OperationRunner(pset, sources, plan).run_all(ops)
    with _world("mmap") as (pset, sources, plan):
        real = OperationRunner(pset, sources, plan).run_all(ops)
    assert sim == real


def test_runner_reports_outcomes():
    with _world() as (pset, sources, plan):
        runner = OperationRunner(pset, sources, plan)
        assert runner.run(MapPart(0, 0, 2 * PAGE)) == "ok [0x0, +0x2000)"
        assert runner.run(Write(0, 10, b"abc")) == "ok"
        assert runner.run(Read(0, 10, 3)) == "ok " + b"abc".hex()
        assert runner.run(Persist(0, 2 * PAGE, 1)) == "PMEMSET_E_CANNOT_FIND_PART_MAP"
        assert runner.run(MapPart(0, 0, 100)) == "PMEMSET_E_LENGTH_UNALIGNED"
        assert runner.run(InjectFault("map.file")) == "ok"
        before = snapshot(pset, sources)
        assert runner.run(MapPart(1, 0, PAGE)) == "PMEMSET_E_INVALID_PMEM2_MAP"
        assert snapshot(pset, sources) == before
