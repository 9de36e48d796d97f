"""``pmemsim report``: the error-path coverage matrix from results files (terminal, HTML, JSON)."""

from __future__ import annotations

import argparse
import sys

from pmemsim.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Command, output_path_problem

__all__ = ["REPORT"]

_DEFAULT_RESULTS = "reports/results.json"

_REPORT_DESCRIPTION = f"""\
Build the error-path coverage matrix from results files: one row per error documented
by pmemset_part_map(3) and per other PMEMSET_E_* code (plus any other error a run
raised), one column per backend and kind of run (scenarios from `pmemsim run
--results`, tests from `pytest --pmemsim-report`), each cell the number of times the
error was raised there: red where never reached, grey where there were no runs of that
kind. Failed runs are listed under it. Prints the matrix as a table; --html also writes
a self-contained page with it, the runs that reached each error and, when coverage.py
data is present, the line/branch coverage of your code (the packages named with
--coverage-source, by default every measured file but pmemsim's, the standard
library's, installed packages' and the tests').

Without --from, {_DEFAULT_RESULTS} is read. coverage.py is optional (pip install
'pmemsim[coverage]'): without it, or without a data file, the page says so and shows the
matrix alone.
Exit status: 0 report built and every run passed; 1 a run failed (or, with
--fail-unreached, a man-page error was never reached); 2 bad input (a missing or
malformed results or coverage file, an unwritable --html path).
"""

_REPORT_EPILOG = """\
examples:
  pmemsim run scenarios/ --results reports/results.json && pmemsim report
  pmemsim report --from reports/results.json --html reports/index.html
  pytest --pmemsim-report reports/tests.json
  pmemsim report --from reports/results.json --from reports/tests.json --html reports/index.html
  coverage run --branch -m pytest --pmemsim-report reports/tests.json && \\
      pmemsim report --from reports/tests.json --coverage-source mypkg --html reports/index.html
  pmemsim report --from r.json --fail-unreached       CI gate: every documented part_map error reached
"""


def _configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="sources",
        action="append",
        metavar="FILE",
        help=f"a results JSON file (pmemsim run --results/--json, pytest --pmemsim-report); repeat to merge "
        f"several (default: {_DEFAULT_RESULTS}; e.g. --from r.json --from tests.json)",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report page to FILE, creating its directory (e.g. --html reports/index.html)",
    )
    p.add_argument(
        "--coverage",
        metavar="FILE",
        help="coverage.py data file to show line/branch coverage of your code from (default: .coverage "
        "when it exists; needs coverage.py installed; e.g. --coverage .coverage)",
    )
    p.add_argument(
        "--coverage-source",
        dest="coverage_sources",
        action="append",
        metavar="PACKAGE",
        help="a package name (mypkg, mypkg.sub) or directory (src/mypkg/) whose coverage to show; repeat for "
        "several (default: every measured file but pmemsim's, the standard library's, installed packages' "
        "and the tests')",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print the matrix as JSON on stdout ("format": "pmemsim-report", "version", rows with counts '
        "and runs per column, failed runs); the table goes to stderr",
    )
    p.add_argument(
        "--fail-unreached",
        action="store_true",
        help="exit 1 when an error documented by pmemset_part_map(3) was never reached",
    )


def _cmd_report(args: argparse.Namespace) -> int:
    import os

    def bad(message: str) -> int:
        print(f"pmemsim report: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if args.html:
        problem = output_path_problem(args.html)
        if problem:
            return bad(f"--html {args.html}: {problem}")
    sources: list[str] = args.sources or []
    if not sources:
        if not os.path.isfile(_DEFAULT_RESULTS):
            return bad(
                f"no results to report: give --from FILE (written by `pmemsim run --results FILE` or "
                f"`pytest --pmemsim-report FILE`), or create {_DEFAULT_RESULTS}"
            )
        sources = [_DEFAULT_RESULTS]

    from pmemsim.report.matrix import build_matrix, merge_results
    from pmemsim.report.results import load_results

    try:
        files = [load_results(s) for s in sources]
    except ValueError as exc:
        return bad(str(exc))
    matrix = build_matrix(merge_results(files))

    from pmemsim.report.linecoverage import CoverageSummary, CoverageUnavailable, load_coverage

    summary: CoverageSummary | None = None
    note: str | None = None
    data_file = args.coverage or (".coverage" if os.path.isfile(".coverage") else None)
    if data_file is not None:
        try:
            summary = load_coverage(data_file, args.coverage_sources or ())
        except CoverageUnavailable as exc:
            note = str(exc)
        except (OSError, ValueError) as exc:
            if args.coverage:
                return bad(str(exc))
            note = f"coverage data not shown: {exc}"

    from pmemsim.report.terminal import print_matrix, report_console

    console = report_console(stderr=args.json)
    print_matrix(console, matrix)
    if summary is not None and not summary.files:
        console.print(
            f"[yellow]note[/]: no file in {summary.data_file} matches {summary.scope}; name your packages "
            "with --coverage-source",
            soft_wrap=True,
        )
    elif summary is not None:
        total = summary.total
        branches = f", {total.branch_percent:.0f}% of branches" if total.branch_percent is not None else ""
        console.print(
            f"coverage of {summary.scope} ({len(summary.files)} files, {summary.data_file}): "
            f"{total.line_percent:.0f}% of lines{branches}",
            soft_wrap=True,
        )
    elif note:
        console.print(f"[yellow]note[/]: {note}", soft_wrap=True)

    if args.html:
        import datetime

        from pmemsim.report.html import render_html

        page = render_html(
            matrix,
            sources=sources,
            coverage=summary,
            coverage_note=note,
            generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
        try:
            parent = os.path.dirname(args.html)
            if parent:
                os.makedirs(parent, exist_ok=True)
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as exc:
            return bad(f"cannot write {args.html}: {exc.strerror or exc}")
        console.print(f"wrote {args.html}", soft_wrap=True)
    if args.json:
        import json

        sys.stdout.write(json.dumps(matrix.to_json(), indent=2) + "\n")
        sys.stdout.flush()
    status = EXIT_FAILED if matrix.failed else EXIT_OK
    unreached = [r for r in matrix.man_page_rows if not r.reached]
    if args.fail_unreached and unreached:
        names = ", ".join(r.name for r in unreached)
        console.print(f"[bold red]never reached[/]: {names}", soft_wrap=True)
        status = EXIT_FAILED
    return status


REPORT = Command(
    name="report",
    help="error-path coverage matrix (terminal and HTML) from results files",
    description=_REPORT_DESCRIPTION,
    epilog=_REPORT_EPILOG,
    configure=_configure_report,
    run=_cmd_report,
)
