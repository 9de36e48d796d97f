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
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

from pmemsim._callables import CallableNotFound, load_callable
from pmemsim.addrspace.layout import LayoutAddressSpace
from pmemsim.config import Config
from pmemsim.errors import PmemsetError
from pmemsim.faults import FaultPlan
from pmemsim.pmemset import Part, PartDescriptor, PartMap, PmemSet
from pmemsim.report.results import ErrorCounter, Outcome, RunKind, RunResult
from pmemsim.scenario.loader import MAX_IMAGE_BYTES, InputRefused, Problem, ScenarioError, read_regular_file
from pmemsim.scenario.steps import (
    Addr,
    Check,
    CrashSpec,
    DeepFlush,
    Drain,
    Drop,
    FirstPartMap,
    Flush,
    Free,
    Mark,
    Memcpy,
    Memset,
    NextPartMap,
    Occupy,
    PartMapByAddress,
    PartMapStep,
    PartNew,
    Persist,
    Read,
    Record,
    RemovePartMap,
    RemoveRange,
    Scenario,
    SetCoalescing,
    SourceSpec,
    Step,
    StopRecording,
    Write,
)
from pmemsim.source import Source
from pmemsim.testing.ops import Snapshot, snapshot

__all__ = ["BACKENDS", "resolve_checker", "run_scenario"]

#: Backend names a scenario may ask for.
BACKENDS = ("sim", "mmap")

_FAKE_ROOT = "/pmemsim-scenario"


class _Failed(Exception):
    """An expectation that did not hold."""


class _Broken(Exception):
    """The run could not be carried out (set-up failed, a step raised a non-library error)."""


def _script_path(word: str, base: Path) -> str:
    if word == "{python}":
        return sys.executable
    candidate = base / word
    if not word.startswith("-") and candidate.is_file():
        return str(candidate.resolve())
    return word


def resolve_checker(scenario: Scenario) -> Callable[[Any], object] | list[str]:
    """The scenario's checker: the imported ``module:function``, or the program's argument list.

    A module is imported with the scenario's directory first on ``sys.path``; program
    words naming a file next to the scenario become absolute paths and ``{python}``
    becomes this interpreter. Raises ScenarioError (naming the line of the key) when the
    module, the function or the program cannot be found.
    """
    crash = scenario.crash
    if crash is None:
        raise ValueError(f"{scenario.path}: no [crash] section")
    shown = str(scenario.path)

    def bad(message: str) -> ScenarioError:
        key = "crash.checker" if crash.checker is not None else "crash.program"
        return ScenarioError(shown, [Problem(shown, crash.checker_line, key, message)])

    base = scenario.path.parent
    if crash.program is not None:
        argv = [_script_path(w, base) for w in crash.program]
        if shutil.which(argv[0]) is None:
            raise bad(f"checker program {crash.program[0]!r} not found or not executable")
        return argv
    assert crash.checker is not None
    try:
        return load_callable(crash.checker, search=base.resolve())
    except CallableNotFound as exc:
        raise bad(f"checker {crash.checker!r}: {exc}") from None


def run_scenario(
    scenario: Scenario,
    backend: str,
    *,
    seed: int | None = None,
    name: str | None = None,
    checker: Callable[[Any], object] | list[str] | None = None,
) -> RunResult:
    """Run ``scenario`` on ``backend`` ("sim" or "mmap") and return its :class:`RunResult`.

    ``seed`` overrides the ``[crash]`` seed (random engines); ``name`` is the run's name
    in the result (default: the scenario's path); ``checker`` is the resolved checker
    (default: :func:`resolve_checker`, which raises ScenarioError for a missing one).
    Never raises for a failing scenario: the outcome says what happened.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    shown = name if name is not None else str(scenario.path)
    if scenario.crash is not None and checker is None:
        checker = resolve_checker(scenario)
    started = time.perf_counter()
    outcome, message = Outcome.PASSED, ""
    with ErrorCounter() as counter:
        if scenario.fake_fs and backend != "sim":
            outcome, message = Outcome.SKIPPED, "fake_fs scenarios run on the sim backend only"
        else:
            try:
                message = _Run(scenario, backend, seed, checker).run()
            except _Failed as exc:
                outcome, message = Outcome.FAILED, str(exc)
            except _Broken as exc:
                outcome, message = Outcome.ERROR, str(exc)
            except Exception as exc:  # a bug in pmemsim: one broken run must not stop the others
                outcome, message = Outcome.ERROR, f"internal error: {type(exc).__name__}: {exc}"
    return RunResult(
        name=shown,
        kind=RunKind.SCENARIO,
        backend=backend,
        outcome=outcome,
        errors=dict(sorted(counter.counts.items())),
        duration=time.perf_counter() - started,
        message=message,
    )


@functools.lru_cache(maxsize=1024)
def _step_frame(path: str, line: int) -> CodeType:
    """``_call()`` compiled as if written at ``path:line`` (the code is constant; only its name varies)."""
    return compile("\n" * (line - 1) + "_call()\n", path, "exec")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, PmemsetError):
        return text if text.startswith(exc.name) else f"{exc.name}: {text}"
    return f"{type(exc).__name__}: {text}"


class _Run:
    """One run of one scenario on one backend: the live objects and the step handlers."""

    def __init__(
        self,
        scenario: Scenario,
        backend: str,
        seed: int | None,
        checker: Callable[[Any], object] | list[str] | None,
    ) -> None:
        self.scenario = scenario
        self.backend = backend
        self.seed = seed
        self.checker = checker
        self.plan = FaultPlan()
        self.space: LayoutAddressSpace | None = None
        self.pset: PmemSet | None = None
        self.sources: dict[str, Source] = {}
        self.parts: dict[str, Part] = {}
        self.descs: dict[str, PartDescriptor] = {}
        self.maps: dict[str, PartMap] = {}
        self.recording: contextlib.ExitStack | None = None
        self.log: Any = None
        self.workdir = ""

    # -- life cycle ------------------------------------------------------------------------

    @staticmethod
    def _image(path: Any) -> bytes:
        # Read as the loader checked it: the file may have become a FIFO or grown since.
        try:
            return read_regular_file(path, MAX_IMAGE_BYTES)
        except InputRefused as exc:
            raise _Broken(f"image file {os.fspath(path)!r}: {exc}") from None

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
            self._setup(images)
            for step in self.scenario.steps:
                self._step(step)
            if self.recording is not None:
                self.recording.close()
                self.recording = None
        if self.scenario.crash is not None:
            return self._crash(self.scenario.crash)
        return ""

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

    def _make_space(self) -> LayoutAddressSpace:
        spec = self.scenario.space
        try:
            if self.backend == "sim":
                from pmemsim.addrspace.simulated import DEFAULT_LOW, SimulatedAddressSpace

                return SimulatedAddressSpace(
                    spec.page_size,
                    high=None if spec.size is None else DEFAULT_LOW + spec.size,
                    placement=spec.placement,
                    limit=spec.limit,
                    supported_granularities=spec.granularities,
                )
            from pmemsim.addrspace.mmap import DEFAULT_ARENA_SIZE, MmapAddressSpace

            return MmapAddressSpace(
                DEFAULT_ARENA_SIZE if spec.size is None else spec.size,
                page_size=spec.page_size,
                placement=spec.placement,
                limit=spec.limit,
                supported_granularities=spec.granularities,
            )
        except (OSError, ValueError, TypeError) as exc:
            raise _Broken(f"cannot create the {self.backend} address space: {exc}") from exc

    def _setup(self, images: dict[str, bytes]) -> None:
        scn = self.scenario
        self.space = space = self._make_space()
        for fault in scn.faults:
            self.plan.fail(fault.site, at=fault.at, every=fault.every, errno=fault.errno)
        try:
            for at, size in scn.space.occupied:
                space.occupy(space.low + at, size)
            for src in scn.sources:
                self.sources[src.name] = self._make_source(src, images.get(src.name))
            cfg = scn.config
            rsv = None
            if cfg.reservation is not None:
                addr = None if cfg.reservation_at is None else space.low + cfg.reservation_at
                rsv = space.reserve(cfg.reservation, addr)
            self.pset = PmemSet(
                Config(cfg.granularity, reservation=rsv, address_space=space, fault_plan=self.plan)
            )
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
        if self.recording is not None:
            self.recording.close()
        for ref in self.maps.values():
            if not ref.dropped:
                ref.drop()
        if self.pset is not None:
            self.pset.close()
        for src in self.sources.values():
            src.delete()
        close = getattr(self.space, "close", None)
        if close is not None:
            close()

    # -- steps ------------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        assert self.pset is not None
        return snapshot(self.pset, list(self.sources.values()), list(self.parts.values()))

    def _call(self, handler: Callable[[_Run, Any], None], step: Step) -> None:
        """``handler(self, step)``; while recording, from a frame that names the step's file and line.

        The recorder attributes each store to the innermost frame outside pmemsim (the
        user's call site). Here every frame is pmemsim's, so a minimal trace would name
        the runner or runpy; run through a one-line code object compiled under the
        scenario's path and the step's line, it names ``scenario.toml:LINE`` instead.
        """
        if self.recording is None or step.line is None:
            handler(self, step)
            return
        exec(_step_frame(str(self.scenario.path), step.line), {"_call": lambda: handler(self, step)})

    def _step(self, step: Step) -> None:
        handler = _HANDLERS[type(step)]
        where = step.where()
        if step.expect is None:
            try:
                self._call(handler, step)
            except (_Failed, _Broken):
                raise
            except PmemsetError as exc:
                raise _Failed(f"{where}: expected success, got {_describe(exc)}") from exc
            except Exception as exc:
                raise _Broken(f"{where}: {_describe(exc)}") from exc
        else:
            before = self._snapshot()
            try:
                self._call(handler, step)
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
                    f"state (a failed call must change nothing): before {before}, after {after}"
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
        if a.base is None:
            return self.low + a.offset
        desc = self.descs.get(a.base)
        if desc is None:
            raise _Failed(f"{step.where()}: descriptor {a.base!r} was never set (its step found no part map)")
        return (desc.end if a.end else desc.addr) + a.offset

    def check_descriptor(self, step: Any, desc: PartDescriptor | None) -> None:
        if desc is None:
            if step.expect_size is not None or step.expect_addr_relative is not None:
                raise _Failed(f"{step.where()}: expected a part map, found none")
            return
        if step.name is not None:
            self.descs[step.name] = desc
        if step.expect_size is not None and desc.size != step.expect_size:
            raise _Failed(f"{step.where()}: expected size {step.expect_size:#x}, got {desc.size:#x}")
        if step.expect_addr_relative is not None:
            want = self.addr(step.expect_addr_relative, step)
            if desc.addr != want:
                raise _Failed(
                    f"{step.where()}: expected the address {step.expect_addr_relative} "
                    f"(low+{want - self.low:#x}), got low+{desc.addr - self.low:#x}"
                )

    def keep_ref(self, step: Any, ref: PartMap | None) -> None:
        desc = None if ref is None else ref.descriptor
        if ref is not None and step.name is not None and not step.drop:
            old = self.maps.get(step.name)
            if old is not None and not old.dropped:
                old.drop()
            self.maps[step.name] = ref
        elif ref is not None:
            ref.drop()
        self.check_descriptor(step, desc)

    def ref(self, step: Any) -> PartMap:
        ref = self.maps.get(step.map)
        if ref is None or ref.dropped:
            raise _Failed(
                f"{step.where()}: part-map reference {step.map!r} is not held (dropped or never taken)"
            )
        return ref

    @property
    def set(self) -> PmemSet:
        assert self.pset is not None
        return self.pset

    # -- crash --------------------------------------------------------------------------------

    def _crash(self, crash: CrashSpec) -> str:
        from pmemsim.persistence import replay

        if self.log is None:
            raise _Broken("nothing was recorded: the 'record' step did not run")
        assert self.checker is not None  # run_scenario resolves it for a [crash] scenario
        try:
            report = replay(
                self.log,
                self.checker,
                engine=crash.engine,
                markers=dict(crash.markers),
                seed=self.seed if self.seed is not None else crash.seed,
                timeout=crash.timeout if crash.timeout is not None else 60.0,
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
        assert self.checker is not None
        try:
            timeout = crash.timeout if crash.timeout is not None else 60.0
            return str(shrink(self.log, failure, self.checker, timeout=timeout))
        except (ShrinkError, ValueError, TypeError, OSError) as exc:
            return f"{failure.describe()}\n(not shrunk: {exc})"


# -- one handler per step type ------------------------------------------------------------------


def _part_new(r: _Run, s: PartNew) -> None:
    r.parts[s.name] = r.set.part_new(r.sources[s.source], s.offset, s.length)


def _part_map(r: _Run, s: PartMapStep) -> None:
    if s.part is not None:
        part = r.parts[s.part]
    else:
        assert s.source is not None
        part = r.set.part_new(r.sources[s.source], s.offset, s.length)
    r.check_descriptor(s, r.set.part_map(part))


def _set_coalescing(r: _Run, s: SetCoalescing) -> None:
    r.set.set_contiguous_part_coalescing(s.mode)


def _remove_part_map(r: _Run, s: RemovePartMap) -> None:
    r.set.remove_part_map(r.ref(s))


def _remove_range(r: _Run, s: RemoveRange) -> None:
    r.set.remove_range(r.addr(s.addr, s), s.length)


def _memcpy(r: _Run, s: Memcpy) -> None:
    r.set.memcpy(r.addr(s.addr, s), s.data, flags=s.flags)


def _memset(r: _Run, s: Memset) -> None:
    r.set.memset(r.addr(s.addr, s), s.value, s.length, s.flags)


def _write(r: _Run, s: Write) -> None:
    r.set.write(r.addr(s.addr, s), s.data)


def _read(r: _Run, s: Read) -> None:
    got = r.set.read(r.addr(s.addr, s), s.length)
    if s.expect_data is not None and got != s.expect_data:
        raise _Failed(f"{s.where()}: expected {s.expect_data!r}, read {got!r}")


def _persist(r: _Run, s: Persist) -> None:
    r.set.persist(r.addr(s.addr, s), s.length)


def _flush(r: _Run, s: Flush) -> None:
    r.set.flush(r.addr(s.addr, s), s.length)


def _deep_flush(r: _Run, s: DeepFlush) -> None:
    r.set.deep_flush(r.addr(s.addr, s), s.length)


def _drain(r: _Run, s: Drain) -> None:
    r.set.drain()


def _mark(r: _Run, s: Mark) -> None:
    r.set.mark(s.name)


def _first_part_map(r: _Run, s: FirstPartMap) -> None:
    r.keep_ref(s, r.set.first_part_map())


def _next_part_map(r: _Run, s: NextPartMap) -> None:
    r.keep_ref(s, r.set.next_part_map(r.ref(s)))


def _part_map_by_address(r: _Run, s: PartMapByAddress) -> None:
    r.keep_ref(s, r.set.part_map_by_address(r.addr(s.addr, s)))


def _drop(r: _Run, s: Drop) -> None:
    r.ref(s).drop()


def _occupy(r: _Run, s: Occupy) -> None:
    assert r.space is not None
    r.space.occupy(r.addr(s.addr, s), s.size)


def _free(r: _Run, s: Free) -> None:
    assert r.space is not None
    r.space.free(r.addr(s.addr, s))


def _record(r: _Run, s: Record) -> None:
    stack = contextlib.ExitStack()
    r.log = stack.enter_context(r.set.record())
    r.recording = stack


def _stop_recording(r: _Run, s: StopRecording) -> None:
    if r.recording is not None:
        r.recording.close()
        r.recording = None


def _check(r: _Run, s: Check) -> None:
    """Nothing to call: the expectations are checked after every step."""


_HANDLERS: dict[type[Step], Callable[[_Run, Any], None]] = {
    PartNew: _part_new,
    PartMapStep: _part_map,
    SetCoalescing: _set_coalescing,
    RemovePartMap: _remove_part_map,
    RemoveRange: _remove_range,
    Memcpy: _memcpy,
    Memset: _memset,
    Write: _write,
    Read: _read,
    Persist: _persist,
    Flush: _flush,
    DeepFlush: _deep_flush,
    Drain: _drain,
    Mark: _mark,
    FirstPartMap: _first_part_map,
    NextPartMap: _next_part_map,
    PartMapByAddress: _part_map_by_address,
    Drop: _drop,
    Occupy: _occupy,
    Free: _free,
    Record: _record,
    StopRecording: _stop_recording,
    Check: _check,
}
