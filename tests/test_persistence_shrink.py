"""Shrinking failures to minimal traces, and the ddmin it rests on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import BUGGY, Q, check_flag

from pmemsim.persistence import (
    Recorder,
    ShrinkError,
    StoreLog,
    replay,
    shrink,
)
from pmemsim.persistence.shrink import ddmin

# Hand-written minimal explanations: (stores that must have persisted, stores that must be lost).
MINIMAL = {
    "flag before payload is fenced": 2,  # the flag persisted, one payload word lost
    "torn 16-byte update": 2,  # one half persisted, the other lost
    "missing flush": 2,  # the flag persisted, the unflushed payload word lost
    # The valid flag persisted with a torn undo entry: one new undo word persisted, one lost. (An
    # entirely old entry is a consistent copy of another record, which this checksum cannot tell.)
    "undo valid flag not fenced": 3,
}


@pytest.mark.parametrize("bug", list(BUGGY))
@pytest.mark.parametrize("engine", ["Exhaustive", "ReorderFull", "ReorderReverseAccumulative"])
def test_shrinking_is_no_larger_than_the_hand_written_trace(bug: str, engine: str) -> None:
    example = BUGGY[bug]
    report = replay(example.log, example.check, engine=engine)
    assert not report.ok
    for failure in report.failures[:5]:
        result = shrink(example.log, failure, example.check)
        if engine == "Exhaustive":
            assert result.in_model  # every state it checks is one a crash can leave
        if not result.in_model:
            # A pmreorder engine applied a cache line's stores out of program order (here: the
            # valid flag without the index stored before it in the same line): no crash can.
            assert engine != "Exhaustive" and "outside the persistency model" in result.trace
            continue
        assert result.size <= MINIMAL[bug], result.trace
        if bug.startswith("undo") and failure.epoch == 0:
            assert result.size <= 2  # the first entry: the zeroed log fails its checksum whole
        assert result.persisted and result.lost
        assert "PERSISTED" in result.trace and "LOST" in result.trace


def test_trace_shows_markers_locations_flushes_and_the_crash_point() -> None:
    example = BUGGY["missing flush"]
    report = replay(example.log, example.check, engine="Exhaustive")
    result = shrink(example.log, report.failures[0], example.check)
    lines = result.trace.splitlines()
    assert lines[0].startswith(
        "Minimal crash before FENCE record 5, epoch 0, inside publish: 1 store(s) persisted"
    )
    assert "[0] publish.BEGIN" in result.trace
    assert "STORE pool+0x0..0x8 (8 B) at prog.py:12, flushed -> PERSISTED" in result.trace
    assert "(piece 0 of a 32-byte store) at prog.py:10, NOT flushed -> LOST" in result.trace
    assert "[5] FENCE  <- crash before this fence" in result.trace
    assert str(result) == result.trace
    assert result.message == "checker returned False"


def test_shrinking_a_non_model_state_keeps_the_engine_order() -> None:
    rec = Recorder()
    rec.register_file("f", None, 64)
    rec.store("f", 0, Q.pack(1))
    rec.store("f", 0, Q.pack(2))
    rec.store("f", 8, Q.pack(3))
    rec.persist("f", 0, 16)

    def check(image: memoryview) -> bool:  # 1 in word 0 is "bad"; ReorderFull can apply 2 then 1
        return bool(Q.unpack_from(image, 0)[0] != 1)

    report = replay(rec.log, check, engine="ReorderFull")
    out_of_order = next(f for f in report.failures if [a.record for a in f.applied][:2] == [1, 0])
    result = shrink(rec.log, out_of_order, check)
    assert not result.in_model
    assert [a.record for a in result.persisted] == [0]
    assert "outside the persistency model" in result.trace


def test_shrink_refuses_failures_of_another_log() -> None:
    example = BUGGY["torn 16-byte update"]
    failure = replay(example.log, example.check).failures[0]
    other = Recorder()
    other.register_file("pool", None, 4096)
    with pytest.raises(ShrinkError, match="epochs"):
        shrink(other.log, failure, example.check)


def test_shrink_detects_a_flaky_checker() -> None:
    rec = Recorder()
    rec.register_file("f", None, 64)
    rec.store("f", 0, Q.pack(1))
    rec.store("f", 0, Q.pack(2))
    rec.persist("f", 0, 8)
    report = replay(rec.log, lambda img: Q.unpack_from(img, 0)[0] != 1, engine="ReorderFull")
    failure = next(f for f in report.failures if [a.record for a in f.applied] == [1, 0])
    with pytest.raises(ShrinkError, match="no longer fails"):
        shrink(rec.log, failure, lambda img: True)


def test_shrink_of_a_state_that_fails_with_everything_persisted() -> None:
    log: StoreLog = BUGGY["flag before payload is fenced"].log

    def always_bad(image: memoryview) -> bool:
        return bool(Q.unpack_from(image, 0)[0] == 0)  # fails as soon as the flag is there at all

    report = replay(log, always_bad, engine="Exhaustive")
    result = shrink(log, report.failures[0], always_bad)
    assert [a.record for a in result.persisted] == [3] and result.lost == ()


def test_shrink_works_on_program_checkers() -> None:
    import sys

    example = BUGGY["torn 16-byte update"]
    report = replay(example.log, example.check)
    code = (
        "import struct,sys; d=open(sys.argv[-1],'rb').read(); p=struct.unpack_from('<Q',d,0)[0]; "
        "a,b=struct.unpack_from('<QQ',d,p); sys.exit(0 if b==a^0xFFFFFFFFFFFFFFFF else 1)"
    )
    result = shrink(example.log, report.failures[0], [sys.executable, "-c", code])
    assert result.size == 2


@settings(max_examples=200)
@given(st.lists(st.integers(0, 30), unique=True, max_size=12), st.sets(st.integers(0, 30), max_size=4))
def test_ddmin_returns_a_one_minimal_failing_subset(items: list[int], needed: set[int]) -> None:
    def fails(subset: list[int]) -> bool:
        return needed <= set(subset)

    if not fails(items):
        return
    out = ddmin(items, fails)
    assert fails(out)
    assert set(out) == needed & set(items)
    assert out == [x for x in items if x in out]  # order kept
    for i in range(len(out)):
        assert not fails(out[:i] + out[i + 1 :])


def test_ddmin_of_an_always_failing_test_is_empty() -> None:
    assert ddmin([1, 2, 3], lambda s: True) == []
    assert check_flag is not None
