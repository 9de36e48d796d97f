"""Checker and recovery programs (pmemsim.persistence.programs): warm starts behave like cold ones,
image files always hold exactly the state's image, timeouts and broken interpreters are handled."""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from pmemsim.persistence.checkers import CrashContext, ProgramChecker, Verdict
from pmemsim.persistence.programs import ImageFiles, ProgramRunner, python_command

PY = sys.executable

# What a fresh interpreter running this script would tell about itself: a warm run must say the same.
INTROSPECT = textwrap.dedent(
    """
    import os, sys
    print("argv", sys.argv)
    print("name", __name__, "file", __file__)
    print("path0", sys.path[0])
    print("cwd", os.getcwd())
    print("env", os.environ.get("PMSIM_PROBE"))
    print("main", sys.modules["__main__"].__dict__.get("__file__"))
    print("json", "json" in sys.modules, "socket", "socket" in sys.modules)
    print("stdin", sys.stdin.read())
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
    """
)


def _script(tmp_path: Path, text: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def _both(argv: list[str], path: str, env: dict[str, str], apart: bool = True) -> tuple[object, object]:
    results = []
    for warm in (True, False):
        runner = ProgramRunner(argv, timeout=30, stderr_apart=apart, warm=warm)
        try:
            results.append(runner.run(path, env))
            assert runner.warm is warm
        finally:
            runner.close()
    return results[0], results[1]


def test_python_commands_are_recognised(tmp_path: Path) -> None:
    script = _script(tmp_path, "print(1)\n")
    assert python_command([PY, "-S", script, "x"]) == ([PY, "-S"], [script, "x"])
    assert python_command([PY, "-X", "dev", "-Wignore", script]) == ([PY, "-X", "dev", "-Wignore"], [script])
    assert python_command([PY, "-SE", script]) == ([PY, "-S", "-E"], [script])
    # What a zygote cannot reproduce: code strings, modules, stdin, interactive mode, unknown options.
    for argv in ([PY, "-c", "pass"], [PY, "-m", "json.tool"], [PY, "-"], [PY, "-i", script], [PY, "--help"]):
        assert python_command(argv) is None, argv
    assert python_command(["true"]) is None
    # A directory or a zip archive runs through its __main__: not a source file the zygote compiles.
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text("print(1)\n")
    assert python_command([PY, str(tmp_path / "app")]) is None
    with zipfile.ZipFile(tmp_path / "app.pyz", "w") as z:
        z.writestr("__main__.py", "print(1)\n")
    assert python_command([PY, str(tmp_path / "app.pyz")]) is None
    assert python_command([PY, str(tmp_path / "missing.py")]) is None
    archive = (tmp_path / "app.pyz").read_bytes()
    (tmp_path / "tool.pyz").write_bytes(f"#!{PY}\n".encode() + archive)  # zipapp's own layout
    (tmp_path / "tool.pyz").chmod(0o755)
    assert python_command([str(tmp_path / "tool.pyz")]) is None
    shebang = _script(tmp_path, f"#!/usr/bin/env {os.path.basename(PY)}\nprint(1)\n", "tool")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", os.path.dirname(PY) + os.pathsep + os.environ["PATH"])
        assert python_command([shebang, "a"]) == ([PY], [shebang, "a"])
    direct = _script(tmp_path, f"#!{PY} -S\nprint(1)\n", "tool2")
    assert python_command([direct]) == ([PY, "-S"], [direct])
    crlf = _script(tmp_path, f"#!{PY}\r\nprint(1)\r\n", "tool7")  # the kernel looks for "python\r"
    assert python_command([crlf]) is None
    two = _script(tmp_path, f"#!{PY} -S -u\nprint(1)\n", "tool4")  # one argument "-S -u" on Linux
    assert python_command([two]) is None
    env_opt = _script(tmp_path, f"#!/usr/bin/env {os.path.basename(PY)} -u\nprint(1)\n", "tool5")
    env_split = _script(tmp_path, f"#!/usr/bin/env -S {os.path.basename(PY)} -u\nprint(1)\n", "tool6")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", os.path.dirname(PY) + os.pathsep + os.environ["PATH"])
        assert python_command([env_opt]) is None  # env would look for a program "python -u"
        assert python_command([env_split]) == ([PY, "-u"], [env_split])
    shell = _script(tmp_path, "#!/bin/sh\necho 1\n", "tool3")
    assert python_command([shell]) is None


def test_a_warm_run_sees_what_a_fresh_interpreter_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(tmp_path, INTROSPECT)
    monkeypatch.chdir(tmp_path)
    image = str(tmp_path / "img")
    Path(image).write_bytes(b"x")
    for args in (["-S", "prog.py", "0"], ["prog.py", "3"]):
        warm, cold = _both([PY, *args], image, dict(os.environ, PMSIM_PROBE="probe"))
        assert warm == cold, (warm, cold)
    assert cold.returncode == 3  # type: ignore[attr-defined]
    assert b"env probe" in cold.stdout and b"to stderr" in cold.stderr  # type: ignore[attr-defined]
    assert b"json False socket False" in warm.stdout  # type: ignore[attr-defined]


def test_a_warm_run_reports_an_uncaught_exception_like_the_interpreter(tmp_path: Path) -> None:
    script = _script(tmp_path, "def f():\n    raise ValueError('broken pool')\nf()\n")
    warm, cold = _both([PY, "-S", script], str(tmp_path / "img"), dict(os.environ))
    assert warm == cold
    assert warm.returncode == 1  # type: ignore[attr-defined]
    assert b"ValueError: broken pool" in warm.stderr  # type: ignore[attr-defined]
    assert b"<string>" not in warm.stderr  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone(pid: int) -> bool:
    """Whether ``pid`` is gone within 5 s (a killed orphan is reaped by init a little later)."""
    for _ in range(100):
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_warm_run_that_hangs_is_killed_with_its_children_and_the_next_run_works(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = _script(
        tmp_path,
        textwrap.dedent(
            f"""
            import os, subprocess, sys, time
            if os.environ.get("PMSIM_HANG"):
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                with open({str(pids)!r}, "w") as f:
                    f.write(f"{{os.getpid()}} {{child.pid}}")
                time.sleep(60)
            """
        ),
    )
    runner = ProgramRunner([PY, "-S", script], timeout=2.0)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            runner.run(str(tmp_path / "img"), dict(os.environ, PMSIM_HANG="1"))
        assert runner.warm
        ran = runner.run(str(tmp_path / "img"), dict(os.environ))
        assert ran.returncode == 0
    finally:
        runner.close()
    program, grandchild = (int(p) for p in pids.read_text().split())
    assert _gone(program) and _gone(grandchild)


def test_an_interpreter_that_cannot_be_a_zygote_falls_back_to_plain_runs(tmp_path: Path) -> None:
    # A "python" that runs scripts but exits at once when asked to run code (-c): no zygote.
    fake = _script(tmp_path, f'#!/bin/sh\n[ "$1" = -c ] && exit 0\nexec {PY} "$@"\n', "python3")
    script = _script(tmp_path, "import sys\nsys.exit(7)\n")
    runner = ProgramRunner([fake, script], timeout=30)
    try:
        assert runner.warm
        assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 7
        assert not runner.warm
        assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 7
    finally:
        runner.close()


# -- image files ---------------------------------------------------------------------------------

PAGES = 40


def _image(seed: int, changed: list[int]) -> bytearray:
    data = bytearray(PAGES * 4096)
    for p in changed:
        data[p * 4096 : p * 4096 + 100] = bytes([seed % 251 + 1]) * 100
    return data


def _write_through_write(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(4096 * 7 + 5)
        f.write(b"program was here")


def _write_through_a_mapping(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, 0) as m:
            m[4096 * 9 : 4096 * 9 + 4] = b"MMAP"
    finally:
        os.close(fd)


def _truncate(path: str) -> None:
    os.truncate(path, 4096)


def _replace(path: str) -> None:
    os.unlink(path)
    Path(path).write_bytes(b"other")


def _chmod(path: str) -> None:
    os.chmod(path, 0o400)


def _symlink_to_a_user_file(path: str) -> None:
    victim = path + ".victim"
    Path(victim).write_bytes(b"the user's file")
    os.unlink(path)
    os.symlink(victim, path)


def _read_only(path: str) -> None:
    with open(path, "rb") as f:
        f.read()


@pytest.mark.parametrize(
    "meddle",
    [
        _write_through_write,
        _write_through_a_mapping,
        _truncate,
        _replace,
        _chmod,
        _symlink_to_a_user_file,
        _read_only,
        None,
    ],
)
def test_an_image_file_holds_exactly_the_image_whatever_the_program_did(meddle: object) -> None:
    files = ImageFiles(["pool"], "pmemsim-test-")
    try:
        images = [_image(1, [0]), _image(2, [0, 3]), _image(3, [3, 39]), _image(3, [3, 39]), _image(4, [])]
        for n, image in enumerate(images):
            path = files.write(0, memoryview(image))
            assert Path(path).read_bytes() == bytes(image), n
            assert not os.path.islink(path) and os.stat(path).st_mode & 0o777 == 0o600, n
            if meddle is not None:
                meddle(path)  # type: ignore[operator]
        victim = Path(files.paths[0] + ".victim")
        assert not victim.exists() or victim.read_bytes() == b"the user's file"  # never written through
    finally:
        files.close()
    assert not os.path.exists(files.dir)


def test_an_untouched_image_file_gets_only_the_pages_that_changed() -> None:
    files = ImageFiles(["pool"], "pmemsim-test-")
    try:
        files.write(0, memoryview(_image(1, [0])))
        assert (files.whole_writes, files.page_writes) == (1, 0)
        _read_only(files.paths[0])  # a program that only reads
        files.write(0, memoryview(_image(2, [0, 5, 6])))  # pages 0, 5, 6 differ
        files.write(0, memoryview(_image(2, [0, 5, 6])))  # nothing differs
        assert (files.whole_writes, files.page_writes) == (1, 3)
        _write_through_a_mapping(files.paths[0])
        files.write(0, memoryview(_image(2, [0, 5, 6])))
        assert files.whole_writes == 2  # written back whole: the mapping's writes have no event
        assert Path(files.paths[0]).read_bytes() == bytes(_image(2, [0, 5, 6]))
    finally:
        files.close()


def test_a_file_still_open_after_a_run_is_written_whole() -> None:
    files = ImageFiles(["pool"], "pmemsim-test-")
    try:
        files.write(0, memoryview(_image(1, [0])))
        kept = open(files.paths[0], "rb")  # noqa: SIM115 - a program's grandchild keeping it open
        try:
            files.write(0, memoryview(_image(2, [1])))
            assert files.whole_writes == 2
        finally:
            kept.close()
    finally:
        files.close()


def test_a_checker_program_that_writes_its_pool_never_leaks_into_the_next_state(tmp_path: Path) -> None:
    # The program checks it got the expected image (its hash is in the markers), then scribbles
    # over it through a shared mapping, as a PMDK program's open does.
    script = _script(
        tmp_path,
        textwrap.dedent(
            """
            import hashlib, mmap, os, sys
            want = os.environ["PMREORDER_MARKERS"].removesuffix(".BEGIN")
            fd = os.open(sys.argv[-1], os.O_RDWR)
            with mmap.mmap(fd, 0) as m:
                got = hashlib.sha256(m).hexdigest()
                m[0:8] = b"RUNID=42"
            sys.exit(0 if got == want else 1)
            """
        ),
    )
    checker = ProgramChecker([PY, "-S", script])
    checker.open(["pool"], [PAGES * 4096])
    try:
        for seed in range(6):
            image = _image(seed, [seed % PAGES, 2])
            digest = hashlib.sha256(image).hexdigest()
            ctx = CrashContext(0, 0, log_markers=((f"{digest}.BEGIN", None, 0),), count=1)
            assert checker.check([memoryview(image)], ctx) is None, seed
        outcome = checker.check(
            [memoryview(_image(9, [1]))], CrashContext(0, 0, log_markers=(("wrong.BEGIN", None, 0),), count=1)
        )
        assert outcome is not None and outcome.verdict is Verdict.INCONSISTENT
    finally:
        checker.close()


def test_ctrl_c_during_a_warm_run_ends_it_and_the_next_run_works(tmp_path: Path) -> None:
    pids = tmp_path / "pid"
    script = _script(
        tmp_path,
        textwrap.dedent(
            f"""
            import os, sys, time
            if os.environ.get("PMSIM_HANG"):
                with open({str(pids)!r}, "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(60)
            """
        ),
    )
    runner = ProgramRunner([PY, "-S", script], timeout=30)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            runner.run(str(tmp_path / "img"), dict(os.environ, PMSIM_HANG="1"))
        assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 0
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        runner.close()
    assert not _alive(int(pids.read_text()))


def test_a_warm_interpreter_that_died_between_runs_is_replaced(tmp_path: Path) -> None:
    script = _script(tmp_path, "import sys\nsys.exit(5)\n")
    runner = ProgramRunner([PY, "-S", script], timeout=30)
    try:
        assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 5
        zygote = runner._zygote
        assert zygote is not None
        os.kill(zygote.pid, signal.SIGKILL)  # the OOM killer, say
        os.waitpid(zygote.pid, 0)
        zygote.pid = -1  # reaped here
        assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 5  # this run: a plain start
        assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 5  # then a new zygote
        assert runner.warm and runner._zygote is not None and runner._zygote is not zygote
    finally:
        runner.close()


def test_what_a_run_leaves_running_ends_with_it(tmp_path: Path) -> None:
    # A helper the program leaves behind could write into the next state's image.
    pids = tmp_path / "helper"
    script = _script(
        tmp_path,
        textwrap.dedent(
            f"""
            import subprocess, sys
            helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            open({str(pids)!r}, "w").write(str(helper.pid))
            """
        ),
    )
    for warm in (True, False):
        runner = ProgramRunner([PY, "-S", script], timeout=30, warm=warm)
        try:
            assert runner.run(str(tmp_path / "img"), dict(os.environ)).returncode == 0
        finally:
            runner.close()
        helper = int(pids.read_text())
        assert _gone(helper), warm


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.stdout.close()\n",
        "import sys\nsys.stdout = None\n",
        "import sys\nprint(sys.stdout.seekable(), sys.stderr.seekable())\n",
        "def f(:\n",  # a SyntaxError: the traceback names the script only
        "import os, signal\nprint(signal.getsignal(signal.SIGPIPE))\n",
    ],
)
def test_warm_and_cold_runs_agree_on_stream_and_start_up_details(tmp_path: Path, code: str) -> None:
    script = _script(tmp_path, code)
    warm, cold = _both([PY, "-S", script], str(tmp_path / "img"), dict(os.environ))
    assert warm == cold, (warm, cold)


def test_a_shell_checker_gets_sigpipe_at_its_default(tmp_path: Path) -> None:
    # posix_spawn keeps the dispositions Python ignores; a pipeline checker relies on SIGPIPE.
    script = _script(
        tmp_path, "#!/bin/sh\nyes | head -n 1 >/dev/null\ngrep SigIgn /proc/self/status\n", "c.sh"
    )
    runner = ProgramRunner([script], timeout=30, stderr_apart=True)
    try:
        ran = runner.run(str(tmp_path / "img"), dict(os.environ))
    finally:
        runner.close()
    assert ran.returncode == 0 and b"Broken pipe" not in ran.stderr, ran
    ignored = int(ran.stdout.split()[-1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), ran.stdout


def test_a_ctrl_c_before_the_warm_run_started_does_not_shift_the_next_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pmemsim.persistence import programs

    script = _script(tmp_path, "import os, sys\nsys.exit(int(os.environ['PMSIM_CODE']))\n")
    runner = ProgramRunner([PY, "-S", script], timeout=30)
    try:
        assert runner.run(str(tmp_path / "img"), dict(os.environ, PMSIM_CODE="3")).returncode == 3
        real = programs._Zygote._receive
        calls = [0]

        def interrupted(self: object, timeout: float | None) -> dict[str, int]:
            calls[0] += 1
            if calls[0] == 1:
                raise KeyboardInterrupt  # right after the request went out, before its pid came back
            return real(self, timeout)  # type: ignore[arg-type]

        monkeypatch.setattr(programs._Zygote, "_receive", interrupted)
        with pytest.raises(KeyboardInterrupt):
            runner.run(str(tmp_path / "img"), dict(os.environ, PMSIM_CODE="4"))
        monkeypatch.setattr(programs._Zygote, "_receive", real)
        for code in (5, 6, 7):  # each run its own status, not the one before
            ran = runner.run(str(tmp_path / "img"), dict(os.environ, PMSIM_CODE=str(code)))
            assert ran.returncode == code
    finally:
        runner.close()
