"""PMDK's libpmemset part tests (``src/test/pmemset_part/pmemset_part.c``) ported to pytest.

One test per PMDK test case, named after it (``test_part_map_enomem`` ports PMDK's
``test_part_map_enomem`` ...). Most run against the Python API; the ``test_capi_*``
ones repeat a few of them through :mod:`pmemsim.capi` the way PMDK's C tests are
written (``Ref`` out-pointers, return codes).

Expected values come from the contract (docs/design.md), not from running the code: new reservations go
first-fit from the low end of a fresh space (so the first part map starts at
``space.low`` and the next one right after it), a descriptor describes the whole part
map, coalesced part maps grow by the part's length, and failed calls change nothing.
Where PMDK and the contract differ, the contract wins.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest
from support.sets import PAGE, snapshot

from pmemsim import (
    Coalescing,
    ErrorCode,
    EventType,
    FaultPlan,
    FaultSite,
    Granularity,
    PartAddEvent,
    PartDescriptor,
    PmemSet,
    PmemsetError,
    Source,
    SourceFlags,
)
from pmemsim import capi as c

KiB = 1024
MiB = 1024 * KiB
#: PMDK's part tests map 64 KiB parts.
PART = 64 * KiB
INT64_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1


# -- helpers ---------------------------------------------------------------------------------------


def expect_error(code: int, fn: Callable[..., Any], *args: Any) -> PmemsetError:
    """Call ``fn(*args)``; assert it raises PmemsetError with ``code``."""
    with pytest.raises(PmemsetError) as info:
        fn(*args)
    assert info.value.code == code, f"expected {code}, got {info.value}"
    return info.value


def walk(pset: PmemSet) -> list[PartDescriptor]:
    """Every part map's descriptor, found with first/next the way PMDK iterates (refs dropped)."""
    out: list[PartDescriptor] = []
    pmap = pset.first_part_map()
    while pmap is not None:
        out.append(pmap.descriptor)
        nxt = pset.next_part_map(pmap)
        pmap.drop()
        pmap = nxt
    return out


def file_bytes(path: str, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def map_new(pset: PmemSet, src: Source, offset: int = 0, length: int = 0) -> PartDescriptor:
    return pset.part_map(pset.part_new(src, offset, length))


def remove_at(pset: PmemSet, addr: int) -> None:
    pset.remove_part_map(pset.part_map_by_address(addr))


# -- part_new --------------------------------------------------------------------------------------


def test_part_new_enomem(make_set, make_file, space):
    """PMDK test_part_new_enomem: part allocation fails → -ENOMEM, nothing is created."""
    plan = FaultPlan().fail("alloc.part")
    pset = make_set(fault_plan=plan)
    src = Source.from_file(make_file(PART))
    err = expect_error(ErrorCode.ENOMEM, pset.part_new, src, 0, 0)
    assert err.code == -errno.ENOMEM == -12
    assert err.errno == errno.ENOMEM
    assert plan.fired_sites() == [FaultSite.ALLOC_PART]
    assert len(pset) == 0
    assert space.reservations() == []
    # only the first hit fails: the next part_new works and the part maps
    part = pset.part_new(src, 0, 0)
    assert pset.part_map(part) == PartDescriptor(space.low, PART)


def test_part_new_invalid_source_file(make_set, tmp_path, make_file):
    """PMDK test_part_new_invalid_source_file: no part from a missing file or a deleted source."""
    pset = make_set()
    missing = str(tmp_path / "does-not-exist")
    err = expect_error(ErrorCode.INVALID_SOURCE_PATH, Source.from_file, missing)
    assert err.errno == errno.ENOENT
    assert not os.path.exists(missing)

    src = Source.from_file(make_file(PART))
    src.delete()
    assert src.deleted
    with pytest.raises((ValueError, PmemsetError)):
        pset.part_new(src, 0, 0)
    with pytest.raises(TypeError):
        pset.part_new(None, 0, 0)  # type: ignore[arg-type]
    assert len(pset) == 0


def test_part_new_valid_source_file(make_set, make_file, space):
    """PMDK test_part_new_valid_source_file: part_new succeeds and maps nothing yet."""
    pset = make_set()
    src = Source.from_file(make_file(PART))
    part = pset.part_new(src, PAGE, 2 * PAGE)
    assert (part.offset, part.length) == (PAGE, 2 * PAGE)
    assert part.source is src
    assert not part.consumed and not part.deleted
    assert len(pset) == 0 and pset.first_part_map() is None
    assert space.reservations() == []
    part.delete()
    assert part.deleted


# -- part_map from the three kinds of source ----------------------------------------------------------


def test_part_map_valid_source_file(make_set, make_file, space):
    """PMDK test_part_map_valid_source_file: map a whole file, read its contents through the set."""
    path = make_file(PART, fill=b"pmemset")
    pset = make_set()
    src = Source.from_file(path)
    part = pset.part_new(src, 0, 0)
    desc = pset.part_map(part)
    assert desc == PartDescriptor(space.low, PART)
    assert part.consumed
    assert pset.read(desc.addr, PART) == file_bytes(path, 0, PART)
    assert pset.get_store_granularity() == Granularity.PAGE
    assert walk(pset) == [desc]
    assert [(r.addr, r.size) for r in pset.reservations()] == [(desc.addr, PART)]
    # a consumed part cannot be mapped again, and trying changes nothing
    before = snapshot(pset, path)
    with pytest.raises(PmemsetError):
        pset.part_map(part)
    assert snapshot(pset, path) == before
    # stores reach the file
    pset.memcpy(desc.addr + 3 * PAGE, b"written through the set")
    assert file_bytes(path, 3 * PAGE, 23) == b"written through the set"


def test_part_map_valid_source_fd(make_set, make_file, space):
    """PMDK test_part_map_valid_source_fd: a source borrowing an fd maps; the fd is never closed."""
    path = make_file(2 * PART, fill=b"fd")
    fd = os.open(path, os.O_RDWR)
    try:
        pset = make_set()
        src = Source.from_fd(fd)
        desc = map_new(pset, src, PART, PART)  # the second half of the file
        assert desc == PartDescriptor(space.low, PART)
        assert pset.read(desc.addr, 16) == file_bytes(path, PART, 16)
        pset.memcpy(desc.addr + 8, b"via fd")
        assert os.pread(fd, 6, PART + 8) == b"via fd"
        src.delete()
        os.fstat(fd)  # still open: deleting the source does not close a borrowed fd
        assert pset.read(desc.addr + 8, 6) == b"via fd"  # the mapping stays valid
        pset.close()
        os.fstat(fd)  # neither does closing the set
    finally:
        os.close(fd)


def test_part_map_valid_source_temp(make_set, tmp_path, space):
    """PMDK test_part_map_valid_source_temp: a temporary source grows to fit each part."""
    pset = make_set()
    src = Source.from_temporary(tmp_path)
    assert src.size() == 0
    assert os.listdir(tmp_path) == []  # unlinked at once
    d1 = map_new(pset, src, 0, PART)
    assert d1 == PartDescriptor(space.low, PART)
    assert src.size() == PART
    d2 = map_new(pset, src, PART, 2 * PART)
    assert d2 == PartDescriptor(d1.end, 2 * PART)
    assert src.size() == 3 * PART
    assert pset.read(d2.addr, 2 * PART) == bytes(2 * PART)  # grown with zeros
    pset.memcpy(d2.addr + PAGE, b"temporary")
    assert pset.read(d2.addr + PAGE, 9) == b"temporary"
    assert walk(pset) == [d1, d2]
    assert os.listdir(tmp_path) == []


# -- part_map errors ----------------------------------------------------------------------------------


def test_part_map_invalid_offset(make_set, make_file):
    """PMDK test_part_map_invalid_offset: offset > INT64_MAX → INVALID_OFFSET_VALUE."""
    path = make_file(PART)
    pset = make_set()
    src = Source.from_file(path)
    for length in (PART, 0):
        part = pset.part_new(src, INT64_MAX + 1, length)
        before = snapshot(pset, path, part=part)
        expect_error(ErrorCode.INVALID_OFFSET_VALUE, pset.part_map, part)
        assert snapshot(pset, path, part=part) == before
        assert not part.consumed
    # the largest page-aligned offset not above INT64_MAX passes step 4 and fails at
    # the mapping (far beyond the end of the file)
    part = pset.part_new(src, INT64_MAX - INT64_MAX % PAGE, PAGE)
    assert part.offset <= INT64_MAX and part.offset % PAGE == 0
    expect_error(ErrorCode.INVALID_PMEM2_MAP, pset.part_map, part)
    assert len(pset) == 0


def test_part_map_unaligned_size(make_set, make_file, space):
    """PMDK test_unaligned_part_size: a 16 MiB - 1 file mapped whole → LENGTH_UNALIGNED."""
    path = make_file(16 * MiB - 1)
    pset = make_set()
    part = pset.part_new(Source.from_file(path), 0, 0)
    before = snapshot(pset, path, part=part)
    expect_error(ErrorCode.LENGTH_UNALIGNED, pset.part_map, part)
    assert snapshot(pset, path, part=part) == before
    assert space.reservations() == []
    assert len(pset) == 0


def test_part_map_enomem(make_set, make_file, space):
    """PMDK test_part_map_enomem: the part-map allocation fails → -ENOMEM, everything undone."""
    path = make_file(PART)
    plan = FaultPlan().fail("alloc.part_map")
    pset = make_set(fault_plan=plan)
    part = pset.part_new(Source.from_file(path), 0, 0)
    before = snapshot(pset, path, part=part)
    err = expect_error(ErrorCode.ENOMEM, pset.part_map, part)
    assert err.code == -12
    assert plan.fired_sites() == [FaultSite.ALLOC_PART_MAP]
    assert snapshot(pset, path, part=part) == before
    assert space.reservations() == []  # the reservation made for it was released
    assert not part.consumed
    # the untouched part can be retried and lands where it would have gone
    assert pset.part_map(part) == PartDescriptor(space.low, PART)
    assert part.consumed


# -- first / next / by address / descriptor / drop ---------------------------------------------------------


def test_part_map_first(make_set, make_file):
    """PMDK test_part_map_first: NULL on an empty set, then the mapped part."""
    pset = make_set()
    assert pset.first_part_map() is None
    desc = map_new(pset, Source.from_file(make_file(PART)))
    pmap = pset.first_part_map()
    assert pmap is not None
    assert pmap.descriptor == desc
    pmap.drop()
    assert pmap.dropped


def test_part_map_descriptor(make_set, make_file):
    """PMDK test_part_map_descriptor: each part map's descriptor is the part_map result."""
    pset = make_set()
    d1 = map_new(pset, Source.from_file(make_file(PART)))
    d2 = map_new(pset, Source.from_file(make_file(2 * PART)))
    assert d2 == PartDescriptor(d1.end, 2 * PART)
    for want in (d1, d2):
        pmap = pset.part_map_by_address(want.addr)
        assert pmap.descriptor == want
        pmap.drop()


def test_part_map_next(make_set, make_file):
    """PMDK test_part_map_next: first → next → NULL, in address order."""
    pset = make_set()
    d1 = map_new(pset, Source.from_file(make_file(PART)))
    d2 = map_new(pset, Source.from_file(make_file(PART)))
    first = pset.first_part_map()
    assert first is not None and first.descriptor == d1
    second = pset.next_part_map(first)
    assert second is not None and second.descriptor == d2
    assert pset.next_part_map(second) is None
    first.drop()
    second.drop()
    assert len(pset) == 2


def test_part_map_drop(make_set, make_file):
    """PMDK test_part_map_drop: a map held twice cannot be removed until one reference is dropped."""
    path = make_file(PART)
    pset = make_set()
    desc = map_new(pset, Source.from_file(path))
    held = pset.first_part_map()
    again = pset.part_map_by_address(desc.addr + PAGE)
    assert held == again
    before = snapshot(pset, path)
    expect_error(ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP, pset.remove_part_map, held)
    assert snapshot(pset, path) == before
    assert not held.dropped
    again.drop()
    assert again.dropped
    pset.remove_part_map(held)
    assert held.dropped
    assert len(pset) == 0 and pset.first_part_map() is None


def test_part_map_by_addr(make_set, make_file):
    """PMDK test_part_map_by_addr: any address inside a part map finds it; others → CANNOT_FIND_PART_MAP."""
    pset = make_set()
    d1 = map_new(pset, Source.from_file(make_file(PART)))
    d2 = map_new(pset, Source.from_file(make_file(PART)))
    for addr, want in [(d1.addr, d1), (d1.addr + 100, d1), (d1.end - 1, d1), (d2.addr, d2), (d2.end - 1, d2)]:
        pmap = pset.part_map_by_address(addr)
        assert pmap.descriptor == want, hex(addr)
        pmap.drop()
    expect_error(ErrorCode.CANNOT_FIND_PART_MAP, pset.part_map_by_address, d2.end)
    expect_error(ErrorCode.CANNOT_FIND_PART_MAP, pset.part_map_by_address, d1.addr - 1)


# -- coalescing ---------------------------------------------------------------------------------------------


def _coalesce_two(pset: PmemSet, make_file, mode: Coalescing, before_first: bool):
    a, b = make_file(PART, fill=b"A"), make_file(2 * PART, fill=b"B")
    if before_first:
        pset.set_contiguous_part_coalescing(mode)
    d1 = map_new(pset, Source.from_file(a))
    if not before_first:
        pset.set_contiguous_part_coalescing(mode)
    d2 = map_new(pset, Source.from_file(b))
    return d1, d2


@pytest.mark.parametrize("mode", [Coalescing.FULL, Coalescing.OPPORTUNISTIC])
@pytest.mark.parametrize("before_first", [True, False], ids=["before", "after"])
def test_part_map_coalesce(make_set, make_file, space, mode, before_first):
    """PMDK test_part_map_{full,opp}_coalesce_{before,after}: two parts become one part map."""
    pset = make_set()
    d1, d2 = _coalesce_two(pset, make_file, mode, before_first)
    assert d1 == PartDescriptor(space.low, PART)
    assert d2 == PartDescriptor(d1.addr, 3 * PART)  # the whole, grown part map
    assert walk(pset) == [d2]
    assert [(r.addr, r.size) for r in pset.reservations()] == [(d1.addr, 3 * PART)]
    assert pset.read(d1.end - 2, 4) == b"AABB"
    assert pset.coalescing_anchor == d2


def test_part_map_full_coalesce_occupied(make_set, make_file, space):
    """FULL coalescing with the range after the previous map occupied → CANNOT_COALESCE_PARTS."""
    path = make_file(PART)
    pset = make_set()
    src = Source.from_file(path)
    d1 = map_new(pset, src)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    occ = space.occupy(d1.end, PAGE)
    part = pset.part_new(src, 0, 0)
    before = snapshot(pset, path, part=part)
    expect_error(ErrorCode.CANNOT_COALESCE_PARTS, pset.part_map, part)
    assert snapshot(pset, path, part=part) == before
    assert walk(pset) == [d1]
    # the neighbour goes away: the same part now coalesces
    space.free(occ.addr)
    assert pset.part_map(part) == PartDescriptor(d1.addr, 2 * PART)
    assert len(pset) == 1


def test_part_map_opp_coalesce_occupied(make_set, make_file, space):
    """OPPORTUNISTIC coalescing falls back to a new part map when the neighbour is occupied."""
    pset = make_set()
    pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
    src = Source.from_file(make_file(PART, fill=b"o"))
    d1 = map_new(pset, src)
    space.occupy(d1.end, 3 * PAGE)
    d2 = map_new(pset, src)
    # a new part map, first-fit after the foreign range
    assert d2 == PartDescriptor(d1.end + 3 * PAGE, PART)
    assert walk(pset) == [d1, d2]
    # the new map is the coalescing anchor now: the next part joins it
    d3 = map_new(pset, src)
    assert d3 == PartDescriptor(d2.addr, 2 * PART)
    assert walk(pset) == [d1, d3]
    assert pset.read(d3.addr + PART, 1) == b"o"


# -- remove part map --------------------------------------------------------------------------------------


def test_remove_part_map(make_set, make_file, space):
    """PMDK test_remove_part_map: remove maps one by one; their address space is given back."""
    pset = make_set()
    d1 = map_new(pset, Source.from_file(make_file(PART)))
    d2 = map_new(pset, Source.from_file(make_file(PART)))
    pmap = pset.first_part_map()
    pset.remove_part_map(pmap)
    assert pmap.dropped
    assert walk(pset) == [d2]
    assert space.is_free(d1.addr, d1.size)
    expect_error(ErrorCode.CANNOT_FIND_PART_MAP, pset.read, d1.addr, 1)
    remove_at(pset, d2.addr)
    assert walk(pset) == []
    assert space.reservations() == []
    expect_error(ErrorCode.NO_PART_MAPPED, pset.get_store_granularity)


def test_full_coalescing_before_remove_part_map(make_set, make_file, space):
    """PMDK test_full_coalescing_before_remove_part_map: a coalesced map goes as a whole."""
    pset = make_set()
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    src = Source.from_file(make_file(PART))
    map_new(pset, src)
    d = map_new(pset, src)
    assert d == PartDescriptor(space.low, 2 * PART)
    remove_at(pset, d.addr + PART)  # found through the second part
    assert walk(pset) == []
    assert space.reservations() == []
    assert pset.coalescing_anchor is None
    # no previous part map: FULL simply maps a new one
    assert map_new(pset, src) == PartDescriptor(space.low, PART)


def test_full_coalescing_after_remove_first_part_map(make_set, make_file, space):
    """PMDK test_full_coalescing_after_remove_first_part_map: the anchor (last mapped) stays."""
    pset = make_set()
    src = Source.from_file(make_file(PART, fill=b"x"))
    d1 = map_new(pset, src)
    d2 = map_new(pset, src)
    assert d2 == PartDescriptor(d1.end, PART)
    remove_at(pset, d1.addr)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    d3 = map_new(pset, src)
    assert d3 == PartDescriptor(d2.addr, 2 * PART)
    assert walk(pset) == [d3]
    assert pset.read(d3.end - 1, 1) == b"x"


def test_full_coalescing_after_remove_second_part_map(make_set, make_file, space):
    """PMDK test_full_coalescing_after_remove_second_part_map: the anchor moves to the previous map."""
    a, b, c3 = make_file(PART, fill=b"a"), make_file(PART, fill=b"b"), make_file(PART, fill=b"c")
    pset = make_set()
    d1 = map_new(pset, Source.from_file(a))
    d2 = map_new(pset, Source.from_file(b))
    remove_at(pset, d2.addr)
    assert pset.coalescing_anchor == d1
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    d3 = map_new(pset, Source.from_file(c3))
    # grows the first map into the range the removed map left
    assert d3 == PartDescriptor(d1.addr, 2 * PART)
    assert walk(pset) == [d3]
    assert pset.read(d1.end - 1, 2) == b"ac"


def test_full_coalescing_anchor_moves_to_next(make_set, make_file, space):
    """Removing the lowest map when it is the anchor makes the next map the anchor."""
    pset = make_set()
    src = Source.from_file(make_file(PART))
    d1 = map_new(pset, src)
    d2 = map_new(pset, src)
    remove_at(pset, d1.addr)
    d3 = map_new(pset, src)  # first fit: back into the hole below d2, and it is the anchor
    assert d3 == d1
    assert pset.coalescing_anchor == d3
    # FULL from d3 would need the range d2 holds
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    expect_error(ErrorCode.CANNOT_COALESCE_PARTS, map_new, pset, src)
    assert walk(pset) == [d3, d2]
    remove_at(pset, d3.addr)
    assert pset.coalescing_anchor == d2
    assert map_new(pset, src) == PartDescriptor(d2.addr, 2 * PART)


def test_remove_multiple_part_maps(make_set, make_file, space):
    """PMDK test_remove_multiple_part_maps: remove 100 maps from the middle of 300."""
    n = 300
    path = make_file(n * PAGE, fill=b"0123456789abcdefg")  # 17 bytes: every page differs
    pset = make_set()
    src = Source.from_file(path)
    descs = [map_new(pset, src, i * PAGE, PAGE) for i in range(n)]
    assert descs == [PartDescriptor(space.low + i * PAGE, PAGE) for i in range(n)]
    for d in descs[100:200]:
        remove_at(pset, d.addr)
    left = descs[:100] + descs[200:]
    assert walk(pset) == left
    assert len(pset) == 200 and len(pset.reservations()) == 200
    assert space.is_free(descs[100].addr, 100 * PAGE)
    for d in descs[100:200:33]:
        expect_error(ErrorCode.CANNOT_FIND_PART_MAP, pset.part_map_by_address, d.addr)
    for i in (0, 99, 200, 299):
        assert pset.read(descs[i].addr, PAGE) == file_bytes(path, i * PAGE, PAGE)


# -- sources that grow ------------------------------------------------------------------------------------


def test_part_map_truncate_if_needed(make_set, tmp_path, space):
    """PMDK test_part_map_with_truncate_if_needed: the file grows 0 → 64 KiB → 128 KiB."""
    path = str(tmp_path / "grows.pmem")
    src = Source.xfrom_file(path, SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED)
    assert os.stat(path).st_size == 0
    pset = make_set()
    d1 = map_new(pset, src, 0, 64 * KiB)
    assert os.stat(path).st_size == 64 * KiB
    assert d1 == PartDescriptor(space.low, 64 * KiB)
    d2 = map_new(pset, src, 64 * KiB, 64 * KiB)
    assert os.stat(path).st_size == 128 * KiB
    assert d2 == PartDescriptor(d1.end, 64 * KiB)
    pset.memcpy(d2.addr, b"second half")
    assert file_bytes(path, 64 * KiB, 11) == b"second half"
    # a part inside the file does not change its size
    map_new(pset, src, 0, PAGE)
    assert os.stat(path).st_size == 128 * KiB


def test_part_map_temp_source_size_max(make_set, tmp_path):
    """PMDK test_part_map_source_temp_too_big: SIZE_MAX length → CANNOT_TRUNCATE_SOURCE_FILE."""
    pset = make_set()
    src = Source.from_temporary(tmp_path)
    part = pset.part_new(src, 0, SIZE_MAX)
    before = snapshot(pset, part=part, sources=(src,))
    expect_error(ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, pset.part_map, part)
    assert snapshot(pset, part=part, sources=(src,)) == before
    assert src.size() == 0


def test_part_map_failure_undoes_truncation(make_set, tmp_path, space):
    """A part_map that grew the file (step 2) and then failed shrinks it back."""
    path = str(tmp_path / "grows.pmem")
    src = Source.xfrom_file(path, SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED)
    pset = make_set()
    d1 = map_new(pset, src, 0, PART)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    space.occupy(d1.end, PAGE)
    part = pset.part_new(src, PART, PART)
    before = snapshot(pset, path, part=part)
    expect_error(ErrorCode.CANNOT_COALESCE_PARTS, pset.part_map, part)
    assert snapshot(pset, path, part=part) == before
    assert os.stat(path).st_size == PART

    tmp = Source.from_temporary(tmp_path)
    part = pset.part_new(tmp, 0, PAGE + 1)
    expect_error(ErrorCode.LENGTH_UNALIGNED, pset.part_map, part)
    assert tmp.size() == 0


def test_part_map_without_truncate_flag_short_file(make_set, make_file):
    """Without TRUNCATE_IF_NEEDED a part beyond the end of the file is not grown: INVALID_PMEM2_MAP."""
    path = make_file(PART)
    pset = make_set()
    part = pset.part_new(Source.from_file(path), 0, 2 * PART)
    before = snapshot(pset, path, part=part)
    expect_error(ErrorCode.INVALID_PMEM2_MAP, pset.part_map, part)
    assert snapshot(pset, path, part=part) == before
    assert os.stat(path).st_size == PART


# -- remove range -------------------------------------------------------------------------------------------


def test_remove_two_ranges(make_set, make_file, space):
    """PMDK test_remove_two_ranges: a range across two part maps removes both, whole."""
    pset = make_set()
    src = Source.from_file(make_file(PART))
    d1, d2, d3 = (map_new(pset, src) for _ in range(3))
    assert (d2.addr, d3.addr) == (d1.end, d2.end)
    # the last page of d1 and the first page of d2
    pset.remove_range(d1.end - PAGE, 2 * PAGE)
    assert walk(pset) == [d3]
    assert space.is_free(d1.addr, 2 * PART)
    expect_error(ErrorCode.CANNOT_FIND_PART_MAP, pset.remove_range, d1.addr, 2 * PART)
    pset.remove_range(d3.addr + PAGE, 1)
    assert walk(pset) == []


def test_remove_coalesced_two_ranges(make_set, make_file, space):
    """PMDK test_remove_coalesced_two_ranges: a coalesced map shrinks from either end."""
    a, b, c3 = make_file(PART, fill=b"a"), make_file(PART, fill=b"b"), make_file(PART, fill=b"c")
    pset = make_set()
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    for p in (a, b, c3):
        whole = map_new(pset, Source.from_file(p))
    assert whole == PartDescriptor(space.low, 3 * PART)
    pset.remove_range(whole.addr + PAGE, PAGE)  # inside the first part
    assert walk(pset) == [PartDescriptor(whole.addr + PART, 2 * PART)]
    assert [(r.addr, r.size) for r in pset.reservations()] == [(whole.addr + PART, 2 * PART)]
    pset.remove_range(whole.end - 1, 1)  # the last byte of the last part
    assert walk(pset) == [PartDescriptor(whole.addr + PART, PART)]
    assert [(r.addr, r.size) for r in pset.reservations()] == [(whole.addr + PART, PART)]
    assert pset.read(whole.addr + PART, PART) == b"b" * PART


def test_remove_coalesced_middle_range(make_set, make_file, space):
    """PMDK test_remove_coalesced_middle_range: removing a middle part splits the map in two."""
    a, b, c3 = make_file(PART, fill=b"a"), make_file(PART, fill=b"b"), make_file(PART, fill=b"c")
    pset = make_set()
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    for p in (a, b, c3):
        whole = map_new(pset, Source.from_file(p))
    pset.remove_range(whole.addr + PART + 5 * PAGE, 2 * PAGE)
    left, right = PartDescriptor(whole.addr, PART), PartDescriptor(whole.addr + 2 * PART, PART)
    assert walk(pset) == [left, right]
    # the hole stays inside the reservation, which keeps its bounds
    assert [(r.addr, r.size) for r in pset.reservations()] == [(whole.addr, 3 * PART)]
    assert pset.read(left.end - 1, 1) == b"a" and pset.read(right.addr, 1) == b"c"
    expect_error(ErrorCode.CANNOT_FIND_PART_MAP, pset.read, whole.addr + PART, 1)


def test_remove_range_of_referenced_map(make_set, make_file):
    """remove_range of a part map still referenced → PART_MAP_POSSIBLE_USE_AFTER_DROP, nothing changes."""
    path = make_file(PART)
    pset = make_set()
    d = map_new(pset, Source.from_file(path))
    pmap = pset.first_part_map()
    before = snapshot(pset, path)
    expect_error(ErrorCode.PART_MAP_POSSIBLE_USE_AFTER_DROP, pset.remove_range, d.addr, PAGE)
    assert snapshot(pset, path) == before
    pmap.drop()
    pset.remove_range(d.addr, PAGE)
    assert len(pset) == 0


# -- reservations ------------------------------------------------------------------------------------------


def test_part_map_with_set_reservation(make_set, make_file, space):
    """PMDK test_part_map_with_set_reservation: three parts fill a three-part reservation."""
    rsv = space.reserve(3 * PART)
    pset = make_set(reservation=rsv)
    src = Source.from_file(make_file(PART))
    descs = [map_new(pset, src) for _ in range(3)]
    assert descs == [PartDescriptor(rsv.addr + i * PART, PART) for i in range(3)]
    assert walk(pset) == descs
    assert (rsv.addr, rsv.size) == (descs[0].addr, 3 * PART)
    assert len(space.reservations()) == 1


def test_part_map_coalesce_with_set_reservation(make_set, make_file, space):
    """PMDK test_part_map_coalesce_with_set_reservation: coalesced parts fill the reservation."""
    rsv = space.reserve(3 * PART)
    addr, size = rsv.addr, rsv.size
    pset = make_set(reservation=rsv)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    src = Source.from_file(make_file(PART))
    got = [map_new(pset, src) for _ in range(3)]
    assert got == [PartDescriptor(addr, k * PART) for k in (1, 2, 3)]
    assert walk(pset) == [PartDescriptor(addr, 3 * PART)]
    # the reservation's end counts as occupied: FULL cannot grow past it
    part = pset.part_new(src, 0, 0)
    expect_error(ErrorCode.CANNOT_COALESCE_PARTS, pset.part_map, part)
    assert (rsv.addr, rsv.size) == (addr, size)
    assert walk(pset) == [PartDescriptor(addr, 3 * PART)]


def test_part_map_with_set_reservation_too_small(make_set, make_file, space):
    """PMDK test_part_map_with_set_reservation_too_small: → CANNOT_FIT_PART_MAP."""
    path = make_file(PART)
    rsv = space.reserve(PART - PAGE)
    pset = make_set(reservation=rsv)
    part = pset.part_new(Source.from_file(path), 0, 0)
    before = snapshot(pset, path, part=part)
    expect_error(ErrorCode.CANNOT_FIT_PART_MAP, pset.part_map, part)
    assert snapshot(pset, path, part=part) == before
    assert rsv.size == PART - PAGE and rsv.mappings == []


def test_part_map_with_set_reservation_cannot_fit(make_set, make_file, space):
    """PMDK test_part_map_with_set_reservation_cannot_fit: enough free bytes, but fragmented."""
    rsv = space.reserve(3 * PART)
    pset = make_set(reservation=rsv)
    small, big = Source.from_file(make_file(PART)), Source.from_file(make_file(2 * PART))
    d1, d2, d3 = (map_new(pset, small) for _ in range(3))
    remove_at(pset, d1.addr)
    remove_at(pset, d3.addr)
    assert walk(pset) == [d2]
    # 2 * PART bytes are free, in two separate holes
    part = pset.part_new(big, 0, 0)
    before = snapshot(pset, part=part)
    expect_error(ErrorCode.CANNOT_FIT_PART_MAP, pset.part_map, part)
    assert snapshot(pset, part=part) == before
    # a part that fits goes into the lowest hole
    assert map_new(pset, small) == PartDescriptor(rsv.addr, PART)
    assert (rsv.addr, rsv.size) == (d1.addr, 3 * PART)


def test_part_map_opp_coalesce_with_set_reservation(make_set, make_file, space):
    """Coalescing after a map at the reservation's end: FULL fails, OPPORTUNISTIC takes the lowest gap."""
    rsv = space.reserve(3 * PART)
    pset = make_set(reservation=rsv)
    src = Source.from_file(make_file(PART))
    d1, d2, d3 = (map_new(pset, src) for _ in range(3))
    remove_at(pset, d1.addr)
    assert pset.coalescing_anchor == d3
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    part = pset.part_new(src, 0, 0)
    before = snapshot(pset, part=part)
    expect_error(ErrorCode.CANNOT_COALESCE_PARTS, pset.part_map, part)
    assert snapshot(pset, part=part) == before
    pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
    assert pset.part_map(part) == PartDescriptor(rsv.addr, PART)
    assert walk(pset) == [PartDescriptor(rsv.addr, PART), d2, d3]


# -- events ------------------------------------------------------------------------------------------


def test_part_map_event_part_add(make_set, make_file, space):
    """PMDK test_part_map_event (PMEMSET_EVENT_PART_ADD): the whole part map's range and the source."""
    events: list[Any] = []
    pset = make_set(event_callback=lambda s, ev: events.append((s, ev)))
    src1, src2 = Source.from_file(make_file(PART)), Source.from_file(make_file(2 * PART))
    d1 = map_new(pset, src1)
    adds = [ev for _s, ev in events if isinstance(ev, PartAddEvent)]
    assert len(adds) == 1
    assert adds[0].type == EventType.PART_ADD
    assert (adds[0].addr, adds[0].len, adds[0].source) == (d1.addr, d1.size, src1)
    assert events[0][0] is pset
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    d2 = map_new(pset, src2)
    adds = [ev for _s, ev in events if isinstance(ev, PartAddEvent)]
    assert len(adds) == 2
    assert d2 == PartDescriptor(d1.addr, 3 * PART)
    assert (adds[1].addr, adds[1].len, adds[1].source) == (d1.addr, 3 * PART, src2)
    # a failed part_map emits nothing
    space.occupy(d2.end, PAGE)
    n = len(events)
    with pytest.raises(PmemsetError):
        map_new(pset, src1)
    assert len(events) == n


# -- the same through the C facade ---------------------------------------------------------------------------


@pytest.fixture
def cset(space):
    """A set made the C way; yields a factory ``cset(callback=None, arg=None, rsv=None) -> set``."""
    made: list[c.Ref] = []

    def make(callback=None, arg=None, rsv=None, plan=None):
        cfg = c.Ref()
        assert c.pmemset_config_new(cfg) == 0
        assert c.pmemset_config_set_required_store_granularity(cfg.value, c.PMEM2_GRANULARITY_PAGE) == 0
        assert c.pmemset_config_set_address_space(cfg.value, space) == 0
        if callback is not None:
            assert c.pmemset_config_set_event_callback(cfg.value, callback, arg) == 0
        if rsv is not None:
            assert c.pmemset_config_set_reservation(cfg.value, rsv) == 0
        if plan is not None:
            assert c.pmemset_config_set_fault_plan(cfg.value, plan) == 0
        s = c.Ref()
        assert c.pmemset_new(s, cfg.value) == 0
        assert c.pmemset_config_delete(cfg) == 0 and cfg.value is None
        made.append(s)
        return s.value

    yield make
    for s in made:
        if s.value is not None:
            s.value._check()
        c.pmemset_delete(s)
        assert s.value is None


def c_source(path: str) -> Source:
    src = c.Ref()
    assert c.pmemset_source_from_file(src, path) == 0
    return src.value


def test_capi_part_map_valid_source_file(cset, make_file, space):
    """PMDK test_part_map_valid_source_file in C: part_map sets *part to NULL and fills *desc."""
    path = make_file(PART, fill=b"C")
    s = cset()
    src = c.Ref()
    assert c.pmemset_source_from_file(src, path) == 0
    part = c.Ref()
    assert c.pmemset_part_new(part, s, src.value, 0, 0) == 0
    assert part.value is not None
    desc = c.Ref()
    assert c.pmemset_part_map(part, None, desc) == 0
    assert part.value is None
    assert desc.value == PartDescriptor(space.low, PART)
    buf = bytearray(4)
    assert c.pmemset_read(s, buf, desc.value.addr, 4) == 0 and buf == b"CCCC"
    g = c.Ref()
    assert c.pmemset_get_store_granularity(s, g) == 0 and g.value == c.PMEM2_GRANULARITY_PAGE
    assert c.pmemset_source_delete(src) == 0 and src.value is None


def test_capi_part_map_errors_keep_part(cset, make_file, space, tmp_path):
    """PMDK test_part_map_unaligned_size / _enomem in C: rc < 0, *part kept, *desc untouched."""
    plan = FaultPlan().fail("alloc.part_map")
    s = cset(plan=plan)
    part = c.Ref()
    assert c.pmemset_part_new(part, s, c_source(make_file(16 * MiB - 1)), 0, 0) == 0
    desc = c.Ref()
    assert c.pmemset_part_map(part, None, desc) == c.PMEMSET_E_LENGTH_UNALIGNED
    assert part.value is not None and desc.value is None
    assert c.pmemset_part_delete(part) == 0 and part.value is None

    assert c.pmemset_part_new(part, s, c_source(make_file(PART)), 0, 0) == 0
    assert c.pmemset_part_map(part, None, desc) == -errno.ENOMEM
    assert part.value is not None and desc.value is None
    assert c.pmemset_part_map(part, None, desc) == 0  # only the first allocation fails
    assert part.value is None and desc.value == PartDescriptor(space.low, PART)

    missing = c.Ref()
    assert c.pmemset_source_from_file(missing, str(tmp_path / "missing")) == c.PMEMSET_E_INVALID_SOURCE_PATH
    assert missing.value is None


def test_capi_first_next_drop(cset, make_file):
    """PMDK test_part_map_first / _next / _drop / _by_addr in C."""
    s = cset()
    pm = c.Ref()
    assert c.pmemset_first_part_map(s, pm) == 0 and pm.value is None
    descs = []
    for size in (PART, 2 * PART):
        part, desc = c.Ref(), c.Ref()
        assert c.pmemset_part_new(part, s, c_source(make_file(size)), 0, 0) == 0
        assert c.pmemset_part_map(part, None, desc) == 0
        descs.append(desc.value)
    assert descs[1] == PartDescriptor(descs[0].end, 2 * PART)

    assert c.pmemset_first_part_map(s, pm) == 0
    assert c.pmemset_descriptor_part_map(pm.value) == descs[0]
    nx = c.Ref()
    assert c.pmemset_next_part_map(s, pm.value, nx) == 0
    assert c.pmemset_descriptor_part_map(nx.value) == descs[1]
    last = c.Ref()
    assert c.pmemset_next_part_map(s, nx.value, last) == 0 and last.value is None
    assert c.pmemset_part_map_drop(nx) == 0 and nx.value is None

    # held twice: removal refused until one reference is dropped
    again = c.Ref()
    assert c.pmemset_part_map_by_address(s, again, descs[0].addr + PAGE) == 0
    assert c.pmemset_remove_part_map(s, pm) == c.PMEMSET_E_PART_MAP_POSSIBLE_USE_AFTER_DROP
    assert pm.value is not None
    assert c.pmemset_part_map_drop(again) == 0 and again.value is None
    assert c.pmemset_remove_part_map(s, pm) == 0 and pm.value is None

    assert c.pmemset_part_map_by_address(s, pm, descs[0].addr) == c.PMEMSET_E_CANNOT_FIND_PART_MAP
    assert c.pmemset_first_part_map(s, pm) == 0
    assert c.pmemset_descriptor_part_map(pm.value) == descs[1]
    assert c.pmemset_part_map_drop(pm) == 0


def test_capi_event_part_add(cset, make_file, space):
    """PMDK test_part_map_event in C: ctx->type PART_ADD, ctx->data.part_add.{addr,len,src}."""
    seen: list[tuple[Any, Any, Any]] = []

    def callback(pset, ctx, arg):
        if ctx.type == c.PMEMSET_EVENT_PART_ADD:
            seen.append((ctx.data.part_add.addr, ctx.data.part_add.len, ctx.data.part_add.src))
            arg.append(pset)
        return 0

    args: list[Any] = []
    s = cset(callback=callback, arg=args)
    assert c.pmemset_set_contiguous_part_coalescing(s, c.PMEMSET_COALESCING_FULL) == 0
    srcs = [c_source(make_file(PART)), c_source(make_file(PART))]
    descs = []
    for src in srcs:
        part, desc = c.Ref(), c.Ref()
        assert c.pmemset_part_new(part, s, src, 0, 0) == 0
        assert c.pmemset_part_map(part, None, desc) == 0
        descs.append(desc.value)
    assert descs == [PartDescriptor(space.low, PART), PartDescriptor(space.low, 2 * PART)]
    assert seen == [(space.low, PART, srcs[0]), (space.low, 2 * PART, srcs[1])]
    assert args == [s, s]


def test_capi_coalescing_and_remove_range(cset, make_file, space):
    """PMDK test_part_map_full_coalesce_* and test_remove_coalesced_middle_range in C."""
    rsv = space.reserve(3 * PART)
    s = cset(rsv=rsv)
    assert c.pmemset_set_contiguous_part_coalescing(s, 7) == c.PMEMSET_E_INVALID_COALESCING_VALUE
    assert c.pmemset_set_contiguous_part_coalescing(s, c.PMEMSET_COALESCING_FULL) == 0
    src = c_source(make_file(PART))
    desc = c.Ref()
    for k in (1, 2, 3):
        part = c.Ref()
        assert c.pmemset_part_new(part, s, src, 0, 0) == 0
        assert c.pmemset_part_map(part, None, desc) == 0
        assert desc.value == PartDescriptor(rsv.addr, k * PART)
    part = c.Ref()
    assert c.pmemset_part_new(part, s, src, 0, 0) == 0
    assert c.pmemset_part_map(part, None, desc) == c.PMEMSET_E_CANNOT_COALESCE_PARTS
    assert part.value is not None
    assert c.pmemset_part_delete(part) == 0

    assert c.pmemset_remove_range(s, rsv.addr + PART, PART) == 0
    pm, nx = c.Ref(), c.Ref()
    assert c.pmemset_first_part_map(s, pm) == 0
    assert c.pmemset_descriptor_part_map(pm.value) == PartDescriptor(rsv.addr, PART)
    assert c.pmemset_next_part_map(s, pm.value, nx) == 0
    assert c.pmemset_descriptor_part_map(nx.value) == PartDescriptor(rsv.addr + 2 * PART, PART)
    assert c.pmemset_part_map_drop(pm) == 0 and c.pmemset_part_map_drop(nx) == 0
    assert c.pmemset_remove_range(s, rsv.addr + PART, PART) == c.PMEMSET_E_CANNOT_FIND_PART_MAP
