"""The real-mmap backend: real mappings of real files, checked against /proc/self/maps."""

from __future__ import annotations

import errno
import gc
import os
import time

import pytest
from support.sets import PAGE, snapshot

import pmemsim
from pmemsim import Coalescing, Config, ErrorCode, Granularity, MemFlags, PmemSet, PmemsetError, Source
from pmemsim.addrspace import (
    MapFailed,
    MmapAddressSpace,
    NotMapped,
    SimulatedAddressSpace,
    default_address_space,
    set_default_address_space,
)
from pmemsim.addrspace.mmap import OS_PAGE, proc_maps


@pytest.fixture
def mspace():
    sp = MmapAddressSpace()
    yield sp
    sp._check()
    sp.close()


def new_set(space: pmemsim.LayoutAddressSpace) -> PmemSet:
    return PmemSet(Config(Granularity.PAGE, address_space=space))


def maps_lines() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def vmas_in(space: MmapAddressSpace) -> list[tuple[int, int, str, int, str]]:
    """The arena's VMAs (clipped to it), as comparable tuples."""
    return [
        (max(v.start, space.low), min(v.end, space.high), v.perms, v.inode, v.path)
        for v in proc_maps()
        if v.end > space.low and v.start < space.high
    ]


def file_vmas(path: str) -> list[tuple[int, int]]:
    return [(v.start, v.end) for v in proc_maps() if v.path == path]


# -- data reaches the file ------------------------------------------------------------------


def test_data_written_and_persisted_is_in_the_file_and_survives_reopen(mspace, make_file):
    path = make_file(8 * PAGE)
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src, 2 * PAGE, 4 * PAGE))
        pset.memcpy(d.addr + 100, b"persisted", flags=MemFlags.NOFLUSH)
        pset.persist(d.addr + 100, 9)
        pset.memcpy(d.addr + PAGE - 2, b"straddles")  # crosses a page boundary, default flags persist
        pset.memset(d.addr + 3 * PAGE, 0xAB, PAGE)
        with open(path, "rb") as f:
            data = f.read()
        assert data[2 * PAGE + 100 : 2 * PAGE + 109] == b"persisted"
        assert data[3 * PAGE - 2 : 3 * PAGE + 7] == b"straddles"
        assert data[5 * PAGE : 6 * PAGE] == b"\xab" * PAGE
        mspace._check()
    assert mspace.reservations() == []
    assert file_vmas(path) == []
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src, 0, 0))
        assert d.size == 8 * PAGE
        assert pset.read(d.addr + 2 * PAGE + 100, 9) == b"persisted"
        assert pset.read(d.addr + 3 * PAGE - 2, 9) == b"straddles"
        assert pset.read(d.addr + 5 * PAGE, PAGE) == b"\xab" * PAGE


def test_reads_and_writes_cross_coalesced_parts_of_two_files(mspace, make_file):
    a, b = make_file(2 * PAGE, fill=b"a"), make_file(2 * PAGE, fill=b"b")
    with new_set(mspace) as pset, Source.from_file(a) as sa, Source.from_file(b) as sb:
        pset.set_contiguous_part_coalescing(Coalescing.FULL)
        d1 = pset.part_map(pset.part_new(sa))
        d2 = pset.part_map(pset.part_new(sb))
        assert d2.addr == d1.addr and d2.size == 4 * PAGE
        assert pset.read(d2.addr + 2 * PAGE - 3, 6) == b"aaabbb"
        pset.memcpy(d2.addr + 2 * PAGE - 2, b"XYZW")
        mspace._check()
    with open(a, "rb") as f:
        assert f.read()[-2:] == b"XY"
    with open(b, "rb") as f:
        assert f.read(2) == b"ZW"


def test_outside_the_part_maps_is_refused_before_memory_is_touched(mspace, make_file):
    path = make_file(PAGE)
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src))
        for addr, n in ((d.addr - 1, 2), (d.end - 1, 2), (d.end, 1), (mspace.low - PAGE, 1)):
            with pytest.raises(PmemsetError) as exc:
                pset.read(addr, n)
            assert exc.value.code == ErrorCode.CANNOT_FIND_PART_MAP
            with pytest.raises(PmemsetError):
                pset.memcpy(addr, b"x" * n)
        # The space itself refuses holes too (reservations are PROT_NONE arena).
        with pytest.raises(NotMapped):
            mspace.read(d.end, 1)
        with pytest.raises(NotMapped):
            mspace.write(d.end - 1, b"xy")
        with open(path, "rb") as f:
            assert f.read() == bytes(PAGE)


# -- occupy and coalescing ------------------------------------------------------------------------


def test_occupy_is_a_real_mapping_and_coalescing_fails_for_real(mspace, make_file):
    path = make_file(8 * PAGE)
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src, 0, 2 * PAGE))
        occ = mspace.occupy(d.end, PAGE)
        foreign = [v for v in proc_maps() if v.start == occ.addr]
        assert foreign and foreign[0].end == occ.addr + PAGE and foreign[0].perms == "---s"
        pset.set_contiguous_part_coalescing(Coalescing.FULL)
        part = pset.part_new(src, 2 * PAGE, PAGE)
        before, kernel_before = snapshot(pset, path, part=part), vmas_in(mspace)
        with pytest.raises(PmemsetError) as exc:
            pset.part_map(part)
        assert exc.value.code == ErrorCode.CANNOT_COALESCE_PARTS
        assert snapshot(pset, path, part=part) == before
        assert vmas_in(mspace) == kernel_before
        mspace._check()
        # OPPORTUNISTIC steps around the foreign mapping.
        pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
        d2 = pset.part_map(part)
        assert d2.addr > occ.addr
        mspace._check()
        # Once it is freed, the range goes back to the arena and FULL coalescing succeeds.
        pset.remove_part_map(pset.part_map_by_address(d2.addr))
        mspace.free(occ.addr)
        assert all(v.perms == "---p" for v in proc_maps() if v.start <= occ.addr < v.end)
        pset.set_contiguous_part_coalescing(Coalescing.FULL)
        d3 = pset.part_map(pset.part_new(src, 2 * PAGE, PAGE))
        assert d3 == pmemsim.PartDescriptor(d.addr, 3 * PAGE)
        mspace._check()


def test_layout_relative_to_low_matches_the_simulator(make_file):
    path = make_file(16 * PAGE)
    layouts = []
    for space in (SimulatedAddressSpace(), MmapAddressSpace(1 << 30)):
        with new_set(space) as pset, Source.from_file(path) as src:
            pset.part_map(pset.part_new(src, 0, PAGE))
            space.occupy(space.low + 3 * PAGE, PAGE)
            pset.part_map(pset.part_new(src, PAGE, 2 * PAGE))
            pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
            pset.part_map(pset.part_new(src, 0, 2 * PAGE))
            pset.remove_range(space.low, 1)
            pset.set_contiguous_part_coalescing(Coalescing.NONE)
            pset.part_map(pset.part_new(src, 4 * PAGE, PAGE))
            layouts.append([(d.addr - space.low, d.size) for d in pset.descriptors()])
            space._check()
        if isinstance(space, MmapAddressSpace):
            space.close()
    assert layouts[0] == layouts[1]


# -- failures leave nothing behind ------------------------------------------------------------


def test_read_only_descriptor_gives_invalid_pmem2_map_and_leaks_nothing(mspace, make_file):
    path = make_file(4 * PAGE)
    fd = os.open(path, os.O_RDONLY)
    try:
        fds = fd_count()
        with new_set(mspace) as pset:
            src = Source.from_fd(fd)
            part = pset.part_new(src, 0, 2 * PAGE)
            kernel_before = vmas_in(mspace)
            with pytest.raises(PmemsetError) as exc:
                pset.part_map(part)
            assert exc.value.code == ErrorCode.INVALID_PMEM2_MAP
            assert exc.value.errno == errno.EACCES
            assert "Permission denied" in str(exc.value)
            assert not part.consumed
            assert len(pset) == 0 and mspace.reservations() == []
            assert vmas_in(mspace) == kernel_before
            assert file_vmas(path) == []
            mspace._check()
            src.delete()
        assert fd_count() == fds
        os.fstat(fd)  # a borrowed descriptor stays open
    finally:
        os.close(fd)


def test_backend_refuses_bad_map_requests_before_any_system_call(mspace, make_file):
    path = make_file(2 * PAGE)
    with Source.from_file(path) as src:
        file = src.file
        rsv = mspace.reserve(4 * PAGE)
        kernel_before = vmas_in(mspace)
        cases = [
            (rsv.addr, 0, 3 * PAGE, None),  # file shorter than the range
            (rsv.addr, PAGE // 2, PAGE, errno.EINVAL),  # offset not page-aligned
            (rsv.addr, 0, PAGE + 1, errno.EINVAL),  # length not whole pages
            (rsv.addr + 1, 0, PAGE, errno.EINVAL),  # address not page-aligned
        ]
        for addr, off, length, err in cases:
            with pytest.raises(MapFailed) as exc:
                mspace.map_file(rsv, addr, file, off, length, Granularity.PAGE)
            assert exc.value.errno == err
            assert vmas_in(mspace) == kernel_before
        assert rsv.mappings == []
        mspace._check()
        mspace.release(rsv)


def test_short_file_and_unaligned_offset_through_the_set(mspace, make_file):
    path = make_file(2 * PAGE)
    with new_set(mspace) as pset, Source.from_file(path) as src:
        for off, length in ((0, 3 * PAGE), (PAGE // 2, PAGE), (2 * PAGE, PAGE)):
            part = pset.part_new(src, off, length)
            with pytest.raises(PmemsetError) as exc:
                pset.part_map(part)
            assert exc.value.code == ErrorCode.INVALID_PMEM2_MAP
            assert not part.consumed
        assert mspace.reservations() == [] and file_vmas(path) == []


def test_file_truncated_under_a_mapping_reads_zeros_and_writes_grow_it(mspace, make_file):
    # A load or store past the end of a mapped file would be SIGBUS: the backend checks first.
    path = make_file(2 * PAGE, fill=b"z")
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src))
        os.truncate(path, PAGE // 2)
        assert pset.read(d.addr + PAGE // 2 - 2, 4) == b"zz\0\0"
        assert pset.read(d.addr + PAGE, PAGE) == bytes(PAGE)
        pset.memcpy(d.addr + PAGE + 10, b"back")
        assert os.stat(path).st_size == PAGE + 14
        assert pset.read(d.addr + PAGE + 10, 4) == b"back"
    with open(path, "rb") as f:
        assert f.read()[PAGE + 10 :] == b"back"


def test_a_borrowed_descriptor_closed_while_mapped_does_not_matter(mspace, make_file):
    path = make_file(2 * PAGE)
    fds = fd_count()
    fd = os.open(path, os.O_RDWR)
    with new_set(mspace) as pset:
        with Source.from_fd(fd) as src:
            d = pset.part_map(pset.part_new(src))
        os.close(fd)  # the mapping, and the backend's own size probe, outlive it
        pset.memcpy(d.addr + PAGE, b"after close")
        assert pset.read(d.addr + PAGE, 11) == b"after close"
        mspace._check()
    with open(path, "rb") as f:
        assert f.read()[PAGE : PAGE + 11] == b"after close"
    assert fd_count() == fds


def test_without_a_private_descriptor_sizes_come_from_fstat(mspace, make_file, monkeypatch):
    real_open = os.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/self/fd/"):
            raise PermissionError(errno.EACCES, "refused for the test", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_proc)
    path = make_file(2 * PAGE, fill=b"q")
    fds = fd_count()
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src))
        assert fd_count() == fds + 1  # the source's descriptor only
        os.truncate(path, PAGE)
        assert pset.read(d.addr + PAGE - 1, 2) == b"q\0"
        pset.memcpy(d.addr + PAGE, b"w")
        assert os.stat(path).st_size == PAGE + 1
        mspace._check()
    assert fd_count() == fds


def test_fake_file_systems_are_refused_not_mapped(fs):
    # Under pyfakefs a descriptor is a fake number; mapping it would map a random real file.
    space = MmapAddressSpace(1 << 30)
    fs.create_file("/fake.pmem", contents=bytes(2 * PAGE))
    try:
        with new_set(space) as pset, Source.from_file("/fake.pmem") as src:
            part = pset.part_new(src)
            with pytest.raises(PmemsetError, match="pyfakefs") as exc:
                pset.part_map(part)
            assert exc.value.code == ErrorCode.INVALID_PMEM2_MAP
            assert not part.consumed and space.reservations() == []
    finally:
        space.close()


# -- /proc/self/maps --------------------------------------------------------------------------


def test_proc_maps_shows_the_file_at_the_descriptor_address_until_removed(mspace, make_file):
    path = make_file(4 * PAGE)
    with new_set(mspace) as pset, Source.from_file(path) as src:
        d = pset.part_map(pset.part_new(src, PAGE, 2 * PAGE))
        [vma] = [v for v in proc_maps() if v.path == path]
        assert (vma.start, vma.end, vma.perms, vma.offset) == (d.addr, d.end, "rw-s", PAGE)
        assert vma.inode == os.stat(path).st_ino
        pmap = pset.first_part_map()
        assert pmap is not None
        pset.remove_part_map(pmap)
        assert file_vmas(path) == []
        # The range is PROT_NONE arena again, not a hole.
        [back] = [v for v in proc_maps() if v.start <= d.addr < v.end]
        assert back.perms == "---p" and back.end >= d.end
        mspace._check()


def test_configured_reservation_is_plain_arena_again_after_each_removal(mspace, make_file):
    path = make_file(4 * PAGE)
    rsv = mspace.reserve(8 * PAGE)
    with PmemSet(Config(Granularity.PAGE, reservation=rsv)) as pset, Source.from_file(path) as src:
        d1 = pset.part_map(pset.part_new(src, 0, 2 * PAGE))
        d2 = pset.part_map(pset.part_new(src, 2 * PAGE, 2 * PAGE))
        assert (d1.addr, d2.addr) == (rsv.addr, rsv.addr + 2 * PAGE)
        pset.remove_range(d1.addr, 1)
        assert file_vmas(path) == [(d2.addr, d2.end)]
        mspace._check()
        pset.remove_range(d2.addr, 1)
        assert file_vmas(path) == []
        assert all(v[2] == "---p" for v in vmas_in(mspace))
        mspace._check()
    assert (rsv.addr, rsv.size, rsv.released) == (mspace.low, 8 * PAGE, False)
    mspace.release(rsv)


def test_map_and_remove_ten_thousand_parts_leaks_nothing(mspace, make_file):
    path = make_file(PAGE)
    with new_set(mspace) as pset:
        gc.collect()  # garbage of earlier tests must not close its fds inside our window
        lines, fds = maps_lines(), fd_count()
        started = time.monotonic()
        for i in range(10_000):
            with Source.from_file(path) as src:
                d = pset.part_map(pset.part_new(src, 0, PAGE))
            pset.memcpy(d.addr + (i % PAGE), b"x", flags=MemFlags.NOFLUSH)
            if i % 2:
                pset.remove_range(d.addr, 1)
            else:
                pmap = pset.first_part_map()
                assert pmap is not None
                pset.remove_part_map(pmap)
        elapsed = time.monotonic() - started
        assert maps_lines() == lines
        assert fd_count() == fds
        assert len(pset) == 0 and mspace.reservations() == []
        mspace._check()
    assert elapsed < 60, f"10,000 map/remove cycles took {elapsed:.1f} s"


def test_garbage_collected_set_unmaps_everything(mspace, make_file):
    path = make_file(4 * PAGE)
    gc.collect()  # garbage of earlier tests must not close its fds inside our window
    lines, fds = maps_lines(), fd_count()

    def forget() -> None:
        pset = new_set(mspace)
        src = Source.from_file(path)
        pset.part_map(pset.part_new(src, 0, 2 * PAGE))
        pset.set_contiguous_part_coalescing(Coalescing.FULL)
        pset.part_map(pset.part_new(src, 2 * PAGE, 2 * PAGE))
        pset.part_map(pset.part_new(src, 0, PAGE))
        assert len(file_vmas(path)) == 2  # offsets 0-4 pages coalesce into one VMA, then page 0
        # Neither the set nor the source is closed.

    forget()
    gc.collect()
    assert file_vmas(path) == []
    assert mspace.reservations() == []
    assert maps_lines() == lines and fd_count() == fds
    mspace._check()


# -- the arena's own life cycle ------------------------------------------------------------------------


def test_closing_or_collecting_the_space_unmaps_the_arena(make_file):
    path = make_file(PAGE)
    gc.collect()  # garbage of earlier tests must not unmap anything inside our window
    lines = maps_lines()
    space = MmapAddressSpace()
    low, high = space.low, space.high
    pset = new_set(space)
    src = Source.from_file(path)
    d = pset.part_map(pset.part_new(src))
    space.close()
    assert not [v for v in proc_maps() if v.end > low and v.start < high]
    # A set outliving its space never touches the unmapped memory: the backend refuses and
    # the set reports the range as no longer mapped.
    with pytest.raises(PmemsetError) as info:
        pset.read(d.addr, 1)
    assert info.value.code == ErrorCode.CANNOT_FIND_PART_MAP
    with pytest.raises(PmemsetError) as info:
        pset.memcpy(d.addr, b"x")
    assert info.value.code == ErrorCode.CANNOT_FIND_PART_MAP
    with pytest.raises(ValueError, match="closed"):
        pset.part_map(pset.part_new(src))
    pset.close()
    src.delete()
    space._check()
    space.close()  # idempotent
    assert maps_lines() == lines

    space = MmapAddressSpace()
    low, high = space.low, space.high
    del space
    gc.collect()
    assert not [v for v in proc_maps() if v.end > low and v.start < high]


def test_construction_arguments():
    with pytest.raises(TypeError):
        MmapAddressSpace("64G")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MmapAddressSpace(0)
    with pytest.raises(ValueError):
        MmapAddressSpace(page_size=OS_PAGE + 512)
    with pytest.raises(ValueError):
        MmapAddressSpace(page_size=3 * OS_PAGE)
    with pytest.raises(OSError) as exc:
        MmapAddressSpace(1 << 60)
    assert exc.value.errno == errno.ENOMEM
    with pytest.raises(ValueError, match="larger than any address space"):
        MmapAddressSpace(1 << 64)
    with MmapAddressSpace(1 << 20, page_size=16 * OS_PAGE, placement="top-down") as space:
        assert space.low % (16 * OS_PAGE) == 0 and space.high - space.low == 1 << 20
        assert space.page_size == 16 * OS_PAGE
        rsv = space.reserve(16 * OS_PAGE)
        assert rsv.end == space.high
        space.release(rsv)
        space._check()
    assert "closed" in repr(space)


def test_big_pages_map_and_flush(make_file):
    page = 16 * OS_PAGE
    path = make_file(2 * page)
    with MmapAddressSpace(1 << 30, page_size=page) as space:
        with new_set(space) as pset, Source.from_file(path) as src:
            with pytest.raises(PmemsetError) as exc:
                pset.part_map(pset.part_new(src, 0, OS_PAGE))
            assert exc.value.code == ErrorCode.LENGTH_UNALIGNED
            d = pset.part_map(pset.part_new(src, page, page))
            pset.memcpy(d.addr + page - 3, b"end")
            pset.flush(d.addr + 1, page - 1)
            pset.drain()
            space._check()
        with open(path, "rb") as f:
            assert f.read()[-3:] == b"end"


def test_pmemsim_backend_mmap_selects_the_mmap_space(monkeypatch):
    monkeypatch.setenv("PMEMSIM_BACKEND", "mmap")
    set_default_address_space(None)
    try:
        space = default_address_space()
        assert isinstance(space, MmapAddressSpace)
        space.close()
    finally:
        set_default_address_space(None)


_AT_MAX_MAP_COUNT = r"""
import ctypes, errno, os, sys
from pmemsim import Coalescing, Config, Granularity, PmemSet, PmemsetError, Source
from pmemsim.addrspace import MmapAddressSpace
from pmemsim.addrspace.mmap import OS_PAGE

path = sys.argv[1]
space = MmapAddressSpace(1 << 30)
pset = PmemSet(Config(Granularity.PAGE, address_space=space))
pset.set_contiguous_part_coalescing(Coalescing.FULL)
src = Source.from_file(path)
for i in range(3):
    pset.part_map(pset.part_new(src, i * OS_PAGE, OS_PAGE))  # one part map, one kernel VMA
(desc,) = pset.descriptors()
before = pset.descriptors()

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long
]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
with open("/proc/sys/vm/max_map_count") as f:
    limit = int(f.read())
pages = 2 * limit + 16
base = libc.mmap(None, pages * OS_PAGE, 3, 0x22 | 0x4000, -1, 0)  # private anonymous, noreserve
# Use up vm.max_map_count: every mprotect of a lone page splits a VMA.
i = 1
while libc.mprotect(base + 2 * i * OS_PAGE, OS_PAGE, 1) == 0:
    i += 1
libc.mprotect(base + (pages - 1) * OS_PAGE, OS_PAGE, 1)  # one more split if one is left
try:
    pset.remove_range(desc.addr + OS_PAGE, OS_PAGE)  # the middle piece: the VMA splits in three
    outcome = "removed"
except PmemsetError as exc:
    outcome = f"refused {exc.errno}"
libc.munmap(base, pages * OS_PAGE)  # room again: checking needs memory
assert outcome == f"refused {errno.ENOMEM}", outcome
assert pset.descriptors() == before, pset.descriptors()
pset._check()
space._check()  # the kernel still maps all three pieces
pset.remove_range(desc.addr + OS_PAGE, OS_PAGE)  # usable: the same call now succeeds
assert [d.size for d in pset.descriptors()] == [OS_PAGE, OS_PAGE]
pset._check()
space._check()
pset.close()
print("ok")
"""


def test_remove_at_max_map_count_changes_nothing_and_the_set_stays_usable(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "f.pmem"
    path.write_bytes(bytes(3 * OS_PAGE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", _AT_MAX_MAP_COUNT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
