"""The ``pmemsim`` command (also ``python -m pmemsim``): a thin shell over the library.

Parse, call the library, print, map the outcome to an exit code. Sub-commands are
rows of one table, :data:`COMMANDS`: each names its arguments and the function that
runs it. Importing this module costs only ``argparse``: rich, tomllib and the
scenario machinery are imported by the sub-command that needs them, so
``pmemsim --help`` starts fast.

Exit codes, for every sub-command: 0 every expectation held, 1 something failed,
2 bad input (a broken scenario file, a missing path, a bad option).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console

    from pmemsim.report.results import RunResult
    from pmemsim.scenario.steps import Scenario

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "Command", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Command:
    """One sub-command: its name, help texts, arguments and the function that runs it."""

    name: str
    help: str
    description: str
    epilog: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# -- pmemsim run ---------------------------------------------------------------------------------

_RUN_DESCRIPTION = """\
Run scenario files (TOML; see docs/scenarios.md) on the backends they name, show a
progress bar and a results table, and exit 0 only if every expectation held
(1 if one did not, 2 if a scenario file or path is bad; the other scenarios still
run). Source files are created in private temporary directories: nothing in your
directories is written except the outputs you ask for (--junit, --results).
"""

_RUN_EPILOG = """\
examples:
  pmemsim run scenarios/                          every *.toml under scenarios/
  pmemsim run scenarios/error_enomem.toml         one file
  pmemsim run scenarios/ -k coalesce -k crash     names containing "coalesce" or "crash"
  pmemsim run scenarios/ --backend sim            only on the simulator
  pmemsim run scenarios/ --junit junit.xml        JUnit XML for CI
  pmemsim run scenarios/ --json > results.json    results JSON on stdout (table on stderr)
  pmemsim run scenarios/ --seed 42                seed for the Random crash engine
"""


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="scenario files or directories (searched recursively for *.toml), e.g. scenarios/",
    )
    p.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="run on these backends instead of the ones each scenario names: sim, mmap or both; "
        "repeat or separate with commas (e.g. --backend sim,mmap)",
    )
    p.add_argument(
        "-k",
        dest="select",
        action="append",
        metavar="TEXT",
        help="run only scenarios whose name (file name without .toml) contains TEXT, ignoring case; "
        "repeat for 'any of' (e.g. -k coalesce -k reservation)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed for random crash-state engines, overriding [crash] seed (e.g. --seed 42)",
    )
    p.add_argument(
        "--junit",
        metavar="FILE",
        help="also write JUnit XML, one testcase per scenario and backend (e.g. --junit reports/junit.xml)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the results JSON (the format `pmemsim report --from` reads) to stdout; "
        "the table goes to stderr (e.g. --json > results.json)",
    )
    p.add_argument(
        "--results",
        metavar="FILE",
        help="also write the results JSON to FILE (e.g. --results reports/scenarios.json)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no table: print only problems and the summary line (e.g. pmemsim run -q scenarios/)",
    )


def _backends(values: list[str] | None) -> tuple[str, ...] | None:
    """The --backend values as a tuple; ValueError naming a bad one."""
    if not values:
        return None
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            names = ("sim", "mmap") if name in ("both", "all") else (name,)
            for n in names:
                if n not in ("sim", "mmap"):
                    raise ValueError(f"unknown backend {name!r}: use sim, mmap or both")
                if n not in out:
                    out.append(n)
    return tuple(out)


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        backends = _backends(args.backend)
    except ValueError as exc:
        print(f"pmemsim run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    import time
    from pathlib import PurePath

    from rich.console import Console

    from pmemsim.report.results import Outcome, ResultsFile, RunKind, RunResult
    from pmemsim.scenario.loader import ScenarioError, discover, load_scenario
    from pmemsim.scenario.runner import resolve_checker, run_scenario

    console = Console(stderr=args.json, highlight=False)
    started = time.perf_counter()
    selects = [s.lower() for s in args.select or []]

    # Load everything first, so the progress bar knows the total.
    bad: list[tuple[str, str]] = []  # (shown path, message)
    plan: list[tuple[str, Scenario, tuple[str, ...], Callable[[Any], object] | list[str] | None]] = []
    for shown, path, problem in discover(args.paths):
        if path is None:
            bad.append((shown, problem or f"{shown}: cannot be read"))
            continue
        if selects and not any(s in PurePath(shown).stem.lower() for s in selects):
            continue
        try:
            scenario = load_scenario(shown)
            checker = resolve_checker(scenario) if scenario.crash is not None else None
        except ScenarioError as exc:
            bad.append((shown, str(exc)))
            continue
        plan.append((shown, scenario, backends or scenario.backends, checker))

    results: list[RunResult] = []
    total = sum(len(b) for _, _, b, _ in plan)
    with _progress(console, total) as advance:
        for shown, scenario, names, checker in plan:
            for backend in names:
                advance(f"{scenario.name} [{backend}]")
                results.append(run_scenario(scenario, backend, seed=args.seed, name=shown, checker=checker))
    load_errors = [
        RunResult(name=shown, kind=RunKind.SCENARIO, backend="-", outcome=Outcome.ERROR, message=msg)
        for shown, msg in bad
    ]
    everything = results + load_errors

    if not args.quiet:
        _print_table(console, results)
    _print_problems(console, results, bad)
    elapsed = time.perf_counter() - started
    nothing = not plan and not bad
    _print_summary(console, results, len(bad), elapsed, nothing_selected=nothing)

    if args.junit:
        from pmemsim.scenario.junit import write_junit

        write_junit(args.junit, everything)
    doc = ResultsFile(everything)
    if args.results:
        doc.write(args.results)
    if args.json:
        import json

        sys.stdout.write(json.dumps(doc.to_json(), indent=2, sort_keys=True) + "\n")
        sys.stdout.flush()

    if bad or nothing:
        return EXIT_BAD_INPUT
    if any(r.outcome in (Outcome.FAILED, Outcome.ERROR) for r in results):
        return EXIT_FAILED
    return EXIT_OK


class _progress:
    """A rich progress bar over ``total`` runs, drawn only on a terminal; ``advance(label)`` per run."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]pmemsim run"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("", total=total)
        self._started = False

    def __enter__(self) -> Callable[[str], None]:
        if self._progress.tasks[0].total:
            self._progress.start()
        return self._advance

    def _advance(self, label: str) -> None:
        if self._started:
            self._progress.advance(self._task)
        self._started = True
        self._progress.update(self._task, description=label)

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.advance(self._task)
        self._progress.stop()


_STYLE = {"passed": "green", "failed": "bold red", "error": "bold magenta", "skipped": "yellow"}


def _short_error(name: str) -> str:
    return name.removeprefix("PMEMSET_E_")


def _print_table(console: Console, results: Sequence[RunResult]) -> None:
    from pathlib import PurePath

    from rich.table import Table

    if not results:
        return
    stems = [PurePath(r.name).stem for r in results]
    unique = len(set(stems)) == len({r.name for r in results})
    table = Table(title="pmemsim run", title_justify="left", show_lines=False)
    table.add_column("scenario", overflow="fold")
    table.add_column("backend")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("error paths reached", overflow="fold")
    for r, stem in zip(results, stems, strict=True):
        style = _STYLE.get(r.outcome.value, "")
        errors = ", ".join(
            f"{_short_error(k)} x{v}" if v > 1 else _short_error(k) for k, v in sorted(r.errors.items())
        )
        table.add_row(
            stem if unique else r.name,
            r.backend,
            f"[{style}]{r.outcome.value}[/]",
            f"{r.duration * 1000:.0f} ms",
            errors,
        )
    console.print(table)


def _print_problems(console: Console, results: Sequence[RunResult], bad: Sequence[tuple[str, str]]) -> None:
    from rich.markup import escape

    for r in results:
        if r.outcome.value in ("failed", "error"):
            style = _STYLE[r.outcome.value]
            console.print(
                f"[{style}]{r.outcome.value.upper()}[/] {escape(r.name)} \\[{r.backend}]", soft_wrap=True
            )
            console.print("  " + escape(r.message).replace("\n", "\n  "), soft_wrap=True)
    for _shown, message in bad:
        console.print("[bold red]BAD INPUT[/] " + escape(message).replace("\n", "\n  "), soft_wrap=True)


def _print_summary(
    console: Console, results: Sequence[RunResult], bad: int, elapsed: float, *, nothing_selected: bool
) -> None:
    if nothing_selected:
        console.print("[bold red]no scenario selected[/]: no file matched the paths and -k filters")
        return
    counts = {
        o: sum(1 for r in results if r.outcome.value == o) for o in ("passed", "failed", "error", "skipped")
    }
    parts = [f"{counts['passed']} passed", f"{counts['failed']} failed"]
    if counts["error"]:
        parts.append(f"{counts['error']} errors")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    if bad:
        parts.append(f"{bad} bad input")
    ok = not bad and not counts["failed"] and not counts["error"]
    style = "bold green" if ok else "bold red"
    console.print(f"[{style}]{', '.join(parts)}[/] in {elapsed:.2f}s")


# -- the command table ---------------------------------------------------------------------------

#: Every sub-command, in the order ``pmemsim --help`` lists them. ``report`` and ``replay``
#: join this table (DESIGN.md §6, issue 6) as rows built like RUN.
RUN = Command(
    name="run",
    help="run scenario files on the simulated and/or real-mmap backend",
    description=_RUN_DESCRIPTION,
    epilog=_RUN_EPILOG,
    configure=_configure_run,
    run=_cmd_run,
)

COMMANDS: tuple[Command, ...] = (RUN,)

_MAIN_DESCRIPTION = """\
pmemsim: PMDK libpmemset's part-mapping API on simulated and real address spaces,
with fault injection and crash-consistency checking.
"""

_MAIN_EPILOG = """\
examples:
  pmemsim run scenarios/                    run every shipped scenario
  pmemsim run scenarios/ --junit junit.xml  and write JUnit XML for CI
  pmemsim run --help                        every option of `run`, with examples

exit status: 0 every expectation held, 1 something failed, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pmemsim`` with one sub-parser per row of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="pmemsim",
        description=_MAIN_DESCRIPTION,
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description,
            epilog=cmd.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.configure(p)
        p.set_defaults(command=cmd)
    return parser


def _version() -> str:
    from pmemsim import __version__  # already imported: this module lives in the package

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run the ``pmemsim`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse prints it)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_BAD_INPUT)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    return command.run(args)
