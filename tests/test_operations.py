"""One operation vocabulary: steps are operation values, shorthands lower to them, one executor runs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.sets import PAGE

from pmemsim import (
    Config,
    ErrorCode,
    FaultSite,
    Granularity,
    PmemSet,
    PmemsetError,
    SimulatedAddressSpace,
    Source,
)
from pmemsim.scenario import STEP_TYPES
from pmemsim.scenario.steps import Check, PartMapStep
from pmemsim.testing import operations as o
from pmemsim.testing import ops
from pmemsim.testing.operations import Addr
from pmemsim.testing.ops import Executor, Unresolved


@pytest.fixture
def x(tmp_path: Path) -> Iterator[Executor]:
    path = tmp_path / "pool"
    path.write_bytes(bytes(8 * PAGE))
    src = Source.from_file(path)
    pset = PmemSet(Config(Granularity.PAGE, address_space=SimulatedAddressSpace(PAGE)))
    executor = Executor(pset, {"pool": src})
    yield executor
    executor.close()
    pset.close()
    src.delete()


def test_every_scenario_step_but_check_is_an_operation() -> None:
    for op, kind in STEP_TYPES.items():
        assert issubclass(kind, o.Operation) is (kind is not Check), op
    step = PartMapStep(source="pool", length=PAGE, name="a", line=3)
    assert isinstance(step, o.MapPart) and step.op == "part_map"


def test_named_descriptors_and_positions_address_the_same_bytes(x: Executor) -> None:
    a = x.run(o.MapPart(source="pool", length=2 * PAGE, name="a"))
    b = x.run(o.MapPart(source="pool", offset=2 * PAGE, length=PAGE, name="b"))
    assert isinstance(a, ops.PartDescriptor) and isinstance(b, ops.PartDescriptor)
    x.run(o.Memcpy(addr=Addr(8, base="b"), data=b"abc"))
    # The part maps are at positions 0 and 1 in address order; b's end minus its size is its start.
    assert x.run(o.Read(addr=Addr(8, index=1), length=3)) == b"abc"
    assert x.run(o.Read(addr=Addr(8 - PAGE, base="b", end=True), length=3)) == b"abc"
    assert x.address(Addr(b.addr - x.space.low + 8)) == b.addr + 8
    assert x.address(Addr(0, index=5)) == x.address(Addr(0, index=1))  # positions wrap around


def test_unknown_names_are_unresolved_and_dropped_references_refused_by_the_set(x: Executor) -> None:
    with pytest.raises(Unresolved, match="descriptor 'nope' was never set"):
        x.run(o.Read(addr=Addr(0, base="nope"), length=1))
    with pytest.raises(Unresolved, match="part 'p' was never made"):
        x.run(o.MapPart(part="p"))
    with pytest.raises(Unresolved, match="reference 'r' was never taken"):
        x.run(o.Drop(map="r"))
    x.run(o.MapPart(source="pool", length=PAGE, name="a"))
    x.run(o.FirstPartMap(name="r"))
    x.run(o.Drop(map="r"))
    with pytest.raises(ValueError, match="dropped"):
        x.run(o.Drop(map="r"))


def test_arm_fault_fails_the_next_hit_only(x: Executor) -> None:
    x.run(o.ArmFault(site=FaultSite.ALLOC_PART_MAP.value))
    with pytest.raises(PmemsetError) as info:
        x.run(o.MapPart(source="pool", length=PAGE))
    assert info.value.code == ErrorCode.ENOMEM
    assert x.run(o.MapPart(source="pool", length=PAGE)) is not None


def test_record_keeps_the_log_until_stopped(x: Executor) -> None:
    x.run(o.MapPart(source="pool", length=PAGE, name="a"))
    x.run(o.Record())
    assert x.recording
    x.run(o.Persist(addr=Addr(0, base="a"), length=8))
    x.run(o.StopRecording())
    assert not x.recording and x.log is not None and len(x.log.records) > 0


def test_shorthands_lower_into_operation_values() -> None:
    assert ops.Write(1, 16, b"x", 2).lower(PAGE) == o.Memcpy(addr=Addr(16, index=1), data=b"x", flags=2)
    assert ops.Occupy(0, 2).lower(PAGE) == o.Occupy(addr=Addr(0, index=0, end=True), size=2 * PAGE)
    assert ops.RemovePartMap(3).lower(PAGE) == o.RemovePartMap(map=3)
    assert ops.InjectFault("alloc.part").lower(PAGE) == o.ArmFault(site="alloc.part")
