"""Slicing a log at quiescent fences: ``scan_log``, ``EpochBuilder(resume=...)`` and ``replay(workers=N)``.

Property tests over random store logs (1-2 small files; torn, unaligned and aligned
8-byte stores; non-temporal stores; flushes of random ranges; fences; nested markers)
under several persistency models:

* the epochs (and atoms, markers) built from every quiescent point with ``resume`` are
  exactly the corresponding epochs of a build from the start, slice by slice and to the end;
* the epoch counts of the slices add up to the full build's (and to ``scan_log``'s count);
* ``scan_log``'s points are quiescent in the full build (nothing in flight at those
  fences), carry the right counts, are all of them, and ``slices=`` keeps the documented ones;
* ``replay`` gives the same report for 1, 2 and 3 workers.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pmemsim import Granularity
from pmemsim.persistence import (
    Checker,
    CheckOutcome,
    CrashContext,
    CrashReport,
    Engine,
    EpochPlan,
    Exhaustive,
    Fence,
    Flush,
    Marker,
    PersistencyModel,
    Platform,
    Random,
    Recorder,
    ReorderAccumulative,
    ReorderFull,
    ReorderPartial,
    StoreLog,
    Verdict,
    build_epochs,
    replay,
)
from pmemsim.persistence.model import EpochBuilder, Resume, scan_log

MODELS = {
    "ADR": PersistencyModel.adr(),
    "eADR": PersistencyModel.eadr(),
    "PAGE": PersistencyModel.for_granularity(Granularity.PAGE),
    "PAGE128": PersistencyModel.for_granularity(Granularity.PAGE, page_size=128),
    "BYTE": PersistencyModel.for_granularity(Granularity.BYTE),
    "ADR128": PersistencyModel(Platform.ADR, 128),
}
models = st.sampled_from(list(MODELS.values()))

SECTIONS = ("A", "B", "C")


@dataclass(frozen=True)
class Case:
    """A generated log and whether it leaves marker sections open."""

    log: StoreLog
    open_sections: bool

    def __repr__(self) -> str:
        lines = [
            f"Case(open_sections={self.open_sections}, "
            f"files={[(k, f.size) for k, f in self.log.files.items()]}"
        ]
        lines += [f"  {i}: {rec!r}" for i, rec in enumerate(self.log.records)]
        return "\n".join(lines) + ")"


@st.composite
def store_logs(draw: st.DrawFn, max_ops: int = 30) -> Case:
    """A random, valid store log built with :class:`Recorder` (markers nest; sections may stay open)."""
    rec = Recorder()
    sizes = [draw(st.sampled_from([16, 44, 64, 100, 192, 256])) for _ in range(draw(st.integers(1, 2)))]
    keys = [f"f{i}" for i in range(len(sizes))]
    for key, size in zip(keys, sizes, strict=True):
        initial = draw(st.one_of(st.none(), st.binary(min_size=size, max_size=size)))
        rec.register_file(key, None, size, initial)
    stack: list[str] = []
    last: tuple[str, int, int] | None = None
    # A "tidy" log syncs every file now and then, so it has quiescent points to slice at.
    tidy = draw(st.booleans())
    kinds = st.sampled_from(
        ["store"] * 4
        + ["store8"] * 2
        + ["nt", "flush", "flush_file", "persist"]
        + ["fence"] * 2
        + ["begin", "end", "note", "null_flush"]
        + ["sync"] * (4 if tidy else 0)
    )
    for _ in range(draw(st.integers(0, max_ops))):
        kind = draw(kinds)
        f = draw(st.integers(0, len(keys) - 1))
        key, size = keys[f], sizes[f]
        if kind in ("store", "nt"):
            length = draw(st.integers(1, min(24, size)))
            offset = draw(st.integers(0, size - length))
            rec.store(
                key, offset, draw(st.binary(min_size=length, max_size=length)), nontemporal=kind == "nt"
            )
            last = (key, offset, length)
        elif kind == "store8":
            offset = 8 * draw(st.integers(0, size // 8 - 1))
            rec.store(
                key, offset, draw(st.binary(min_size=8, max_size=8)), nontemporal=draw(st.integers(0, 5)) == 0
            )
            last = (key, offset, 8)
        elif kind == "flush":
            offset = draw(st.integers(0, size))
            rec.flush(key, offset, draw(st.integers(0, size - offset)))
        elif kind == "flush_file":
            rec.flush(key, 0, size)
        elif kind == "persist":
            if last is None:
                rec.fence()
            else:
                rec.persist(*last)
        elif kind == "fence":
            rec.fence()
        elif kind == "sync":
            for k, n in zip(keys, sizes, strict=True):
                rec.flush(k, 0, n)
            rec.fence()
        elif kind == "begin":
            name = draw(st.sampled_from(SECTIONS))
            stack.append(name)
            rec.mark(f"{name}.BEGIN" + draw(st.sampled_from(["", ";arg=1"])))
        elif kind == "end":
            if stack:
                rec.mark(f"{stack.pop()}.END")
        elif kind == "note":
            rec.mark("note")
        else:  # a flush of memory outside every registered file (pmemcheck logs have them)
            rec.log.append(Flush("", 0, draw(st.integers(0, 64))))
    open_sections = bool(stack) and draw(st.booleans())
    if not open_sections:
        while stack:
            rec.mark(f"{stack.pop()}.END")
    return Case(rec.log, open_sections)


def _quiescent_records(full: EpochPlan) -> list[int]:
    """Records right after a fence of the full build that left nothing in flight (``count`` included)."""
    return [e.end + 1 for e in full.epochs if not e.final and len(e.inflight) == len(e.flushed)]


def _expected_resume(log: StoreLog, full: EpochPlan, record: int) -> Resume:
    """The counts a quiescent point at ``record`` must carry, from the full build and the log."""
    stack: list[tuple[str, int]] = []
    markers = 0
    for index, rec in enumerate(log.records[:record]):
        if isinstance(rec, Marker) and rec.section is not None:
            markers += 1
            if rec.is_begin:
                stack.append((rec.section, index))
            else:
                assert stack[-1][0] == rec.section
                stack.pop()
    return Resume(
        record=record,
        atoms=sum(1 for a in full.atoms if a.record < record),
        epochs=sum(1 for e in full.epochs if not e.final and e.end < record),
        markers=markers,
        sections=tuple(stack),
    )


def _resumed(
    log: StoreLog, model: PersistencyModel, point: Resume, markers: tuple[Any, ...], check: bool
) -> EpochBuilder:
    return EpochBuilder(log, model, check=check, resume=point, markers=markers)


@given(case=store_logs(), model=models, check=st.booleans())
def test_resumed_slices_match_the_full_build(case: Case, model: PersistencyModel, check: bool) -> None:
    log, open_ = case.log, case.open_sections
    count = len(log.records)
    full = build_epochs(log, model, allow_open_markers=open_)
    full._check()
    scan = scan_log(log, model, allow_open_markers=open_)
    assert scan.markers == full.markers
    assert scan.epochs == len(full.epochs)
    points = scan.points
    event(f"quiescent points: {min(len(points), 4)}{'+' if len(points) >= 4 else ''}")
    assert points[0] == Resume(0, 0, 0, 0, ())
    bounds = [p.record for p in points] + [count]
    assert all(a < b for a, b in itertools.pairwise(bounds[:-1])) and bounds[-2] <= count
    assert len(points) == 1 or points[-1].record < count

    # (3) every point is quiescent in the full build, carries the right counts, and none is missing.
    assert [p.record for p in points[1:]] == [q for q in _quiescent_records(full) if q < count]
    for p in points:
        assert p == _expected_resume(log, full, p.record)
        if p.record:
            fence = full.epochs[p.epochs - 1]
            assert isinstance(log.records[p.record - 1], Fence) and fence.end == p.record - 1
            assert fence.inflight == fence.flushed  # nothing carried over the fence
        for epoch in full.epochs[p.epochs :]:
            assert all(a.record >= p.record for a in epoch.inflight), (p, epoch)

    # (1)+(2) slices between consecutive points, and each point resumed to the end of the log.
    total = 0
    for i, p in enumerate(points):
        last = i + 1 == len(points)
        builder = _resumed(log, model, p, scan.markers, check)
        builder.feed(bounds[i + 1])
        plan = builder.finish(allow_open_markers=open_) if last else builder.partial()
        n = len(plan.epochs)
        assert plan.epochs == full.epochs[p.epochs : p.epochs + n]
        assert plan.atoms == full.atoms[p.atoms : p.atoms + len(plan.atoms)]
        assert plan.markers == full.markers[: len(plan.markers)]
        assert (plan.keys, plan.sizes, plan.model) == (full.keys, full.sizes, full.model)
        if not last:
            nxt = points[i + 1]
            assert (p.epochs + n, p.atoms + len(plan.atoms), len(plan.markers)) == (
                nxt.epochs,
                nxt.atoms,
                nxt.markers,
            )
        total += n
        tail = _resumed(log, model, p, scan.markers, check).finish(allow_open_markers=open_)
        assert tail.epochs == full.epochs[p.epochs :]
        assert tail.atoms == full.atoms[p.atoms :]
        assert tail.markers == full.markers
    assert total == len(full.epochs)


@given(case=store_logs(), model=models, slices=st.integers(1, 12))
def test_scan_with_slices_keeps_the_first_point_after_each_cut(
    case: Case, model: PersistencyModel, slices: int
) -> None:
    log, open_ = case.log, case.open_sections
    count = len(log.records)
    every = scan_log(log, model, allow_open_markers=open_)
    some = scan_log(log, model, allow_open_markers=open_, slices=slices)
    assert (some.markers, some.epochs) == (every.markers, every.epochs)
    full = build_epochs(log, model, allow_open_markers=open_)
    quiescent = _quiescent_records(full)
    wanted = set()
    for k in range(1, slices + 1):
        cut = count * k // slices
        first = next((q for q in quiescent if q >= cut), None)
        if first is not None and first < count:
            wanted.add(first)
    assert [p.record for p in some.points] == [0, *sorted(wanted)]
    assert set(some.points) <= set(every.points)


def hash_checker(image: memoryview) -> bool:
    """Deterministic and picky: rejects about a third of the images."""
    return hashlib.blake2b(bytes(image), digest_size=2).digest()[0] % 3 != 0


REPLAY_ENGINES: list[Engine] = [
    Exhaustive(max_states_per_epoch=48),  # big epochs are sampled (seeded): exercises the warning path too
    ReorderAccumulative(),
    ReorderPartial(max_seq=4),
    Random(n=6),
]


def _comparable(report: CrashReport) -> dict[str, object]:
    d = report.to_dict()
    for timing in ("checker_calls", "elapsed", "workers", "warnings"):
        d.pop(timing)
    return d


@pytest.mark.parametrize("engine", REPLAY_ENGINES, ids=lambda e: e.name)
@settings(max_examples=25)
@given(
    case=store_logs(max_ops=40),
    model=models,
    seed=st.integers(0, 3),
    max_failures=st.sampled_from([2, 100]),
    # Small caps: ReorderFull's permutations explode on a long epoch (the cap's
    # early stop, with its warning, must be the same for every worker count too).
    sections=st.sampled_from(
        [{}, {"A": ReorderFull(max_states_per_epoch=256), "B": Exhaustive(max_states_per_epoch=256)}]
    ),
)
def test_replay_is_the_same_for_any_worker_count(
    engine: Engine,
    case: Case,
    model: PersistencyModel,
    seed: int,
    max_failures: int,
    sections: dict[str, str],
) -> None:
    log = case.log
    count = len(log.records)
    for workers in (2, 3):
        starts = [p.record for p in scan_log(log, model, allow_open_markers=True, slices=8 * workers).points]
        bounds = [*starts, count]
        sliced = len(starts) > 1 and max(b - a for a, b in itertools.pairwise(bounds)) * workers <= count
        event(f"workers={workers}: {'sliced' if sliced else 'planned in the parent'}")
    reports = [
        replay(
            log,
            hash_checker,
            engine=engine,
            markers=sections,
            workers=workers,
            seed=seed,
            model=model,
            max_failures=max_failures,
            allow_open_markers=case.open_sections,
            allow_empty=True,
        )
        for workers in (1, 2, 3)
    ]
    event("some failure" if reports[0].failures else "no failure")
    one = reports[0]
    for other in reports[1:]:
        assert _comparable(other) == _comparable(one)
        assert other == one


class MarkerHashChecker(Checker):
    """Deterministic over what a checker is given: each file's image and the markers before the crash."""

    sees_markers = True

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        self.keys = tuple(keys)

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        markers = ctx.environ_markers
        for key, view in zip(self.keys, views, strict=True):
            digest = hashlib.blake2b(bytes(view) + markers.encode(), digest_size=2).digest()
            if digest[0] % 3 == 0:
                return CheckOutcome(Verdict.INCONSISTENT, key, f"bad image after markers {markers!r}")
        return None


@pytest.mark.parametrize("engine", REPLAY_ENGINES, ids=lambda e: e.name)
@settings(max_examples=25)
@given(case=store_logs(max_ops=40), model=models, seed=st.integers(0, 3))
def test_replay_with_a_marker_checker_is_the_same_for_any_worker_count(
    engine: Engine, case: Case, model: PersistencyModel, seed: int
) -> None:
    reports = [
        replay(
            case.log,
            MarkerHashChecker(),
            engine=engine,
            workers=workers,
            seed=seed,
            model=model,
            allow_open_markers=case.open_sections,
            allow_empty=True,
        )
        for workers in (1, 2, 3)
    ]
    for other in reports[1:]:
        assert _comparable(other) == _comparable(reports[0])
        assert other == reports[0]


class AfterSectionA(Checker):
    """Rejects every image once section A has ended (what a PMREORDER_MARKERS-aware checker may do)."""

    sees_markers = True

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        time.sleep(0.02)  # slow enough that each worker process takes a slice
        markers = ctx.environ_markers
        return CheckOutcome(Verdict.INCONSISTENT, "f", markers) if "A.END" in markers else None


def test_verdicts_are_not_reused_across_markers() -> None:
    # The minimal log the property test above shrinks to: the same image is judged before and after
    # A.END. The checker must see each state's markers; a verdict cached by image alone makes the
    # report wrong with one worker and dependent on which process explores which epoch with several.
    rec = Recorder()
    rec.register_file("f", None, 8)
    rec.mark("A.BEGIN")
    rec.store("f", 0, b"\0")
    rec.persist("f", 0, 1)
    rec.mark("A.END")
    rec.store("f", 0, b"\0")
    rec.persist("f", 0, 1)
    reports = [replay(rec.log, AfterSectionA(), engine="ReorderAccumulative", workers=w) for w in (1, 2, 3)]
    assert reports[0].inconsistent == 2  # both states of epoch 1 (after A.END)
    assert reports[1] == reports[0] and reports[2] == reports[0]
