"""The C-shaped facade (``pmemsim.capi``): constants, return codes, out-pointers, misuse.

Expectations come from PMDK's headers and man pages (error values, constants, the C
calls' shapes) and docs/design.md (the part_map steps, the fault sites), typed in here as
the independent source of truth, never from what the implementation happens to print.
"""

from __future__ import annotations

import errno
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support.sets import PAGE, snapshot

import pmemsim
from pmemsim import ErrorCode, FaultPlan, Granularity, PartDescriptor, PmemSet, PmemsetError, Source
from pmemsim import capi as c

INT64_MAX = (1 << 63) - 1

# -- the independent source of truth --------------------------------------------------------------

#: PMDK's libpmemset.h values, typed in by hand.
PMEMSET_ERRORS = {
    "PMEMSET_E_UNKNOWN": -200000,
    "PMEMSET_E_NOSUPP": -200001,
    "PMEMSET_E_INVALID_PMEM2_SOURCE": -200002,
    "PMEMSET_E_INVALID_SOURCE_PATH": -200003,
    "PMEMSET_E_INVALID_SOURCE_TYPE": -200004,
    "PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE": -200005,
    "PMEMSET_E_INVALID_OFFSET_VALUE": -200006,
    "PMEMSET_E_GRANULARITY_NOT_SUPPORTED": -200007,
    "PMEMSET_E_INVALID_PMEM2_MAP": -200008,
    "PMEMSET_E_PART_EXISTS": -200009,
    "PMEMSET_E_GRANULARITY_NOT_SET": -200010,
    "PMEMSET_E_GRANULARITY_MISMATCH": -200011,
    "PMEMSET_E_NO_PART_MAPPED": -200012,
    "PMEMSET_E_CANNOT_FIND_PART_MAP": -200013,
    "PMEMSET_E_CANNOT_COALESCE_PARTS": -200014,
    "PMEMSET_E_LENGTH_UNALIGNED": -200015,
    "PMEMSET_E_PART_NOT_FOUND": -200016,
    "PMEMSET_E_INVALID_COALESCING_VALUE": -200017,
    "PMEMSET_E_DEEP_FLUSH_FAIL": -200018,
    "PMEMSET_E_INVALID_SOURCE_FILE_CREATE_FLAGS": -200019,
    "PMEMSET_E_CANNOT_CREATE_TEMP_FILE": -200020,
    "PMEMSET_E_CANNOT_TRUNCATE_SOURCE_FILE": -200021,
    "PMEMSET_E_PART_MAP_POSSIBLE_USE_AFTER_DROP": -200022,
    "PMEMSET_E_CANNOT_FIT_PART_MAP": -200023,
}

#: PMDK's libpmemset.h / libpmem2.h.
OTHER_CONSTANTS = {
    "PMEMSET_COALESCING_NONE": 0,
    "PMEMSET_COALESCING_OPPORTUNISTIC": 1,
    "PMEMSET_COALESCING_FULL": 2,
    "PMEM2_GRANULARITY_BYTE": 0,
    "PMEM2_GRANULARITY_CACHE_LINE": 1,
    "PMEM2_GRANULARITY_PAGE": 2,
    "PMEMSET_SOURCE_FILE_CREATE_ALWAYS": 1,
    "PMEMSET_SOURCE_FILE_CREATE_IF_NEEDED": 2,
    "PMEMSET_SOURCE_FILE_TRUNCATE_IF_NEEDED": 4,
    "PMEMSET_F_MEM_NODRAIN": 1,
    "PMEMSET_F_MEM_NONTEMPORAL": 2,
    "PMEMSET_F_MEM_TEMPORAL": 4,
    "PMEMSET_F_MEM_WC": 8,
    "PMEMSET_F_MEM_WB": 16,
    "PMEMSET_F_MEM_NOFLUSH": 32,
    # enum pmemset_event, in PMDK's declaration order.
    "PMEMSET_EVENT_COPY": 0,
    "PMEMSET_EVENT_MOVE": 1,
    "PMEMSET_EVENT_SET": 2,
    "PMEMSET_EVENT_FLUSH": 3,
    "PMEMSET_EVENT_DRAIN": 4,
    "PMEMSET_EVENT_PERSIST": 5,
    "PMEMSET_EVENT_BAD_BLOCK": 6,
    "PMEMSET_EVENT_PART_ADD": 7,
    "PMEMSET_EVENT_PART_REMOVE": 8,
}

#: Every C call of the facade with its number of parameters (PMDK's prototypes; the
#: extensions of pmemsim marked). Same name and argument order as C.
C_ARITY = {
    "pmemset_config_new": 1,
    "pmemset_config_set_required_store_granularity": 2,
    "pmemset_config_set_reservation": 2,
    "pmemset_config_set_event_callback": 3,
    "pmemset_config_set_address_space": 2,  # extension
    "pmemset_config_set_fault_plan": 2,  # extension
    "pmemset_config_delete": 1,
    "pmemset_new": 2,
    "pmemset_delete": 1,
    "pmemset_source_from_file": 2,
    "pmemset_xsource_from_file": 3,
    "pmemset_source_from_temporary": 2,
    "pmemset_source_from_fd": 2,
    "pmemset_source_delete": 1,
    "pmemset_part_new": 5,
    "pmemset_part_delete": 1,
    "pmemset_part_map": 3,
    "pmemset_first_part_map": 2,
    "pmemset_next_part_map": 3,
    "pmemset_part_map_by_address": 3,
    "pmemset_descriptor_part_map": 1,
    "pmemset_part_map_drop": 1,
    "pmemset_remove_part_map": 2,
    "pmemset_remove_range": 3,
    "pmemset_set_contiguous_part_coalescing": 2,
    "pmemset_get_store_granularity": 2,
    "pmemset_memcpy": 5,
    "pmemset_memmove": 5,
    "pmemset_memset": 5,
    "pmemset_flush": 3,
    "pmemset_drain": 1,
    "pmemset_persist": 3,
    "pmemset_deep_flush": 3,
    "pmemset_read": 4,  # extension: (pset, buf, addr, n)
    "pmemset_errormsg": 0,
    "pmemset_err_to_errno": 1,
}


def _read(pset: PmemSet, addr: int, n: int) -> bytes:
    """``pmemset_read`` into a fresh buffer, asserting it returned 0."""
    buf = bytearray(n)
    assert c.pmemset_read(pset, buf, addr, n) == 0
    return bytes(buf)


def _mentions(message: str, n: int) -> bool:
    """True when ``message`` spells ``n`` in decimal or in hex."""
    return str(n) in message or hex(n) in message.lower()


# -- constants and names ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), sorted(PMEMSET_ERRORS.items()))
def test_error_constant_has_pmdk_value(name, value):
    const = getattr(c, name)
    assert isinstance(const, int)
    assert const == value


def test_error_constants_are_exactly_the_table():
    exported = {n for n in dir(c) if n.startswith("PMEMSET_E_")}
    assert exported == set(PMEMSET_ERRORS)


@pytest.mark.parametrize(("name", "value"), sorted(OTHER_CONSTANTS.items()))
def test_other_constant_has_pmdk_value(name, value):
    const = getattr(c, name)
    assert isinstance(const, int)
    assert const == value


@pytest.mark.parametrize(
    "prefix",
    [
        "PMEMSET_COALESCING_",
        "PMEM2_GRANULARITY_",
        "PMEMSET_SOURCE_FILE_",
        "PMEMSET_F_MEM_",
        "PMEMSET_EVENT_",
    ],
)
def test_constant_family_is_complete_and_has_no_strays(prefix):
    exported = {n for n in dir(c) if n.startswith(prefix)}
    assert exported == {n for n in OTHER_CONSTANTS if n.startswith(prefix)}


@pytest.mark.parametrize("member", [m for m in ErrorCode if m is not ErrorCode.ENOMEM], ids=str)
def test_every_error_code_has_its_c_constant(member):
    # ENOMEM is an errno (-ENOMEM), not a PMEMSET_E_ code: PMDK has no PMEMSET_E_ENOMEM.
    assert getattr(c, f"PMEMSET_E_{member.name}") == member


def test_enomem_is_minus_errno():
    assert ErrorCode.ENOMEM == -errno.ENOMEM
    assert not hasattr(c, "PMEMSET_E_ENOMEM")


@pytest.mark.parametrize(("name", "nparams"), sorted(C_ARITY.items()))
def test_c_call_exists_with_c_arity(name, nparams):
    fn = getattr(c, name)
    assert callable(fn)
    assert len(inspect.signature(fn).parameters) == nparams


def test_all_lists_exactly_the_public_names():
    assert len(c.__all__) == len(set(c.__all__)), "duplicates in capi.__all__"
    public = {
        name
        for name, value in vars(c).items()
        if not name.startswith("_")
        and not isinstance(value, TypeVar)
        and (name.startswith(("PMEMSET_", "PMEM2_")) or getattr(value, "__module__", None) == c.__name__)
    }
    assert set(c.__all__) == public
    assert set(C_ARITY) <= public
    assert {"Ref", "EventContext"} <= public
    star: dict[str, Any] = {}
    exec("from pmemsim.capi import *", star)
    assert set(star) - {"__builtins__"} == public


# -- helpers -------------------------------------------------------------------------------------------


@dataclass
class CEnv:
    """Makes sets, sources and parts through capi; every setup call must return 0."""

    space: pmemsim.SimulatedAddressSpace
    make_file: Callable[..., str]
    tmp_path: Path
    plan: FaultPlan = field(default_factory=FaultPlan)
    sets: list[c.Ref[PmemSet]] = field(default_factory=list)
    sources: list[c.Ref[Source]] = field(default_factory=list)

    def new_set(
        self,
        granularity: int = c.PMEM2_GRANULARITY_PAGE,
        *,
        reservation: pmemsim.Reservation | None = None,
        callback: Callable[..., object] | None = None,
        arg: object = None,
    ) -> PmemSet:
        cfg: c.Ref[pmemsim.Config] = c.Ref()
        assert c.pmemset_config_new(cfg) == 0
        assert c.pmemset_config_set_required_store_granularity(cfg.value, granularity) == 0
        assert c.pmemset_config_set_address_space(cfg.value, self.space) == 0
        assert c.pmemset_config_set_fault_plan(cfg.value, self.plan) == 0
        if reservation is not None:
            assert c.pmemset_config_set_reservation(cfg.value, reservation) == 0
        if callback is not None:
            assert c.pmemset_config_set_event_callback(cfg.value, callback, arg) == 0
        s: c.Ref[PmemSet] = c.Ref()
        assert c.pmemset_new(s, cfg.value) == 0
        assert c.pmemset_config_delete(cfg) == 0  # the set does not need its config any more
        self.sets.append(s)
        assert isinstance(s.value, PmemSet)
        return s.value

    def source(self, path: str) -> Source:
        src: c.Ref[Source] = c.Ref()
        assert c.pmemset_source_from_file(src, path) == 0
        self.sources.append(src)
        assert src.value is not None
        return src.value

    def part(self, pset: PmemSet, src: Source, offset: int, length: int) -> c.Ref[pmemsim.Part]:
        part: c.Ref[pmemsim.Part] = c.Ref()
        assert c.pmemset_part_new(part, pset, src, offset, length) == 0
        assert part.value is not None
        return part

    def map(self, pset: PmemSet, src: Source, offset: int, length: int) -> PartDescriptor:
        desc: c.Ref[PartDescriptor] = c.Ref()
        assert c.pmemset_part_map(self.part(pset, src, offset, length), None, desc) == 0
        assert desc.value is not None
        return desc.value

    def close(self) -> None:
        for s in self.sets:
            if s.value is not None:
                s.value._check()
            assert c.pmemset_delete(s) == 0
        for src in self.sources:
            assert c.pmemset_source_delete(src) == 0


@pytest.fixture
def env(space, make_file, tmp_path) -> Iterator[CEnv]:
    e = CEnv(space, make_file, tmp_path)
    yield e
    e.close()


# -- the facade walk-through (README) ---------------------------------------------------------------


def test_design_walkthrough(space, make_file):
    path = make_file(8 * PAGE, fill=b"\x5a")
    rsv = space.reserve(16 * PAGE)
    cfg = c.Ref()
    assert c.pmemset_config_new(cfg) == 0
    assert isinstance(cfg.value, pmemsim.Config)
    assert c.pmemset_config_set_required_store_granularity(cfg.value, c.PMEM2_GRANULARITY_PAGE) == 0
    assert c.pmemset_config_set_address_space(cfg.value, space) == 0
    assert c.pmemset_config_set_fault_plan(cfg.value, FaultPlan()) == 0
    assert c.pmemset_config_set_reservation(cfg.value, rsv) == 0
    seen: list[tuple[object, int, object, object]] = []
    token = object()

    def on_event(pset, ctx, arg):
        part_add = ctx.data.part_add if ctx.type == c.PMEMSET_EVENT_PART_ADD else None
        seen.append((pset, ctx.type, arg, part_add))
        return 0

    assert c.pmemset_config_set_event_callback(cfg.value, on_event, token) == 0
    s = c.Ref()
    assert c.pmemset_new(s, cfg.value) == 0
    assert isinstance(s.value, PmemSet)
    src = c.Ref()
    assert c.pmemset_source_from_file(src, path) == 0
    assert isinstance(src.value, Source)

    # A part mapped with a descriptor: first fit, lowest offset of the reservation.
    part = c.Ref()
    assert c.pmemset_part_new(part, s.value, src.value, 0, 4 * PAGE) == 0
    desc = c.Ref()
    assert c.pmemset_part_map(part, None, desc) == 0
    assert part.value is None
    assert desc.value == PartDescriptor(rsv.addr, 4 * PAGE)
    assert len(seen) == 1
    ev_set, ev_type, ev_arg, ev_add = seen[0]
    assert ev_set is s.value and ev_type == c.PMEMSET_EVENT_PART_ADD and ev_arg is token
    assert (ev_add.addr, ev_add.len) == (rsv.addr, 4 * PAGE)
    assert ev_add.src is src.value

    # A part mapped without a descriptor (desc is optional in C).
    part2 = c.Ref()
    assert c.pmemset_part_new(part2, s.value, src.value, 4 * PAGE, 2 * PAGE) == 0
    assert c.pmemset_part_map(part2, None, None) == 0
    assert part2.value is None
    assert (seen[-1][3].addr, seen[-1][3].len) == (rsv.addr + 4 * PAGE, 2 * PAGE)

    # Iteration: first, next, next past the end.
    pm = c.Ref()
    assert c.pmemset_first_part_map(s.value, pm) == 0
    assert c.pmemset_descriptor_part_map(pm.value) == PartDescriptor(rsv.addr, 4 * PAGE)
    nx = c.Ref()
    assert c.pmemset_next_part_map(s.value, pm.value, nx) == 0
    assert c.pmemset_descriptor_part_map(nx.value) == PartDescriptor(rsv.addr + 4 * PAGE, 2 * PAGE)
    last = c.Ref(object())
    assert c.pmemset_next_part_map(s.value, nx.value, last) == 0
    assert last.value is None
    for ref in (pm, nx):
        assert c.pmemset_part_map_drop(ref) == 0
        assert ref.value is None

    # By address: inside the second map; nothing there → CANNOT_FIND_PART_MAP, Ref untouched.
    by = c.Ref()
    assert c.pmemset_part_map_by_address(s.value, by, rsv.addr + 5 * PAGE + 7) == 0
    assert c.pmemset_descriptor_part_map(by.value).addr == rsv.addr + 4 * PAGE
    assert c.pmemset_part_map_drop(by) == 0
    miss = c.Ref("untouched")
    rc = c.pmemset_part_map_by_address(s.value, miss, rsv.addr + 12 * PAGE)
    assert rc == c.PMEMSET_E_CANNOT_FIND_PART_MAP
    assert miss.value == "untouched"

    # Memory: the file content is visible, stores reach the file.
    assert _read(s.value, desc.value.addr, 4) == b"\x5a" * 4
    assert c.pmemset_memcpy(s.value, desc.value.addr, b"data", 4, 0) == desc.value.addr
    assert c.pmemset_memset(s.value, desc.value.addr + 4, 0xAB, 3, 0) == desc.value.addr + 4
    assert c.pmemset_persist(s.value, desc.value.addr, 7) == 0
    assert c.pmemset_flush(s.value, desc.value.addr, 7) == 0
    assert c.pmemset_drain(s.value) == 0
    assert _read(s.value, desc.value.addr, 8) == b"data\xab\xab\xab\x5a"
    with open(path, "rb") as f:
        assert f.read(8) == b"data\xab\xab\xab\x5a"
    assert c.PMEMSET_EVENT_COPY in [t for _, t, _, _ in seen]

    g = c.Ref()
    assert c.pmemset_get_store_granularity(s.value, g) == 0
    assert g.value == c.PMEM2_GRANULARITY_PAGE
    assert c.pmemset_set_contiguous_part_coalescing(s.value, c.PMEMSET_COALESCING_FULL) == 0

    # Remove the first map; PART_REMOVE is reported.
    pm = c.Ref()
    assert c.pmemset_first_part_map(s.value, pm) == 0
    assert c.pmemset_remove_part_map(s.value, pm) == 0
    assert pm.value is None
    assert seen[-1][1] == c.PMEMSET_EVENT_PART_REMOVE
    assert s.value.descriptors() == [PartDescriptor(rsv.addr + 4 * PAGE, 2 * PAGE)]
    assert c.pmemset_remove_range(s.value, rsv.addr + 4 * PAGE, 1) == 0
    assert s.value.descriptors() == []

    # Teardown through the delete calls, each of which NULLs its pointer.
    assert c.pmemset_delete(s) == 0
    assert s.value is None
    assert c.pmemset_source_delete(src) == 0
    assert src.value is None
    assert c.pmemset_config_delete(cfg) == 0
    assert cfg.value is None
    assert (rsv.addr, rsv.size) == (rsv.addr, 16 * PAGE) and not rsv.released
    space.release(rsv)


# -- config and set creation ----------------------------------------------------------------------


def test_pmemset_new_without_granularity_is_granularity_not_set(space):
    cfg = c.Ref()
    assert c.pmemset_config_new(cfg) == 0
    assert c.pmemset_config_set_address_space(cfg.value, space) == 0
    s = c.Ref("untouched")
    assert c.pmemset_new(s, cfg.value) == c.PMEMSET_E_GRANULARITY_NOT_SET
    assert s.value == "untouched"
    assert "PMEMSET_E_GRANULARITY_NOT_SET" in c.pmemset_errormsg()


@pytest.mark.parametrize("bad", [3, -1, 1234])
def test_unknown_granularity_is_refused_by_the_config(bad):
    cfg = c.Ref()
    assert c.pmemset_config_new(cfg) == 0
    assert c.pmemset_config_set_required_store_granularity(cfg.value, bad) == (
        c.PMEMSET_E_GRANULARITY_NOT_SUPPORTED
    )
    assert cfg.value.granularity is None  # nothing was set
    assert _mentions(c.pmemset_errormsg(), bad)


def test_pmemset_delete_releases_the_sets_reservations(env, space):
    pset = env.new_set()
    env.map(pset, env.source(env.make_file(4 * PAGE)), 0, 4 * PAGE)
    assert space.reservations() != []
    s = env.sets.pop()
    assert c.pmemset_delete(s) == 0
    assert s.value is None
    assert pset.closed
    assert space.reservations() == []


def test_delete_calls_accept_null(env):
    for delete in (c.pmemset_delete, c.pmemset_config_delete, c.pmemset_source_delete, c.pmemset_part_delete):
        ref = c.Ref()
        assert delete(ref) == 0
        assert ref.value is None


# -- sources ---------------------------------------------------------------------------------------


def test_source_from_missing_file_is_invalid_source_path(tmp_path):
    src = c.Ref("untouched")
    missing = tmp_path / "nope.pmem"
    assert c.pmemset_source_from_file(src, str(missing)) == c.PMEMSET_E_INVALID_SOURCE_PATH
    assert src.value == "untouched"
    assert "PMEMSET_E_INVALID_SOURCE_PATH" in c.pmemset_errormsg()
    assert str(missing) in c.pmemset_errormsg()


def test_xsource_create_if_needed_and_truncate_if_needed(env, tmp_path):
    path = tmp_path / "new.pmem"
    src = c.Ref()
    flags = c.PMEMSET_SOURCE_FILE_CREATE_IF_NEEDED | c.PMEMSET_SOURCE_FILE_TRUNCATE_IF_NEEDED
    assert c.pmemset_xsource_from_file(src, str(path), flags) == 0
    env.sources.append(src)
    assert path.stat().st_size == 0
    pset = env.new_set()
    desc = env.map(pset, src.value, 0, 3 * PAGE)
    assert desc.size == 3 * PAGE
    assert path.stat().st_size == 3 * PAGE  # part_map grew the file (part_map step 2)


def test_xsource_create_always_empties_an_existing_file(env):
    path = env.make_file(2 * PAGE, fill=b"x")
    src = c.Ref()
    assert c.pmemset_xsource_from_file(src, path, c.PMEMSET_SOURCE_FILE_CREATE_ALWAYS) == 0
    env.sources.append(src)
    assert os.stat(path).st_size == 0


def test_xsource_invalid_flags(tmp_path):
    src = c.Ref("untouched")
    rc = c.pmemset_xsource_from_file(src, str(tmp_path / "f"), 1 << 7)
    assert rc == c.PMEMSET_E_INVALID_SOURCE_FILE_CREATE_FLAGS
    assert src.value == "untouched"
    assert not (tmp_path / "f").exists()


def test_source_from_temporary_grows_on_map_and_missing_dir_fails(env, tmp_path):
    src = c.Ref()
    assert c.pmemset_source_from_temporary(src, str(tmp_path)) == 0
    env.sources.append(src)
    assert list(tmp_path.iterdir()) == []  # unlinked
    pset = env.new_set()
    env.map(pset, src.value, 0, 2 * PAGE)
    assert src.value.size() == 2 * PAGE
    bad = c.Ref("untouched")
    assert c.pmemset_source_from_temporary(bad, str(tmp_path / "no" / "such")) == (
        c.PMEMSET_E_CANNOT_CREATE_TEMP_FILE
    )
    assert bad.value == "untouched"


def test_source_from_fd_borrows_the_descriptor(env):
    path = env.make_file(2 * PAGE)
    fd = os.open(path, os.O_RDWR)
    try:
        src = c.Ref()
        assert c.pmemset_source_from_fd(src, fd) == 0
        pset = env.new_set()
        desc = env.map(pset, src.value, 0, 2 * PAGE)
        assert c.pmemset_memcpy(pset, desc.addr, b"fd!", 3, 0) == desc.addr
        assert c.pmemset_source_delete(src) == 0
        assert src.value is None
        os.fstat(fd)  # still open: deleting the source never closes a borrowed fd
        assert os.pread(fd, 3, 0) == b"fd!"
    finally:
        os.close(fd)


def test_part_new_alloc_fault_is_enomem_and_leaves_ref(env):
    pset = env.new_set()
    src = env.source(env.make_file(PAGE))
    env.plan.fail("alloc.part")
    part = c.Ref("untouched")
    rc = c.pmemset_part_new(part, pset, src, 0, PAGE)
    assert rc == -errno.ENOMEM
    assert part.value == "untouched"
    assert c.pmemset_err_to_errno(rc) == errno.ENOMEM


def test_part_delete_nulls_and_part_is_gone(env):
    pset = env.new_set()
    part = env.part(pset, env.source(env.make_file(PAGE)), 0, PAGE)
    held = part.value
    assert c.pmemset_part_delete(part) == 0
    assert part.value is None
    assert held.deleted
    with pytest.raises(ValueError, match="NULL"):
        c.pmemset_part_map(part, None, None)


# -- part_map success and failure, references ---------------------------------------------------


def test_failed_part_map_leaves_refs_untouched_and_part_is_retryable(env, space):
    pset = env.new_set()
    src = env.source(env.make_file(8 * PAGE))
    first = env.map(pset, src, 0, 2 * PAGE)
    assert c.pmemset_set_contiguous_part_coalescing(pset, c.PMEMSET_COALESCING_FULL) == 0
    space.occupy(first.end, PAGE)
    part = env.part(pset, src, 2 * PAGE, 2 * PAGE)
    held = part.value
    old = PartDescriptor(1, 2)
    desc = c.Ref(old)
    assert c.pmemset_part_map(part, None, desc) == c.PMEMSET_E_CANNOT_COALESCE_PARTS
    assert part.value is held and not held.consumed
    assert desc.value is old
    space.free(first.end)
    assert c.pmemset_part_map(part, None, desc) == 0
    assert part.value is None and held.consumed
    assert desc.value == PartDescriptor(first.addr, 4 * PAGE)  # the whole grown part map


def test_remove_part_map_held_twice_is_use_after_drop(env):
    pset = env.new_set()
    desc = env.map(pset, env.source(env.make_file(2 * PAGE)), 0, 2 * PAGE)
    a, b = c.Ref(), c.Ref()
    assert c.pmemset_first_part_map(pset, a) == 0
    assert c.pmemset_part_map_by_address(pset, b, desc.addr) == 0
    held = a.value
    assert c.pmemset_remove_part_map(pset, a) == c.PMEMSET_E_PART_MAP_POSSIBLE_USE_AFTER_DROP
    assert a.value is held
    assert pset.descriptors() == [desc]
    assert c.pmemset_part_map_drop(b) == 0
    assert b.value is None
    assert c.pmemset_remove_part_map(pset, a) == 0
    assert a.value is None
    assert pset.descriptors() == []
    by = c.Ref()
    assert c.pmemset_part_map_by_address(pset, by, desc.addr) == c.PMEMSET_E_CANNOT_FIND_PART_MAP


def test_remove_range_refuses_a_referenced_map_then_removes(env):
    pset = env.new_set()
    src = env.source(env.make_file(8 * PAGE))
    d1 = env.map(pset, src, 0, 2 * PAGE)
    d2 = env.map(pset, src, 2 * PAGE, 2 * PAGE)
    pm = c.Ref()
    assert c.pmemset_part_map_by_address(pset, pm, d1.addr) == 0
    rc = c.pmemset_remove_range(pset, d1.addr, PAGE)
    assert rc == c.PMEMSET_E_PART_MAP_POSSIBLE_USE_AFTER_DROP
    assert sorted(pset.descriptors(), key=lambda d: d.addr) == sorted([d1, d2], key=lambda d: d.addr)
    assert c.pmemset_part_map_drop(pm) == 0
    assert c.pmemset_remove_range(pset, d1.addr, PAGE) == 0
    assert pset.descriptors() == [d2]


def test_first_part_map_of_empty_set_is_null(env):
    pset = env.new_set()
    pm = c.Ref(object())
    assert c.pmemset_first_part_map(pset, pm) == 0
    assert pm.value is None


# -- coalescing and granularity -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [3, -1, 1234])
def test_invalid_coalescing_value(env, bad):
    pset = env.new_set()
    src = env.source(env.make_file(4 * PAGE))
    assert c.pmemset_set_contiguous_part_coalescing(pset, c.PMEMSET_COALESCING_FULL) == 0
    assert c.pmemset_set_contiguous_part_coalescing(pset, bad) == c.PMEMSET_E_INVALID_COALESCING_VALUE
    assert "PMEMSET_E_INVALID_COALESCING_VALUE" in c.pmemset_errormsg()
    assert _mentions(c.pmemset_errormsg(), bad)
    # The failed call changed nothing: FULL still applies, the second part coalesces.
    d1 = env.map(pset, src, 0, 2 * PAGE)
    d2 = env.map(pset, src, 2 * PAGE, 2 * PAGE)
    assert d2 == PartDescriptor(d1.addr, 4 * PAGE)


def test_opportunistic_coalescing_falls_back_when_occupied(env, space):
    pset = env.new_set()
    src = env.source(env.make_file(4 * PAGE))
    assert c.pmemset_set_contiguous_part_coalescing(pset, c.PMEMSET_COALESCING_OPPORTUNISTIC) == 0
    d1 = env.map(pset, src, 0, 2 * PAGE)
    space.occupy(d1.end, PAGE)
    d2 = env.map(pset, src, 2 * PAGE, 2 * PAGE)
    assert d2.size == 2 * PAGE and d2.addr != d1.end
    assert len(pset.descriptors()) == 2


def test_get_store_granularity_before_and_after_first_map(env):
    pset = env.new_set()
    g = c.Ref("untouched")
    assert c.pmemset_get_store_granularity(pset, g) == c.PMEMSET_E_NO_PART_MAPPED
    assert g.value == "untouched"
    env.map(pset, env.source(env.make_file(PAGE)), 0, PAGE)
    assert c.pmemset_get_store_granularity(pset, g) == 0
    assert g.value == c.PMEM2_GRANULARITY_PAGE


# -- memory operations ------------------------------------------------------------------------------


@pytest.fixture
def mapped(env) -> tuple[PmemSet, PartDescriptor]:
    pset = env.new_set()
    return pset, env.map(pset, env.source(env.make_file(2 * PAGE)), 0, 2 * PAGE)


def test_memory_operations_return_the_destination_and_read_back(mapped):
    """PMDK's memcpy/memmove/memset return ``pmemdest`` (a void *), not 0."""
    pset, d = mapped
    a = d.addr + 100
    flags = c.PMEMSET_F_MEM_NODRAIN | c.PMEMSET_F_MEM_NONTEMPORAL
    assert c.pmemset_memcpy(pset, a, b"abcdef", 6, flags) == a
    assert _read(pset, a, 6) == b"abcdef"
    assert c.pmemset_memcpy(pset, a, b"XYZ-ignored", 3, 0) == a  # only len bytes are copied
    assert _read(pset, a, 6) == b"XYZdef"
    assert c.pmemset_memmove(pset, a + 2, a, 4, 0) == a + 2  # overlapping, from an address in the set
    assert _read(pset, a, 6) == b"XYXYZd"
    assert c.pmemset_memmove(pset, a, b"mv", 2, c.PMEMSET_F_MEM_NOFLUSH) == a
    assert _read(pset, a, 6) == b"mvXYZd"
    assert c.pmemset_memset(pset, a + 6, 0xAB, 4, c.PMEMSET_F_MEM_WC) == a + 6
    assert _read(pset, a + 5, 6) == b"d\xab\xab\xab\xab\0"
    assert c.pmemset_flush(pset, a, 10) == 0
    assert c.pmemset_drain(pset) == 0
    assert c.pmemset_persist(pset, a, 10) == 0
    assert c.pmemset_deep_flush(pset, a, 10) == 0
    # A whole-map range is inside the set: the last byte included.
    assert c.pmemset_memset(pset, d.addr, 0x11, d.size, 0) == d.addr
    assert _read(pset, d.end - 1, 1) == b"\x11"


OUT_OF_RANGE_OPS: dict[str, Callable[[PmemSet, int, int], int]] = {
    "memcpy": lambda s, a, n: c.pmemset_memcpy(s, a, b"z" * n, n, 0),
    "memmove": lambda s, a, n: c.pmemset_memmove(s, a, b"z" * n, n, 0),
    "memset": lambda s, a, n: c.pmemset_memset(s, a, 0x7A, n, 0),
    "flush": lambda s, a, n: c.pmemset_flush(s, a, n),
    "persist": lambda s, a, n: c.pmemset_persist(s, a, n),
    "deep_flush": lambda s, a, n: c.pmemset_deep_flush(s, a, n),
}


#: Where an out-of-range access starts, relative to the mapped part: (descriptor -> address), 4 bytes.
WHERE: dict[str, Callable[[PartDescriptor], int]] = {
    "past-end": lambda d: d.end,
    "straddles-end": lambda d: d.end - 2,
    "before-start": lambda d: d.addr - 2,
}


@pytest.mark.parametrize("where", sorted(WHERE))
@pytest.mark.parametrize("op", sorted(OUT_OF_RANGE_OPS))
def test_out_of_range_is_a_return_code(mapped, op, where):
    pset, d = mapped
    addr, n = WHERE[where](d), 4
    tail = _read(pset, d.end - 2, 2)
    rc = OUT_OF_RANGE_OPS[op](pset, addr, n)
    assert rc == c.PMEMSET_E_CANNOT_FIND_PART_MAP
    assert _read(pset, d.end - 2, 2) == tail  # nothing was stored
    msg = c.pmemset_errormsg()
    assert "PMEMSET_E_CANNOT_FIND_PART_MAP" in msg
    assert _mentions(msg, addr)


def test_read_fills_the_buffer_and_returns_zero(mapped):
    pset, d = mapped
    c.pmemset_memcpy(pset, d.addr, b"hello", 5, 0)
    buf = bytearray(b"\xee" * 8)
    assert c.pmemset_read(pset, buf, d.addr, 5) == 0
    assert buf == b"hello\xee\xee\xee"  # only the first n bytes are written, as C's memcpy
    view = memoryview(bytearray(5))
    assert c.pmemset_read(pset, view, d.addr + 1, 4) == 0 and bytes(view[:4]) == b"ello"
    assert c.pmemset_read(pset, bytearray(), d.addr, 0) == 0


@pytest.mark.parametrize("where", sorted(WHERE))
def test_read_out_of_range_is_a_return_code_and_leaves_the_buffer(mapped, where):
    pset, d = mapped
    addr = WHERE[where](d)
    buf = bytearray(b"keep")
    assert c.pmemset_read(pset, buf, addr, 4) == c.PMEMSET_E_CANNOT_FIND_PART_MAP
    assert buf == b"keep"
    assert _mentions(c.pmemset_errormsg(), addr)


def test_read_refuses_a_buffer_it_cannot_fill(mapped):
    pset, d = mapped
    with pytest.raises(TypeError, match="writable"):
        c.pmemset_read(pset, b"immutable", d.addr, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buffer"):
        c.pmemset_read(pset, "text", d.addr, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 bytes, fewer than length=4"):
        c.pmemset_read(pset, bytearray(3), d.addr, 4)


def test_memmove_from_an_unmapped_address_is_a_return_code(mapped):
    pset, d = mapped
    assert c.pmemset_memmove(pset, d.addr, d.end, 4, 0) == c.PMEMSET_E_CANNOT_FIND_PART_MAP


def test_deep_flush_fault_is_deep_flush_fail(env):
    env.plan.fail("flush.deep")
    pset = env.new_set()
    d = env.map(pset, env.source(env.make_file(PAGE)), 0, PAGE)
    rc = c.pmemset_deep_flush(pset, d.addr, 64)
    assert rc == c.PMEMSET_E_DEEP_FLUSH_FAIL
    assert "PMEMSET_E_DEEP_FLUSH_FAIL" in c.pmemset_errormsg()
    assert c.pmemset_err_to_errno(rc) == errno.EINVAL
    assert [str(s) for s in env.plan.fired_sites()] == ["flush.deep"]
    assert c.pmemset_deep_flush(pset, d.addr, 64) == 0  # only the first hit was planned to fail


# -- errormsg and err_to_errno ------------------------------------------------------------------------


def test_errormsg_names_the_error_and_the_numbers(env, space):
    rsv = space.reserve(2 * PAGE)
    pset = env.new_set(reservation=rsv)
    part = env.part(pset, env.source(env.make_file(4 * PAGE)), 0, 3 * PAGE)
    assert c.pmemset_part_map(part, None, None) == c.PMEMSET_E_CANNOT_FIT_PART_MAP
    msg = c.pmemset_errormsg()
    assert "PMEMSET_E_CANNOT_FIT_PART_MAP" in msg
    assert _mentions(msg, 3 * PAGE)  # what was asked for
    assert _mentions(msg, 2 * PAGE)  # what there was room for
    assert c.pmemset_part_delete(part) == 0


@pytest.mark.parametrize(("name", "value"), sorted(PMEMSET_ERRORS.items()))
def test_err_to_errno_of_pmemset_codes_is_einval(name, value):
    assert c.pmemset_err_to_errno(value) == errno.EINVAL


@pytest.mark.parametrize("err", [errno.ENOMEM, errno.ENOENT, errno.EBADF, errno.ENOSPC])
def test_err_to_errno_of_minus_errno_is_the_errno(err):
    assert c.pmemset_err_to_errno(-err) == err


# -- every documented part_map error through capi ---------------------------------------------------


@dataclass
class Case:
    setup: Callable[[CEnv], tuple[PmemSet, c.Ref[pmemsim.Part]]]
    code: int
    fired: str | None = None


def _plain(env: CEnv, length: int = 4 * PAGE, offset: int = 0, file_size: int = 4 * PAGE, **kw: Any):
    pset = env.new_set(**kw)
    return pset, env.part(pset, env.source(env.make_file(file_size)), offset, length)


def _faulty(site: str) -> Callable[[CEnv], tuple[PmemSet, c.Ref[pmemsim.Part]]]:
    def setup(env: CEnv):
        env.plan.fail(site)
        return _plain(env)

    return setup


def _temporary_truncate_fault(env: CEnv):
    env.plan.fail("file.truncate", errno=errno.ENOSPC)
    pset = env.new_set()
    src = c.Ref()
    assert c.pmemset_source_from_temporary(src, str(env.tmp_path)) == 0
    env.sources.append(src)
    return pset, env.part(pset, src.value, 0, 2 * PAGE)


def _truncate_beyond_off_t(env: CEnv):
    # offset + length exceeds the largest possible file size: no file can grow there.
    pset = env.new_set()
    src = c.Ref()
    path = env.make_file(PAGE)
    assert c.pmemset_xsource_from_file(src, path, c.PMEMSET_SOURCE_FILE_TRUNCATE_IF_NEEDED) == 0
    env.sources.append(src)
    return pset, env.part(pset, src.value, INT64_MAX + 1 - PAGE, 2 * PAGE)


def _coalesce_occupied(env: CEnv):
    pset = env.new_set()
    src = env.source(env.make_file(4 * PAGE))
    d = env.map(pset, src, 0, 2 * PAGE)
    assert c.pmemset_set_contiguous_part_coalescing(pset, c.PMEMSET_COALESCING_FULL) == 0
    env.space.occupy(d.end, PAGE)
    return pset, env.part(pset, src, 2 * PAGE, 2 * PAGE)


def _coalesce_reservation_end(env: CEnv):
    pset = env.new_set(reservation=env.space.reserve(2 * PAGE))
    src = env.source(env.make_file(4 * PAGE))
    env.map(pset, src, 0, 2 * PAGE)
    assert c.pmemset_set_contiguous_part_coalescing(pset, c.PMEMSET_COALESCING_FULL) == 0
    return pset, env.part(pset, src, 2 * PAGE, PAGE)


def _reservation_full(env: CEnv):
    pset = env.new_set(reservation=env.space.reserve(3 * PAGE))
    src = env.source(env.make_file(4 * PAGE))
    env.map(pset, src, 0, 2 * PAGE)
    return pset, env.part(pset, src, 2 * PAGE, 2 * PAGE)


def _granularity_mismatch(env: CEnv):
    pset = env.new_set(c.PMEM2_GRANULARITY_PAGE)
    dax = env.make_file(2 * PAGE)
    env.space.set_device_granularity(dax, Granularity.CACHE_LINE)
    env.map(pset, env.source(dax), 0, 2 * PAGE)  # effective granularity: CACHE_LINE
    return pset, env.part(pset, env.source(env.make_file(2 * PAGE)), 0, 2 * PAGE)  # PAGE


PART_MAP_ERRORS: dict[str, Case] = {
    "alloc.config": Case(
        _faulty("alloc.config"), c.PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE, "alloc.config"
    ),
    "offset>INT64_MAX": Case(lambda e: _plain(e, offset=INT64_MAX + 1), c.PMEMSET_E_INVALID_OFFSET_VALUE),
    "config.granularity": Case(
        _faulty("config.granularity"), c.PMEMSET_E_GRANULARITY_NOT_SUPPORTED, "config.granularity"
    ),
    "map.file": Case(_faulty("map.file"), c.PMEMSET_E_INVALID_PMEM2_MAP, "map.file"),
    "file-too-short": Case(lambda e: _plain(e, file_size=2 * PAGE), c.PMEMSET_E_INVALID_PMEM2_MAP),
    "offset-unaligned": Case(lambda e: _plain(e, offset=512, length=PAGE), c.PMEMSET_E_INVALID_PMEM2_MAP),
    "byte-on-regular-file": Case(
        lambda e: _plain(e, granularity=c.PMEM2_GRANULARITY_BYTE), c.PMEMSET_E_INVALID_PMEM2_MAP
    ),
    "length-unaligned": Case(lambda e: _plain(e, length=PAGE + 100), c.PMEMSET_E_LENGTH_UNALIGNED),
    "coalesce-occupied": Case(_coalesce_occupied, c.PMEMSET_E_CANNOT_COALESCE_PARTS),
    "coalesce-reservation-end": Case(_coalesce_reservation_end, c.PMEMSET_E_CANNOT_COALESCE_PARTS),
    "temporary-truncate-fault": Case(
        _temporary_truncate_fault, c.PMEMSET_E_CANNOT_TRUNCATE_SOURCE_FILE, "file.truncate"
    ),
    "truncate-beyond-off_t": Case(_truncate_beyond_off_t, c.PMEMSET_E_CANNOT_TRUNCATE_SOURCE_FILE),
    "alloc.part_map": Case(_faulty("alloc.part_map"), -errno.ENOMEM, "alloc.part_map"),
    "vm.reserve": Case(_faulty("vm.reserve"), -errno.ENOMEM, "vm.reserve"),
    "reservation-full": Case(_reservation_full, c.PMEMSET_E_CANNOT_FIT_PART_MAP),
    "granularity-mismatch": Case(_granularity_mismatch, c.PMEMSET_E_GRANULARITY_MISMATCH),
}


@pytest.mark.parametrize("case", list(PART_MAP_ERRORS.values()), ids=list(PART_MAP_ERRORS))
def test_part_map_error_path_returns_exact_code(env, case):
    pset, part = case.setup(env)
    held = part.value
    before = snapshot(pset, part=held, sources=(held.source,))
    old = PartDescriptor(1, 2)
    desc = c.Ref(old)
    rc = c.pmemset_part_map(part, None, desc)
    msg = c.pmemset_errormsg()  # before snapshot(), whose own probing may set a new message
    assert rc == case.code
    assert part.value is held and desc.value is old
    assert snapshot(pset, part=held, sources=(held.source,)) == before
    assert ("ENOMEM" if rc == -errno.ENOMEM else ErrorCode(rc).c_name) in msg
    assert c.pmemset_err_to_errno(rc) == (errno.ENOMEM if rc == -errno.ENOMEM else errno.EINVAL)
    if case.fired is not None:
        assert [str(s) for s in env.plan.fired_sites()] == [case.fired]
    assert c.pmemset_part_delete(part) == 0
    assert part.value is None


# -- misuse ----------------------------------------------------------------------------------------


def _misuses(env: CEnv) -> dict[str, Callable[[], object]]:
    pset = env.new_set()
    src = env.source(env.make_file(4 * PAGE))
    d = env.map(pset, src, 0, 2 * PAGE)
    pm = c.Ref()
    assert c.pmemset_first_part_map(pset, pm) == 0
    part = env.part(pset, src, 2 * PAGE, PAGE)
    return {
        "config_new": lambda: c.pmemset_config_new(None),
        "new": lambda: c.pmemset_new(object(), pmemsim.Config(Granularity.PAGE)),
        "source_from_file": lambda: c.pmemset_source_from_file([], env.make_file(PAGE)),
        "part_new": lambda: c.pmemset_part_new(None, pset, src, 0, PAGE),
        "part_map-part": lambda: c.pmemset_part_map(part.value, None, None),
        "part_map-desc": lambda: c.pmemset_part_map(part, None, PartDescriptor(0, 0)),
        "first_part_map": lambda: c.pmemset_first_part_map(pset, None),
        "next_part_map": lambda: c.pmemset_next_part_map(pset, pm.value, []),
        "by_address": lambda: c.pmemset_part_map_by_address(pset, None, d.addr),
        "part_map_drop": lambda: c.pmemset_part_map_drop(pm.value),
        "remove_part_map": lambda: c.pmemset_remove_part_map(pset, pm.value),
        "get_store_granularity": lambda: c.pmemset_get_store_granularity(pset, None),
        "delete": lambda: c.pmemset_delete(pset),
        "source_delete": lambda: c.pmemset_source_delete(src),
        "part_delete": lambda: c.pmemset_part_delete(part.value),
        "config_delete": lambda: c.pmemset_config_delete(pmemsim.Config()),
    }


MISUSE_NAMES = [
    "config_new",
    "new",
    "source_from_file",
    "part_new",
    "part_map-part",
    "part_map-desc",
    "first_part_map",
    "next_part_map",
    "by_address",
    "part_map_drop",
    "remove_part_map",
    "get_store_granularity",
    "delete",
    "source_delete",
    "part_delete",
    "config_delete",
]


@pytest.mark.parametrize("which", MISUSE_NAMES)
def test_non_ref_out_pointer_is_a_clear_type_error(env, which):
    calls = _misuses(env)
    assert set(calls) == set(MISUSE_NAMES)
    pset = env.sets[-1].value
    before = snapshot(pset)
    with pytest.raises(TypeError, match="Ref"):
        calls[which]()
    # The refused call changed nothing observable (references: see the next test).
    assert snapshot(pset) == before
    assert not pset.closed


@pytest.mark.parametrize("which", ["first_part_map", "next_part_map", "by_address"])
def test_type_error_takes_no_part_map_reference(env, which):
    pset = env.new_set()
    src = env.source(env.make_file(4 * PAGE))
    d = env.map(pset, src, 0, 2 * PAGE)
    d2 = env.map(pset, src, 2 * PAGE, 2 * PAGE)  # so that next_part_map has something to return
    cur = c.Ref()
    assert c.pmemset_first_part_map(pset, cur) == 0
    call = {
        "first_part_map": lambda: c.pmemset_first_part_map(pset, "not a Ref"),
        "next_part_map": lambda: c.pmemset_next_part_map(pset, cur.value, "not a Ref"),
        "by_address": lambda: c.pmemset_part_map_by_address(pset, "not a Ref", d.addr),
    }[which]
    with pytest.raises(TypeError, match="Ref"):
        call()
    # Only `cur` holds the first part map and nothing holds the second, so both removals succeed.
    assert c.pmemset_remove_part_map(pset, cur) == 0
    assert cur.value is None
    assert c.pmemset_remove_range(pset, d2.addr, d2.size) == 0


def test_type_error_in_part_map_does_not_consume_the_part(env):
    pset = env.new_set()
    part = env.part(pset, env.source(env.make_file(PAGE)), 0, PAGE)
    held = part.value
    with pytest.raises(TypeError, match="Ref"):
        c.pmemset_part_map(part, None, "desc")
    assert part.value is held and not held.consumed
    assert pset.descriptors() == []
    assert c.pmemset_part_map(part, None, None) == 0


def test_documented_failure_never_raises(env):
    pset = env.new_set()
    try:
        rc = c.pmemset_memcpy(pset, 4096, b"x", 1, 0)
    except PmemsetError as exc:  # pragma: no cover - the failure we are guarding against
        pytest.fail(f"capi raised instead of returning a code: {exc}")
    assert rc == c.PMEMSET_E_CANNOT_FIND_PART_MAP
