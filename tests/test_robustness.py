"""Regressions from reviewing the library against its contract (docs/design.md): misuse that
once crashed, leaked or changed state now fails cleanly (PmemsetError / TypeError /
ValueError) and changes nothing."""

from __future__ import annotations

import copy
import errno
import os

import pytest
from support.sets import PAGE, snapshot

import pmemsim
from pmemsim import (
    Config,
    ErrorCode,
    FaultPlan,
    Granularity,
    PmemSet,
    PmemsetError,
    Reservation,
    Source,
)
from pmemsim import capi as c


def test_a_forged_or_copied_reservation_is_refused(space, make_file):
    real = space.reserve(4 * PAGE)
    forged = Reservation(space, real.addr, PAGE)
    with pytest.raises(ValueError, match="not a live reservation"):
        PmemSet(Config(Granularity.PAGE, reservation=forged, address_space=space))
    twin = copy.copy(real)
    with pytest.raises(ValueError, match="does not belong"):
        space.release(twin)
    assert space.owns(real) and not real.released
    space.release(real)


def test_a_sets_own_reservation_cannot_be_configured_into_another_set(make_set, make_file, space):
    a = make_set()
    a.part_map(a.part_new(Source.from_file(make_file(2 * PAGE))))
    (own,) = a.reservations()
    with pytest.raises(ValueError, match="belongs to another PmemSet"):
        PmemSet(Config(Granularity.PAGE, reservation=own, address_space=space))
    assert (own.addr, own.size) == (a.descriptors()[0].addr, 2 * PAGE)


def test_a_borrowed_fd_closed_and_reused_after_mapping_does_not_redirect_stores(make_set, make_file):
    pool, other = make_file(PAGE, fill=b"P"), make_file(PAGE, fill=b"O")
    pset = make_set()
    fd = os.open(pool, os.O_RDWR)
    src = Source.from_fd(fd)
    desc = pset.part_map(pset.part_new(src, 0, PAGE))
    src.delete()
    os.close(fd)
    fd2 = os.open(other, os.O_RDWR)  # very likely the same number
    try:
        assert pset.read(desc.addr, 4) == b"PPPP"
        pset.memcpy(desc.addr, b"XXXX")
    finally:
        os.close(fd2)
    with open(pool, "rb") as f:
        assert f.read(4) == b"XXXX"
    with open(other, "rb") as f:
        assert f.read(4) == b"OOOO"


def test_the_callers_file_position_does_not_move(make_set, make_file):
    path = make_file(2 * PAGE)
    pset = make_set()
    fd = os.open(path, os.O_RDWR)
    try:
        os.lseek(fd, 10, os.SEEK_SET)
        desc = pset.part_map(pset.part_new(Source.from_fd(fd), 0, 2 * PAGE))
        pset.memcpy(desc.addr + 100, b"abc")
        assert pset.read(desc.addr + 100, 3) == b"abc"
        with pset.record():
            pset.write(desc.addr, b"z")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 10
    finally:
        os.close(fd)


def test_mapping_a_sparse_file_on_mmap_allocates_its_blocks(make_file):
    space = pmemsim.MmapAddressSpace()
    try:
        path = make_file(8 * PAGE)  # created sparse by truncate
        before = os.stat(path).st_blocks * 512
        with PmemSet(Config(Granularity.PAGE, address_space=space)) as pset, Source.from_file(path) as src:
            pset.part_map(pset.part_new(src, 0, 8 * PAGE))
            assert os.stat(path).st_size == 8 * PAGE  # contents and size unchanged
        assert before < 8 * PAGE <= os.stat(path).st_blocks * 512
    finally:
        space.close()


def test_a_file_that_shrank_while_recording_fails_part_map_and_changes_nothing(make_set, make_file):
    path = make_file(4 * PAGE)
    pset = make_set()
    first = Source.from_file(path)
    pset.part_map(pset.part_new(first, 0, PAGE))
    with pset.record():  # registers the file at 4 pages
        shrunk = Source.xfrom_file(path, pmemsim.SourceFlags.CREATE_ALWAYS)  # empties it
        with open(path, "r+b") as f:
            f.truncate(PAGE)
        part = pset.part_new(shrunk, 0, PAGE)
        before = snapshot(pset, path, part=part)
        with pytest.raises(ValueError, match="cannot shrink"):
            pset.part_map(part)
        assert snapshot(pset, path, part=part) == before
    shrunk.delete()
    first.delete()


def test_remove_part_map_keeps_the_reference_when_the_os_refuses(make_set, make_file, monkeypatch):
    pset = make_set()
    pset.part_map(pset.part_new(Source.from_file(make_file(PAGE))))
    pm = pset.first_part_map()
    space = pset.address_space

    def refuse(mapping: object) -> None:
        raise OSError(errno.ENOMEM, "no more mappings")

    monkeypatch.setattr(space, "unmap_many", refuse)
    with pytest.raises(PmemsetError) as info:
        pset.remove_part_map(pm)
    assert info.value.code == -errno.ENOMEM
    assert not pm.dropped and len(pset) == 1
    monkeypatch.undo()
    pset.remove_part_map(pm)
    assert len(pset) == 0


def test_fault_plan_refuses_errno_values_the_os_cannot_report():
    plan = FaultPlan()
    for bad in (1 << 40, True, 0, -5):
        with pytest.raises(ValueError, match="errno"):
            plan.fail("map.file", errno=bad)
    plan.fail("map.file", errno=errno.EIO)
    assert plan.hit("map.file") is not None


def test_a_dropped_reference_still_equals_itself_and_keeps_its_hash(make_set, make_file):
    pset = make_set()
    pset.part_map(pset.part_new(Source.from_file(make_file(PAGE))))
    pm = pset.first_part_map()
    h = hash(pm)
    pm.drop()
    assert pm == pm and hash(pm) == h
    assert pm != pset.first_part_map()


def test_config_names_what_an_address_space_lacks():
    class HalfSpace:
        page_size = 4096

        def reserve(self, size: int, addr: int | None = None) -> None: ...

    with pytest.raises(TypeError, match="supported_granularities"):
        Config(Granularity.PAGE, address_space=HalfSpace())  # type: ignore[arg-type]


@pytest.fixture
def cset(make_file):
    cfg = c.Ref()
    c.pmemset_config_new(cfg)
    c.pmemset_config_set_required_store_granularity(cfg.value, c.PMEM2_GRANULARITY_PAGE)
    c.pmemset_config_set_address_space(cfg.value, pmemsim.SimulatedAddressSpace())
    s = c.Ref()
    assert c.pmemset_new(s, cfg.value) == 0
    src = c.Ref()
    assert c.pmemset_source_from_file(src, make_file(PAGE)) == 0
    yield cfg, s, src
    c.pmemset_delete(s)
    c.pmemset_source_delete(src)


@pytest.mark.parametrize(
    "call",
    [
        lambda cfg, s, src: c.pmemset_part_new(c.Ref(), s, src.value, 0, 0),
        lambda cfg, s, src: c.pmemset_config_set_required_store_granularity(cfg, 2),
        lambda cfg, s, src: c.pmemset_first_part_map(s, c.Ref()),
        lambda cfg, s, src: c.pmemset_part_map(c.Ref(src.value), None, None),
        lambda cfg, s, src: c.pmemset_memcpy(s, 0, b"x", 1, 0),
        lambda cfg, s, src: c.pmemset_drain(s),
        lambda cfg, s, src: c.pmemset_remove_range(s, 0, 1),
        lambda cfg, s, src: c.pmemset_descriptor_part_map(5),
        lambda cfg, s, src: c.pmemset_part_map_drop(c.Ref(5)),
        lambda cfg, s, src: c.pmemset_source_delete(c.Ref("x")),
        lambda cfg, s, src: c.pmemset_delete(c.Ref(cfg)),
        lambda cfg, s, src: c.pmemset_config_set_reservation(None, None),
    ],
)
def test_capi_wrong_handles_are_type_errors_naming_the_argument(cset, call):
    cfg, s, src = cset
    with pytest.raises(TypeError, match=r"must be a (PmemSet|Config|Part|PartMap|Source)"):
        call(cfg, s, src)
    assert s.value.descriptors() == []


def test_a_default_space_that_cannot_be_made_is_a_pmemset_error(monkeypatch):
    import pmemsim.addrspace as addrspace

    def broken() -> None:
        raise OSError(errno.ENOMEM, "arena too large for RLIMIT_AS")

    monkeypatch.setattr(addrspace, "default_address_space", broken)
    with pytest.raises(PmemsetError) as info:
        PmemSet(Config(Granularity.PAGE))
    assert info.value.code == -errno.ENOMEM
    assert "PMEMSIM_BACKEND=sim" in str(info.value)
    assert info.value.code != ErrorCode.UNKNOWN
