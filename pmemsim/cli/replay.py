"""``pmemsim replay``: every crash state of a store log judged by a checker, and the minimal failing trace."""

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
    Polling,
    QuietStdout,
    located,
)

if TYPE_CHECKING:
    from typing import Any

    from pmemsim.persistence.checkers import Checker
    from pmemsim.persistence.engines import Engine
    from pmemsim.persistence.log import StoreLog
    from pmemsim.persistence.model import EpochPlan
    from pmemsim.persistence.results import CrashReport

__all__ = ["REPLAY", "replay_command"]

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
-c prog, with PMREORDER_MARKERS set. A Python program (python [options] script.py, or
a script whose #! line names Python) starts warm: one interpreter is started once
and forks per state, which costs a millisecond instead of an interpreter's start;
the program sees the same arguments, environment, directory and modules, only its
hash seed is the same for every state. --cold-start starts every run from scratch.
The image file is rewritten only where the next state differs, unless the program
wrote it (or kept it open): then it gets a new file with the whole image. What a run
leaves running in its session is killed when it ends.

--recover / --recover-prog check durable linearizability instead, with no checker
written: the function (or program) recovers the pool as a restart would and returns
(prints) its contents; a crash inside an operation (an outermost MARKER.BEGIN/.END
section) must recover to the value before it or after it, anywhere else to the
current value. A recovery that raises (exits non-zero) is an inconsistency. The values
at the operations' boundaries are recovered from the log before exploring; recovery
failing there (no crash involved) is exit 2. A program's output is compared as text.

Runs that sample (Random, ReorderPartial) or hit --max-states say NOT EXHAUSTIVE.

In one process, a pmemcheck log is replayed as it is read: each epoch is explored as
soon as it is cut, then dropped, so memory holds the pool, not the log (plus an entry
per distinct state judged and per section marker); a saved log is loaded whole, then
explored the same way. The log is read and planned whole first with --workers,
--shard, --dask, --recover/--recover-prog and --allow-truncated, and for a log the
streaming reader hands back (a warning or an error to locate, a file registered after
the first epoch: then explored again, whole). Results are the same either way.
"""

_REPLAY_EPILOG = """\
examples:
  pmemsim replay store.log --checker mychecks:pool_ok             mychecks.py in the current directory
  pmemsim replay store.log --checker-prog "python3 check.py"      pmreorder-style program checker
  pmemsim replay store.log --engine ReorderFull -x TX=ReorderAccumulative --checker mychecks:pool_ok
  pmemsim replay store.log --engine Random:7:500 --workers 2 --checker mychecks:pool_ok
  pmemsim replay store.log --image /mnt/pmem/pool=pool.pristine --checker-prog ./check
  pmemsim replay saved.json --checker mychecks:pool_ok --json > verdict.json
  pmemsim replay store.log --recover mypool:contents             no checker: before or after each operation
  pmemsim replay store.log --recover-prog "./pool_dump"           a C recovery printing the contents

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
    which.add_argument(
        "--recover",
        metavar="MODULE:FUNCTION",
        help="durable linearizability instead of a checker: FUNCTION(image) -> value recovers the pool; "
        "each crash must give the value before or after its operation (e.g. --recover mypool:contents)",
    )
    which.add_argument(
        "--recover-prog",
        metavar='"CMD ARGS"',
        help="as --recover, with a program that gets the image path appended and prints the value, "
        'compared as text (e.g. --recover-prog "./pool_dump --entries")',
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
        "--cold-start",
        action="store_true",
        help="start a Python --checker-prog / --recover-prog program from scratch for every state "
        "instead of forking it from a warm interpreter (slower; a fresh hash seed per run)",
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


def _load_checker(spec: str) -> Callable[..., object]:
    """The ``--checker`` callable (the current directory is already first on sys.path)."""
    from pmemsim._callables import CallableNotFound, load_callable

    try:
        return load_callable(spec)
    except CallableNotFound as exc:
        raise ValueError(f"--checker {spec!r}: {exc}") from None


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


def replay_command(args: argparse.Namespace) -> int:
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
    recover, recover_prog = getattr(args, "recover", None), getattr(args, "recover_prog", None)

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
        checker: Checker | Any
        try:
            if recover is not None or recover_prog is not None:
                checker = _load_recovery(recover, recover_prog, args)
            elif args.checker is not None:
                with QuietStdout(bool(args.json or getattr(args, "shard", None))):  # import-time prints
                    function = _load_checker(args.checker)
                checker = CallableChecker(function, timeout=args.timeout)
            else:
                import shlex

                checker = ProgramChecker(
                    shlex.split(args.checker_prog),
                    timeout=args.timeout,
                    warm=not getattr(args, "cold_start", False),
                )
        except ValueError as exc:
            return bad(str(exc))

        streams = _streams(args, checker)
        if streams == "pmemcheck":
            code = _replay_streamed(args, engine, markers, checker)
            if code is not None:
                return code

        import warnings

        from pmemsim.persistence.saved import read_log

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                log = read_log(args.log, allow_truncated=args.allow_truncated)
        except OSError as exc:
            return bad(f"cannot read {args.log}: {exc.strerror or exc}")
        except LogError as exc:
            return bad(located(args.log, exc))
        for warning in caught:
            text = located(args.log, Exception(warning.message))
            print(f"pmemsim replay: warning: {text}", file=sys.stderr)
        try:
            images = _replay_images(args.image, list(log.files))
        except ValueError as exc:
            return bad(str(exc))
        if streams == "saved":  # already in memory: streamed from the list, the plan never built whole
            code = _replay_streamed(args, engine, markers, checker, log)
            if code is not None:
                return code
        return _replay(args, log, engine, markers, checker, images)
    finally:
        # The checker module stays imported (forked workers inherit it); only the path goes.
        if sys.path and sys.path[0] == cwd:
            del sys.path[0]
        elif cwd in sys.path:
            sys.path.remove(cwd)


class _Out:
    """Where the human lines of a replay go: rich's console on a terminal (styles, the progress bar),
    plain text elsewhere, without importing rich at all (a replay in a script or CI starts faster).

    :meth:`say` takes a template whose only markup is ``[style]...[/]`` around literal text,
    and ``{}`` fields for values, which are escaped for rich or written as they are.
    """

    _TAG = None  # the pattern of a markup tag, compiled on first plain use

    def __init__(self, stderr: bool) -> None:
        self.stream = sys.stderr if stderr else sys.stdout
        self.console: Any = None
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from rich.console import Console

            self.console = Console(stderr=stderr, highlight=False)

    @property
    def terminal(self) -> bool:
        """Whether the lines go to a terminal (then a progress bar is drawn)."""
        return self.console is not None

    def say(self, template: str, *values: object) -> None:
        """Print one line: ``template`` with the ``{}`` fields filled with ``values``."""
        if self.console is not None:
            from rich.markup import escape

            self.console.print(template.format(*(escape(str(v)) for v in values)), soft_wrap=True)
            return
        import re

        plain = re.sub(r"\[(?:/|[a-z][a-z ]*)\]", "", template)
        self.stream.write(plain.format(*values) + "\n")
        self.stream.flush()


def _replay(
    args: argparse.Namespace,
    log: StoreLog,
    engine: Engine,
    markers: dict[str, Engine],
    checker: Checker,
    images: dict[str, str],
) -> int:
    import contextlib
    import gc
    import json

    from pmemsim.persistence.checkers import Checker, CheckerError
    from pmemsim.persistence.explore import NothingToCheck, plan_replay, replay
    from pmemsim.persistence.image import initial_images
    from pmemsim.persistence.log import LogError

    # With --json or --shard, stdout carries exactly one JSON object: everything else goes to stderr.
    machine = bool(args.json or getattr(args, "shard", None))
    out = _Out(stderr=machine)

    def bad(message: str) -> int:
        print(f"pmemsim {_verb(args)}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    plan: EpochPlan | None = None
    try:
        if args.workers > 1:  # the workers cut their slices' epochs: a scan counts them, serially cheaper
            from pmemsim.persistence.explore import resolve_model
            from pmemsim.persistence.model import scan_log

            scan = scan_log(log, resolve_model(log, None))
            epochs, rough = scan.epochs, scan.epochs + scan.stores
        else:
            plan = plan_replay(log)  # once: replay explores this very plan
            epochs = rough = len(plan.epochs)
    except LogError as exc:
        return bad(located(args.log, exc))
    try:
        # Unreadable or short images are bad input, found before any work.
        before = initial_images(log, images)
    except LogError as exc:
        hint = "give the file's content before the first store with --image FILE=PATH"
        return bad(f"{located(args.log, exc)}; {hint}")
    if not isinstance(checker, Checker):  # --recover: the values at the operations' boundaries, first
        try:
            with QuietStdout(machine):
                checker = _recovery_checker(log, checker, before)
        except CheckerError as exc:
            return bad(str(exc))
    kind = "saved pmemsim log" if _is_saved(args.log) else "pmemcheck store log"
    out.say(
        "[bold]{}[/]: {}, {} records, {} file(s), {} epochs; engine {}{}, checker {}",
        args.log,
        kind,
        len(log.records),
        len(log.files),
        epochs,
        engine.name,
        "".join(f", {n}={e.name}" for n, e in markers.items()),
        repr(checker),
    )
    from pmemsim.persistence.progress import stale_files

    stale = stale_files(log, before)
    if stale:
        out.say(
            "[yellow]warning[/]: {} already hold(s) every store of the log: probably the state after the "
            "run, so every crash state looks the same. Restore a pristine copy first (as for pmreorder) or "
            "pass --image FILE=PRISTINE_COPY.",
            ", ".join(stale),
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
            with QuietStdout(True):
                doc = _shard_doc(args, log, checker, options)
        except (CheckerError, LogError, ValueError) as exc:
            return bad(str(exc))
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
        return EXIT_OK
    # The log and the plan live until the end: collections need not walk them again (workers
    # forked from here share them untouched, copy-on-write).
    gc.freeze()
    try:
        counted: Checker = checker
        progress: Any = contextlib.nullcontext()
        if out.terminal:  # the bar's total and the count of states are for the bar only
            from pmemsim.persistence.progress import CountingChecker, estimate_states

            counting = CountingChecker(checker)
            counted = counting
            total = estimate_states(plan, engine, markers) if plan is not None else rough
            progress = Polling(out.console, "pmemsim replay", total, lambda: counting.count)
        with QuietStdout(machine), progress:
            try:
                if getattr(args, "merge_docs", None) is not None:
                    from pmemsim.persistence.shards import merge_shards

                    docs, names, empty = args.merge_docs, args.merge_names, args.allow_empty
                    report = merge_shards(log, counted, docs, names=names, allow_empty=empty, **options)
                elif getattr(args, "dask", None) is not None:
                    report = _replay_on_dask(args, log, checker, options)
                else:
                    options["images"] = dict(zip(log.files, before, strict=True))  # read once
                    report = replay(
                        log,
                        counted,
                        workers=args.workers,
                        allow_empty=args.allow_empty,
                        # A Python checker runs in a forked process: one that crashes cannot take the replay.
                        isolate=checker.runs_python,
                        plan=plan,
                        **options,
                    )
                    options["images"] = images
            except NothingToCheck as exc:
                text = str(exc).replace("allow_empty=True", "--allow-empty")
                return bad(located(args.log, Exception(text)))
            except CheckerError as exc:
                return bad(str(exc))
            except LogError as exc:
                return bad(located(args.log, exc))
            except ValueError as exc:  # --dask: the extra, the address, the workers
                return bad(str(exc))

            trace = _conclude(args, out, report, checker, lambda: (log, images))
        return _emit(args, report, trace)
    finally:
        gc.unfreeze()  # main() may be called again in this process (tests, embedding)


def _streams(args: argparse.Namespace, checker: Any) -> str | None:
    """How this replay explores its log as it goes: ``"pmemcheck"`` (read as it is explored),
    ``"saved"`` (loaded, then cut and explored a batch at a time), or None (the whole-log path).

    Streaming needs one process and a checker (a recovery needs the whole log first);
    workers, shards and Dask cut the whole log into slices, and --allow-truncated logs
    lack the STOP the streaming pmemcheck reader needs."""
    from pmemsim.persistence.checkers import Checker

    if args.workers != 1 or not isinstance(checker, Checker):
        return None
    if any(getattr(args, name, None) is not None for name in ("shard", "dask", "merge_docs")):
        return None
    try:
        saved = _is_saved(args.log)
    except OSError:
        return None  # the whole-log path says why it cannot be read
    if saved:
        return "saved"
    return None if args.allow_truncated else "pmemcheck"


def _replay_streamed(
    args: argparse.Namespace,
    engine: Engine,
    markers: dict[str, Engine],
    checker: Checker,
    log: StoreLog | None = None,
) -> int | None:
    """Replay a pmemcheck log as it is read (or the saved ``log``, a batch at a time), exploring each
    epoch once it is cut (memory for the pool, not the log: :mod:`pmemsim.persistence.stream`);
    the exit status, or None when the log needs the whole-log path (a warning or an error the
    full reader locates, a late file)."""
    import contextlib

    from pmemsim.persistence import parallel
    from pmemsim.persistence.checkers import CheckerError
    from pmemsim.persistence.explore import NothingToCheck, crashed_while_judging
    from pmemsim.persistence.log import LogError
    from pmemsim.persistence.pmemcheck import PmemcheckStream, StreamFallback
    from pmemsim.persistence.stream import (
        ImagesRefused,
        ImagesUnreadable,
        ListSource,
        Restart,
        SharedWord,
        StreamResult,
        replay_stream,
    )

    out = _Out(stderr=bool(args.json))

    def bad(message: str) -> int:
        print(f"pmemsim replay: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    def images_for(keys: Sequence[str]) -> dict[str, str]:
        try:
            return _replay_images(args.image, keys)
        except ValueError as exc:
            raise ImagesRefused(str(exc)) from None

    source: PmemcheckStream | ListSource = PmemcheckStream(args.log) if log is None else ListSource(log)
    read = SharedWord()  # bytes (records) read so far, written by whichever process reads
    source.on_read = read.set
    progress: Any = contextlib.nullcontext()
    if out.terminal:  # the part of the log read gives the bar its rate and time left
        shift, what = (10, "KiB of the log read") if log is None else (0, "records replayed")
        progress = Polling(
            out.console,
            "pmemsim replay",
            max(1, source.total >> shift),
            lambda: read.value >> shift,
            what=what,
            unit=what.split()[0],
        )
    isolate = checker.runs_python  # a Python checker runs in a forked process, as on the other path
    slots = parallel.StateSlots(None, 1) if isolate else None

    def run() -> StreamResult:
        return replay_stream(
            source,
            checker,
            engine=engine,
            markers=markers,
            seed=args.seed,
            images=images_for,
            timeout=args.timeout,
            max_states=args.max_states,
            allow_empty=args.allow_empty,
            slots=slots,
        )

    def header(counts: tuple[int, int, int] | None) -> None:
        # What the whole-log path says before it explores, said once it is known (the log read).
        if counts is not None:
            out.say(
                "[bold]{}[/]: {}, {} records, {} file(s), {} epochs; engine {}{}, checker {}",
                args.log,
                "pmemcheck store log" if log is None else "saved pmemsim log",
                *counts,
                engine.name,
                "".join(f", {n}={e.name}" for n, e in markers.items()),
                repr(checker),
            )

    with QuietStdout(bool(args.json)), progress:
        try:
            if slots is not None:
                try:
                    result: StreamResult = parallel.collect(*parallel.fork(run))
                except parallel.WorkerDied as died:
                    raise crashed_while_judging(died, slots) from None
            else:
                result = run()
        except (StreamFallback, Restart):
            return None
        except OSError as exc:
            return bad(f"cannot read {args.log}: {exc.strerror or exc}")
        except ImagesUnreadable as exc:
            hint = "give the file's content before the first store with --image FILE=PATH"
            return bad(f"{located(args.log, exc)}; {hint}")
        except ImagesRefused as exc:
            return bad(str(exc))
        except NothingToCheck as exc:
            header(getattr(exc, "counts", None))
            text = str(exc).replace("allow_empty=True", "--allow-empty")
            return bad(located(args.log, Exception(text)))
        except CheckerError as exc:
            header(getattr(exc, "counts", None))
            return bad(str(exc))
        except LogError as exc:
            return bad(located(args.log, exc))
        header((result.records, result.files, result.report.epochs))
        if result.stale:
            out.say(
                "[yellow]warning[/]: {} already hold(s) every store of the log: probably the state after "
                "the run, so every crash state looks the same. Restore a pristine copy first (as for "
                "pmreorder) or pass --image FILE=PRISTINE_COPY.",
                ", ".join(result.stale),
            )

        def whole_log() -> tuple[StoreLog, Any]:
            # A failure is rare: the log is read again, whole, only to shrink one.
            import warnings

            from pmemsim.persistence.saved import read_log

            if log is not None:
                return log, _replay_images(args.image, list(log.files))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                whole = read_log(args.log)
            return whole, _replay_images(args.image, list(whole.files))

        trace = _conclude(args, out, result.report, checker, whole_log)
    return _emit(args, result.report, trace)


def _conclude(
    args: argparse.Namespace,
    out: _Out,
    report: CrashReport,
    checker: Checker,
    shrink_input: Callable[[], tuple[StoreLog, Any]],
) -> str | None:
    """Print the summary, the failures and the minimal failing trace (``shrink_input()``: the log
    and the --image mapping, asked only when a failure is shrunk); the trace, or None."""
    from pmemsim.persistence.checkers import CheckerError

    style = "bold green" if report.ok and report.complete else "bold yellow" if report.ok else "bold red"
    out.say(f"[{style}]{{}}[/] in {report.elapsed:.2f}s", report.summary())
    for warning in report.warnings:
        out.say("[yellow]warning[/]: {}", warning)
    for limit in report.limits:
        out.say("[yellow]not exhaustive[/]: {}", limit)
    shown = report.failures[:5]
    for failure in shown:
        out.say("{}", failure.describe())
    failing = report.inconsistent + report.errors
    if failing > len(shown):
        out.say(f"... {failing - len(shown)} more failing state(s) not listed")
    trace: str | None = None
    first = next((f for f in report.failures if f.verdict.value == "inconsistent"), None)
    if first is not None and not args.no_shrink:
        from pmemsim.persistence.shrink import ShrinkError, shrink

        try:
            log, images = shrink_input()
            small = _shrink_apart(shrink, log, first, checker, images, args.timeout)
        except (ShrinkError, CheckerError) as exc:
            out.say("[yellow]cannot shrink the first failure[/]: {}", exc)
        else:
            trace = small.trace
            out.say(f"[bold]Minimal failing trace[/] ({small.tests} checker calls):")
            out.say("{}", small.trace)
    if report.errors:
        out.say(
            f"[bold red]checker error[/]: {report.errors} state(s) got no usable answer from the "
            "checker (see above): fix the checker; this says nothing about the pool"
        )
    return trace


def _emit(args: argparse.Namespace, report: CrashReport, trace: str | None) -> int:
    """Print the --json document; the exit status of ``report``."""
    if args.json:
        import json

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
    from pmemsim.persistence.explore import CheckerCrashed

    if not checker.runs_python:
        return shrink(log, failure, checker, images=images, timeout=timeout)
    child = parallel.fork(lambda: shrink(log, failure, checker, images=images, timeout=timeout))
    try:
        return parallel.collect(*child)
    except parallel.WorkerDied as died:
        raise CheckerCrashed(f"the checker crashed its process while shrinking ({died})") from None


def _recovery_checker(log: StoreLog, recovery: Any, images: tuple[bytes, ...]) -> Checker:
    """The recovery check of ``log``; a Python recovery computes its values in a forked process.

    As a Python checker, a recovery that crashes its process (a segfault in an extension)
    must not take the command along: that is a CheckerCrashed. Values that cannot be sent
    back from the child (unpicklable) are computed here instead.
    """
    import pickle

    from pmemsim.persistence import parallel
    from pmemsim.persistence.explore import CheckerCrashed
    from pmemsim.persistence.linearizability import RecoveryChecker

    def build() -> RecoveryChecker:
        return RecoveryChecker.for_log(log, recovery, images=images)

    def build_apart() -> RecoveryChecker | None:
        checker = build()
        try:
            pickle.dumps(checker)
        except Exception:
            return None
        return checker

    if not recovery.runs_python:  # a program runs apart already
        return build()
    try:
        built = parallel.collect(*parallel.fork(build_apart))
    except parallel.WorkerDied as died:
        raise CheckerCrashed(f"recover crashed its process on an operation boundary ({died})") from None
    return build() if built is None else built


def _load_recovery(recover: str | None, recover_prog: str | None, args: argparse.Namespace) -> Any:
    """The --recover function or --recover-prog program (ValueError naming the option when unusable)."""
    import shlex

    from pmemsim._callables import CallableNotFound, load_callable
    from pmemsim.persistence.linearizability import recovery_for

    if recover is not None:
        try:
            with QuietStdout(bool(args.json or getattr(args, "shard", None))):  # import-time prints
                function = load_callable(recover)
        except CallableNotFound as exc:
            raise ValueError(f"--recover {recover!r}: {exc}") from None
        return recovery_for(function, timeout=args.timeout)
    assert recover_prog is not None
    try:
        return recovery_for(
            shlex.split(recover_prog), timeout=args.timeout, warm=not getattr(args, "cold_start", False)
        )
    except ValueError as exc:  # an empty or unsplittable command, a program not found
        raise ValueError(f"--recover-prog {recover_prog!r}: {exc}") from None


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
        "recover": getattr(args, "recover", None),
        "recover_prog": getattr(args, "recover_prog", None),
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
            # ":0": the scheduler's HTTP server on a free port (it starts even without a dashboard,
            # and Dask's 8787 may be another cluster's).
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
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
    """Up front: the checker's (or recovery's) program exists on every worker, or its module imports there."""
    import shutil

    from pmemsim.persistence.linearizability import RecoveryChecker

    argv0: str | None = None
    if isinstance(checker, program):
        argv0, what = checker.argv[0], "checker program"  # type: ignore[attr-defined]
    elif isinstance(checker, RecoveryChecker) and not checker.runs_python:
        argv0, what = checker.recovery.argv[0], "recovery program"  # type: ignore[union-attr]
    if argv0 is not None:
        found = client.run(shutil.which, argv0)
        lacking = sorted(w for w, where in found.items() if where is None)
        if lacking:
            raise ValueError(f"{what} {argv0!r} is not found on worker(s) {', '.join(lacking)}")
        return
    for option, spec in (("--checker", args.checker), ("--recover", getattr(args, "recover", None))):
        if not spec:
            continue
        module = spec.partition(":")[0].strip()
        try:
            client.run(__import__, module)
        except Exception as exc:
            raise ValueError(
                f"{option} {spec!r}: module {module!r} cannot be imported on the workers "
                f"({type(exc).__name__}: {exc}); install it there or put it on their PYTHONPATH"
            ) from None


def _is_saved(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(4096).lstrip().startswith("{")


REPLAY = Command(
    name="replay",
    help="check every crash state of a pmemcheck (or saved) store log with a checker",
    description=_REPLAY_DESCRIPTION,
    epilog=_REPLAY_EPILOG,
    configure=_configure_replay,
    run=replay_command,
)
