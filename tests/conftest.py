"""Shared fixtures: address spaces per backend, sized files, set factories; hypothesis profiles.

Helpers that test modules import (PAGE, make_space, snapshot) live in ``support.sets``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from support.sets import BACKENDS, make_space

from pmemsim import Config, FaultPlan, Granularity, PmemSet, Reservation
from pmemsim.addrspace import AddressSpace

# "ci" is derandomized: every CI run explores the same examples, so a green run stays
# green; "dev" and "long" draw new examples each run to keep finding new cases.
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test ("sim", later also "mmap")."""
    return str(request.param)


@pytest.fixture
def space(backend: str) -> Iterator[AddressSpace]:
    """A fresh address space of the backend under test, checked for consistency at teardown."""
    sp = make_space(backend)
    yield sp
    sp._check()
    sp.close()


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., str]:
    """``make_file(size, name=None, fill=b"\\0")`` creates a file of ``size`` bytes; returns its path."""
    counter = iter(range(1_000_000))

    def make(size: int, name: str | None = None, fill: bytes = b"\0") -> str:
        path = tmp_path / (name or f"part{next(counter)}.pmem")
        with open(path, "wb") as f:
            if fill == b"\0":
                f.truncate(size)
            else:
                f.write((fill * (size // len(fill) + 1))[:size])
        return str(path)

    return make


@pytest.fixture
def make_set(space: AddressSpace) -> Iterator[Callable[..., PmemSet]]:
    """``make_set(granularity=PAGE, reservation=None, fault_plan=None, event_callback=None)``.

    Every set made is checked (``_check``) and closed at teardown.
    """
    made: list[PmemSet] = []

    def make(
        granularity: Granularity = Granularity.PAGE,
        *,
        reservation: Reservation | None = None,
        fault_plan: FaultPlan | None = None,
        event_callback: Any = None,
    ) -> PmemSet:
        cfg = Config(
            granularity,
            reservation=reservation,
            event_callback=event_callback,
            address_space=space,
            fault_plan=fault_plan,
        )
        pset = PmemSet(cfg)
        made.append(pset)
        return pset

    yield make
    for pset in made:
        if not pset.closed:
            pset._check()
        pset.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The per-test ceiling of pyproject.toml is for the default run; `slow` runs (long
    # explorations, the sdist's whole suite) take as long as they take.
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(0))


#: Seconds after which a test's threads are all printed, before pytest-timeout's ceiling fails it.
_STACKS_AFTER = float(os.environ.get("PMEMSIM_TEST_STACKS_AFTER", "270"))


def _terminal_fd(config: pytest.Config) -> int:
    """The standard error pytest started with (captured output would never show for a hung test)."""
    import sys

    capman = config.pluginmanager.getplugin("capturemanager")
    saved = getattr(getattr(getattr(capman, "_global_capturing", None), "err", None), "targetfd_save", None)
    return saved if isinstance(saved, int) else (sys.__stderr__ or sys.stderr).fileno()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # faulthandler prints from a thread of its own that needs no interpreter lock: a test stuck
    # in C code, or whose failure the ceiling's exception cannot deliver, still shows where it is.
    import faulthandler

    armed = item.get_closest_marker("slow") is None
    if armed:
        faulthandler.dump_traceback_later(_STACKS_AFTER, file=_terminal_fd(item.config))
    try:
        yield
    finally:
        if armed:
            faulthandler.cancel_dump_traceback_later()
