"""Run PMDK's pmreorder and pmemsim's replay side by side on one store log.

Theory of operation: a :class:`Case` is a pmemsim store log whose files are registered
with real paths, the pristine content of those files, and the source of a checker
program (pmreorder's ``-c prog`` convention: the image path is the last argument,
exit 0 means consistent). :func:`run_both` exports the log with ``dump_pmemcheck``
(8-byte atoms, flushes widened to cache lines: both tools see the same units), writes
the pristine files, runs pmreorder on them (it writes every crash state into the pool
file in place, so the files are rewritten before each tool runs) and then pmemsim's
``replay`` with the same program. The checker appends one line to a counter file given
as its first argument on every call, which is how pmemsim's ``checker_calls`` is
cross-checked and how pmreorder's checks are counted (one call per file per sequence,
stopping at the first inconsistent file). pmreorder runs at ``-e debug``, where it logs
``NEXT Sequence (no. N)`` once per sequence it checks: the number of states. It logs
one ``WARNING`` line ``File <path> (base: ..., size: ...) inconsistent`` per inconsistent state
(``binaryoutputhandler.check_consistency`` raises at the first inconsistent file and
``statemachine.ReplayingState.run`` logs it once), followed by a multi-line call
trace; :func:`count_inconsistent` counts the former, :func:`failing_sequences` places
them after their sequence lines.

pmreorder is located by ``PMREORDER_DIR`` or as ``shared/pmreorder`` beside the
repository; :func:`pmreorder_dir` returns None when neither exists.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmemsim.cli import main
from pmemsim.persistence import CrashReport, StoreLog, dump_pmemcheck, replay

__all__ = [
    "Case",
    "Outcome",
    "count_inconsistent",
    "failing_sequences",
    "pmreorder_dir",
    "run_both",
    "run_pmemsim",
    "run_pmemsim_cli",
    "run_pmreorder",
]

#: pmreorder's own engines (PMDK ``reorderengines.engines``) that these tests compare.
ENGINES = ("NoReorderDoCheck", "ReorderAccumulative", "ReorderReverseAccumulative", "ReorderFull")

# One per inconsistent state: `logger.warning(e)` of InconsistentFileException("File {} inconsistent")
# through logging.basicConfig's default format "LEVEL:name:message".
_INCONSISTENT = re.compile(r"^WARNING:pmreorder:File .* inconsistent$", re.MULTILINE)
# One per sequence checked, at -e debug (statemachine.ReplayingState.run); numbered from
# 0 in each epoch.
_SEQUENCE = re.compile(r"^DEBUG:pmreorder:NEXT Sequence \(no\. (\d+)\)", re.MULTILINE)


def pmreorder_dir() -> Path | None:
    """pmreorder's directory: ``$PMREORDER_DIR``, else ``shared/pmreorder`` beside the repository."""
    env = os.environ.get("PMREORDER_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "pmreorder")
    for candidate in candidates:
        if (candidate / "pmreorder.py").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Case:
    """A log with its files' pristine content (path -> bytes) and a checker program's source."""

    name: str
    log: StoreLog
    pristine: dict[str, bytes]
    checker: str


@dataclass(frozen=True)
class Outcome:
    """What pmreorder said about a log: exit status, inconsistent states, sequences checked, checker calls."""

    status: int
    inconsistent: int
    sequences: int
    checker_calls: int
    #: (epoch, sequence number in the epoch) of each inconsistent state; epochs that
    #: checked something, counted from 0.
    failing: tuple[tuple[int, int], ...] = ()


def failing_sequences(output: str) -> tuple[tuple[int, int], ...]:
    """(epoch, sequence) of each inconsistent state in pmreorder's ``-e debug`` log.

    A state's ``File ... inconsistent`` warning comes after its ``NEXT Sequence`` line
    and before the next one; sequence 0 starts an epoch.
    """
    events = sorted(
        [(m.start(), int(m.group(1))) for m in _SEQUENCE.finditer(output)]
        + [(m.start(), -1) for m in _INCONSISTENT.finditer(output)]
    )
    epoch, seq, failing = -1, -1, []
    for _, number in events:
        if number == 0:
            epoch += 1
        if number >= 0:
            seq = number
        else:
            failing.append((epoch, seq))
    return tuple(failing)


def count_inconsistent(output: str) -> int:
    """The inconsistent states in pmreorder's ``-o`` log (one ``File ... inconsistent`` line each)."""
    return len(_INCONSISTENT.findall(output))


def _restore(case: Case) -> None:
    for path, content in case.pristine.items():
        Path(path).write_bytes(content)


def _count(counter: Path) -> int:
    if not counter.exists():
        return 0
    return len(counter.read_text().splitlines())


def _prepare(case: Case, workdir: Path) -> tuple[Path, Path, Path]:
    log_path = workdir / f"{case.name}.log"
    dump_pmemcheck(case.log, log_path)
    checker = workdir / f"{case.name}_check.py"
    checker.write_text(case.checker)
    counter = workdir / f"{case.name}.calls"
    return log_path, checker, counter


def run_pmreorder(
    case: Case, engine: str, workdir: Path, pmreorder: Path, markers: Mapping[str, str] | None = None
) -> Outcome:
    """Run pmreorder ``-c prog`` with ``engine`` (and ``-x`` section engines) on fresh copies of the files."""
    log_path, checker, counter = _prepare(case, workdir)
    _restore(case)
    counter.unlink(missing_ok=True)
    out = workdir / f"{case.name}.{engine}.out"
    out.unlink(missing_ok=True)
    # -p is split once at the first space; its first word must be an existing path
    # (consistencycheckwrap.get_checker), hence the interpreter's absolute path. One
    # argument, so that argparse does not read "-S" as an option of pmreorder.
    prog = f"{sys.executable} -S {checker} {counter}"
    sections = ["-x", ",".join(f"{name}={spec}" for name, spec in markers.items())] if markers else []
    proc = subprocess.run(
        [
            sys.executable,
            str(pmreorder / "pmreorder.py"),
            "-l",
            str(log_path),
            "-o",
            str(out),
            "-r",
            engine,
            *sections,
            "-e",
            "debug",
            "-c",
            "prog",
            "-p",
            prog,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # pmreorder's exit status is 1 for an inconsistency and for its own traceback too
    failed = proc.returncode not in (0, 1) or "Traceback" in proc.stderr
    assert not failed, f"pmreorder failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
    text = out.read_text() if out.exists() else ""
    return Outcome(
        proc.returncode,
        count_inconsistent(text),
        len(_SEQUENCE.findall(text)),
        _count(counter),
        failing_sequences(text),
    )


def run_pmemsim(case: Case, engine: str, workdir: Path, **kwargs: object) -> tuple[CrashReport, int]:
    """pmemsim's ``replay`` of the case with the same checker program; the report and the checker calls."""
    _, checker, counter = _prepare(case, workdir)
    _restore(case)  # replay reads the registered paths: pmreorder left its last state there
    counter.unlink(missing_ok=True)
    report = replay(case.log, [sys.executable, "-S", str(checker), str(counter)], engine=engine, **kwargs)  # type: ignore[arg-type]
    return report, _count(counter)


def run_pmemsim_cli(case: Case, engine: str, workdir: Path) -> tuple[int, dict[str, Any], int]:
    """``pmemsim replay`` of the very pmemcheck log pmreorder reads; exit status, JSON report, checker calls.

    Runs in-process (``pmemsim.cli.main``); the registered files are restored first since a
    pmemcheck log takes their current content as the content before the first store.
    """
    log_path, checker, counter = _prepare(case, workdir)
    _restore(case)
    counter.unlink(missing_ok=True)
    prog = f"{sys.executable} -S {checker} {counter}"
    argv = ["replay", str(log_path), "--engine", engine, "--checker-prog", prog, "--json", "--no-shrink"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status in (0, 1), f"pmemsim replay exit {status}: {err.getvalue()}"
    report: dict[str, Any] = json.loads(out.getvalue())
    return status, report, _count(counter)


def run_both(case: Case, engine: str, workdir: Path, pmreorder: Path) -> tuple[Outcome, CrashReport, int]:
    """pmreorder's outcome, then pmemsim's report and checker calls, for one engine."""
    theirs = run_pmreorder(case, engine, workdir, pmreorder)
    report, calls = run_pmemsim(case, engine, workdir)
    return theirs, report, calls
