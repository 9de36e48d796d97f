"""Which engine finds which bug in the known-correct and known-buggy programs of ``support.examples``.

The matrix ``FINDS`` is the contract: each engine reports exactly the bugs its definition
lets it see, and nothing on the correct versions.
"""

from __future__ import annotations

import pytest
from support.examples import BUGGY, CORRECT, DATA, FINDS, FLAG, PAYLOAD, Example, Q, check_flag, flag_program

from pmemsim.enums import Granularity
from pmemsim.persistence import (
    ENGINES,
    PersistencyModel,
    Recorder,
    ReorderPartial,
    replay,
)


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("example", CORRECT, ids=lambda e: e.name)
def test_no_false_positives(engine: str, example: Example) -> None:
    report = replay(example.log, example.check, engine=engine, allow_empty=engine == "NoReorderNoCheck")
    assert report.ok, str(report)
    assert report.errors == 0


@pytest.mark.parametrize("engine", list(FINDS))
@pytest.mark.parametrize("bug", list(BUGGY))
def test_each_engine_finds_exactly_its_bugs(engine: str, bug: str) -> None:
    example = BUGGY[bug]
    report = replay(example.log, example.check, engine=engine, allow_empty=engine == "NoReorderNoCheck")
    assert (not report.ok) == (bug in FINDS[engine]), str(report)
    for failure in report.failures:
        assert failure.engine == engine
        assert not set(failure.applied) & set(failure.lost)


@pytest.mark.parametrize("bug", list(BUGGY))
def test_reorder_partial_is_seeded_and_finds_bugs_for_some_seed(bug: str) -> None:
    example = BUGGY[bug]
    reports = [replay(example.log, example.check, engine=ReorderPartial(), seed=s) for s in range(12)]
    assert reports[3] == replay(example.log, example.check, engine="ReorderPartial", seed=3)
    found = [not r.ok for r in reports]
    # Partial samples 3 combinations per epoch: it sees every bug with some seed, not with all.
    assert any(found)
    if bug == "missing flush":
        assert all(found)  # one flushed atom per epoch: all of its (two) combinations are sampled


def test_eadr_needs_no_flush_but_still_fences() -> None:
    rec = Recorder(granularity=Granularity.BYTE)
    rec.register_file("pool", None, 4096)
    rec.store("pool", DATA, PAYLOAD)
    rec.fence()  # no flush: enough under eADR, a bug under ADR
    rec.store("pool", FLAG, Q.pack(1))
    rec.fence()
    assert replay(rec.log, check_flag).ok  # the log's granularity picks eADR
    assert replay(rec.log, check_flag, model=PersistencyModel.eadr()).ok
    adr = replay(rec.log, check_flag, model=Granularity.CACHE_LINE)
    assert not adr.ok
    # Under eADR a flag in the payload's epoch is still a bug: no order between fences.
    assert not replay(flag_program(fence_between=False), check_flag, model=Granularity.BYTE).ok


def test_page_granularity_flushes_whole_pages() -> None:
    rec = Recorder()
    rec.register_file("pool", None, 8192)
    rec.store("pool", DATA, PAYLOAD)
    rec.flush("pool", 0, 8)  # same page as the payload, different cache line
    rec.fence()
    rec.store("pool", FLAG, Q.pack(1))
    rec.persist("pool", FLAG, 8)
    assert not replay(rec.log, check_flag, model=Granularity.CACHE_LINE).ok
    assert replay(rec.log, check_flag, model=Granularity.PAGE).ok


def test_nontemporal_store_needs_only_a_fence() -> None:
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", DATA, PAYLOAD, nontemporal=True)
    rec.fence()
    rec.store("pool", FLAG, Q.pack(1))
    rec.persist("pool", FLAG, 8)
    for engine in ("Exhaustive", "ReorderFull", "NoReorderDoCheck"):
        assert replay(rec.log, check_flag, engine=engine).ok


def test_nontemporal_store_writes_back_cached_stores_of_its_line() -> None:
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", DATA, PAYLOAD[:8])  # cached, never flushed
    rec.store("pool", DATA + 8, PAYLOAD[8:], nontemporal=True)  # same line: evicts it
    rec.fence()
    rec.store("pool", FLAG, Q.pack(1))
    rec.persist("pool", FLAG, 8)
    assert replay(rec.log, check_flag).ok
