"""The HTML page of ``pmemsim report``: the error-path matrix and, beside it, line/branch coverage.

One self-contained file: inline CSS, no script, no external resource, so it can be
opened from disk, attached to a CI run or mailed. Machine-readable hooks for tests and
scrapers: each error row is ``<tr data-error="PMEMSET_E_...">`` and each count cell
``<td data-column="sim/scenario" data-count="3">``. A count cell is red when the error
was never raised in that column's runs, green when it was, grey when the column has no
runs at all (nothing to conclude).

Everything is visible without hovering (tooltips do not exist on touch screens or for
keyboard users): the runs that reached each error are listed under the matrix, each
count links to its list, failed runs are listed above it, and a legend says what each
backend column stands for. Colours meet WCAG AA contrast (4.5:1 for text), and the page
fits a 1000 px wide window: long error names break at their underscores.

Runs of a fault sweep add a table per fault site (``data-site``/``data-outcome``/
``data-count`` cells) and, in a ``<details>`` element, every (site, hit) pair driven per
run (``<li data-pair="os.msync@3" data-outcome="raised">``).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from pmemsim.report.linecoverage import CoverageSummary, FileCoverage
from pmemsim.report.matrix import MAN_PAGE_ERRORS, Column, Matrix, Row
from pmemsim.report.results import FaultOutcome, RunResult

__all__ = ["render_html"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1d2329;
  background: #ffffff; }
h1 { font-size: 1.45em; margin: 0 0 .3em; } h2 { font-size: 1.15em; margin: 1.2em 0 .4em; }
.meta, .note { color: #56606b; } .note { max-width: 60em; }
.layout { display: flex; flex-wrap: wrap; gap: 2.5em; align-items: flex-start; }
.layout > section { min-width: 0; max-width: 100%; }
table { border-collapse: collapse; }
th, td { padding: .25em .6em; border: 1px solid #d5dae0; }
thead th { background: #eef1f4; font-weight: 600; }
th[scope=row] { text-align: left; font-family: ui-monospace, monospace; font-weight: 500; }
td.count, td.num { text-align: right; font-variant-numeric: tabular-nums; min-width: 3.2em; }
td.hit { background: #d8f3dc; color: #14532d; }
td.zero { background: #fbd5d5; color: #8b1111; font-weight: 600; }
td.norun { background: #f3f4f6; color: #4b5563; }
td.count a { color: inherit; }
tr.unreached th[scope=row] { color: #8b1111; }
tbody.group th.group { text-align: left; background: #f8f9fb; font-weight: 600; }
.doc { color: #56606b; font-size: .92em; }
.failed-runs { border-left: 4px solid #b91c1c; padding-left: .8em; }
.failed-runs h2 { color: #8b1111; }
.reached-by h3 { font-size: 1em; font-family: ui-monospace, monospace; margin: .8em 0 .2em; }
.reached-by ul, .backends { margin: .2em 0; padding-left: 1.4em; }
.reached-by li { overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .4em; border-radius: .6em; font-size: .8em; background: #e0e7ff; }
.bar { display: inline-block; width: 6em; height: .7em; background: #fbd5d5; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: #40a060; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .4em; border: 1px solid #d5dae0; }
"""


def _cell_class(column: Column, count: int) -> str:
    if column.runs == 0:
        return "norun"
    return "hit" if count else "zero"


def _breakable(name: str) -> str:
    """``name`` escaped, with a line-break opportunity after each underscore (long C names)."""
    return "_<wbr>".join(escape(part) for part in name.split("_"))


def _anchor(name: str) -> str:
    """The id of an error's list of runs."""
    return "runs-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def _row_html(row: Row, columns: Sequence[Column]) -> str:
    cls = "error-row" + (" man-page" if row.man_page else "") + ("" if row.reached else " unreached")
    badge = ' <span class="badge">newer page only</span>' if row.newer_page_only else ""
    doc = "pmemset_part_map(3)" if row.man_page else row.documented_by
    code = f" <small>({row.code})</small>" if row.code is not None else ""
    cells = [
        f'<tr class="{cls}" id="{escape(row.name)}" data-error="{escape(row.name)}">',
        f'<th scope="row">{_breakable(row.name)}{code}</th>',
        f'<td class="doc">{escape(doc)}{badge}</td>',
    ]
    for column, count in zip(columns, row.counts, strict=True):
        klass = _cell_class(column, count)
        if klass == "norun":
            shown = '<span aria-label="no runs of this kind">&ndash;</span>'
        elif count:
            shown = f'<a href="#{_anchor(row.name)}">{count}</a>'
        else:
            shown = "0"
        cells.append(
            f'<td class="count {klass}" data-column="{escape(column.key)}" data-count="{count}">{shown}</td>'
        )
    total_cls = "hit" if row.reached else "zero"
    cells.append(
        f'<td class="count total {total_cls}" data-column="total" data-count="{row.total}">{row.total}</td>'
    )
    cells.append("</tr>")
    return "".join(cells)


def _reached_by_html(matrix: Matrix) -> list[str]:
    """Under the matrix: for each reached error, the runs of each column that raised it."""
    out = ['<section class="reached-by">', "<h2>Which runs reached each error</h2>"]
    reached = [r for r in matrix.rows if r.reached]
    if not reached:
        out.append('<p class="note">No run raised any error.</p>')
    for row in reached:
        name = escape(row.name)
        out.append(f'<h3 id="{_anchor(row.name)}" data-reached="{name}">{_breakable(row.name)}</h3>')
        out.append("<ul>")
        for column, names in zip(matrix.columns, row.reached_by, strict=True):
            if names:
                runs = ", ".join(f"<code>{escape(n)}</code>" for n in names)
                label = f"<strong>{escape(column.label)}</strong>"
                out.append(f'<li data-column="{escape(column.key)}">{label}: {runs}</li>')
        out.append("</ul>")
    out.append("</section>")
    return out


def _failed_html(failed: Sequence[RunResult]) -> list[str]:
    """Above the matrix: every run that failed or ended in an error, with its message."""
    if not failed:
        return []
    out = ['<section class="failed-runs">', f"<h2>{len(failed)} failed run(s)</h2>", "<ul>"]
    for run in failed:
        why = f": {escape(run.message)}" if run.message else ""
        out.append(
            f'<li data-failed="{escape(run.name)}"><strong>{escape(run.outcome.value.upper())}</strong> '
            f"<code>{escape(run.name)}</code> ({escape(run.kind.value)}, {escape(run.backend)}){why}</li>"
        )
    out += ["</ul>", "</section>"]
    return out


def _sweep_html(matrix: Matrix) -> list[str]:
    """The fault sweep: per site the (run, hit) pairs driven and their outcomes, then every pair.

    Cells carry ``data-site`` / ``data-outcome`` / ``data-count``; each pair is a
    ``<li data-pair="SITE@HIT" data-outcome="...">`` under its run.
    """
    if not matrix.sweep:
        return []
    out = ['<section class="fault-sweep">', "<h2>Fault sweep: (site, hit) pairs driven</h2>"]
    out.append(
        '<p class="note">Each pair is one run that failed exactly that hit of that site. '
        "<em>handled</em> and <em>raised</em> are what correct code does; the rest is misbehaviour.</p>"
    )
    head = "".join(f'<th scope="col">{escape(o.value)}</th>' for o in FaultOutcome)
    out += ['<table class="sweep">', f"<thead><tr><th>site</th><th>driven</th>{head}</tr></thead>", "<tbody>"]
    for site in matrix.sweep:
        cells = []
        for outcome in FaultOutcome:
            n = site.count(outcome)
            klass = "norun" if not n else ("hit" if outcome.ok else "zero")
            cells.append(
                f'<td class="count {klass}" data-site="{escape(site.site)}" '
                f'data-outcome="{outcome.value}" data-count="{n}">{n}</td>'
            )
        out.append(
            f'<tr data-site="{escape(site.site)}"><th scope="row">{escape(site.site)}</th>'
            f'<td class="num">{site.driven}</td>{"".join(cells)}</tr>'
        )
    out += ["</tbody>", "</table>"]
    by_run: dict[tuple[str, str], list[RunResult]] = {}
    for run in matrix.fault_runs:
        by_run.setdefault((run.name, run.backend), []).append(run)
    out.append("<details><summary>Every pair, by run</summary>")
    for (name, backend), runs in by_run.items():
        out.append(f"<h3><code>{escape(name)}</code> ({escape(backend)})</h3><ul>")
        for run in runs:
            assert run.fault is not None
            why = f": {escape(run.message)}" if run.message and not run.fault.outcome.ok else ""
            out.append(
                f'<li data-pair="{escape(run.fault.point)}" data-outcome="{run.fault.outcome.value}">'
                f"<code>{escape(run.fault.point)}</code> {escape(run.fault.outcome.value)}{why}</li>"
            )
        out.append("</ul>")
    out += ["</details>", "</section>"]
    return out


def _backends_html(columns: Sequence[Column]) -> list[str]:
    """What each backend column stands for."""
    seen = dict.fromkeys(c.backend for c in columns)
    out = ['<ul class="backends">']
    for backend in seen:
        meaning = next(c.meaning for c in columns if c.backend == backend)
        out.append(f"<li><strong>{escape(backend)}</strong>: {escape(meaning)}</li>")
    out.append("</ul>")
    return out


def _matrix_html(matrix: Matrix) -> list[str]:
    columns = matrix.columns
    backends: list[tuple[str, int]] = []
    for c in columns:
        if backends and backends[-1][0] == c.backend:
            backends[-1] = (c.backend, backends[-1][1] + 1)
        else:
            backends.append((c.backend, 1))
    out = ['<table class="matrix">', "<thead>", "<tr>", '<th rowspan="2">error</th>']
    out.append('<th rowspan="2">documented in</th>')
    out += [f'<th colspan="{n}" scope="colgroup">{escape(b)}</th>' for b, n in backends]
    out.append('<th rowspan="2">total</th></tr><tr>')
    out += [f'<th scope="col">{escape(c.kind.value)}s<br><small>{c.runs} runs</small></th>' for c in columns]
    out += ["</tr>", "</thead>"]
    groups = [
        ("pmemset_part_map(3) errors", [r for r in matrix.rows if r.man_page]),
        ("other libpmemset error codes", [r for r in matrix.rows if not r.man_page and r.code is not None]),
        ("other errors raised", [r for r in matrix.rows if r.code is None]),
    ]
    width = len(columns) + 3
    for title, rows in groups:
        if not rows:
            continue
        out.append(f'<tbody class="group"><tr><th class="group" colspan="{width}">{escape(title)}</th></tr>')
        out += [_row_html(r, columns) for r in rows]
        out.append("</tbody>")
    out.append("</table>")
    out += _backends_html(columns)
    return out


def _percent_cell(value: float | None) -> str:
    if value is None:
        return '<td class="num">&ndash;</td>'
    return (
        f'<td class="num" data-percent="{value:.1f}">'
        f'<span class="bar"><span style="width:{value:.1f}%"></span></span> {value:.0f}%</td>'
    )


def _coverage_row(f: FileCoverage, branch: bool, tag: str = "td") -> str:
    cells = [
        f'<{tag} class="file">{escape(f.path)}</{tag}>',
        f'<td class="num">{f.statements}</td>',
        f'<td class="num">{f.missing}</td>',
        _percent_cell(f.line_percent),
    ]
    if branch:
        cells += [
            f'<td class="num">{f.branches}</td>',
            f'<td class="num">{f.missing_branches}</td>',
            _percent_cell(f.branch_percent),
        ]
    return "<tr>" + "".join(cells) + "</tr>"


def _coverage_html(summary: CoverageSummary | None, note: str | None) -> list[str]:
    scope = escape(summary.scope) if summary is not None else "the code under test"
    out = ['<section class="coverage">', f"<h2>Line and branch coverage of {scope}</h2>"]
    if summary is None and not note:
        note = (
            "No coverage data: measure your tests with coverage.py (coverage run --branch -m pytest "
            "--pmemsim-report reports/tests.json) and pass --coverage .coverage."
        )
    if summary is not None and not summary.files:
        note = (
            f"No measured file matches {summary.scope}: name the packages to report with "
            "--coverage-source, or measure them (coverage run --source=PACKAGE ...)."
        )
    if note:
        out.append(f'<p class="note coverage-note">{escape(note)}</p>')
    if summary is None:
        out.append("</section>")
        return out
    out.append(
        f'<p class="meta">From <code>{escape(summary.data_file)}</code>'
        + (f" (coverage.py {escape(summary.version)})" if summary.version else "")
        + ("" if summary.branch else "; measured without --branch, so no branch numbers")
        + ".</p>"
    )
    head = "<th>file</th><th>statements</th><th>missed</th><th>lines</th>"
    if summary.branch:
        head += "<th>branches</th><th>missed</th><th>branches</th>"
    out += ['<table class="coverage-table">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    out += [_coverage_row(f, summary.branch) for f in summary.files]
    out += ["</tbody>", "<tfoot>", _coverage_row(summary.total, summary.branch, "th"), "</tfoot>", "</table>"]
    out.append("</section>")
    return out


def render_html(
    matrix: Matrix,
    *,
    sources: Sequence[str] = (),
    coverage: CoverageSummary | None = None,
    coverage_note: str | None = None,
    generated: str | None = None,
    title: str = "pmemsim error-path coverage",
) -> str:
    """The report page for ``matrix`` (and ``coverage``, or ``coverage_note`` saying why there is none).

    ``sources`` names the results files the matrix was built from; ``generated`` is a
    free-form time stamp shown under the title.
    """
    man = matrix.man_page_rows
    reached_man = sum(1 for r in man if r.reached)
    codes = [r for r in matrix.rows if r.code is not None]
    reached_codes = sum(1 for r in codes if r.reached)
    meta = f"Built from {matrix.runs} run(s)"
    failed = f"; <strong>{len(matrix.failed)} run(s) failed</strong>" if matrix.failed else ""
    if sources:
        meta += " in " + ", ".join(f"<code>{escape(s)}</code>" for s in sources)
    if matrix.unloaded:
        meta += f"; {matrix.unloaded} scenario file(s) could not be loaded and reach nothing"
    if generated:
        meta += f"; generated {escape(generated)}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{meta}.</p>',
        f'<p class="summary"><strong>{reached_man} of {len(MAN_PAGE_ERRORS)}</strong> errors documented by '
        f"pmemset_part_map(3) reached; {reached_codes} of {len(codes)} libpmemset error codes reached"
        f"{failed}.</p>",
        *_failed_html(matrix.failed),
        '<p class="legend">Cells count how many times the error was raised in that column\'s runs: '
        '<span class="hit-legend" style="background:#d8f3dc">reached</span>'
        '<span class="zero-legend" style="background:#fbd5d5">never reached</span>'
        '<span class="norun-legend" style="background:#f3f4f6">no runs of that kind</span>'
        "A count links to the runs that reached the error, listed under the matrix.</p>",
        '<div class="layout">',
        '<section class="errors">',
        "<h2>Error paths reached</h2>",
        *_matrix_html(matrix),
        *_sweep_html(matrix),
        *_reached_by_html(matrix),
        "</section>",
        *_coverage_html(coverage, coverage_note),
        "</div>",
        "</body>",
        "</html>",
    ]
    return "\n".join(out) + "\n"
