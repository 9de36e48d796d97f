"""``pmemsim run``: scenario files on the backends they name, a results table, exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pmemsim.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    Command,
    output_path_problem,
    rate_column,
)

if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console

    from pmemsim.faults import FaultPoint
    from pmemsim.report.results import RunResult
    from pmemsim.scenario.steps import Scenario

__all__ = ["RUN"]

_RUN_DESCRIPTION = """\
Run scenario files (TOML; see docs/scenarios.md) on the backends they name, show a
progress bar and a results table, and exit 0 only if every expectation held
(1 if one did not, 2 if a scenario file or path is bad; the other scenarios still
run). Source files are created in private temporary directories: nothing in your
directories is written except the outputs you ask for (--junit, --results).

With --fault-sweep each scenario runs once more per hit of every fault site its steps
reach, failing exactly that hit: the step meeting the failure must fail with a
libpmemset error and change nothing, or the scenario must pass as written, and nothing
may leak. Each misbehaving (site, hit) is one line; exit 1 if there is one.
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
  pmemsim run --fault-sweep scenarios/            every hit of every fault site, one run each
  pmemsim run scenarios/a.toml --fault os.msync@3 one run failing the 3rd msync
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
        help="run on these backends instead of the ones each scenario names: sim, mmap, both (the "
        "default backends) or all (every registered one); repeat or separate with commas "
        "(e.g. --backend sim,mmap)",
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
        "--fault-sweep",
        action="store_true",
        help="after each scenario's run, run it once per hit of every fault site its steps reach, "
        "failing that hit; report each (site, hit) that misbehaves",
    )
    p.add_argument(
        "--fault",
        metavar="SITE@HIT",
        help="run each scenario with this one failure, judged as in a sweep (e.g. --fault os.msync@3)",
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
    from pmemsim.addrspace.backends import BACKENDS, DEFAULT_BACKENDS

    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            names = DEFAULT_BACKENDS if name == "both" else BACKENDS if name == "all" else (name,)
            for n in names:
                if n not in BACKENDS:
                    raise ValueError(f"unknown backend {name!r}: use {', '.join(BACKENDS)} or both")
                if n not in out:
                    out.append(n)
    return tuple(out)


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        backends = _backends(args.backend)
    except ValueError as exc:
        print(f"pmemsim run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    fault = None
    if args.fault is not None:
        from pmemsim.faults import FaultPoint

        if args.fault_sweep:
            print(
                "pmemsim run: error: --fault runs one failure: it cannot go with --fault-sweep",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        try:
            fault = FaultPoint.parse(args.fault)
        except ValueError as exc:
            print(f"pmemsim run: error: --fault: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    for option, path in (("--junit", args.junit), ("--results", args.results)):
        problem = output_path_problem(path) if path is not None else None
        if problem:
            print(f"pmemsim run: error: {option} {path}: {problem}", file=sys.stderr)
            return EXIT_BAD_INPUT

    import time
    from pathlib import PurePath

    from pmemsim.report.results import Outcome, ResultsFile, RunKind, RunResult
    from pmemsim.report.terminal import report_console
    from pmemsim.scenario.loader import ScenarioError, discover, load_scenario
    from pmemsim.scenario.runner import resolve_checker, run_scenario, sweep_scenario

    console = report_console(stderr=args.json)
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
    with _progress(console, total) as progress:
        for shown, scenario, names, checker in plan:
            for backend in names:
                label = f"{scenario.name} [{backend}]"
                if not args.fault_sweep:
                    progress.advance(label)
                    results.append(
                        run_scenario(
                            scenario, backend, seed=args.seed, name=shown, checker=checker, fault=fault
                        )
                    )
                    continue

                sweep = sweep_scenario(
                    scenario,
                    backend,
                    seed=args.seed,
                    name=shown,
                    checker=checker,
                    started=_Sweeping(progress, label),
                )
                results.extend(sweep)
    load_errors = [
        RunResult(name=shown, kind=RunKind.SCENARIO, backend="-", outcome=Outcome.ERROR, message=msg)
        for shown, msg in bad
    ]
    everything = results + load_errors

    plain = [r for r in results if r.fault is None]
    faulted = [r for r in results if r.fault is not None]
    if not args.quiet:
        _print_table(console, plain, faulted if args.fault_sweep else None)
    _print_problems(console, plain, bad)
    _print_misbehaviour(console, faulted, args)
    elapsed = time.perf_counter() - started
    nothing = not plan and not bad
    _print_summary(console, plain, len(bad), elapsed, nothing_selected=nothing, faulted=faulted)

    doc = ResultsFile(everything)
    try:
        if args.junit:
            from pmemsim.scenario.junit import write_junit

            write_junit(args.junit, everything)
        if args.results:
            doc.write(args.results)
    except OSError as exc:  # checked before the run; this is a race with something else
        where = exc.filename or args.results or args.junit
        print(f"pmemsim run: error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        import json

        sys.stdout.write(json.dumps(doc.to_json(), indent=2, sort_keys=True) + "\n")
        sys.stdout.flush()

    if bad or nothing:
        return EXIT_BAD_INPUT
    if any(r.outcome in (Outcome.FAILED, Outcome.ERROR) for r in results):
        return EXIT_FAILED
    return EXIT_OK


class _Sweeping:
    """``sweep_scenario``'s ``started``: a step of the bar per run; its fault runs are added once known."""

    def __init__(self, progress: _progress, label: str) -> None:
        self.progress = progress
        self.label = label
        self.added = False

    def __call__(self, point: FaultPoint | None, more: int) -> None:
        if point is not None and not self.added:
            self.progress.add(more)
            self.added = True
        self.progress.advance(self.label if point is None else f"{self.label} {point}")


class _progress:
    """A rich progress bar over ``total`` runs, drawn only on a terminal; ``advance(label)`` per run.

    It shows the rate (runs per second) and the time left at that rate; ``add(n)`` makes
    the total larger (a fault sweep learns its size from each scenario's plain run).
    """

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]pmemsim run"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            rate_column("runs"),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("", total=total)
        self._started = False

    def __enter__(self) -> _progress:
        if self._progress.tasks[0].total:
            self._progress.start()
        return self

    def add(self, n: int) -> None:
        """``n`` more runs to come."""
        total = self._progress.tasks[0].total or 0
        self._progress.update(self._task, total=total + n)

    def advance(self, label: str) -> None:
        """A run named ``label`` starts (the one before it is done)."""
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


def _sweep_cell(runs: Sequence[RunResult]) -> str:
    """``42 pairs: 40 raised, 2 handled`` (misbehaviour in red) for one scenario's fault runs."""
    counts: dict[str, int] = {}
    for r in runs:
        assert r.fault is not None
        counts[r.fault.outcome.value] = counts.get(r.fault.outcome.value, 0) + 1
    parts = [
        f"{n} {o}" if o in ("handled", "raised") else f"[bold red]{n} {o}[/]"
        for o, n in sorted(counts.items())
    ]
    return f"{len(runs)} pairs" + (": " + ", ".join(parts) if parts else "")


def _print_table(
    console: Console, results: Sequence[RunResult], faulted: Sequence[RunResult] | None = None
) -> None:
    from pathlib import PurePath

    from rich.markup import escape
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
    # A passing run's note (a crash check's summary line, why it was skipped); failures are
    # printed in full under the table.
    notes = [r.message.splitlines()[0] if r.message and r.outcome.value in ("passed", "skipped") else ""
             for r in results]  # fmt: skip
    if any(notes):
        table.add_column("note", overflow="fold")
    if faulted is not None:
        table.add_column("fault sweep", overflow="fold")
    for r, stem, note in zip(results, stems, notes, strict=True):
        style = _STYLE.get(r.outcome.value, "")
        errors = ", ".join(
            f"{_short_error(k)} x{v}" if v > 1 else _short_error(k) for k, v in sorted(r.errors.items())
        )
        cells = [stem if unique else r.name, r.backend, f"[{style}]{r.outcome.value}[/]"]
        cells += [f"{r.duration * 1000:.0f} ms", errors]
        if any(notes):
            cells.append(escape(note))
        if faulted is not None:
            mine = [f for f in faulted if f.name == r.name and f.backend == r.backend]
            cells.append(_sweep_cell(mine) if mine else ("-" if r.outcome.value != "passed" else "0 pairs"))
        table.add_row(*cells)
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


def _print_misbehaviour(console: Console, faulted: Sequence[RunResult], args: argparse.Namespace) -> None:
    """One line per misbehaving (site, hit), then the commands that reproduce the sweep and one pair."""
    from rich.markup import escape

    bad = [r for r in faulted if r.outcome.value in ("failed", "error")]
    if not bad:
        return
    for r in bad:
        console.print(
            f"[bold red]MISBEHAVED[/] {escape(r.name)} \\[{r.backend}] {escape(r.message)}", soft_wrap=True
        )
    import shlex

    if args.fault_sweep:
        words = ["pmemsim", "run", "--fault-sweep"]
        words += [f"--backend={b}" for b in args.backend or []]
        words += [w for k in args.select or [] for w in ("-k", k)]
        words += args.paths
        console.print(f"whole sweep: {escape(shlex.join(words))}", soft_wrap=True)
    first = bad[0]
    assert first.fault is not None
    one = ["pmemsim", "run", first.name, f"--backend={first.backend}", f"--fault={first.fault.point}"]
    console.print(f"one (site, hit): {escape(shlex.join(one))}", soft_wrap=True)


def _print_summary(
    console: Console,
    results: Sequence[RunResult],
    bad: int,
    elapsed: float,
    *,
    nothing_selected: bool,
    faulted: Sequence[RunResult] = (),
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
    misbehaved = sum(1 for r in faulted if r.outcome.value in ("failed", "error"))
    if faulted:
        parts.append(f"{len(faulted)} (site, hit) pair(s) driven, {misbehaved} misbehaved")
    ok = not bad and not counts["failed"] and not counts["error"] and not misbehaved
    style = "bold green" if ok else "bold red"
    console.print(f"[{style}]{', '.join(parts)}[/] in {elapsed:.2f}s")


RUN = Command(
    name="run",
    help="run scenario files on the simulated and/or real-mmap backend",
    description=_RUN_DESCRIPTION,
    epilog=_RUN_EPILOG,
    configure=_configure_run,
    run=_cmd_run,
)
