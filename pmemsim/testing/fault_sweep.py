"""Fault sweeps: run a test once per hit of every fault site it reaches, failing exactly that hit.

Theory of operation. SQLite earns its trust by driving every allocation and I/O failure
through its test suite (https://sqlite.org/testing.html, "I/O error testing": a counter
fails the n-th operation, for n = 1, 2, ... until a run completes without reaching it).
pmemsim's fault sites are named and counted per site (:class:`~pmemsim.faults.FaultPlan`,
including the system calls of :mod:`pmemsim._files`), so the sweep needs no guessing:

1. a *counting run* executes the test with an empty plan; it must pass and leak nothing.
   ``plan.hits`` at the end of the test's call phase says how often each site was reached
   (hits in the fixtures' teardown are not swept: that is the harness closing up);
2. for every ``(site, k)`` with ``k <= hits[site]`` one more run fails exactly that hit
   (:class:`~pmemsim.faults.FaultPoint` ``site@k``). Runs are deterministic up to the
   fault, so the k-th hit arrives at the same place in the code; what the code does
   after it is what is judged.

Each run is judged (:func:`judge`) against the test's policy (:class:`Expect`): the
error must be *handled* (the test passes), or *raised* (the PmemsetError the fault
caused escapes the test: the first PmemsetError created after the fault fired, or one
with its code), or either. Anything else is misbehaviour: an assertion of the test, an
exception of another kind, the error swallowed where it should escape, the hit never
reached (the test is not deterministic). After every run, nothing may outlive it
(:func:`open_fds`, :func:`space_leaks`): file descriptors (including unlinked temporary
files) are compared through ``/proc/self/fd`` before and after, once the garbage
collector has run (what it releases is not a leak); reservations and mappings through
the address space's own bookkeeping. A sweep is reported as one line per misbehaving
``(site, hit)`` (:class:`SweepLine`), with the stack of the failing call in the user's
code, captured when the fault fired (:attr:`~pmemsim.faults.FiredFault.stack`).

This module holds the pieces every sweep shares (the policy, the judge, the leak checks,
the report lines: used by ``pmemsim run --fault-sweep`` too) and the pytest side: the
``fault_sweep`` fixture's object (:class:`FaultSweep`) and the protocol that runs a test
item many times (:func:`run_item`), in the way pytest-rerunfailures re-runs an item:
``runtestprotocol`` once per run, with fresh function-scoped fixtures each time.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import gc
import os
import shlex
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pmemsim.errors import PmemsetError, add_error_observer, remove_error_observer
from pmemsim.faults import FaultPlan, FaultPoint, FaultSite, FiredFault, OsCall, StackFrame, as_site
from pmemsim.report.results import FaultOutcome

if TYPE_CHECKING:
    import pytest

    from pmemsim.addrspace.base import AddressSpace

__all__ = [
    "Expect",
    "FaultSweep",
    "SweepLine",
    "judge",
    "leaked_fds",
    "open_fds",
    "points_of",
    "space_leaks",
    "user_frames",
]


class Expect(StrEnum):
    """What a test wants done with an injected failure."""

    HANDLED = "handled"  # the test passes: the code under test dealt with the error
    RAISED = "raised"  # the fault's PmemsetError escapes the test
    EITHER = "either"  # one or the other (the default)


def points_of(hits: dict[FaultSite | OsCall, int]) -> list[FaultPoint]:
    """Every (site, hit) of a counting run's ``hits``, in the order a sweep drives them."""
    points = [FaultPoint(site, k) for site, n in hits.items() for k in range(1, n + 1)]
    return sorted(points, key=lambda p: p.sort_key)


# -- judging one run ---------------------------------------------------------------------------------


def judge(
    expect: Expect,
    fired: FiredFault | None,
    fault_error: tuple[str, int] | None,
    escaped: BaseException | None,
) -> tuple[FaultOutcome, str]:
    """The outcome of one sweep run and, for misbehaviour, why (one line).

    ``fired`` is the planned fault if it fired; ``fault_error`` the (name, code) of the
    first PmemsetError created after it fired; ``escaped`` the exception that ended the
    run, None when it passed.
    """
    if escaped is None:
        if fired is None:
            return FaultOutcome.UNREACHED, "the hit was never reached (the counting run reached it)"
        if expect is Expect.RAISED:
            why = f"the test passed: {_error_text(fault_error)} did not escape; the test expects it raised"
            return FaultOutcome.SWALLOWED, why
        return FaultOutcome.HANDLED, ""
    what = _exception_text(escaped)
    if fired is None:
        return FaultOutcome.FAILED, f"{what} (before the fault fired)"
    if isinstance(escaped, PmemsetError) and fault_error is not None and escaped.code == fault_error[1]:
        if expect is Expect.HANDLED:
            return FaultOutcome.UNHANDLED, f"{what} escaped the test, which expects it handled"
        return FaultOutcome.RAISED, ""
    if isinstance(escaped, PmemsetError):
        return FaultOutcome.FAILED, f"{what} escaped, but the fault raised {_error_text(fault_error)}"
    return FaultOutcome.FAILED, what


def _error_text(fault_error: tuple[str, int] | None) -> str:
    return fault_error[0] if fault_error is not None else "no PmemsetError"


def _exception_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    if isinstance(exc, PmemsetError):
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


# -- leaks ----------------------------------------------------------------------------------------------


_FD_DIR = "/proc/self/fd"


def open_fds() -> dict[int, str] | None:
    """This process's open file descriptors and what each refers to; None without ``/proc/self/fd``."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return None
    out: dict[int, str] = {}
    for name in names:
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone by now
            out[int(name)] = os.readlink(os.path.join(_FD_DIR, name))
    return out


def leaked_fds(before: dict[int, str] | None, after: dict[int, str] | None) -> list[str]:
    """The descriptors open in ``after`` that were not (or referred to something else) in ``before``."""
    if before is None or after is None:
        return []
    out = []
    for fd, target in sorted(after.items()):
        if fd in before and _same_file(before[fd], target):
            continue
        kind = "a temporary file" if target.endswith(_DELETED) else "the file"
        out.append(f"fd {fd} ({kind} {target})")
    return out


_DELETED = " (deleted)"


def _same_file(old: str, new: str) -> bool:
    # A file unlinked in the meantime (someone cleaned a directory) is still the same open file.
    return old.removesuffix(_DELETED) == new.removesuffix(_DELETED)


def space_leaks(space: AddressSpace) -> list[str]:
    """The reservations (with the mappings inside) left in ``space`` after everything using it closed."""
    out = []
    for rsv in space.reservations():
        maps = rsv.mappings
        inside = f" holding {len(maps)} mapping(s)" if maps else ""
        out.append(f"the reservation [low+{rsv.addr - space.low:#x}, +{rsv.size:#x}){inside}")
    return out


def forget_last_failure() -> None:
    """Drop the exception pytest keeps for post-mortem debugging (its frames hold the run's objects)."""
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


def collect_garbage() -> None:
    """Drop the last failure's traceback and run the collector: what it frees is no leak.

    Cheap inside :func:`frozen_heap`, where only the objects made since are traversed.
    """
    forget_last_failure()
    gc.collect()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive now out of the collector's sight (``gc.freeze``) for the block.

    A sweep collects garbage after every run; with the test session's heap frozen, each
    collection traverses only what the runs made (milliseconds instead of a tenth of a
    second with pytest, hypothesis and the rest loaded).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# -- stacks and report lines ----------------------------------------------------------------------------


def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the standard library's directory, the test runner's: pytest's and pluggy's)."""
    runner = []
    for mod in ("_pytest", "pluggy"):
        module = sys.modules.get(mod)
        if module is not None and getattr(module, "__file__", None):
            runner.append(os.path.dirname(os.path.abspath(str(module.__file__))) + os.sep)
    return (sysconfig.get_paths()["stdlib"] + os.sep, "<frozen"), tuple(runner)


def user_frames(stack: Sequence[StackFrame], only: str | None = None) -> tuple[StackFrame, ...]:
    """The frames of ``stack`` (innermost first) in the user's code.

    The standard library's frames are left out, and the stack ends where the test
    runner called the user's code (the first frame of pytest or pluggy: the test
    function or fixture it called is the outermost frame kept). With ``only``, just the
    frames of that one file (a scenario's steps).
    """
    if only is not None:
        return tuple(f for f in stack if f.filename == only)
    stdlib, runner = _library_dirs()
    out = []
    for frame in stack:
        if runner and frame.filename.startswith(runner):
            break
        if not frame.filename.startswith(stdlib):
            out.append(frame)
    return tuple(out)


def _shown_path(path: str) -> str:
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            return rel
    return path


def format_stack(frames: Sequence[StackFrame]) -> str:
    """``kv.py:42 in put < test_kv.py:10 in test_put``: innermost call first.

    A frame of no function (a scenario's step, a module's top level) is just ``file:line``.
    """
    return " < ".join(
        f"{_shown_path(f.filename)}:{f.lineno}" + ("" if f.name == "<module>" else f" in {f.name}")
        for f in frames
    )


@dataclass(frozen=True)
class SweepLine:
    """One (site, hit) whose run misbehaved: what happened and where the failing call was made."""

    point: FaultPoint
    outcome: FaultOutcome
    message: str
    errno: int | None = None
    stack: tuple[StackFrame, ...] = ()

    def __str__(self) -> str:
        err = f" ({_errno.errorcode.get(self.errno, self.errno)})" if self.errno else ""
        where = f" | at {format_stack(self.stack)}" if self.stack else ""
        return f"{self.point}{err}: {self.outcome.value}: {self.message}{where}"


# -- the pytest side --------------------------------------------------------------------------------


@dataclass
class RunState:
    """One run of a test item under a sweep (the counting run has no ``point``): filled as it goes."""

    point: FaultPoint | None
    errno: int | None = None
    base: RunState | None = None  # the counting run, whose declarations hold for every run
    plan: FaultPlan | None = None
    expect: dict[FaultSite | OsCall | None, Expect] = field(default_factory=dict)  # None: every site
    errnos: dict[FaultSite | OsCall, int] = field(default_factory=dict)
    fault_error: tuple[str, int] | None = None
    outcome: FaultOutcome | None = None
    message: str = ""
    leaks: list[str] = field(default_factory=list)
    hits: dict[FaultSite | OsCall, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # PmemsetErrors created, by name
    stack: tuple[StackFrame, ...] = ()

    @property
    def fired(self) -> FiredFault | None:
        """The planned fault, once it fired."""
        if self.plan is None or self.point is None:
            return None
        return next((f for f in self.plan.fired if f.point == self.point), None)

    def policy(self, site: FaultSite | OsCall) -> Expect:
        """What the test wants for ``site``: its declarations in this run, then the counting run's."""
        for declared in (self.expect, self.base.expect if self.base else {}):
            for key in (site, None):
                if key in declared:
                    return declared[key]
        return Expect.EITHER

    def arm(self, plan: FaultPlan) -> None:
        """Fail this run's point in ``plan`` (the fixture's plan) and record where it fires."""
        self.plan = plan
        plan.record_stacks = True
        if self.point is not None:
            errnos = self.base.errnos if self.base is not None else self.errnos
            self.errno = errnos.get(self.point.site)
            # The base method: the fixture's plan reports its own armed faults that never
            # fired, and the sweep's fault is not the test's.
            FaultPlan.fail(plan, self.point.site, at=self.point.hit, errno=self.errno)

    def seen(self, exc: PmemsetError) -> None:
        """Error observer: count it; the first PmemsetError after the fault fired is the fault's."""
        self.errors[exc.name] = self.errors.get(exc.name, 0) + 1
        if self.fault_error is None and self.fired is not None:
            self.fault_error = (exc.name, exc.code)

    def settle(self, escaped: BaseException | None) -> bool:
        """Judge the run once the test (or a fixture's set-up) ended; True when ``escaped`` is accepted."""
        if self.point is None:
            return False
        fired = self.fired
        if fired is not None:
            self.stack = fired.stack
            if isinstance(fired.site, OsCall):
                self.errno = fired.errno  # the errno the call failed with, chosen or not
        self.outcome, self.message = judge(self.policy(self.point.site), fired, self.fault_error, escaped)
        return escaped is not None and self.outcome is FaultOutcome.RAISED

    def line(self) -> SweepLine:
        """The report line of a misbehaving run."""
        assert self.point is not None and self.outcome is not None
        return SweepLine(self.point, self.outcome, self.message, self.errno, user_frames(self.stack))


class FaultSweep:
    """The ``fault_sweep`` fixture: what this run of a swept test fails, and what the test wants.

    ``point`` is the (site, hit) this run fails (None in the counting run and outside a
    sweep). :meth:`expect_handled` and :meth:`expect_raised` state what correct code does
    with a failure at the given sites (all sites when none are named); undeclared sites
    accept either. :meth:`fail_with` picks the errno an OS-level site fails with. The
    sweep reads the declarations of the counting run, which runs the whole test: call
    them unconditionally, anywhere in the test.
    """

    def __init__(self, state: RunState | None) -> None:
        self._state = state if state is not None else RunState(None)

    @property
    def point(self) -> FaultPoint | None:
        """The (site, hit) this run fails; None when it fails none."""
        return self._state.point

    @property
    def active(self) -> bool:
        """True while the test runs under a sweep or ``--pmemsim-fault`` (counting run included)."""
        return self._state.plan is not None

    def _declare(self, expect: Expect, sites: Iterable[FaultSite | OsCall | str]) -> None:
        keys: list[FaultSite | OsCall | None] = [as_site(site) for site in sites]
        for key in keys or [None]:
            self._state.expect[key] = expect

    def expect_handled(self, *sites: FaultSite | OsCall | str) -> None:
        """A failure at ``sites`` (default: any) must be handled: the test must pass.

        Raises ValueError for an unknown site.
        """
        self._declare(Expect.HANDLED, sites)

    def expect_raised(self, *sites: FaultSite | OsCall | str) -> None:
        """A failure at ``sites`` (default: any) must escape the test as the PmemsetError it causes.

        Raises ValueError for an unknown site.
        """
        self._declare(Expect.RAISED, sites)

    def fail_with(self, site: FaultSite | OsCall | str, errno: int) -> None:
        """Fail ``site`` with ``errno`` (e.g. ``errno.ENOSPC`` for ``os.msync``: a full disk).

        Raises ValueError for an unknown site or an errno that is not a positive int.
        """
        s = as_site(site)
        if not isinstance(errno, int) or isinstance(errno, bool) or errno <= 0:
            raise ValueError(f"errno must be a positive errno value, got {errno!r}")
        self._state.errnos[s] = errno


def reproduce_command(item: pytest.Item, option: str) -> str:
    """``pytest 'tests/test_kv.py::test_put' OPTION`` (plus the backend option when it matters)."""
    words = ["pytest", item.nodeid, *shlex.split(option)]
    backend = item.config.getoption("--pmemsim-backend")
    if backend not in (None, "sim") and "[" not in item.nodeid:
        words.append(f"--pmemsim-backend={backend}")
    return shlex.join(words)


@contextlib.contextmanager
def _observing(state: RunState) -> Iterator[None]:
    add_error_observer(state.seen)
    try:
        yield
    finally:
        remove_error_observer(state.seen)


def _run_once(item: pytest.Item, nextitem: Any, state: RunState, key: Any) -> list[pytest.TestReport]:
    # One item's set-up, call and teardown, as pytest runs it (and pytest-rerunfailures per rerun).
    from _pytest.runner import runtestprotocol

    item.stash[key] = state
    before = open_fds()
    try:
        with _observing(state):
            reports = runtestprotocol(item, log=False, nextitem=nextitem)
    finally:
        del item.stash[key]
    collect_garbage()
    state.leaks += leaked_fds(before, open_fds())
    _verdict(state, reports)
    return reports


def _short(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr or "")
    lines = text.strip().splitlines()
    return " ".join(lines[0].split())[:300] if lines else f"{report.when} {report.outcome}"


def _verdict(state: RunState, reports: Sequence[pytest.TestReport]) -> None:
    """Fold what the reports and the leak checks say into the run's outcome."""
    failed = [r for r in reports if r.failed]
    if state.point is None:
        state.outcome = FaultOutcome.FAILED if failed else FaultOutcome.HANDLED
        state.message = _short(failed[0]) if failed else ""
        if state.leaks and not failed:
            state.outcome, state.message = FaultOutcome.LEAKED, "leaked " + "; ".join(state.leaks)
        return
    if state.outcome is None:  # the judge never ran: a set-up failed in some other way
        state.settle(_SetUpFailed(_short(failed[0])) if failed else None)
    assert state.outcome is not None
    if state.leaks and state.outcome.ok:
        state.outcome, state.message = FaultOutcome.LEAKED, "leaked " + "; ".join(state.leaks)
    elif state.leaks:
        state.message += "; also leaked " + "; ".join(state.leaks)
    elif state.outcome.ok and failed:  # e.g. a fixture's check at teardown
        state.outcome, state.message = FaultOutcome.FAILED, _short(failed[0])


class _SetUpFailed(Exception):
    """Stands for a set-up failure the judge did not see as an exception (its report says what)."""

    def __str__(self) -> str:
        return f"set-up failed: {self.args[0]}"


def _fail_report(report: pytest.TestReport, text: str) -> None:
    report.outcome = "failed"
    report.longrepr = text


def run_item(item: pytest.Item, nextitem: pytest.Item | None, key: Any, point: FaultPoint | None) -> None:
    """Run ``item``'s protocol for a sweep (``point`` None) or for one point, and log the result.

    Both start with a counting run. A sweep logs one result: the counting run's, failed
    with one line per misbehaving (site, hit) and the commands that reproduce them. With
    ``point`` (``--pmemsim-fault``) the run of that point is logged as it is, so its
    traceback shows (and ``--pdb`` stops in it); a leak fails its teardown.
    """
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    with frozen_heap():
        reports = _run_all(item, nextitem, key, point)
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def _run_all(
    item: pytest.Item, nextitem: pytest.Item | None, key: Any, point: FaultPoint | None
) -> list[pytest.TestReport]:
    counting = RunState(None)
    reports = _run_once(item, nextitem, counting, key)
    if counting.outcome is not FaultOutcome.HANDLED:
        if counting.outcome is FaultOutcome.LEAKED:
            _fail_report(reports[-1], f"without any injected fault, the test {counting.message}")
    else:
        reachable = points_of(counting.hits)
        todo = reachable if point is None else [point]
        runs: list[RunState] = []
        duration = 0.0
        for i, p in enumerate(todo):
            state = RunState(p, base=counting)
            runs.append(state)
            if p not in reachable:
                state.outcome = FaultOutcome.UNREACHED
                state.message = f"the test reaches {p.site.value} {counting.hits.get(p.site, 0)} time(s)"
                continue
            # Between runs only this item's fixtures are torn down; the last run tears down
            # what the next item does not share, as a plain run would.
            after = nextitem if i == len(todo) - 1 else item.parent
            run_reports = _run_once(item, after, state, key)
            duration += sum(r.duration for r in run_reports)
            if point is not None:
                reports = run_reports
                if state.leaks:
                    _fail_report(reports[-1], f"{p}: leaked " + "; ".join(state.leaks))
        if point is None:
            _summarise(item, reports, runs, duration)
        elif runs[0].outcome is FaultOutcome.UNREACHED:
            _fail_report(next(r for r in reports if r.when == "call"), str(runs[0].line()))
    return reports


def _summarise(
    item: pytest.Item, reports: list[pytest.TestReport], runs: Sequence[RunState], duration: float
) -> None:
    """Turn the counting run's call report into the sweep's result (and attach every run's outcome)."""
    call = next((r for r in reports if r.when == "call"), None)
    if call is None:
        return
    call.duration += duration
    bad = [s for s in runs if s.outcome is not None and not s.outcome.ok]
    call.pmemsim_sweep = [  # type: ignore[attr-defined]
        {
            "site": s.point.site.value,
            "hit": s.point.hit,
            "outcome": str(s.outcome),
            "message": s.message,
            "errors": dict(s.errors),
        }
        for s in runs
        if s.point is not None and s.outcome is not None
    ]
    counts: dict[str, int] = {}
    for s in runs:
        if s.outcome is not None:
            counts[s.outcome.value] = counts.get(s.outcome.value, 0) + 1
    tally = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no fault site reached"
    head = f"fault sweep: {len(runs)} (site, hit) pair(s) driven: {tally}"
    call.sections.append(("pmemsim fault sweep", head))
    if not bad:
        return
    lines = [f"{head}; {len(bad)} misbehaved:"]
    lines += [f"  {s.line()}" for s in bad]
    lines.append(f"whole sweep: {reproduce_command(item, '--pmemsim-fault-sweep')}")
    first = bad[0].point
    assert first is not None
    lines.append(f"one (site, hit): {reproduce_command(item, f'--pmemsim-fault={first}')}")
    _fail_report(call, "\n".join(lines))
