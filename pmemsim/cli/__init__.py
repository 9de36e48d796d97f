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
from typing import TYPE_CHECKING

from pmemsim.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Command
from pmemsim.cli.merge import MERGE
from pmemsim.cli.replay import REPLAY
from pmemsim.cli.report import REPORT
from pmemsim.cli.run import RUN

if TYPE_CHECKING:
    from typing import Any

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

#: Every sub-command, in the order ``pmemsim --help`` lists them.
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
