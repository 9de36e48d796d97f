"""``pmemsim run``: in-process through ``main(argv)`` and as a subprocess (``python -m pmemsim``).

Checks the exit codes (0 all held, 1 a failure, 2 bad input while the other scenarios
still run), the JUnit XML (parsed with ElementTree, one testcase per scenario and backend),
the results JSON (the format of ``pmemsim/report/results.py``), ``-k`` and ``--backend``
selection, and that nothing in the user's directory changes except the outputs asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pmemsim.cli import COMMANDS, main
from pmemsim.report.results import load_results
from pmemsim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"

BROKEN = {
    "broken_syntax.toml": '[[steps]]\nop = "drain"\nexpect = CANNOT\n',
    "broken_key.toml": '[[steps]]\nop = "drain"\nexpekt = "ok"\n',
    "broken_type.toml": '[space]\npage_size = "4096"\n[[steps]]\nop = "drain"\n',
    "broken_error_name.toml": '[[steps]]\nop = "drain"\nexpect = "CANNOT_COALESE_PARTS"\n',
    "broken_engine.toml": (
        '[crash]\nengine = "ReorderFul"\nchecker = "m:f"\nexpect = "consistent"\n[[steps]]\nop = "record"\n'
    ),
}
# Where each broken file's message must point: "file:line: key".
BROKEN_WHERE = {
    "broken_syntax.toml": ":3: (syntax)",
    "broken_key.toml": ":3: steps[0].expekt",
    "broken_type.toml": ":2: space.page_size",
    "broken_error_name.toml": ":3: steps[0].expect",
    "broken_engine.toml": ":2: crash.engine",
}


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def expected_cases() -> set[str]:
    cases = set()
    for path in SCENARIOS.glob("*.toml"):
        for backend in load_scenario(path).backends:
            cases.add(f"{path.stem}[{backend}]")
    return cases


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One in-process run of every shipped scenario with every output."""
    out_dir = tmp_path_factory.mktemp("outputs")
    junit, results = out_dir / "junit.xml", out_dir / "results.json"
    rc, out, err = run_main("run", str(SCENARIOS), "--json", "--junit", str(junit), "--results", str(results))
    return {"rc": rc, "out": out, "err": err, "junit": junit, "results": results}


# -- the shipped scenarios -----------------------------------------------------------------------


def test_every_shipped_scenario_passes(full_run: dict[str, Any]) -> None:
    assert full_run["rc"] == 0, full_run["err"]
    n = len(expected_cases())
    assert f"{n} passed, 0 failed in " in full_run["err"]  # --json moves the table to stderr
    assert "pmemsim run" in full_run["err"] and "error_enomem" in full_run["err"]


def test_json_results_structure(full_run: dict[str, Any]) -> None:
    doc = json.loads(full_run["out"])
    assert doc["format"] == "pmemsim-results" and doc["version"] == 1
    runs = doc["runs"]
    assert {f"{Path(r['name']).stem}[{r['backend']}]" for r in runs} == expected_cases()
    assert len(runs) == len(expected_cases())
    for r in runs:
        assert set(r) == {"name", "kind", "backend", "outcome", "errors", "duration", "message"}
        assert r["kind"] == "scenario" and r["outcome"] == "passed"
        assert r["name"].startswith(str(SCENARIOS)) and r["name"].endswith(".toml")
    # --results wrote the same document, in the format load_results reads.
    assert json.loads(full_run["results"].read_text()) == doc
    assert len(load_results(full_run["results"]).runs) == len(runs)


def test_each_error_scenario_reaches_its_error_on_every_backend(full_run: dict[str, Any]) -> None:
    runs = json.loads(full_run["out"])["runs"]
    error_runs = [r for r in runs if Path(r["name"]).stem.startswith("error_")]
    assert len(error_runs) == 18  # 9 documented errors x 2 backends
    for r in error_runs:
        name = Path(r["name"]).stem.removeprefix("error_").upper()
        c_name = "ENOMEM" if name == "ENOMEM" else f"PMEMSET_E_{name}"
        assert r["errors"].get(c_name, 0) >= 1, r


def test_junit_xml(full_run: dict[str, Any]) -> None:
    root = ET.parse(full_run["junit"]).getroot()
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert {c.get("name") for c in cases} == expected_cases()
    assert len(cases) == len(expected_cases()) == int(suite.get("tests", "-1"))
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert not list(root.iter("failure")) and not list(root.iter("error"))
    enomem = next(c for c in cases if c.get("name") == "error_enomem[sim]")
    assert enomem.get("classname", "").endswith("scenarios.error_enomem")
    assert "ENOMEM=2" in (enomem.findtext("system-out") or "")


# -- selection -------------------------------------------------------------------------------------


def test_k_selects_by_name_substring_ignoring_case() -> None:
    rc, out, _ = run_main("run", str(SCENARIOS), "-k", "ENOMEM", "-k", "fit_part", "--json")
    assert rc == 0
    names = sorted((Path(r["name"]).stem, r["backend"]) for r in json.loads(out)["runs"])
    assert names == [
        ("error_cannot_fit_part_map", "mmap"),
        ("error_cannot_fit_part_map", "sim"),
        ("error_enomem", "mmap"),
        ("error_enomem", "sim"),
    ]


def test_backend_override() -> None:
    rc, out, _ = run_main("run", str(SCENARIOS), "-k", "fake", "-k", "enomem", "--backend", "mmap", "--json")
    assert rc == 0
    runs = {(Path(r["name"]).stem, r["backend"]): r["outcome"] for r in json.loads(out)["runs"]}
    assert runs == {("fake_filesystem", "mmap"): "skipped", ("error_enomem", "mmap"): "passed"}
    rc, out, _ = run_main("run", str(SCENARIOS / "error_enomem.toml"), "--backend", "sim,mmap", "--json")
    assert rc == 0 and [r["backend"] for r in json.loads(out)["runs"]] == ["sim", "mmap"]


def test_seed_option_reaches_random_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    import pmemsim.persistence as persistence

    seeds: list[object] = []
    real = persistence.replay

    def spy(*args: Any, **kwargs: Any) -> Any:
        seeds.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(persistence, "replay", spy)
    rc, _, _ = run_main("run", str(SCENARIOS), "-k", "crash_commit_random", "--backend", "sim", "--seed", "5")
    assert rc == 0 and seeds == [5]


def test_nothing_selected_is_bad_input() -> None:
    rc, out, _ = run_main("run", str(SCENARIOS), "-k", "no-such-scenario")
    assert rc == 2 and "no scenario selected" in out


# -- bad input and failures ---------------------------------------------------------------------------


def make_mixed_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mixed"
    d.mkdir()
    for name in ("error_enomem.toml", "coalesce_full_before_mapping.toml"):
        shutil.copy(SCENARIOS / name, d / name)
    for name, text in BROKEN.items():
        (d / name).write_text(text)
    return d


def test_broken_scenarios_exit_2_while_the_others_run(tmp_path: Path) -> None:
    d = make_mixed_dir(tmp_path)
    junit = tmp_path / "junit.xml"
    missing = tmp_path / "missing.toml"
    rc, out, err = run_main("run", str(d), str(missing), "--json", "--junit", str(junit))
    assert rc == 2
    runs = json.loads(out)["runs"]
    passed = sorted((Path(r["name"]).stem, r["backend"]) for r in runs if r["outcome"] == "passed")
    assert passed == [
        ("coalesce_full_before_mapping", "mmap"),
        ("coalesce_full_before_mapping", "sim"),
        ("error_enomem", "mmap"),
        ("error_enomem", "sim"),
    ]
    bad = {r["name"]: r for r in runs if r["outcome"] == "error"}
    assert set(bad) == {str(d / name) for name in BROKEN} | {str(missing)}
    assert all(r["backend"] == "-" for r in bad.values())
    for name, where in BROKEN_WHERE.items():
        assert f"{d / name}{where}" in err, name
        assert f"{d / name}{where}" in bad[str(d / name)]["message"]
    assert f"{missing}: no such file or directory" in err
    assert "did you mean 'expect'?" in err and "did you mean 'ReorderFull'?" in err
    assert "4 passed, 0 failed, 6 bad input" in err
    root = ET.parse(junit).getroot()
    assert len(root.findall("testsuite/testcase")) == 10
    assert len(root.findall("testsuite/testcase/error")) == 6


def test_failing_scenario_exits_1_with_a_junit_failure(tmp_path: Path) -> None:
    text = (SCENARIOS / "error_enomem.toml").read_text().replace("limit = 32768", "limit = 65536")
    path = tmp_path / "wrong.toml"
    path.write_text(text)
    junit = tmp_path / "j.xml"
    rc, out, _ = run_main("run", str(path), "--backend", "sim", "--junit", str(junit))
    assert rc == 1
    assert "FAILED" in out and "expected ENOMEM, but the call succeeded" in out
    assert "0 passed, 1 failed" in out
    [failure] = ET.parse(junit).getroot().iter("failure")
    assert failure.get("message") == "step 3 (part_map, line 33): expected ENOMEM, but the call succeeded"


def test_only_requested_outputs_are_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    shutil.copytree(SCENARIOS, work / "scenarios")

    def snapshot() -> dict[str, tuple[int, str]]:
        out = {}
        for p in sorted(work.rglob("*")):
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p.relative_to(work))] = (st.st_mtime_ns, digest)
        return out

    before = snapshot()
    monkeypatch.chdir(work)
    rc, _, _ = run_main("run", "scenarios", "-q", "--junit", "out/junit.xml", "--results", "out/results.json")
    assert rc == 0
    after = snapshot()
    assert set(after) - set(before) == {"out", "out/junit.xml", "out/results.json"}
    assert {k: after[k] for k in before} == before


# -- help and usage -----------------------------------------------------------------------------------


def test_help() -> None:
    rc, out, _ = run_main("--help")
    assert rc == 0
    for cmd in COMMANDS:
        assert cmd.name in out
    assert "examples:" in out and "exit status" in out
    rc, out, _ = run_main("run", "--help")
    assert rc == 0
    for option in ("--backend", "-k", "--seed", "--junit", "--json", "--results", "--quiet"):
        assert option in out
    assert out.count("e.g.") >= 8  # PATH and every option show an example
    assert "pmemsim run scenarios/ --junit junit.xml" in out


@pytest.mark.parametrize(
    "argv",
    [[], ["run"], ["run", "scenarios", "--backend", "pmem"], ["run", "scenarios", "--seed", "x"], ["nope"]],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert run_main(*argv)[0] == 2


def test_version() -> None:
    rc, out, _ = run_main("--version")
    assert rc == 0 and out.startswith("pmemsim ")


# -- as a subprocess ------------------------------------------------------------------------------------


def pmemsim(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_subprocess_run_scenarios() -> None:
    proc = pmemsim("run", "scenarios/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(expected_cases())} passed, 0 failed" in proc.stdout


def test_subprocess_bad_input_exit_2_with_junit(tmp_path: Path) -> None:
    d = make_mixed_dir(tmp_path)
    proc = pmemsim("run", str(d), "--junit", str(tmp_path / "junit.xml"), "--json")
    assert proc.returncode == 2
    assert len(json.loads(proc.stdout)["runs"]) == 4 + len(BROKEN)
    assert f"{d / 'broken_key.toml'}:3: steps[0].expekt: unknown key" in proc.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == str(len(BROKEN))


def test_subprocess_help() -> None:
    proc = pmemsim("--help")
    assert proc.returncode == 0 and "pmemsim run" in proc.stdout
    proc = pmemsim("run", "--help")
    assert proc.returncode == 0 and "--junit FILE" in proc.stdout


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from pmemsim.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('rich', 'tomllib', 'pmemsim.scenario', 'pmemsim.report') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# -- crash failures explained as pytest explains them; outputs checked first; progress --------------


def _buggy_expected_consistent(tmp_path: Path) -> Path:
    """The shipped buggy commit, wrongly expected to be consistent: a failing [crash] expectation."""
    text = (SCENARIOS / "crash_commit_buggy.toml").read_text(encoding="utf-8")
    assert 'expect = "inconsistent"' in text
    path = tmp_path / "buggy_but_expected_ok.toml"
    path.write_text(text.replace('expect = "inconsistent"', 'expect = "consistent"'), encoding="utf-8")
    return path


def test_a_failed_crash_expectation_prints_the_minimal_trace(tmp_path: Path) -> None:
    scenario = _buggy_expected_consistent(tmp_path)
    junit = tmp_path / "junit.xml"
    rc, out, err = run_main("run", str(scenario), "--backend", "sim", "--junit", str(junit))
    assert rc == 1, out + err
    assert "expected consistent, got inconsistent" in out
    assert "Minimal crash before FENCE" in out
    # Each store of the trace names the scenario step that made it, as pytest names the source line.
    store_lines = [line for line in out.splitlines() if "STORE" in line]
    assert store_lines and all(f"at {scenario}:" in line for line in store_lines), store_lines
    assert "LOST" in out and "PERSISTED" in out
    (case,) = ET.parse(junit).getroot().iter("testcase")
    failure = case.find("failure")
    assert failure is not None and failure.text is not None
    assert "Minimal crash before FENCE" in failure.text and f"at {scenario}:" in failure.text


def test_passing_crash_checks_show_their_summary(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    rc, out, err = run_main("run", str(SCENARIOS), "-k", "crash_commit_correct", "--backend", "sim",
                            "--junit", str(junit))  # fmt: skip
    assert rc == 0, out + err
    assert "note" in out and "consistent:" in out and "states checked" in out
    (case,) = ET.parse(junit).getroot().iter("testcase")
    system_out = case.find("system-out")
    assert system_out is not None and "states checked" in (system_out.text or "")


@pytest.mark.parametrize("option", ["--results", "--junit"])
@pytest.mark.parametrize("where", ["under-a-file", "a-directory", "empty"])
def test_a_bad_output_path_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, where: str
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = {"under-a-file": str(blocker / "out" / "r.json"), "a-directory": str(tmp_path), "empty": ""}[where]
    ran: list[str] = []
    import pmemsim.scenario.runner as runner

    real = runner.run_scenario
    monkeypatch.setattr(runner, "run_scenario", lambda *a, **k: ran.append("x") or real(*a, **k))
    rc, out, err = run_main("run", str(SCENARIOS / "error_enomem.toml"), option, path)
    assert rc == 2
    assert out == "" and ran == []
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"pmemsim run: error: {option} ")
    assert "Traceback" not in err


def test_an_output_path_in_a_new_directory_is_fine(tmp_path: Path) -> None:
    results = tmp_path / "new" / "deeper" / "r.json"
    rc, _, err = run_main("run", str(SCENARIOS / "error_enomem.toml"), "--results", str(results), "-q")
    assert rc == 0, err
    assert load_results(results).runs


def test_progress_shows_rate_and_time_left() -> None:
    from types import SimpleNamespace

    from pmemsim.cli._common import rate_and_eta as _rate_and_eta

    assert _rate_and_eta(SimpleNamespace(speed=None, time_remaining=None)) == ""
    assert _rate_and_eta(SimpleNamespace(speed=2.5, time_remaining=64.4)) == "2.5 runs/s, 0:01:04 left"
    assert _rate_and_eta(SimpleNamespace(speed=12.0, time_remaining=None)) == "12.0 runs/s"
