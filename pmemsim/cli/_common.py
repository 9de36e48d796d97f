"""What every sub-command of ``pmemsim`` shares: the command row, exit codes, output checks, progress.

Importing this costs only ``argparse``-level work: rich is imported inside the helpers
that draw, so ``pmemsim --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "Command",
    "Polling",
    "QuietStdout",
    "located",
    "output_path_problem",
    "rate_and_eta",
    "rate_column",
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


def output_path_problem(path: str) -> str | None:
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


def rate_and_eta(task: Any, unit: str = "runs") -> str:
    """``"12.3 runs/s, 0:00:04 left"`` for a rich task, ``""`` until the rate is known."""
    import datetime

    speed = task.speed
    if not speed:
        return ""
    left = task.time_remaining
    eta = f", {datetime.timedelta(seconds=round(left))} left" if left is not None else ""
    return f"{speed:,.1f} {unit}/s{eta}"


def rate_column(unit: str) -> Any:
    """A rich progress column showing :func:`rate_and_eta` in ``unit``."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(rate_and_eta(task, unit), style="progress.remaining")

    return _RateColumn()


class QuietStdout:
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


def located(path: str, exc: Exception) -> str:
    """``exc``'s message, prefixed with ``path`` unless it already names it."""
    text = str(exc)
    return text if text.startswith(path) else f"{path}: {text}"


class Polling:
    """A rich progress bar whose count a thread polls from ``poll()`` while the body runs (terminal only)."""

    def __init__(
        self,
        console: Console,
        label: str,
        total: int,
        poll: Callable[[], int],
        *,
        what: str = "states (estimated total)",
        unit: str = "states",
    ) -> None:
        import threading

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(what),
            TimeElapsedColumn(),
            rate_column(unit),
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
