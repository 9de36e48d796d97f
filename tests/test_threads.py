"""Threads and event callbacks (issue 14, point 6).

The rule: a set may be shared by threads; every call holds the lock of the set's
address space, so calls of all the sets on one space run one at a time. Events about a
change already made (PART_ADD, PART_REMOVE) cannot turn the call into a failure.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from support.sets import PAGE

from pmemsim import (
    Config,
    ErrorCode,
    Granularity,
    MemFlags,
    Part,
    PartDescriptor,
    PmemSet,
    PmemsetError,
    Source,
    capi,
)
from pmemsim.enums import EventType
from pmemsim.events import CopyEvent, Event, PartAddEvent, PartRemoveEvent


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so interleavings really happen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run_threads(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_threads_sharing_one_set_see_only_documented_errors(make_set, make_file, busy_switching):
    pset = make_set()
    paths = [make_file(2 * PAGE, fill=bytes([65 + i])) for i in range(2)]
    sources = [Source.from_file(p) for p in paths]
    outcomes: list[str] = []

    def worker(i: int) -> Callable[[], None]:
        def run() -> None:
            for n in range(150):
                try:
                    if n % 3 == 0:
                        pset.part_map(pset.part_new(sources[i]))
                    elif n % 3 == 1:
                        for d in pset.descriptors():
                            pset.memcpy(d.addr, b"thread%d" % i, flags=MemFlags.NODRAIN)
                            pset.read(d.addr, 16)
                    else:
                        ds = pset.descriptors()
                        if ds:
                            pset.remove_range(ds[-1].addr, 1)
                    outcomes.append("ok")
                except PmemsetError as exc:
                    # The other thread removed what this one had just looked up.
                    assert exc.code == ErrorCode.CANNOT_FIND_PART_MAP, exc
                    outcomes.append(exc.name)

        return run

    assert _run_threads([worker(0), worker(1)]) == []
    assert len(outcomes) == 300 and "ok" in outcomes
    pset._check()
    pset.address_space._check()  # type: ignore[attr-defined]
    for s in sources:
        s.delete()


def test_two_sets_on_one_space_in_two_threads_keep_the_space_consistent(make_set, make_file, busy_switching):
    sets = [make_set(), make_set()]
    sources = [Source.from_file(make_file(PAGE)) for _ in range(2)]

    def worker(i: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(100):
                d = sets[i].part_map(sets[i].part_new(sources[i]))
                sets[i].memset(d.addr, i, PAGE)
                assert sets[i].read(d.addr, PAGE) == bytes([i]) * PAGE
                sets[i].remove_range(d.addr, PAGE)

        return run

    assert _run_threads([worker(0), worker(1)]) == []
    for s in sets:
        assert len(s) == 0
        s._check()
    sets[0].address_space._check()  # type: ignore[attr-defined]
    assert sets[0].address_space.reservations() == []  # type: ignore[attr-defined]
    for src in sources:
        src.delete()


def test_a_callback_may_call_back_into_its_set(make_set, make_file):
    seen: list[bytes] = []

    def callback(pset: PmemSet, event: Event) -> None:
        if isinstance(event, PartAddEvent):
            seen.append(pset.read(event.addr, 4))  # the same thread holds the lock: no deadlock

    pset = make_set(event_callback=callback)
    with Source.from_file(make_file(PAGE, fill=b"data")) as src:
        pset.part_map(pset.part_new(src))
    assert seen == [b"data"]


def test_a_callback_failing_after_the_change_does_not_fail_the_call(make_set, make_file, caplog):
    def callback(pset: PmemSet, event: Event) -> None:
        if isinstance(event, PartAddEvent | PartRemoveEvent):
            raise RuntimeError(f"callback refuses {event.type.name}")

    pset = make_set(event_callback=callback)
    with Source.from_file(make_file(PAGE)) as src, caplog.at_level(logging.WARNING, logger="pmemsim"):
        desc = pset.part_map(pset.part_new(src))
        assert pset.descriptors() == [desc]  # committed and returned
        pset.remove_range(desc.addr, PAGE)
    assert len(pset) == 0
    assert [type(e).__name__ for e, _exc in pset.callback_errors] == ["PartAddEvent", "PartRemoveEvent"]
    assert all(isinstance(exc, RuntimeError) for _e, exc in pset.callback_errors)
    assert "callback refuses PART_ADD" in caplog.text


def test_a_callback_failing_before_a_copy_stops_it_and_nothing_is_written(make_set, make_file):
    def callback(pset: PmemSet, event: Event) -> None:
        if isinstance(event, CopyEvent):
            raise RuntimeError("no copies")

    pset = make_set(event_callback=callback)
    with Source.from_file(make_file(PAGE)) as src:
        desc = pset.part_map(pset.part_new(src))
    with pytest.raises(RuntimeError, match="no copies"):
        pset.memcpy(desc.addr, b"never")
    assert pset.read(desc.addr, 5) == bytes(5)
    assert pset.callback_errors == []


def test_capi_fills_the_out_parameters_even_when_the_callback_fails(space, make_file):
    cfg = capi.Ref[Config]()
    assert capi.pmemset_config_new(cfg) == 0
    assert cfg.value is not None
    cfg.value.set_address_space(space)
    calls: list[EventType] = []

    def callback(pset: PmemSet, ctx: capi.EventContext, arg: object) -> int:
        calls.append(ctx.type)
        raise RuntimeError("bad callback")

    capi.pmemset_config_set_event_callback(cfg.value, callback, None)
    capi.pmemset_config_set_required_store_granularity(cfg.value, int(Granularity.PAGE))
    pset_ref = capi.Ref[PmemSet]()
    assert capi.pmemset_new(pset_ref, cfg.value) == 0
    pset = pset_ref.value
    assert pset is not None
    src = Source.from_file(make_file(PAGE))
    part = capi.Ref[Part]()
    assert capi.pmemset_part_new(part, pset, src, 0, 0) == 0
    desc = capi.Ref[PartDescriptor]()
    assert capi.pmemset_part_map(part, None, desc) == 0
    assert part.value is None and desc.value == pset.descriptors()[0]
    assert calls == [EventType.PART_ADD]
    pset.close()
    src.delete()
