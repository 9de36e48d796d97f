"""Checkers: verdict conventions, raising, hanging and garbage-returning checkers, programs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support.examples import BUGGY, CORRECT, Q, check_flag

from pmemsim.persistence import CallableChecker, CrashContext, ProgramChecker, Verdict, as_checker, replay

FLAG_BUG = BUGGY["flag before payload is fenced"]
FLAG_OK = CORRECT[0]


def test_none_and_true_are_consistent() -> None:
    assert replay(FLAG_BUG.log, lambda image: None).ok
    assert replay(FLAG_BUG.log, lambda image: True).ok


def test_a_raising_checker_marks_the_state_inconsistent_with_its_message() -> None:
    def check(image: memoryview) -> None:
        if not check_flag(image):
            raise ValueError("payload missing behind the flag")

    report = replay(FLAG_BUG.log, check)
    assert not report.ok and report.errors == 0
    assert report.failures[0].verdict is Verdict.INCONSISTENT
    assert report.failures[0].message == "checker raised ValueError: payload missing behind the flag"


@pytest.mark.parametrize("garbage", [0, 1, "ok", [], 0.0])
def test_garbage_return_values_are_checker_errors(garbage: object) -> None:
    report = replay(FLAG_OK.log, lambda image: garbage)
    assert report.errors == report.states_checked > 0 and report.inconsistent == 0
    assert not report.ok and report.verdict == "checker error"
    failure = report.failures[0]
    assert failure.verdict is Verdict.ERROR
    assert f"checker returned {garbage!r} ({type(garbage).__name__})" in failure.message
    assert "expected True or None (consistent) or False (inconsistent)" in failure.message


def test_a_hanging_checker_times_out_and_exploration_goes_on() -> None:
    hung: list[int] = []

    def check(image: memoryview) -> bool:
        flag = Q.unpack_from(image, 0)[0]
        if flag == 1 and not hung:
            hung.append(1)
            while True:  # hangs on the first state with the flag set
                time.sleep(0.01)
        return check_flag(image)

    report = replay(FLAG_BUG.log, check, engine="Exhaustive", timeout=0.2)
    assert report.errors == 1
    errors = [f for f in report.failures if f.verdict is Verdict.ERROR]
    assert errors[0].message == "checker timed out after 0.2 s"
    # The other flag-set states were still checked and found inconsistent.
    assert report.inconsistent > 1
    assert report.states_checked == replay(FLAG_BUG.log, check_flag, engine="Exhaustive").states_checked


def test_timeouts_restore_the_previous_alarm_handler() -> None:
    import signal

    before = signal.getsignal(signal.SIGALRM)
    replay(FLAG_OK.log, check_flag, timeout=5)
    assert signal.getsignal(signal.SIGALRM) is before


def test_all_files_checker_sees_every_image() -> None:
    seen: list[set[str]] = []

    def check(images: dict[str, memoryview]) -> bool:
        seen.append(set(images))
        return True

    assert replay(FLAG_OK.log, CallableChecker(check, all_files=True)).ok
    assert seen and all(s == {"pool"} for s in seen)


def test_images_are_read_only_views() -> None:
    def check(image: memoryview) -> bool:
        image[0] = 1
        return True

    report = replay(FLAG_OK.log, check)
    assert "checker raised TypeError: cannot modify read-only memory" in report.failures[0].message


def test_a_checker_cannot_write_into_later_states_through_the_buffer_object() -> None:
    # memoryview.obj of a read-only view of a bytearray is the writable bytearray itself.
    attempts: list[str] = []

    def check(image: memoryview) -> bool:
        owner = image.obj
        try:
            owner[0:8] = b"\xff" * 8  # type: ignore[index]
        except TypeError as exc:
            attempts.append(str(exc))
        return bytes(image[0:8]) != b"\xff" * 8

    report = replay(FLAG_OK.log, check)
    assert report.ok, str(report)
    assert attempts and len(attempts) == report.states_checked


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "checker.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, "-S", str(path)]  # -S: no site import, a faster start per state


FLAG_CHECKER = """
    import os, struct, sys
    data = open(sys.argv[-1], "rb").read()
    flag = struct.unpack_from("<Q", data, 0)[0]
    payload = bytes(range(1, 33))
    ok = flag == 0 or (flag == 1 and data[64:96] == payload)
    if not ok:
        print("flag without payload; markers:", os.environ["PMREORDER_MARKERS"])
    sys.exit(0 if ok else 1)
"""


def test_program_checker_exit_status_decides(tmp_path: Path) -> None:
    argv = _script(tmp_path, FLAG_CHECKER)
    engine = "ReorderReverseAccumulative"
    good = replay(FLAG_OK.log, argv, engine=engine)
    assert good.ok
    bad = replay(FLAG_BUG.log, argv, engine=engine)
    python = replay(FLAG_BUG.log, check_flag, engine=engine)
    assert (bad.states_checked, bad.inconsistent) == (python.states_checked, python.inconsistent)
    message = bad.failures[0].message
    assert message.startswith("checker program: exit status 1: flag without payload; markers: publish.BEGIN")


def test_program_checker_timeout_and_signals(tmp_path: Path) -> None:
    argv = _script(tmp_path, "import time\ntime.sleep(30)\n")
    start = time.monotonic()
    report = replay(FLAG_OK.log, ProgramChecker(argv, timeout=0.3), engine="NoReorderDoCheck")
    assert time.monotonic() - start < 10
    assert report.errors == report.states_checked == 2
    assert report.failures[0].message == "checker program timed out after 0.3 s"
    killed = _script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    report = replay(FLAG_OK.log, killed, engine="NoReorderDoCheck")
    assert report.failures[0].message == "checker program died: killed by SIGTERM"
    assert report.failures[0].verdict is Verdict.ERROR and report.inconsistent == 0


def test_program_checker_cannot_corrupt_later_states(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        """
        import sys
        with open(sys.argv[-1], "r+b") as f:
            data = f.read()
            f.seek(0)
            f.write(b"\\xff" * 8)  # scribble on the image
        sys.exit(0 if data[:8] != b"\\xff" * 8 else 1)
        """,
    )
    assert replay(FLAG_OK.log, argv, engine="ReorderAccumulative").ok


def test_checker_construction_errors() -> None:
    with pytest.raises(ValueError, match="not found or not executable"):
        ProgramChecker("/no/such/checker --flag")
    with pytest.raises(ValueError, match="command is empty"):
        ProgramChecker([])
    with pytest.raises(ValueError, match="timeout must be positive"):
        CallableChecker(check_flag, timeout=0)
    with pytest.raises(TypeError, match="must be callable"):
        CallableChecker(3)  # type: ignore[arg-type]
    assert isinstance(as_checker("true"), ProgramChecker)
    assert isinstance(as_checker(["true", "x"]), ProgramChecker)
    assert isinstance(as_checker(check_flag), CallableChecker)


def test_timeouts_work_outside_the_main_thread() -> None:
    import threading

    def hang(image: memoryview) -> bool:
        while True:
            time.sleep(0.01)

    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(replay(FLAG_OK.log, hang, engine="NoReorderDoCheck", timeout=0.2))
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert reports[0].errors == reports[0].states_checked == 2
    assert reports[0].failures[0].message == "checker timed out after 0.2 s"


def test_checker_timeouts_leave_the_programs_own_timer_alone() -> None:
    import signal

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        replay(FLAG_OK.log, check_flag, timeout=5)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < remaining <= 30  # still armed: the replay neither cancelled nor re-armed it
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == []


def test_sys_exit_in_a_checker_is_an_error_not_a_verdict() -> None:
    def check(image: memoryview) -> bool:
        sys.exit(0)

    report = replay(FLAG_OK.log, check, engine="NoReorderDoCheck")
    assert report.errors == 2
    assert report.failures[0].message == "checker called sys.exit(0); return a bool instead"


@pytest.mark.parametrize(
    "scribble",
    [
        'open(path, "ab").write(b"tail")',  # grow the file
        "os.truncate(path, 3)",  # shrink it
        'os.unlink(path); open(path, "wb").write(b"new file")',  # replace it
        "m = mmap.mmap(os.open(path, os.O_RDWR), 0); m[:4] = b'\\xee' * 4; m.flush()",  # a recovery
    ],
)
def test_a_program_sees_exactly_each_state_whatever_it_did_to_the_last(tmp_path: Path, scribble: str) -> None:
    # The image file is kept between states and rewritten: what a program leaves in it must
    # never reach the next state. The program logs a digest of each image it is given; a
    # marker-aware Python checker (same states, same order) logs what it sees.
    seen = tmp_path / "seen"
    argv = _script(
        tmp_path,
        f"""
        import hashlib, mmap, os, sys
        path = sys.argv[-1]
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open({str(seen)!r}, "a") as log:
            log.write(digest + "\\n")
        {scribble}
        """,
    )
    program = replay(FLAG_OK.log, argv, engine="ReorderAccumulative")
    expected: list[str] = []

    def check(image: memoryview, ctx: object) -> bool:
        import hashlib

        expected.append(hashlib.sha256(bytes(image)).hexdigest())
        return True

    python = replay(FLAG_OK.log, check, engine="ReorderAccumulative")
    assert program.ok and python.ok and program.checker_calls == python.checker_calls >= 3
    assert seen.read_text().split() == expected


def test_copies_of_an_open_program_checker_keep_their_own_files(tmp_path: Path) -> None:
    import copy

    from pmemsim.persistence import CountingChecker, CrashContext

    argv = _script(tmp_path, "import sys\nsys.exit(0 if open(sys.argv[-1], 'rb').read() == b'ab' else 1)\n")
    ctx = CrashContext(0, 0)
    first = ProgramChecker(argv)
    first.open(["pool"], [2])
    assert first.check([memoryview(b"ab")], ctx) is None
    copy.copy(first).close()  # a copy never opened owns nothing: the first goes on working
    assert first.check([memoryview(b"ab")], ctx) is None
    assert first.check([memoryview(b"xy")], ctx) is not None
    first.close()
    # Copies of a counting checker (one per slice task) open and close their own program files.
    counting = CountingChecker(ProgramChecker(argv))
    one, two = copy.copy(counting), copy.copy(counting)
    one.open(["pool"], [2])
    two.open(["pool"], [2])
    two.close()
    assert one.check([memoryview(b"ab")], ctx) is None
    one.close()
    assert counting.count == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_stop_and_use_a_watchdog_whose_locks_were_held_at_the_fork() -> None:
    # The watchdog thread may hold its lock, or be inside its stop event, at the instant a
    # worker forks: the child, which has no such thread, must not wait for them forever.
    import signal
    import time

    from pmemsim.persistence.checkers import _Watchdog

    watchdog = _Watchdog(60.0)
    held = [watchdog.lock, watchdog._stop._cond]  # as the watchdog thread could hold them
    for lock in held:
        lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            watchdog.leave()
            watchdog.stop()
            os._exit(0)
    finally:
        for lock in held:
            lock.release()
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child waited for a lock held by a thread it does not have")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    watchdog.stop()


def test_a_timed_out_call_leaves_no_pending_interrupt_so_traced_code_still_runs(tmp_path: Path) -> None:
    # Cancelling the watchdog's interrupt with PyThreadState_SetAsyncExc(id, NULL) left CPython's
    # "asynchronous exception pending" flag set with nothing to raise: the next code run under a
    # trace function (coverage, hypothesis after a failure, a debugger) then looped forever. In
    # a fresh process: calls that time out, then traced code, which must finish.
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from pmemsim.persistence.checkers import CallableChecker, CrashContext, Verdict

            def slow(image):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:  # Python code: the interrupt lands here
                    pass
                return True

            def quick_after_the_deadline(image):
                time.sleep(0.3)  # one C call: the interrupt is still pending when it returns
                return True

            for fn in (slow, quick_after_the_deadline):
                checker = CallableChecker(fn, timeout=0.1)
                checker.open(["f"], [1])
                outcome = checker.check([memoryview(b"x")], CrashContext(0, 0))
                checker.close()
                assert outcome is not None and outcome.verdict is Verdict.ERROR, outcome

            def tracer(frame, event, arg):
                return tracer

            def work():
                return sum(i for i in range(1000))

            sys.settrace(tracer)
            work()
            sys.settrace(None)
            print("traced code ran")
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and "traced code ran" in proc.stdout, proc.stderr


def test_a_ctrl_c_while_a_timeout_is_pending_stops_instead_of_counting_as_a_timeout() -> None:
    # The checker is stuck in one long C call, the timeout has fired (its interrupt waits for
    # the call to return), and the user presses Ctrl-C: the interrupt must not replace it.
    def stuck(image: memoryview) -> bool:
        time.sleep(1.0)
        return True

    checker = CallableChecker(stuck, timeout=0.3)
    checker.open(["f"], [1])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            checker.check([memoryview(b"x")], CrashContext(0, 0))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        checker.close()


def test_a_timeout_the_checker_turns_into_another_exception_is_still_a_timeout() -> None:
    def wraps_everything(image: memoryview) -> bool:
        try:
            end = time.monotonic() + 2
            while time.monotonic() < end:
                pass
        except BaseException as exc:
            raise RuntimeError("wrapped") from exc
        return True

    checker = CallableChecker(wraps_everything, timeout=0.2)
    checker.open(["f"], [1])
    try:
        outcome = checker.check([memoryview(b"x")], CrashContext(0, 0))
    finally:
        checker.close()
    assert outcome is not None and outcome.verdict is Verdict.ERROR, outcome
    assert "timed out" in outcome.message
