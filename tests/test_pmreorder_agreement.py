"""pmemsim's pmreorder engines against PMDK's pmreorder itself, on the same logs and checkers.

Each case is a small store log (the example programs of ``test_persistence_examples``
and a few hand-made ones) exported with ``dump_pmemcheck`` and a checker *program*
both tools run unchanged (pmreorder's ``-c prog``; pmemsim's ``replay`` with an argv).
For NoReorderDoCheck, ReorderAccumulative, ReorderReverseAccumulative and ReorderFull
(tiny epochs only) the two must give the same verdict (pmreorder's exit status vs
``report.ok``), the same inconsistent states (their number, and which: epoch and place
in pmreorder's sequence order), and the same number of states: pmreorder checks every
sequence (counted from its debug log), pmemsim counts every sequence as a state
(``states_checked``) but may answer an image it has already judged from its verdict
cache (docs/cli.md, "Differences from pmreorder": deduplication), so its own checker
calls are at most that. ReorderPartial is left out: pmreorder samples it unseeded.
The same holds through the CLI on pmreorder's own input file, with two files, and with
section engines (pmreorder's ``-x TX=ReorderFull``).

The other tests assert the differences the docs table documents: a payload and its flag
in one cache line (pmreorder's false alarm, which Exhaustive does not raise), unflushed
stores written back early, markers seen at each state's own crash point, the
ReorderFull budget, a checker killed by a signal, and a run that checks nothing. One
difference found here and now in the table is pmreorder's markers one record late
(``test_marker_right_before_the_fence``).

pmreorder is ``$PMREORDER_DIR`` or ``shared/pmreorder`` beside the repository; without
it the module is skipped. Every checker call costs a process start (~30 ms): the cases
keep the whole module near 300 calls (a few seconds).
"""

from __future__ import annotations

import struct
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support.examples import DATA, FLAG, PAYLOAD, flag_program, torn_program, undo_program
from support.pmreorder import (
    ENGINES,
    Case,
    Outcome,
    pmreorder_dir,
    run_both,
    run_pmemsim,
    run_pmemsim_cli,
    run_pmreorder,
)

from pmemsim.persistence import NothingToCheck, Recorder, StoreLog, shrink

PMREORDER = pmreorder_dir()
pytestmark = pytest.mark.skipif(
    PMREORDER is None,
    reason="PMDK's pmreorder not found: set PMREORDER_DIR, or put it in shared/pmreorder beside the repo",
)

Q = struct.Struct("<Q")
PAGE = 4096

# Checker programs: the image path is the last argument, a counter file the first (one
# line appended per call). They mirror the Python checkers of test_persistence_examples.
_PROLOGUE = """\
import sys
with open(sys.argv[1], "a") as counter:
    counter.write("call\\n")
with open(sys.argv[-1], "rb") as f:
    image = f.read()
def word(offset):
    return int.from_bytes(image[offset:offset + 8], "little")
"""


def program(body: str) -> str:
    """A checker program: the prologue, then ``body`` deciding ``ok``."""
    return _PROLOGUE + textwrap.dedent(body) + "sys.exit(0 if ok else 1)\n"


def flag_checker(payload: bytes) -> str:
    """The flag at FLAG may be 1 only when ``payload`` is complete at DATA (check_flag)."""
    return program(f"""
        flag = word({FLAG})
        ok = flag == 0 or (flag == 1 and image[{DATA}:{DATA + len(payload)}] == {payload!r})
    """)


PAIR_CHECKER = program("""
    ptr = word(0)
    ok = ptr in (64, 128) and word(ptr + 8) == word(ptr) ^ 0xFFFFFFFFFFFFFFFF
""")

UNDO_CHECKER = program("""
    MAGIC, RECORDS, UNDO, TABLE, SIZE = 0x5EEDF00DCAFEBEEF, 4, 0x40, 0x100, 32
    valid, index = word(0), word(8)
    ok = valid in (0, 1) and index < RECORDS
    for i in range(RECORDS if ok else 0):
        base = UNDO if valid and i == index else TABLE + SIZE * i
        check = MAGIC
        for k in range(4):
            check ^= word(base + 8 * k)
        ok = ok and check == 0
""")


def with_paths(log: StoreLog, workdir: Path) -> tuple[StoreLog, dict[str, bytes]]:
    """``log`` with every file given a real path in ``workdir``, and the files' pristine content."""
    files = {}
    pristine = {}
    for key, info in log.files.items():
        path = str(workdir / f"{key}.pool")
        files[key] = replace(info, path=path)
        content = info.initial if info.initial is not None else bytes(info.size)
        # pmreorder msyncs a whole page around every store (BinaryFile.do_store) and
        # fails on a shorter file: pad it; pmemsim replays the registered size only.
        pristine[path] = content + bytes(-len(content) % PAGE)
    return StoreLog(list(log.records), files, log.granularity, log.page_size), pristine


def publish(payload: bytes, *, fence_between: bool) -> StoreLog:
    """A payload at DATA (another line than the flag), then the flag at FLAG; like flag_program, smaller."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("publish.BEGIN")
    rec.store("pool", DATA, payload)
    rec.flush("pool", DATA, len(payload))
    if fence_between:
        rec.fence()
    rec.store("pool", FLAG, Q.pack(1))
    rec.persist("pool", FLAG, 8)
    rec.mark("publish.END")
    return rec.log


def rewrite_persisted() -> StoreLog:
    """Word 64 persisted, persisted again (nothing left to flush), then word 0."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 64, Q.pack(3))
    rec.persist("pool", 64, 8)
    rec.persist("pool", 64, 8)
    rec.store("pool", 0, Q.pack(2))
    rec.persist("pool", 0, 8)
    return rec.log


def carried_store() -> StoreLog:
    """Word 0 is stored first but left unflushed through two fences; word 64 is persisted before it."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(2))
    rec.store("pool", 64, Q.pack(3))
    rec.persist("pool", 128, 8)
    rec.persist("pool", 64, 8)
    rec.persist("pool", 0, 8)
    return rec.log


def fence_without_flush() -> StoreLog:
    """Word 0 stored and fenced without a flush (no epoch ends there), then word 64, both flushed."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(2))
    rec.fence()
    rec.store("pool", 64, Q.pack(3))
    rec.flush("pool", 0, 128)
    rec.fence()
    return rec.log


def stored_again_after_flush() -> StoreLog:
    """Word 0 flushed, then stored again (that store is not flushed) in the same epoch as word 64."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(1))
    rec.flush("pool", 0, 8)
    rec.store("pool", 0, Q.pack(2))
    rec.store("pool", 64, Q.pack(3))
    rec.persist("pool", 64, 8)
    rec.persist("pool", 0, 8)
    return rec.log


def same_word_twice() -> StoreLog:
    """Word 0 written 1 then 2, word 64 written 3, all persisted by one fence."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(1))
    rec.store("pool", 0, Q.pack(2))
    rec.store("pool", 64, Q.pack(3))
    rec.persist("pool", 0, 128)
    return rec.log


# "Word 0 may be 2 only once word 64 is 3."
WORDS_CHECKER = program("""
    ok = word(0) != 2 or word(64) == 3
""")


@dataclass(frozen=True)
class Spec:
    """A log, its checker program, the engines compared, and which of them find a bug."""

    log: StoreLog
    checker: str
    engines: tuple[str, ...]
    finds: frozenset[str]


# ReorderFull only where every epoch has at most 3 flushed atoms (16 sequences): the
# undo log's first epoch has 6 atoms (1,957 sequences), so it is compared in program
# order and reversed. Every engine is compared on a log it passes and on one it rejects; the
# engine lists are trimmed to keep the module's checker calls few.
SPECS = {
    # correct: the payload (2 atoms) is fenced before the flag
    "flag-fenced": Spec(
        publish(PAYLOAD[:16], fence_between=True),
        flag_checker(PAYLOAD[:16]),
        ("NoReorderDoCheck", "ReorderAccumulative"),
        frozenset(),
    ),
    # buggy: payload and flag in one epoch; only a reordering that drops the payload shows it
    "flag-unfenced": Spec(
        publish(PAYLOAD[:8], fence_between=False),
        flag_checker(PAYLOAD[:8]),
        ("ReorderAccumulative", "ReorderReverseAccumulative", "ReorderFull"),
        frozenset({"ReorderReverseAccumulative", "ReorderFull"}),
    ),
    # buggy: the payload is never flushed, so pmreorder never applies it
    "missing-flush": Spec(
        flag_program(fence_between=True, flush_payload=False),
        flag_checker(PAYLOAD),
        ENGINES,
        frozenset(ENGINES),
    ),
    # buggy: a 16-byte (v, ~v) pair updated in place tears (two atoms of one line)
    "torn-pair": Spec(
        torn_program(copy_on_write=False),
        PAIR_CHECKER,
        ("NoReorderDoCheck", "ReorderAccumulative", "ReorderFull"),
        frozenset({"ReorderAccumulative", "ReorderFull"}),
    ),
    # correct: copy-on-write, then an 8-byte pointer flip
    "cow-pair": Spec(
        torn_program(copy_on_write=True), PAIR_CHECKER, ("NoReorderDoCheck", "ReorderFull"), frozenset()
    ),
    # a persist of what is already durable: an epoch with no flushed store, which pmreorder
    # still checks once (its engines yield the empty sequence)
    "empty-epoch": Spec(
        rewrite_persisted(), WORDS_CHECKER, ("ReorderReverseAccumulative", "ReorderFull"), frozenset()
    ),
    # a store left unflushed across fences (pmreorder carries it to the next epoch and
    # applies it only once flushed; a crash can write it back earlier: see below)
    "carried-store": Spec(carried_store(), WORDS_CHECKER, ("NoReorderDoCheck", "ReorderFull"), frozenset()),
    # a fence with no flush before it does not end an epoch (pmreorder's state machine)
    "fence-without-flush": Spec(
        fence_without_flush(),
        WORDS_CHECKER,
        ("ReorderAccumulative", "ReorderReverseAccumulative"),
        frozenset({"ReorderAccumulative"}),
    ),
    # a flush covers the stores before it only: the second store of word 0 waits for the
    # next epoch
    "stored-after-flush": Spec(
        stored_again_after_flush(),
        WORDS_CHECKER,
        ("NoReorderDoCheck", "ReorderReverseAccumulative"),
        frozenset(),
    ),
    # (two stores to one word under ReorderFull: test_reorder_full_with_and_without_a_budget)
    # buggy: the valid flag shares the undo data's epoch; reversed order applies it first
    "undo-unfenced": Spec(
        undo_program(1, valid_fenced=False),
        UNDO_CHECKER,
        ("NoReorderDoCheck", "ReorderReverseAccumulative"),
        frozenset({"ReorderReverseAccumulative"}),
    ),
}

PAIRS = [(name, engine) for name, spec in SPECS.items() for engine in spec.engines]


def make_case(name: str, log: StoreLog, checker: str, workdir: Path) -> Case:
    """The case with real file paths in ``workdir``."""
    log, pristine = with_paths(log, workdir)
    return Case(name, log, pristine, checker)


@pytest.mark.parametrize(("name", "engine"), PAIRS, ids=[f"{n}-{e}" for n, e in PAIRS])
def test_same_states_and_verdicts_as_pmreorder(name: str, engine: str, tmp_path: Path) -> None:
    assert PMREORDER is not None
    spec = SPECS[name]
    case = make_case(name, spec.log, spec.checker, tmp_path)
    theirs, report, calls = run_both(case, engine, tmp_path, PMREORDER)
    assert report.errors == 0, str(report)
    assert theirs.sequences > 0 and theirs.checker_calls == theirs.sequences  # one file: one call each
    # (a) the verdict, and the known answer: both tools could agree on a wrong one
    assert theirs.status == (0 if report.ok else 1), str(report)
    assert (theirs.status == 1) == (engine in spec.finds), str(report)
    # (b) the inconsistent states: one logged line each in pmreorder's -o output
    assert theirs.inconsistent == report.inconsistent, str(report)
    # ... and they are the same states: the same epoch, the same place in pmreorder's order
    assert tuple((f.epoch, f.seq) for f in report.failures) == theirs.failing, str(report)
    # (c) the states: pmreorder checks every sequence; pmemsim counts each sequence but
    # answers an identical image from its verdict cache (documented)
    assert theirs.sequences == report.states_checked, str(report)
    assert calls == report.checker_calls <= report.states_checked
    assert report.complete


CLI_PAIRS = [
    ("torn-pair", "ReorderFull"),
    ("flag-unfenced", "ReorderReverseAccumulative"),
]


@pytest.mark.parametrize(("name", "engine"), CLI_PAIRS, ids=[f"{n}-{e}" for n, e in CLI_PAIRS])
def test_cli_on_the_very_log_pmreorder_reads(name: str, engine: str, tmp_path: Path) -> None:
    """``pmemsim replay LOG --checker-prog`` on pmreorder's input file (its content read from the pool)."""
    assert PMREORDER is not None
    spec = SPECS[name]
    case = make_case(name, spec.log, spec.checker, tmp_path)
    theirs = run_pmreorder(case, engine, tmp_path, PMREORDER)
    status, report, calls = run_pmemsim_cli(case, engine, tmp_path)
    assert status == theirs.status == (1 if engine in spec.finds else 0), report
    assert report["inconsistent"] == theirs.inconsistent, report
    assert tuple((f["epoch"], f["seq"]) for f in report["failures"]) == theirs.failing, report
    assert report["states_checked"] == theirs.sequences, report
    assert report["errors"] == 0 and report["complete"] is True, report
    assert calls == report["checker_calls"] <= report["states_checked"]


def test_pmreorder_counts_are_measured(tmp_path: Path) -> None:
    """The counts of (b) and (c) are read from pmreorder's run, not assumed: ReorderFull on
    2 atoms is 5 sequences, (), (p), (f), (p, f), (f, p), one of them, (f), inconsistent."""
    assert PMREORDER is not None
    case = make_case("count", publish(PAYLOAD[:8], fence_between=False), flag_checker(PAYLOAD[:8]), tmp_path)
    assert run_pmreorder(case, "ReorderFull", tmp_path, PMREORDER) == Outcome(1, 1, 5, 5, ((0, 2),))
    assert run_pmreorder(case, "NoReorderDoCheck", tmp_path, PMREORDER) == Outcome(0, 0, 1, 1)


def test_reorder_full_with_and_without_a_budget(tmp_path: Path) -> None:
    """Two stores to one word and one to another, one epoch: the order of a sequence decides
    the word's value. Uncapped, pmemsim checks pmreorder's 16 sequences. Capped (docs/cli.md,
    "ReorderFull on large epochs"), it stops the epoch, shortest sequences first as pmreorder
    orders them, says it was not exhaustive, and finds exactly the failures among
    pmreorder's first ``budget`` sequences."""
    assert PMREORDER is not None
    case = make_case("sameword", same_word_twice(), WORDS_CHECKER, tmp_path)
    theirs = run_pmreorder(case, "ReorderFull", tmp_path, PMREORDER)
    # 3 atoms: 1 + 3 + 6 + 6 sequences; (w0=2) and (w0=1, w0=2) leave word 0 at 2 alone
    assert theirs == Outcome(1, 2, 16, 16, ((0, 2), (0, 4)))
    for budget in (None, 3, 8):
        report, _ = run_pmemsim(case, "ReorderFull", tmp_path, max_states=budget)
        assert report.states_checked == (budget or 16) and report.complete == (budget is None), str(report)
        expected = tuple((epoch, seq) for epoch, seq in theirs.failing if budget is None or seq < budget)
        assert tuple((f.epoch, f.seq) for f in report.failures) == expected, str(report)


def sectioned(layout: str) -> StoreLog:
    """A persist outside any section, the ``layout`` (B/E: TX.BEGIN/END, 0/6: store word 0/64,
    f: flush both, F: fence), then another persist outside."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 128, Q.pack(1))
    rec.persist("pool", 128, 8)
    for op in layout:
        if op in "BE":
            rec.mark("TX.BEGIN" if op == "B" else "TX.END")
        elif op == "0":
            rec.store("pool", 0, Q.pack(2))
        elif op == "6":
            rec.store("pool", 64, Q.pack(3))
        elif op == "f":
            rec.flush("pool", 0, 128)
        else:
            rec.fence()
    rec.store("pool", 192, Q.pack(1))
    rec.persist("pool", 192, 8)
    return rec.log


# Where TX.BEGIN/TX.END fall around the epoch of words 0 and 64 (pmreorder switches
# engines at the marker records themselves, so the engine at the fence decides).
LAYOUTS = {"around": "B06fFE", "begin-mid-epoch": "0B6fFE", "begin-before-fence": "06fBFE"}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_section_engines(layout: str, tmp_path: Path) -> None:
    """pmreorder ``-r NoReorderNoCheck -x TX=ReorderFull`` against ``replay(markers={"TX": ...})``:
    only the epoch whose fence is inside TX is explored, with ReorderFull."""
    assert PMREORDER is not None
    case = make_case(layout, sectioned(LAYOUTS[layout]), WORDS_CHECKER, tmp_path)
    sections = {"TX": "ReorderFull"}
    theirs = run_pmreorder(case, "NoReorderNoCheck", tmp_path, PMREORDER, sections)
    report, _ = run_pmemsim(case, "NoReorderNoCheck", tmp_path, markers=sections)
    # (), (w0), (w64), (w0, w64), (w64, w0): word 0 alone is the one inconsistent state
    assert (theirs.status, theirs.inconsistent, theirs.sequences) == (1, 1, 5)
    assert (report.ok, report.inconsistent, report.states_checked) == (False, 1, 5), str(report)
    # the same state; pmreorder's epochs in `failing` count only the epochs it checked
    assert [seq for _, seq in theirs.failing] == [f.seq for f in report.failures] == [1], str(report)


def test_section_that_ends_before_its_fence_checks_nothing(tmp_path: Path) -> None:
    """docs/cli.md, "a log that checks nothing": pmreorder exits 0, pmemsim refuses unless allowed.
    TX.END right before the fence switches back to NoReorderNoCheck for that epoch in both."""
    assert PMREORDER is not None
    case = make_case("endfirst", sectioned("B06fEF"), WORDS_CHECKER, tmp_path)
    sections = {"TX": "ReorderFull"}
    assert run_pmreorder(case, "NoReorderNoCheck", tmp_path, PMREORDER, sections) == Outcome(0, 0, 0, 0)
    with pytest.raises(NothingToCheck):
        run_pmemsim(case, "NoReorderNoCheck", tmp_path, markers=sections)
    report, calls = run_pmemsim(case, "NoReorderNoCheck", tmp_path, markers=sections, allow_empty=True)
    assert (report.ok, report.states_checked, calls) == (True, 0, 0), str(report)


def two_pools() -> StoreLog:
    """Two files, each written in two epochs; the second epoch flushes both."""
    rec = Recorder()
    rec.register_file("a", None, 4096)
    rec.register_file("b", None, 4096)
    rec.store("a", 64, Q.pack(3))
    rec.store("b", 0, Q.pack(2))
    rec.persist("a", 64, 8)
    rec.persist("b", 0, 8)
    rec.store("a", 0, Q.pack(2))
    rec.store("b", 64, Q.pack(3))
    rec.flush("a", 0, 8)
    rec.flush("b", 64, 8)
    rec.fence()
    return rec.log


def test_two_files(tmp_path: Path) -> None:
    """Each file is checked per state; a state is inconsistent once, whichever files fail."""
    assert PMREORDER is not None
    case = make_case("two", two_pools(), WORDS_CHECKER, tmp_path)
    theirs, report, _ = run_both(case, "ReorderAccumulative", tmp_path, PMREORDER)
    assert report.errors == 0, str(report)
    assert theirs.status == (0 if report.ok else 1) == 1, str(report)
    assert theirs.inconsistent == report.inconsistent, str(report)
    assert tuple((f.epoch, f.seq) for f in report.failures) == theirs.failing, str(report)
    assert theirs.sequences == report.states_checked, str(report)
    # pmreorder stops at a state's first inconsistent file, so it calls 1 or 2 times a state
    assert theirs.sequences < theirs.checker_calls <= 2 * theirs.sequences


def same_line_commit() -> StoreLog:
    """A payload word at +0 and its valid flag at +56 of one cache line, persisted together."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(0x1234))
    rec.store("pool", 56, Q.pack(1))
    rec.persist("pool", 0, 64)
    return rec.log


SAME_LINE_CHECKER = program("""
    ok = word(56) == 0 or word(0) == 0x1234
""")


def test_same_line_flag_is_a_pmreorder_false_alarm_only(tmp_path: Path) -> None:
    """docs/cli.md, "order inside a cache line": pmreorder may apply a line's later store alone."""
    assert PMREORDER is not None
    case = make_case("sameline", same_line_commit(), SAME_LINE_CHECKER, tmp_path)
    theirs, report, _ = run_both(case, "ReorderFull", tmp_path, PMREORDER)
    # pmreorder: (), (p), (f), (p, f), (f, p) -- (f) alone is the false alarm
    assert theirs == Outcome(1, 1, 5, 5, ((0, 2),))
    # pmemsim's ReorderFull keeps pmreorder's sequences, so it agrees ...
    assert (report.ok, report.inconsistent, report.states_checked) == (False, 1, 5)
    # ... and its shrinker says the state is one no crash leaves
    (failure,) = report.failures
    assert (failure.epoch, failure.seq) == (0, 2) and [a.offset for a in failure.applied] == [56]
    checker = [sys.executable, "-S", str(tmp_path / "sameline_check.py"), "/dev/null"]
    trace = shrink(case.log, failure, checker)
    assert not trace.in_model, str(trace)
    # ... while the crash model leaves only neither, the payload, or both: no inconsistency
    exhaustive, _ = run_pmemsim(case, "Exhaustive", tmp_path)
    assert exhaustive.ok and exhaustive.errors == 0, str(exhaustive)
    assert exhaustive.distinct_images == 3, str(exhaustive)


def test_unflushed_store_written_back_early_is_missed_by_pmreorder(tmp_path: Path) -> None:
    """docs/cli.md, "unflushed stores": pmreorder applies a store only once flushed; a cache
    line can be written back at any time, so word 0 can be on media before word 64."""
    assert PMREORDER is not None
    case = make_case("carried", carried_store(), WORDS_CHECKER, tmp_path)
    theirs, report, _ = run_both(case, "ReorderFull", tmp_path, PMREORDER)
    assert (theirs.status, theirs.inconsistent) == (0, 0)
    assert report.ok and report.states_checked == theirs.sequences, str(report)
    exhaustive, _ = run_pmemsim(case, "Exhaustive", tmp_path)
    assert not exhaustive.ok and exhaustive.errors == 0, str(exhaustive)
    failure = exhaustive.failures[0]
    assert [a.offset for a in failure.applied] == [0] and failure.epoch == 0, str(exhaustive)


# Dies by SIGKILL instead of answering once word 0 is 2.
KILLED_CHECKER = program("""
    import os, signal
    if word(0) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    ok = True
""")


def test_checker_killed_by_a_signal_is_an_error_not_an_inconsistency(tmp_path: Path) -> None:
    """docs/cli.md: "a checker killed by a signal is 'inconsistent'" in pmreorder; in pmemsim
    it is a checker error, which fails the run without blaming the pool."""
    assert PMREORDER is not None
    case = make_case("killed", rewrite_persisted(), KILLED_CHECKER, tmp_path)
    theirs, report, _ = run_both(case, "NoReorderDoCheck", tmp_path, PMREORDER)
    # three epochs (the second persists nothing new); word 0 is 2 in the last one only
    assert theirs == Outcome(1, 1, 3, 3, ((2, 0),))
    assert (report.inconsistent, report.errors, report.states_checked) == (0, 1, 3), str(report)
    assert not report.ok and [(f.epoch, f.seq, f.verdict.name) for f in report.failures] == [(2, 0, "ERROR")]


def early_commit() -> StoreLog:
    """The commit flag is stored and flushed before ``TX.END`` is reached, fenced only after it."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("TX.BEGIN")
    rec.store("pool", 0, Q.pack(1))
    rec.flush("pool", 0, 8)
    rec.mark("TX.END")
    rec.store("pool", 64, Q.pack(7))
    rec.persist("pool", 64, 8)
    return rec.log


# "The commit flag may be on media only once TX.END was reached."
EARLY_COMMIT_CHECKER = program("""
    import os
    markers = os.environ.get("PMREORDER_MARKERS", "").split("|")
    ok = word(0) == 0 or "TX.END" in markers
""")


def test_markers_at_each_crash_point_find_what_pmreorder_misses(tmp_path: Path) -> None:
    """docs/cli.md, "markers seen by the checker": pmreorder judges the whole epoch under the
    markers at its fence; a crash between the flag's flush and TX.END can leave the flag on
    media while the checker must see only TX.BEGIN."""
    assert PMREORDER is not None
    case = make_case("early", early_commit(), EARLY_COMMIT_CHECKER, tmp_path)
    theirs, report, _ = run_both(case, "ReorderAccumulative", tmp_path, PMREORDER)
    assert theirs == Outcome(0, 0, 3, 3)
    # pmemsim's pmreorder engines judge at the fence too, so they agree with it
    assert report.ok and report.states_checked == 3, str(report)
    exhaustive, _ = run_pmemsim(case, "Exhaustive", tmp_path)
    assert not exhaustive.ok and exhaustive.errors == 0, str(exhaustive)
    assert all("TX.END" not in f.markers for f in exhaustive.failures), str(exhaustive)


def commit_marker_before_fence() -> StoreLog:
    """The commit flag is flushed, then ``TX.END``, then the fence: the marker right before the fence."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("TX.BEGIN")
    rec.store("pool", 0, Q.pack(1))
    rec.flush("pool", 0, 8)
    rec.mark("TX.END")
    rec.fence()
    return rec.log


@pytest.mark.parametrize("engine", ["NoReorderDoCheck", "ReorderAccumulative"])
def test_marker_right_before_the_fence(engine: str, tmp_path: Path) -> None:
    assert PMREORDER is not None
    case = make_case("lastmarker", commit_marker_before_fence(), EARLY_COMMIT_CHECKER, tmp_path)
    # A documented difference (docs/cli.md, "markers seen by the checker"): pmreorder sets
    # PMREORDER_MARKERS one record late (statemachine.StateMachine.run_all zips the records
    # after START with indices that count START), so TX.END right before the FENCE is not
    # seen at that fence: it reports the commit as too early. pmemsim passes every marker
    # before the crash point. Same states on both sides; opposite verdicts.
    theirs, report, _ = run_both(case, engine, tmp_path, PMREORDER)
    assert report.errors == 0 and theirs.sequences == report.states_checked, str(report)
    assert report.ok and report.failures == ()
    assert theirs.status == 1 and theirs.inconsistent == 1, f"pmreorder: {theirs}"
