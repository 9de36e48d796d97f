"""Fault sweeps over scenario files: ``sweep_scenario`` and ``pmemsim run --fault-sweep``.

The shipped scenarios are swept on every CI run, on a deterministic sample (the first
and the last hit of every site each scenario reaches); the whole sweep runs under
``-m slow``. A broken rollback planted in the core must be caught, and the command's
exit codes are 0 (clean), 1 (a pair misbehaved) and 2 (bad input).
"""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from pmemsim.cli import main
from pmemsim.faults import FaultPoint
from pmemsim.report.results import FaultOutcome, Outcome, load_results
from pmemsim.scenario import load_scenario
from pmemsim.scenario.runner import run_scenario, sweep_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))

#: Misbehaviour the sweep finds in pmemsim itself, until it is fixed: (scenario, backend, pair).
#: Empty: a rollback runs outside the plan (it once failed at os.mmap@3 of granularity_mismatch
#: on mmap, leaving a reservation behind; test_a_faulted_rollback_still_completes keeps it so).
KNOWN: set[tuple[str, str, str]] = set()


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def edges(points: list[FaultPoint]) -> Sequence[FaultPoint]:
    """The first and the last hit of every site: each site is failed once where it starts and ends."""
    last: dict[object, int] = {}
    for p in points:
        last[p.site] = max(last.get(p.site, 0), p.hit)
    return [p for p in points if p.hit in (1, last[p.site])]


def misbehaving(path: Path, results: list) -> set[tuple[str, str, str]]:
    return {
        (path.name, r.backend, r.fault.point)
        for r in results
        if r.fault is not None and not r.fault.outcome.ok
    }


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_survive_a_sampled_fault_sweep(path: Path) -> None:
    scenario = load_scenario(path)
    for backend in scenario.backends:
        results = sweep_scenario(scenario, backend, name=path.name, select=edges)
        plain, faulted = results[0], results[1:]
        assert plain.fault is None and plain.outcome is Outcome.PASSED, plain.message
        driven = {(path.name, backend, r.fault.point) for r in faulted if r.fault is not None}
        assert misbehaving(path, faulted) == KNOWN & driven, [r.message for r in faulted if r.fault]
        # A scenario that maps anything reaches fault sites: the sweep is not empty.
        if any(step.op == "part_map" for step in scenario.steps):
            assert faulted, f"{path.name} [{backend}]: no fault site reached"


@pytest.mark.slow
def test_the_whole_sweep_of_the_shipped_scenarios(tmp_path: Path) -> None:
    rc, _out, err = run_main(
        "run", "--fault-sweep", "-q", str(REPO / "scenarios"), "--results", str(tmp_path / "r")
    )
    runs = load_results(tmp_path / "r").runs
    found = {
        (Path(r.name).name, r.backend, r.fault.point) for r in runs if r.fault and not r.fault.outcome.ok
    }
    assert found == KNOWN, err
    assert rc == (1 if KNOWN else 0)


def test_a_rollback_is_no_fault_site() -> None:
    # On mmap, a failed part_map is rolled back by mapping PROT_NONE over the range: were the
    # rollback under the plan, its os.mmap would be a hit of its own that, failed, leaves a
    # reservation behind. Every pair of the whole sweep must behave.
    path = REPO / "scenarios" / "granularity_mismatch.toml"
    faulted = [r for r in sweep_scenario(load_scenario(path), "mmap", name=path.name) if r.fault]
    assert any(r.fault.site == "os.mmap" for r in faulted if r.fault)
    assert misbehaving(path, faulted) == set(), [
        r.message for r in faulted if r.fault and not r.fault.outcome.ok
    ]


def test_a_broken_rollback_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import pmemsim.pmemset

    monkeypatch.setattr(pmemsim.pmemset, "_undo_all", lambda actions: None)  # the planted bug
    path = REPO / "scenarios" / "coalesce_none_after_mapping.toml"
    results = sweep_scenario(load_scenario(path), "sim", name=path.name)
    assert results[0].outcome is Outcome.PASSED  # without faults nothing is rolled back
    bad = {r.fault.point: r.message for r in results if r.fault is not None and not r.fault.outcome.ok}
    # map.file fails after the reservation was made: the reservation must be rolled back.
    assert "map.file@1" in bad, bad
    assert "changed the state" in bad["map.file@1"] and "space_reservations" in bad["map.file@1"]
    assert bad["map.file@1"].startswith("map.file@1: failed: step ")
    # The stack names the scenario line of the step that met the failure: the first part_map
    # (a step's line is that of its [[steps]] header).
    lines = path.read_text().splitlines()
    op = next(i for i, t in enumerate(lines) if t.strip() == 'op = "part_map"')
    header = max(i for i in range(op) if lines[i].strip() == "[[steps]]") + 1
    assert f"(part_map, line {header})" in bad["map.file@1"]
    assert bad["map.file@1"].endswith(f"coalesce_none_after_mapping.toml:{header}")


def test_one_fault_judges_the_run() -> None:
    scenario = load_scenario(REPO / "scenarios" / "error_enomem.toml")
    raised = run_scenario(scenario, "sim", fault=FaultPoint.parse("map.file@1"))
    assert raised.fault is not None and raised.fault.outcome is FaultOutcome.RAISED
    assert raised.outcome is Outcome.PASSED
    unreached = run_scenario(scenario, "sim", fault=FaultPoint.parse("map.file@40"))
    assert unreached.fault is not None and unreached.fault.outcome is FaultOutcome.UNREACHED
    assert unreached.outcome is Outcome.FAILED


# -- the command ----------------------------------------------------------------------------------------


def test_cli_sweep_exit_0_when_clean(tmp_path: Path) -> None:
    rc, _out, err = run_main(
        "run",
        "--fault-sweep",
        str(REPO / "scenarios"),
        "-k",
        "error_length_unaligned",
        "--results",
        str(tmp_path / "r"),
        "--junit",
        str(tmp_path / "j.xml"),
    )
    assert rc == 0, err
    runs = load_results(tmp_path / "r").runs
    faulted = [r for r in runs if r.fault is not None]
    assert faulted and all(r.outcome is Outcome.PASSED for r in faulted)
    assert f"{len(faulted)} (site, hit) pair(s) driven, 0 misbehaved" in err + _out
    names = [c.get("name") for c in ET.parse(tmp_path / "j.xml").iter("testcase")]
    expected = {f"error_length_unaligned[{r.backend}] {r.fault.point}" for r in faulted if r.fault}
    assert len(names) == len(set(names)) == len(runs) and expected <= set(names)


def test_cli_sweep_exit_1_on_misbehaviour_with_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    import pmemsim.pmemset

    monkeypatch.setattr(pmemsim.pmemset, "_undo_all", lambda actions: None)
    rc, out, err = run_main(
        "run", "--fault-sweep", str(REPO / "scenarios"), "-k", "coalesce_none_after", "--backend", "sim"
    )
    text = out + err
    assert rc == 1
    lines = [line for line in text.splitlines() if line.startswith("MISBEHAVED ")]
    assert lines and all("coalesce_none_after_mapping.toml [sim] " in line for line in lines)
    assert any(" map.file@1: failed: " in line for line in lines)
    assert "whole sweep: pmemsim run --fault-sweep --backend=sim -k coalesce_none_after " in text
    assert "one (site, hit): pmemsim run " in text and "--fault=" in text


def test_cli_one_fault(tmp_path: Path) -> None:
    path = str(REPO / "scenarios" / "error_enomem.toml")
    rc, _out, err = run_main("run", path, "--backend", "sim", "--fault", "alloc.source@1", "--json")
    assert rc == 0, err
    (run,) = json.loads(_out)["runs"]
    assert run["fault"] == {"site": "alloc.source", "hit": 1, "outcome": "raised"}
    rc, _out, err = run_main("run", path, "--backend", "sim", "--fault", "alloc.source@9")
    assert rc == 1
    assert "alloc.source@9: unreached" in err + _out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fault", "os.msync"), "--fault: fault point 'os.msync' is not SITE@HIT"),
        (("--fault", "disk.full@1"), "unknown fault site 'disk.full'"),
        (("--fault", "os.msync@0"), "the hit must be a positive number"),
        (("--fault", "os.msync@1", "--fault-sweep"), "cannot go with --fault-sweep"),
    ],
)
def test_cli_bad_fault_options_exit_2(args: tuple[str, ...], message: str) -> None:
    rc, out, err = run_main("run", str(REPO / "scenarios" / "error_enomem.toml"), *args)
    assert rc == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


def test_cli_sweep_of_a_missing_path_exit_2(tmp_path: Path) -> None:
    rc, _out, err = run_main("run", "--fault-sweep", str(tmp_path / "nope"))
    assert rc == 2
    assert "nope" in err + _out


def test_report_shows_the_pairs_driven(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    rc, _out, err = run_main(
        "run", "--fault-sweep", "-q", str(REPO / "scenarios"), "-k", "error_enomem", "--results", str(results)
    )
    assert rc == 0, err
    data = json.loads(results.read_text())
    pairs = [r for r in data["runs"] if "fault" in r]
    by_site = Counter(r["fault"]["site"] for r in pairs)
    rc, out, err = run_main(
        "report", "--from", str(results), "--json", "--html", str(tmp_path / "index.html")
    )
    assert rc == 0, err
    sweep = json.loads(out)["fault_sweep"]
    assert sweep["driven"] == len(pairs)
    assert {s["site"]: s["driven"] for s in sweep["sites"]} == dict(by_site)
    assert sorted((p["name"], p["backend"], p["site"], p["hit"]) for p in sweep["pairs"]) == sorted(
        (r["name"], r["backend"], r["fault"]["site"], r["fault"]["hit"]) for r in pairs
    )
    html = (tmp_path / "index.html").read_text()
    assert html.count("data-pair=") == len(pairs)
    for site, n in by_site.items():
        assert f'data-site="{site}" data-outcome="raised" data-count="{n}"' in html
