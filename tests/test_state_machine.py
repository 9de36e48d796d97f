"""The shipped state machine: it passes on the real core, and it catches planted bugs.

``TestPmemsetMachine`` runs at least 200 examples on the simulator (more under the
``long`` profile). The mutation tests plant one bug at a time (monkeypatched, so only
inside that test) and require the machine to find it: proof that its invariants and
its model can fail.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import HypothesisException
from hypothesis.stateful import run_state_machine_as_test

from pmemsim import Coalescing
from pmemsim.addrspace.base import Reservation
from pmemsim.pmemset import PmemSet
from pmemsim.testing import PmemsetStateMachine

_BASE = settings(
    deadline=None,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class SimMachine(PmemsetStateMachine):
    """The machine as shipped: a small simulator with 256-byte pages."""


TestPmemsetMachine = SimMachine.TestCase
TestPmemsetMachine.settings = settings(_BASE, max_examples=max(200, settings.default.max_examples))


class MmapMachine(PmemsetStateMachine):
    """The same machine on real mappings (kernel page size)."""

    backend = "mmap"
    page_size = 4096


@pytest.mark.skipif(sys.platform != "linux", reason="the mmap backend is Linux-only")
def test_machine_on_mmap_backend():
    run_state_machine_as_test(MmapMachine, settings=settings(_BASE, max_examples=25))


def test_subclass_can_add_rules():
    """A user's subclass adds its own rule on top of the machine's and keeps the byte model current."""
    from hypothesis import strategies as st
    from hypothesis.stateful import precondition, rule

    class Stamping(PmemsetStateMachine):
        @precondition(lambda self: self.pset is not None and self.model.maps)
        @rule(byte=st.integers(0, 255))
        def stamp_first_byte(self, byte: int) -> None:
            assert self.pset is not None
            addr = self.pset.descriptors()[0].addr
            self.pset.memset(addr, byte, 1)
            self.expect_write(addr, bytes([byte]))

    run_state_machine_as_test(Stamping, settings=settings(_BASE, max_examples=20))


# -- planted bugs -------------------------------------------------------------------------------

Patch = Callable[[str, object], None]


def _full_falls_through(mp: pytest.MonkeyPatch) -> None:
    """FULL coalescing falls back to a new placement instead of CANNOT_COALESCE_PARTS."""
    orig = PmemSet._step_place

    def mutant(self: PmemSet, length: int, undo: list[Callable[[], None]]) -> object:
        if self._coalescing is Coalescing.FULL:
            self._coalescing = Coalescing.OPPORTUNISTIC
            try:
                return orig(self, length, undo)
            finally:
                self._coalescing = Coalescing.FULL
        return orig(self, length, undo)

    mp.setattr(PmemSet, "_step_place", mutant)


def _opportunistic_is_full(mp: pytest.MonkeyPatch) -> None:
    """OPPORTUNISTIC coalescing refuses like FULL instead of falling through."""
    orig = PmemSet._step_place

    def mutant(self: PmemSet, length: int, undo: list[Callable[[], None]]) -> object:
        if self._coalescing is Coalescing.OPPORTUNISTIC:
            self._coalescing = Coalescing.FULL
            try:
                return orig(self, length, undo)
            finally:
                self._coalescing = Coalescing.OPPORTUNISTIC
        return orig(self, length, undo)

    mp.setattr(PmemSet, "_step_place", mutant)


def _placement_ignores_mappings(mp: pytest.MonkeyPatch) -> None:
    """Placement inside a configured reservation ignores the part maps already there."""
    mp.setattr(Reservation, "first_fit", lambda self, length: self.addr if length <= self.size else None)


def _anchor_falls_back_to_first(mp: pytest.MonkeyPatch) -> None:
    """Removing the anchor makes the lowest part map the anchor (the contract: the previous neighbour)."""
    orig = PmemSet._forget

    def mutant(self: PmemSet, rec: object) -> None:
        was_anchor = self._anchor is rec
        orig(self, rec)  # type: ignore[arg-type]
        descs = self.descriptors()
        if was_anchor and descs:
            self._anchor = self._find(descs[0].addr)

    mp.setattr(PmemSet, "_forget", mutant)


def _truncate_not_undone(mp: pytest.MonkeyPatch) -> None:
    """A failed part_map leaves a TRUNCATE_IF_NEEDED source grown."""
    orig = PmemSet._step_truncate

    def mutant(self: PmemSet, source: object, offset: int, length: int, undo: list[object]) -> None:
        orig(self, source, offset, length, [])  # type: ignore[arg-type]

    mp.setattr(PmemSet, "_step_truncate", mutant)


def _reservations_not_tidied(mp: pytest.MonkeyPatch) -> None:
    """Removing part maps never shrinks or releases the set's own reservations."""
    mp.setattr(PmemSet, "_tidy_reservation", lambda self, rsv: None)


MUTANTS = [
    _full_falls_through,
    _opportunistic_is_full,
    _placement_ignores_mappings,
    _anchor_falls_back_to_first,
    _truncate_not_undone,
    _reservations_not_tidied,
]


@pytest.mark.parametrize("plant", MUTANTS, ids=lambda f: f.__name__.strip("_"))
def test_machine_finds_planted_bug(
    plant: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch
):
    plant(monkeypatch)
    hunt = settings(
        _BASE,
        max_examples=1000,  # stops at the first failure: each is found within the first ~100
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # finding is what matters; shrinking only costs time
        report_multiple_bugs=False,
    )
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(Exception) as info:
        run_state_machine_as_test(SimMachine, settings=hunt)
    assert not isinstance(info.value, HypothesisException), (
        f"the machine did not find the bug: {info.value!r}"
    )
    assert isinstance(info.value, AssertionError), f"found, but as a crash of the machine: {info.value!r}"
