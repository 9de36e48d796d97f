"""The pmemsim pytest plugin: fixtures, the ``pmemsim`` marker and ``--pmemsim-*`` options.

Registered through the ``pytest11`` entry point, so it is loaded in every pytest run of
every project that has pmemsim installed: importing it costs nothing but pytest and
the standard library. pmemsim itself is imported by the fixtures that need it.

Fixtures: ``pmem_space`` (a fresh address space: the simulator, or real mmap with
``--pmemsim-backend=mmap``, or both as two parametrised runs with ``both``),
``pmemset`` (a PAGE-granularity set on it, closed and checked for consistency and
leaks at teardown), ``fault_plan`` (the set's FaultPlan, also used by every Source the
test opens without a plan of its own; a planned failure that never fired fails the test
at teardown), ``pmem_file`` (a zero-filled file on ``tmp_path``, or in pyfakefs' file
system when the test also uses ``fs``; on a regular-file device unless the marker says
``device="dax"``), ``make_pmem_file`` (more of those), ``crash_check`` (record a block,
replay its crash states, fail with the minimal trace).

Marker: ``@pytest.mark.pmemsim(backend=, page_size=, coalescing=, granularity=,
file_size=, device=, allow_unfired_faults=, fault_sweep=)`` configures those fixtures for
one test, class or module (the closest marker wins per key). Unknown keys and bad values
stop the run with a usage error.

Fault sweeps: ``fault_sweep=True`` (or ``--pmemsim-fault-sweep`` for every test that uses
``fault_plan``) runs the test once to count the hits of every fault site, then once per
(site, hit) failing exactly that hit (:mod:`pmemsim.testing.fault_sweep`); the
``fault_sweep`` fixture says what the test wants done with the failures.
``--pmemsim-fault=SITE@HIT`` runs the tests with that one failure.

``--pmemsim-report FILE`` writes one record per test (outcome, backend, the PmemsetError
names raised during it) in the results format ``pmemsim report`` reads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pmemsim.addrspace.backends import BACKENDS as _BACKENDS
from pmemsim.addrspace.backends import DEFAULT_BACKENDS as _DEFAULT_BACKENDS
from pmemsim.addrspace.backends import SpaceOptions, backend

if TYPE_CHECKING:
    from pmemsim.addrspace.base import AddressSpace
    from pmemsim.faults import FaultPlan
    from pmemsim.persistence import Checker, Engine
    from pmemsim.pmemset import PmemSet
    from pmemsim.testing.crash import CrashCheck
    from pmemsim.testing.fault_sweep import FaultSweep

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "DEFAULT_BACKEND",
    "DEFAULT_FILE_PAGES",
    "DEVICES",
    "MARKER",
    "MARKER_KEYS",
    "OPTION_BACKEND",
    "OPTION_ENGINE",
    "OPTION_FAULT",
    "OPTION_FAULT_SWEEP",
    "OPTION_REPORT",
    "CrashCheckFactory",
    "MarkerSettings",
]

OPTION_BACKEND = "--pmemsim-backend"
OPTION_ENGINE = "--pmemsim-engine"
OPTION_REPORT = "--pmemsim-report"
OPTION_STRICT = "--pmemsim-strict-crash"
OPTION_FAULT_SWEEP = "--pmemsim-fault-sweep"
OPTION_FAULT = "--pmemsim-fault"
MARKER = "pmemsim"
#: Keys the ``pmemsim`` marker accepts.
MARKER_KEYS = (
    "backend",
    "page_size",
    "coalescing",
    "granularity",
    "file_size",
    "device",
    "allow_unfired_faults",
    "fault_sweep",
)
#: The ``device`` marker values and the store granularity of the device each stands for
#: (a Granularity value): a regular file is made durable a page at a time (msync), a DAX
#: device of persistent memory a cache line at a time (CLWB + SFENCE), and a DAX device
#: with eADR needs no flush at all (stores are durable once globally visible).
DEVICES: dict[str, int] = {"file": 2, "dax": 1, "dax_eadr": 0}
BACKENDS = _BACKENDS  # the registered backend names (pmemsim.addrspace.backends)
BACKEND_CHOICES = (*BACKENDS, "both")
DEFAULT_BACKEND = "sim"
#: ``pmem_file`` is this many pages long unless the marker gives ``file_size``.
DEFAULT_FILE_PAGES = 64
_DEFAULT_PAGE = 4096
# Address space set aside by each mmap-backed pmem_space (PROT_NONE, no memory).
_REAL_ARENA = 1 << 32

_BACKEND_KEY = pytest.StashKey[str]()
# The outcome of each phase of a test, for teardown checks that must stay quiet after a failure.
_PHASE_KEY = pytest.StashKey[dict[str, str]]()
# The run of a fault sweep in progress (a pmemsim.testing.fault_sweep.RunState).
_SWEEP_KEY = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pmemsim", "pmemsim persistent-memory testbed")
    group.addoption(
        OPTION_BACKEND,
        choices=BACKEND_CHOICES,
        default=DEFAULT_BACKEND,
        help="address space behind the pmem_space fixture: sim (default), mmap, "
        "or both (each test runs twice)",
    )
    group.addoption(
        OPTION_ENGINE,
        default=None,
        metavar="NAME",
        help="default crash-state engine of the crash_check fixture (default Exhaustive; e.g. ReorderFull)",
    )
    group.addoption(
        OPTION_STRICT,
        action="store_true",
        help="a crash_check that was not exhaustive (a sampling engine, an epoch over max_states) "
        "fails the test instead of warning",
    )
    group.addoption(
        OPTION_FAULT_SWEEP,
        action="store_true",
        help="fault-sweep every test that uses fault_plan (directly or through pmemset or fault_sweep): "
        "one run per hit of every fault site it reaches, failing that hit",
    )
    group.addoption(
        OPTION_FAULT,
        default=None,
        metavar="SITE@HIT",
        help="run the tests that use fault_plan with one failure, judged as in a sweep (e.g. os.msync@3)",
    )
    group.addoption(
        OPTION_REPORT,
        default=None,
        metavar="FILE",
        help="write one result per test (outcome, backend, PmemsetErrors raised) as pmemsim results JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}({', '.join(f'{k}=...' for k in MARKER_KEYS)}): configure the pmemsim fixtures "
        "(backend sim|mmap|both, page size, coalescing mode, required granularity, pmem_file size)",
    )
    engine = config.getoption(OPTION_ENGINE)
    if engine is not None:
        from pmemsim.persistence import engine_from_name

        try:
            engine_from_name(engine)
        except ValueError as exc:
            raise pytest.UsageError(f"{OPTION_ENGINE}: {exc}") from None
    point = config.getoption(OPTION_FAULT)
    if point is not None:
        if config.getoption(OPTION_FAULT_SWEEP):
            raise pytest.UsageError(
                f"{OPTION_FAULT} runs one failure: it cannot go with {OPTION_FAULT_SWEEP}"
            )
        from pmemsim.faults import FaultPoint

        try:
            FaultPoint.parse(point)
        except ValueError as exc:
            raise pytest.UsageError(f"{OPTION_FAULT}: {exc}") from None
    report = config.getoption(OPTION_REPORT)
    if report is not None:
        if not report or os.path.isdir(report):
            raise pytest.UsageError(f"{OPTION_REPORT} needs a file name, got {report!r}")
        config.pluginmanager.register(_Reporter(config, os.path.abspath(report)), "pmemsim-reporter")


# -- the marker -----------------------------------------------------------------------------------


class MarkerError(ValueError):
    """A ``pmemsim`` marker with an unknown key or a bad value."""


@dataclass(frozen=True)
class MarkerSettings:
    """What the ``pmemsim`` markers of a test ask for (None: the default)."""

    backend: str | None = None
    page_size: int | None = None
    coalescing: int | None = None
    granularity: int | None = None
    file_size: int | None = None
    device: str | None = None
    allow_unfired_faults: bool = False
    fault_sweep: bool | None = None


def _enum_value(key: str, value: object, names: Mapping[str, int]) -> int:
    if isinstance(value, str):
        v = names.get(value.strip().upper().replace("-", "_"))
        if v is not None:
            return v
    elif isinstance(value, int) and not isinstance(value, bool) and value in names.values():
        return value
    raise MarkerError(f"{key}={value!r} is not one of {', '.join(n.lower() for n in names)}")


def _positive_int(key: str, value: object, *, power_of_two: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise MarkerError(f"{key}={value!r} must be a positive int")
    if power_of_two and value & (value - 1):
        raise MarkerError(f"{key}={value!r} must be a power of two")
    return value


def parse_markers(node: pytest.Item | Any) -> MarkerSettings:
    """The merged ``pmemsim`` markers of ``node`` (closest first); MarkerError when one is bad."""
    values: dict[str, object] = {}
    for mark in node.iter_markers(MARKER):
        if mark.args:
            raise MarkerError(f"takes keyword arguments only ({', '.join(MARKER_KEYS)}), got {mark.args!r}")
        unknown = sorted(set(mark.kwargs) - set(MARKER_KEYS))
        if unknown:
            raise MarkerError(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(MARKER_KEYS)}")
        for key, value in mark.kwargs.items():
            values.setdefault(key, value)
    backend = values.get("backend")
    if backend is not None and backend not in BACKEND_CHOICES:
        raise MarkerError(f"backend={backend!r} is not one of {', '.join(BACKEND_CHOICES)}")
    out: dict[str, Any] = {"backend": backend}
    if values.get("page_size") is not None:
        out["page_size"] = _positive_int("page_size", values["page_size"], power_of_two=True)
    if values.get("file_size") is not None:
        out["file_size"] = _positive_int("file_size", values["file_size"])
    if values.get("device") is not None:
        device = values["device"]
        key = device.strip().lower().replace("-", "_") if isinstance(device, str) else None
        if key not in DEVICES:
            raise MarkerError(f"device={device!r} is not one of {', '.join(DEVICES)}")
        out["device"] = key
    if values.get("allow_unfired_faults") is not None:
        allow = values["allow_unfired_faults"]
        if not isinstance(allow, bool):
            raise MarkerError(f"allow_unfired_faults={allow!r} must be True or False")
        out["allow_unfired_faults"] = allow
    if values.get("fault_sweep") is not None:
        sweep = values["fault_sweep"]
        if not isinstance(sweep, bool):
            raise MarkerError(f"fault_sweep={sweep!r} must be True or False")
        out["fault_sweep"] = sweep
    if values.get("coalescing") is not None or values.get("granularity") is not None:
        from pmemsim.enums import Coalescing, Granularity

        if values.get("coalescing") is not None:
            names = {c.name: c.value for c in Coalescing}
            out["coalescing"] = _enum_value("coalescing", values["coalescing"], names)
        if values.get("granularity") is not None:
            names = {g.name: g.value for g in Granularity}
            out["granularity"] = _enum_value("granularity", values["granularity"], names)
    return MarkerSettings(**out)


def _settings(node: Any) -> MarkerSettings:
    try:
        return parse_markers(node)
    except MarkerError as exc:  # normally reported at collection; a fixture used dynamically lands here
        pytest.fail(f"@pytest.mark.{MARKER}: {exc}", pytrace=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pmem_space" not in metafunc.fixturenames:
        return
    try:
        settings = parse_markers(metafunc.definition)
    except MarkerError:
        return  # reported as a usage error once collection is done
    backend = settings.backend or metafunc.config.getoption(OPTION_BACKEND)
    if backend == "both":
        metafunc.parametrize("pmem_space", list(_DEFAULT_BACKENDS), indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        if item.get_closest_marker(MARKER) is None:
            continue
        try:
            settings = parse_markers(item)
        except MarkerError as exc:
            problems.append(f"{item.nodeid}: @pytest.mark.{MARKER}: {exc}")
            continue
        if settings.fault_sweep and "fault_plan" not in getattr(item, "fixturenames", ()):
            problems.append(
                f"{item.nodeid}: @pytest.mark.{MARKER}(fault_sweep=True) needs the fault_plan fixture "
                "(use it, or pmemset or fault_sweep, which use it)"
            )
    if problems:
        raise pytest.UsageError("\n".join(problems))


# -- fixtures --------------------------------------------------------------------------------------


def _make_space(request: pytest.FixtureRequest, name: str, page_size: int | None) -> AddressSpace:
    entry = backend(name)
    if not entry.fake_files and "fs" in request.fixturenames:
        pytest.skip(f"the {name} backend maps real files; this test uses pyfakefs (fs)")
    if page_size is not None and page_size % entry.page_multiple:
        pytest.skip(
            f"pmemsim(page_size={page_size}) is not a multiple of the {name} backend's page "
            f"size {entry.page_multiple}"
        )
    # A backend of real mappings sets aside 4 GiB of address space (no memory) instead of
    # its default: a test run makes thousands of spaces, some of them left to the collector.
    options = SpaceOptions(page_size=page_size, size=None if entry.fake_files else _REAL_ARENA)
    try:
        return entry.build(options)
    except OSError as exc:
        pytest.skip(f"the {name} backend is not available here: {exc}")


@pytest.fixture
def pmem_space(request: pytest.FixtureRequest) -> Iterator[AddressSpace]:
    """A fresh address space: SimulatedAddressSpace unless ``--pmemsim-backend``/the marker says mmap.

    Checked for consistency (``_check()``) at teardown; an mmap space is closed.
    """
    settings = _settings(request.node)
    backend = getattr(request, "param", None) or settings.backend or request.config.getoption(OPTION_BACKEND)
    if backend == "both":  # requested dynamically, so not parametrised: use the first
        backend = BACKENDS[0]
    request.node.stash[_BACKEND_KEY] = backend
    space = _make_space(request, backend, settings.page_size)
    try:
        yield space
        try:
            space._check()
        except AssertionError as exc:
            pytest.fail(f"pmem_space is inconsistent at teardown: {exc}", pytrace=False)
        sweep = request.node.stash.get(_SWEEP_KEY, None)
        if sweep is not None:  # every fixture using the space is gone: nothing may be left in it
            from pmemsim.testing.fault_sweep import collect_garbage, space_leaks

            collect_garbage()
            sweep.leaks.extend(space_leaks(space))
    finally:
        space.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Remember each phase's outcome: teardown checks stay quiet when the test already failed."""
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(_PHASE_KEY, {})[report.when] = report.outcome


# -- fault sweeps ----------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run a swept test (marker or option) or a test under ``--pmemsim-fault`` many times."""
    if "fault_plan" not in getattr(item, "fixturenames", ()):
        return None
    try:
        settings = parse_markers(item)
    except MarkerError:
        return None  # reported as a usage error at collection
    point = item.config.getoption(OPTION_FAULT)
    sweep = item.config.getoption(OPTION_FAULT_SWEEP) or point is not None
    if settings.fault_sweep is not None:  # the marker wins: True sweeps, False opts out
        sweep = settings.fault_sweep
    if not sweep:
        return None
    from pmemsim.faults import FaultPoint
    from pmemsim.testing.fault_sweep import run_item

    run_item(item, nextitem, _SWEEP_KEY, None if point is None else FaultPoint.parse(point))
    return True


def _judged(item: pytest.Item, outcome: Any, phase: str) -> None:
    """Judge the end of a phase of a faulted run: accept the fault's error, or say what went wrong."""
    state = item.stash.get(_SWEEP_KEY, None)
    if state is None:
        return
    excinfo = outcome.excinfo
    if phase == "call" and state.plan is not None:
        state.hits = dict(state.plan.hits)  # hits after the call: the fixtures' teardown is not swept
    if state.point is None:
        return
    escaped = excinfo[1] if excinfo is not None else None
    if escaped is not None and not isinstance(escaped, Exception | pytest.fail.Exception):
        return  # a skip, an exit, an interrupt: not the code under test's doing
    if phase == "setup" and (escaped is None or state.fired is None):
        return  # the fault fires later, or the set-up failed on its own (judged from the reports)
    if state.settle(escaped):
        from pmemsim.testing.fault_sweep import forget_last_failure

        forget_last_failure()  # pytest kept the error for post-mortem debugging; it is no failure now
        if phase == "setup":
            outcome.force_exception(
                pytest.skip.Exception(f"{state.point}: {escaped} escaped a fixture's set-up, as allowed")
            )
        else:
            outcome.force_result(None)
        return
    if state.outcome.ok:
        return
    line = str(state.line())
    if escaped is None:
        outcome.force_exception(pytest.fail.Exception(f"pmemsim fault sweep: {line}", pytrace=False))
    else:
        escaped.add_note(f"pmemsim fault sweep: {line}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    _judged(item, outcome, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    _judged(item, outcome, "call")


@pytest.fixture
def fault_sweep(fault_plan: FaultPlan, request: pytest.FixtureRequest) -> FaultSweep:
    """What this run of a fault-swept test fails (``.point``) and what the test wants done with it.

    ``fault_sweep.expect_handled(*sites)``: a failure at those sites (all when none are
    named) must be handled, the test passes; ``fault_sweep.expect_raised(*sites)``: its
    PmemsetError must escape the test; undeclared sites accept either.
    ``fault_sweep.fail_with("os.msync", errno.ENOSPC)`` picks an OS-level site's errno.
    Outside a sweep the calls have no effect and ``.point`` is None.
    """
    from pmemsim.testing.fault_sweep import FaultSweep

    return FaultSweep(request.node.stash.get(_SWEEP_KEY, None))


#: The Source constructors that take a ``fault_plan``; ``from_file`` goes through ``xfrom_file``.
_SOURCE_CONSTRUCTORS = ("xfrom_file", "from_temporary", "from_fd")


@contextlib.contextmanager
def _sources_default_to(plan: FaultPlan) -> Iterator[None]:
    """While active, a Source opened without a fault plan of its own uses ``plan``.

    The ``alloc.source`` site lives in the Source constructors, which take the plan as an
    argument: code under test opens its sources itself (``Source.from_file(path)``) and
    cannot be asked to pass the test's plan, so the fixture supplies it as the default.
    """
    from pmemsim.source import Source

    originals = {name: Source.__dict__[name] for name in _SOURCE_CONSTRUCTORS}

    def with_plan(original: Any) -> Any:
        func = original.__func__

        def construct(cls: Any, *args: Any, fault_plan: FaultPlan | None = None, **kwargs: Any) -> Any:
            return func(cls, *args, fault_plan=plan if fault_plan is None else fault_plan, **kwargs)

        wrapped: Any = functools.wraps(func)(construct)  # keeps the name and docstring for help()
        return classmethod(wrapped)

    for name, original in originals.items():
        setattr(Source, name, with_plan(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(Source, name, original)


def _watched_plan_class() -> type[FaultPlan]:
    """A FaultPlan that remembers what was armed and everything that ever fired (built lazily)."""
    from pmemsim.faults import FaultPlan, FaultSite, FiredFault

    @dataclass
    class WatchedFaultPlan(FaultPlan):
        """The ``fault_plan`` fixture's plan: a FaultPlan that can tell which planned failures never fired."""

        _armed: list[tuple[FaultSite, int | None]] = field(default_factory=list, repr=False, compare=False)
        _ever_fired: list[FiredFault] = field(default_factory=list, repr=False, compare=False)

        def fail(
            self,
            site: FaultSite | str,
            *,
            at: int | None = None,
            every: bool = False,
            errno: int | None = None,
        ) -> FaultPlan:
            super().fail(site, at=at, every=every, errno=errno)  # validates first
            self._armed.append((FaultSite(site), None if every else (at if at is not None else 1)))
            return self

        def hit(self, site: FaultSite | str) -> FiredFault | None:
            fault = super().hit(site)
            if fault is not None:
                self._ever_fired.append(fault)  # kept across reset()
            return fault

        def unfired(self) -> list[str]:
            """The planned failures that never fired, described for a test failure."""
            out = []
            for site, at in self._armed:
                if at is None:
                    if not any(f.site is site for f in self._ever_fired):
                        out.append(f"{site.value} (every hit; reached {self.hits.get(site, 0)} time(s))")
                elif not any(f.site is site and f.hit == at for f in self._ever_fired):
                    out.append(f"{site.value} at hit {at} (reached {self.hits.get(site, 0)} time(s))")
            return out

    WatchedFaultPlan.__qualname__ = "WatchedFaultPlan"  # its repr in failure output, not the factory's locals
    return WatchedFaultPlan


@pytest.fixture
def fault_plan(request: pytest.FixtureRequest) -> Iterator[FaultPlan]:
    """The set's FaultPlan; arm it with ``fail``/``fail_next``.

    The ``pmemset`` fixture's set uses it, and so does every Source the test opens without
    a plan of its own (``Source.from_file``, ``xfrom_file``, ``from_temporary``,
    ``from_fd``), so ``alloc.source`` can be armed too. A planned failure that never fired
    fails the test at teardown: the error path it was meant to test was not reached.
    ``@pytest.mark.pmemsim(allow_unfired_faults=True)`` opts out (e.g. for a plan shared by
    parametrised cases that do not all reach the site).
    """
    settings = _settings(request.node)
    plan = _watched_plan_class()()
    sweep = request.node.stash.get(_SWEEP_KEY, None)
    if sweep is not None:
        sweep.arm(plan)
    with _sources_default_to(plan):
        yield plan
    phases = request.node.stash.get(_PHASE_KEY, {})
    if settings.allow_unfired_faults or phases.get("call") != "passed":
        return
    if sweep is not None and sweep.point is not None:
        return  # the sweep's failure changed the test's path: what it armed may not be reached
    unfired = plan.unfired()  # type: ignore[attr-defined]
    if unfired:
        pytest.fail(
            f"fault_plan: planned failure(s) never fired: {', '.join(unfired)}. The test never reached "
            f"the error path it arms; @pytest.mark.{MARKER}(allow_unfired_faults=True) allows it",
            pytrace=False,
        )


@pytest.fixture
def pmemset(
    pmem_space: AddressSpace, fault_plan: FaultPlan, request: pytest.FixtureRequest
) -> Iterator[PmemSet]:
    """A PmemSet on ``pmem_space`` with ``fault_plan`` (coalescing NONE, or the marker's).

    It requires the marker's ``granularity``, else its ``device``'s (``"dax"``:
    CACHE_LINE), else PAGE.

    At teardown the set is checked (``_check()``), closed, and must have released every
    reservation it made and unmapped every part map.
    """
    from pmemsim.config import Config
    from pmemsim.enums import Coalescing, Granularity
    from pmemsim.pmemset import PmemSet

    settings = _settings(request.node)
    if settings.granularity is not None:
        granularity = Granularity(settings.granularity)
    elif settings.device is not None:  # a set written for the device it runs on
        granularity = Granularity(DEVICES[settings.device])
    else:
        granularity = Granularity.PAGE
    pset = PmemSet(Config(granularity, address_space=pmem_space, fault_plan=fault_plan))
    if settings.coalescing is not None:
        pset.set_contiguous_part_coalescing(Coalescing(settings.coalescing))
    yield pset
    problems = _close_and_check(pset, pmem_space)
    sweep = request.node.stash.get(_SWEEP_KEY, None)
    if sweep is not None:
        sweep.leaks.extend(problems)
    if problems:
        pytest.fail("pmemset fixture at teardown: " + "; ".join(problems), pytrace=False)


def _close_and_check(pset: PmemSet, space: AddressSpace) -> list[str]:
    if pset.closed:
        return []
    problems = []
    try:
        pset._check()
    except AssertionError as exc:
        problems.append(f"the set is inconsistent: {exc}")
    own = [r for r in pset.reservations() if r is not pset.reservation]
    descs = pset.descriptors()
    pset.close()
    leaked = [r for r in own if not r.released]
    if leaked:
        problems.append(f"closing the set leaked reservation(s) {leaked}")
    still = [d for d in descs if space.mapping_at(d.addr) is not None]
    if still:
        problems.append(f"closing the set left part map(s) mapped: {still}")
    return problems


def _device_granularity(settings: MarkerSettings) -> int | None:
    """The device granularity of the fixture files (a Granularity value), None for a regular file."""
    if settings.device is not None:
        return None if settings.device == "file" else DEVICES[settings.device]
    if settings.granularity is not None and settings.granularity < DEVICES["file"]:
        return settings.granularity  # the device that satisfies what the set requires
    return None


@pytest.fixture
def make_pmem_file(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``make_pmem_file(size=None, name=None, fill=b"\\0") -> path``: a new file of ``size`` bytes.

    The default size is the marker's ``file_size``, else 64 pages of its ``page_size``
    (4096 bytes by default). Files live in ``tmp_path``, or in pyfakefs' fake file
    system when the test uses the ``fs`` fixture. They sit on a regular-file device
    (a flush makes its whole page durable) unless the marker's ``device`` says otherwise,
    or its ``granularity`` asks for a finer one (``"cache_line"``: a DAX device), so the
    ``pmemset`` fixture can always map them.
    """
    settings = _settings(request.node)
    default = settings.file_size or DEFAULT_FILE_PAGES * (settings.page_size or _DEFAULT_PAGE)
    device = _device_granularity(settings)
    if "fs" in request.fixturenames:
        import tempfile

        request.getfixturevalue("fs")
        directory = os.path.join(tempfile.gettempdir(), "pmemsim")
        os.makedirs(directory, exist_ok=True)
    else:
        directory = str(request.getfixturevalue("tmp_path"))
    counter = iter(range(1, 1 << 30))

    def make(size: int | None = None, name: str | None = None, fill: bytes = b"\0") -> str:
        n = default if size is None else size
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"make_pmem_file: size must be a non-negative int, got {size!r}")
        if not isinstance(fill, bytes) or not fill:
            raise ValueError(f"make_pmem_file: fill must be non-empty bytes, got {fill!r}")
        path = os.path.join(directory, name or f"pmem{next(counter)}.pool")
        with open(path, "wb") as f:
            if fill == b"\0":
                f.truncate(n)
            else:
                f.write((fill * (n // len(fill) + 1))[:n])
        if device is not None:
            from pmemsim.enums import Granularity

            space: AddressSpace = request.getfixturevalue("pmem_space")
            space.set_device_granularity(path, Granularity(device))
        return path

    return make


@pytest.fixture
def pmem_file(make_pmem_file: Callable[..., str]) -> str:
    """The path of a zero-filled file (64 pages, or the marker's ``file_size``), ready to map."""
    return make_pmem_file()


@dataclass
class CrashCheckFactory:
    """The ``crash_check`` fixture: ``with crash_check(checker, pset=None, engine=None, ...):``.

    Records the block on ``pset`` (default: the ``pmemset`` fixture), replays every crash
    state ``engine`` picks (default: ``--pmemsim-engine``, else Exhaustive) and fails the
    test with the minimal trace when ``checker(image)`` (or ``checker(image, ctx)``)
    rejects one, or gives no usable answer. Other keyword arguments (``markers``,
    ``seed``, ``workers``, ``model``, ``all_files``, ``timeout``, ``max_states``,
    ``allow_empty``, ``strict``: default ``--pmemsim-strict-crash``, and ``recover``
    instead of a checker: a durable-linearizability check) are those of
    :class:`pmemsim.testing.crash.CrashCheck`. A block that recorded nothing fails; a
    run that was not exhaustive warns (fails when strict). A checker that is neither
    callable nor a program command, or an unknown engine, fails the test with a
    one-line error.
    """

    request: pytest.FixtureRequest

    def __call__(
        self,
        checker: Checker | Callable[[Any], object] | str | Sequence[str] | None = None,
        *,
        pset: PmemSet | None = None,
        engine: Engine | str | None = None,
        **kwargs: Any,
    ) -> CrashCheck:
        from pmemsim.testing.crash import DEFAULT_ENGINE, CrashCheck

        if pset is None:
            pset = self.request.getfixturevalue("pmemset")
        chosen = engine or self.request.config.getoption(OPTION_ENGINE) or DEFAULT_ENGINE
        kwargs.setdefault("strict", bool(self.request.config.getoption(OPTION_STRICT)))
        try:
            check = CrashCheck(pset, checker, engine=chosen, on_failure=_fail_crash, **kwargs)
        except (TypeError, ValueError) as exc:
            pytest.fail(f"crash_check: {exc}", pytrace=False)
        return check


def _fail_crash(result: Any) -> None:
    pytest.fail(result.message(), pytrace=False)


@pytest.fixture
def crash_check(request: pytest.FixtureRequest) -> CrashCheckFactory:
    """Check crash consistency of a block: ``with crash_check(check_image): code_under_test()``."""
    return CrashCheckFactory(request)


# -- --pmemsim-report ----------------------------------------------------------------------------------


@dataclass
class _Run:
    outcome: str = "passed"
    duration: float = 0.0
    message: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    backend: str = ""
    sweep: list[dict[str, Any]] = field(default_factory=list)  # one entry per run of a fault sweep


def _short(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:  # a skip: (path, line, reason)
        return str(report.longrepr[2]).removeprefix("Skipped: ")[:500]
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr or "")
    return text.strip().splitlines()[0][:500] if text.strip() else ""


class _Reporter:
    """Counts PmemsetErrors per test (on workers too) and writes the results file (not on xdist workers)."""

    def __init__(self, config: pytest.Config, path: str) -> None:
        self.config = config
        self.path = path
        self.runs: dict[str, _Run] = {}
        self.counter: Any = None
        self.started = time.perf_counter()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        from pmemsim.report.results import ErrorCounter

        self.counter = ErrorCounter()
        with self.counter:
            yield
        self.counter = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        # Plain attributes travel with the report (also from pytest-xdist workers).
        report.pmemsim_errors = dict(self.counter.counts) if self.counter is not None else {}
        report.pmemsim_backend = item.stash.get(_BACKEND_KEY, "")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self.runs.setdefault(report.nodeid, _Run())
        run.duration += report.duration
        errors = getattr(report, "pmemsim_errors", None)
        if isinstance(errors, dict):
            run.errors = errors
        backend = getattr(report, "pmemsim_backend", "")
        if backend:
            run.backend = backend
        sweep = getattr(report, "pmemsim_sweep", None)
        if isinstance(sweep, list):
            run.sweep = sweep
        if report.failed:
            if report.when == "call":
                run.outcome = "failed"
            elif run.outcome != "failed":
                run.outcome = "error"
            run.message = run.message or _short(report)
        elif report.skipped and run.outcome == "passed":
            run.outcome = "skipped"
            run.message = run.message or _short(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the controller writes the file
        from pmemsim.report.results import FaultOutcome, FaultRun, Outcome, ResultsFile, RunKind, RunResult

        # A test that did not use pmem_space made its own address space (or used none, or the
        # process default): which backend it ran on is not known here, so it gets its own column.
        default_backend = "own"
        results = ResultsFile()
        for nodeid, run in self.runs.items():
            backend = run.backend or default_backend
            results.runs.append(
                RunResult(
                    name=nodeid,
                    kind=RunKind.TEST,
                    backend=backend,
                    outcome=Outcome(run.outcome),
                    errors=dict(run.errors),
                    duration=round(run.duration, 6),
                    message=run.message,
                )
            )
            for entry in run.sweep:  # the runs of a fault sweep, each with the (site, hit) it failed
                outcome = FaultOutcome(entry["outcome"])
                results.runs.append(
                    RunResult(
                        name=nodeid,
                        kind=RunKind.TEST,
                        backend=backend,
                        outcome=Outcome.PASSED if outcome.ok else Outcome.FAILED,
                        errors=dict(entry["errors"]),
                        message=entry["message"],
                        fault=FaultRun(entry["site"], entry["hit"], outcome),
                    )
                )
        try:
            results.write(self.path)
        except OSError as exc:
            raise pytest.UsageError(f"{OPTION_REPORT}: cannot write {self.path}: {exc}") from None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not hasattr(self.config, "workerinput"):
            terminalreporter.write_line(f"pmemsim: {len(self.runs)} test result(s) written to {self.path}")
