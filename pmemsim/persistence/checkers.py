"""Consistency checkers: a Python callable, or an external program as pmreorder's ``-c prog``.

A checker sees one file image per call (pmreorder's convention: with several
registered files it is called once per file and the first inconsistent file decides).

* :class:`CallableChecker` -- ``check(image) -> bool | None``. ``True`` or ``None`` means
  consistent, ``False`` inconsistent; raising an exception means inconsistent, with the
  exception as the message. Any other return value (``0``, ``1``, ``"ok"``...) is
  reported as a checker **error**: pmreorder's "0 = consistent" exit-status convention
  applies to programs only, and guessing would flip verdicts. ``image`` is a read-only
  ``memoryview`` of the image being explored (no copy is made per state; call
  ``bytes(image)`` to keep one). ``all_files=True`` passes ``{key: image}`` in one call.
* :class:`ProgramChecker` -- runs ``command... IMAGE_PATH`` (no shell, so paths with spaces
  work) on a private copy of the image; exit status 0 means consistent, anything else
  inconsistent. ``PMREORDER_MARKERS`` holds the ``|``-joined BEGIN/END markers before
  the crash point, as pmreorder sets it.

A checker that runs longer than ``timeout`` seconds gives an **error** verdict and the
exploration goes on. Python callables are interrupted with ``SIGALRM``, which needs the
main thread of a process (worker processes always qualify); elsewhere they run
without a time limit. Programs are killed with their whole process group.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = [
    "CallableChecker",
    "CheckOutcome",
    "Checker",
    "ProgramChecker",
    "Verdict",
    "as_checker",
]


class Verdict(enum.Enum):
    """What a checker said about one crash state."""

    CONSISTENT = "consistent"
    INCONSISTENT = "inconsistent"
    ERROR = "error"  # no usable answer: timeout, garbage return value, program failed to start


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """A non-consistent verdict on one file of a crash state, with the checker's message."""

    verdict: Verdict
    file: str
    message: str


class Checker:
    """Base of the checkers: ``open`` once per process, ``check`` per state, ``close`` at the end."""

    #: Whether :meth:`check` uses the ``markers`` argument (computing it costs time).
    needs_markers: bool = False

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Prepare for images of files ``keys`` with ``sizes``."""

    def check(self, views: Sequence[memoryview], markers: str) -> CheckOutcome | None:
        """None when every image is consistent, else the first non-consistent file's outcome."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`open` took."""


class _CheckerTimeout(BaseException):
    # A BaseException so that a checker's own `except Exception` cannot swallow it.
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _CheckerTimeout


def _describe_exc(exc: BaseException) -> str:
    text = str(exc)
    return f"checker raised {type(exc).__name__}: {text}" if text else f"checker raised {type(exc).__name__}"


class CallableChecker(Checker):
    """A Python function ``check(image) -> bool | None`` (or ``check({key: image})`` with ``all_files``)."""

    def __init__(
        self, fn: Callable[[Any], object], *, timeout: float | None = 60.0, all_files: bool = False
    ) -> None:
        if not callable(fn):
            raise TypeError(f"checker must be callable, not {type(fn).__name__}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        self.fn = fn
        self.timeout = timeout
        self.all_files = all_files
        self._keys: tuple[str, ...] = ()
        self._alarm = False
        self._old_handler: Any = None

    def __repr__(self) -> str:
        return f"CallableChecker({getattr(self.fn, '__qualname__', self.fn)!r})"

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Install the SIGALRM timeout handler when this is the main thread."""
        self._keys = tuple(keys)
        self._alarm = self.timeout is not None and threading.current_thread() is threading.main_thread()
        if self._alarm:
            self._old_handler = signal.signal(signal.SIGALRM, _on_alarm)

    def close(self) -> None:
        """Restore the previous SIGALRM handler."""
        if self._alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_handler)
            self._alarm = False

    def _call(self, arg: object, key: str) -> CheckOutcome | None:
        try:
            if self._alarm:
                assert self.timeout is not None
                signal.setitimer(signal.ITIMER_REAL, self.timeout)
                try:
                    result = self.fn(arg)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            else:
                result = self.fn(arg)
        except _CheckerTimeout:
            return CheckOutcome(Verdict.ERROR, key, f"checker timed out after {self.timeout} s")
        except SystemExit as exc:
            # A pmreorder-style script turned into a function: its exit code is not a verdict we can trust.
            return CheckOutcome(
                Verdict.ERROR, key, f"checker called sys.exit({exc.code!r}); return a bool instead"
            )
        except Exception as exc:
            return CheckOutcome(Verdict.INCONSISTENT, key, _describe_exc(exc))
        if result is None or result is True:
            return None
        if result is False:
            return CheckOutcome(Verdict.INCONSISTENT, key, "checker returned False")
        return CheckOutcome(
            Verdict.ERROR,
            key,
            f"checker returned {result!r} ({type(result).__name__}); expected True or None (consistent) "
            "or False (inconsistent)",
        )

    def check(self, views: Sequence[memoryview], markers: str) -> CheckOutcome | None:
        """Call the function per file (or once with every file) and interpret its answer."""
        if self.all_files:
            return self._call(dict(zip(self._keys, views, strict=True)), ",".join(self._keys))
        for key, view in zip(self._keys, views, strict=True):
            outcome = self._call(view, key)
            if outcome is not None:
                return outcome
        return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ProgramChecker(Checker):
    """An external program run as ``command... IMAGE_PATH``: exit status 0 = consistent.

    ``command`` is a string (split with :func:`shlex.split`) or an argument list.
    Raises ValueError at construction when the program cannot be found.
    """

    needs_markers = True

    def __init__(self, command: str | Sequence[str], *, timeout: float | None = 60.0) -> None:
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ValueError("checker command is empty")
        if shutil.which(argv[0]) is None:
            raise ValueError(f"checker program {argv[0]!r} not found or not executable")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        self.argv = argv
        self.timeout = timeout
        self._dir: str | None = None
        self._paths: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"ProgramChecker({shlex.join(self.argv)!r})"

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Create a private directory holding one image file per registered file."""
        self._dir = tempfile.mkdtemp(prefix="pmemsim-check-")
        self._paths = []
        for i, key in enumerate(keys):
            name = _UNSAFE.sub("_", os.path.basename(key)) or "image"
            self._paths.append((key, os.path.join(self._dir, f"{i}-{name}")))

    def close(self) -> None:
        """Remove the image files."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _run(self, path: str, key: str, markers: str) -> CheckOutcome | None:
        env = dict(os.environ, PMREORDER_MARKERS=markers)
        try:
            proc = subprocess.Popen(
                [*self.argv, path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # so a timeout can kill the program and its children
            )
        except OSError as exc:
            return CheckOutcome(Verdict.ERROR, key, f"cannot run checker {self.argv[0]!r}: {exc}")
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return CheckOutcome(Verdict.ERROR, key, f"checker program timed out after {self.timeout} s")
        if proc.returncode == 0:
            return None
        tail = out.decode(errors="replace").strip()[-500:]
        status = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        return CheckOutcome(
            Verdict.INCONSISTENT, key, f"checker program: {status}" + (f": {tail}" if tail else "")
        )

    def check(self, views: Sequence[memoryview], markers: str) -> CheckOutcome | None:
        """Write each image to its private file (whole, so a checker that writes cannot leak) and run."""
        for (key, path), view in zip(self._paths, views, strict=True):
            with open(path, "wb") as f:
                f.write(view)
            outcome = self._run(path, key, markers)
            if outcome is not None:
                return outcome
        return None


def as_checker(obj: object, *, timeout: float | None = 60.0) -> Checker:
    """A :class:`Checker` from a checker, a callable, or a program command (str or list of str)."""
    if isinstance(obj, Checker):
        return obj
    if isinstance(obj, str) or (
        isinstance(obj, Sequence) and not isinstance(obj, bytes) and all(isinstance(a, str) for a in obj)
    ):
        return ProgramChecker(obj, timeout=timeout)
    if callable(obj):
        return CallableChecker(obj, timeout=timeout)
    raise TypeError(f"a checker is a callable or a program command, not {type(obj).__name__}")
