"""The crash engine against an independent brute-force oracle of the x86 crash model.

The first half checks the oracle itself (``support.x86_oracle``) on cases worked out by
hand; the second half checks that Exhaustive judges exactly the oracle's (image, markers)
pairs, once each, on random logs (``support.logs``), under ADR, eADR and a page-like
flush unit, and that pmreorder's engines never judge an in-model pair Exhaustive skips.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from support.logs import store_logs
from support.x86_oracle import (
    EADR,
    CrashPoint,
    Image,
    OracleModel,
    State,
    crash_images,
    crash_points,
    crash_states,
    images_at,
    is_crash_set,
    max_in_flight,
    split_store,
)

from pmemsim.persistence import (
    CallableChecker,
    CrashReport,
    Fence,
    FileInfo,
    Flush,
    Marker,
    PersistencyModel,
    Platform,
    Record,
    Store,
    StoreLog,
    replay,
)

ADR = OracleModel()
PAGE256 = OracleModel(flush_unit=256)


def word(value: int) -> bytes:
    """An 8-byte little-endian word."""
    return struct.pack("<Q", value)


def one_file(*records: Record, size: int = 128) -> StoreLog:
    """A log of ``records`` on one all-zero file ``f`` of ``size`` bytes."""
    return StoreLog(list(records), {"f": FileInfo("f", None, size)})


def image(size: int = 128, **writes: bytes) -> Image:
    """A one-file image of zeros with ``writes`` (``at_OFFSET=data``) applied."""
    buf = bytearray(size)
    for name, data in writes.items():
        offset = int(name.removeprefix("at_"))
        buf[offset : offset + len(data)] = data
    return (bytes(buf),)


def point(log: StoreLog, prefix: int, model: OracleModel = ADR) -> CrashPoint:
    """The crash point after ``log.records[:prefix]``."""
    return list(crash_points(log, model))[prefix]


def at(log: StoreLog, prefix: int, model: OracleModel = ADR) -> frozenset[Image]:
    """The images a crash after ``log.records[:prefix]`` can leave."""
    return images_at(point(log, prefix, model), list(log.files))


# --- The oracle on hand-checked cases -------------------------------------------------------

P, G = word(0x1111111111111111), word(0x2222222222222222)  # a payload and its valid flag


def test_payload_and_flag_in_one_line_reach_media_in_program_order() -> None:
    log = one_file(Store("f", 0, P), Store("f", 56, G), Flush("f", 0, 64), Fence())
    before_fence = at(log, 3)
    assert before_fence == {image(), image(at_0=P), image(at_0=P, at_56=G)}
    assert image(at_56=G) not in before_fence  # never the flag without the payload
    payload, flag = point(log, 3).in_flight
    assert not is_crash_set([flag], [payload, flag])
    assert is_crash_set([payload], [payload, flag])
    assert at(log, 4) == {image(at_0=P, at_56=G)}
    # Over the whole log the same three images, all before any marker.
    assert crash_states(log) == {(i, ()) for i in before_fence}


def test_a_fully_written_line_has_one_image_per_prefix() -> None:
    stores = [Store("f", 8 * i, word(i + 1)) for i in range(8)]
    log = one_file(*stores, Flush("f", 0, 64), Fence())
    expected = {(b"".join(word(i + 1) for i in range(k)).ljust(128, b"\0"),) for k in range(9)}
    assert at(log, 9) == expected
    assert len(expected) == 9


def test_stores_to_two_lines_are_unordered() -> None:
    log = one_file(Store("f", 0, P), Store("f", 64, G), Flush("f", 0, 128), Fence())
    assert at(log, 3) == {image(), image(at_0=P), image(at_64=G), image(at_0=P, at_64=G)}


@pytest.mark.parametrize("nt_first", [True, False])
def test_a_nontemporal_and_a_cached_store_to_one_line_are_unordered(nt_first: bool) -> None:
    nt, cached = Store("f", 0, P, nontemporal=True), Store("f", 56, G)
    log = one_file(*([nt, cached] if nt_first else [cached, nt]), Flush("f", 0, 64), Fence())
    assert at(log, 3) == {image(), image(at_0=P), image(at_56=G), image(at_0=P, at_56=G)}


def test_nontemporal_stores_are_ordered_only_with_overlapping_bytes() -> None:
    head = b"\x77" * 4
    # A cached store over half of an NT word: never on media without the NT word under it.
    log = one_file(Store("f", 0, P, nontemporal=True), Store("f", 0, head), Flush("f", 0, 8), Fence())
    assert at(log, 3) == {image(), image(at_0=P), image(at_0=head + P[4:])}
    assert image(at_0=head) not in at(log, 3)
    # Two NT stores: the same word keeps program order, two words of one line do not.
    same = one_file(Store("f", 0, P, nontemporal=True), Store("f", 0, G, nontemporal=True))
    assert at(same, 2) == {image(), image(at_0=P), image(at_0=G)}
    apart = one_file(Store("f", 0, P, nontemporal=True), Store("f", 8, G, nontemporal=True))
    assert len(at(apart, 2)) == 4


def test_a_nontemporal_store_is_durable_at_a_fence_and_evicts_its_unit() -> None:
    log = one_file(Store("f", 0, P), Store("f", 8, G, nontemporal=True), Fence())
    assert at(log, 3) == {image(at_0=P, at_8=G)}  # the cached word left with the evicted line
    other_line = one_file(Store("f", 0, P), Store("f", 64, G, nontemporal=True), Fence())
    assert at(other_line, 3) == {image(at_64=G), image(at_0=P, at_64=G)}
    # With a 256-byte flush unit the NT store at +64 evicts the unit holding +0.
    assert at(other_line, 3, PAGE256) == {image(at_0=P, at_64=G)}


def test_stores_tear_into_8_byte_atoms() -> None:
    data = bytes(range(1, 17))
    unaligned = Store("f", 4, data)
    assert [(a.offset, a.data) for a in split_store(unaligned, 0, 0)] == [
        (4, data[:4]),
        (8, data[4:12]),
        (16, data[12:]),
    ]
    # Within one line the pieces are a chain: every prefix of the store, nothing else.
    assert at(one_file(unaligned), 1) == {image(at_4=data[:k]) for k in (0, 4, 12, 16)}
    # An aligned 16-byte store tears in two; across a line boundary the halves are unordered.
    assert at(one_file(Store("f", 0, data)), 1) == {image(), image(at_0=data[:8]), image(at_0=data)}
    across = at(one_file(Store("f", 56, data)), 1)
    assert across == {image(), image(at_56=data[:8]), image(at_64=data[8:]), image(at_56=data)}
    # An aligned 8-byte store is one atom.
    assert len(split_store(Store("f", 8, P), 0, 0)) == 1


def test_eadr_needs_no_flush_and_adr_needs_one() -> None:
    log = one_file(Store("f", 0, P), Fence())
    assert at(log, 1, EADR) == {image(), image(at_0=P)}  # in flight until the fence
    assert at(log, 2, EADR) == {image(at_0=P)}
    assert at(log, 2, ADR) == {image(), image(at_0=P)}  # a fence alone makes nothing durable
    flushed = one_file(Store("f", 0, P), Fence(), Flush("f", 0, 8), Fence())
    assert at(flushed, 4, ADR) == {image(at_0=P)}


@pytest.mark.parametrize("unit", [256, 4096])
def test_a_flush_anywhere_in_a_page_flushes_the_page(unit: int) -> None:
    log = one_file(Store("f", 0, P), Flush("f", unit - 1, 1), Fence(), size=4096)
    assert at(log, 3, OracleModel(flush_unit=unit)) == {image(4096, at_0=P)}
    # With 64-byte lines that flush misses the store's line.
    assert at(log, 3, ADR) == {image(4096), image(4096, at_0=P)}


def test_a_flush_of_no_file_or_of_another_file_flushes_nothing() -> None:
    log = StoreLog(
        [Store("f", 0, P), Flush("", 0, 64), Flush("g", 0, 64), Fence()],
        {"f": FileInfo("f", None, 64), "g": FileInfo("g", None, 64, bytes(range(64)))},
    )
    g = bytes(range(64))
    assert at(log, 4) == {(bytes(64), g), (P + bytes(56), g)}
    assert crash_images(log) == {(bytes(64), g), (P + bytes(56), g)}


def test_a_later_store_to_a_flushed_word_stays_in_flight_alone() -> None:
    log = one_file(Store("f", 0, P), Flush("f", 0, 8), Store("f", 0, G), Fence())
    # The flush came before G: only P became durable; G may or may not be over it.
    assert at(log, 4) == {image(at_0=P), image(at_0=G)}


def test_markers_are_the_section_markers_before_the_crash_point() -> None:
    names = ["TX.BEGIN;7", "note", "OP.BEGIN", "checkpoint;TX.END", "OP.END", "TX.END"]
    log = one_file(
        Marker(names[0]), Marker(names[1]), Marker(names[2]), Store("f", 0, P), Marker(names[3]),
        Marker(names[4]), Marker(names[5]),
    )  # fmt: skip
    seen = [p.markers for p in crash_points(log)]
    tx, op = "TX.BEGIN;7", "OP.BEGIN"
    assert seen == [(), (tx,), (tx,), (tx, op), (tx, op), (tx, op), (tx, op, "OP.END"),
                    (tx, op, "OP.END", "TX.END")]  # fmt: skip
    states = crash_states(log)
    assert (image(), ()) in states and (image(at_0=P), ()) not in states  # P is stored inside OP
    assert (image(at_0=P), (tx, op, "OP.END", "TX.END")) in states
    # The zero image under (), (tx,) and (tx, op); then both images under three more tuples,
    # one of which, (tx, op), the zero image already had.
    assert len(states) == 3 + 2 * 3 - 1


def test_the_oracle_refuses_too_many_atoms_in_flight() -> None:
    log = one_file(*[Store("f", 8 * i, P) for i in range(5)])
    assert max_in_flight(log) == 5
    with pytest.raises(ValueError, match="5 atoms in flight after record 5"):
        crash_states(log, max_in_flight=4)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=7, unique=True))
def test_image_count_is_the_product_of_line_prefixes(words: list[tuple[int, int]]) -> None:
    """Aligned cached words on several lines: each line independently keeps a prefix of its stores."""
    stores = [Store("f", 64 * line + 8 * w, word(i + 1)) for i, (line, w) in enumerate(words)]
    per_line = [sum(1 for line, _ in words if line == n) for n in range(8)]
    expected = 1
    for k in per_line:
        expected *= k + 1
    assert len(at(one_file(*stores, size=512), len(stores))) == expected


@settings(max_examples=50)
@given(store_logs(), st.sampled_from([ADR, EADR, PAGE256]))
def test_nothing_and_everything_in_flight_are_always_possible(log: StoreLog, model: OracleModel) -> None:
    keys = list(log.files)
    for p in crash_points(log, model):
        images = images_at(p, keys)
        assert p.base in images
        everything = list(p.base)
        for a in p.in_flight:
            i = keys.index(a.file)
            everything[i] = everything[i][: a.offset] + a.data + everything[i][a.end :]
        assert tuple(everything) in images


@settings(max_examples=50)
@given(store_logs(max_in_flight=6))
def test_random_logs_keep_their_bounds(log: StoreLog) -> None:
    """The strategy's promises: a store, a bounded number of atoms in flight, balanced sections."""
    assert any(isinstance(r, Store) for r in log.records)
    assert max_in_flight(log) <= 6
    log.validate()
    stack: list[str] = []
    for name in [r.name.split(";", 1)[0] for r in log.records if isinstance(r, Marker)]:
        if name.endswith(".BEGIN"):
            stack.append(name.removesuffix(".BEGIN"))
        elif name.endswith(".END"):
            assert stack.pop() == name.removesuffix(".END")
    assert stack == []


# --- The engine against the oracle ----------------------------------------------------------

MODELS = {
    "adr": (PersistencyModel(Platform.ADR, 64), ADR),
    "eadr": (PersistencyModel(Platform.EADR, 64), EADR),
    "page256": (PersistencyModel(Platform.ADR, 256), PAGE256),
}


def judged_states(log: StoreLog, model: PersistencyModel, engine: str) -> tuple[list[State], CrashReport]:
    """Every (image, markers) pair ``engine`` passed to a ctx checker, in call order, and the report."""
    seen: list[State] = []

    def check(images: dict[str, memoryview], ctx: object) -> None:
        seen.append((tuple(bytes(images[k]) for k in log.files), tuple(ctx.markers)))  # type: ignore[attr-defined]

    report = replay(log, CallableChecker(check, all_files=True), engine=engine, model=model, allow_empty=True)
    assert report.ok, str(report)
    return seen, report


def judged_images(log: StoreLog, model: PersistencyModel) -> tuple[list[Image], CrashReport]:
    """Every image Exhaustive passed to a checker without ctx, and the report."""
    seen: list[Image] = []

    def check(images: dict[str, memoryview]) -> None:
        seen.append(tuple(bytes(images[k]) for k in log.files))

    report = replay(
        log, CallableChecker(check, all_files=True), engine="Exhaustive", model=model, allow_empty=True
    )
    assert report.ok, str(report)
    return seen, report


def check_states(log: StoreLog, name: str) -> None:
    model, oracle_model = MODELS[name]
    expected = crash_states(log, oracle_model)
    seen, report = judged_states(log, model, "Exhaustive")
    assert set(seen) - expected == set(), "judged states outside the model"
    assert expected - set(seen) == set(), "states of the model never judged"
    assert len(seen) == len(expected), "a state judged twice"
    assert report.states_checked == len(expected)
    assert report.distinct_images == len({image for image, _ in expected})


def check_images(log: StoreLog, name: str) -> None:
    model, oracle_model = MODELS[name]
    expected = crash_images(log, oracle_model)
    seen, report = judged_images(log, model)
    assert set(seen) - expected == set(), "judged images outside the model"
    assert expected - set(seen) == set(), "images of the model never judged"
    assert len(seen) == len(expected), "an image judged twice"
    assert report.states_checked == report.distinct_images == len(expected)


PMREORDER_ENGINES = ["NoReorderDoCheck", "ReorderAccumulative", "ReorderFull"]


def check_pmreorder_engines(log: StoreLog, name: str) -> None:
    model, oracle_model = MODELS[name]
    in_model = crash_states(log, oracle_model)
    exhaustive, _ = judged_states(log, model, "Exhaustive")
    for engine in PMREORDER_ENGINES:
        theirs, _ = judged_states(log, model, engine)
        missed = (set(theirs) & in_model) - set(exhaustive)
        assert missed == set(), f"{engine} judges in-model states Exhaustive skips"


# The engine is being rewritten to this model (64-byte line order, checkers with ctx); until
# that lands these properties fail. Set ENGINE_PENDING to False when it does: the strict
# xfail turns any pass into a failure so that the switch cannot be forgotten. While pending,
# the first failing example is enough (no shrinking, to keep the suite fast).
ENGINE_PENDING = False
engine_pending = pytest.mark.xfail(ENGINE_PENDING, strict=True, reason="the engine rewrite has not landed")
PHASES = [p for p in Phase if not (ENGINE_PENDING and p in (Phase.shrink, Phase.explain))]


@engine_pending
@pytest.mark.parametrize("name", MODELS)
@settings(phases=PHASES)
@given(log=store_logs())
def test_exhaustive_judges_each_state_of_the_model_once(name: str, log: StoreLog) -> None:
    check_states(log, name)


@engine_pending
@pytest.mark.parametrize("name", MODELS)
@settings(phases=PHASES)
@given(log=store_logs())
def test_exhaustive_judges_each_image_of_the_model_once_without_markers(name: str, log: StoreLog) -> None:
    check_images(log, name)


@engine_pending
@pytest.mark.parametrize("name", MODELS)
@settings(phases=PHASES)
@given(log=store_logs(max_records=10, max_in_flight=4))
def test_pmreorder_engines_judge_no_in_model_state_that_exhaustive_skips(name: str, log: StoreLog) -> None:
    check_pmreorder_engines(log, name)


# The long variants: bigger logs, more examples. The project's pytest configuration does not
# deselect `slow` by default, so these also skip unless `-m slow` selects them.
@engine_pending
@pytest.mark.slow
@pytest.mark.skipif("'slow' not in config.getoption('markexpr')", reason="long run: select it with -m slow")
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("check", "logs"),
    [
        (check_states, store_logs(max_records=40, max_in_flight=11)),
        (check_images, store_logs(max_records=40, max_in_flight=11)),
        (check_pmreorder_engines, store_logs(max_records=16, max_in_flight=5)),
    ],
    ids=["states", "images", "pmreorder"],
)
@settings(max_examples=1000, phases=PHASES)
@given(data=st.data())
def test_long_run_against_the_oracle(
    name: str, check: Callable[[StoreLog, str], None], logs: st.SearchStrategy[StoreLog], data: st.DataObject
) -> None:
    check(data.draw(logs), name)
