"""The model's epochs, the engines' state counts, deduplication, markers, workers and bad logs."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import BUGGY, CORRECT, Q, check_flag, check_undo, undo_program

from pmemsim.persistence import (
    Checker,
    CheckOutcome,
    CrashContext,
    Exhaustive,
    Fence,
    FileInfo,
    Flush,
    LogError,
    Marker,
    MarkerError,
    NoReorderDoCheck,
    NoReorderNoCheck,
    PersistencyModel,
    Random,
    Recorder,
    ReorderFull,
    Store,
    StoreLog,
    Verdict,
    build_epochs,
    caller_location,
    engine_for,
    engine_from_name,
    initial_images,
    plan_replay,
    replay,
)
from pmemsim.persistence.explore import Explorer


def always(image: memoryview) -> bool:
    return True


def epoch_of(k: int, *, same_word: bool = False) -> StoreLog:
    """One epoch with ``k`` flushed 8-byte stores (to distinct words unless ``same_word``)."""
    rec = Recorder()
    rec.register_file("f", None, 4096)
    for i in range(k):
        rec.store("f", 0 if same_word else 8 * i, Q.pack(i + 1))
    rec.flush("f", 0, 8 * max(k, 1))
    rec.fence()
    return rec.log


@pytest.mark.parametrize(
    ("engine", "counts"),
    [
        ("NoReorderNoCheck", {1: 0, 4: 0}),
        ("NoReorderDoCheck", {1: 1, 4: 1}),
        ("ReorderAccumulative", {1: 2, 4: 5}),
        ("ReorderReverseAccumulative", {1: 2, 4: 5}),
        ("ReorderPartial", {1: 2, 4: 3}),
        ("ReorderFull", {1: 2, 4: 65, 6: sum(math.perm(6, n) for n in range(7))}),
        # k stores to one cache line reach media as its k+1 program-order prefixes.
        ("Exhaustive", {1: 2, 4: 5, 6: 7}),
    ],
)
def test_states_per_epoch_match_pmreorder(engine: str, counts: dict[int, int]) -> None:
    for k, expected in counts.items():
        report = replay(epoch_of(k), always, engine=engine, allow_empty=engine == "NoReorderNoCheck")
        assert report.states_checked == expected, (engine, k)
        assert report.epochs == 1


def test_exhaustive_explores_lines_independently() -> None:
    # k stores to k different lines: every subset can be on media.
    rec = Recorder()
    rec.register_file("f", None, 4096)
    for i in range(6):
        rec.store("f", 64 * i, Q.pack(i + 1))
    rec.persist("f", 0, 64 * 6)
    assert replay(rec.log, always).states_checked == 2**6


def test_store_tears_into_aligned_8_byte_atoms() -> None:
    rec = Recorder()
    rec.register_file("f", None, 64)
    rec.store("f", 4, bytes(range(20)))  # [4, 24): pieces [4,8) [8,16) [16,24)
    rec.store("f", 32, b"x" * 8)  # aligned: one atom
    plan = plan_replay(rec.log)
    assert [(a.offset, len(a.data), a.piece) for a in plan.atoms] == [
        (4, 4, 0),
        (8, 8, 1),
        (16, 8, 2),
        (32, 8, 0),
    ]
    assert plan.epochs[0].final and not plan.epochs[0].flushed


def test_fence_without_flush_does_not_end_an_epoch() -> None:
    rec = Recorder()
    rec.register_file("f", None, 4096)
    rec.store("f", 0, Q.pack(1))
    rec.fence()  # nothing flushed yet: ignored, as pmreorder does
    rec.flush("f", 0, 8)
    rec.fence()
    rec.fence()
    plan = plan_replay(rec.log)
    assert [(e.start, e.end, len(e.flushed)) for e in plan.epochs] == [(0, 3, 1)]


def test_unflushed_stores_carry_over_and_a_later_flush_covers_them() -> None:
    rec = Recorder()
    rec.register_file("f", None, 4096)
    rec.store("f", 0, Q.pack(1))
    rec.store("f", 256, Q.pack(2))
    rec.persist("f", 256, 8)
    rec.persist("f", 8, 8)  # the line of offset 0: flushes the old store
    plan = plan_replay(rec.log)
    assert [[a.offset for a in e.inflight] for e in plan.epochs] == [[0, 256], [0]]
    assert [[a.offset for a in e.flushed] for e in plan.epochs] == [[256], [0]]


def test_exhaustive_counts_distinct_word_values_and_dedups_across_epochs() -> None:
    # Two stores to one word (3 values) and one to another (2 values): 6 images in epoch 0.
    report = replay(epoch_of(2, same_word=True), always, engine="Exhaustive")
    assert report.states_checked == 3
    log = epoch_of(2, same_word=True)
    log.records.insert(1, Store("f", 64, Q.pack(9)))
    assert replay(log, always, engine="Exhaustive").states_checked == 6
    # A second epoch rewriting the same values: its base was already seen, nothing new twice.
    twice = epoch_of(1)
    twice.records += [Store("f", 0, Q.pack(0)), Flush("f", 0, 8), Fence(), Store("f", 0, Q.pack(1))]
    twice.records += [Flush("f", 0, 8), Fence()]
    report = replay(twice, always, engine="Exhaustive")
    assert report.states_checked == report.distinct_images == 2
    assert replay(twice, always, engine="ReorderAccumulative").states_checked == 6


@st.composite
def small_logs(draw: st.DrawFn) -> StoreLog:
    rec = Recorder()
    rec.register_file("a", None, 40, bytes(range(40)))
    rec.register_file("b", None, 16)
    for _ in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["store", "store", "flush", "fence"]))
        key = draw(st.sampled_from(["a", "b"]))
        size = 40 if key == "a" else 16
        off = draw(st.integers(0, size - 1))
        if kind == "store":
            n = draw(st.integers(1, min(10, size - off)))
            rec.store(key, off, draw(st.binary(min_size=n, max_size=n)))
        elif kind == "flush":
            rec.flush(key, off, draw(st.integers(0, size - off)))
        else:
            rec.fence()
    return rec.log


@settings(max_examples=40)
@given(small_logs())
def test_accumulative_states_follow_the_pmreorder_formula(log: StoreLog) -> None:
    plan = plan_replay(log)
    expected = sum(len(e.flushed) + 1 for e in plan.epochs if not e.final)
    assert replay(log, always, engine="ReorderAccumulative", allow_empty=True).states_checked == expected


def test_marker_sections_select_engines() -> None:
    log = BUGGY["flag before payload is fenced"].log  # the bug is inside publish.BEGIN/END
    assert not replay(log, check_flag, engine="Exhaustive").ok
    quiet = replay(log, check_flag, engine="Exhaustive", markers={"publish": "NoReorderNoCheck"})
    # Only the crash right after publish.END, outside the section, is judged (by Exhaustive).
    assert quiet.ok and quiet.states_checked == 1
    assert quiet.markers == (("publish", "NoReorderNoCheck"),)
    found = replay(log, check_flag, engine=NoReorderNoCheck(), markers={"publish": ReorderFull()})
    assert not found.ok and found.failures[0].sections == ("publish",)


def test_nested_markers_restore_the_enclosing_engine() -> None:
    rec = Recorder()
    rec.register_file("f", None, 64)
    rec.mark("outer.BEGIN")
    rec.mark("inner.BEGIN")
    rec.store("f", 0, Q.pack(1))
    rec.persist("f", 0, 8)
    rec.mark("inner.END")
    rec.store("f", 8, Q.pack(1))
    rec.persist("f", 8, 8)
    rec.mark("outer.END")
    plan = plan_replay(rec.log)
    sections = {"outer": ReorderFull(), "inner": Exhaustive()}
    chosen = [(engine_for(e.sections, NoReorderDoCheck(), sections).name, e.sections) for e in plan.epochs]
    assert chosen == [
        ("Exhaustive", ("outer", "inner")),
        ("ReorderFull", ("outer",)),
        ("NoReorderDoCheck", ()),
    ]
    assert plan.epochs[-1].final and not plan.epochs[-1].inflight  # the crash after outer.END


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a.BEGIN", "b.BEGIN", "a.END"], "crosses section 'b'"),
        (["a.END"], "has no matching a.BEGIN"),
        (["a.BEGIN"], "section 'a' is never closed"),
    ],
)
def test_bad_markers_are_reported_with_the_record(names: list[str], message: str) -> None:
    log = StoreLog(files={"f": FileInfo("f", None, 8)})
    log.extend(Marker(n) for n in names)
    with pytest.raises(MarkerError, match=message) as info:
        replay(log, always)
    assert "record " in str(info.value)


def test_open_markers_can_be_allowed() -> None:
    log = StoreLog(files={"f": FileInfo("f", None, 8)}, records=[Marker("a.BEGIN"), Store("f", 0, b"x")])
    assert replay(log, always, allow_open_markers=True).ok


def test_plain_markers_are_notes() -> None:
    log = StoreLog(files={"f": FileInfo("f", None, 8)}, records=[Marker("hello"), Store("f", 0, b"x")])
    assert plan_replay(log).markers == ()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (Store("f", 60, b"123456789"), r"record 0: STORE \[0x3c, 0x45\) is outside file 'f' \(size 0x40\)"),
        (Store("g", 0, b"1"), "record 0: STORE to unregistered file 'g'"),
        (Flush("f", 0, 65), r"record 0: FLUSH \[0x0, 0x41\) is outside file 'f'"),
        (Flush("g", 0, 1), "record 0: FLUSH of unregistered file 'g'"),
    ],
)
def test_log_ranges_outside_the_file_are_refused(record: Store | Flush, message: str) -> None:
    log = StoreLog(files={"f": FileInfo("f", None, 64)}, records=[record])
    with pytest.raises(LogError, match=message):
        replay(log, always)


def test_recorder_refuses_bad_calls() -> None:
    rec = Recorder()
    rec.register_file("f", "/p", 16)
    with pytest.raises(ValueError, match="outside file 'f'"):
        rec.store("f", 12, b"12345")
    with pytest.raises(ValueError, match="not registered"):
        rec.flush("nope", 0, 1)
    with pytest.raises(ValueError, match="at least one byte"):
        rec.store("f", 0, b"")
    with pytest.raises(TypeError, match="offset must be an int"):
        rec.store("f", 1.5, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered for path"):
        rec.register_file("f", "/other", 16)
    with pytest.raises(ValueError, match="cannot shrink"):
        rec.register_file("f", "/p", 8)
    with pytest.raises(ValueError, match="bad marker name"):
        rec.mark("a|b")
    assert rec.log.records == []
    grown = rec.register_file("f", "/p", 32)
    assert grown.size == 32
    rec.store("f", 24, b"12345678")


def test_bad_images_and_arguments() -> None:
    log = StoreLog(files={"f": FileInfo("f", "/nonexistent/pool", 8)}, records=[Store("f", 0, b"x")])
    with pytest.raises(LogError, match="cannot read the initial image of file 'f'"):
        replay(log, always)
    with pytest.raises(LogError, match="is 2 bytes, the log needs 8"):
        replay(log, always, images={"f": b"ab"})
    with pytest.raises(LogError, match="does not register"):
        replay(log, always, images={"g": b"ab"})
    assert replay(log, always, images={"f": bytes(8)}).ok
    with pytest.raises(ValueError, match="unknown engine 'Nope'"):
        replay(log, always, images={"f": bytes(8)}, engine="Nope")
    with pytest.raises(ValueError, match="workers must be a positive int"):
        replay(log, always, workers=0)
    with pytest.raises(TypeError, match="a checker is a callable"):
        replay(log, 42, images={"f": bytes(8)})  # type: ignore[arg-type]


def test_engine_names() -> None:
    assert engine_from_name("Random:7:5") == Random(seed=7, n=5)
    assert engine_from_name("Exhaustive") == Exhaustive()
    with pytest.raises(ValueError, match="takes no arguments"):
        engine_from_name("ReorderFull:3")
    with pytest.raises(ValueError, match="expected Random:SEED:N"):
        engine_from_name("Random:x")


def test_failure_details_name_the_crash_point_and_the_stores() -> None:
    log = BUGGY["torn 16-byte update"].log
    report = replay(log, BUGGY["torn 16-byte update"].check, engine="ReorderAccumulative")
    assert report.inconsistent == 1
    (failure,) = report.failures
    assert failure.fence == 2 and failure.prefix == 2 and failure.epoch == 0
    assert [(a.record, a.piece) for a in failure.applied] == [(0, 0)]
    assert [(a.record, a.piece) for a in failure.lost] == [(0, 1)]
    assert failure.verdict is Verdict.INCONSISTENT and failure.message == "checker returned False"
    data = json.loads(report.to_json())
    assert data["failures"][0]["stores"][0]["record"] == 0
    assert "epoch 0 state 1" in str(report)


def test_max_failures_keeps_the_first_and_counts_all() -> None:
    log = BUGGY["flag before payload is fenced"].log
    full = replay(log, check_flag, engine="ReorderFull")
    capped = replay(log, check_flag, engine="ReorderFull", max_failures=2)
    assert capped.inconsistent == full.inconsistent > 2
    assert capped.failures == full.failures[:2]
    assert "more failing states not listed" in str(capped)


def test_reorder_full_limit_is_reported_as_not_exhaustive() -> None:
    report = replay(epoch_of(5), always, engine=ReorderFull(max_states_per_epoch=10))
    assert report.states_checked == 10
    assert report.limits == ("epoch 0: ReorderFull stopped after 10 states (max_states_per_epoch)",)
    assert not report.complete and report.verdict == "consistent, not exhaustive"
    assert "NOT EXHAUSTIVE" in report.summary() and report.to_dict()["complete"] is False
    assert replay(epoch_of(5), always, engine="ReorderFull", max_states=10) == report


def test_exhaustive_over_its_limit_changes_the_fewest_lines_first() -> None:
    rec = Recorder()
    rec.register_file("f", None, 4096)
    for i in range(6):
        rec.store("f", 64 * i, Q.pack(i + 1))
    rec.persist("f", 0, 64 * 6)
    seen: list[int] = []

    def count_lines(image: memoryview) -> bool:
        seen.append(sum(Q.unpack_from(image, 64 * i)[0] != 0 for i in range(6)))
        return True

    report = replay(rec.log, count_lines, engine=Exhaustive(max_states_per_epoch=22))
    assert report.states_checked == 22 and not report.complete
    assert "64 distinct images exceed max_states_per_epoch=22; checked 22" in report.limits[0]
    # The base, then the 6 single-line images, then 15 of the two-line ones.
    assert seen == [0] + [1] * 6 + [2] * 15


def test_the_nine_store_bug_is_found_within_the_default_budget() -> None:
    # Nine stores to nine lines, one flush and fence; the bug: store 8 on media without store 0.
    # ReorderFull walks short sequences first, as pmreorder does (its 9th sequence).
    rec = Recorder()
    rec.register_file("f", None, 4096)
    for i in range(9):
        rec.store("f", 64 * i, Q.pack(1))
    rec.persist("f", 0, 64 * 9)

    def check(image: memoryview) -> bool:
        return not (Q.unpack_from(image, 64 * 8)[0] == 1 and Q.unpack_from(image, 0)[0] == 0)

    full = replay(rec.log, check, engine="ReorderFull")
    assert not full.ok and not full.complete
    assert full.failures[0].seq == 9  # () then (0,) .. (8,): the 10th state, the 9th sequence
    exhaustive = replay(rec.log, check)
    assert exhaustive.complete and exhaustive.inconsistent == 2**7  # store 8 alone, any of 1..7


@pytest.mark.parametrize(
    "engine", ["Exhaustive", "ReorderFull", "ReorderPartial", "Random:3:20", "ReorderAccumulative"]
)
def test_two_workers_give_the_same_report(engine: str) -> None:
    log = undo_program(6, valid_fenced=False)
    one = replay(log, check_undo, engine=engine, workers=1, seed=5)
    two = replay(log, check_undo, engine=engine, workers=2, seed=5)
    assert one == two
    assert two.workers == 2
    assert one.ok == (engine == "ReorderAccumulative")  # it only sees program-order prefixes


def test_workers_accept_closures_as_checkers() -> None:
    calls = []

    def closure(image: memoryview) -> bool:
        calls.append(1)
        return check_flag(image)

    for example in CORRECT[:1]:
        assert replay(example.log, closure, workers=2).ok


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="flush_unit must be a power of two"):
        PersistencyModel(flush_unit=48)
    page = PersistencyModel.for_granularity(2, page_size=8192)  # type: ignore[arg-type]
    assert page.flush_unit == 8192
    plan = build_epochs(epoch_of(1), PersistencyModel.eadr())
    assert plan.model.eadr_mode


def test_caller_location_points_outside_the_package() -> None:
    here = caller_location()
    assert here is not None and here.startswith(__file__) and here.endswith(str(_line() - 1))


def _line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_store_record_normalises_and_validates() -> None:
    store = Store("f", 0, bytearray(b"ab"))  # type: ignore[arg-type]
    assert store.data == b"ab"
    with pytest.raises(TypeError):
        Store("f", 0, "ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Flush("f", -1, 1)
    assert Marker("x.BEGIN;extra").section == "x"
    assert Marker("a.b.END").section == "a"
    assert Marker("note").section is None
    assert struct.calcsize("<Q") == 8


class _InvariantChecker(Checker):
    """Checks the explorer's hash against its image at every state."""

    def __init__(self) -> None:
        self.explorer: Explorer | None = None
        self.states = 0

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        assert self.explorer is not None
        self.explorer.image._check()
        self.states += 1
        return None


@settings(max_examples=40)
@given(
    small_logs(),
    st.sampled_from(["Exhaustive", "Random:1:5", "ReorderReverseAccumulative", "ReorderPartial"]),
)
def test_plan_and_image_invariants_hold_at_every_state(log: StoreLog, engine: str) -> None:
    plan = plan_replay(log)
    plan._check()
    checker = _InvariantChecker()
    chosen = engine_from_name(engine)
    ex = Explorer(plan, initial_images(log), checker, lambda epoch: chosen, sees_markers=False)
    checker.explorer = ex
    for epoch in plan.epochs:
        ex.run_epoch(epoch, 0)
        assert not ex.image.stack
        ex.image._check()
    # After the last epoch the image holds exactly the durable stores.
    expected = [bytearray(img) for img in initial_images(log)]
    for epoch in plan.epochs:
        for atom in epoch.flushed:
            expected[atom.fidx][atom.offset : atom.end] = atom.data
    assert [bytes(b) for b in ex.image.bufs] == expected
