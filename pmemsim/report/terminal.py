"""The error-path matrix as a rich table, for ``pmemsim report`` in a terminal.

Columns without runs (no test results were given, say) are left out here and listed
under the table; the HTML page (:mod:`pmemsim.report.html`) shows them greyed.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from pmemsim.report.matrix import Matrix

__all__ = ["matrix_table", "print_matrix"]


def matrix_table(matrix: Matrix) -> Table:
    """A rich Table of ``matrix``: man-page errors, other codes, other names, in three sections."""
    shown = [i for i, c in enumerate(matrix.columns) if c.runs]
    table = Table(title="error paths reached (times raised)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("error", no_wrap=True)
    table.add_column("man", no_wrap=True)
    for i in shown:
        c = matrix.columns[i]
        table.add_column(f"{c.backend}\n{c.kind.value}s\n({c.runs} runs)", justify="right")
    table.add_column("total", justify="right")
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


def print_matrix(console: Console, matrix: Matrix) -> None:
    """Print the table, the columns without runs, and one summary line."""
    console.print(matrix_table(matrix))
    empty = [c.label for c in matrix.columns if not c.runs]
    if empty:
        console.print(f"[dim]no runs for: {', '.join(empty)}[/]", soft_wrap=True)
    man = matrix.man_page_rows
    reached = sum(1 for r in man if r.reached)
    style = "bold green" if reached == len(man) else "bold red"
    extra = f"; {matrix.unloaded} scenario file(s) could not be loaded" if matrix.unloaded else ""
    console.print(
        f"[{style}]{reached} of {len(man)}[/] pmemset_part_map(3) errors reached, "
        f"from {matrix.runs} runs{extra}",
        soft_wrap=True,
    )
