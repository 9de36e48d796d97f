"""Every documented error of ``pmemset_part_map`` (the newer man page), reproduced on demand.

Each case builds the situation that makes one step of the part_map algorithm fail, then checks:

* the exact code (the ``ErrorCode`` member, PMDK's value from §2, and the ``capi``
  constant), and the C name;
* that the message names the numbers (or names) involved;
* that **nothing changed** (§2): part maps, reservations, occupied ranges, file sizes,
  the coalescing anchor and mode, the store granularity, the part (not consumed) — and
  that no PART_ADD event was delivered;
* that ``FaultPlan.fired`` records the injected site (and only injected cases fire);
* that the part can be mapped once the cause is removed.

The cases run through the Python API and through the C-shaped facade. Further down:
the order of the steps (the first failure wins, what earlier steps did is undone),
and a clearly separated section of tests that are about the simulator itself.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.sets import PAGE, snapshot

import pmemsim
from pmemsim import (
    Coalescing,
    Config,
    ErrorCode,
    FaultPlan,
    FaultSite,
    Granularity,
    Part,
    PartAddEvent,
    PartDescriptor,
    PmemSet,
    PmemsetError,
    Source,
    SourceFlags,
)
from pmemsim import capi as c

INT64_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1

#: The contract's error table, copied by hand: the values must be PMDK's, not whatever the enum says.
CONTRACT_VALUES = {
    "UNKNOWN": -200000,
    "NOSUPP": -200001,
    "INVALID_PMEM2_SOURCE": -200002,
    "INVALID_SOURCE_PATH": -200003,
    "INVALID_SOURCE_TYPE": -200004,
    "CANNOT_ALLOCATE_INTERNAL_STRUCTURE": -200005,
    "INVALID_OFFSET_VALUE": -200006,
    "GRANULARITY_NOT_SUPPORTED": -200007,
    "INVALID_PMEM2_MAP": -200008,
    "PART_EXISTS": -200009,
    "GRANULARITY_NOT_SET": -200010,
    "GRANULARITY_MISMATCH": -200011,
    "NO_PART_MAPPED": -200012,
    "CANNOT_FIND_PART_MAP": -200013,
    "CANNOT_COALESCE_PARTS": -200014,
    "LENGTH_UNALIGNED": -200015,
    "PART_NOT_FOUND": -200016,
    "INVALID_COALESCING_VALUE": -200017,
    "DEEP_FLUSH_FAIL": -200018,
    "INVALID_SOURCE_FILE_CREATE_FLAGS": -200019,
    "CANNOT_CREATE_TEMP_FILE": -200020,
    "CANNOT_TRUNCATE_SOURCE_FILE": -200021,
    "PART_MAP_POSSIBLE_USE_AFTER_DROP": -200022,
    "CANNOT_FIT_PART_MAP": -200023,
    "ENOMEM": -errno.ENOMEM,
}


def capi_constant(code: ErrorCode) -> int:
    """The facade's constant for ``code`` (ENOMEM is a plain negative errno in C)."""
    if code is ErrorCode.ENOMEM:
        return -errno.ENOMEM
    return int(getattr(c, f"PMEMSET_E_{code.name}"))


def c_name(code: ErrorCode) -> str:
    return "ENOMEM" if code is ErrorCode.ENOMEM else f"PMEMSET_E_{code.name}"


def assert_code(actual: int, expected: ErrorCode) -> None:
    """``actual`` is exactly ``expected``: the member, PMDK's value and the capi constant."""
    assert actual == expected, f"got {actual} ({pmemsim.errors.code_name(actual)}), want {expected!r}"
    assert actual == CONTRACT_VALUES[expected.name]
    assert actual == capi_constant(expected)


def mentions(message: str, item: object) -> bool:
    """True when ``message`` names ``item``: an int in decimal or hex, or a string."""
    if isinstance(item, int):
        return str(item) in message or hex(item) in message.lower()
    return str(item) in message


def test_error_codes_have_pmdk_values():
    """Every code of the contract's error table exists with PMDK's value, and the facade exports it."""
    for name, value in CONTRACT_VALUES.items():
        member = ErrorCode[name]
        assert int(member) == value
        assert capi_constant(member) == value
    assert {m.name for m in ErrorCode} == set(CONTRACT_VALUES)


# -- the environment each case builds in ------------------------------------------------------


@dataclass
class Env:
    space: pmemsim.LayoutAddressSpace
    make_file: Callable[..., str]
    tmp_path: Path
    _make_set: Callable[..., PmemSet]
    events: list[pmemsim.Event] = field(default_factory=list)

    def make_set(
        self,
        granularity: Granularity = Granularity.PAGE,
        *,
        reservation: pmemsim.Reservation | None = None,
        plan: FaultPlan | None = None,
    ) -> PmemSet:
        """A set whose events land in ``self.events``; always with a plan, so hits are counted."""
        return self._make_set(
            granularity,
            reservation=reservation,
            fault_plan=plan if plan is not None else FaultPlan(),
            event_callback=lambda _s, ev: self.events.append(ev),
        )

    def source(self, pages: int = 4, *, flags: SourceFlags | None = None) -> tuple[str, Source]:
        path = self.make_file(pages * PAGE)
        src = Source.from_file(path) if flags is None else Source.xfrom_file(path, flags)
        return path, src


@pytest.fixture
def env(space, make_file, make_set, tmp_path) -> Env:
    return Env(space, make_file, tmp_path, make_set)


@dataclass
class Case:
    """One failing part_map, and how to remove its cause."""

    pset: PmemSet
    part: Part
    paths: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    says: tuple[object, ...] = ()  # numbers / names the message must contain
    site: str | None = None  # the injected fault site, if the cause is a fault
    errno: int | None = None  # the OS errno the error must carry, when there is one
    #: removes the cause; returns a replacement part when the failed part itself was the cause
    fix: Callable[[], Part | None] = lambda: None
    retry_size: int | None = None  # size of the part map the retry ends up in
    retry_addr: int | None = None  # and its address, when the layout makes it certain
    retry_granularity: Granularity | None = None


def _first_map(pset: PmemSet, src: Source, offset: int, length: int) -> PartDescriptor:
    return pset.part_map(pset.part_new(src, offset, length))


def _remove_first(pset: PmemSet) -> None:
    pm = pset.first_part_map()
    assert pm is not None
    pset.remove_part_map(pm)


# -- the cases, one builder per failure ---------------------------------------------------------------


def case_alloc_config(env: Env) -> Case:
    plan = FaultPlan().fail("alloc.config", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), (path,), says=("alloc.config",), site="alloc.config",
        retry_size=2 * PAGE,
    )  # fmt: skip


def case_offset_over_int64(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source()
    bad = INT64_MAX + 1  # page aligned, so only step 4 can object
    return Case(
        pset, pset.part_new(src, bad, PAGE), (path,), says=(bad, INT64_MAX),
        fix=lambda: pset.part_new(src, 0, PAGE), retry_size=PAGE,
    )  # fmt: skip


def case_offset_near_size_max(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source()
    bad = SIZE_MAX + 1 - PAGE
    return Case(
        pset, pset.part_new(src, bad, PAGE), (path,), says=(bad,),
        fix=lambda: pset.part_new(src, PAGE, PAGE), retry_size=PAGE,
    )  # fmt: skip


def case_granularity_not_offered(env: Env) -> Case:
    pset = env.make_set(Granularity.PAGE)
    path, src = env.source()
    env.space.supported_granularities = frozenset({Granularity.BYTE, Granularity.CACHE_LINE})

    def fix() -> None:
        env.space.supported_granularities = frozenset(Granularity)

    return Case(
        pset, pset.part_new(src, 0, PAGE), (path,), says=("PAGE",), fix=fix, retry_size=PAGE,
    )  # fmt: skip


def case_granularity_fault(env: Env) -> Case:
    plan = FaultPlan().fail("config.granularity", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, PAGE), (path,), says=("config.granularity",),
        site="config.granularity", retry_size=PAGE,
    )  # fmt: skip


def case_file_too_short(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source(pages=2)  # 8192 bytes; the part wants [4096, 12288)
    return Case(
        pset, pset.part_new(src, PAGE, 2 * PAGE), (path,), says=(2 * PAGE, PAGE),
        fix=lambda: os.truncate(path, 3 * PAGE), retry_size=2 * PAGE,
    )  # fmt: skip


def case_offset_unaligned(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 512, PAGE), (path,), says=(512, PAGE),
        fix=lambda: pset.part_new(src, 0, PAGE), retry_size=PAGE,
    )  # fmt: skip


def case_byte_on_regular_file(env: Env) -> Case:
    pset = env.make_set(Granularity.BYTE)
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, PAGE), (path,), says=("BYTE", "PAGE"),
        fix=lambda: env.space.set_device_granularity(path, Granularity.BYTE),
        retry_size=PAGE, retry_granularity=Granularity.BYTE,
    )  # fmt: skip


def case_map_file_fault(env: Env) -> Case:
    plan = FaultPlan().fail("map.file", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), (path,), says=("map.file",), site="map.file",
        retry_size=2 * PAGE,
    )  # fmt: skip


def case_map_file_fault_while_coalescing(env: Env) -> Case:
    """The anchor's reservation was extended (step 6) before step 8 failed: it must shrink back."""
    plan = FaultPlan().fail("map.file", at=2)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    d = _first_map(pset, src, 0, 2 * PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    return Case(
        pset, pset.part_new(src, 2 * PAGE, PAGE), (path,), says=("map.file",), site="map.file",
        retry_size=3 * PAGE, retry_addr=d.addr,
    )  # fmt: skip


def case_length_unaligned(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, PAGE + 512), (path,), says=(PAGE + 512, PAGE),
        fix=lambda: pset.part_new(src, 0, PAGE), retry_size=PAGE,
    )  # fmt: skip


def case_length_unaligned_whole_source(env: Env) -> Case:
    """length 0 = the whole source (step 1): a 5000-byte file is not page aligned."""
    pset = env.make_set()
    path = env.make_file(5000)
    src = Source.from_file(path)
    return Case(
        pset, pset.part_new(src, 0, 0), (path,), says=(5000, PAGE),
        fix=lambda: os.truncate(path, 2 * PAGE), retry_size=2 * PAGE,
    )  # fmt: skip


def case_coalesce_occupied(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source()
    d = _first_map(pset, src, 0, 2 * PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    env.space.occupy(d.end, PAGE)
    return Case(
        pset, pset.part_new(src, 2 * PAGE, 2 * PAGE), (path,), says=(d.end,),
        fix=lambda: env.space.free(d.end), retry_size=4 * PAGE, retry_addr=d.addr,
    )  # fmt: skip


def case_coalesce_occupied_further_on(env: Env) -> Case:
    """Only the second page after the anchor is taken: no half-grown part map."""
    pset = env.make_set()
    path, src = env.source()
    d = _first_map(pset, src, 0, 2 * PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    env.space.occupy(d.end + PAGE, PAGE)
    return Case(
        pset, pset.part_new(src, 2 * PAGE, 2 * PAGE), (path,), says=(d.end,),
        fix=lambda: env.space.free(d.end + PAGE), retry_size=4 * PAGE, retry_addr=d.addr,
    )  # fmt: skip


def case_coalesce_reservation_end(env: Env) -> Case:
    rsv = env.space.reserve(2 * PAGE)
    pset = env.make_set(reservation=rsv)
    path, src = env.source()
    _first_map(pset, src, 0, 2 * PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    return Case(
        pset, pset.part_new(src, 2 * PAGE, PAGE), (path,), says=(rsv.end,),
        fix=lambda: _remove_first(pset), retry_size=PAGE, retry_addr=rsv.addr,
    )  # fmt: skip


def case_coalesce_reservation_partly_free(env: Env) -> Case:
    """One page left in the reservation, two wanted: FULL refuses rather than grow by half."""
    rsv = env.space.reserve(3 * PAGE)
    pset = env.make_set(reservation=rsv)
    path, src = env.source()
    _first_map(pset, src, 0, 2 * PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    return Case(
        pset, pset.part_new(src, 2 * PAGE, 2 * PAGE), (path,), says=(rsv.addr + 2 * PAGE,),
        fix=lambda: pset.part_new(src, 2 * PAGE, PAGE), retry_size=3 * PAGE, retry_addr=rsv.addr,
    )  # fmt: skip


def case_truncate_enospc(env: Env) -> Case:
    plan = FaultPlan().fail("file.truncate", at=1, errno=errno.ENOSPC)
    pset = env.make_set(plan=plan)
    path, src = env.source(pages=1, flags=SourceFlags.TRUNCATE_IF_NEEDED)
    return Case(
        pset, pset.part_new(src, 0, 4 * PAGE), (path,), says=(PAGE, 4 * PAGE),
        site="file.truncate", errno=errno.ENOSPC, retry_size=4 * PAGE,
    )  # fmt: skip


def case_truncate_temporary_eio(env: Env) -> Case:
    plan = FaultPlan().fail("file.truncate", at=1, errno=errno.EIO)
    pset = env.make_set(plan=plan)
    src = Source.from_temporary(env.tmp_path)
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), sources=(src,), says=(2 * PAGE,),
        site="file.truncate", errno=errno.EIO, retry_size=2 * PAGE,
    )  # fmt: skip


def case_truncate_too_large(env: Env) -> Case:
    """offset + length = 2**63: no file can have that size (off_t is signed 64-bit)."""
    pset = env.make_set()
    path, src = env.source(pages=1, flags=SourceFlags.TRUNCATE_IF_NEEDED)
    return Case(
        pset, pset.part_new(src, 0, 1 << 63), (path,), says=(1 << 63,),
        fix=lambda: pset.part_new(src, 0, 2 * PAGE), retry_size=2 * PAGE,
    )  # fmt: skip


def case_enomem_vm_reserve(env: Env) -> Case:
    plan = FaultPlan().fail("vm.reserve", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), (path,), says=(2 * PAGE, "vm.reserve"),
        site="vm.reserve", retry_size=2 * PAGE,
    )  # fmt: skip


def case_enomem_alloc_part_map(env: Env) -> Case:
    """Step 7 fails after step 6 made a reservation: it must be released again."""
    plan = FaultPlan().fail("alloc.part_map", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), (path,), says=("alloc.part_map",),
        site="alloc.part_map", retry_size=2 * PAGE,
    )  # fmt: skip


def case_enomem_space_full(env: Env) -> Case:
    pset = env.make_set()
    path, src = env.source()
    low = env.space.low
    env.space.occupy(low, env.space.high - low)
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), (path,), says=(2 * PAGE,),
        fix=lambda: env.space.free(low), retry_size=2 * PAGE, retry_addr=low,
    )  # fmt: skip


def case_cannot_fit(env: Env) -> Case:
    rsv = env.space.reserve(2 * PAGE)
    pset = env.make_set(reservation=rsv)
    path, src = env.source()
    _first_map(pset, src, 0, 2 * PAGE)
    return Case(
        pset, pset.part_new(src, 2 * PAGE, PAGE), (path,), says=(PAGE, 2 * PAGE),
        fix=lambda: _remove_first(pset), retry_size=PAGE, retry_addr=rsv.addr,
    )  # fmt: skip


def case_cannot_fit_fragmented(env: Env) -> Case:
    """Two free pages in the reservation, but not next to each other."""
    rsv = env.space.reserve(3 * PAGE)
    pset = env.make_set(reservation=rsv)
    path, src = env.source()
    for i in range(3):
        _first_map(pset, src, i * PAGE, PAGE)
    pset.remove_range(rsv.addr + PAGE, PAGE)
    return Case(
        pset, pset.part_new(src, 0, 2 * PAGE), (path,), says=(2 * PAGE, 3 * PAGE),
        fix=lambda: pset.remove_range(rsv.addr + 2 * PAGE, PAGE),
        retry_size=2 * PAGE, retry_addr=rsv.addr + PAGE,
    )  # fmt: skip


def case_cannot_fit_opportunistic(env: Env) -> Case:
    """OPPORTUNISTIC cannot coalesce, falls through to NONE, and NONE finds no room."""
    rsv = env.space.reserve(2 * PAGE)
    pset = env.make_set(reservation=rsv)
    path, src = env.source()
    _first_map(pset, src, 0, 2 * PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
    return Case(
        pset, pset.part_new(src, 0, PAGE), (path,), says=(PAGE, 2 * PAGE),
        fix=lambda: _remove_first(pset), retry_size=PAGE, retry_addr=rsv.addr,
    )  # fmt: skip


def case_mismatch_cache_line_after_page(env: Env) -> Case:
    """§4 steps 8-9: required PAGE admits a CACHE_LINE file, but the set already holds PAGE."""
    pset = env.make_set(Granularity.PAGE)
    path_a, src_a = env.source()
    path_b, src_b = env.source()
    env.space.set_device_granularity(path_b, Granularity.CACHE_LINE)
    _first_map(pset, src_a, 0, PAGE)
    return Case(
        pset, pset.part_new(src_b, 0, PAGE), (path_a, path_b), says=("PAGE", "CACHE_LINE"),
        fix=lambda: _remove_first(pset), retry_size=PAGE, retry_granularity=Granularity.CACHE_LINE,
    )  # fmt: skip


def case_mismatch_page_after_cache_line(env: Env) -> Case:
    pset = env.make_set(Granularity.PAGE)
    path_a, src_a = env.source()
    path_b, src_b = env.source()
    env.space.set_device_granularity(path_a, Granularity.CACHE_LINE)
    _first_map(pset, src_a, 0, PAGE)
    return Case(
        pset, pset.part_new(src_b, 0, PAGE), (path_a, path_b), says=("PAGE", "CACHE_LINE"),
        fix=lambda: env.space.set_device_granularity(path_b, Granularity.CACHE_LINE),
        retry_size=PAGE, retry_granularity=Granularity.CACHE_LINE,
    )  # fmt: skip


def case_mismatch_while_coalescing(env: Env) -> Case:
    """Step 9 fails after step 6 grew the anchor's reservation and step 8 mapped: all undone."""
    pset = env.make_set(Granularity.PAGE)
    path_a, src_a = env.source()
    path_b, src_b = env.source()
    env.space.set_device_granularity(path_b, Granularity.CACHE_LINE)
    d = _first_map(pset, src_a, 0, PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    return Case(
        pset, pset.part_new(src_b, 0, 2 * PAGE), (path_a, path_b), says=("PAGE", "CACHE_LINE"),
        fix=lambda: env.space.set_device_granularity(path_b, Granularity.PAGE),
        retry_size=3 * PAGE, retry_addr=d.addr, retry_granularity=Granularity.PAGE,
    )  # fmt: skip


CASES: list[tuple[str, ErrorCode, Callable[[Env], Case]]] = [
    ("alloc.config", ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE, case_alloc_config),
    ("offset>INT64_MAX", ErrorCode.INVALID_OFFSET_VALUE, case_offset_over_int64),
    ("offset~SIZE_MAX", ErrorCode.INVALID_OFFSET_VALUE, case_offset_near_size_max),
    ("granularity-not-offered", ErrorCode.GRANULARITY_NOT_SUPPORTED, case_granularity_not_offered),
    ("config.granularity", ErrorCode.GRANULARITY_NOT_SUPPORTED, case_granularity_fault),
    ("file-too-short", ErrorCode.INVALID_PMEM2_MAP, case_file_too_short),
    ("offset-unaligned", ErrorCode.INVALID_PMEM2_MAP, case_offset_unaligned),
    ("BYTE-on-regular-file", ErrorCode.INVALID_PMEM2_MAP, case_byte_on_regular_file),
    ("map.file", ErrorCode.INVALID_PMEM2_MAP, case_map_file_fault),
    ("map.file-coalescing", ErrorCode.INVALID_PMEM2_MAP, case_map_file_fault_while_coalescing),
    ("length-unaligned", ErrorCode.LENGTH_UNALIGNED, case_length_unaligned),
    ("whole-source-unaligned", ErrorCode.LENGTH_UNALIGNED, case_length_unaligned_whole_source),
    ("coalesce-occupied", ErrorCode.CANNOT_COALESCE_PARTS, case_coalesce_occupied),
    ("coalesce-occupied-2nd-page", ErrorCode.CANNOT_COALESCE_PARTS, case_coalesce_occupied_further_on),
    ("coalesce-reservation-end", ErrorCode.CANNOT_COALESCE_PARTS, case_coalesce_reservation_end),
    ("coalesce-reservation-half", ErrorCode.CANNOT_COALESCE_PARTS, case_coalesce_reservation_partly_free),
    ("file.truncate-ENOSPC", ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, case_truncate_enospc),
    ("file.truncate-temporary", ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, case_truncate_temporary_eio),
    ("truncate-too-large", ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, case_truncate_too_large),
    ("vm.reserve", ErrorCode.ENOMEM, case_enomem_vm_reserve),
    ("alloc.part_map", ErrorCode.ENOMEM, case_enomem_alloc_part_map),
    ("space-full", ErrorCode.ENOMEM, case_enomem_space_full),
    ("reservation-full", ErrorCode.CANNOT_FIT_PART_MAP, case_cannot_fit),
    ("reservation-fragmented", ErrorCode.CANNOT_FIT_PART_MAP, case_cannot_fit_fragmented),
    ("opportunistic-no-room", ErrorCode.CANNOT_FIT_PART_MAP, case_cannot_fit_opportunistic),
    ("CACHE_LINE-after-PAGE", ErrorCode.GRANULARITY_MISMATCH, case_mismatch_cache_line_after_page),
    ("PAGE-after-CACHE_LINE", ErrorCode.GRANULARITY_MISMATCH, case_mismatch_page_after_cache_line),
    ("mismatch-coalescing", ErrorCode.GRANULARITY_MISMATCH, case_mismatch_while_coalescing),
]


def test_every_documented_part_map_error_has_a_case():
    """The newer man page's ERRORS list, plus GRANULARITY_MISMATCH (part_map step 9)."""
    documented = {
        ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE,
        ErrorCode.INVALID_OFFSET_VALUE,
        ErrorCode.GRANULARITY_NOT_SUPPORTED,
        ErrorCode.INVALID_PMEM2_MAP,
        ErrorCode.LENGTH_UNALIGNED,
        ErrorCode.CANNOT_COALESCE_PARTS,
        ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE,
        ErrorCode.ENOMEM,
        ErrorCode.CANNOT_FIT_PART_MAP,
        ErrorCode.GRANULARITY_MISMATCH,
    }
    assert {code for _id, code, _b in CASES} == documented


@dataclass
class Outcome:
    code: int  # 0 on success
    message: str = ""
    desc: PartDescriptor | None = None
    exc: PmemsetError | None = None  # the exception (Python API only)


def _map_via(api: str, part: Part) -> Outcome:
    """Run part_map through the Python API or the C-shaped facade."""
    if api == "py":
        try:
            d = part.pset.part_map(part)
        except PmemsetError as exc:
            return Outcome(exc.code, exc.message, None, exc)
        return Outcome(0, desc=d)
    ref = c.Ref(part)
    desc: c.Ref[PartDescriptor] = c.Ref()
    rc = c.pmemset_part_map(ref, None, desc)
    if rc:
        assert ref.value is part, "a failed pmemset_part_map must leave *part_ptr alone"
        assert desc.value is None, "a failed pmemset_part_map must not fill the descriptor"
        return Outcome(rc, c.pmemset_errormsg())
    assert ref.value is None, "a successful pmemset_part_map sets *part_ptr to NULL"
    return Outcome(0, desc=desc.value)


@pytest.mark.parametrize("api", ["py", "capi"])
@pytest.mark.parametrize(
    ("expected", "build"), [(code, b) for _i, code, b in CASES], ids=[i for i, *_ in CASES]
)
def test_part_map_error(env: Env, api: str, expected: ErrorCode, build: Callable[[Env], Case]):
    case = build(env)
    pset, part = case.pset, case.part
    plan = pset.fault_plan
    fired_before = list(plan.fired)
    before = snapshot(pset, *case.paths, part=part, sources=case.sources)
    n_events = len(env.events)

    out = _map_via(api, part)
    message = out.message

    # the exact error
    assert out.desc is None and out.code != 0, f"part_map succeeded; expected {expected.name}"
    assert_code(out.code, expected)
    if out.exc is not None:
        assert out.exc.name == c_name(expected)
        assert message in str(out.exc)
        if case.errno is not None:
            assert out.exc.errno == case.errno
    assert pmemsim.errors.last_error_message().startswith(c_name(expected))
    for item in case.says:
        assert mentions(message, item), f"message {message!r} does not name {item!r}"
    if case.errno is not None:
        assert errno.errorcode[case.errno] in message or os.strerror(case.errno) in message

    # nothing changed
    assert snapshot(pset, *case.paths, part=part, sources=case.sources) == before
    assert not part.consumed and not part.deleted
    assert not [e for e in env.events[n_events:] if isinstance(e, PartAddEvent)]

    # the fault plan tells what fired (and nothing fires without a plan for it)
    new = plan.fired[len(fired_before) :]
    if case.site is None:
        assert new == []
    else:
        assert new, "the planned fault did not fire"
        assert {f.site for f in new} == {FaultSite(case.site)}
        assert all(f.code == expected for f in new)
        if case.errno is not None:
            assert all(f.errno == case.errno for f in new)
        assert plan.fired_sites()[-1] == case.site

    # once the cause is gone, the part (or its replacement) maps
    replacement = case.fix()
    retry = part if replacement is None else replacement
    fired_now = len(plan.fired)
    again = _map_via(api, retry)
    assert again.code == 0, f"retry failed: {again.message}"
    d = again.desc
    assert d is not None
    assert retry.consumed
    assert len(plan.fired) == fired_now, "an at=1 fault fired again on the retry"
    assert d in pset.descriptors()
    if case.retry_size is not None:
        assert d.size == case.retry_size
    if case.retry_addr is not None:
        assert d.addr == case.retry_addr
    if case.retry_granularity is not None:
        assert pset.get_store_granularity() == case.retry_granularity
    last = env.events[-1]
    assert isinstance(last, PartAddEvent) and (last.addr, last.len) == (d.addr, d.size)
    pset.memcpy(d.end - 5, b"again")
    assert pset.read(d.end - 5, 5) == b"again"


# -- ordering: the first failing step wins, and nothing reaches a later step ---------------------------


@dataclass
class Race:
    pset: PmemSet
    part: Part
    paths: tuple[str, ...] = ()
    unreached: tuple[str, ...] = ()  # fault sites a later step would have hit


def race_truncate_before_alloc_config(env: Env) -> Race:
    plan = FaultPlan().fail("file.truncate", at=1).fail("alloc.config", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source(pages=1, flags=SourceFlags.TRUNCATE_IF_NEEDED)
    return Race(pset, pset.part_new(src, 0, 2 * PAGE), (path,), unreached=("alloc.config",))


def race_truncate_before_offset_check(env: Env) -> Race:
    """offset > INT64_MAX on a growing source: step 2 must grow the file first, and cannot."""
    pset = env.make_set()
    path, src = env.source(pages=1, flags=SourceFlags.TRUNCATE_IF_NEEDED)
    return Race(pset, pset.part_new(src, INT64_MAX + 1, PAGE), (path,), unreached=("alloc.config",))


def race_alloc_config_before_offset(env: Env) -> Race:
    plan = FaultPlan().fail("alloc.config", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Race(pset, pset.part_new(src, INT64_MAX + 1, PAGE), (path,), unreached=("config.granularity",))


def race_offset_before_granularity(env: Env) -> Race:
    plan = FaultPlan().fail("config.granularity", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Race(pset, pset.part_new(src, INT64_MAX + 1, PAGE), (path,), unreached=("config.granularity",))


def race_granularity_before_length(env: Env) -> Race:
    pset = env.make_set(Granularity.PAGE)
    path, src = env.source()
    env.space.supported_granularities = frozenset({Granularity.BYTE})
    return Race(pset, pset.part_new(src, 0, PAGE + 1), (path,), unreached=("vm.reserve",))


def race_granularity_fault_before_coalescing(env: Env) -> Race:
    plan = FaultPlan().fail("config.granularity", at=2)  # the first map passes hit 1
    pset = env.make_set(plan=plan)
    path, src = env.source()
    d = _first_map(pset, src, 0, PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    env.space.occupy(d.end, PAGE)
    return Race(pset, pset.part_new(src, PAGE, PAGE), (path,), unreached=("alloc.part_map", "map.file"))


def race_length_before_map(env: Env) -> Race:
    pset = env.make_set()
    path, src = env.source()
    return Race(pset, pset.part_new(src, 512, PAGE + 512), (path,), unreached=("vm.reserve", "map.file"))


def race_coalesce_before_alloc_part_map(env: Env) -> Race:
    plan = FaultPlan().fail("alloc.part_map", at=2)  # the first map passes hit 1
    pset = env.make_set(plan=plan)
    path, src = env.source()
    d = _first_map(pset, src, 0, PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    env.space.occupy(d.end, PAGE)
    return Race(pset, pset.part_new(src, PAGE, PAGE), (path,), unreached=("alloc.part_map", "map.file"))


def race_cannot_fit_before_alloc_part_map(env: Env) -> Race:
    rsv = env.space.reserve(PAGE)
    plan = FaultPlan().fail("alloc.part_map", at=2)
    pset = env.make_set(reservation=rsv, plan=plan)
    path, src = env.source()
    _first_map(pset, src, 0, PAGE)
    return Race(pset, pset.part_new(src, PAGE, PAGE), (path,), unreached=("map.file",))


def race_vm_reserve_before_alloc_part_map(env: Env) -> Race:
    plan = FaultPlan().fail("vm.reserve", at=1).fail("alloc.part_map", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    return Race(pset, pset.part_new(src, 0, PAGE), (path,), unreached=("alloc.part_map", "map.file"))


def race_alloc_part_map_before_map(env: Env) -> Race:
    plan = FaultPlan().fail("alloc.part_map", at=1)
    pset = env.make_set(plan=plan)
    path, src = env.source(pages=1)
    return Race(pset, pset.part_new(src, 0, 2 * PAGE), (path,), unreached=("map.file",))


def race_map_before_mismatch(env: Env) -> Race:
    """The file is too short *and* would mismatch: step 8 speaks first."""
    pset = env.make_set()
    path_a, src_a = env.source()
    path_b, src_b = env.source(pages=1)
    env.space.set_device_granularity(path_b, Granularity.CACHE_LINE)
    _first_map(pset, src_a, 0, PAGE)
    return Race(pset, pset.part_new(src_b, 0, 2 * PAGE), (path_a, path_b))


RACES: list[tuple[str, ErrorCode, Callable[[Env], Race]]] = [
    ("2-truncate<3-alloc.config", ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, race_truncate_before_alloc_config),
    ("2-truncate<4-offset", ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, race_truncate_before_offset_check),
    (
        "3-alloc.config<4-offset",
        ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE,
        race_alloc_config_before_offset,
    ),
    ("4-offset<5-granularity", ErrorCode.INVALID_OFFSET_VALUE, race_offset_before_granularity),
    ("5-granularity<6-length", ErrorCode.GRANULARITY_NOT_SUPPORTED, race_granularity_before_length),
    (
        "5-granularity<6-coalesce",
        ErrorCode.GRANULARITY_NOT_SUPPORTED,
        race_granularity_fault_before_coalescing,
    ),
    ("6-length<8-offset-alignment", ErrorCode.LENGTH_UNALIGNED, race_length_before_map),
    ("6-coalesce<7-alloc", ErrorCode.CANNOT_COALESCE_PARTS, race_coalesce_before_alloc_part_map),
    ("6-fit<7-alloc", ErrorCode.CANNOT_FIT_PART_MAP, race_cannot_fit_before_alloc_part_map),
    ("6-vm.reserve<7-alloc", ErrorCode.ENOMEM, race_vm_reserve_before_alloc_part_map),
    ("7-alloc<8-map", ErrorCode.ENOMEM, race_alloc_part_map_before_map),
    ("8-map<9-mismatch", ErrorCode.INVALID_PMEM2_MAP, race_map_before_mismatch),
]


@pytest.mark.parametrize(
    ("expected", "build"), [(code, b) for _i, code, b in RACES], ids=[i for i, *_ in RACES]
)
def test_first_failing_step_wins(env: Env, expected: ErrorCode, build: Callable[[Env], Race]):
    race = build(env)
    plan = race.pset.fault_plan
    before = snapshot(race.pset, *race.paths, part=race.part)
    hits_before = dict(plan.hits)
    with pytest.raises(PmemsetError) as info:
        race.pset.part_map(race.part)
    assert_code(info.value.code, expected)
    for site in race.unreached:
        assert plan.hits.get(FaultSite(site), 0) == hits_before.get(FaultSite(site), 0), (
            f"{site} was reached although an earlier step failed"
        )
    assert snapshot(race.pset, *race.paths, part=race.part) == before
    assert not race.part.consumed


# -- undo: what step 2 did is taken back whatever fails later ---------------------------------------------

LATER_FAILURES = [
    "alloc.config",
    "length-unaligned",
    "granularity-not-offered",
    "config.granularity",
    "coalesce-occupied",
    "cannot-fit",
    "vm.reserve",
    "alloc.part_map",
    "map.file",
    "mismatch",
]


@pytest.mark.parametrize("grows", ["TRUNCATE_IF_NEEDED", "temporary"])
@pytest.mark.parametrize("later", LATER_FAILURES)
def test_truncation_is_undone_when_a_later_step_fails(env: Env, later: str, grows: str):
    """The file grew in step 2; when any later step fails its size is back to what it was."""
    plan = FaultPlan()
    rsv = env.space.reserve(2 * PAGE) if later == "cannot-fit" else None
    pset = env.make_set(reservation=rsv, plan=plan)
    anchor_path, anchor_src = env.source()
    if grows == "temporary":
        src = Source.from_temporary(env.tmp_path)  # starts empty
        paths: tuple[str, ...] = ()
        sources: tuple[Source, ...] = (src,)
    else:
        path, src = env.source(pages=1, flags=SourceFlags.TRUNCATE_IF_NEEDED)
        paths, sources = (path,), ()
    length = 3 * PAGE
    expected = {
        "alloc.config": ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE,
        "length-unaligned": ErrorCode.LENGTH_UNALIGNED,
        "granularity-not-offered": ErrorCode.GRANULARITY_NOT_SUPPORTED,
        "config.granularity": ErrorCode.GRANULARITY_NOT_SUPPORTED,
        "coalesce-occupied": ErrorCode.CANNOT_COALESCE_PARTS,
        "cannot-fit": ErrorCode.CANNOT_FIT_PART_MAP,
        "vm.reserve": ErrorCode.ENOMEM,
        "alloc.part_map": ErrorCode.ENOMEM,
        "map.file": ErrorCode.INVALID_PMEM2_MAP,
        "mismatch": ErrorCode.GRANULARITY_MISMATCH,
    }[later]
    if later in ("alloc.config", "config.granularity", "vm.reserve", "alloc.part_map", "map.file"):
        plan.fail(later, at=1)
    elif later == "length-unaligned":
        length = 3 * PAGE + 100
    elif later == "granularity-not-offered":
        env.space.supported_granularities = frozenset({Granularity.CACHE_LINE})
    elif later == "coalesce-occupied":
        d = _first_map(pset, anchor_src, 0, PAGE)
        pset.set_contiguous_part_coalescing(Coalescing.FULL)
        env.space.occupy(d.end, PAGE)
    elif later == "cannot-fit":
        _first_map(pset, anchor_src, 0, 2 * PAGE)
    elif later == "mismatch":
        env.space.set_device_granularity(anchor_path, Granularity.CACHE_LINE)
        _first_map(pset, anchor_src, 0, PAGE)
    part = pset.part_new(src, PAGE, length)  # wants the file to be 4 pages (plus) long
    before = snapshot(pset, *paths, part=part, sources=sources)
    original = src.size()
    assert original < PAGE + length
    with pytest.raises(PmemsetError) as info:
        pset.part_map(part)
    assert_code(info.value.code, expected)
    assert plan.hits.get(FaultSite.FILE_TRUNCATE, 0) == 1, "step 2 did not run before the failing step"
    assert src.size() == original, "the file was left grown"
    assert snapshot(pset, *paths, part=part, sources=sources) == before


# -- fault plans: what fired, and at which hit ----------------------------------------------------------


def test_fault_at_second_hit_fails_only_that_call(env: Env):
    plan = FaultPlan().fail("map.file", at=2)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    d1 = pset.part_map(pset.part_new(src, 0, PAGE))
    part = pset.part_new(src, PAGE, PAGE)
    before = snapshot(pset, path, part=part)
    with pytest.raises(PmemsetError) as info:
        pset.part_map(part)
    assert_code(info.value.code, ErrorCode.INVALID_PMEM2_MAP)
    assert [(f.site, f.hit) for f in plan.fired] == [(FaultSite.MAP_FILE, 2)]
    assert snapshot(pset, path, part=part) == before
    d2 = pset.part_map(part)
    assert pset.descriptors() == sorted([d1, d2], key=lambda d: d.addr)
    assert plan.hits[FaultSite.MAP_FILE] == 3
    assert len(plan.fired) == 1


def test_fault_every_hit_fails_each_retry_and_records_each(env: Env):
    plan = FaultPlan().fail("vm.reserve", every=True)
    pset = env.make_set(plan=plan)
    path, src = env.source()
    part = pset.part_new(src, 0, PAGE)
    before = snapshot(pset, path, part=part)
    for _ in range(3):
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part)
        assert_code(info.value.code, ErrorCode.ENOMEM)
        assert snapshot(pset, path, part=part) == before
    assert [(f.site, f.hit, f.code) for f in plan.fired] == [
        (FaultSite.VM_RESERVE, n, ErrorCode.ENOMEM) for n in (1, 2, 3)
    ]
    assert plan.fired_sites() == ["vm.reserve"] * 3


def test_fault_plan_given_through_capi_config(env: Env, space):
    """pmemset_config_set_fault_plan (an extension) arms the same sites."""
    plan = FaultPlan().fail("alloc.config", at=1)
    cfg: c.Ref[Config] = c.Ref()
    assert c.pmemset_config_new(cfg) == 0
    assert c.pmemset_config_set_required_store_granularity(cfg.value, c.PMEM2_GRANULARITY_PAGE) == 0
    assert c.pmemset_config_set_address_space(cfg.value, space) == 0
    assert c.pmemset_config_set_fault_plan(cfg.value, plan) == 0
    s: c.Ref[PmemSet] = c.Ref()
    assert c.pmemset_new(s, cfg.value) == 0
    path = env.make_file(2 * PAGE)
    src: c.Ref[Source] = c.Ref()
    assert c.pmemset_source_from_file(src, path) == 0
    part: c.Ref[Part] = c.Ref()
    assert c.pmemset_part_new(part, s.value, src.value, 0, 0) == 0
    desc: c.Ref[PartDescriptor] = c.Ref()
    assert c.pmemset_part_map(part, None, desc) == c.PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE
    assert c.PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE == -200005
    assert part.value is not None and desc.value is None
    assert plan.fired_sites() == ["alloc.config"]
    assert c.pmemset_part_map(part, None, desc) == 0
    assert part.value is None and desc.value is not None and desc.value.size == 2 * PAGE
    assert c.pmemset_delete(s) == 0
    assert c.pmemset_source_delete(src) == 0


# -- boundaries the cases above lean on ----------------------------------------------------------------


def test_offset_int64_max_itself_passes_step_4(env: Env):
    """INT64_MAX is not *bigger* than INT64_MAX: step 4 lets it through and step 8 refuses
    it (not page aligned)."""
    pset = env.make_set()
    path, src = env.source()
    part = pset.part_new(src, INT64_MAX, PAGE)
    before = snapshot(pset, path, part=part)
    with pytest.raises(PmemsetError) as info:
        pset.part_map(part)
    assert_code(info.value.code, ErrorCode.INVALID_PMEM2_MAP)
    assert snapshot(pset, path, part=part) == before


def test_coalescing_failure_keeps_anchor_and_mode(env: Env):
    """After CANNOT_COALESCE_PARTS the anchor is the same part map and a NONE map still works."""
    pset = env.make_set()
    _path, src = env.source()
    d1 = _first_map(pset, src, 0, PAGE)
    d2 = _first_map(pset, src, PAGE, PAGE)
    assert pset.coalescing_anchor == d2
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    occ = env.space.occupy(d2.end, PAGE)
    part = pset.part_new(src, 2 * PAGE, PAGE)
    with pytest.raises(PmemsetError) as info:
        pset.part_map(part)
    assert_code(info.value.code, ErrorCode.CANNOT_COALESCE_PARTS)
    assert pset.coalescing_anchor == d2 and pset.coalescing is Coalescing.FULL
    pset.set_contiguous_part_coalescing(Coalescing.NONE)
    d3 = pset.part_map(part)
    assert d3.addr >= occ.addr + occ.size and d3.size == PAGE
    assert pset.descriptors() == [d1, d2, d3]
    assert pset.coalescing_anchor == d3


def test_opportunistic_falls_through_where_full_refuses(env: Env):
    pset = env.make_set()
    _path, src = env.source()
    d = _first_map(pset, src, 0, PAGE)
    env.space.occupy(d.end, PAGE)
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    part = pset.part_new(src, PAGE, PAGE)
    with pytest.raises(PmemsetError) as info:
        pset.part_map(part)
    assert_code(info.value.code, ErrorCode.CANNOT_COALESCE_PARTS)
    pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
    d2 = pset.part_map(part)
    assert d2.size == PAGE and d2.addr != d.end
    assert pset.descriptors() == [d, d2]


# == Simulator-specific: these build their own SimulatedAddressSpace =====================================
#
# They are about the simulator's knobs (``high``, ``limit``, ``page_size``, the
# ``supported_granularities`` argument), so they do not run on other backends.

SIM_LOW = 1 << 32


def _sim_set(space: pmemsim.SimulatedAddressSpace, granularity: Granularity = Granularity.PAGE) -> PmemSet:
    return PmemSet(Config(granularity, address_space=space))


def test_sim_enomem_when_high_is_reached(make_file):
    space = pmemsim.SimulatedAddressSpace(low=SIM_LOW, high=SIM_LOW + 4 * PAGE)
    path = make_file(8 * PAGE)
    with _sim_set(space) as pset, Source.from_file(path) as src:
        for i in range(4):
            _first_map(pset, src, i * PAGE, PAGE)
        part = pset.part_new(src, 4 * PAGE, PAGE)
        before = snapshot(pset, path, part=part)
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part)
        assert_code(info.value.code, ErrorCode.ENOMEM)
        assert info.value.name == "ENOMEM"
        assert mentions(info.value.message, PAGE)
        assert snapshot(pset, path, part=part) == before
        pset.remove_range(SIM_LOW + 2 * PAGE, PAGE)
        d = pset.part_map(part)
        assert d == PartDescriptor(SIM_LOW + 2 * PAGE, PAGE)
        space._check()


def test_sim_enomem_when_limit_is_reached(make_file):
    space = pmemsim.SimulatedAddressSpace(limit=2 * PAGE)
    path = make_file(8 * PAGE)
    with _sim_set(space) as pset, Source.from_file(path) as src:
        _first_map(pset, src, 0, 2 * PAGE)
        part = pset.part_new(src, 2 * PAGE, PAGE)
        before = snapshot(pset, path, part=part)
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part)
        assert_code(info.value.code, ErrorCode.ENOMEM)
        assert snapshot(pset, path, part=part) == before
        space.limit = None
        assert pset.part_map(part).size == PAGE


def test_sim_enomem_opportunistic_with_limit_reached(make_file):
    """Coalescing needs more address space too; OPPORTUNISTIC then has nowhere to fall back to."""
    space = pmemsim.SimulatedAddressSpace(limit=2 * PAGE)
    path = make_file(8 * PAGE)
    with _sim_set(space) as pset, Source.from_file(path) as src:
        d = _first_map(pset, src, 0, 2 * PAGE)
        pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
        part = pset.part_new(src, 2 * PAGE, PAGE)
        before = snapshot(pset, path, part=part)
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part)
        assert_code(info.value.code, ErrorCode.ENOMEM)
        assert snapshot(pset, path, part=part) == before
        space.limit = 3 * PAGE
        assert pset.part_map(part) == PartDescriptor(d.addr, 3 * PAGE)


def test_sim_supported_granularities_argument(make_file):
    space = pmemsim.SimulatedAddressSpace(supported_granularities=frozenset({Granularity.PAGE}))
    path = make_file(2 * PAGE)
    space.set_device_granularity(path, Granularity.CACHE_LINE)
    with _sim_set(space, Granularity.CACHE_LINE) as pset, Source.from_file(path) as src:
        part = pset.part_new(src, 0, PAGE)
        before = snapshot(pset, path, part=part)
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part)
        assert_code(info.value.code, ErrorCode.GRANULARITY_NOT_SUPPORTED)
        assert mentions(info.value.message, "CACHE_LINE")
        assert snapshot(pset, path, part=part) == before
        space.supported_granularities = frozenset(Granularity)
        pset.part_map(part)
        assert pset.get_store_granularity() is Granularity.CACHE_LINE


def test_sim_large_page_size_sets_the_alignment(make_file):
    """The page size is the allocation granularity of both lengths and offsets."""
    big = 64 * 1024
    space = pmemsim.SimulatedAddressSpace(page_size=big)
    path = make_file(4 * big)
    with _sim_set(space) as pset, Source.from_file(path) as src:
        part = pset.part_new(src, 0, PAGE)
        before = snapshot(pset, path, part=part)
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part)
        assert_code(info.value.code, ErrorCode.LENGTH_UNALIGNED)
        assert mentions(info.value.message, PAGE) and mentions(info.value.message, big)
        assert snapshot(pset, path, part=part) == before
        part2 = pset.part_new(src, PAGE, big)
        with pytest.raises(PmemsetError) as info:
            pset.part_map(part2)
        assert_code(info.value.code, ErrorCode.INVALID_PMEM2_MAP)
        assert mentions(info.value.message, PAGE) and mentions(info.value.message, big)
        assert snapshot(pset, path, part=part) == before
        assert pset.part_map(pset.part_new(src, big, big)).size == big
