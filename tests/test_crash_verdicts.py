"""Crash verdicts users can trust: the reproductions of wrong verdicts, each as a test.

* false alarms: stores to one cache line reach media in program order (payload and flag
  in one line, a fully written line);
* missed bugs: states judged under the markers of their crash point, deduplicated per
  (image, markers); capped engines walk short sequences first;
* no silent passes: nothing recorded, no store, no state checked;
* checker mistakes are checker errors, not inconsistencies (exit 2), a crashing checker
  cannot take the replay along, ``--json`` stays one object;
* checkers get a context: the markers, the data attached to them, the crash point.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pmemsim import Config, Granularity, PmemSet, SimulatedAddressSpace, Source
from pmemsim.persistence import (
    CallableChecker,
    CheckerError,
    CrashContext,
    NothingToCheck,
    Random,
    Recorder,
    StoreLog,
    Verdict,
    replay,
    save_log,
    shrink,
)
from pmemsim.testing.crash import CrashCheck, CrashConsistencyError, NotExhaustiveWarning

Q = struct.Struct("<Q")
REPO = Path(__file__).resolve().parent.parent


def same_line_commit() -> StoreLog:
    """A payload word at +0 and its valid flag at +56 of one cache line, persisted together."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(42))
    rec.store("pool", 56, Q.pack(1))
    rec.persist("pool", 0, 64)
    return rec.log


def flag_implies_payload(image: memoryview) -> bool:
    return Q.unpack_from(image, 56)[0] != 1 or Q.unpack_from(image, 0)[0] == 42


# -- the cache-line order ------------------------------------------------------------------------


def test_a_flag_in_the_payloads_line_is_no_false_alarm() -> None:
    for engine in ("Exhaustive", Random(n=50)):
        report = replay(same_line_commit(), flag_implies_payload, engine=engine)
        assert report.ok, str(report)
    # Exactly the three prefixes of the line: nothing, the payload, both.
    assert replay(same_line_commit(), flag_implies_payload).states_checked == 3


def test_a_fully_written_line_has_nine_images_not_256() -> None:
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(8):
        rec.store("pool", 8 * i, Q.pack(i + 1))
    rec.persist("pool", 0, 64)
    assert replay(rec.log, lambda image: True).states_checked == 9


def test_the_shrinker_never_reports_a_later_store_of_a_line_without_the_earlier() -> None:
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(42))
    rec.store("pool", 56, Q.pack(1))
    rec.store("pool", 128, Q.pack(7))  # another line: a real bug, the flag says it is there
    rec.persist("pool", 0, 192)

    def check(image: memoryview) -> bool:
        return Q.unpack_from(image, 56)[0] != 1 or Q.unpack_from(image, 128)[0] == 7

    report = replay(rec.log, check)
    assert not report.ok
    result = shrink(rec.log, report.failures[0], check)
    assert result.in_model
    persisted = {a.offset for a in result.persisted}
    assert 56 in persisted and [a.offset for a in result.lost] == [128]
    assert "pool+0x38..0x40 (8 B)" in result.trace and "-> PERSISTED" in result.trace


# -- markers -------------------------------------------------------------------------------------


def marker_log() -> StoreLog:
    """TX.BEGIN | STORE 0x0=1 | FLUSH other line | FENCE | TX.END | FLUSH 0x0 | FENCE."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("TX.BEGIN")
    rec.store("pool", 0, Q.pack(1))
    rec.flush("pool", 256, 8)
    rec.fence()
    rec.mark("TX.END")
    rec.flush("pool", 0, 8)
    rec.fence()
    return rec.log


def after_tx_word_0_is_0(image: memoryview, ctx: CrashContext) -> bool:
    return not (ctx.markers and ctx.markers[-1] == "TX.END") or Q.unpack_from(image, 0)[0] == 0


@pytest.mark.parametrize("engine", ["Exhaustive", "NoReorderDoCheck", "ReorderAccumulative"])
def test_an_image_seen_before_a_marker_is_judged_again_after_it(engine: str) -> None:
    report = replay(marker_log(), after_tx_word_0_is_0, engine=engine)
    assert not report.ok
    assert all(f.markers == ("TX.BEGIN", "TX.END") for f in report.failures)


def test_states_before_a_marker_are_judged_under_the_markers_before_it() -> None:
    # Crash points before TX.END within the epoch see only TX.BEGIN.
    seen: list[tuple[tuple[str, ...], int, int]] = []

    def record(image: memoryview, ctx: CrashContext) -> None:
        seen.append((ctx.markers, Q.unpack_from(image, 0)[0], ctx.record))

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(1))
    rec.mark("TX.BEGIN")
    rec.store("pool", 64, Q.pack(2))
    rec.persist("pool", 0, 128)
    rec.mark("TX.END")
    replay(rec.log, record)
    # Before TX.BEGIN (record 1): word 0 may be 0 or 1, and no marker yet.
    assert {(m, w) for m, w, r in seen if r == 1} == {((), 0), ((), 1)}
    # At the fence (record 4), both again, under TX.BEGIN.
    assert {(m, w) for m, w, r in seen if r == 4} == {(("TX.BEGIN",), 0), (("TX.BEGIN",), 1)}


def test_marker_data_reaches_the_checker(tmp_path: Path) -> None:
    space = SimulatedAddressSpace()
    contexts: list[tuple[object, tuple[str, ...]]] = []

    def check(image: memoryview, ctx: CrashContext) -> bool:
        contexts.append((ctx.data, ctx.markers))
        return True

    with (
        PmemSet(Config(Granularity.PAGE, address_space=space)) as pset,
        Source.from_temporary(str(tmp_path)) as src,
    ):
        desc = pset.part_map(pset.part_new(src, offset=0, length=4 * 4096))
        with CrashCheck(pset, check):
            pset.mark("TX.BEGIN", data={"op": "insert", "key": 5})
            pset.memcpy(desc.addr, Q.pack(5))
            pset.mark("TX.END")
    assert ({"op": "insert", "key": 5}, ("TX.BEGIN",)) in contexts
    assert ({"op": "insert", "key": 5}, ("TX.BEGIN", "TX.END")) in contexts
    assert all(data is None for data, markers in contexts if not markers)


def test_checker_calling_conventions() -> None:
    log = same_line_commit()
    keyword: list[int] = []

    def by_keyword(image: memoryview, *, ctx: CrashContext) -> None:
        keyword.append(ctx.epoch)

    def plain(image: memoryview, strict: bool = False) -> bool:  # a default: not a context
        return not strict

    assert replay(log, by_keyword).ok and keyword == [0, 0, 0]
    assert replay(log, plain).ok
    with pytest.raises(CheckerError, match=r"cannot be called as check\(image\) or check\(image, ctx\)"):
        replay(log, lambda a, b, c: True)
    with pytest.raises(CheckerError, match="cannot be called"):
        replay(log, lambda: True)


# -- no silent passes ----------------------------------------------------------------------------


def test_an_empty_log_and_an_engine_that_checks_nothing_are_refused() -> None:
    empty = Recorder()
    empty.register_file("pool", None, 64)
    empty.fence()
    with pytest.raises(NothingToCheck, match="the log holds no store"):
        replay(empty.log, flag_implies_payload)
    assert replay(empty.log, flag_implies_payload, allow_empty=True).states_checked == 0
    with pytest.raises(NothingToCheck, match="NoReorderNoCheck picks no crash state"):
        replay(same_line_commit(), flag_implies_payload, engine="NoReorderNoCheck")


def test_a_crash_check_that_recorded_nothing_fails(tmp_path: Path) -> None:
    space = SimulatedAddressSpace()
    with (
        PmemSet(Config(Granularity.PAGE, address_space=space)) as pset,
        PmemSet(Config(Granularity.PAGE, address_space=space)) as other,
        Source.from_temporary(str(tmp_path)) as src,
    ):
        desc = other.part_map(other.part_new(src, offset=0, length=4096))
        nothing = pytest.raises(CrashConsistencyError, match="crash check of nothing: the log holds no store")
        with nothing, CrashCheck(pset, flag_implies_payload):
            other.memcpy(desc.addr, b"written to the other set")
        with CrashCheck(pset, flag_implies_payload, allow_empty=True) as allowed:
            pass
        assert allowed.result is not None and allowed.result.ok


def test_a_sampled_crash_check_warns_or_fails_when_strict(tmp_path: Path) -> None:
    space = SimulatedAddressSpace()
    with (
        PmemSet(Config(Granularity.PAGE, address_space=space)) as pset,
        Source.from_temporary(str(tmp_path)) as src,
    ):
        desc = pset.part_map(pset.part_new(src, offset=0, length=4096))
        warned = pytest.warns(NotExhaustiveWarning, match="NOT EXHAUSTIVE: Random sample")
        with warned, CrashCheck(pset, lambda image: True, engine="Random:1:5"):
            pset.memcpy(desc.addr, Q.pack(1))
        failed = pytest.raises(CrashConsistencyError, match=r"not exhaustive \(strict\)")
        with failed, CrashCheck(pset, lambda image: True, engine="Random:1:5", strict=True):
            pset.memcpy(desc.addr, Q.pack(2))


# -- checker errors ------------------------------------------------------------------------------


def test_rejecting_the_image_before_any_store_is_a_checker_error() -> None:
    report = replay(same_line_commit(), lambda image: Q.unpack_from(image, 0)[0] == 42)
    assert report.errors == 1 and report.verdict == "checker error" and not report.ok
    (error,) = [f for f in report.failures if f.verdict is Verdict.ERROR]
    assert "rejects the image before any recorded store is applied" in error.message
    assert error.applied == ()


def test_a_program_checker_that_dies_is_a_checker_error(tmp_path: Path) -> None:
    script = tmp_path / "die.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    report = replay(same_line_commit(), [sys.executable, str(script)], engine="NoReorderDoCheck")
    assert report.errors == report.states_checked == 1 and report.inconsistent == 0
    assert report.failures[0].message == "checker program died: killed by SIGSEGV"


def test_an_isolated_python_checker_that_crashes_its_process_is_reported() -> None:
    def segfault(image: memoryview) -> bool:
        if Q.unpack_from(image, 56)[0] == 1:
            os.kill(os.getpid(), 11)
        return True

    crashed = r"crashed its process .*killed by SIGSEGV.* while judging epoch 0"
    with pytest.raises(CheckerError, match=crashed):
        replay(same_line_commit(), segfault, isolate=True)


# -- the command line ----------------------------------------------------------------------------

CHECKERS = """\
import ctypes, os, struct, sys

def flag_implies_payload(image):
    flag, payload = struct.unpack_from("<Q", image, 56)[0], struct.unpack_from("<Q", image, 0)[0]
    return flag != 1 or payload == 42

def chatty(image):
    print("a checker that prints to stdout")
    os.write(1, b"and writes to fd 1\\n")
    return True

def segfault(image):
    if struct.unpack_from("<Q", image, 56)[0] == 1:
        ctypes.string_at(0)  # a real segfault
    return True

def needs_payload(image):
    return struct.unpack_from("<Q", image, 0)[0] == 42

def two_args_no_ctx(a, b, c):
    return True

def after_tx(image, ctx):
    return not (ctx.markers and ctx.markers[-1] == "TX.END") or struct.unpack_from("<Q", image, 0)[0] == 0
"""


def run_replay(tmp_path: Path, log: StoreLog, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "checkers.py").write_text(CHECKERS)
    save_log(log, tmp_path / "log.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", "replay", "log.json", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_cli_same_line_commit_is_consistent(tmp_path: Path) -> None:
    proc = run_replay(tmp_path, same_line_commit(), "--checker", "checkers:flag_implies_payload")
    assert proc.returncode == 0, proc.stderr
    assert "consistent: 3 states checked" in proc.stdout


def test_cli_marker_bug_is_found_by_exhaustive(tmp_path: Path) -> None:
    proc = run_replay(tmp_path, marker_log(), "--checker", "checkers:after_tx", "--json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["inconsistent"] > 0


def test_cli_json_is_one_object_whatever_the_checker_prints(tmp_path: Path) -> None:
    proc = run_replay(tmp_path, same_line_commit(), "--checker", "checkers:chatty", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # nothing else on stdout
    assert doc["format"] == "pmemsim-crash-report" and doc["verdict"] == "consistent"
    assert doc["trace"] is None and doc["complete"] is True
    assert "a checker that prints to stdout" in proc.stderr and "and writes to fd 1" in proc.stderr


def test_cli_a_segfaulting_checker_ends_in_exit_2_with_a_message(tmp_path: Path) -> None:
    proc = run_replay(tmp_path, same_line_commit(), "--checker", "checkers:segfault")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "crashed its process" in proc.stderr and "SIGSEGV" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("checker", "message"),
    [
        ("checkers:needs_payload", "rejects the image before any recorded store"),
        ("checkers:two_args_no_ctx", "cannot be called as check(image) or check(image, ctx)"),
    ],
)
def test_cli_checker_errors_exit_2(tmp_path: Path, checker: str, message: str) -> None:
    proc = run_replay(tmp_path, same_line_commit(), "--checker", checker)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout + proc.stderr
    assert "INCONSISTENT" not in proc.stdout


def test_cli_empty_log_is_bad_input_unless_allowed(tmp_path: Path) -> None:
    rec = Recorder()
    rec.register_file("pool", None, 64)
    rec.mark("note")
    proc = run_replay(tmp_path, rec.log, "--checker", "checkers:flag_implies_payload")
    assert proc.returncode == 2
    assert "the log holds no store" in proc.stderr and "--allow-empty" in proc.stderr
    allowed = run_replay(tmp_path, rec.log, "--checker", "checkers:flag_implies_payload", "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr


def test_cli_max_states_reports_not_exhaustive(tmp_path: Path) -> None:
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(9):
        rec.store("pool", 64 * i, Q.pack(1))
    rec.persist("pool", 0, 64 * 9)
    proc = run_replay(tmp_path, rec.log, "--checker", "checkers:flag_implies_payload", "--max-states", "20")
    assert proc.returncode == 0, proc.stderr
    assert (
        "NOT EXHAUSTIVE" in proc.stdout
        and "512 distinct images exceed max_states_per_epoch=20" in proc.stdout
    )


def test_callable_checker_sees_markers_only_with_a_context() -> None:
    assert not CallableChecker(flag_implies_payload).sees_markers
    assert CallableChecker(after_tx_word_0_is_0).sees_markers


# -- timeouts coexist with pytest-timeout --------------------------------------------------------


def test_pytest_timeout_still_fires_after_a_crash_check(tmp_path: Path) -> None:
    # Checker timeouts used to arm and cancel ITIMER_REAL around every call, which silently
    # disarmed pytest-timeout's signal method for the rest of the test.
    pytest.importorskip("pytest_timeout", reason="pytest-timeout comes with the project's dev set-up")
    (tmp_path / "test_user.py").write_text(
        "import time\n"
        "def test_slow_after_a_crash_check(pmemset, pmem_file, crash_check):\n"
        "    desc = pmemset.part_map(pmemset.part_new(__import__('pmemsim').Source.from_file(pmem_file)))\n"
        "    with crash_check(lambda image: True, timeout=30):\n"
        "        pmemset.memcpy(desc.addr, b'x' * 8)\n"
        "    time.sleep(6)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--timeout=2",
            "--timeout-method=signal",
            "test_user.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Timeout" in proc.stdout and "1 failed" in proc.stdout


# -- interruption --------------------------------------------------------------------------------

SLOW_CHECKER = """\
import os, sys, time
with open(os.environ["PIDS"], "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(60)
"""


def _sigint_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it only waits for its parent to reap it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("how", "workers"), [("SIGINT to the group", "1"), ("SIGINT to the group", "2"), ("SIGTERM", "2")]
)
def test_an_interrupted_replay_ends_its_checkers_and_cleans_up(
    tmp_path: Path, how: str, workers: str
) -> None:
    import signal
    import time

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(4):  # two epochs, so two workers each take one
        rec.store("pool", 64 * i, Q.pack(1))
        rec.persist("pool", 64 * i, 8)
    save_log(rec.log, tmp_path / "log.json")
    (tmp_path / "slow.py").write_text(SLOW_CHECKER)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    pids = tmp_path / "pids"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "TMPDIR": str(scratch),
        "PIDS": str(pids),
    }
    argv = [sys.executable, "-m", "pmemsim", "replay", "log.json", "--engine", "NoReorderDoCheck"]
    argv += ["--checker-prog", f"{sys.executable} slow.py", "--workers", workers]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        # As a shell starts a foreground job: Ctrl-C not ignored (a test run started in the
        # background, `pytest &`, hands its children SIGINT ignored, and Python then keeps it so).
        preexec_fn=_sigint_default,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and pids.read_text().count("\n") >= int(workers)):
            assert time.monotonic() < deadline and proc.poll() is None, "the checker never started"
            time.sleep(0.05)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "pmemsim replay: interrupted"
    assert "Traceback" not in err
    checkers = [int(line) for line in pids.read_text().split()]
    time.sleep(0.2)
    assert not [pid for pid in checkers if _alive(pid)]
    assert list(scratch.iterdir()) == []


# -- found in review -----------------------------------------------------------------------------


def test_the_initial_image_after_a_commit_marker_is_an_inconsistency_not_a_checker_error() -> None:
    # A marker-aware checker judges (image, markers): the initial image after TX.END is a real
    # crash state (a missing persist before the commit), not the image before any store.
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("TX.BEGIN")
    rec.store("pool", 0, Q.pack(1))
    rec.mark("TX.END")
    rec.persist("pool", 0, 8)

    def check(image: memoryview, ctx: CrashContext) -> bool:
        return Q.unpack_from(image, 0)[0] == 1 if "TX.END" in ctx.markers else True

    report = replay(rec.log, check)
    assert report.errors == 0 and report.inconsistent == 1
    assert report.failures[0].markers == ("TX.BEGIN", "TX.END") and report.failures[0].applied == ()


def test_executors_running_tasks_in_threads_share_no_checker_state(tmp_path: Path) -> None:
    import concurrent.futures

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(16):
        rec.store("pool", 64 * (i % 4), Q.pack(i + 1))
        rec.persist("pool", 64 * (i % 4), 8)
    program = tmp_path / "check.py"
    program.write_text(
        "import sys\nsys.exit(0 if open(sys.argv[-1], 'rb').read(8) != b'\\x05' + bytes(7) else 1)\n"
    )
    argv = [sys.executable, "-S", str(program)]
    one = replay(rec.log, argv, engine="NoReorderDoCheck")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = replay(rec.log, argv, engine="NoReorderDoCheck", executor=pool)
    assert threaded == one and one.inconsistent == 4  # word 0 holds 5 from store 4 to store 7

    def hang_once(image: memoryview) -> bool:
        if Q.unpack_from(image, 0)[0] == 5:
            while True:
                pass
        return True

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        timed = replay(rec.log, hang_once, engine="NoReorderDoCheck", executor=pool, timeout=0.5)
    assert timed.errors == 4 and all("timed out" in f.message for f in timed.failures)


def test_a_crash_of_the_checker_under_workers_or_an_executor_is_a_checker_error() -> None:
    import concurrent.futures

    def segfault(image: memoryview) -> bool:
        if Q.unpack_from(image, 56)[0] == 1:
            os.kill(os.getpid(), 11)
        return True

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(6):
        rec.store("pool", 0, Q.pack(42))
        rec.store("pool", 56, Q.pack(1 if i == 4 else 0))
        rec.persist("pool", 0, 64)
    with pytest.raises(CheckerError, match="crashed its process"):
        replay(rec.log, segfault, workers=2, isolate=True)
    with (
        concurrent.futures.ProcessPoolExecutor(2) as pool,
        pytest.raises(CheckerError, match="on the executor"),
    ):
        replay(rec.log, segfault, executor=pool)


def test_cli_json_survives_a_checker_module_that_prints_on_import(tmp_path: Path) -> None:
    (tmp_path / "loud.py").write_text("print('hello from import')\ndef check(image):\n    return True\n")
    save_log(same_line_commit(), tmp_path / "log.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pmemsim", "replay", "log.json", "--checker", "loud:check", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "consistent"
    assert "hello from import" in proc.stderr


def test_cli_a_checker_that_crashes_only_while_shrinking_ends_in_exit_2(tmp_path: Path) -> None:
    # ReorderAccumulative never visits "flag without payload"; the shrinker tries it.
    (tmp_path / "crashy.py").write_text(
        "import os, struct\n"
        "def check(image):\n"
        "    payload, flag = struct.unpack_from('<Q', image, 0)[0], struct.unpack_from('<Q', image, 128)[0]\n"
        "    if flag and not payload:\n"
        "        os.kill(os.getpid(), 11)\n"
        "    return not flag\n"
    )
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, Q.pack(42))
    rec.store("pool", 128, Q.pack(1))
    rec.persist("pool", 0, 256)
    save_log(rec.log, tmp_path / "log.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pmemsim", "replay", "log.json", "--checker", "crashy:check",
         "--engine", "ReorderAccumulative"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the verdict stands: an inconsistency
    assert "cannot shrink the first failure" in proc.stdout and "crashed its process" in proc.stdout


def test_worker_counts_are_capped_by_the_cpus_and_by_the_work(tmp_path: Path) -> None:
    # `replay --workers 100000` used to fork until killed; 32 workers forked 31 processes for a
    # two-state log. Now: at most the usable CPUs, at most what the log can be cut into.
    from pmemsim.persistence.explore import usable_cpus

    many = replay(same_line_commit(), flag_implies_payload, workers=100_000)
    assert many.ok and many.workers == 1  # one epoch: nothing to share
    assert any("capped" in w for w in many.warnings)
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(8):
        rec.store("pool", 64 * i, Q.pack(1))
        rec.persist("pool", 64 * i, 8)
    spread = replay(rec.log, flag_implies_payload, workers=100_000)
    assert spread.workers == min(usable_cpus(), 256)
    assert f"--workers 100000 capped at {min(usable_cpus(), 256)}: the usable CPUs" in spread.warnings
    proc = run_replay(
        tmp_path, same_line_commit(), "--checker", "checkers:flag_implies_payload", "--workers", "100000"
    )
    assert proc.returncode == 0, proc.stderr
    assert "capped" in proc.stdout
