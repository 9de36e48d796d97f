"""The ``pmemsim`` command (also ``python -m pmemsim``): a thin shell over the library.

Parse, call the library, print, map the outcome to an exit code. Sub-commands are
rows of one table, :data:`COMMANDS`: each names its arguments and the function that
runs it. Importing this module costs only ``argparse``: rich, tomllib and the
scenario machinery are imported by the sub-command that needs them, so
``pmemsim --help`` starts fast.

Exit codes, for every sub-command: 0 every expectation held, 1 something failed,
2 bad input (a broken scenario file, a missing path, a bad option), 130 interrupted
(Ctrl-C or SIGTERM: child and checker processes are ended, temporary files removed).
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

    from pmemsim.persistence.checkers import Checker
    from pmemsim.persistence.engines import Engine
    from pmemsim.persistence.log import StoreLog
    from pmemsim.persistence.results import CrashReport
    from pmemsim.report.results import RunResult
    from pmemsim.scenario.steps import Scenario

__all__ = [
    "COMMANDS",
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "Command",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
#: Ctrl-C or SIGTERM: 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 130


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


def _output_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as an output file (its directories may be created), or None.

    Checked before a command starts its work, so that a typo in ``--results`` costs one
    line and exit 2, not a traceback after every scenario has run.
    """
    import os

    if not path:
        return "an empty file name"
    if os.path.isdir(path):
        return "is a directory; give a file name"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else "is not writable"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the nearest existing ancestor: the command creates the rest
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create files in {parent}"
    return None


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        backends = _backends(args.backend)
    except ValueError as exc:
        print(f"pmemsim run: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for option, path in (("--junit", args.junit), ("--results", args.results)):
        problem = _output_path_problem(path) if path is not None else None
        if problem:
            print(f"pmemsim run: error: {option} {path}: {problem}", file=sys.stderr)
            return EXIT_BAD_INPUT

    import time
    from pathlib import PurePath

    from pmemsim.report.results import Outcome, ResultsFile, RunKind, RunResult
    from pmemsim.report.terminal import report_console
    from pmemsim.scenario.loader import ScenarioError, discover, load_scenario
    from pmemsim.scenario.runner import resolve_checker, run_scenario

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


def _rate_and_eta(task: Any, unit: str = "runs") -> str:
    """``"12.3 runs/s, 0:00:04 left"`` for a rich task, ``""`` until the rate is known."""
    import datetime

    speed = task.speed
    if not speed:
        return ""
    left = task.time_remaining
    eta = f", {datetime.timedelta(seconds=round(left))} left" if left is not None else ""
    return f"{speed:,.1f} {unit}/s{eta}"


def _rate_column(unit: str) -> Any:
    """A rich progress column showing :func:`_rate_and_eta` in ``unit``."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(_rate_and_eta(task, unit), style="progress.remaining")

    return _RateColumn()


class _progress:
    """A rich progress bar over ``total`` runs, drawn only on a terminal; ``advance(label)`` per run.

    It shows the rate (runs per second) and the time left at that rate.
    """

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]pmemsim run"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _rate_column("runs"),
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
    for r, stem, note in zip(results, stems, notes, strict=True):
        style = _STYLE.get(r.outcome.value, "")
        errors = ", ".join(
            f"{_short_error(k)} x{v}" if v > 1 else _short_error(k) for k, v in sorted(r.errors.items())
        )
        cells = [stem if unique else r.name, r.backend, f"[{style}]{r.outcome.value}[/]"]
        cells += [f"{r.duration * 1000:.0f} ms", errors]
        table.add_row(*cells, *([escape(note)] if any(notes) else []))
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


# -- pmemsim replay ------------------------------------------------------------------------------

_REPLAY_DESCRIPTION = """\
Replay a store log: hand every crash state an engine picks to a checker, on private
in-memory copies of the registered files (your files are only read, never written),
and print the minimal failing trace. Exit 0 when every checked state is consistent,
1 when at least one is not, 2 on bad input (unreadable or malformed log, unknown
engine, checker not found) and on checker errors (a checker that cannot be called,
returns something other than True/False/None, times out, dies, or rejects the image
before any recorded store): those say nothing about the pool. A log with no store, or
an engine that picks no state, is bad input too unless --allow-empty.

LOG is either
  * a pmemcheck store log (valgrind --tool=pmemcheck --log-stores=yes ..., or
    pmemsim.persistence.dump_pmemcheck), the format pmreorder reads. It names files by
    path only, so each file's *current* content is the image before the first store:
    restore a pristine copy first, as for pmreorder, or give it with --image;
  * a log saved by pmemsim (pmemsim.persistence.saved.save_log; JSON), which also keeps
    each file's content from before the first store and the store granularity.

A --checker function gets each image as a read-only buffer, check(image) or
check(image, ctx) with ctx.markers / ctx.data / ctx.epoch / ctx.record, and returns
True/None (consistent) or False (inconsistent); raising counts as inconsistent. It
runs in a forked process, so a checker that crashes ends the replay with a checker
error instead of killing it. A --checker-prog command gets the image file path as its
last argument and answers by exit status (0 consistent), exactly as pmreorder's
-c prog, with PMREORDER_MARKERS set.

Runs that sample (Random, ReorderPartial) or hit --max-states say NOT EXHAUSTIVE.
"""

_REPLAY_EPILOG = """\
examples:
  pmemsim replay store.log --checker mychecks:pool_ok             mychecks.py in the current directory
  pmemsim replay store.log --checker-prog "python3 check.py"      pmreorder-style program checker
  pmemsim replay store.log --engine ReorderFull -x TX=ReorderAccumulative --checker mychecks:pool_ok
  pmemsim replay store.log --engine Random:7:500 --workers 2 --checker mychecks:pool_ok
  pmemsim replay store.log --image /mnt/pmem/pool=pool.pristine --checker-prog ./check
  pmemsim replay saved.json --checker mychecks:pool_ok --json > verdict.json

engines: NoReorderNoCheck, NoReorderDoCheck, ReorderFull, ReorderPartial, ReorderAccumulative,
ReorderReverseAccumulative (pmreorder's), Exhaustive (every distinct image the x86 ADR model
allows, unflushed stores included; the default), Random or Random:SEED:N (N images per epoch).

--json prints exactly one object on stdout, whatever the checker prints (that goes to
stderr): {"format": "pmemsim-crash-report", "version", "verdict", "states_checked",
"distinct_images", "inconsistent", "errors", "complete", "limits", "failures": [...],
"trace": the minimal failing trace or null, ...}; the human summary goes to stderr.
"""


def _configure_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "log", metavar="LOG", help="a pmemcheck store log or a log saved by pmemsim, e.g. store.log"
    )
    p.add_argument(
        "--engine",
        default="Exhaustive",
        metavar="NAME",
        help="crash-state engine for the whole log (default: Exhaustive; e.g. --engine ReorderFull)",
    )
    p.add_argument(
        "-x",
        dest="markers",
        action="append",
        metavar="MARKER=ENGINE",
        help="engine for the epochs inside MARKER.BEGIN/MARKER.END, as pmreorder's -x: repeatable, "
        'a comma-separated list, or a JSON file {"MARKER": "ENGINE"} '
        "(e.g. -x TX=NoReorderDoCheck,ALLOC=ReorderFull)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--checker",
        metavar="MODULE:FUNCTION",
        help="Python checker FUNCTION(image) -> bool | None; MODULE is imported with the current "
        "directory first on sys.path (e.g. --checker mychecks:pool_ok)",
    )
    which.add_argument(
        "--checker-prog",
        metavar='"CMD ARGS"',
        help="program checker, split like a shell command; the image path is appended and exit "
        'status 0 means consistent (e.g. --checker-prog "python3 check.py --strict")',
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="explore in N forked processes; results are identical for any N (default 1; e.g. --workers 2)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="seed for ReorderPartial and Random (default 0; e.g. --seed 42)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="limit for one checker call in seconds; a call that runs longer is a checker error "
        "(default 60; e.g. --timeout 5)",
    )
    p.add_argument(
        "--max-states",
        type=int,
        metavar="N",
        help="per-epoch state budget of Exhaustive and ReorderFull (default 65536); an epoch over it "
        "is explored fewest-changes first and the run is reported NOT EXHAUSTIVE (e.g. --max-states 1000000)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="explore the log's slices on a Dask distributed cluster: a scheduler address "
        "(tcp://host:8786) or local:N for a LocalCluster of N worker processes here; needs "
        "pmemsim[dask]; checkers must be MODULE:FUNCTION importable on the workers, or programs "
        "present on each worker",
    )
    where.add_argument(
        "--shard",
        metavar="K/N",
        help="explore only shard K of N (a deterministic share of the log's slices) and print the "
        "shard result as JSON on stdout, for `pmemsim merge` (CI matrices: N jobs, one merge)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a log with no store, or an engine that picks no state (otherwise exit 2: a silent pass)",
    )
    p.add_argument(
        "--image",
        action="append",
        metavar="FILE=PATH",
        help="take the content of registered FILE (its path in a pmemcheck log) before the first store "
        "from PATH instead of FILE itself; repeatable (e.g. --image /mnt/pmem/pool=pool.pristine)",
    )
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="accept a pmemcheck log without STOP (pmemcheck killed) and replay what is there "
        "(pmreorder silently checks nothing)",
    )
    p.add_argument(
        "--no-shrink",
        action="store_true",
        help="do not compute the minimal failing trace (it costs more checker calls)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the verdict as one JSON object on stdout; the human summary goes to stderr",
    )


def _import_checker(spec: str) -> Callable[[Any], object]:
    """The callable named ``module:function`` (cwd first on sys.path); ValueError saying what is wrong."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ValueError(f"--checker {spec!r}: expected MODULE:FUNCTION, e.g. mychecks:pool_ok")
    # Importing must not write __pycache__ into the user's directory.
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        module = importlib.import_module(module_name.strip())
    except Exception as exc:  # ImportError, or the module's own SyntaxError/NameError/...
        raise ValueError(
            f"--checker {spec!r}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        sys.dont_write_bytecode = bytecode
    fn: object = module
    for part in attr.strip().split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"--checker {spec!r}: module {module_name!r} has no {attr!r}")
    if not callable(fn):
        raise ValueError(f"--checker {spec!r}: {attr!r} is not callable")
    return fn


def _pairs(values: list[str] | None, option: str) -> list[tuple[str, str]]:
    out = []
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise ValueError(f"{option} {value!r}: expected NAME=VALUE")
        out.append((key.strip(), rest.strip()))
    return out


def _marker_engines(values: list[str] | None) -> list[tuple[str, str]]:
    """-x values as pmreorder takes them: MARKER=ENGINE, comma-separated lists, or a JSON file."""
    import json
    import os

    pairs: list[tuple[str, str]] = []
    for value in values or []:
        if "=" not in value and os.path.exists(value):
            from pmemsim._files import read_regular_file

            try:
                doc = json.loads(read_regular_file(value, 1 << 20, "a marker file"))
            except OSError as exc:
                raise ValueError(f"-x {value!r}: cannot read it: {exc.strerror or exc}") from None
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise ValueError(f"-x {value!r}: not a JSON object of MARKER: ENGINE ({exc})") from None
            if not isinstance(doc, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
            ):
                raise ValueError(f'-x {value!r}: expected a JSON object like {{"TX": "ReorderFull"}}')
            pairs += list(doc.items())
        else:
            pairs += _pairs([part for part in value.split(",") if part.strip()] or [value], "-x")
    return pairs


def _replay_images(values: list[str] | None, keys: Sequence[str]) -> dict[str, str]:
    """--image FILE=PATH against the log's file keys (which may contain '=')."""
    images: dict[str, str] = {}
    for value in values or []:
        key = next((k for k in sorted(keys, key=len, reverse=True) if value.startswith(k + "=")), None)
        if key is None:
            known = ", ".join(keys) or "none"
            raise ValueError(
                f"--image {value!r}: expected FILE=PATH with FILE one of the log's files ({known})"
            )
        path = value[len(key) + 1 :]
        if not path:
            raise ValueError(f"--image {value!r}: no PATH after '='")
        images[key] = path
    return images


def _cmd_replay(args: argparse.Namespace) -> int:
    def bad(message: str) -> int:
        print(f"pmemsim {_verb(args)}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    if args.workers < 1:
        return bad(f"--workers must be at least 1, got {args.workers}")
    if not args.timeout > 0 or args.timeout == float("inf"):
        return bad(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.max_states is not None and args.max_states < 1:
        return bad(f"--max-states must be at least 1, got {args.max_states}")
    if getattr(args, "shard", None) is not None:
        try:
            args.shard = _shard_spec(args.shard)
        except ValueError as exc:
            return bad(str(exc))
    if getattr(args, "dask", None) is not None and args.workers != 1:
        return bad("--dask and --workers do not mix: the cluster's workers explore the slices")

    import os

    from pmemsim.persistence.checkers import CallableChecker, ProgramChecker
    from pmemsim.persistence.engines import engine_from_name
    from pmemsim.persistence.log import LogError

    try:
        engine = engine_from_name(args.engine)
        markers = {name: engine_from_name(spec) for name, spec in _marker_engines(args.markers)}
    except ValueError as exc:
        return bad(str(exc))

    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        checker: Checker
        try:
            if args.checker is not None:
                with _QuietStdout(bool(args.json or getattr(args, "shard", None))):  # import-time prints
                    function = _import_checker(args.checker)
                checker = CallableChecker(function, timeout=args.timeout)
            else:
                import shlex

                checker = ProgramChecker(shlex.split(args.checker_prog), timeout=args.timeout)
        except ValueError as exc:
            return bad(str(exc))

        import warnings

        from pmemsim.persistence.saved import read_log

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                log = read_log(args.log, allow_truncated=args.allow_truncated)
        except OSError as exc:
            return bad(f"cannot read {args.log}: {exc.strerror or exc}")
        except LogError as exc:
            return bad(_located(args.log, exc))
        for warning in caught:
            text = _located(args.log, Exception(warning.message))
            print(f"pmemsim replay: warning: {text}", file=sys.stderr)
        try:
            images = _replay_images(args.image, list(log.files))
        except ValueError as exc:
            return bad(str(exc))
        return _replay(args, log, engine, markers, checker, images)
    finally:
        # The checker module stays imported (forked workers inherit it); only the path goes.
        if sys.path and sys.path[0] == cwd:
            del sys.path[0]
        elif cwd in sys.path:
            sys.path.remove(cwd)


def _replay(
    args: argparse.Namespace,
    log: StoreLog,
    engine: Engine,
    markers: dict[str, Engine],
    checker: Checker,
    images: dict[str, str],
) -> int:
    import json

    from rich.console import Console
    from rich.markup import escape

    from pmemsim.persistence.checkers import CallableChecker, CheckerError
    from pmemsim.persistence.explore import NothingToCheck, plan_replay, replay
    from pmemsim.persistence.image import initial_images
    from pmemsim.persistence.log import LogError
    from pmemsim.persistence.progress import CountingChecker, estimate_states, stale_files
    from pmemsim.persistence.shrink import ShrinkError, shrink

    # With --json or --shard, stdout carries exactly one JSON object: everything else goes to stderr.
    machine = bool(args.json or getattr(args, "shard", None))
    console = Console(stderr=machine, highlight=False)

    def bad(message: str) -> int:
        print(f"pmemsim {_verb(args)}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    try:
        plan = plan_replay(log)
    except LogError as exc:
        return bad(_located(args.log, exc))
    try:
        # Unreadable or short images are bad input, found before any work.
        before = initial_images(log, images)
    except LogError as exc:
        hint = "give the file's content before the first store with --image FILE=PATH"
        return bad(f"{_located(args.log, exc)}; {hint}")
    counting = CountingChecker(checker)
    kind = "saved pmemsim log" if _is_saved(args.log) else "pmemcheck store log"
    console.print(
        f"[bold]{escape(args.log)}[/]: {kind}, {len(log.records)} records, {len(log.files)} file(s), "
        f"{len(plan.epochs)} epochs; engine {engine.name}"
        + ("".join(f", {n}={e.name}" for n, e in markers.items()))
        + f", checker {escape(repr(checker))}",
        soft_wrap=True,
    )
    stale = stale_files(log, before)
    if stale:
        console.print(
            f"[yellow]warning[/]: {escape(', '.join(stale))} already hold(s) every store of the log: "
            "probably the state after the run, so every crash state looks the same. Restore a pristine "
            "copy first (as for pmreorder) or pass --image FILE=PRISTINE_COPY.",
            soft_wrap=True,
        )
    options: dict[str, Any] = {
        "engine": engine,
        "markers": markers,
        "seed": args.seed,
        "images": images,
        "timeout": args.timeout,
        "max_states": args.max_states,
    }
    if getattr(args, "shard", None) is not None:
        try:
            with _QuietStdout(True):
                doc = _shard_doc(args, log, checker, options)
        except (CheckerError, LogError, ValueError) as exc:
            return bad(str(exc))
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
        return EXIT_OK
    total = estimate_states(plan, engine, markers)
    with _QuietStdout(machine), _Polling(console, "pmemsim replay", total, lambda: counting.count):
        try:
            if getattr(args, "merge_docs", None) is not None:
                from pmemsim.persistence.shards import merge_shards

                docs, names, empty = args.merge_docs, args.merge_names, args.allow_empty
                report = merge_shards(log, counting, docs, names=names, allow_empty=empty, **options)
            elif getattr(args, "dask", None) is not None:
                report = _replay_on_dask(args, log, checker, options)
            else:
                report = replay(
                    log,
                    counting,
                    workers=args.workers,
                    allow_empty=args.allow_empty,
                    # A Python checker runs in a forked process: one that crashes cannot take the replay.
                    isolate=isinstance(checker, CallableChecker),
                    **options,
                )
        except NothingToCheck as exc:
            text = str(exc).replace("allow_empty=True", "--allow-empty")
            return bad(_located(args.log, Exception(text)))
        except CheckerError as exc:
            return bad(str(exc))
        except LogError as exc:
            return bad(_located(args.log, exc))
        except ValueError as exc:  # --dask: the extra, the address, the workers
            return bad(str(exc))

        style = "bold green" if report.ok and report.complete else "bold yellow" if report.ok else "bold red"
        console.print(f"[{style}]{escape(report.summary())}[/] in {report.elapsed:.2f}s", soft_wrap=True)
        for warning in report.warnings:
            console.print(f"[yellow]warning[/]: {escape(warning)}", soft_wrap=True)
        for limit in report.limits:
            console.print(f"[yellow]not exhaustive[/]: {escape(limit)}", soft_wrap=True)
        shown = report.failures[:5]
        for failure in shown:
            console.print(escape(failure.describe()), soft_wrap=True)
        failing = report.inconsistent + report.errors
        if failing > len(shown):
            console.print(f"... {failing - len(shown)} more failing state(s) not listed", soft_wrap=True)
        trace = None
        first = next((f for f in report.failures if f.verdict.value == "inconsistent"), None)
        if first is not None and not args.no_shrink:
            try:
                small = _shrink_apart(shrink, log, first, checker, images, args.timeout)
            except (ShrinkError, CheckerError) as exc:
                why = escape(str(exc))
                console.print(f"[yellow]cannot shrink the first failure[/]: {why}", soft_wrap=True)
            else:
                trace = small.trace
                calls = small.tests
                console.print(f"[bold]Minimal failing trace[/] ({calls} checker calls):", soft_wrap=True)
                console.print(escape(small.trace), soft_wrap=True, highlight=False)
        if report.errors:
            console.print(
                f"[bold red]checker error[/]: {report.errors} state(s) got no usable answer from the checker "
                "(see above): fix the checker; this says nothing about the pool",
                soft_wrap=True,
            )
    if args.json:
        doc = report.to_dict()
        doc["log"] = args.log
        doc["trace"] = trace
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()
    if report.errors:
        return EXIT_BAD_INPUT
    return EXIT_OK if report.ok else EXIT_FAILED


def _shrink_apart(
    shrink: Callable[..., Any], log: StoreLog, failure: Any, checker: Checker, images: Any, timeout: float
) -> Any:
    """Shrink ``failure``; a Python checker runs in a forked process, as during the replay.

    The shrinker tries states no engine visited, so a checker that crashes on one must not
    take the command along: that is a CheckerCrashed (the trace is then left out).
    """
    from pmemsim.persistence import parallel
    from pmemsim.persistence.checkers import CallableChecker
    from pmemsim.persistence.explore import CheckerCrashed

    if not isinstance(checker, CallableChecker):
        return shrink(log, failure, checker, images=images, timeout=timeout)
    child = parallel.fork(lambda: shrink(log, failure, checker, images=images, timeout=timeout))
    try:
        return parallel.collect(*child)
    except parallel.WorkerDied as died:
        raise CheckerCrashed(f"the checker crashed its process while shrinking ({died})") from None


def _verb(args: argparse.Namespace) -> str:
    """The command messages are from: ``merge`` runs the replay of its shards."""
    return "merge" if getattr(args, "merge_docs", None) is not None else "replay"


def _shard_spec(text: str) -> tuple[int, int]:
    """``"K/N"`` as (K, N); ValueError naming what is wrong."""
    k, sep, n = text.partition("/")
    try:
        shard, shards = int(k), int(n)
    except ValueError:
        shard = shards = 0
    if not sep or not 1 <= shard <= shards <= 1 << 16:
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N <= 65536, e.g. --shard 2/4")
    return shard, shards


def _replay_params(args: argparse.Namespace) -> dict[str, Any]:
    """The replay options a shard records, so that `pmemsim merge` can run the same replay."""
    return {
        "log": args.log,
        "checker": args.checker,
        "checker_prog": args.checker_prog,
        "engine": args.engine,
        "markers": args.markers or [],
        "seed": args.seed,
        "timeout": args.timeout,
        "max_states": args.max_states,
        "image": args.image or [],
        "allow_truncated": bool(args.allow_truncated),
        "allow_empty": bool(args.allow_empty),
    }


def _shard_doc(args: argparse.Namespace, log: StoreLog, checker: Checker, options: dict[str, Any]) -> Any:
    """Explore this job's shard; the result document (a summary line goes to stderr)."""
    from pmemsim.persistence.shards import explore_shard

    shard, shards = args.shard
    doc = explore_shard(log, checker, shard, shards, params=_replay_params(args), **options)
    states = sum(len(r["first_keys"]) + r["nondedup"] for r in doc["results"])
    print(
        f"pmemsim replay: shard {shard}/{shards}: {len(doc['results'])} of {doc['slices']} slices, "
        f"about {states} states; merge the shards with `pmemsim merge`",
        file=sys.stderr,
    )
    return doc


def _replay_on_dask(
    args: argparse.Namespace, log: StoreLog, checker: Checker, options: dict[str, Any]
) -> CrashReport:
    """Replay on a Dask cluster (ValueError for a missing extra, a bad address, a checker workers lack)."""
    import contextlib

    from pmemsim.persistence.checkers import ProgramChecker
    from pmemsim.persistence.explore import replay

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("--dask needs Dask distributed: pip install 'pmemsim[dask]'") from None
    with contextlib.ExitStack() as stack:
        if args.dask.startswith("local:"):
            try:
                n = int(args.dask.partition(":")[2])
            except ValueError:
                n = 0
            if not 1 <= n <= 256:
                raise ValueError(f"--dask {args.dask!r}: expected local:N with N from 1 to 256")
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
        else:
            try:
                client = stack.enter_context(Client(args.dask, timeout=30))  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError, ValueError) as exc:
                raise ValueError(f"--dask {args.dask!r}: cannot reach the scheduler: {exc}") from None
        _check_workers_can_run(client, checker, args, ProgramChecker)
        return replay(log, checker, executor=client.get_executor(), allow_empty=args.allow_empty, **options)
    raise AssertionError("unreachable")  # pragma: no cover


def _check_workers_can_run(client: Any, checker: Checker, args: argparse.Namespace, program: type) -> None:
    """Up front: the checker's program exists on every worker, or its module imports there."""
    import shutil

    if isinstance(checker, program):
        argv0 = checker.argv[0]  # type: ignore[attr-defined]
        found = client.run(shutil.which, argv0)
        lacking = sorted(w for w, where in found.items() if where is None)
        if lacking:
            raise ValueError(f"checker program {argv0!r} is not found on worker(s) {', '.join(lacking)}")
    elif args.checker:
        module = args.checker.partition(":")[0].strip()
        try:
            client.run(__import__, module)
        except Exception as exc:
            raise ValueError(
                f"--checker {args.checker!r}: module {module!r} cannot be imported on the workers "
                f"({type(exc).__name__}: {exc}); install it there or put it on their PYTHONPATH"
            ) from None


class _QuietStdout:
    """With --json, send everything written to file descriptor 1 (a checker's prints, its
    children's output) to stderr while the replay runs, so stdout carries the one JSON object."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.saved = -1

    def __enter__(self) -> None:
        if self.active:
            import os

            sys.stdout.flush()
            self.saved = os.dup(1)
            os.dup2(2, 1)

    def __exit__(self, *exc: object) -> None:
        if self.saved >= 0:
            import os

            sys.stdout.flush()
            os.dup2(self.saved, 1)
            os.close(self.saved)
            self.saved = -1


def _located(path: str, exc: Exception) -> str:
    """``exc``'s message, prefixed with ``path`` unless it already names it."""
    text = str(exc)
    return text if text.startswith(path) else f"{path}: {text}"


def _is_saved(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(4096).lstrip().startswith("{")


class _Polling:
    """A rich progress bar whose count a thread polls from ``poll()`` while the body runs (terminal only)."""

    def __init__(self, console: Console, label: str, total: int, poll: Callable[[], int]) -> None:
        import threading

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("states (estimated total)"),
            TimeElapsedColumn(),
            _rate_column("states"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("", total=max(total, 1))
        self._total = max(total, 1)
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pmemsim-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            done = self._poll()
            if done > self._total:  # the estimate was low: grow the bar rather than overflow it
                self._total = done
            self._progress.update(self._task, completed=done, total=self._total)

    def __enter__(self) -> None:
        if not self._progress.disable:
            self._progress.start()
            self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._progress.stop()


# -- pmemsim report ------------------------------------------------------------------------------

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
        problem = _output_path_problem(args.html)
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


# -- the command table ---------------------------------------------------------------------------

#: Every sub-command, in the order ``pmemsim --help`` lists them.
RUN = Command(
    name="run",
    help="run scenario files on the simulated and/or real-mmap backend",
    description=_RUN_DESCRIPTION,
    epilog=_RUN_EPILOG,
    configure=_configure_run,
    run=_cmd_run,
)

REPLAY = Command(
    name="replay",
    help="check every crash state of a pmemcheck (or saved) store log with a checker",
    description=_REPLAY_DESCRIPTION,
    epilog=_REPLAY_EPILOG,
    configure=_configure_replay,
    run=_cmd_replay,
)

REPORT = Command(
    name="report",
    help="error-path coverage matrix (terminal and HTML) from results files",
    description=_REPORT_DESCRIPTION,
    epilog=_REPORT_EPILOG,
    configure=_configure_report,
    run=_cmd_report,
)

# -- pmemsim merge -------------------------------------------------------------------------------

_MERGE_DESCRIPTION = """\
Merge the shard results of `pmemsim replay LOG --shard K/N` (one per CI job) into the
report one replay would have given: the same states, images, failures and minimal
trace, printed (or --json) exactly as `pmemsim replay` prints it, with its exit status.
The log, the checker and the options come from the shards (they must all agree) and
the log must still be at the path the shards name, unchanged (its digest is checked).
Missing, duplicated or foreign shards are bad input (exit 2).
"""

_MERGE_EPILOG = """\
examples:
  for k in 1 2 3 4; do pmemsim replay store.log --checker mychecks:pool_ok --shard $k/4 > shard$k.json; done
  pmemsim merge shard1.json shard2.json shard3.json shard4.json
  pmemsim merge shard*.json --json > verdict.json
"""

#: The most a shard file may hold (a shard lists the keys of the states it judged: 33 bytes each).
MAX_SHARD_BYTES = 1 << 30


def _configure_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "shards", nargs="+", metavar="SHARD.json", help="shard results of `pmemsim replay --shard K/N`"
    )
    p.add_argument("--no-shrink", action="store_true", help="do not compute the minimal failing trace")
    p.add_argument("--json", action="store_true", help="print the merged report as one JSON object on stdout")


def _cmd_merge(args: argparse.Namespace) -> int:
    import json

    from pmemsim._files import InputFileError, read_regular_file

    def bad(message: str) -> int:
        print(f"pmemsim merge: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    docs: list[Any] = []
    for path in args.shards:
        try:
            text = read_regular_file(path, MAX_SHARD_BYTES, "a shard result")
        except InputFileError as exc:
            return bad(str(exc))
        except OSError as exc:
            return bad(f"cannot read {path}: {exc.strerror or exc}")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return bad(f"{path}: not JSON ({type(exc).__name__}: {exc})")
        if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
            return bad(f"{path}: not a shard result of `pmemsim replay --shard` (no params)")
        docs.append(doc)
    params = docs[0]["params"]
    for path, doc in zip(args.shards, docs, strict=True):
        if doc["params"] != params:
            return bad(f"{path}: run with other options than {args.shards[0]}: the shards must agree")
    expected = {
        "log": (str,),
        "checker": (str, type(None)),
        "checker_prog": (str, type(None)),
        "engine": (str,),
        "markers": (list,),
        "seed": (int, type(None)),
        "timeout": (int, float),
        "max_states": (int, type(None)),
        "image": (list,),
        "allow_truncated": (bool,),
        "allow_empty": (bool,),
    }
    for key, kinds in expected.items():
        value = params.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return bad(f"{args.shards[0]}: params.{key} is {value!r:.60}: not a value `pmemsim replay` takes")
    if not all(isinstance(v, str) for v in params["markers"] + params["image"]):
        return bad(f"{args.shards[0]}: params.markers and params.image must be lists of strings")
    try:
        replay_args = argparse.Namespace(
            log=str(params["log"]),
            checker=params["checker"],
            checker_prog=params["checker_prog"],
            engine=str(params["engine"]),
            markers=list(params["markers"]),
            seed=params["seed"],
            timeout=float(params["timeout"]),
            max_states=params["max_states"],
            image=list(params["image"]),
            allow_truncated=bool(params["allow_truncated"]),
            allow_empty=bool(params["allow_empty"]),
            workers=1,
            dask=None,
            shard=None,
            no_shrink=args.no_shrink,
            json=args.json,
            merge_docs=docs,
            merge_names=list(args.shards),
        )
    except (KeyError, TypeError, ValueError) as exc:
        return bad(f"{args.shards[0]}: malformed params ({type(exc).__name__}: {exc})")
    if (replay_args.checker is None) == (replay_args.checker_prog is None):
        return bad(f"{args.shards[0]}: the params name no checker (or two)")
    return _cmd_replay(replay_args)


MERGE = Command(
    name="merge",
    help="merge the shard results of `pmemsim replay --shard K/N` into one report",
    description=_MERGE_DESCRIPTION,
    epilog=_MERGE_EPILOG,
    configure=_configure_merge,
    run=_cmd_merge,
)

COMMANDS: tuple[Command, ...] = (RUN, REPLAY, MERGE, REPORT)

_MAIN_DESCRIPTION = """\
pmemsim: PMDK libpmemset's part-mapping API on simulated and real address spaces,
with fault injection and crash-consistency checking.
"""

_MAIN_EPILOG = """\
examples:
  pmemsim run scenarios/                              run every shipped scenario
  pmemsim run scenarios/ --junit junit.xml            and write JUnit XML for CI
  pmemsim run scenarios/ --results reports/results.json && pmemsim report --html reports/index.html
                                                      error-path coverage matrix, terminal and HTML
  pmemsim replay store.log --checker mychecks:pool_ok crash states of a pmemcheck store log
  pmemsim merge shard*.json                           merge `replay --shard K/N` results
  pmemsim COMMAND --help                              every option of COMMAND, with examples

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
    with _terminated_as_interrupt():
        try:
            return command.run(args)
        except KeyboardInterrupt:
            # Every child and checker process was ended and every temporary file removed on the
            # way out (finally blocks); what is left is to say so once.
            print(f"pmemsim {command.name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


class _terminated_as_interrupt:
    """While the command runs, SIGTERM unwinds like Ctrl-C (main thread only; restored after)."""

    def __enter__(self) -> None:
        import signal
        import threading

        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, _raise_interrupt)

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
