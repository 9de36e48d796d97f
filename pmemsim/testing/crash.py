"""Record a block of code on a set, replay every crash state, explain the first bad one.

    with CrashCheck(pset, check_image, engine="ReorderFull") as run:
        my_structure.append(b"record")      # stores, flushes and fences are recorded
    # on exit: every crash state the engine picks is checked with check_image(image);
    # an inconsistent one raises CrashConsistencyError with the minimal trace

``check_image(image) -> bool | None`` gets a read-only buffer of one file's crash
image (``all_files=True``: a ``{file: image}`` dict); True/None means consistent,
False or an exception inconsistent. ``check_image(image, ctx)`` also gets the
:class:`~pmemsim.persistence.CrashContext` of the crash (``ctx.markers``, ``ctx.data``
of ``pset.mark(name, data=...)``, ``ctx.epoch``, ``ctx.record``). A program command
(str or list) works too, as with pmreorder's ``-c prog``. The pytest fixture
``crash_check`` wraps this and fails the test instead of raising.

Without a checker, ``recover=`` checks durable linearizability: ``recover(image) ->
value`` opens the pool as a restart would and returns its contents; a crash inside an
operation (an outermost ``pset.mark("NAME.BEGIN")`` / ``"NAME.END"`` section) must
recover to the value before it or after it, anywhere else to the current value (see
:mod:`pmemsim.persistence.linearizability`).

No silent passes: a block that recorded no store (the code wrote to another set, or
nothing), or an engine that picks no state, fails unless ``allow_empty=True``; a
checker error (a garbage return value, a timeout, a rejection of the image before any
store) fails like an inconsistency, saying it is the checker's; and a run that was not
exhaustive (a sampling engine, an epoch over ``max_states``) warns with
:class:`NotExhaustiveWarning`, or fails with ``strict=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from pmemsim.enums import Granularity
    from pmemsim.persistence import Checker, CrashReport, Engine, PersistencyModel, StoreLog
    from pmemsim.pmemset import PmemSet

__all__ = [
    "DEFAULT_ENGINE",
    "CrashCheck",
    "CrashCheckResult",
    "CrashConsistencyError",
    "NotExhaustiveWarning",
    "make_checker",
]

#: The engine used when none is named: every distinct crash image, deduplicated.
DEFAULT_ENGINE = "Exhaustive"


class CrashConsistencyError(AssertionError):
    """A crash state was inconsistent (or nothing was checked); the message holds the minimal trace."""


class NotExhaustiveWarning(UserWarning):
    """A crash check passed without checking every state its engine defines (sampled, or capped)."""


@dataclass(frozen=True)
class CrashCheckResult:
    """What a replay found: the report, the recorded log, and the explanation of the first failure."""

    report: CrashReport
    log: StoreLog
    trace: str
    strict: bool = False

    @property
    def ok(self) -> bool:
        """True when every crash state checked was consistent (and, with ``strict``, all were checked)."""
        return self.report.ok and (self.report.complete or not self.strict)

    def message(self) -> str:
        """A readable failure message (summary line, then the minimal trace)."""
        report = self.report
        if report.ok and not report.complete:
            return f"crash consistency check was not exhaustive (strict): {report.summary()}"
        head = f"crash consistency check failed: {report.summary()}"
        if report.errors:
            errors = [f.describe() for f in report.failures if f.verdict.value == "error"][:3]
            head += "\nchecker error (the checker's fault, not the pool's):\n" + "\n".join(errors)
        return f"{head}\n{self.trace}" if self.trace else head


def make_checker(checker: object, *, all_files: bool = False, timeout: float | None = 60.0) -> Checker:
    """A :class:`~pmemsim.persistence.Checker` from a callable, a program command or a Checker.

    Raises TypeError naming what was given when it is none of these.
    """
    from pmemsim.persistence import CallableChecker, Checker, as_checker

    if all_files:
        if not callable(checker):
            raise TypeError(f"all_files=True needs a callable checker, not {type(checker).__name__}")
        return CallableChecker(checker, timeout=timeout, all_files=True)
    if isinstance(checker, Checker | str) or callable(checker):
        return as_checker(checker, timeout=timeout)
    if isinstance(checker, Sequence) and checker and all(isinstance(a, str) for a in checker):
        return as_checker(checker, timeout=timeout)
    raise TypeError(
        "checker must be a callable check(image) -> bool | None, a program command (str or list of str) "
        f"or a pmemsim.persistence.Checker, not {type(checker).__name__} ({checker!r})"
    )


class CrashCheck:
    """Context manager: records the block on ``pset``, then replays it with ``checker``.

    ``engine`` (a name such as ``"ReorderFull"`` or an Engine) explores the crash
    states; ``markers`` maps ``NAME`` of ``pset.mark("NAME.BEGIN")`` sections to engines;
    ``seed``, ``workers``, ``model`` and ``timeout`` are passed to
    :func:`pmemsim.persistence.replay`, as are ``max_states`` and ``allow_empty``. After
    the block, :attr:`result` holds the outcome; when a state is inconsistent, the
    checker erred, or (``strict``) the run was not exhaustive, :meth:`on_failure` runs
    (the ``on_failure`` callback if given, else it raises
    :class:`CrashConsistencyError`); a block that recorded nothing raises
    CrashConsistencyError unless ``allow_empty``. Construction raises TypeError for a bad
    checker and ValueError for an unknown engine; nothing is replayed when the block
    raises. ``recover`` (a callable or a program printing the value) replaces the checker
    with a durable-linearizability check; give one of the two.
    """

    def __init__(
        self,
        pset: PmemSet,
        checker: Checker | Callable[[Any], object] | str | Sequence[str] | None = None,
        *,
        recover: Callable[[Any], object] | str | Sequence[str] | None = None,
        engine: Engine | str = DEFAULT_ENGINE,
        markers: Mapping[str, Engine | str] | None = None,
        seed: int | None = None,
        workers: int = 1,
        model: PersistencyModel | Granularity | None = None,
        all_files: bool = False,
        timeout: float | None = 60.0,
        max_states: int | None = None,
        allow_empty: bool = False,
        strict: bool = False,
        on_failure: Callable[[CrashCheckResult], None] | None = None,
    ) -> None:
        from pmemsim.persistence import engine_from_name
        from pmemsim.pmemset import PmemSet

        if not isinstance(pset, PmemSet):
            raise TypeError(f"CrashCheck needs a PmemSet to record, not {type(pset).__name__}")
        self.pset = pset
        self.recovery: Any = None
        self.checker: Checker | None = None
        if (checker is None) == (recover is None):
            raise TypeError(
                "crash check needs a checker, or recover= for a durable-linearizability check (not both)"
            )
        if recover is not None:
            from pmemsim.persistence.linearizability import recovery_for

            self.recovery = recovery_for(recover, timeout=timeout, all_files=all_files)
        else:
            self.checker = make_checker(checker, all_files=all_files, timeout=timeout)
        self.engine = engine_from_name(engine)
        self.markers = {name: engine_from_name(spec) for name, spec in (markers or {}).items()}
        self.seed = seed
        self.workers = workers
        self.model = model
        self.timeout = timeout
        self.max_states = max_states
        self.allow_empty = allow_empty
        self.strict = strict
        self._on_failure = on_failure
        self.log: StoreLog | None = None
        self.result: CrashCheckResult | None = None
        self._recording: AbstractContextManager[StoreLog] | None = None

    def __enter__(self) -> CrashCheck:
        self._recording = self.pset.record()
        self.log = self._recording.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._recording is not None
        self._recording.__exit__(exc_type, exc, tb)
        if exc_type is not None:
            return
        self.result = self.replay()
        report = self.result.report
        if not self.result.ok:
            self.on_failure(self.result)
        elif not report.complete:
            warnings.warn(
                NotExhaustiveWarning(f"crash check not exhaustive: {report.summary()}"), stacklevel=2
            )

    def replay(self) -> CrashCheckResult:
        """Replay the recorded log now (called on leaving the block)."""
        from pmemsim.persistence import (
            CheckerError,
            NothingToCheck,
            RecoveryChecker,
            ShrinkError,
            Verdict,
            replay,
            shrink,
        )

        if self.log is None:
            raise ValueError("nothing was recorded: use the CrashCheck as a context manager first")
        checker = self.checker
        if self.recovery is not None:
            try:
                checker = RecoveryChecker.for_log(self.log, self.recovery)
            except CheckerError as exc:
                raise CrashConsistencyError(f"crash check: {exc}") from None
        assert checker is not None
        try:
            report = replay(
                self.log,
                checker,
                engine=self.engine,
                markers=self.markers or None,
                seed=self.seed,
                workers=self.workers,
                model=self.model,
                timeout=self.timeout,
                max_failures=10,
                max_states=self.max_states,
                allow_empty=self.allow_empty,
            )
        except NothingToCheck as exc:
            raise CrashConsistencyError(f"crash check of nothing: {exc}") from None
        trace = ""
        failure = next((f for f in report.failures if f.verdict is Verdict.INCONSISTENT), None)
        if failure is not None:
            try:
                trace = str(shrink(self.log, failure, checker, model=self.model, timeout=self.timeout))
            except ShrinkError as exc:
                trace = f"{failure.describe()}\n(not shrunk: {exc})"
        return CrashCheckResult(report, self.log, trace, self.strict)

    def on_failure(self, result: CrashCheckResult) -> None:
        """Called with an inconsistent result: the ``on_failure`` callback, else CrashConsistencyError."""
        if self._on_failure is not None:
            self._on_failure(result)
            return
        raise CrashConsistencyError(result.message())
