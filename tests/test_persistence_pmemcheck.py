"""pmemcheck store-log import/export: round trips, pmreorder's quirks, malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import BUGGY, CORRECT, check_flag, check_undo

from pmemsim.persistence import (
    Fence,
    FileInfo,
    Flush,
    LogError,
    Marker,
    PmemcheckFormatError,
    Recorder,
    Store,
    StoreLog,
    dump_pmemcheck,
    dumps_pmemcheck,
    load_pmemcheck,
    loads_pmemcheck,
    plan_replay,
    replay,
)

BASE = 0x7F3A5C200000

SAMPLE = (
    "==123== pmemcheck banner\n==123== more banner\nSTART"
    f"|REGISTER_FILE;/mnt/pool;{BASE:#x};0x1000;0x0"
    f"|STORE;{BASE + 0x40:#x};0xe220a8397b1dcdaf;0x8"
    ";0x4012a7: write_payload (workload.c:41);0x4013f0: main (w.c:9)"
    f"|FLUSH;{BASE + 0x40:#x};0x40"
    "|tx.BEGIN;extra"
    f"|STORE;{BASE + 0x2:#x};0xbeef;0x2"
    f"|FLUSH;{0x1000:#x};0x40"
    "|FENCE"
    "|tx.END"
    "|STOP\n"
)


def atoms(log: StoreLog) -> list[tuple[str, int, bytes, str | None]]:
    """What a log writes, atom by atom, with file paths (keys differ across formats)."""
    plain = StoreLog(files=log.files, records=[r for r in log.records if not isinstance(r, Marker)])
    plan = plan_replay(plain)
    paths = {k: log.files[k].path or k for k in plan.keys}
    return [(paths[a.file], a.offset, a.data, plain.records[a.record].location) for a in plan.atoms]  # type: ignore[union-attr]


def epochs(log: StoreLog) -> list[tuple[list[int], list[int]]]:
    """Per epoch: offsets in flight and offsets made durable (markers dropped)."""
    plain = StoreLog(files=log.files, records=[r for r in log.records if not isinstance(r, Marker)])
    plan = plan_replay(plain)
    return [([a.offset for a in e.inflight], [a.offset for a in e.flushed]) for e in plan.epochs]


def test_sample_log_imports_with_pmreorder_semantics() -> None:
    log = loads_pmemcheck(SAMPLE)
    info = log.files["/mnt/pool"]
    assert (info.path, info.size, info.base) == ("/mnt/pool", 0x1000, BASE)
    store, flush, begin, small, outside, fence, end = log.records
    assert store == Store(
        "/mnt/pool",
        0x40,
        (0xE220A8397B1DCDAF).to_bytes(8, "little"),
        BASE + 0x40,
        "workload.c:41",
        False,
        ("0x4012a7: write_payload (workload.c:41)", "0x4013f0: main (w.c:9)"),
    )
    assert flush == Flush("/mnt/pool", 0x40, 0x40, BASE + 0x40)
    assert begin == Marker("tx.BEGIN;extra") and begin.section == "tx"
    assert isinstance(small, Store) and small.data == b"\xef\xbe" and small.offset == 2
    assert outside == Flush("", 0x1000, 0x40, 0x1000)  # no registered file, still ends the epoch
    assert fence == Fence() and end == Marker("tx.END")


def test_export_then_import_then_export_is_identity() -> None:
    for example in [*CORRECT, *BUGGY.values()]:
        text = dumps_pmemcheck(example.log)
        again = loads_pmemcheck(text)
        assert dumps_pmemcheck(again) == text
        assert atoms(again) == [(f"{p}", o, d, loc) for p, o, d, loc in atoms(example.log)]


def test_imported_export_gives_the_same_verdicts(tmp_path: Path) -> None:
    for example, check in [(BUGGY["undo valid flag not fenced"], check_undo), (CORRECT[0], check_flag)]:
        path = tmp_path / "log.txt"
        dump_pmemcheck(example.log, path)
        imported = load_pmemcheck(path)
        (key,) = imported.files
        initial = example.log.files["pool"].initial or bytes(example.log.files["pool"].size)
        for engine in ("ReorderFull", "ReorderAccumulative", "NoReorderDoCheck", "Exhaustive"):
            a = replay(example.log, example.check, engine=engine)
            b = replay(imported, check, engine=engine, images={key: initial})
            assert (a.states_checked, a.inconsistent, a.distinct_images) == (
                b.states_checked,
                b.inconsistent,
                b.distinct_images,
            )


def test_export_splits_stores_into_atoms_and_widens_flushes() -> None:
    rec = Recorder()
    rec.register_file("k", "/pool", 256)
    rec.store("k", 4, bytes(range(12)), location="a.py:3")
    rec.flush("k", 70, 2)
    rec.store("k", 128, b"\x01" * 8, nontemporal=True)
    rec.fence()
    rec.mark("note")
    text = dumps_pmemcheck(rec.log)
    base = 0x7F0000000000
    assert text == (
        f"START|REGISTER_FILE;/pool;{base:#x};0x100;0x0"
        f"|STORE;{base + 4:#x};0x3020100;0x4;0x0: pmemsim (a.py:3)"
        f"|STORE;{base + 8:#x};0xb0a090807060504;0x8;0x0: pmemsim (a.py:3)"
        f"|FLUSH;{base + 64:#x};0x40"
        f"|STORE;{base + 128:#x};0x101010101010101;0x8"
        f"|FLUSH;{base + 128:#x};0x40"
        "|FENCE|note|STOP\n"
    )
    assert loads_pmemcheck(text).records[-1] == Marker("note")  # plain markers are kept


def test_synthetic_bases_do_not_overlap() -> None:
    log = StoreLog(
        files={"a": FileInfo("a", None, 3 << 30), "b": FileInfo("b", None, 10, base=0x7F0000000000)}
    )
    text = dumps_pmemcheck(log)
    assert "REGISTER_FILE;b;0x7f0000000000;0xa;0x0" in text
    assert "REGISTER_FILE;a;0x7f0040000000;0xc0000000;0x0" in text


@pytest.mark.parametrize(
    ("log", "message"),
    [
        (StoreLog(files={"a": FileInfo("a", "/x|y", 8)}), "contains '|'"),
        (StoreLog(files={"a": FileInfo("a", "/RESTART/pool", 8)}), "contains 'START'"),
        (StoreLog(files={"a": FileInfo("a", None, 8)}, records=[Marker("x.BEGIN;START")]), "marker"),
        (StoreLog(files={"a": FileInfo("a", None, 8)}, records=[Marker("note;x")]), "contains ';'"),
        (StoreLog(files={"a": FileInfo("a", None, 8)}, records=[Store("a", 4, b"123456789")]), "outside"),
    ],
)
def test_unexportable_logs_are_refused(log: StoreLog, message: str) -> None:
    with pytest.raises(LogError, match=message):
        dumps_pmemcheck(log)


def test_registration_offset_is_honoured() -> None:
    text = f"START|REGISTER_FILE;/p;{BASE:#x};0x100;0x1000|STORE;{BASE + 8:#x};0x1;0x1|STOP"
    log = loads_pmemcheck(text)
    assert log.records[0] == Store("/p", 0x1008, b"\x01", BASE + 8)
    assert log.files["/p"].size == 0x1100


def test_registered_path_that_exists_sizes_the_file(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.write_bytes(b"\x07" * 8192)
    log = loads_pmemcheck(f"START|REGISTER_FILE;{pool};{BASE:#x};0x1000;0x0|STORE;{BASE:#x};0x1;0x1|STOP")
    assert log.files[str(pool)].size == 8192
    images: list[bytes] = []

    def keep(image: memoryview) -> bool:
        images.append(bytes(image))
        return True

    replay(log, keep, engine="Exhaustive")
    assert images[0] == b"\x07" * 8192  # the initial image comes from the file, which is not modified
    assert pool.read_bytes() == b"\x07" * 8192


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "START|STORE;0xzz;0x1;0x8|STOP",
            r"record 2 \(line 1, column 7\): address '0xzz' is not a hexadecimal number",
        ),
        (
            "START|\nREGISTER_FILE;/p;0x0;0x10;0x0|\n  STORE;0x0;0x1|STOP",
            r"record 3 \(line 3, column 3\): STORE needs",
        ),
        (
            "START|REGISTER_FILE;/p;0x0;0x10;0x0|STORE;0x0;0x100;0x1|STOP",
            "value 0x100 does not fit in 1 bytes",
        ),
        ("START|REGISTER_FILE;/p;0x0;0x10;0x0|STORE;0x0;0x1;0x0|STOP", "STORE of size 0"),
        ("START|REGISTER_FILE;/p;0x0;0x10;0x0|STORE;0x20;0x1;0x1|STOP", "not inside any registered file"),
        (
            "START|REGISTER_FILE;/p;0x0;0x10;0x0|STORE;0xc;0x1;0x8|STOP",
            "crosses the end of its registered file",
        ),
        ("START|REGISTER_FILE;/p;0x0;0x10|STOP", "REGISTER_FILE needs path;base;size;offset"),
        ("START|REGISTER_FILE;;0x0;0x10;0x0|STOP", "empty path"),
        ("START|FLUSH;0x0|STOP", "FLUSH needs addr;size"),
        ("START|FENCE||FENCE|STOP", r"record 3 .*empty record"),
        ("START|TXCOMMIT;0x1|STOP", "unknown record type 'TXCOMMIT'"),
        ("START|FENCE|FENCE", "no STOP record after START"),
        ("FENCE|STOP", "no START record"),
    ],
)
def test_malformed_logs_name_the_record_and_line(text: str, message: str) -> None:
    with pytest.raises(PmemcheckFormatError, match=message):
        loads_pmemcheck(text)


def test_error_location_attributes() -> None:
    with pytest.raises(PmemcheckFormatError) as info:
        loads_pmemcheck("START|\nFENCE|\nFLUSH;1|STOP")
    assert (info.value.record, info.value.line, info.value.column) == (3, 3, 1)


def test_truncated_log_can_be_allowed() -> None:
    log = loads_pmemcheck(
        f"START|REGISTER_FILE;/p;{BASE:#x};0x10;0x0|STORE;{BASE:#x};0x1;0x1|", allow_truncated=True
    )
    assert len(log.records) == 1


def test_start_is_matched_as_a_whole_record() -> None:
    # pmreorder takes any record *containing* START; a path like /RESTART/ then breaks it.
    text = f"START|REGISTER_FILE;/RESTART/p;{BASE:#x};0x10;0x0|STORE;{BASE:#x};0x1;0x1|STOP"
    assert loads_pmemcheck(text).records == [Store("/RESTART/p", 0, b"\x01", BASE)]


@settings(max_examples=50)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("store"), st.integers(0, 120), st.binary(min_size=1, max_size=20)),
            st.tuples(st.just("flush"), st.integers(0, 127), st.integers(0, 64)),
            st.tuples(st.just("fence")),
            st.tuples(st.just("mark"), st.sampled_from(["a.BEGIN", "a.END", "note", "b.END;x y"])),
        ),
        max_size=20,
    )
)
def test_round_trip_property(ops: list[tuple[object, ...]]) -> None:
    rec = Recorder()
    rec.register_file("k", "/pool/file", 256)
    for op in ops:
        if op[0] == "store":
            off, data = op[1], op[2]
            assert isinstance(off, int) and isinstance(data, bytes)
            rec.store("k", off, data, location="gen.py:1")
        elif op[0] == "flush":
            off, n = op[1], op[2]
            assert isinstance(off, int) and isinstance(n, int)
            rec.flush("k", off, min(n, 256 - off))
        elif op[0] == "fence":
            rec.fence()
        else:
            rec.mark(str(op[1]))
    text = dumps_pmemcheck(rec.log)
    again = loads_pmemcheck(text)
    assert dumps_pmemcheck(again) == text
    assert atoms(again) == atoms(rec.log)
    assert epochs(again) == epochs(rec.log)
    assert [type(r) for r in again.records if not isinstance(r, Store | Flush)] == [
        type(r) for r in rec.log.records if not isinstance(r, Store | Flush)
    ]


def test_log_warning_is_public_and_a_user_warning() -> None:
    from pmemsim.persistence import pmemcheck

    assert issubclass(pmemcheck.LogWarning, UserWarning)
    assert {"LogWarning", "PmemcheckFormatError"} <= set(pmemcheck.__all__)
    assert issubclass(PmemcheckFormatError, LogError) and issubclass(PmemcheckFormatError, ValueError)
