"""``pmemsim replay``: crash replay of recorded programs from the command line.

Two programs are recorded in-process with ``pset.record()`` on a SimulatedAddressSpace
over a real file: a correct commit (record persisted, then the flag) and a buggy one
(flag persisted before the record). Their logs are exported in pmemcheck's format
(``dump_pmemcheck``) and in pmemsim's saved format, then replayed by ``pmemsim replay``
as a subprocess with a ``module:function`` checker written into the test directory
and with a ``--checker-prog`` script, as pmreorder's ``-c prog``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import pmemsim
from pmemsim import Config, Granularity, PmemSet, Source
from pmemsim.cli import main
from pmemsim.persistence import Recorder, StoreLog, dump_pmemcheck
from pmemsim.persistence.log import LogError
from pmemsim.persistence.saved import dumps_log, load_log, loads_log, read_log, save_log

REPO = Path(__file__).resolve().parent.parent
POOL_SIZE = 4096

CHECKER_MODULE = '''\
def committed(image):
    """Consistent unless the commit flag is set over an incomplete record."""
    if bytes(image[0:8]) != b"COMMITED":
        return True
    return 0 not in bytes(image[64:80])
'''

CHECKER_PROGRAM = """\
import sys
with open(sys.argv[-1], "rb") as f:
    image = f.read()
if image[0:8] == b"COMMITED" and 0 in image[64:80]:
    print("flag set over an incomplete record")
    sys.exit(1)
"""

JSON_KEYS = {
    "format",
    "version",
    "verdict",
    "log",
    "engine",
    "markers",
    "model",
    "epochs",
    "states_checked",
    "distinct_images",
    "inconsistent",
    "errors",
    "complete",
    "limits",
    "failures",
    "warnings",
    "checker_calls",
    "elapsed",
    "workers",
    "trace",
}


@dataclass
class Recorded:
    pool: Path  # the program's file, in its state after the run
    pmemcheck: Path  # the log in pmemcheck's format
    saved: Path  # the log in pmemsim's saved format
    log: StoreLog


def record(directory: Path, *, buggy: bool) -> Recorded:
    """Run the commit program on a real file with recording on; export its log both ways."""
    name = "buggy" if buggy else "correct"
    pool = directory / f"{name}.pmem"
    pool.write_bytes(bytes(POOL_SIZE))
    space = pmemsim.SimulatedAddressSpace(page_size=4096)
    space.set_device_granularity(str(pool), Granularity.CACHE_LINE)
    with (
        PmemSet(Config(Granularity.CACHE_LINE, address_space=space)) as pset,
        Source.from_file(str(pool)) as src,
    ):
        desc = pset.part_map(pset.part_new(src, 0, POOL_SIZE))
        with pset.record() as log:
            if buggy:
                pset.write(desc.addr + 64, b"record. record. ")  # plain stores, not flushed yet
                pset.memcpy(desc.addr, b"COMMITED")  # flag persisted first
                pset.persist(desc.addr + 64, 16)
            else:
                pset.memcpy(desc.addr + 64, b"record. record. ")  # record persisted first
                pset.memcpy(desc.addr, b"COMMITED")
    assert pool.read_bytes()[:8] == b"COMMITED"
    pmemcheck, saved = directory / f"{name}.log", directory / f"{name}.json"
    dump_pmemcheck(log, pmemcheck)
    save_log(log, saved)
    return Recorded(pool, pmemcheck, saved, log)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "crashchecks.py").write_text(CHECKER_MODULE)
    (tmp_path / "check_prog.py").write_text(CHECKER_PROGRAM)
    return tmp_path


def pristine(rec: Recorded) -> None:
    """Put the pool back to its content before the run, as pmreorder expects of a pmemcheck log."""
    rec.pool.write_bytes(bytes(POOL_SIZE))


def child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "150", **extra}


def replay(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # -P: the current directory is not put on sys.path by Python, so resolving the checker
    # module relative to the current directory is pmemsim's doing.
    return subprocess.run(
        [sys.executable, "-P", "-m", "pmemsim", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env or child_env(),
    )


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


# -- verdicts and exit codes ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pmemcheck", "saved"])
def test_buggy_program_exit_1_with_json(work: Path, fmt: str) -> None:
    rec = record(work, buggy=True)
    if fmt == "pmemcheck":
        pristine(rec)
    log = rec.pmemcheck if fmt == "pmemcheck" else rec.saved
    before = digest(rec.pool)
    proc = replay(str(log), "--checker", "crashchecks:committed", "--json", cwd=work)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == JSON_KEYS
    assert doc["engine"] == "Exhaustive"
    assert doc["inconsistent"] > 0
    assert doc["states_checked"] >= doc["distinct_images"] > 0
    assert len(doc["failures"]) == doc["inconsistent"]
    for failure in doc["failures"]:
        assert {"epoch", "stores", "message", "markers", "prefix", "verdict"} <= set(failure)
        assert isinstance(failure["epoch"], int)
        assert failure["message"] == "checker returned False"
        # The flag reached media in every failing state.
        assert any(s["offset"] == 0 and bytes.fromhex(s["data"]) == b"COMMITED" for s in failure["stores"])
        for store in failure["stores"]:
            assert {"file", "offset", "length", "data"} <= set(store)
    # The minimal trace goes to stderr with --json.
    assert "Minimal crash" in proc.stderr and "PERSISTED" in proc.stderr and "LOST" in proc.stderr
    assert digest(rec.pool) == before
    assert not (work / "__pycache__").exists()  # importing the checker wrote nothing here


@pytest.mark.parametrize("fmt", ["pmemcheck", "saved"])
def test_correct_program_exit_0(work: Path, fmt: str) -> None:
    rec = record(work, buggy=False)
    if fmt == "pmemcheck":
        pristine(rec)
    log = rec.pmemcheck if fmt == "pmemcheck" else rec.saved
    before = digest(rec.pool)
    proc = replay(str(log), "--checker", "crashchecks:committed", "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == JSON_KEYS
    assert doc["inconsistent"] == 0 and doc["failures"] == []
    assert doc["states_checked"] > 0
    assert digest(rec.pool) == before


def test_program_checker_as_pmreorder(work: Path) -> None:
    buggy, correct = record(work, buggy=True), record(work, buggy=False)
    pristine(buggy)
    pristine(correct)
    prog = f"{sys.executable} check_prog.py"
    before = digest(buggy.pool), digest(correct.pool)
    bad = replay(str(buggy.pmemcheck), "--checker-prog", prog, "--engine", "ReorderFull", "--json", cwd=work)
    assert bad.returncode == 1, bad.stderr
    doc = json.loads(bad.stdout)
    assert doc["engine"] == "ReorderFull" and doc["inconsistent"] > 0
    assert "exit status 1: flag set over an incomplete record" in doc["failures"][0]["message"]
    good = replay(str(correct.pmemcheck), "--checker-prog", prog, "--engine", "ReorderFull", cwd=work)
    assert good.returncode == 0, good.stderr
    assert "consistent" in good.stdout
    assert (digest(buggy.pool), digest(correct.pool)) == before


def test_text_output_shows_the_minimal_trace(work: Path) -> None:
    rec = record(work, buggy=True)
    proc = replay(str(rec.saved), "--checker", "crashchecks:committed", "--engine", "ReorderFull", cwd=work)
    assert proc.returncode == 1, proc.stderr
    assert "INCONSISTENT" in proc.stdout
    assert "Minimal failing trace" in proc.stdout
    # The trace names the program's own lines (the recording kept the call sites).
    assert f"{Path(__file__).name}:" in proc.stdout
    assert "crash before this fence" in proc.stdout


def test_checker_module_from_pythonpath(work: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    rec = record(work, buggy=True)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(work)])
    proc = replay(str(rec.saved), "--checker", "crashchecks:committed", cwd=elsewhere, env=env)
    assert proc.returncode == 1, proc.stderr
    assert list(elsewhere.iterdir()) == []


def test_workers_give_the_same_verdict(work: Path) -> None:
    rec = record(work, buggy=True)
    one = replay(str(rec.saved), "--checker", "crashchecks:committed", "--json", cwd=work)
    two = replay(str(rec.saved), "--checker", "crashchecks:committed", "--json", "--workers", "2", cwd=work)
    assert one.returncode == two.returncode == 1
    docs = [json.loads(proc.stdout) for proc in (one, two)]
    for doc in docs:
        for how_it_ran in ("workers", "elapsed", "checker_calls", "warnings"):
            doc.pop(how_it_ran)
    assert docs[0] == docs[1]


def test_stale_pmemcheck_pool_is_flagged_and_image_override_fixes_it(work: Path) -> None:
    """A pmemcheck log over the file as the run left it shows no bug; --image gives the pristine copy."""
    rec = record(work, buggy=True)
    stale = replay(str(rec.pmemcheck), "--checker", "crashchecks:committed", cwd=work)
    assert stale.returncode == 0
    assert "already hold" in stale.stdout and "--image" in stale.stdout
    (work / "pristine.pmem").write_bytes(bytes(POOL_SIZE))
    before = digest(rec.pool)
    fixed = replay(
        str(rec.pmemcheck),
        "--checker",
        "crashchecks:committed",
        "--image",
        f"{rec.pool}=pristine.pmem",
        "--json",
        cwd=work,
    )
    assert fixed.returncode == 1, fixed.stderr
    assert json.loads(fixed.stdout)["inconsistent"] > 0
    assert digest(rec.pool) == before


def save_tx_log(work: Path) -> None:
    """``tx.json``: a commit flag persisted with its record inside TX.BEGIN/TX.END (a bug)."""
    rec = Recorder()
    rec.register_file("pool", None, POOL_SIZE)
    rec.mark("TX.BEGIN")
    rec.store("pool", 64, b"record. ")
    rec.store("pool", 0, b"COMMITED")
    rec.persist("pool", 0, 128)
    rec.mark("TX.END")
    save_log(rec.log, work / "tx.json")


def test_marker_engines(work: Path) -> None:
    save_tx_log(work)
    check = ("--checker", "crashchecks:committed")
    proc = replay(
        "tx.json", *check, "--engine", "NoReorderNoCheck", "-x", "TX=ReorderFull", "--json", cwd=work
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["inconsistent"] > 0
    # NoReorderNoCheck checks nothing: a silent pass is bad input unless asked for.
    quiet = replay("tx.json", *check, "--engine", "NoReorderNoCheck", cwd=work)
    assert quiet.returncode == 2
    assert "picks no crash state" in quiet.stderr and "--allow-empty" in quiet.stderr
    allowed = replay("tx.json", *check, "--engine", "NoReorderNoCheck", "--allow-empty", cwd=work)
    assert allowed.returncode == 0, allowed.stderr


# -- bad input: exit 2 ---------------------------------------------------------------------------


def test_malformed_log_line_names_the_line(work: Path) -> None:
    rec = record(work, buggy=True)
    pristine(rec)
    records = rec.pmemcheck.read_text().rstrip("\n").split("|")
    records[3] = "STORE;0x7f00000000zz;0x1;0x8"
    # One record per line: pmemcheck's own logs are one line, but the parser locates any.
    (work / "broken.log").write_text("|\n".join(records) + "\n")
    proc = replay("broken.log", "--checker", "crashchecks:committed", cwd=work)
    assert proc.returncode == 2
    assert "line 4" in proc.stderr and "record 4" in proc.stderr
    assert "0x7f00000000zz" in proc.stderr
    assert proc.stdout == ""


def test_unknown_engine_is_bad_input(work: Path) -> None:
    rec = record(work, buggy=True)
    rc, _, err = run_main("replay", str(rec.saved), "--engine", "ReorderFul", "--checker-prog", "true")
    assert rc == 2
    assert "unknown engine 'ReorderFul'" in err and "ReorderFull" in err
    rc, _, err = run_main("replay", str(rec.saved), "-x", "TX=Nope", "--checker-prog", "true")
    assert rc == 2 and "unknown engine 'Nope'" in err
    rc, _, err = run_main("replay", str(rec.saved), "-x", "TX", "--checker-prog", "true")
    assert rc == 2 and "NAME=VALUE" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checker", "no_such_checker_module_42:f"], "cannot import module 'no_such_checker_module_42'"),
        (["--checker", "json:no_such_function"], "has no 'no_such_function'"),
        (["--checker", "nocolon"], "MODULE:FUNCTION"),
        (["--checker-prog", "/no/such/checker-program"], "not found"),
        (["--checker-prog", "true", "--workers", "0"], "--workers"),
        (["--checker-prog", "true", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_checker_or_option(work: Path, args: list[str], message: str) -> None:
    rec = record(work, buggy=True)
    rc, out, err = run_main("replay", str(rec.saved), *args)
    assert rc == 2
    assert message in err
    assert out == ""


def test_checker_options_exclude_each_other(work: Path) -> None:
    rec = record(work, buggy=True)
    for args in ([], ["--checker", "a:b", "--checker-prog", "true"]):
        with contextlib.redirect_stderr(io.StringIO()):
            assert main(["replay", str(rec.saved), *args]) == 2


def test_missing_log_and_image(work: Path) -> None:
    rc, _, err = run_main("replay", str(work / "nope.log"), "--checker-prog", "true")
    assert rc == 2 and "cannot read" in err and "nope.log" in err
    rec = record(work, buggy=True)
    rc, _, err = run_main("replay", str(rec.pmemcheck), "--checker-prog", "true", "--image", "unknown=x")
    assert rc == 2 and "--image" in err
    rc, _, err = run_main(
        "replay", str(rec.pmemcheck), "--checker-prog", "true", "--image", f"{rec.pool}=/no/file"
    )
    assert rc == 2 and "/no/file" in err


def test_pmemcheck_log_without_file_is_bad_input(work: Path) -> None:
    rec = record(work, buggy=True)
    rec.pool.unlink()
    rc, _, err = run_main("replay", str(rec.pmemcheck), "--checker-prog", "true")
    assert rc == 2
    assert str(rec.pool) in err


def test_truncated_log(work: Path) -> None:
    rec = record(work, buggy=True)
    pristine(rec)
    text = rec.pmemcheck.read_text()
    (work / "cut.log").write_text(text[: text.index("|STOP")])
    rc, _, err = run_main("replay", str(work / "cut.log"), "--checker-prog", "true")
    assert rc == 2 and "STOP" in err
    rc, _, err = run_main("replay", str(work / "cut.log"), "--checker-prog", "true", "--allow-truncated")
    assert rc == 0, err


# -- the saved format ----------------------------------------------------------------------------


def test_saved_log_round_trip(work: Path) -> None:
    rec = record(work, buggy=True)
    again = load_log(rec.saved)
    assert again == rec.log
    assert again.files[str(rec.pool)].initial == bytes(POOL_SIZE)
    assert again.granularity is Granularity.CACHE_LINE
    assert loads_log(dumps_log(again)) == again
    assert read_log(rec.saved) == rec.log
    # A pmemcheck log reads back with paths as keys and the file's current content as the image.
    assert read_log(rec.pmemcheck).files[str(rec.pool)].initial is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "not a pmemsim store log"),
        (lambda d: d.update(version=9), "version 9"),
        (lambda d: d["records"][0].update(op="poke"), "records[0].op"),
        (lambda d: d["records"][0].update(offset=-1), "records[0].offset"),
        (lambda d: d["records"][0].update(data="xyz"), "records[0].data"),
        (lambda d: d["records"][0].update(offset=4090), "outside"),
        (lambda d: d["files"][0].update(initial="!!"), "files[0].initial"),
        (lambda d: d.update(granularity="HUGE"), "granularity"),
    ],
)
def test_saved_log_errors_name_the_key(work: Path, mutate: object, message: str) -> None:
    rec = record(work, buggy=True)
    doc = json.loads(rec.saved.read_text())
    assert callable(mutate)
    mutate(doc)
    bad = work / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(LogError, match=r"bad\.json"):
        load_log(bad)
    rc, _, err = run_main("replay", str(bad), "--checker-prog", "true")
    assert rc == 2
    assert message in err


def test_replay_progress_shows_states_per_second_and_time_left() -> None:
    from types import SimpleNamespace

    from pmemsim.cli._common import rate_column as _rate_column

    column = _rate_column("states")
    task = SimpleNamespace(speed=12345.6, time_remaining=75.2)
    assert column.render(task).plain == "12,345.6 states/s, 0:01:15 left"
    assert column.render(SimpleNamespace(speed=None, time_remaining=None)).plain == ""


def test_marker_engines_as_pmreorder_takes_them(work: Path) -> None:
    save_tx_log(work)
    check = ("--checker", "crashchecks:committed", "--engine", "NoReorderNoCheck", "--json")
    listed = replay("tx.json", *check, "-x", "OTHER=Exhaustive,TX=ReorderFull", cwd=work)
    assert listed.returncode == 1, listed.stderr
    assert json.loads(listed.stdout)["markers"] == {"OTHER": "Exhaustive", "TX": "ReorderFull"}
    (work / "markers.json").write_text('{"TX": "ReorderFull"}')
    from_file = replay("tx.json", *check, "-x", "markers.json", cwd=work)
    assert from_file.returncode == 1, from_file.stderr
    assert json.loads(from_file.stdout)["markers"] == {"TX": "ReorderFull"}
    (work / "bad.json").write_text('["TX", "ReorderFull"]')
    bad = replay("tx.json", *check, "-x", "bad.json", cwd=work)
    assert bad.returncode == 2 and "expected a JSON object" in bad.stderr


def test_dask_without_the_extra_is_one_line_and_exit_2(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = record(work, buggy=True)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if pmemsim[dask] were not installed
    monkeypatch.syspath_prepend(str(work))
    rc, _, err = run_main("replay", str(rec.saved), "--checker", "crashchecks:committed", "--dask", "local:1")
    assert rc == 2
    assert err.strip().splitlines()[-1] == (
        "pmemsim replay: error: --dask needs Dask distributed: pip install 'pmemsim[dask]'"
    )
