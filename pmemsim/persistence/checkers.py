"""Consistency checkers: a Python callable, or an external program as pmreorder's ``-c prog``.

A checker sees one file image per call (pmreorder's convention: with several
registered files it is called once per file and the first inconsistent file decides).

* :class:`CallableChecker` -- ``check(image)`` or ``check(image, ctx)`` (chosen by the
  signature: a second parameter without a default, or one named ``ctx``, receives a
  :class:`CrashContext`: the markers before the crash point, the data the program
  attached to them, where the crash is). ``True`` or ``None`` means consistent,
  ``False`` inconsistent; raising an exception means inconsistent, with the exception
  as the message. Any other return value (``0``, ``1``, ``"ok"``...) is a checker
  **error**: pmreorder's "0 = consistent" exit-status convention applies to programs
  only, and guessing would flip verdicts. ``image`` is a read-only buffer of the image
  being explored (no copy is made per state; call ``bytes(image)`` to keep one; it
  cannot be written, not even through ``image.obj``), or, where Exhaustive explores
  lazily, a memoryview-like :class:`~pmemsim.persistence.lazy.LazyImage` that records the
  lines read. ``all_files=True`` passes ``{key: image}`` in one call.
* :class:`ProgramChecker` -- runs ``command... IMAGE_PATH`` (no shell, so paths with spaces
  work) on a private copy of the image; exit status 0 means consistent, any other exit
  status inconsistent, and a program that cannot start or is killed by a signal is a
  checker error. ``PMREORDER_MARKERS`` holds the ``|``-joined BEGIN/END markers before
  the crash point, as pmreorder sets it.

A checker that cannot be called as a checker at all raises :class:`CheckerError` when
it is built, before any state is explored.

Timeouts. A Python checker running longer than ``timeout`` seconds gives an **error**
verdict and the exploration goes on. No signal and no timer is used, so a checker
never disturbs pytest-timeout or the program's own alarms: a watchdog thread, woken a
few times per timeout, raises the timeout in the checking thread
(``PyThreadState_SetAsyncExc``) when the same call has been running for the whole
timeout; a call costs one counter increment. Like a signal handler, the exception
arrives when the checker next runs Python code: a checker blocked inside one long C
call is interrupted when that call returns. Programs are killed with their whole
process group.
"""

from __future__ import annotations

import enum
import inspect
import os
import shlex
import shutil
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pmemsim.persistence.log import Marker

if TYPE_CHECKING:
    from pmemsim.persistence.programs import ProgramRuns

__all__ = [
    "CallTimedOut",
    "CallableChecker",
    "CheckOutcome",
    "Checker",
    "CheckerError",
    "CrashContext",
    "ProgramChecker",
    "TimedCalls",
    "Verdict",
    "as_checker",
]


class CheckerError(ValueError):
    """A checker that cannot be used: it cannot be called as ``check(image)`` / ``check(image, ctx)``,
    or its program cannot be found."""


class Verdict(enum.Enum):
    """What a checker said about one crash state."""

    CONSISTENT = "consistent"
    INCONSISTENT = "inconsistent"
    # No usable answer: a timeout, a garbage return value, a program that failed to start or
    # died, or a verdict on the image before any store (the checker, not the pool, is wrong).
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """A non-consistent verdict on one file of a crash state, with the checker's message."""

    verdict: Verdict
    file: str
    message: str
    #: Named values behind the message (a recovery check: the step, the allowed and recovered values).
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, eq=False)
class CrashContext:
    """Where a crash state comes from, for checkers that take ``check(image, ctx)``.

    ``epoch`` is the fence epoch, ``record`` the index of the first log record that had
    not executed (the crash came right before it), ``file`` the key of the file whose
    image is being judged (``""`` for ``all_files`` checkers). With deduplication, a state
    reached at several crash points with the same markers is judged once, at the first.
    """

    epoch: int
    record: int
    file: str = ""
    #: The log's visible markers (name, data, record index) and how many came before the crash.
    log_markers: tuple[tuple[str, Any, int], ...] = field(default=(), repr=False)
    count: int = 0

    @cached_property
    def markers(self) -> tuple[str, ...]:
        """The ``NAME.BEGIN`` / ``NAME.END`` markers before the crash point, in order (as pmreorder's)."""
        return tuple(
            name for name, _, _ in self.log_markers[: self.count] if Marker(name).section is not None
        )

    @cached_property
    def marks(self) -> tuple[tuple[str, Any], ...]:
        """Every marker visible before the crash point (sections, notes carrying data), with its data."""
        return tuple((name, data) for name, data, _ in self.log_markers[: self.count])

    @cached_property
    def data(self) -> Any:
        """The data of the latest marker before the crash point that carried some (``mark(name, data=)``)."""
        for _, data, _ in reversed(self.log_markers[: self.count]):
            if data is not None:
                return data
        return None

    @cached_property
    def sections(self) -> tuple[str, ...]:
        """The marker sections open at the crash point, outermost first."""
        stack: list[str] = []
        for name in self.markers:
            marker = Marker(name)
            if marker.is_begin:
                stack.append(marker.section or "")
            elif stack:
                stack.pop()
        return tuple(stack)

    @cached_property
    def environ_markers(self) -> str:
        """:attr:`markers` joined with ``|``, as pmreorder passes them in ``PMREORDER_MARKERS``."""
        return "|".join(self.markers)


class Checker:
    """Base of the checkers: ``open`` once per process, ``check`` per state, ``close`` at the end."""

    #: Whether :meth:`check` can tell crash points apart by their markers (states are then
    #: judged, and deduplicated, per image and markers).
    sees_markers: bool = False
    #: What the checker noticed about the log before exploring it (a replay lists them as warnings).
    notes: tuple[str, ...] = ()
    #: Whether :meth:`check` may be given lazy images (:mod:`pmemsim.persistence.lazy`) in
    #: place of memoryviews: a Python function can; a program reads the whole file.
    lazy_reads: bool = False
    #: Whether :meth:`check` runs the user's Python code in this process (a replay then runs it
    #: in a forked one, so that a checker crashing its process cannot take the replay along).
    runs_python: bool = False

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Prepare for images of files ``keys`` with ``sizes``."""

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        """None when every image is consistent, else the first non-consistent file's outcome."""
        raise NotImplementedError

    def region(self, markers: int) -> int:
        """Which crash points a marker-seeing checker tells apart: those whose regions differ.

        ``markers`` counts the visible markers before the crash point; states are judged
        and deduplicated per (image, region). By default every marker counts; a
        recovery check only tells operations apart.
        """
        return markers

    def close(self) -> None:
        """Release what :meth:`open` took."""


class _CheckerTimeout(BaseException):
    # A BaseException so that a checker's own `except Exception` cannot swallow it.
    pass


def _raise_in(thread_id: int, exc: type[BaseException]) -> None:
    # Schedules `exc` in another thread. ctypes is loaded by _Watchdog. Never call it with NULL to
    # cancel: CPython (3.11 at least) then leaves the interpreter's "asynchronous exception
    # pending" flag set with no exception to raise, and the first traced code (coverage,
    # hypothesis after a failure, a debugger) loops forever. A pending interrupt is absorbed
    # instead, by the thread it targets (_Watchdog.leave).
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def _nothing() -> None:
    """A Python call: an asynchronous exception pending for this thread is raised at its entry."""


class _Watchdog:
    """Interrupts a call that has run for ``timeout`` seconds, without signals or timers.

    The checking thread bumps :attr:`calls` and sets :attr:`busy` around each call; a
    daemon thread wakes every ``timeout / 8`` and fires when it sees the same busy call
    long enough. Firing and leaving a call both hold the lock, and leaving raises and drops
    an exception that was scheduled but not yet raised, so none can escape the call.
    """

    def __init__(self, timeout: float) -> None:
        import ctypes  # noqa: F401 - loaded now, not in the watchdog thread when it fires

        self.timeout = timeout
        self.calls = 0
        self.busy = False
        self.fired = False
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pmemsim-checker-watchdog", daemon=True)
        self._thread.start()
        _LIVE_WATCHDOGS.add(self)

    def _after_fork_in_child(self) -> None:
        # The watchdog thread does not exist in a forked child, and it may have held the lock
        # or been inside the stop event's condition when the parent forked: a child stopping
        # or using this watchdog would wait for them forever. Fresh ones, already stopped.
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._stop.set()

    def _watch(self) -> None:
        period = max(self.timeout / 8, 0.005)
        seen, since = -1, 0.0
        while not self._stop.wait(period):
            calls, now = self.calls, time.monotonic()
            if not self.busy or calls != seen:
                seen, since = calls, now
                continue
            if now - since >= self.timeout:
                with self.lock:
                    if self.busy and self.calls == seen and not self.fired:
                        self.fired = True
                        _raise_in(self.thread_id, _CheckerTimeout)

    def leave(self) -> bool:
        """End the current call; True when the timeout fired during it (called by the checking thread).

        An interrupt that was scheduled but has not landed yet is raised here, where it is
        expected, and dropped, so none can escape the call.
        """
        with self.lock:
            self.busy = False
            fired, self.fired = self.fired, False
        if fired:
            # Not contextlib.suppress: building it is a Python call, where the interrupt could
            # land before the block that catches it. A Ctrl-C handled first (signals come before
            # the interrupt) is kept and raised once the interrupt is absorbed.
            interrupt: KeyboardInterrupt | None = None
            while True:
                try:
                    _nothing()
                    break
                except _CheckerTimeout:
                    break
                except KeyboardInterrupt as exc:
                    interrupt = exc
            if interrupt is not None:
                raise interrupt
        return fired

    def stop(self) -> None:
        """End the watchdog thread."""
        self._stop.set()
        self._thread.join()


#: Watchdogs whose thread may be running, for :func:`_watchdogs_after_fork`.
_LIVE_WATCHDOGS: weakref.WeakSet[_Watchdog] = weakref.WeakSet()


def _watchdogs_after_fork() -> None:
    for watchdog in list(_LIVE_WATCHDOGS):
        watchdog._after_fork_in_child()


os.register_at_fork(after_in_child=_watchdogs_after_fork)


def _user_interrupt(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C behind ``error`` (itself, or what it was raised while handling), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__context__
    return None


class CallTimedOut(Exception):
    """A call made through :meth:`TimedCalls._timed` ran past the timeout and was interrupted."""


class TimedCalls:
    """Mixin for what runs the user's Python function: each call interrupted after ``timeout`` seconds.

    :meth:`_start_watchdog` arms a :class:`_Watchdog` for the calling thread (a call from
    another thread runs unguarded: an interrupt must never land in the wrong thread),
    :meth:`_stop_watchdog` ends it, :meth:`_timed` makes one call under it. The watchdog is
    an instance attribute, so a shallow copy made before opening arms its own.
    """

    timeout: float | None
    _watchdog: _Watchdog | None = None

    def _start_watchdog(self) -> None:
        if self.timeout is not None:
            self._stop_watchdog()
            self._watchdog = _Watchdog(self.timeout)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def _timed(self, fn: Callable[..., object], *args: object) -> object:
        """``fn(*args)``; CallTimedOut when the watchdog fired during the call."""
        dog = self._watchdog
        if dog is None or dog.thread_id != threading.get_ident():
            return fn(*args)
        dog.calls += 1
        dog.busy = True
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:
            error = exc
        while True:
            try:
                fired = dog.leave()
                break
            except _CheckerTimeout:
                continue  # it landed as leave() was entered, before its body: leave again
        if error is not None:
            interrupt = _user_interrupt(error)
            if interrupt is not None:
                raise interrupt  # the user's Ctrl-C wins over a timeout
            if not fired and not isinstance(error, _CheckerTimeout):
                raise error
        if fired or error is not None:
            # However the call ended once the timeout fired -- the interrupt, an exception the
            # checker made of it, even a return -- it is a timeout, not a verdict.
            raise CallTimedOut from None
        return result


def _describe_exc(exc: BaseException) -> str:
    text = str(exc)
    return f"checker raised {type(exc).__name__}: {text}" if text else f"checker raised {type(exc).__name__}"


def _name_of(fn: object) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}:{name}" if module else str(name)


def _calling_convention(fn: Callable[..., object]) -> str:
    """``"plain"`` (check(image)), ``"ctx"`` (check(image, ctx)) or ``"ctx-keyword"`` (check(image, *, ctx)).

    Raises CheckerError when ``fn`` can be called neither way.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: assume check(image)
        return "plain"
    params = list(sig.parameters.values())
    positional = [q for q in params if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    keyword_ctx = any(q.name == "ctx" and q.kind is q.KEYWORD_ONLY for q in params)
    args: tuple[None, ...]
    kwargs: dict[str, None]
    if len(positional) >= 2 and (
        positional[1].default is inspect.Parameter.empty or positional[1].name == "ctx"
    ):
        convention, args, kwargs = "ctx", (None, None), {}
    elif keyword_ctx:
        convention, args, kwargs = "ctx-keyword", (None,), {"ctx": None}
    else:
        convention, args, kwargs = "plain", (None,), {}
    try:
        sig.bind(*args, **kwargs)
    except TypeError:
        raise CheckerError(
            f"checker {_name_of(fn)}{sig} cannot be called as check(image) or check(image, ctx)"
        ) from None
    return convention


class CallableChecker(Checker, TimedCalls):
    """A Python function ``check(image)`` or ``check(image, ctx)`` (``{key: image}`` with ``all_files``)."""

    lazy_reads = True
    runs_python = True

    def __init__(
        self, fn: Callable[..., object], *, timeout: float | None = 60.0, all_files: bool = False
    ) -> None:
        if not callable(fn):
            raise TypeError(f"checker must be callable, not {type(fn).__name__}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        self.fn = fn
        self.timeout = timeout
        self.all_files = all_files
        self.convention = _calling_convention(fn)
        self.sees_markers = self.convention != "plain"
        self._keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"CallableChecker({getattr(self.fn, '__qualname__', self.fn)!r})"

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Start the timeout watchdog for the calling thread."""
        self._keys = tuple(keys)
        self._start_watchdog()

    def close(self) -> None:
        """Stop the watchdog."""
        self._stop_watchdog()

    def _invoke(self, arg: object, ctx: CrashContext) -> object:
        if self.convention == "plain":
            return self.fn(arg)
        if self.convention == "ctx":
            return self.fn(arg, ctx)
        return self.fn(arg, ctx=ctx)

    def _call(self, arg: object, key: str, ctx: CrashContext) -> CheckOutcome | None:
        try:
            if self.convention == "plain":
                result = self._timed(self.fn, arg)
            else:
                result = self._timed(self._invoke, arg, ctx)
        except CallTimedOut:
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

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        """Call the function per file (or once with every file) and interpret its answer."""
        if len(self._keys) == 1 and not self.all_files:  # the usual case, without the loop
            return self._call(views[0], self._keys[0], ctx)
        if self.all_files:
            return self._call(dict(zip(self._keys, views, strict=True)), ",".join(self._keys), ctx)
        many = len(self._keys) > 1 and self.sees_markers
        for key, view in zip(self._keys, views, strict=True):
            outcome = self._call(view, key, replace(ctx, file=key) if many else ctx)
            if outcome is not None:
                return outcome
        return None


class ProgramChecker(Checker):
    """An external program run as ``command... IMAGE_PATH``: exit status 0 = consistent.

    ``command`` is a string (split with :func:`shlex.split`) or an argument list.
    Raises CheckerError at construction when the program cannot be found. A Python
    program starts warm (forked from a ready interpreter) unless ``warm=False``; see
    :mod:`pmemsim.persistence.programs` for how runs start and how the image file is kept.
    """

    sees_markers = True

    def __init__(
        self, command: str | Sequence[str], *, timeout: float | None = 60.0, warm: bool = True
    ) -> None:
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise CheckerError("checker command is empty")
        if shutil.which(argv[0]) is None:
            raise CheckerError(f"checker program {argv[0]!r} not found or not executable")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        self.argv = argv
        self.timeout = timeout
        self.warm = warm
        self._runs: ProgramRuns | None = None
        self._keys: list[str] = []
        self._env: tuple[str, dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"ProgramChecker({shlex.join(self.argv)!r})"

    def __copy__(self) -> ProgramChecker:
        # A copy (one per slice task) opens its own files and runner: sharing them would let one
        # copy's close() close another's files or end its warm interpreter.
        other = ProgramChecker.__new__(ProgramChecker)
        other.__dict__.update(self.__dict__)
        other._runs, other._keys, other._env = None, [], None
        return other

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Create a private directory holding one image file per registered file."""
        from pmemsim.persistence.programs import ProgramRuns  # only where programs run

        self.close()
        self._runs = ProgramRuns(
            self.argv, timeout=self.timeout, warm=self.warm, stderr_apart=False, prefix="pmemsim-check-"
        )
        self._runs.open(keys)
        self._keys = list(keys)
        self._env = None

    def close(self) -> None:
        """Close and remove the image files; end the warm interpreter."""
        if self._runs is not None:
            self._runs.close()
            self._runs = None

    def _environ(self, markers: str) -> dict[str, str]:
        """The program's environment: ours with ``PMREORDER_MARKERS`` (built once per marker list)."""
        if self._env is None or self._env[0] != markers:
            self._env = (markers, dict(os.environ, PMREORDER_MARKERS=markers))
        return self._env[1]

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        """Hand each image over in its private file (exactly the state's image) and run the program."""
        if self._runs is None:
            raise CheckerError("ProgramChecker.check called before open()")
        env = self._environ(ctx.environ_markers)
        for i, (key, view) in enumerate(zip(self._keys, views, strict=True)):
            try:
                ran = self._runs.run(i, view, env)[1]
            except subprocess.TimeoutExpired:
                return CheckOutcome(Verdict.ERROR, key, f"checker program timed out after {self.timeout} s")
            except OSError as exc:
                return CheckOutcome(Verdict.ERROR, key, f"cannot run checker {self.argv[0]!r}: {exc}")
            if ran.returncode != 0:
                from pmemsim.persistence.programs import status_text

                text = status_text(ran.returncode, ran.stdout.decode(errors="replace").strip()[-500:])
                if ran.returncode < 0:
                    return CheckOutcome(Verdict.ERROR, key, f"checker program died: {text}")
                return CheckOutcome(Verdict.INCONSISTENT, key, f"checker program: {text}")
        return None


def as_checker(obj: object, *, timeout: float | None = 60.0) -> Checker:
    """A :class:`Checker` from a checker, a callable, or a program command (str or list of str).

    Raises TypeError for anything else and CheckerError for a callable with an unusable
    signature or a program that cannot be found.
    """
    if isinstance(obj, Checker):
        return obj
    if isinstance(obj, str) or (
        isinstance(obj, Sequence) and not isinstance(obj, bytes) and all(isinstance(a, str) for a in obj)
    ):
        return ProgramChecker(obj, timeout=timeout)
    if callable(obj):
        return CallableChecker(obj, timeout=timeout)
    raise TypeError(f"a checker is a callable or a program command, not {type(obj).__name__}")
