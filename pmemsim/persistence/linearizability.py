"""Durable linearizability: judge crash images with the program's own recovery, no checker to write.

Theory of operation
-------------------
A persistent structure is *durably linearizable* when, after a crash and recovery, it
holds the state of some prefix of its operations that includes every completed one:
the operation that was interrupted took effect entirely or not at all (Izraelevitz,
Mendes and Scott, *Linearizability of persistent memory objects under a full-system-crash
failure model*, DISC 2016). Witcher (Fu et al., SOSP 2021) checks persistent key-value
stores the same way, by comparing what recovery returns with the results before and
after the interrupted operation. Here the user gives ``recover(image) -> value`` (open
the pool, return its abstract contents: a list, a dict) and marks operations with
``NAME.BEGIN`` / ``NAME.END``; no consistency checker is written.

**Operations.** The operations are the *outermost* sections: a section nested in another
belongs to it (``OP.BEGIN``, ``APPEND.BEGIN``, ``APPEND.END``, ``OP.END`` is one
operation, ``OP``). Their BEGIN and END markers are the *boundaries* ``b_1 < ... < b_m``
(record indexes); with ``b_0 = 0`` and ``b_{m+1} = len(records)`` they cut the log into
*steps* ``[b_k, b_{k+1}]``: the operations, and the stretches between them.

**Values.** ``V(b)`` is ``recover`` of the image after ``records[:b]`` with every store
applied (the content the program saw there: initial image, then each store in order).
It is computed at replay time from the log, not while recording, so a pmemcheck log
gets the same check as a recorded one. ``recover`` failing on such an image (no crash
involved) is a :class:`CheckerError`: the recovery or the code under test is wrong
whatever the crash. So is a value not equal to itself (an object without ``__eq__``,
compared by identity, would fail every crash state): recovery of the initial image is
run twice and the two values must be equal. Each value is kept as a deep copy, so that a
recovery returning one object it refills on every call is judged on what it returned.

**Verdict.** A crash right before record ``p`` lies in the step ``[b_k, b_{k+1}]`` with
``b_k < p <= b_{k+1}`` (a crash right before an END marker is inside its operation, a
crash right before a BEGIN marker before it). Every image it can leave must recover to
``V(b_k)`` or ``V(b_{k+1})``, compared with ``==``: inside an operation, the value before
it or after it; between operations, where a correct program stores nothing recovery
reads, both are the current value. Stores between operations that change the value
make that stretch an operation of its own (a note says so), and a log without any
marked operation is one operation. ``recover`` raising on a crash image is an
inconsistency, with its exception in the message. Since a step is delimited by
markers, the visible markers before a crash point give its step (:meth:`region`): the
explorer deduplicates on (image, step), the shrinker gets the same verdicts, and the
verdict of an image never depends on which crash point of the step reached it.

A recovery *program* (``recover="./recover_pool"``) gets the path of a private copy of
each file's image as its last argument and prints the value; its standard output,
without trailing white space, is the value (compared as text; bytes that are not UTF-8
are kept as they are, so a program may print binary; the image's path, where the program
prints it, reads ``IMAGE``). A non-zero exit status
is recovery failing; a program that cannot start, is killed by a signal or times out
gives no verdict (a checker error), as for program checkers.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pmemsim.persistence.checkers import (
    CallTimedOut,
    Checker,
    CheckerError,
    CheckOutcome,
    CrashContext,
    TimedCalls,
    Verdict,
)
from pmemsim.persistence.image import initial_images
from pmemsim.persistence.log import Marker, Store, StoreLog

if TYPE_CHECKING:
    from pmemsim.persistence.programs import ProgramRuns

__all__ = ["Recovered", "RecoveryChecker", "Step", "recovery_for"]

#: How much of a value's text a message shows.
_SHOWN = 160


def _show(value: object) -> str:
    """``repr(value)``, cut to a readable length (a repr that raises is named as such)."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__}: repr raised {type(exc).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@dataclass(frozen=True)
class Recovered:
    """What one recovery call gave: a ``value``, or why there is none.

    ``failed`` is the message of a recovery that raised (Python) or exited non-zero
    (program): an inconsistency. ``error`` is the message of a call that gave no answer
    at all (a timeout, ``sys.exit``, a program that could not start or was killed): a
    checker error.
    """

    value: Any = None
    failed: str | None = None
    error: str | None = None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"recover raised {type(exc).__name__}: {text}" if text else f"recover raised {type(exc).__name__}"


class _CallableRecovery(TimedCalls):
    """``recover(image)`` per file (or ``recover({key: image})`` with ``all_files``), under a timeout."""

    #: The user's Python code runs in this process.
    runs_python = True

    def __init__(self, fn: Callable[..., object], timeout: float | None, all_files: bool) -> None:
        self.fn = fn
        self.timeout = timeout
        self.all_files = all_files
        self._keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return repr(getattr(self.fn, "__qualname__", self.fn))

    def open(self, keys: Sequence[str]) -> None:
        self._keys = tuple(keys)
        self._start_watchdog()

    def close(self) -> None:
        self._stop_watchdog()

    def _call(self, arg: object) -> Recovered:
        try:
            value = self._timed(self.fn, arg)
        except CallTimedOut:
            return Recovered(error=f"recover timed out after {self.timeout} s")
        except SystemExit as exc:
            return Recovered(error=f"recover called sys.exit({exc.code!r}); raise an exception instead")
        except Exception as exc:
            return Recovered(failed=_describe(exc))
        return Recovered(value=value)

    def recover(self, views: Sequence[memoryview]) -> Recovered:
        if self.all_files:
            return self._call(dict(zip(self._keys, views, strict=True)))
        if len(views) == 1:
            return self._call(views[0])
        values = []
        for key, view in zip(self._keys, views, strict=True):
            got = self._call(view)
            if got.failed is not None or got.error is not None:
                prefix = f"[{key}] "
                return Recovered(
                    failed=prefix + got.failed if got.failed else None,
                    error=prefix + got.error if got.error else None,
                )
            values.append(got.value)
        return Recovered(value=tuple(values))


class _ProgramRecovery:
    """``command... IMAGE_PATH`` per file: its standard output (trailing white space removed) is the value."""

    #: The user's code runs in its own process.
    runs_python = False

    def __init__(self, argv: list[str], timeout: float | None, warm: bool = True) -> None:
        self.argv = argv
        self.timeout = timeout
        self.warm = warm
        self._runs: ProgramRuns | None = None
        self._keys: list[str] = []

    def __repr__(self) -> str:
        return repr(shlex.join(self.argv))

    def open(self, keys: Sequence[str]) -> None:
        from pmemsim.persistence.programs import ProgramRuns  # only where programs run

        self.close()
        self._runs = ProgramRuns(
            self.argv, timeout=self.timeout, warm=self.warm, stderr_apart=True, prefix="pmemsim-recover-"
        )
        self._runs.open(keys)
        self._keys = list(keys)

    def close(self) -> None:
        if self._runs is not None:
            self._runs.close()
            self._runs = None

    def _run(self, index: int, view: memoryview) -> Recovered:
        assert self._runs is not None
        try:
            path, ran = self._runs.run(index, view, dict(os.environ))  # exactly the state's image
        except subprocess.TimeoutExpired:
            return Recovered(error=f"recovery program timed out after {self.timeout} s")
        except OSError as exc:
            return Recovered(error=f"cannot run recovery program {self.argv[0]!r}: {exc}")
        if ran.returncode != 0:
            from pmemsim.persistence.programs import status_text

            text = status_text(
                ran.returncode, (ran.stderr or ran.stdout).decode(errors="replace").strip()[-300:]
            )
            if ran.returncode < 0:
                return Recovered(error=f"recovery program died: {text}")
            return Recovered(failed=f"recovery program: {text}")
        # The copy's path is pmemsim's choice, not part of the value (its directory differs per
        # process and per open): a program that prints it must give the same value everywhere.
        out = ran.stdout.replace(os.fsencode(path), b"IMAGE")
        # surrogateescape, not replace: a program printing binary must not see two different
        # invalid byte sequences compare equal (both U+FFFD).
        return Recovered(value=out.decode(errors="surrogateescape").rstrip())

    def recover(self, views: Sequence[memoryview]) -> Recovered:
        if self._runs is None:
            raise CheckerError("recovery used before open()")
        values: list[object] = []
        for i, (key, view) in enumerate(zip(self._keys, views, strict=True)):
            got = self._run(i, view)
            if got.failed is not None or got.error is not None:
                if len(views) == 1:
                    return got
                prefix = f"[{key}] "
                return Recovered(
                    failed=prefix + got.failed if got.failed else None,
                    error=prefix + got.error if got.error else None,
                )
            values.append(got.value)
        return Recovered(value=values[0] if len(values) == 1 else tuple(values))


_Recovery = _CallableRecovery | _ProgramRecovery


def recovery_for(
    recover: Callable[..., object] | str | Sequence[str],
    *,
    timeout: float | None = 60.0,
    all_files: bool = False,
    warm: bool = True,
) -> _Recovery:
    """The recovery of ``recover``: a callable, or a program command (a str split like a shell, or a list).

    A Python program starts warm unless ``warm=False`` (see :mod:`pmemsim.persistence.programs`).
    Raises TypeError for anything else and CheckerError for a program that cannot be found.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive or None, got {timeout!r}")
    if isinstance(recover, str) or (
        isinstance(recover, Sequence)
        and not isinstance(recover, bytes)
        and bool(recover)
        and all(isinstance(a, str) for a in recover)
    ):
        if all_files:
            raise TypeError("all_files=True needs a callable recover, not a program")
        argv = shlex.split(recover) if isinstance(recover, str) else list(recover)
        if not argv:
            raise CheckerError("recovery command is empty")
        if shutil.which(argv[0]) is None:
            raise CheckerError(f"recovery program {argv[0]!r} not found or not executable")
        return _ProgramRecovery(argv, timeout, warm)
    if callable(recover):
        return _CallableRecovery(recover, timeout, all_files)
    raise TypeError(
        "recover must be a callable recover(image) -> value or a program command (str or list of str), "
        f"not {type(recover).__name__}"
    )


@dataclass(frozen=True)
class Step:
    """A stretch of the log between two operation boundaries, and the values allowed in it.

    ``start`` and ``end`` are record indexes (``start`` 0 is the start of the log, ``end``
    ``len(records)`` its end); a crash right before record ``p`` with ``start < p <= end``
    (or ``p == 0`` for the first step) lies in it. ``operation`` is the section name of an
    operation, None for a stretch between operations. ``before`` and ``after`` are the
    recovered values at ``start`` and ``end``.
    """

    index: int
    start: int
    end: int
    operation: str | None
    before: Any
    after: Any


def _snapshot(value: object) -> object:
    """A deep copy of a value recovered at a boundary, or the value itself when it cannot be copied.

    A recovery may return one object that it refills on every call (``self.items``): kept
    as is, every boundary's value would be that object, equal to whatever the last call
    recovered, and every crash image would pass.
    """
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _equal(a: object, b: object) -> bool:
    """``a == b`` as a bool (raises what comparing raises: an unusable value)."""
    return bool(a == b)


class RecoveryChecker(Checker):
    """Judges crash images by durable linearizability: see the module documentation.

    Build it for a log with :meth:`for_log`; it judges that log's crash states only.
    """

    sees_markers = True

    def __init__(
        self,
        recovery: _Recovery,
        steps: Sequence[Step],
        regions: Sequence[int],
        keys: Sequence[str],
        notes: Sequence[str] = (),
    ) -> None:
        self.recovery = recovery
        #: True when recovery is a Python callable (run in this process, unlike a program).
        self.runs_python = recovery.runs_python
        self.steps = tuple(steps)
        #: The step of a crash point with ``i`` visible markers before it is ``regions[i]``.
        self.regions = tuple(regions)
        self.keys = tuple(keys)
        #: What the check noticed about the log (stores outside any operation).
        self.notes = tuple(notes)

    def __repr__(self) -> str:
        return f"RecoveryChecker({self.recovery!r})"

    def __copy__(self) -> RecoveryChecker:
        # Tasks running side by side in threads each get a copy: the recovery's watchdog or
        # directory is per copy.
        new = RecoveryChecker(copy.copy(self.recovery), self.steps, self.regions, self.keys, self.notes)
        return new

    @classmethod
    def for_log(
        cls,
        log: StoreLog,
        recover: Callable[..., object] | str | Sequence[str],
        *,
        images: Sequence[bytes] | None = None,
        timeout: float | None = 60.0,
        all_files: bool = False,
    ) -> RecoveryChecker:
        """Compute the recovered value at every operation boundary of ``log``; the checker of its crashes.

        ``images`` are the files' contents before the first store, in ``log.files`` order
        (default: :func:`~pmemsim.persistence.image.initial_images`). Raises CheckerError
        when recovery fails on the image at a boundary (no crash involved) or gives no
        answer there, TypeError/CheckerError for an unusable ``recover``.
        """
        recovery = recover if isinstance(recover, _CallableRecovery | _ProgramRecovery) else None
        if recovery is None:
            recovery = recovery_for(recover, timeout=timeout, all_files=all_files)
        keys = tuple(log.files)
        bufs = [bytearray(b) for b in (initial_images(log) if images is None else images)]
        index = {k: i for i, k in enumerate(keys)}
        # Boundaries: (record index, section name, opens an operation).
        boundaries: list[tuple[int, str, bool]] = []
        regions = [0]
        changed_at: list[bool] = []  # per boundary, and at the end: a store since the previous one
        depth = 0
        stored = False
        for i, rec in enumerate(log.records):
            if isinstance(rec, Store):
                fidx = index.get(rec.file)
                if fidx is None or rec.offset < 0 or rec.offset + len(rec.data) > len(bufs[fidx]):
                    raise CheckerError(f"record {i}: a store outside the registered files")
                stored = True
            elif isinstance(rec, Marker):
                section = rec.section
                boundary = False
                if section is not None:
                    if rec.is_begin:
                        boundary, depth = depth == 0, depth + 1
                    elif depth > 0:
                        depth -= 1
                        boundary = depth == 0
                    if boundary:
                        boundaries.append((i, section, rec.is_begin))
                        changed_at.append(stored)
                        stored = False
                if section is not None or rec.data is not None:  # a visible marker
                    regions.append(len(boundaries))
        changed_at.append(stored)

        recovery.open(keys)
        try:
            values = cls._values(log, recovery, bufs, [b for b, _, _ in boundaries], changed_at)
        finally:
            recovery.close()

        steps: list[Step] = []
        notes: list[str] = []
        edges = [0, *(b for b, _, _ in boundaries), len(log.records)]
        for k in range(len(edges) - 1):
            operation = boundaries[k - 1][1] if k > 0 and boundaries[k - 1][2] else None
            steps.append(Step(k, edges[k], edges[k + 1], operation, values[k], values[k + 1]))
            if operation is None and changed_at[k]:
                with contextlib.suppress(Exception):
                    if not _equal(values[k], values[k + 1]):
                        notes.append(
                            f"records {edges[k]}..{edges[k + 1]} change the recovered value outside any "
                            "marked operation: checked as one operation (mark operations with "
                            "NAME.BEGIN / NAME.END)"
                            if boundaries
                            else "the log marks no operation (NAME.BEGIN / NAME.END): the whole log is "
                            "checked as one operation"
                        )
        return cls(recovery, steps, regions, keys, notes)

    @staticmethod
    def _values(
        log: StoreLog,
        recovery: _Recovery,
        bufs: list[bytearray],
        boundaries: list[int],
        changed_at: list[bool],
    ) -> list[Any]:
        """``V(b)`` at the start, at each boundary and at the end (reused where no store came between)."""
        keys = list(log.files)
        index = {k: i for i, k in enumerate(keys)}
        records = log.records
        points = [*boundaries, len(records)]
        values: list[Any] = []

        def at(upto: int) -> Any:
            views = [memoryview(bytes(b)) for b in bufs]  # fresh bytes: a value may keep a view
            got = recovery.recover(views)
            if got.failed is not None or got.error is not None:
                where = "at the start of the log" if upto == 0 else f"after records 0..{upto - 1}"
                raise CheckerError(
                    f"recover gives no value for the image with every store applied {where} (no crash): "
                    f"{got.failed or got.error}; fix the recovery, or the code under test"
                )
            return _snapshot(got.value)

        values.append(at(0))
        # A value that is not equal to itself (no __eq__: compared by identity) would fail
        # every crash state: say so once instead of reporting false inconsistencies.
        again = at(0)
        try:
            stable = _equal(values[0], again)
        except Exception as exc:
            raise CheckerError(
                f"recover's values cannot be compared with == ({type(exc).__name__}: {exc})"
            ) from None
        if not stable:
            raise CheckerError(
                f"recover gives unequal values for the same image ({_show(values[0])} != {_show(again)}): "
                "return values that compare with == (lists, dicts, tuples, bytes, dataclasses)"
            )
        done = 0
        for point, changed in zip(points, changed_at, strict=True):
            if not changed:
                values.append(values[-1])
                continue
            for rec in records[done:point]:
                if isinstance(rec, Store):
                    bufs[index[rec.file]][rec.offset : rec.offset + len(rec.data)] = rec.data
            done = point
            values.append(at(point))
        return values

    # -- the Checker protocol ------------------------------------------------------------------
    def region(self, markers: int) -> int:
        """The step of a crash point with ``markers`` visible markers before it (its verdict needs it)."""
        return self.regions[markers]

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Prepare the recovery (refuses the files of another log)."""
        if tuple(keys) != self.keys:
            raise CheckerError(
                f"this RecoveryChecker was built for the files {list(self.keys)}, not {list(keys)}: "
                "build it with RecoveryChecker.for_log(log, recover) for the log being replayed"
            )
        self.recovery.open(keys)

    def close(self) -> None:
        """Release what :meth:`open` took."""
        self.recovery.close()

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        """Recover the image and compare with the values before and after the step of the crash."""
        if not 0 <= ctx.count < len(self.regions):
            raise CheckerError("crash point outside the log this RecoveryChecker was built for")
        step = self.steps[self.regions[ctx.count]]
        file = ctx.file or ",".join(self.keys)
        got = self.recovery.recover(views)
        if got.error is not None:
            return CheckOutcome(Verdict.ERROR, file, got.error)
        where, allowed = _allowed(step)
        details = (
            ("step", where),
            ("before", _show(step.before)),
            ("after", _show(step.after)),
        )
        if got.failed is not None:
            return CheckOutcome(
                Verdict.INCONSISTENT,
                file,
                f"{got.failed}, after a crash {where}; allowed: {allowed}",
                (*details, ("recovered", got.failed)),
            )
        try:
            fine = _equal(got.value, step.before) or _equal(got.value, step.after)
        except Exception as exc:
            return CheckOutcome(
                Verdict.ERROR,
                file,
                f"cannot compare the recovered value {_show(got.value)} with the allowed ones "
                f"({type(exc).__name__}: {exc}); recover must return values comparable with ==",
            )
        if fine:
            return None
        return CheckOutcome(
            Verdict.INCONSISTENT,
            file,
            f"recovered {_show(got.value)} after a crash {where}; allowed: {allowed}",
            (*details, ("recovered", _show(got.value))),
        )


def _allowed(step: Step) -> tuple[str, str]:
    """Where a crash of ``step`` is, in words, and the values allowed there."""
    span = f"records {step.start}..{step.end}"
    if step.operation is not None:
        return (
            f"inside {step.operation} ({span})",
            f"{_show(step.before)} (before it) or {_show(step.after)} (after it)",
        )
    try:
        same = _equal(step.before, step.after)
    except Exception:
        same = False
    if same:
        return f"outside any operation ({span})", f"{_show(step.before)} (the current value)"
    return (
        f"in unmarked stores ({span})",
        f"{_show(step.before)} (at record {step.start}) or {_show(step.after)} (at record {step.end})",
    )
