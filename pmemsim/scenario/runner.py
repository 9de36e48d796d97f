"""Run a loaded scenario on one backend and say whether every expectation held.

Theory of operation: :func:`run_scenario` builds everything afresh — a private
directory for the source files (the user's directory is never touched), the address
space of the named backend with its occupied ranges, the fault plan, the config and
its reservation, the set — then runs the steps in order. A step with ``expect = ERROR``
must raise exactly that error and change nothing (part maps, reservations, occupied
ranges, file sizes and contents, coalescing): the runner compares a
:func:`~pmemsim.testing.ops.snapshot` taken before the call.
The first expectation that does not hold ends the run as *failed*; a Python exception
from a step that expected success (a bug in the scenario or in pmemsim) ends it as an
*error*. With a ``[crash]`` section, what the steps recorded is replayed with the
named engine and checker, and the verdict is compared with the expected one.

Every :class:`~pmemsim.PmemsetError` created during the run is counted by name
(:class:`~pmemsim.report.results.ErrorCounter`), for the error-path coverage matrix.

:func:`sweep_scenario` runs a scenario once to count the hits of every fault site (the
steps' hits; tearing down is not swept), then once per (site, hit) failing exactly that
hit (see :mod:`pmemsim.testing.fault_sweep`). The step that meets the failure must fail
with a PmemsetError and change nothing (the run ends there, *raised*), or the run must
pass as written (*handled*); no descriptor or reservation may outlive the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import CodeType
from typing import Any

from pmemsim import _files
from pmemsim._callables import CallableNotFound, load_callable
from pmemsim._files import InputFileError, read_regular_file, why_refused
from pmemsim.addrspace.backends import BACKENDS, DEFAULT_BACKENDS, SpaceOptions
from pmemsim.addrspace.backends import backend as backend_named
from pmemsim.addrspace.base import AddressSpace
from pmemsim.config import Config
from pmemsim.errors import PmemsetError
from pmemsim.faults import FaultPlan, FaultPoint, OsCall
from pmemsim.pmemset import PartDescriptor, PmemSet
from pmemsim.report.results import ErrorCounter, FaultOutcome, FaultRun, Outcome, RunKind, RunResult
from pmemsim.scenario.loader import MAX_IMAGE_BYTES, Problem, ScenarioError
from pmemsim.scenario.steps import (
    Addr,
    Check,
    CrashSpec,
    FirstPartMap,
    NextPartMap,
    PartMapByAddress,
    PartMapStep,
    Read,
    Scenario,
    SourceSpec,
    Step,
)
from pmemsim.source import Source
from pmemsim.testing.ops import Executor, Snapshot, Unresolved, snapshot

__all__ = ["BACKENDS", "resolve_checker", "run_scenario", "sweep_scenario"]


_FAKE_ROOT = "/pmemsim-scenario"


class _Failed(Exception):
    """An expectation that did not hold."""


class _Broken(Exception):
    """The run could not be carried out (set-up failed, a step raised a non-library error)."""


class _FaultRaised(Exception):
    """A sweep run's failure made a step (or the set-up) fail cleanly: the run ends there."""


def _script_path(word: str, base: Path) -> str:
    if word == "{python}":
        return sys.executable
    candidate = base / word
    if not word.startswith("-") and candidate.is_file():
        return str(candidate.resolve())
    return word


def resolve_checker(scenario: Scenario) -> Callable[[Any], object] | list[str]:
    """The scenario's checker: the imported ``module:function``, or the program's argument list.

    For ``recover`` / ``recover_program`` it is the recovery function or program, which
    the run turns into a durable-linearizability check of what was recorded.

    A module is imported with the scenario's directory first on ``sys.path``; program
    words naming a file next to the scenario become absolute paths and ``{python}``
    becomes this interpreter. Raises ScenarioError (naming the line of the key) when the
    module, the function or the program cannot be found.
    """
    crash = scenario.crash
    if crash is None:
        raise ValueError(f"{scenario.path}: no [crash] section")
    shown = str(scenario.path)

    key = crash.judge_key
    what = "recovery" if key.startswith("recover") else "checker"

    def bad(message: str) -> ScenarioError:
        return ScenarioError(shown, [Problem(shown, crash.checker_line, f"crash.{key}", message)])

    base = scenario.path.parent
    program = crash.program if crash.program is not None else crash.recover_program
    if program is not None:
        argv = [_script_path(w, base) for w in program]
        if shutil.which(argv[0]) is None:
            raise bad(f"{what} program {program[0]!r} not found or not executable")
        return argv
    spec = crash.checker if crash.checker is not None else crash.recover
    assert spec is not None
    try:
        return load_callable(spec, search=base.resolve())
    except CallableNotFound as exc:
        raise bad(f"{what} {spec!r}: {exc}") from None


def run_scenario(
    scenario: Scenario,
    backend: str,
    *,
    seed: int | None = None,
    name: str | None = None,
    checker: Callable[[Any], object] | list[str] | None = None,
    fault: FaultPoint | None = None,
) -> RunResult:
    """Run ``scenario`` on ``backend`` ("sim" or "mmap") and return its :class:`RunResult`.

    ``seed`` overrides the ``[crash]`` seed (random engines); ``name`` is the run's name
    in the result (default: the scenario's path); ``checker`` is the resolved checker
    (default: :func:`resolve_checker`, which raises ScenarioError for a missing one).
    ``fault`` fails that one (site, hit) and judges the run as a sweep does (see
    :func:`sweep_scenario`). Never raises for a failing scenario: the outcome says what
    happened.
    """
    return _run_one(scenario, backend, seed, name, checker, fault)[0]


def sweep_scenario(
    scenario: Scenario,
    backend: str,
    *,
    seed: int | None = None,
    name: str | None = None,
    checker: Callable[[Any], object] | list[str] | None = None,
    started: Callable[[FaultPoint | None, int], None] | None = None,
    select: Callable[[list[FaultPoint]], Sequence[FaultPoint]] | None = None,
) -> list[RunResult]:
    """The plain run of ``scenario`` on ``backend``, then one run per (site, hit) its steps reach.

    Each fault run's result has ``fault`` set (site, hit, :class:`FaultOutcome`) and, when
    it misbehaved, outcome FAILED and a one-line message with the scenario line of the
    failing step. Nothing is swept when the plain run does not pass (its result is the
    only one). ``started(point, total)`` is called before each run (``point`` None for
    the plain run; ``total`` is the number of fault runs, known after it), for progress.
    ``select(points)`` picks which of the (site, hit) points to drive (default: all of
    them, in site order), for a deterministic sample. Other arguments as :func:`run_scenario`.
    """
    if started is not None:
        started(None, 0)
    plain, hits = _run_one(scenario, backend, seed, name, checker, None)
    if plain.outcome is not Outcome.PASSED:
        return [plain]
    from pmemsim.testing.fault_sweep import points_of

    points = points_of(hits)
    if select is not None:
        points = list(select(points))
    results = [plain]
    for point in points:
        if started is not None:
            started(point, len(points))
        results.append(_run_one(scenario, backend, seed, name, checker, point)[0])
    return results


def _run_one(
    scenario: Scenario,
    backend: str,
    seed: int | None,
    name: str | None,
    checker: Callable[[Any], object] | list[str] | None,
    fault: FaultPoint | None,
) -> tuple[RunResult, dict[Any, int]]:
    """One run (failing ``fault`` when given) and the hits of every site its steps made."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    shown = name if name is not None else str(scenario.path)
    if scenario.crash is not None and checker is None:
        checker = resolve_checker(scenario)
    from pmemsim.testing.fault_sweep import leaked_fds, open_fds

    started = time.perf_counter()
    outcome, message = Outcome.PASSED, ""
    run = _Run(scenario, backend, seed, checker, fault)
    raised = False
    fds = open_fds()
    with ErrorCounter() as counter:
        if scenario.fake_fs and not backend_named(backend).fake_files:
            fakes = " and ".join(b for b in DEFAULT_BACKENDS if backend_named(b).fake_files)
            outcome, message = Outcome.SKIPPED, f"fake_fs scenarios run on the {fakes} backend only"
        else:
            try:
                message = run.run()
            except _FaultRaised as exc:
                raised, message = True, str(exc)
            except _Failed as exc:
                outcome, message = Outcome.FAILED, str(exc)
            except _Broken as exc:
                outcome, message = Outcome.ERROR, str(exc)
            except Exception as exc:  # a bug in pmemsim: one broken run must not stop the others
                outcome, message = Outcome.ERROR, f"internal error: {type(exc).__name__}: {exc}"
    run.leaks += [] if scenario.fake_fs else leaked_fds(fds, open_fds())
    result = RunResult(
        name=shown,
        kind=RunKind.SCENARIO,
        backend=backend,
        outcome=outcome,
        errors=dict(sorted(counter.counts.items())),
        duration=time.perf_counter() - started,
        message=message,
    )
    if fault is not None:
        result = _fault_result(result, run, fault, raised)
    elif run.leaks and outcome is Outcome.PASSED:
        leaks = "; ".join(run.leaks)
        result = dataclasses.replace(result, outcome=Outcome.FAILED, message=f"the run leaked {leaks}")
    return result, run.hits


def _fault_result(result: RunResult, run: _Run, fault: FaultPoint, raised: bool) -> RunResult:
    """``result`` of a fault run, judged: its outcome and, for misbehaviour, the sweep's one line."""
    from pmemsim.testing.fault_sweep import SweepLine, user_frames

    fired = next((f for f in run.plan.fired if f.point == fault), None)
    if result.outcome is Outcome.SKIPPED:
        return result
    if raised:
        kind, why = FaultOutcome.RAISED, ""
    elif result.outcome is not Outcome.PASSED:
        kind, why = FaultOutcome.FAILED, " ".join(result.message.split())
    elif fired is None:
        kind, why = FaultOutcome.UNREACHED, "the run never reached this hit"
    else:
        kind, why = FaultOutcome.HANDLED, ""
    if run.leaks:
        leaks = "leaked " + "; ".join(run.leaks)
        kind, why = (FaultOutcome.LEAKED, leaks) if kind.ok else (kind, f"{why}; also {leaks}")
    fault_run = FaultRun(fault.site.value, fault.hit, kind)
    if kind.ok:
        return dataclasses.replace(result, outcome=Outcome.PASSED, fault=fault_run)
    stack = user_frames(fired.stack, only=str(run.scenario.path)) if fired is not None else ()
    errno = fired.errno if fired is not None and isinstance(fault.site, OsCall) else None
    line = SweepLine(fault, kind, why, errno, stack)
    return dataclasses.replace(result, outcome=Outcome.FAILED, fault=fault_run, message=str(line))


@functools.lru_cache(maxsize=1024)
def _step_frame(path: str, line: int) -> CodeType:
    """``_call()`` compiled as if written at ``path:line`` (the code is constant; only its name varies)."""
    return compile("\n" * (line - 1) + "_call()\n", path, "exec")


def _state_change(before: Snapshot, after: Snapshot) -> str:
    """What differs between two snapshots, field by field: ``space_reservations: (...) -> (...)``."""
    changed = [
        f"{f.name}: {getattr(before, f.name)} -> {getattr(after, f.name)}"
        for f in dataclasses.fields(before)
        if getattr(before, f.name) != getattr(after, f.name)
    ]
    return "; ".join(changed)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, PmemsetError):
        return text if text.startswith(exc.name) else f"{exc.name}: {text}"
    return f"{type(exc).__name__}: {text}"


class _Run:
    """One run of one scenario on one backend: the live objects; the steps run through an Executor."""

    def __init__(
        self,
        scenario: Scenario,
        backend: str,
        seed: int | None,
        checker: Callable[[Any], object] | list[str] | None,
        fault: FaultPoint | None = None,
    ) -> None:
        self.scenario = scenario
        self.fault = fault
        self.hits: dict[Any, int] = {}
        self.leaks: list[str] = []
        self.config_rsv: Any = None
        self.backend = backend
        self.seed = seed
        self.checker = checker
        self.plan = FaultPlan()
        self.space: AddressSpace | None = None
        self.pset: PmemSet | None = None
        self.sources: dict[str, Source] = {}
        self.x: Executor | None = None  # runs the steps, once the set exists
        self.judge: Any = None  # what judged the crash states (the checker, or the recovery check)
        self.workdir = ""

    # -- life cycle ------------------------------------------------------------------------

    @staticmethod
    def _image(path: Any) -> bytes:
        # Read as the loader checked it: the file may have become a FIFO or grown since.
        try:
            return read_regular_file(path, MAX_IMAGE_BYTES, "an image")
        except (OSError, InputFileError) as exc:
            raise _Broken(f"image file {os.fspath(path)!r}: {why_refused(exc)}") from None

    def run(self) -> str:
        """Set up, run every step, check the crash verdict; return a note for passing runs."""
        with contextlib.ExitStack() as stack:
            images = {s.name: self._image(s.image) for s in self.scenario.sources if s.image is not None}
            if self.scenario.fake_fs:
                stack.enter_context(self._fake_fs())
                self.workdir = _FAKE_ROOT
                os.makedirs(self.workdir, exist_ok=True)
            else:
                self.workdir = tempfile.mkdtemp(prefix="pmemsim-scenario-")
                stack.callback(shutil.rmtree, self.workdir, True)
            stack.callback(self._teardown)
            try:
                self._setup(images)
            except _Broken as exc:
                if self._met_fault(exc):
                    raise _FaultRaised(f"{exc} (the injected fault)") from exc
                raise
            for step in self.scenario.steps:
                self._step(step)
            self.hits = dict(self.plan.hits)
            if self.x is not None:
                self.x.stop_recording()
        if self.scenario.crash is not None and self.fault is None:
            return self._crash(self.scenario.crash)
        return ""

    def _met_fault(self, exc: BaseException | None) -> bool:
        """True when the sweep's fault fired and ``exc`` (if given) is the PmemsetError that followed."""
        fired = self.fault is not None and any(f.point == self.fault for f in self.plan.fired)
        return fired and (exc is None or isinstance(exc.__cause__, PmemsetError))

    @contextlib.contextmanager
    def _fake_fs(self) -> Iterator[None]:
        try:
            from pyfakefs.fake_filesystem_unittest import Patcher
        except ImportError:
            raise _Broken(
                "fake_fs = true needs pyfakefs, which is not installed (pip install pyfakefs)"
            ) from None
        with Patcher():
            yield

    def _make_space(self) -> AddressSpace:
        spec = self.scenario.space
        options = SpaceOptions(
            page_size=spec.page_size,
            size=spec.size,
            placement=spec.placement,
            limit=spec.limit,
            supported_granularities=spec.granularities,
        )
        try:
            return backend_named(self.backend).build(options)
        except (OSError, ValueError, TypeError) as exc:
            raise _Broken(f"cannot create the {self.backend} address space: {exc}") from exc

    def _setup(self, images: dict[str, bytes]) -> None:
        scn = self.scenario
        self.space = space = self._make_space()
        for fault in scn.faults:
            self.plan.fail(fault.site, at=fault.at, every=fault.every, errno=fault.errno)
        if self.fault is not None:
            self.plan.fail(self.fault.site, at=self.fault.hit)
            self.plan.record_stacks = True
        try:
            for at, size in scn.space.occupied:
                space.occupy(space.low + at, size)
            for src in scn.sources:
                self.sources[src.name] = self._make_source(src, images.get(src.name))
            cfg = scn.config
            rsv = None
            if cfg.reservation is not None:
                addr = None if cfg.reservation_at is None else space.low + cfg.reservation_at
                rsv = self.config_rsv = space.reserve(cfg.reservation, addr)
            self.pset = PmemSet(
                Config(cfg.granularity, reservation=rsv, address_space=space, fault_plan=self.plan)
            )
            self.x = Executor(self.pset, self.sources, self.plan)
        except (PmemsetError, OSError, ValueError, MemoryError) as exc:
            raise _Broken(f"set-up failed: {_describe(exc)}") from exc

    def _make_source(self, spec: SourceSpec, image: bytes | None) -> Source:
        if spec.temporary:
            return Source.from_temporary(self.workdir, fault_plan=self.plan)
        assert spec.file is not None  # the loader checked: a file or a temporary source
        path = os.path.join(self.workdir, spec.file)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if image is not None or spec.size is not None:
            with open(path, "wb") as f:
                if image is not None:
                    f.write(image)
                else:
                    f.truncate(spec.size)
        if spec.device_granularity is not None:
            assert self.space is not None
            self.space.set_device_granularity(path, spec.device_granularity)
        if spec.flags:
            return Source.xfrom_file(path, spec.flags, fault_plan=self.plan)
        return Source.from_file(path, fault_plan=self.plan)

    def _teardown(self) -> None:
        if self.x is not None:
            self.x.close()
        if self.pset is not None:
            self.pset.close()
        for src in self.sources.values():
            src.delete()
        if self.fault is not None and self.space is not None:
            from pmemsim.testing.fault_sweep import space_leaks

            if self.config_rsv is not None and not self.config_rsv.released:
                self.space.release(self.config_rsv)  # the runner's own, not the set's
            self.leaks += space_leaks(self.space)
        if self.space is not None:
            self.space.close()

    # -- steps ------------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        assert self.pset is not None
        with _files.active_plan(None):  # looking is no fault site: hits must count the steps' calls only
            parts = list(self.x.parts.values()) if self.x is not None else []
            return snapshot(self.pset, list(self.sources.values()), parts)

    def _call(self, step: Step) -> None:
        """Run ``step``; while recording, from a frame that names the step's file and line.

        The recorder attributes each store to the innermost frame outside pmemsim (the
        user's call site). Here every frame is pmemsim's, so a minimal trace would name
        the runner or runpy; run through a one-line code object compiled under the
        scenario's path and the step's line, it names ``scenario.toml:LINE`` instead.
        """
        if (not self.recording and self.fault is None) or step.line is None:
            self._perform(step)
            return
        exec(_step_frame(str(self.scenario.path), step.line), {"_call": lambda: self._perform(step)})

    def _perform(self, step: Step) -> None:
        """The step's operation, through the executor; then what the step expects of its result."""
        if isinstance(step, Check):
            return  # nothing to call: the expectations are checked after every step
        assert self.x is not None
        try:
            result = self.x.run(step)  # type: ignore[arg-type]  # every other step is an operation
        except Unresolved as exc:
            raise _Failed(f"{step.where()}: {exc}") from None
        if isinstance(step, PartMapStep | FirstPartMap | NextPartMap | PartMapByAddress):
            assert result is None or isinstance(result, PartDescriptor)
            self.check_descriptor(step, result)
        elif isinstance(step, Read) and step.expect_data is not None and result != step.expect_data:
            raise _Failed(f"{step.where()}: expected {step.expect_data!r}, read {result!r}")

    @property
    def recording(self) -> bool:
        """True while the steps are recorded."""
        return self.x is not None and self.x.recording

    @property
    def log(self) -> Any:
        """The store log the ``record`` step started (None before)."""
        return self.x.log if self.x is not None else None

    def _step(self, step: Step) -> None:
        """Run a step and check its expectations; in a sweep run the step meeting the fault may fail."""
        if self.fault is None or any(f.point == self.fault for f in self.plan.fired):
            self._expect(step)
            return
        before = self._snapshot()
        try:
            self._expect(step)
        except (_Failed, _Broken) as exc:
            cause = exc.__cause__
            if cause is None or not self._met_fault(exc):
                raise
            after = self._snapshot()
            if after != before:
                raise _Failed(
                    f"{step.where()}: the call failed with {_describe(cause)} (the injected fault) but "
                    f"changed the state (a failed call must change nothing): {_state_change(before, after)}"
                ) from exc
            raise _FaultRaised(f"{step.where()}: {_describe(cause)} (the injected fault)") from exc
        if step.expect is not None and self._met_fault(None):
            # The step failed as it expects, but it met the sweep's fault on the way: what
            # follows was written for the scenario's own failure, not this one.
            raise _FaultRaised(f"{step.where()}: failed with {step.expect.c_name} after the injected fault")

    def _expect(self, step: Step) -> None:
        where = step.where()
        if step.expect is None:
            try:
                self._call(step)
            except (_Failed, _Broken):
                raise
            except PmemsetError as exc:
                raise _Failed(f"{where}: expected success, got {_describe(exc)}") from exc
            except Exception as exc:
                raise _Broken(f"{where}: {_describe(exc)}") from exc
        else:
            before = self._snapshot()
            try:
                self._call(step)
            except PmemsetError as exc:
                if exc.code != step.expect:
                    raise _Failed(f"{where}: expected {step.expect.c_name}, got {_describe(exc)}") from exc
            except (_Failed, _Broken):
                raise
            except Exception as exc:
                raise _Failed(f"{where}: expected {step.expect.c_name}, got {_describe(exc)}") from exc
            else:
                raise _Failed(f"{where}: expected {step.expect.c_name}, but the call succeeded")
            after = self._snapshot()
            if after != before:
                raise _Failed(
                    f"{where}: the call failed as expected with {step.expect.c_name} but changed the "
                    f"state (a failed call must change nothing): {_state_change(before, after)}"
                )
        if step.expect_part_maps is not None:
            assert self.pset is not None
            n = len(self.pset)
            if n != step.expect_part_maps:
                got = ", ".join(f"[{d.addr - self.low:#x}, +{d.size:#x})" for d in self.pset.descriptors())
                raise _Failed(
                    f"{where}: expected {step.expect_part_maps} part map(s), found {n}"
                    + (f" (low-relative: {got})" if got else "")
                )

    @property
    def low(self) -> int:
        assert self.space is not None
        return self.space.low

    def addr(self, a: Addr, step: Step) -> int:
        assert self.x is not None
        try:
            return self.x.address(a)
        except Unresolved as exc:
            raise _Failed(f"{step.where()}: {exc}") from None

    def check_descriptor(self, step: Any, desc: PartDescriptor | None) -> None:
        if desc is None:
            if step.expect_size is not None or step.expect_addr_relative is not None:
                raise _Failed(f"{step.where()}: expected a part map, found none")
            return
        if step.expect_size is not None and desc.size != step.expect_size:
            raise _Failed(f"{step.where()}: expected size {step.expect_size:#x}, got {desc.size:#x}")
        if step.expect_addr_relative is not None:
            want = self.addr(step.expect_addr_relative, step)
            if desc.addr != want:
                raise _Failed(
                    f"{step.where()}: expected the address {step.expect_addr_relative} "
                    f"(low+{want - self.low:#x}), got low+{desc.addr - self.low:#x}"
                )

    @property
    def set(self) -> PmemSet:
        assert self.pset is not None
        return self.pset

    # -- crash --------------------------------------------------------------------------------

    def _crash(self, crash: CrashSpec) -> str:
        from pmemsim.persistence import RecoveryChecker, replay

        if self.log is None:
            raise _Broken("nothing was recorded: the 'record' step did not run")
        assert self.checker is not None  # run_scenario resolves it for a [crash] scenario
        timeout = crash.timeout if crash.timeout is not None else 60.0
        judge: Any = self.checker
        try:
            if crash.judge_key.startswith("recover"):  # durable linearizability: judge by recovery
                judge = RecoveryChecker.for_log(self.log, self.checker, timeout=timeout)
            self.judge = judge
            report = replay(
                self.log,
                judge,
                engine=crash.engine,
                markers=dict(crash.markers),
                seed=self.seed if self.seed is not None else crash.seed,
                timeout=timeout,
            )
        except (ValueError, TypeError, OSError) as exc:
            raise _Broken(f"[crash] replay failed: {type(exc).__name__}: {exc}") from exc
        verdict = "error" if report.errors else ("consistent" if report.ok else "inconsistent")
        summary = f"crash ({crash.engine}): {report.summary()}"
        if verdict != crash.expect:
            at = f" (line {crash.line})" if crash.line is not None else ""
            trace = self._minimal_trace(report, crash) if report.failures else ""
            detail = f"\n{trace}" if trace else ""
            raise _Failed(f"[crash]{at}: expected {crash.expect}, got {verdict}: {summary}{detail}")
        return summary

    def _minimal_trace(self, report: Any, crash: CrashSpec) -> str:
        """The first failure shrunk to its minimal source-annotated trace (what crash_check prints)."""
        from pmemsim.persistence import ShrinkError, shrink

        failure = report.failures[0]
        assert self.judge is not None
        try:
            timeout = crash.timeout if crash.timeout is not None else 60.0
            return str(shrink(self.log, failure, self.judge, timeout=timeout))
        except (ShrinkError, ValueError, TypeError, OSError) as exc:
            return f"{failure.describe()}\n(not shrunk: {exc})"
