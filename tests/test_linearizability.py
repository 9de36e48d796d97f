"""Durable linearizability (``recover=``): verdicts against a brute force, the API, the plugin, the CLI.

The property tests compute the expected verdicts from the brute-force crash oracle
(``support.x86_oracle``) and the definition alone: a crash right before record ``p``
lies between the outermost section markers around it, and each image it can leave must
recover to the value before that stretch or after it, the values being recovery of the
image with every store up to the boundary applied. Nothing of pmemsim's exploration is
used to compute them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.recovery import RECOVERIES, expected, first_word, logs_with_operations, picky, whole
from support.x86_oracle import EADR, OracleModel

from pmemsim.persistence import (
    CheckerError,
    PersistencyModel,
    Platform,
    Recorder,
    RecoveryChecker,
    StoreLog,
    Verdict,
    replay,
    save_log,
    shrink,
)
from pmemsim.scenario import load_scenario, run_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"

pytest_plugins = ["pytester"]


@settings(max_examples=60)
@given(
    log=logs_with_operations(),
    recover=st.sampled_from(RECOVERIES),
    models=st.sampled_from(
        [
            (PersistencyModel.adr(), OracleModel()),
            (PersistencyModel.eadr(), EADR),
            (PersistencyModel(Platform.ADR, 128), OracleModel(flush_unit=128)),  # a flush unit of two lines
        ]
    ),
)
def test_verdicts_match_the_brute_force(
    log: StoreLog, recover: Callable[[Any], object], models: tuple[PersistencyModel, OracleModel]
) -> None:
    model, oracle_model = models
    want = expected(log, recover, oracle_model)
    if want.boundary_fails:
        with pytest.raises(CheckerError, match="no crash"):
            replay(log, recover=recover, model=model)
        return
    report = replay(log, recover=recover, model=model)
    assert report.states_checked == len(want.judged)
    assert report.inconsistent == len(want.failing)
    assert report.errors == 0
    assert report.ok == (not want.failing)
    for failure in report.failures:
        assert failure.verdict is Verdict.INCONSISTENT
        assert dict(failure.details).keys() == {"step", "before", "after", "recovered"}


@settings(max_examples=25)
@given(log=logs_with_operations(max_records=20), recover=st.sampled_from([whole, first_word]))
def test_workers_give_the_same_report(log: StoreLog, recover: Callable[[Any], object]) -> None:
    assert replay(log, recover=recover, workers=2) == replay(log, recover=recover)


@settings(max_examples=25)
@given(log=logs_with_operations(), recover=st.sampled_from([whole, first_word, picky]))
def test_every_failure_shrinks_and_still_fails(log: StoreLog, recover: Callable[[Any], object]) -> None:
    try:
        checker = RecoveryChecker.for_log(log, recover)
    except CheckerError:
        return
    report = replay(log, checker)
    for failure in report.failures[:2]:
        small = shrink(log, failure, checker)
        assert "allowed:" in small.trace and small.message.startswith(("recovered", "recover raised"))


# -- hand-made logs ------------------------------------------------------------------------------------


def commit_log(*, flag_first: bool, ops: bool = True) -> StoreLog:
    """A record at +64 and a commit flag at +0, with or without an OP section around them."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    if ops:
        rec.mark("OP.BEGIN")
    if flag_first:  # BUG: the flag is made durable together with the record
        rec.store("pool", 64, b"record. record. ")
        rec.store("pool", 0, b"COMMITED")
        rec.persist("pool", 0, 128)
    else:
        rec.store("pool", 64, b"record. record. ")
        rec.persist("pool", 64, 16)
        rec.store("pool", 0, b"COMMITED")
        rec.persist("pool", 0, 8)
    if ops:
        rec.mark("OP.END")
    return rec.log


def committed(image: memoryview) -> bytes | None:
    return bytes(image[64:80]) if bytes(image[0:8]) == b"COMMITED" else None


def test_a_correct_commit_is_durably_linearizable_and_a_buggy_one_is_not() -> None:
    assert replay(commit_log(flag_first=False), recover=committed).ok
    report = replay(commit_log(flag_first=True), recover=committed)
    assert report.inconsistent and not report.errors
    message = report.failures[0].message
    assert "after a crash inside OP" in message
    assert "allowed: None (before it) or b'record. record. ' (after it)" in message
    assert dict(report.failures[0].details)["before"] == "None"
    assert report.to_dict()["failures"][0]["details"]["after"] == "b'record. record. '"


def test_a_log_without_operations_is_one_operation_and_says_so() -> None:
    report = replay(commit_log(flag_first=False, ops=False), recover=committed)
    assert report.ok
    assert any("marks no operation" in w for w in report.warnings)
    assert not replay(commit_log(flag_first=True, ops=False), recover=committed).ok


def test_a_crash_after_an_operation_must_keep_it() -> None:
    # The flag is flushed but never fenced before OP.END: inside OP both values are fine,
    # after OP.END only the committed one is.
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("OP.BEGIN")
    rec.store("pool", 64, b"record. record. ")
    rec.persist("pool", 64, 16)
    rec.store("pool", 0, b"COMMITED")
    rec.flush("pool", 0, 8)
    rec.mark("OP.END")
    rec.fence()
    report = replay(rec.log, recover=committed)
    assert report.inconsistent == 1
    failure = report.failures[0]
    assert failure.prefix == 7 and failure.markers == ("OP.BEGIN", "OP.END")
    assert "recovered None after a crash outside any operation" in failure.message
    # Verdicts are per (image, step): before OP the initial image; inside OP the initial
    # image, half and all of the record, the record with the flag; after OP the record
    # with and without the flag. 7 judged, 4 distinct images, 1 failing.
    assert (report.states_checked, report.distinct_images) == (7, 4)


def test_nested_sections_belong_to_the_outermost_operation() -> None:
    # TX ends before the flag is written: a crash between TX.END and OP.END may still
    # recover to the value before OP (the inner section is no operation of its own).
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("OP.BEGIN")
    rec.mark("TX.BEGIN")
    rec.store("pool", 64, b"record. record. ")
    rec.persist("pool", 64, 16)
    rec.mark("TX.END")
    rec.store("pool", 0, b"COMMITED")
    rec.persist("pool", 0, 8)
    rec.mark("OP.END")
    checker = RecoveryChecker.for_log(rec.log, committed)
    assert [(s.operation, s.start, s.end) for s in checker.steps] == [
        (None, 0, 0),
        ("OP", 0, 9),
        (None, 9, 10),
    ]
    assert replay(rec.log, checker).ok


def test_recovery_raising_on_a_crash_image_is_an_inconsistency_with_its_exception() -> None:
    def strict(image: memoryview) -> bytes | None:
        value = committed(image)
        if value is not None and 0 in value:
            raise ValueError("torn record")
        return value

    report = replay(commit_log(flag_first=True), recover=strict)
    assert report.inconsistent and not report.errors
    assert report.failures[0].message.startswith("recover raised ValueError: torn record, after a crash")


def test_recovery_failing_with_no_crash_is_a_checker_error_naming_the_records() -> None:
    def broken_after_the_flag(image: memoryview) -> bool:
        if bytes(image[0:8]) == b"COMMITED":
            raise RuntimeError("cannot open")
        return False

    with pytest.raises(CheckerError, match=r"after records 0\.\.6 \(no crash\): recover raised RuntimeError"):
        replay(commit_log(flag_first=False), recover=broken_after_the_flag)


def test_a_recovery_timeout_or_exit_is_a_checker_error() -> None:
    calls = []

    def exits_on_crash_images(image: memoryview) -> object:
        calls.append(1)
        if len(calls) > 3:  # the boundaries pass, crash images do not
            sys.exit(3)
        return committed(image)

    report = replay(commit_log(flag_first=False), recover=exits_on_crash_images)
    assert report.errors and report.failures[0].verdict is Verdict.ERROR
    assert "sys.exit(3)" in report.failures[0].message


def test_values_are_compared_with_eq_and_an_unusable_comparison_is_a_checker_error() -> None:
    class Weird:
        def __eq__(self, other: object) -> bool:
            raise TypeError("no comparing")

        __hash__ = None  # type: ignore[assignment]

    def weird_when_torn(image: memoryview) -> object:
        value = committed(image)
        return Weird() if value is not None and 0 in value else value

    report = replay(commit_log(flag_first=True), recover=weird_when_torn)
    assert report.errors and "cannot compare" in report.failures[0].message
    # Values that cannot be compared at all are refused before exploring.
    with pytest.raises(CheckerError, match="cannot be compared with =="):
        replay(commit_log(flag_first=True), recover=lambda image: Weird())


def test_several_files_recover_to_a_tuple() -> None:
    rec = Recorder()
    rec.register_file("a", None, 128)
    rec.register_file("b", None, 128)
    rec.mark("OP.BEGIN")
    rec.store("a", 0, b"AAAAAAAA")
    rec.store("b", 0, b"BBBBBBBB")
    rec.persist("a", 0, 8)
    rec.persist("b", 0, 8)
    rec.mark("OP.END")
    checker = RecoveryChecker.for_log(rec.log, first_word)
    assert checker.steps[1].after == (b"AAAAAAAA", b"BBBBBBBB")
    report = replay(rec.log, checker)
    # Both files must move together: one written and the other not is neither value.
    assert not report.ok and "(b'AAAAAAAA', b'\\x00" in report.failures[0].message


def test_a_checker_built_for_another_log_is_refused() -> None:
    checker = RecoveryChecker.for_log(commit_log(flag_first=False), committed)
    other = Recorder()
    other.register_file("elsewhere", None, 128)
    other.store("elsewhere", 0, b"x")
    other.persist("elsewhere", 0, 1)
    with pytest.raises(CheckerError, match="built for the files"):
        replay(other.log, checker)


def test_replay_takes_a_checker_or_recover() -> None:
    log = commit_log(flag_first=False)
    with pytest.raises(TypeError, match="not both"):
        replay(log, lambda image: True, recover=committed)
    with pytest.raises(TypeError, match="needs a checker"):
        replay(log)


def write_recovery_program(tmp_path: Path, *, signal_on_torn: bool = False) -> Path:
    script = tmp_path / "recover_pool.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            image = open(sys.argv[1], "rb").read()
            record = image[64:80]
            if image[:8] != b"COMMITED":
                print("nothing committed")
            elif 0 in record and {signal_on_torn!r}:
                os.kill(os.getpid(), signal.SIGKILL)
            elif 0 in record:
                print("torn", file=sys.stderr)
                sys.exit(4)
            else:
                print(record.decode(), " ")  # trailing white space is not part of the value
            """
        )
    )
    return script


def test_a_recovery_program_prints_the_value(tmp_path: Path) -> None:
    script = write_recovery_program(tmp_path)
    assert replay(commit_log(flag_first=False), recover=[sys.executable, "-I", "-S", str(script)]).ok
    report = replay(commit_log(flag_first=True), recover=[sys.executable, "-I", "-S", str(script)])
    assert report.inconsistent and not report.errors
    assert "recovery program: exit status 4: torn" in report.failures[0].message
    assert (
        "allowed: 'nothing committed' (before it) or 'record. record.' (after it)"
        in report.failures[0].message
    )


def test_a_recovery_program_killed_by_a_signal_is_a_checker_error(tmp_path: Path) -> None:
    script = write_recovery_program(tmp_path, signal_on_torn=True)
    report = replay(commit_log(flag_first=True), recover=[sys.executable, "-I", "-S", str(script)])
    assert report.errors and "killed by SIGKILL" in report.failures[0].message


# -- crash_check and the plugin ----------------------------------------------------------------------------


def test_crash_check_with_recover(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import pytest

            def contents(image):
                return bytes(image[64:80]) if bytes(image[0:8]) == b"COMMITED" else None

            def commit(pset, addr, buggy):
                pset.mark("OP.BEGIN")
                if buggy:
                    pset.write(addr + 64, b"record. record. ")  # BUG: not persisted before the flag
                else:
                    pset.memcpy(addr + 64, b"record. record. ")
                pset.memcpy(addr, b"COMMITED")
                pset.persist(addr + 64, 16)
                pset.mark("OP.END")

            @pytest.mark.pmemsim(device="dax")
            @pytest.mark.parametrize("buggy", [False, True])
            def test_commit(pmemset, pmem_file, crash_check, buggy):
                from pmemsim import Source
                with Source.from_file(pmem_file) as src:
                    desc = pmemset.part_map(pmemset.part_new(src, 0, 0))
                with crash_check(recover=contents):
                    commit(pmemset, desc.addr, buggy)

            def test_both_is_a_usage_error(pmemset, crash_check):
                with crash_check(lambda image: True, recover=contents):
                    pass
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # nothing shared with this process
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "crash_check: crash check needs a checker, or recover= " in out
    assert "Minimal crash" in out
    assert "allowed: None (before it) or b'record. record. ' (after it)" in out


# -- scenarios -----------------------------------------------------------------------------------------------


def _crash_scenarios() -> list[Path]:
    return sorted(SCENARIOS.glob("crash_*.toml"))


@pytest.mark.parametrize("path", _crash_scenarios(), ids=lambda p: p.stem)
def test_every_shipped_crash_scenario_gets_its_verdict_from_recovery_alone(path: Path) -> None:
    # The planted bugs are found, the correct program passes, with no hand-written checker.
    scenario = load_scenario(path)
    assert scenario.crash is not None
    crash = dataclasses.replace(
        scenario.crash,
        checker=None,
        program=None,
        recover="pmemsim.scenario.examples:committed_value",
        recover_program=None,
    )
    result = run_scenario(dataclasses.replace(scenario, crash=crash), "sim")
    assert result.outcome.value == "passed", result.message
    assert crash.expect == ("consistent" if path.stem == "crash_commit_correct" else "inconsistent")


def test_a_scenario_names_exactly_one_judge(tmp_path: Path) -> None:
    from pmemsim.scenario import ScenarioError

    text = (SCENARIOS / "crash_commit_recover.toml").read_text()
    both = tmp_path / "both.toml"
    both.write_text(
        text.replace("[crash]\n", '[crash]\nchecker = "pmemsim.scenario.examples:committed_record"\n')
    )
    with pytest.raises(ScenarioError, match="exactly one of 'checker'"):
        load_scenario(both)
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace("examples:committed_value", "examples:nope"))
    result = run_scenario_outcome(missing)
    assert "crash.recover" in result and "recovery 'pmemsim.scenario.examples:nope'" in result


def run_scenario_outcome(path: Path) -> str:
    from pmemsim.scenario import ScenarioError
    from pmemsim.scenario.runner import resolve_checker

    try:
        resolve_checker(load_scenario(path))
    except ScenarioError as exc:
        return str(exc)
    return ""


# -- the command line ---------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-P", "-m", "pmemsim", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path, "COLUMNS": "200"},
    )


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    save_log(commit_log(flag_first=False), tmp_path / "good.json")
    save_log(commit_log(flag_first=True), tmp_path / "bad.json")
    (tmp_path / "mypool.py").write_text(
        "def contents(image):\n"
        "    return bytes(image[64:80]) if bytes(image[0:8]) == b'COMMITED' else None\n"
        "def broken(image):\n"
        "    raise OSError('cannot open the pool')\n"
        "def segfault(image):\n"
        "    import ctypes\n"
        "    return ctypes.string_at(0)\n"
        "class Unpicklable:\n"
        "    def __init__(self, value):\n"
        "        self.value, self.hook = value, lambda: None\n"
        "    def __eq__(self, other):\n"
        "        return isinstance(other, Unpicklable) and other.value == self.value\n"
        "def unpicklable(image):\n"
        "    return Unpicklable(contents(image))\n"
    )
    return tmp_path


def test_cli_recover_exit_codes(logs: Path) -> None:
    good = cli("good.json", "--recover", "mypool:contents", cwd=logs)
    assert good.returncode == 0, good.stderr
    bad = cli("bad.json", "--recover", "mypool:contents", "--workers", "2", cwd=logs)
    assert bad.returncode == 1, bad.stderr
    assert "allowed: None (before it) or b'record. record. ' (after it)" in bad.stdout
    assert "Minimal failing trace" in bad.stdout


def test_cli_recover_json_carries_the_values(logs: Path) -> None:
    proc = cli("bad.json", "--recover", "mypool:contents", "--json", cwd=logs)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    details = doc["failures"][0]["details"]
    assert details["before"] == "None" and details["after"] == "b'record. record. '"
    assert details["recovered"] != details["before"] and "allowed:" in doc["trace"]


def test_cli_a_recovery_that_crashes_its_process_is_exit_2(logs: Path) -> None:
    proc = cli("good.json", "--recover", "mypool:segfault", cwd=logs)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "recover crashed its process" in proc.stderr and "SIGSEGV" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_values_that_cannot_be_pickled_still_work(logs: Path) -> None:
    # The boundary values are computed apart when they can come back, else in the command.
    assert cli("good.json", "--recover", "mypool:unpicklable", cwd=logs).returncode == 0
    assert cli("bad.json", "--recover", "mypool:unpicklable", cwd=logs).returncode == 1


def test_cli_recover_prog(logs: Path) -> None:
    script = write_recovery_program(logs)
    command = f"{sys.executable} -I -S {script.name}"
    assert cli("good.json", "--recover-prog", command, cwd=logs).returncode == 0
    assert cli("bad.json", "--recover-prog", command, cwd=logs).returncode == 1


def test_shard_results_keep_each_failure_details_and_old_shards_are_refused() -> None:
    from pmemsim.persistence.shards import ShardError, explore_shard, merge_shards

    log = commit_log(flag_first=True)
    plain = replay(log, recover=committed)
    checker = RecoveryChecker.for_log(log, committed)
    docs = [json.loads(json.dumps(explore_shard(log, checker, k, 2))) for k in (1, 2)]
    report = merge_shards(log, checker, docs)
    assert plain.failures and all(dict(f.details)["recovered"] for f in plain.failures)
    assert [f.details for f in report.failures] == [f.details for f in plain.failures]
    assert [f.message for f in report.failures] == [f.message for f in plain.failures]
    failing = next(d for d in docs if any(r["failures"] for r in d["results"]))
    old = json.loads(json.dumps(failing))
    old["version"] = 1
    with pytest.raises(ShardError, match="shard format version 1, expected 2"):
        merge_shards(log, checker, [old if d is failing else d for d in docs])
    for r in failing["results"]:
        for f in r["failures"]:
            f[7] = [["before"]]  # hand-edited: not a [name, text] pair
    with pytest.raises(ShardError, match="details must be a list of"):
        merge_shards(log, checker, docs)


def merge_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-P", "-m", "pmemsim", "merge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )


def how_it_ran_removed(doc: dict[str, Any]) -> dict[str, Any]:
    """A --json report without what depends on how the replay ran (time, calls, workers)."""
    return {k: v for k, v in doc.items() if k not in ("checker_calls", "elapsed", "workers")}


@pytest.mark.parametrize(
    ("log", "judge", "counts"),
    [
        ("bad.json", "function", (1, 2, 3)),
        ("good.json", "function", (1, 2, 3)),
        ("bad.json", "program", (2,)),  # a program per state: one split is enough
    ],
)
def test_cli_recover_shards_merge_into_the_plain_replay(
    logs: Path, log: str, judge: str, counts: tuple[int, ...]
) -> None:
    if judge == "function":
        recover = ["--recover", "mypool:contents"]
    else:
        recover = ["--recover-prog", f"{sys.executable} -I -S {write_recovery_program(logs).name}"]
    plain = cli(log, *recover, "--json", cwd=logs)
    assert plain.returncode == (1 if log == "bad.json" else 0), plain.stderr
    expected = json.loads(plain.stdout)
    if log == "bad.json":  # the check found something, with the values behind each failure
        assert expected["failures"] and all(f["details"]["recovered"] for f in expected["failures"])
    for shards in counts:
        names = []
        for k in range(1, shards + 1):
            shard = cli(log, *recover, "--shard", f"{k}/{shards}", cwd=logs)
            assert shard.returncode == 0, shard.stderr
            params = json.loads(shard.stdout)["params"]
            assert (params["recover"], params["recover_prog"], params["checker"]) == (
                (recover[1], None, None) if judge == "function" else (None, recover[1], None)
            )
            (logs / f"shard{k}.json").write_text(shard.stdout)
            names.append(f"shard{k}.json")
        merged = merge_cli(*names, "--json", cwd=logs)
        assert merged.returncode == plain.returncode, merged.stderr
        got = json.loads(merged.stdout)
        assert how_it_ran_removed(got) == how_it_ran_removed(expected), f"{shards} shard(s)"


def test_merge_refuses_params_naming_two_judges_or_none(logs: Path) -> None:
    shard = cli("bad.json", "--recover", "mypool:contents", "--shard", "1/1", cwd=logs)
    assert shard.returncode == 0, shard.stderr
    doc = json.loads(shard.stdout)
    for extra, named in (
        ({"checker": "mypool:contents"}, "params.checker and params.recover"),
        ({"recover_prog": "true"}, "params.recover and params.recover_prog"),
        ({"recover": None}, "not none"),
    ):
        (logs / "edited.json").write_text(json.dumps({**doc, "params": {**doc["params"], **extra}}))
        proc = merge_cli("edited.json", cwd=logs)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "exactly one of checker, checker_prog, recover, recover_prog" in proc.stderr
        assert named in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    (logs / "edited.json").write_text(json.dumps({**doc, "params": {**doc["params"], "recover": 3}}))
    proc = merge_cli("edited.json", cwd=logs)
    assert proc.returncode == 2 and "params.recover is 3" in proc.stderr


def test_cli_recover_on_dask_gives_the_plain_replay(logs: Path) -> None:
    pytest.importorskip("distributed", reason="Dask distributed comes with pmemsim[dask]")
    plain = cli("bad.json", "--recover", "mypool:contents", "--json", cwd=logs)
    dask = cli("bad.json", "--recover", "mypool:contents", "--json", "--dask", "local:1", cwd=logs)
    assert dask.returncode == plain.returncode == 1, dask.stderr
    assert how_it_ran_removed(json.loads(dask.stdout)) == how_it_ran_removed(json.loads(plain.stdout))


def test_a_recovery_the_workers_cannot_run_is_refused_up_front(logs: Path) -> None:
    import argparse

    from pmemsim.cli.replay import _check_workers_can_run
    from pmemsim.persistence import ProgramChecker
    from pmemsim.persistence.linearizability import recovery_for

    class Workers:
        """A Dask client whose second worker lacks everything."""

        def run(self, fn: Any, *args: Any) -> dict[str, Any]:
            if fn is __import__:
                raise ModuleNotFoundError(f"No module named {args[0]!r}")
            return {"tcp://10.0.0.1:1": "/usr/bin/true", "tcp://10.0.0.2:1": None}

    log = commit_log(flag_first=False)
    program = RecoveryChecker.for_log(log, recovery_for("true"))
    args = argparse.Namespace(checker=None, recover=None)
    with pytest.raises(
        ValueError, match=r"recovery program 'true' is not found on worker\(s\) tcp://10.0.0.2:1"
    ):
        _check_workers_can_run(Workers(), program, args, ProgramChecker)
    function = RecoveryChecker.for_log(log, committed)
    args = argparse.Namespace(checker=None, recover="mypool:contents")
    with pytest.raises(ValueError, match="--recover 'mypool:contents': module 'mypool' cannot be imported"):
        _check_workers_can_run(Workers(), function, args, ProgramChecker)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--recover", "mypool"], "--recover 'mypool': expected MODULE:FUNCTION"),
        (["--recover", "nomodule:contents"], "--recover 'nomodule:contents': cannot import module"),
        (["--recover-prog", "/no/such/recover"], "--recover-prog '/no/such/recover': recovery program"),
        (["--recover", "mypool:broken"], "(no crash): recover raised OSError: cannot open the pool"),
        (["--recover", "mypool:contents", "--shard", "0/2"], "--shard '0/2': expected K/N"),
    ],
)
def test_cli_bad_recover_is_one_line_and_exit_2(logs: Path, option: list[str], message: str) -> None:
    proc = cli("good.json", *option, cwd=logs)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_recover_and_checker_are_exclusive(logs: Path) -> None:
    proc = cli("good.json", "--recover", "mypool:contents", "--checker", "mypool:contents", cwd=logs)
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_a_pmemcheck_log_gets_the_same_check(tmp_path: Path) -> None:
    # The values at the boundaries come from the log at replay time, so an imported
    # pmemcheck log (which keeps no recovered value) is judged as the recorded one.
    from pmemsim.persistence import dumps_pmemcheck, loads_pmemcheck

    for flag_first in (False, True):
        recorded = commit_log(flag_first=flag_first)
        pool = tmp_path / "pool"
        recorded.files["pool"] = dataclasses.replace(recorded.files["pool"], path=str(pool))
        text = dumps_pmemcheck(recorded)
        pool.write_bytes(bytes(4096))  # the pool before the first store, as pmreorder wants it
        imported = loads_pmemcheck(text)
        want = replay(recorded, recover=committed)
        got = replay(imported, recover=committed)
        assert (got.ok, got.inconsistent, got.states_checked) == (
            want.ok,
            want.inconsistent,
            want.states_checked,
        )
        assert got.ok is not flag_first


def test_all_files_recovers_every_file_in_one_call(tmp_path: Path) -> None:
    from pmemsim import Config, Granularity, PmemSet, Source
    from pmemsim.testing.crash import CrashCheck, CrashConsistencyError

    seen: list[set[str]] = []

    def both(images: dict[str, memoryview]) -> tuple[bytes, ...]:
        seen.append(set(images))
        return tuple(bytes(images[k][0:8]) for k in sorted(images))

    paths = [tmp_path / "a.pool", tmp_path / "b.pool"]
    for p in paths:
        p.write_bytes(bytes(4096))
    with PmemSet(Config(Granularity.CACHE_LINE)) as pset:
        addrs = []
        for p in paths:
            pset.address_space.set_device_granularity(str(p), Granularity.CACHE_LINE)
            with Source.from_file(str(p)) as src:
                addrs.append(pset.part_map(pset.part_new(src, 0, 0)).addr)
        # The two files are persisted one after the other: a crash between them is neither value.
        with (
            pytest.raises(CrashConsistencyError, match="inside OP"),
            CrashCheck(pset, recover=both, all_files=True),
        ):
            pset.mark("OP.BEGIN")
            pset.memcpy(addrs[0], b"AAAAAAAA")
            pset.memcpy(addrs[1], b"BBBBBBBB")
            pset.mark("OP.END")
    assert seen and all(keys == {str(p) for p in paths} for keys in seen)


def test_a_recovery_that_hangs_on_a_crash_image_is_a_checker_error() -> None:
    def hangs_on_torn_records(image: memoryview) -> bytes | None:
        value = committed(image)
        while value is not None and 0 in value:
            pass  # a recovery stuck on the torn record
        return value

    report = replay(commit_log(flag_first=True), recover=hangs_on_torn_records, timeout=0.2)
    assert report.errors and "recover timed out after 0.2 s" in report.failures[0].message


def test_values_that_are_not_equal_to_themselves_are_refused_up_front() -> None:
    class Opaque:  # no __eq__: compared by identity, so no crash image could ever match
        pass

    with pytest.raises(CheckerError, match="unequal values for the same image"):
        replay(commit_log(flag_first=False), recover=lambda image: Opaque())


def test_an_executor_running_tasks_in_threads_gives_the_same_report() -> None:
    # Each task judges with its own copy of the checker (its own watchdog): no state is shared.
    import concurrent.futures

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(6):
        rec.mark("OP.BEGIN")
        rec.store("pool", 64 * (i + 1), bytes([i + 1]) * 16)
        if i % 2:  # every other operation persists its record before its commit word: the others tear
            rec.persist("pool", 64 * (i + 1), 16)
        rec.store("pool", 8 * i, b"COMMITED")
        rec.persist("pool", 0, 64 * (i + 2))
        rec.mark("OP.END")

    def state(image: memoryview) -> list[bytes]:
        return [bytes(image[64 * (i + 1) : 64 * (i + 1) + 16]) for i in range(6) if image[8 * i] == ord("C")]

    want = replay(rec.log, recover=state)
    assert want.inconsistent
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        assert replay(rec.log, recover=state, executor=executor, timeout=30.0) == want
