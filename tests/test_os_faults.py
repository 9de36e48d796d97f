"""The k-th system call of each kind fails, on the mmap backend (issue 14, point 2).

A representative workload (sources of every kind, coalesced part maps, a growing
temporary-style file, a borrowed descriptor, memory operations of every flavour while
recording, removals that split a kernel VMA and span part maps, close) runs once to
count its system calls, then once per (kind, k) with that call failing. After every
step: the set and the space are consistent with the kernel (``_check``); after every
failed step: it raised a PmemsetError and the layout, the kernel's mappings, the open
descriptors, the files and the recording are exactly as before. The set stays usable:
the workload goes on after each failure.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.sets import PAGE

from pmemsim import (
    Coalescing,
    Config,
    FaultPlan,
    Granularity,
    MemFlags,
    PmemSet,
    PmemsetError,
    Source,
    SourceFlags,
)
from pmemsim.addrspace import MmapAddressSpace
from pmemsim.addrspace.mmap import proc_maps
from pmemsim.faults import OsCall
from pmemsim.persistence.log import StoreLog
from pmemsim.testing.ops import snapshot


@dataclass
class World:
    """What the workload has made so far (a step whose prerequisite failed does nothing)."""

    space: MmapAddressSpace
    pset: PmemSet
    plan: FaultPlan
    paths: dict[str, str]
    borrowed_fd: int
    sources: dict[str, Source] = field(default_factory=dict)
    recording: AbstractContextManager[StoreLog] | None = None
    log: StoreLog | None = None

    def desc(self, i: int) -> Any:
        ds = self.pset.descriptors()
        return ds[i] if len(ds) > i else None


def _src(name: str, make: Callable[[World], Source]) -> Callable[[World], None]:
    def step(w: World) -> None:
        w.sources[name] = make(w)

    return step


def _map(name: str, offset: int, length: int) -> Callable[[World], None]:
    def step(w: World) -> None:
        src = w.sources.get(name)
        if src is not None:
            w.pset.part_map(w.pset.part_new(src, offset, length))

    return step


def _on_first(op: Callable[[PmemSet, int], object]) -> Callable[[World], None]:
    def step(w: World) -> None:
        d = w.desc(0)
        if d is not None:
            op(w.pset, d.addr)

    return step


def _start_recording(w: World) -> None:
    rec = w.pset.record()
    w.log = rec.__enter__()
    w.recording = rec


def _stop_recording(w: World) -> None:
    if w.recording is not None:
        w.recording.__exit__(None, None, None)
        w.recording = None


def _remove_first_piece(w: World) -> None:
    # The coalesced part map of file "a" is one kernel VMA: removing its first part splits it.
    d = w.desc(0)
    if d is not None:
        w.pset.remove_range(d.addr, PAGE)


def _remove_across(w: World) -> None:
    ds = w.pset.descriptors()
    if len(ds) >= 2:
        w.pset.remove_range(ds[0].addr, ds[1].addr - ds[0].addr + 1)


def _remove_first(w: World) -> None:
    pm = w.pset.first_part_map()
    if pm is not None:
        try:
            w.pset.remove_part_map(pm)
        except PmemsetError:
            pm.drop()  # give the reference back, as a caller would: the state is as before
            raise


STEPS: list[tuple[str, Callable[[World], None]]] = [
    ("from_file", _src("a", lambda w: Source.from_file(w.paths["a"], fault_plan=w.plan))),
    (
        "xfrom_file",
        _src(
            "t",
            lambda w: Source.xfrom_file(
                w.paths["t"], SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED, fault_plan=w.plan
            ),
        ),
    ),
    ("from_fd", _src("b", lambda w: Source.from_fd(w.borrowed_fd, fault_plan=w.plan))),
    ("coalescing", lambda w: w.pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)),
    ("map a[0:2]", _map("a", 0, 2 * PAGE)),
    ("map a[2:4] coalesced", _map("a", 2 * PAGE, 2 * PAGE)),
    ("coalescing off", lambda w: w.pset.set_contiguous_part_coalescing(Coalescing.NONE)),
    ("map t (grows the file)", _map("t", 0, 2 * PAGE)),
    ("record", _start_recording),
    ("map b while recording", _map("b", 0, 0)),
    ("memcpy", _on_first(lambda s, a: s.memcpy(a + 8, b"memcpy!"))),
    ("memset nodrain", _on_first(lambda s, a: s.memset(a + PAGE, 0x5A, 100, MemFlags.NODRAIN))),
    ("write", _on_first(lambda s, a: s.write(a + 3 * PAGE, b"plain"))),
    ("flush", _on_first(lambda s, a: s.flush(a + 3 * PAGE, 5))),
    ("drain", lambda w: w.pset.drain()),
    ("persist", _on_first(lambda s, a: s.persist(a, 2 * PAGE))),
    ("memmove", _on_first(lambda s, a: s.memmove(a + 2 * PAGE, a + 8, 7))),
    ("memcpy across part maps", _on_first(lambda s, a: s.memcpy(a + 4 * PAGE - 4, b"12345678"))),
    ("deep_flush", _on_first(lambda s, a: s.deep_flush(a, PAGE))),
    ("map a[4:6] while recording", _map("a", 4 * PAGE, 2 * PAGE)),
    ("remove one piece of a VMA", _remove_first_piece),
    ("remove across part maps", _remove_across),
    ("stop recording", _stop_recording),
    ("remove a part map", _remove_first),
    ("remove another part map", _remove_first),
    ("remove a third part map", _remove_first),
    ("map a again", _map("a", 0, PAGE)),
    ("delete sources", lambda w: [s.delete() for s in w.sources.values()]),
    ("close", lambda w: w.pset.close()),
]


def _state(w: World) -> tuple[object, ...]:
    """Everything a failed call must leave as it was."""
    arena = [
        (v.start, v.end, v.perms, v.offset, v.inode)
        for v in proc_maps()
        if v.end > w.space.low and v.start < w.space.high
    ]
    files = []
    for p in w.paths.values():
        with open(p, "rb") as f:
            files.append(f.read())
    recorded = None if w.log is None else (list(w.log.records), {k: v.size for k, v in w.log.files.items()})
    pset = None if w.pset.closed else snapshot(w.pset, [s for s in w.sources.values() if not s.deleted])
    return (pset, arena, sorted(os.listdir("/proc/self/fd")), files, recorded)


def run_workload(tmp_path: Any, plan: FaultPlan, label: str) -> list[str]:
    """Run every step; return the names of the steps that failed."""
    for name in ("a", "t", "b"):
        p = tmp_path / f"{name}.pmem"
        if p.exists():
            p.unlink()
    (tmp_path / "a.pmem").write_bytes(bytes(range(256)) * (6 * PAGE // 256))
    (tmp_path / "b.pmem").write_bytes(b"b" * 2 * PAGE)
    paths = {n: str(tmp_path / f"{n}.pmem") for n in ("a", "b")}
    borrowed = os.open(paths["b"], os.O_RDWR)
    paths["t"] = str(tmp_path / "t.pmem")
    space = MmapAddressSpace(1 << 30)
    failed: list[str] = []
    try:
        pset = PmemSet(Config(Granularity.PAGE, address_space=space, fault_plan=plan))
        w = World(space, pset, plan, paths, borrowed)
        for name, step in STEPS:
            if not os.path.exists(paths["t"]):
                open(paths["t"], "wb").close()  # so _state can read it before xfrom_file
            before = _state(w)
            try:
                step(w)
            except PmemsetError as exc:
                failed.append(name)
                assert _state(w) == before, f"{label}: failed step {name!r} ({exc}) changed the state"
            except Exception as exc:  # anything else is a bug: say which call and which k
                raise AssertionError(f"{label}: step {name!r} raised {type(exc).__name__}: {exc}") from exc
            if not w.pset.closed:
                w.pset._check()
            space._check()
    finally:
        space.close()
        os.close(borrowed)
    return failed


def test_the_workload_runs_clean_and_reaches_every_kind_of_call(tmp_path):
    plan = FaultPlan()
    fds = sorted(os.listdir("/proc/self/fd"))
    assert run_workload(tmp_path, plan, "no fault") == []
    assert sorted(os.listdir("/proc/self/fd")) == fds
    reached = {c for c in OsCall if plan.hits.get(c, 0)}
    # munmap is only made when a space is created or closed, outside the set's calls.
    assert reached == set(OsCall) - {OsCall.MUNMAP}, reached


def _cases() -> list[tuple[OsCall, int]]:
    """(kind, k) for every k the workload reaches, counted by a run without faults."""
    import tempfile
    from pathlib import Path

    plan = FaultPlan()
    with tempfile.TemporaryDirectory() as d:
        run_workload(Path(d), plan, "count")
    return [(c, k) for c in OsCall for k in range(1, plan.hits.get(c, 0) + 1)]


@pytest.mark.parametrize(("call", "k"), _cases(), ids=lambda v: str(v))
def test_the_kth_system_call_fails_and_nothing_changes(tmp_path, call, k):
    plan = FaultPlan().fail(call, at=k)
    fds = sorted(os.listdir("/proc/self/fd"))
    run_workload(tmp_path, plan, f"{call.value} #{k}")
    assert [f.site for f in plan.fired] == [call], "the planned fault did not fire"
    assert sorted(os.listdir("/proc/self/fd")) == fds, "descriptors leaked"


def test_disk_full_at_the_third_msync_is_one_line_of_a_plan(tmp_path, make_file):
    plan = FaultPlan().fail("os.msync", at=3, errno=errno.ENOSPC)
    with MmapAddressSpace(1 << 30) as space:
        pset = PmemSet(Config(Granularity.PAGE, address_space=space, fault_plan=plan))
        with Source.from_file(make_file(4 * PAGE)) as src:
            d = pset.part_map(pset.part_new(src))
        pset.memcpy(d.addr, b"one")
        pset.memcpy(d.addr, b"two")
        with pytest.raises(PmemsetError) as info:
            pset.memcpy(d.addr, b"six")
        assert info.value.code == -errno.ENOSPC and "os.msync" in str(info.value.__cause__)
        assert pset.read(d.addr, 3) == b"two"  # the failed memcpy put the old bytes back
        pset.memcpy(d.addr, b"ten")
        assert plan.hits[OsCall.MSYNC] == 4
        pset.close()


def test_os_sites_are_refused_with_the_known_names_when_misspelt():
    with pytest.raises(ValueError, match=r"os\.msync"):
        FaultPlan().fail("os.msnyc")
    assert FaultPlan().fail("os.close").hit(OsCall.CLOSE) is not None


def test_a_removal_across_part_maps_that_fails_on_the_second_puts_the_first_back(tmp_path):
    # The kernel refuses the second part map's unmap: the first, already laid back to
    # arena, is mapped again where it was, and the set, the space and the kernel agree.
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.pmem"
        p.write_bytes(bytes([i + 1]) * 2 * PAGE)
        paths.append(str(p))
    plan = FaultPlan()
    with MmapAddressSpace(1 << 30) as space:
        pset = PmemSet(Config(Granularity.PAGE, address_space=space, fault_plan=plan))
        srcs = [Source.from_file(p) for p in paths]
        for s in srcs:
            pset.part_map(pset.part_new(s))
        first, second = pset.descriptors()
        w_state = [
            (v.start, v.end, v.perms, v.offset, v.inode)
            for v in proc_maps()
            if v.end > space.low and v.start < space.high
        ]
        plan.fail(OsCall.MMAP, at=plan.hits.get(OsCall.MMAP, 0) + 2)  # the second run's unmap
        with pytest.raises(PmemsetError) as info:
            pset.remove_range(first.addr, second.end - first.addr)
        assert info.value.errno == errno.ENOMEM and "nothing was removed" in str(info.value)
        assert pset.descriptors() == [first, second]
        after = [
            (v.start, v.end, v.perms, v.offset, v.inode)
            for v in proc_maps()
            if v.end > space.low and v.start < space.high
        ]
        assert after == w_state
        pset._check()
        space._check()
        assert pset.read(first.addr, 2) == b"\x01\x01" and pset.read(second.addr, 2) == b"\x02\x02"
        pset.remove_range(first.addr, second.end - first.addr)
        assert len(pset) == 0
        space._check()
        pset.close()
        for s in srcs:
            s.delete()


def test_when_even_the_restore_is_refused_the_part_map_stays_usable_detached(tmp_path):
    # Unmap of run 1 succeeds, run 2 is refused, mapping run 1 again is refused too:
    # the set keeps the part map; I/O goes by descriptor, the flush by fdatasync.
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.pmem"
        p.write_bytes(bytes([i + 1]) * PAGE)
        paths.append(str(p))
    plan = FaultPlan()
    with MmapAddressSpace(1 << 30) as space:
        pset = PmemSet(Config(Granularity.PAGE, address_space=space, fault_plan=plan))
        srcs = [Source.from_file(p) for p in paths]
        for s in srcs:
            pset.part_map(pset.part_new(s))
        first, second = pset.descriptors()
        n = plan.hits.get(OsCall.MMAP, 0)
        plan.fail(OsCall.MMAP, at=n + 2).fail(OsCall.MMAP, at=n + 3)
        with pytest.raises(PmemsetError, match="nothing was removed"):
            pset.remove_range(first.addr, second.end - first.addr)
        assert pset.descriptors() == [first, second]
        space._check()  # the kernel no longer maps the first: the space knows it
        assert space._arena.live[first.addr].detached
        pset.memcpy(first.addr, b"still here")  # stores and the flush go by the descriptor
        with open(paths[0], "rb") as f:
            assert f.read(10) == b"still here"
        assert pset.read(first.addr, 10) == b"still here"
        pset.remove_range(first.addr, second.end - first.addr)
        assert len(pset) == 0
        space._check()
        pset.close()
        for s in srcs:
            s.delete()
