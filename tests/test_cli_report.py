"""``pmemsim report``: the error-path coverage matrix, end to end through the command line.

The shipped scenarios run as a subprocess (``pmemsim run scenarios/ --results R.json``),
then ``pmemsim report --from R.json --html OUT``. Expected counts are computed here from
the results JSON itself (never from pmemsim.report.matrix), and the HTML is parsed with
the standard library's parser through its documented hooks (``data-error`` rows,
``data-column``/``data-count`` cells). The honesty test deletes the scenarios that reach
one error, reruns, and checks that its cells turn red with 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pmemsim.cli import main
from pmemsim.errors import ErrorCode

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"

#: The errors pmemset_part_map(3) documents (reference/pmemset_part_map.3.newer.txt), by hand.
MAN_PAGE = {
    "PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE",
    "PMEMSET_E_INVALID_OFFSET_VALUE",
    "PMEMSET_E_GRANULARITY_NOT_SUPPORTED",
    "PMEMSET_E_INVALID_PMEM2_MAP",
    "PMEMSET_E_LENGTH_UNALIGNED",
    "PMEMSET_E_CANNOT_COALESCE_PARTS",
    "PMEMSET_E_CANNOT_TRUNCATE_SOURCE_FILE",
    "ENOMEM",
    "PMEMSET_E_CANNOT_FIT_PART_MAP",
}
EVERY_CODE = {f"PMEMSET_E_{c.name}" if c.name != "ENOMEM" else "ENOMEM" for c in ErrorCode}


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with the repository first on PYTHONPATH (what was there stays)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def pmemsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(COLUMNS="150"),
    )


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


class MatrixPage(HTMLParser):
    """Collects the matrix rows: ``rows[error] = {column: (count, classes)}`` and row classes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, tuple[int, set[str]]]] = {}
        self.row_classes: dict[str, set[str]] = {}
        self.tags: Counter[str] = Counter()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            if key in a:
                self.links.append(a[key])
        if tag == "tr" and "data-error" in a:
            self._row = a["data-error"]
            self.rows[self._row] = {}
            self.row_classes[self._row] = set(a.get("class", "").split())
        elif tag == "td" and self._row is not None and "data-column" in a:
            self.rows[self._row][a["data-column"]] = (int(a["data-count"]), set(a.get("class", "").split()))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None


def parse_page(path: Path) -> MatrixPage:
    page = MatrixPage()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def expected_counts(results: Path) -> tuple[dict[tuple[str, str], int], Counter[str]]:
    """From the results JSON alone: {(error, "backend/kind"): times raised}, and runs per column."""
    data = json.loads(results.read_text(encoding="utf-8"))
    counts: dict[tuple[str, str], int] = {}
    runs: Counter[str] = Counter()
    for run in data["runs"]:
        if run["backend"] == "-":
            continue
        column = f"{run['backend']}/{run['kind']}"
        runs[column] += 1
        for name, n in run["errors"].items():
            counts[(name, column)] = counts.get((name, column), 0) + n
    return counts, runs


def run_and_report(
    scenarios: Path, out: Path, *extra: str
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    results, html = out / "results.json", out / "report" / "index.html"
    ran = pmemsim("run", str(scenarios), "--results", str(results), "-q", cwd=out)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rep = pmemsim("report", "--from", str(results), "--html", str(html), *extra, cwd=out)
    return results, html, rep


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    results, html, rep = run_and_report(SCENARIOS, out)
    return {"out": out, "results": results, "html": html, "proc": rep, "page": parse_page(html)}


def check_page_against_results(page: MatrixPage, results: Path) -> None:
    counts, runs = expected_counts(results)
    for column in runs:
        assert all(column in cells for cells in page.rows.values()), column
    for error, cells in page.rows.items():
        for column, (count, classes) in cells.items():
            if column == "total":
                want = sum(n for (e, _), n in counts.items() if e == error)
                assert count == want, (error, column)
                continue
            assert count == counts.get((error, column), 0), (error, column)
            if runs[column] == 0:
                assert "norun" in classes, (error, column)
            elif count == 0:
                assert "zero" in classes, (error, column)
            else:
                assert "hit" in classes, (error, column)
    # Every error a run raised has a row.
    assert {e for e, _ in counts} <= set(page.rows)


# -- the shipped scenarios -----------------------------------------------------------------------


def test_report_exit_0_and_terminal_table(shipped: dict[str, Any]) -> None:
    proc = shipped["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "CANNOT_FIT_PART_MAP" in proc.stdout
    assert "9 of 9 pmemset_part_map(3) errors reached" in proc.stdout
    assert f"wrote {shipped['html']}" in proc.stdout


def test_html_has_a_row_per_documented_error(shipped: dict[str, Any]) -> None:
    page: MatrixPage = shipped["page"]
    assert set(page.rows) >= EVERY_CODE
    for name in MAN_PAGE:
        assert "man-page" in page.row_classes[name], name
    for name in EVERY_CODE - MAN_PAGE:
        assert "man-page" not in page.row_classes[name], name


def test_html_counts_match_the_results_json(shipped: dict[str, Any]) -> None:
    page: MatrixPage = shipped["page"]
    check_page_against_results(page, shipped["results"])
    counts, runs = expected_counts(shipped["results"])
    # The shipped scenarios reach every documented part_map error on both backends.
    for name in MAN_PAGE:
        for column in ("sim/scenario", "mmap/scenario"):
            assert counts.get((name, column), 0) > 0, (name, column)
            assert page.rows[name][column][0] == counts[(name, column)]
    # No test results were given: the test columns exist, without runs, greyed.
    assert runs["sim/test"] == 0
    assert page.rows["ENOMEM"]["sim/test"] == (0, {"count", "norun"})


def test_html_is_self_contained(shipped: dict[str, Any]) -> None:
    page: MatrixPage = shipped["page"]
    text = shipped["html"].read_text(encoding="utf-8")
    assert page.tags["script"] == 0
    # Links only within the page (a count to its list of runs), and every target exists.
    assert page.links and all(link.startswith("#") for link in page.links)
    assert {link[1:] for link in page.links} <= page.ids
    assert "<style>" in text
    assert text.startswith("<!DOCTYPE html>")
    # Without coverage data the page says how to get it.
    assert "coverage-note" in text


def test_nothing_else_is_written(shipped: dict[str, Any]) -> None:
    out: Path = shipped["out"]
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert found == ["report", "report/index.html", "results.json"]


@pytest.mark.parametrize("error", ["PMEMSET_E_CANNOT_FIT_PART_MAP", "PMEMSET_E_LENGTH_UNALIGNED"])
def test_matrix_is_honest(error: str, shipped: dict[str, Any], tmp_path: Path) -> None:
    """Delete every scenario that reaches ``error`` (found in the results JSON): its cells turn red, 0."""
    data = json.loads(shipped["results"].read_text(encoding="utf-8"))
    reaching = {Path(r["name"]).name for r in data["runs"] if r["errors"].get(error)}
    assert reaching, f"no shipped scenario reaches {error}"
    before = shipped["page"].rows[error]
    assert before["sim/scenario"][0] > 0 and "hit" in before["sim/scenario"][1]

    copy = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS, copy)
    for name in reaching:
        (copy / name).unlink()
    results, html, rep = run_and_report(copy, tmp_path, "--fail-unreached")
    page = parse_page(html)
    for column in ("sim/scenario", "mmap/scenario", "total"):
        count, classes = page.rows[error][column]
        assert count == 0, column
        assert "zero" in classes, column
    assert "unreached" in page.row_classes[error]
    # Every other cell still says what the new results say.
    check_page_against_results(page, results)
    # A man-page error never reached fails the CI gate.
    assert rep.returncode == 1, rep.stderr
    assert error in rep.stdout
    assert "8 of 9" in rep.stdout


def test_fail_unreached_passes_on_the_shipped_set(shipped: dict[str, Any]) -> None:
    rc, _, err = run_main("report", "--from", str(shipped["results"]), "--fail-unreached")
    assert rc == 0, err


# -- merging, JSON output, defaults --------------------------------------------------------------


def test_merges_test_results(shipped: dict[str, Any], tmp_path: Path) -> None:
    tests = tmp_path / "tests.json"
    runs = [
        {"name": "t.py::a", "kind": "test", "backend": "sim", "outcome": "passed",
         "errors": {"PMEMSET_E_NO_PART_MAPPED": 2, "ENOENT": 1}},
        {"name": "t.py::b", "kind": "test", "backend": "own", "outcome": "failed",
         "errors": {"PMEMSET_E_CANNOT_FIT_PART_MAP": 1}, "message": "AssertionError: boom"},
        {"name": "t.py::c", "kind": "test", "backend": "sim", "outcome": "passed", "errors": {}},
    ]  # fmt: skip
    tests.write_text(json.dumps({"format": "pmemsim-results", "version": 1, "runs": runs}))
    html = tmp_path / "index.html"
    rc, out, err = run_main(
        "report", "--from", str(shipped["results"]), "--from", str(tests), "--html", str(html), "--json"
    )
    assert rc == 1, err  # t.py::b failed
    doc = json.loads(out)
    assert (doc["format"], doc["version"]) == ("pmemsim-report", 1)
    assert doc["failed"] == [
        {"name": "t.py::b", "kind": "test", "backend": "own", "outcome": "failed",
         "message": "AssertionError: boom"}
    ]  # fmt: skip
    rows = {r["name"]: r for r in doc["rows"]}
    assert rows["PMEMSET_E_NO_PART_MAPPED"]["counts"]["sim/test"] == 2
    assert rows["PMEMSET_E_NO_PART_MAPPED"]["reached_by"] == {"sim/test": ["t.py::a"]}
    assert rows["ENOENT"]["counts"]["sim/test"] == 1 and not rows["ENOENT"]["man_page"]
    assert rows["PMEMSET_E_CANNOT_FIT_PART_MAP"]["counts"]["own/test"] == 1
    columns = {(c["backend"], c["kind"]): c["runs"] for c in doc["columns"]}
    assert columns[("sim", "test")] == 2 and columns[("own", "test")] == 1
    meanings = {c["backend"]: c["meaning"] for c in doc["columns"]}
    assert "pmem_space" in meanings["own"] and "simulated" in meanings["sim"]
    assert "1 run(s) failed" in err and "FAILED t.py::b (test, own): AssertionError: boom" in err
    page = parse_page(html)
    assert page.rows["ENOENT"]["sim/test"] == (1, {"count", "hit"})
    assert page.rows["PMEMSET_E_NO_PART_MAPPED"]["mmap/test"][1] == {"count", "norun"}
    assert "zero" in page.rows["PMEMSET_E_NO_PART_MAPPED"]["sim/scenario"][1]


def test_reads_reports_results_json_by_default(shipped: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    shutil.copy(shipped["results"], tmp_path / "reports" / "results.json")
    proc = pmemsim("report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "9 of 9" in proc.stdout


def test_load_errors_are_counted_not_reached(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    runs = [
        {"name": "bad.toml", "kind": "scenario", "backend": "-", "outcome": "error", "errors": {}},
        {"name": "ok.toml", "kind": "scenario", "backend": "sim", "outcome": "passed",
         "errors": {"ENOMEM": 1}},
    ]  # fmt: skip
    results.write_text(json.dumps({"format": "pmemsim-results", "version": 1, "runs": runs}))
    rc, out, err = run_main("report", "--from", str(results), "--json")
    assert rc == 1, err  # a scenario file that could not be loaded is a failed run
    doc = json.loads(out)
    assert doc["runs"] == 2 and doc["unloaded"] == 1
    assert [f["name"] for f in doc["failed"]] == ["bad.toml"]
    assert all(c["backend"] != "-" for c in doc["columns"])
    assert "could not be loaded" in err


# -- bad input -----------------------------------------------------------------------------------


def test_no_results_is_bad_input(tmp_path: Path) -> None:
    proc = pmemsim("report", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--from" in proc.stderr and "reports/results.json" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_results_file_is_bad_input(tmp_path: Path) -> None:
    rc, _, err = run_main("report", "--from", str(tmp_path / "nope.json"))
    assert rc == 2
    assert "nope.json" in err


def test_malformed_results_file_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "pmemsim-results", "version": 1,\n "runs": [\n')
    rc, _, err = run_main("report", "--from", str(bad), "--html", str(tmp_path / "x.html"))
    assert rc == 2
    assert "bad.json:3" in err
    assert not (tmp_path / "x.html").exists()


def test_missing_coverage_file_is_bad_input(shipped: dict[str, Any], tmp_path: Path) -> None:
    rc, _, err = run_main("report", "--from", str(shipped["results"]), "--coverage", str(tmp_path / ".cov"))
    assert rc == 2
    assert ".cov" in err


# -- coverage.py data ----------------------------------------------------------------------------


def test_without_coverage_py_the_page_says_so(
    shipped: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / ".coverage"
    data.write_bytes(b"SQLite format 3\0")
    monkeypatch.setitem(sys.modules, "coverage", None)  # import coverage -> ImportError
    html = tmp_path / "index.html"
    rc, out, err = run_main(
        "report", "--from", str(shipped["results"]), "--coverage", str(data), "--html", str(html)
    )
    assert rc == 0, err
    assert "coverage.py is not installed" in out
    text = html.read_text(encoding="utf-8")
    assert "coverage.py is not installed" in text
    assert 'data-error="PMEMSET_E_CANNOT_FIT_PART_MAP"' in text


USER_CODE = """
def parse(data):
    if data.startswith(b"P"):
        return data[1:]
    return None
"""

USER_SCRIPT = """
import sys
sys.path.insert(0, ".")
import mypkg
import pmemsim
from pmemsim import Config, Granularity, PmemSet

assert mypkg.parse(b"Pok") == b"ok"
with PmemSet(Config(Granularity.PAGE, address_space=pmemsim.SimulatedAddressSpace())) as pset:
    pass
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A coverage.py data file of a user's program that uses pmemsim and its own package ``mypkg``."""
    pytest.importorskip("coverage")
    where = tmp_path_factory.mktemp("user")
    (where / "mypkg").mkdir()
    (where / "mypkg" / "__init__.py").write_text(USER_CODE)
    (where / "app.py").write_text(USER_SCRIPT)
    data = where / ".coverage"
    ran = subprocess.run(
        [sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}", "app.py"],
        cwd=where, capture_output=True, text=True, timeout=120, env=child_env(),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return data


def test_coverage_is_of_the_code_under_test_by_default(
    shipped: dict[str, Any], measured: Path, tmp_path: Path
) -> None:
    html = tmp_path / "index.html"
    rc, out, err = run_main(
        "report", "--from", str(shipped["results"]), "--coverage", str(measured), "--html", str(html)
    )
    assert rc == 0, err
    assert "coverage of the code under test (2 files" in out
    text = html.read_text(encoding="utf-8")
    assert 'class="coverage-table"' in text
    assert "mypkg/__init__.py" in text and "app.py" in text
    assert "pmemsim/pmemset.py" not in text and "pmemsim/errors.py" not in text


def test_coverage_of_the_packages_named(shipped: dict[str, Any], measured: Path, tmp_path: Path) -> None:
    html = tmp_path / "index.html"
    rc, out, err = run_main(
        "report", "--from", str(shipped["results"]), "--coverage", str(measured),
        "--coverage-source", "mypkg", "--html", str(html),
    )  # fmt: skip
    assert rc == 0, err
    assert "coverage of mypkg (1 files" in out
    text = html.read_text(encoding="utf-8")
    assert "mypkg/__init__.py" in text and "app.py" not in text
    # pmemsim's own developers name it.
    rc, out, err = run_main(
        "report", "--from", str(shipped["results"]), "--coverage", str(measured),
        "--coverage-source", "pmemsim", "--html", str(html),
    )  # fmt: skip
    assert rc == 0, err
    text = html.read_text(encoding="utf-8")
    assert "pmemsim/pmemset.py" in text and "mypkg/__init__.py" not in text


def test_coverage_of_a_package_never_measured_says_so(
    shipped: dict[str, Any], measured: Path, tmp_path: Path
) -> None:
    html = tmp_path / "index.html"
    rc, out, err = run_main(
        "report", "--from", str(shipped["results"]), "--coverage", str(measured),
        "--coverage-source", "otherpkg", "--html", str(html),
    )  # fmt: skip
    assert rc == 0, err
    assert "no file in" in out and "matches otherpkg" in out
    assert "No measured file matches otherpkg" in html.read_text(encoding="utf-8")


# -- failed runs, column meanings, pipes -----------------------------------------------------------


def _results(tmp_path: Path, *runs: dict[str, Any]) -> Path:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": "pmemsim-results", "version": 1, "runs": list(runs)}))
    return path


def test_a_failed_run_is_listed_everywhere_and_fails_the_report(tmp_path: Path) -> None:
    results = _results(
        tmp_path,
        {"name": "ok.toml", "kind": "scenario", "backend": "sim", "outcome": "passed",
         "errors": {"ENOMEM": 1}},
        {"name": "t.py::test_x[sim]", "kind": "test", "backend": "sim", "outcome": "failed",
         "errors": {}, "message": "assert 1 == 2"},
    )  # fmt: skip
    html = tmp_path / "index.html"
    proc = pmemsim("report", "--from", str(results), "--html", str(html), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "1 run(s) failed" in proc.stdout
    assert "FAILED t.py::test_x[sim] (test, sim): assert 1 == 2" in proc.stdout
    text = html.read_text(encoding="utf-8")
    assert '<li data-failed="t.py::test_x[sim]">' in text and "assert 1 == 2" in text
    assert "1 run(s) failed" in text
    # The same results without the failure: exit 0, nothing listed.
    results = _results(
        tmp_path,
        {
            "name": "ok.toml",
            "kind": "scenario",
            "backend": "sim",
            "outcome": "passed",
            "errors": {"ENOMEM": 1},
        },
    )
    proc = pmemsim("report", "--from", str(results), "--html", str(html), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "run(s) failed" not in proc.stdout and "data-failed" not in html.read_text(encoding="utf-8")


def test_piped_output_never_folds_names(tmp_path: Path) -> None:
    long_name = "tests/test_a_rather_long_module_name.py::test_an_even_longer_test_name_that_would_fold[mmap]"
    results = _results(
        tmp_path,
        {"name": long_name, "kind": "test", "backend": "sim", "outcome": "failed", "errors": {},
         "message": "AssertionError: " + "x" * 150},
        {"name": "ok", "kind": "test", "backend": "a-backend-name-this-long", "outcome": "passed",
         "errors": {"PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE": 3}},
    )  # fmt: skip
    env = {k: v for k, v in child_env().items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run(
        [sys.executable, "-m", "pmemsim", "report", "--from", str(results)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(long_name in line and "x" * 150 in line for line in lines)
    assert any("CANNOT_ALLOCATE_INTERNAL_STRUCTURE" in line for line in lines)
    assert any("a-backend-name-this-long" in line for line in lines)  # the header is not cut
    legend = "a-backend-name-this-long: runs whose results name the backend"
    assert any(line.startswith(legend) for line in lines)


def test_html_lists_the_runs_that_reached_each_error_without_hovering(tmp_path: Path) -> None:
    results = _results(
        tmp_path,
        {"name": "s1.toml", "kind": "scenario", "backend": "sim", "outcome": "passed",
         "errors": {"ENOMEM": 2}},
        {"name": "s2.toml", "kind": "scenario", "backend": "mmap", "outcome": "passed",
         "errors": {"ENOMEM": 1}},
        {"name": "t.py::t", "kind": "test", "backend": "own", "outcome": "passed",
         "errors": {"PMEMSET_E_CANNOT_FIT_PART_MAP": 1}},
    )  # fmt: skip
    html = tmp_path / "index.html"
    rc, _, err = run_main("report", "--from", str(results), "--html", str(html))
    assert rc == 0, err
    text = html.read_text(encoding="utf-8")
    assert "title=" not in text  # nothing hides behind a tooltip
    section = text[text.index('class="reached-by"') :]
    enomem = section[section.index('data-reached="ENOMEM"') :]
    enomem = enomem[: enomem.index("</ul>")]
    assert "<strong>sim scenarios</strong>: <code>s1.toml</code>" in enomem
    assert "<strong>mmap scenarios</strong>: <code>s2.toml</code>" in enomem
    assert "t.py::t" not in enomem
    assert '<a href="#runs-ENOMEM">2</a>' in text
    assert "<strong>own</strong>: tests that did not use the pmem_space fixture" in text


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["report", "replay"])
def test_help_explains_every_option_with_examples(command: str) -> None:
    rc, out, _ = run_main(command, "--help")
    assert rc == 0
    assert "examples:" in out
    rc, top, _ = run_main("--help")
    assert command in top


def test_a_bad_html_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    results = _results(
        tmp_path,
        {"name": "ok.toml", "kind": "scenario", "backend": "sim", "outcome": "passed", "errors": {}},
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (str(blocker / "index.html"), str(tmp_path)):
        rc, out, err = run_main("report", "--from", str(results), "--html", path)
        assert rc == 2 and out == ""
        assert err.startswith(f"pmemsim report: error: --html {path}: ") and len(err.splitlines()) == 1
