"""The error-path matrix as a rich table, for ``pmemsim report`` in a terminal.

Columns without runs (no test results were given, say) are left out here and listed
under the table; the HTML page (:mod:`pmemsim.report.html`) shows them greyed. Under the
table: what each backend column stands for, and every failed run (a report over a failed
run must not read like a passing one). Names are never folded: use :func:`report_console`
so that output to a pipe or file is as wide as it needs to be.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pmemsim.report.matrix import Matrix

__all__ = ["matrix_table", "print_matrix", "report_console", "sweep_table"]

# Wide enough for any table pmemsim prints; rich sizes tables to their content, so
# this is a bound, not padding.
_PIPE_WIDTH = 1000


def report_console(*, stderr: bool = False) -> Console:
    """A Console for reports: the terminal's width on a TTY, unbounded width when piped.

    rich draws non-TTY output at 80 columns, folding error and scenario names mid-word
    and cutting headers; a file or a pipe has no width to respect.
    """
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=_PIPE_WIDTH)
    return console


def matrix_table(matrix: Matrix) -> Table:
    """A rich Table of ``matrix``: man-page errors, other codes, other names, in three sections."""
    shown = [i for i, c in enumerate(matrix.columns) if c.runs]
    table = Table(title="error paths reached (times raised)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("error", no_wrap=True)
    table.add_column("man", no_wrap=True)
    for i in shown:
        c = matrix.columns[i]
        table.add_column(f"{c.backend}\n{c.kind.value}s\n({c.runs} runs)", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    groups = [
        [r for r in matrix.rows if r.man_page],
        [r for r in matrix.rows if not r.man_page and r.code is not None],
        [r for r in matrix.rows if r.code is None],
    ]
    for group in groups:
        for row in group:
            cells = [f"[green]{row.counts[i]}[/]" if row.counts[i] else "[bold red]0[/]" for i in shown]
            doc = ("newer" if row.newer_page_only else "yes") if row.man_page else ""
            name = row.name.removeprefix("PMEMSET_E_")
            table.add_row(
                name if row.reached else f"[red]{name}[/]",
                doc,
                *cells,
                f"[bold]{row.total}[/]" if row.total else "[bold red]0[/]",
            )
        if group:
            table.add_section()
    return table


def sweep_table(matrix: Matrix) -> Table:
    """A rich Table of the fault-sweep runs: per site, the (run, hit) pairs driven and their outcomes."""
    from pmemsim.report.results import FaultOutcome

    table = Table(title="fault sweep: (site, hit) pairs driven", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("site", no_wrap=True)
    table.add_column("driven", justify="right", no_wrap=True)
    for outcome in FaultOutcome:
        table.add_column(outcome.value, justify="right", no_wrap=True)
    for site in matrix.sweep:
        cells = []
        for outcome in FaultOutcome:
            n = site.count(outcome)
            style = "green" if outcome.ok else "bold red"
            cells.append(f"[{style}]{n}[/]" if n else "[dim]0[/]")
        table.add_row(site.site, str(site.driven), *cells)
    return table


def print_matrix(console: Console, matrix: Matrix) -> None:
    """Print the table, what its columns mean, the columns without runs, failed runs, and a summary line.

    With fault-sweep runs in the results, their table by site follows the matrix.
    """
    console.print(matrix_table(matrix))
    if matrix.sweep:
        console.print(sweep_table(matrix))
    backends = dict.fromkeys(c.backend for c in matrix.columns if c.runs)
    for backend in backends:
        meaning = next(c.meaning for c in matrix.columns if c.backend == backend)
        console.print(f"[dim]{backend}: {meaning}[/]", soft_wrap=True)
    empty = [c.label for c in matrix.columns if not c.runs]
    if empty:
        console.print(f"[dim]no runs for: {', '.join(empty)}[/]", soft_wrap=True)
    if matrix.failed:
        console.print(f"[bold red]{len(matrix.failed)} run(s) failed[/]:", soft_wrap=True)
        for run in matrix.failed:
            why = f": {escape(run.message)}" if run.message else ""
            where = escape(f"({run.kind.value}, {run.backend})")
            console.print(
                f"  [red]{run.outcome.value.upper()}[/] {escape(run.name)} {where}{why}", soft_wrap=True
            )
    man = matrix.man_page_rows
    reached = sum(1 for r in man if r.reached)
    style = "bold green" if reached == len(man) else "bold red"
    extra = f"; {matrix.unloaded} scenario file(s) could not be loaded" if matrix.unloaded else ""
    console.print(
        f"[{style}]{reached} of {len(man)}[/] pmemset_part_map(3) errors reached, "
        f"from {matrix.runs} runs{extra}",
        soft_wrap=True,
    )
