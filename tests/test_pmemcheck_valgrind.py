"""pmemcheck logs exactly as valgrind writes them, registrations, DEEP_SYNC, markers, numbers, files.

The logs under ``tests/data/pmemcheck/`` are built by hand in the form
``valgrind --tool=pmemcheck --log-stores=yes --log-stores-stacktraces=yes --log-file=F``
writes (valgrind's ``==PID==`` prefix before the banner lines and the first record, the
summary after ``|STOP``); the expected records below are worked out from the log text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pmemsim.persistence import (
    Fence,
    FileInfo,
    Flush,
    LogError,
    Marker,
    PmemcheckFormatError,
    Recorder,
    Store,
    dumps_pmemcheck,
    load_pmemcheck,
    loads_pmemcheck,
    pmemcheck,
    replay,
)
from pmemsim.persistence.pmemcheck import LogWarning
from pmemsim.persistence.saved import load_log, read_log

DATA = Path(__file__).parent / "data" / "pmemcheck"
B = 0x7F0000000000


def reg(path: str, base: int, size: int, offset: int = 0) -> str:
    return f"REGISTER_FILE;{path};{base:#x};{size:#x};{offset:#x}"


def log_of(*records: str) -> str:
    """A log as valgrind writes it: banner, prefixed first record, summary after STOP."""
    return (
        "==9== pmemcheck-1.0, a simple persistent store checker\n==9== \n==9== START|"
        + "|".join(records)
        + "|STOP\n==9== \n==9== ERROR SUMMARY: 0 errors\n"
    )


def one_line(exc: BaseException) -> bool:
    return "\n" not in str(exc) and "\r" not in str(exc)


# -- logs exactly as valgrind writes them ----------------------------------------------------------------


def test_libpmemobj_log_loads_with_the_expected_records() -> None:
    log = load_pmemcheck(DATA / "libpmemobj_tx.log")
    pool = "/nonexistent-pmemsim/pool.obj"
    base = 0x7F3A5C200000
    frames_41 = ("0x4012a7: append_record (tx_append.c:41)", "0x4013f0: main (tx_append.c:97)")
    frames_42 = ("0x4012b3: append_record (tx_append.c:42)", "0x4013f0: main (tx_append.c:97)")
    frames_50 = ("0x4012c0: commit (tx_append.c:50)", "0x4013f8: main (tx_append.c:98)")
    assert log.records == [
        Fence(),  # FENCE records before the first REGISTER_FILE
        Fence(),
        Marker("PMREORDER_MARKER_UNDEFINED.BEGIN"),
        Marker("pmemobj_tx_begin.BEGIN"),  # nested section
        Store(pool, 0x40, bytes.fromhex("afcd1d7b39a820e2"), base + 0x40, "tx_append.c:41", False, frames_41),
        Store(pool, 0x41, b"\xef\xbe", base + 0x41, "tx_append.c:42", False, frames_42),  # odd offset
        Flush(pool, 0x43, 5, base + 0x43),  # unaligned flush range
        Fence(),
        Marker("pmemobj_tx_begin.END"),
        Marker("PMREORDER_MARKER_UNDEFINED"),  # a plain marker, not a section
        Store(pool, 0x80, b"\x01", base + 0x80, "tx_append.c:50", False, frames_50),
        Marker("PMREORDER_MARKER_UNDEFINED.END"),
        Fence(),
        Flush(pool, 0x80, 0x40, base + 0x80),  # FLUSH after the last FENCE
    ]
    # Registered three times (once for a sub-range): one file, as large as the largest mapping.
    assert log.files == {pool: FileInfo(pool, pool, 0x20000, None, base)}
    assert read_log(DATA / "libpmemobj_tx.log") == log


def test_libpmemobj_log_replays() -> None:
    log = load_pmemcheck(DATA / "libpmemobj_tx.log")
    (pool,) = log.files
    seen: list[bytes] = []

    def keep(image: memoryview) -> bool:
        seen.append(bytes(image[0x40:0x48]) + bytes(image[0x80:0x81]))
        return True

    report = replay(log, keep, engine="Exhaustive", images={pool: bytes(0x20000)})
    assert report.ok and report.states_checked > 0
    committed = bytes.fromhex("afefbe7b39a820e2")  # the 8-byte store overwritten by the 2-byte one
    # Fenced after a flush of their line, both stores are durable; the store at 0x80 may be or not.
    assert committed + b"\x00" in seen and committed + b"\x01" in seen
    assert bytes(9) in seen  # the crash before anything reached media


def test_killed_pmemcheck_log_needs_allow_truncated() -> None:
    with pytest.raises(PmemcheckFormatError, match="--allow-truncated") as info:
        load_pmemcheck(DATA / "killed.log")
    assert one_line(info.value)
    last_line = (DATA / "killed.log").read_text().splitlines()[3]
    column = last_line.index("STORE;0x7f0000000008") + 1
    with pytest.warns(LogWarning, match=rf"record 6 \(line 4, column {column}\) dropped: .*no STOP"):
        log = load_pmemcheck(DATA / "killed.log", allow_truncated=True)
    path = "/nonexistent-pmemsim/killed.pool"
    assert log.records == [Store(path, 0, (0x2A).to_bytes(8, "little"), B), Flush(path, 0, 0x40, B), Fence()]


def test_pool_mapped_at_a_reused_address_gets_its_stores() -> None:
    log = load_pmemcheck(DATA / "reused_address.log")
    a, b = "/nonexistent-pmemsim/a.pool", "/nonexistent-pmemsim/b.pool"
    word = (1).to_bytes(8, "little")
    assert log.records == [
        Store(a, 0, word, B),
        Flush(a, 0, 0x40, B),
        Fence(),
        Store(b, 0, (2).to_bytes(8, "little"), B),  # the latest registration wins
        Flush(b, 0, 0x40, B),
        Fence(),
        Flush("", B + 0x1000, 0x40, B + 0x1000),  # a's old range: no longer its memory
        Fence(),
    ]
    assert log.files == {a: FileInfo(a, a, 0x2000, None, B), b: FileInfo(b, b, 0x1000, None, B)}


def test_prefix_variants_and_messages_inside_the_log() -> None:
    text = (
        "--9-- debug line before\n**9** START|" + reg("/p", B, 0x100) + "|FENCE\n"
        "==9== Warning: set address range perms: large range\n"
        "==9== |STORE;" + f"{B:#x}" + ";0x1;0x1|STOP\n==9== summary\n"
    )
    with pytest.warns(LogWarning, match=r"valgrind message inside the store log skipped \(line 3\)"):
        log = loads_pmemcheck(text)
    assert log.records == [Fence(), Store("/p", 0, b"\x01", B)]


def test_text_after_the_last_stop_is_ignored() -> None:
    text = log_of(reg("/p", B, 0x100), "FENCE") + "program output | with bars\n|FENCEE\n"
    assert loads_pmemcheck(text).records == [Fence()]
    # Two STOPs with nothing between them are one end.
    assert loads_pmemcheck("START|FENCE|STOP|STOP|trailing junk").records == [Fence()]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("START|FENCE|STOP|FENCE|STOP", r"record 4 .*after STOP, before another STOP"),
        ("START|FENCE|STOP\nSTART|FENCE|STOP", r"record 4 \(line 2, column 1\).*after STOP"),
        ("START|FENCE|START|FENCE|STOP", r"record 3 .*second START"),
        ("START|FEN\nCE|STOP", r"record 2 .*'FEN'"),  # a line break inside a record
        ("banner START|FENCE|STOP", "no START record"),
    ],
)
def test_framing_errors(text: str, message: str) -> None:
    with pytest.raises(PmemcheckFormatError, match=message) as info:
        loads_pmemcheck(text)
    assert one_line(info.value)


def test_records_may_be_split_over_lines_at_separators() -> None:
    text = "START|\n" + reg("/p", B, 0x100) + "\n|STORE;" + f"{B:#x}" + ";0x1;0x1|\nFENCE\n|STOP\n"
    assert loads_pmemcheck(text).records == [Store("/p", 0, b"\x01", B), Fence()]


# -- truncation ------------------------------------------------------------------------------------------


def test_truncated_log_keeps_a_last_record_that_parses() -> None:
    text = f"START|{reg('/p', B, 0x100)}|STORE;{B:#x};0x1;0x1|FENCE"
    assert loads_pmemcheck(text, allow_truncated=True).records == [Store("/p", 0, b"\x01", B), Fence()]


@pytest.mark.parametrize(
    "cut", ["STO", "FLUSH;0x7f", f"STORE;{B:#x};0x12", f"REGISTER_FILE;/q;{B + 0x1000:#x}"]
)
def test_truncated_log_drops_a_cut_last_record(cut: str) -> None:
    text = f"START|{reg('/p', B, 0x100)}|STORE;{B:#x};0x1;0x1|{cut}"
    with pytest.warns(LogWarning, match=r"record 4 \(line 1, column \d+\) dropped"):
        log = loads_pmemcheck(text, allow_truncated=True)
    assert log.records == [Store("/p", 0, b"\x01", B)]


def test_allow_truncated_does_not_hide_a_broken_record_before_the_end() -> None:
    with pytest.raises(PmemcheckFormatError, match=r"record 2 .*FENCEE"):
        loads_pmemcheck("START|FENCEE|FENCE", allow_truncated=True)
    # A bad last record followed by a separator was not cut: it is an error too.
    with pytest.raises(PmemcheckFormatError, match=r"record 3 .*FENCEE"):
        loads_pmemcheck("START|FENCE|FENCEE|", allow_truncated=True)


# -- registrations ---------------------------------------------------------------------------------------


def test_repeated_and_nested_registrations_of_one_file_are_one_mapping() -> None:
    text = log_of(
        reg("/p", B, 0x2000),
        reg("/p", B, 0x2000),
        reg("/p", B + 0x1000, 0x100, 0x1000),  # the same file offsets: compatible
        f"STORE;{B + 0x1800:#x};0x1;0x1",
        f"STORE;{B + 0x10FC:#x};0x0403020100000000;0x8",  # across the nested range's end
        f"FLUSH;{B:#x};0x2000",
    )
    log = loads_pmemcheck(text)
    assert log.records == [
        Store("/p", 0x1800, b"\x01", B + 0x1800),
        Store("/p", 0x10FC, bytes([0, 0, 0, 0, 1, 2, 3, 4]), B + 0x10FC),
        Flush("/p", 0, 0x2000, B),  # the pieces of one file are one flush
    ]
    assert log.files["/p"].size == 0x2000


def test_reused_range_store_outside_the_new_mapping_is_bad_input() -> None:
    text = log_of(reg("/a", B, 0x2000), reg("/b", B + 0x800, 0x800), f"STORE;{B + 0x1800:#x};0x1;0x1")
    with pytest.raises(PmemcheckFormatError) as info:
        loads_pmemcheck(text)
    message = str(info.value)
    assert "record 4" in message and "'/a' (REGISTER_FILE at record 2)" in message
    assert "'/b' (REGISTER_FILE at record 3)" in message and one_line(info.value)


def test_same_file_at_another_offset_retires_the_old_mapping() -> None:
    text = log_of(reg("/p", B, 0x2000), reg("/p", B, 0x1000, 0x4000), f"STORE;{B + 0x10:#x};0x7;0x1")
    assert loads_pmemcheck(text).records == [Store("/p", 0x4010, b"\x07", B + 0x10)]
    with pytest.raises(PmemcheckFormatError, match="reused by"):
        loads_pmemcheck(
            log_of(reg("/p", B, 0x2000), reg("/p", B, 0x1000, 0x4000), f"STORE;{B + 0x1010:#x};0x7;0x1")
        )


def test_registering_the_old_file_again_makes_it_win_again() -> None:
    text = log_of(reg("/a", B, 0x1000), reg("/b", B, 0x1000), reg("/a", B, 0x1000), f"STORE;{B:#x};0x1;0x1")
    assert loads_pmemcheck(text).records == [Store("/a", 0, b"\x01", B)]


def test_partial_overlap_keeps_stores_in_the_new_mapping() -> None:
    text = log_of(reg("/a", B, 0x2000), reg("/b", B + 0x1000, 0x2000), f"STORE;{B + 0x1000:#x};0x1;0x1")
    log = loads_pmemcheck(text)
    assert log.records == [Store("/b", 0, b"\x01", B + 0x1000)]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            (reg("/a", B, 0x100), reg("/b", B + 0x100, 0x100), f"STORE;{B + 0xFC:#x};0x1;0x8"),
            "spans two mappings",
        ),
        (
            (reg("/a", B, 0x100), f"STORE;{B + 0xFC:#x};0x1;0x8"),
            "crosses the end of its registered file '/a'",
        ),
        ((reg("/a", B + 8, 0x100), f"STORE;{B + 4:#x};0x1;0x8"), "crosses the end"),
        ((f"STORE;{B:#x};0x1;0x1", reg("/a", B, 0x100)), "not inside any registered file"),
    ],
)
def test_store_must_stay_in_one_mapping(records: tuple[str, ...], message: str) -> None:
    with pytest.raises(PmemcheckFormatError, match=message):
        loads_pmemcheck(log_of(*records))


def test_flush_over_several_files_and_gaps() -> None:
    text = log_of(reg("/a", B, 0x100), reg("/b", B + 0x200, 0x100, 0x40), f"FLUSH;{B + 0x80:#x};0x200")
    assert loads_pmemcheck(text).records == [
        Flush("/a", 0x80, 0x80, B + 0x80),
        Flush("/b", 0x40, 0x80, B + 0x200),
    ]


def test_empty_flush_belongs_to_its_file() -> None:
    text = log_of(reg("/a", B, 0x100), f"FLUSH;{B + 0x10:#x};0x0", f"FLUSH;{B + 0x200:#x};0x0")
    assert loads_pmemcheck(text).records == [
        Flush("/a", 0x10, 0, B + 0x10),
        Flush("", B + 0x200, 0, B + 0x200),
    ]


def test_too_many_registered_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pmemcheck, "MAX_RANGES", 3)
    records = [reg(f"/f{i}", B + 0x1000 * i, 0x100) for i in range(4)]
    with pytest.raises(PmemcheckFormatError, match=r"record 5 .*more than 3 separately registered"):
        loads_pmemcheck(log_of(*records))
    loads_pmemcheck(log_of(*records[:3]))


def test_flushes_may_not_visit_registered_ranges_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pmemcheck, "_FLUSH_VISITS_PER_CHAR", 0)
    monkeypatch.setattr(pmemcheck, "_FLUSH_VISITS_BASE", 5)
    regs = [reg(f"/f{i}", B + 0x1000 * i, 0x100) for i in range(3)]
    loads_pmemcheck(log_of(*regs, f"FLUSH;{B:#x};0x3000"))  # 3 ranges visited
    with pytest.raises(PmemcheckFormatError, match="flushes cover too many registered ranges"):
        loads_pmemcheck(log_of(*regs, f"FLUSH;{B:#x};0x3000", f"FLUSH;{B:#x};0x3000"))


def test_existing_file_sizes_the_registration(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.write_bytes(bytes(0x3000))
    log = loads_pmemcheck(log_of(reg(str(pool), B, 0x1000)))
    assert log.files[str(pool)].size == 0x3000
    # A device (device DAX, say) is sized by its mapping.
    assert loads_pmemcheck(log_of(reg("/dev/zero", B, 0x1000))).files["/dev/zero"].size == 0x1000


def test_path_with_semicolon_is_read() -> None:
    log = loads_pmemcheck(log_of(reg("/mnt/a;b", B, 0x100), f"STORE;{B:#x};0x1;0x1"))
    assert log.records == [Store("/mnt/a;b", 0, b"\x01", B)]


# -- DEEP_SYNC and historical records ------------------------------------------------------------------------


def test_deep_sync_is_a_flush_and_a_fence() -> None:
    store = f"STORE;{B + 8:#x};0x1;0x1"
    deep = loads_pmemcheck(log_of(reg("/p", B, 0x100), store, f"DEEP_SYNC;{B:#x};0x40"))
    explicit = loads_pmemcheck(log_of(reg("/p", B, 0x100), store, f"FLUSH;{B:#x};0x40", "FENCE"))
    assert (
        deep.records == explicit.records == [Store("/p", 8, b"\x01", B + 8), Flush("/p", 0, 0x40, B), Fence()]
    )
    # Without a range it drains what was flushed: a fence.
    assert loads_pmemcheck(log_of("DEEP_SYNC")).records == [Fence()]
    with pytest.raises(PmemcheckFormatError, match="DEEP_SYNC takes no fields or addr;size, got 1"):
        loads_pmemcheck(log_of(f"DEEP_SYNC;{B:#x}"))


@pytest.mark.parametrize("name", ["COMMIT", "FREORDER", "PREORDER", "FAULT_ONLY", "NO_REORDER_FAULT"])
def test_historical_records_are_ignored_with_a_warning(name: str) -> None:
    with pytest.warns(LogWarning, match=rf"2 {name} records ignored \(first: record 2, line 3, column 13\)"):
        log = loads_pmemcheck(log_of(name, "FENCE", name.lower()))
    assert log.records == [Fence()]
    with pytest.raises(PmemcheckFormatError, match=f"{name} takes no fields"):
        loads_pmemcheck(log_of(f"{name};0x1"))


# -- markers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "marker",
    [
        "tx.BEGIN",
        "tx.END;data with spaces, [3,10]",
        "a.b.BEGIN",
        "PMREORDER_MARKER_UNDEFINED",
        "PMREORDER_MARKER_UNDEFINED.BEGIN",
        "pmemobj_tx_begin.END",
        "note",
        "_checkpoint-2",
        "9lives",
        "FENCE.BEGIN",
    ],
)
def test_markers_are_read_and_written_back(marker: str) -> None:
    log = loads_pmemcheck(log_of(marker))
    assert log.records == [Marker(marker)]
    assert loads_pmemcheck(dumps_pmemcheck(log)).records == [Marker(marker)]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("FENCEE", "too close to FENCE"),
        ("FENSE", "too close to FENCE"),
        ("FENC", "too close to FENCE"),
        ("flushh", "too close to FLUSH"),
        ("REGISTER_FIL", "too close to REGISTER_FILE"),
        ("STOPPED", "too close to STOP"),
        ("COMMITT", "too close to COMMIT"),
        ("STOREX;0x1;0x1;0x1", "unknown record type 'STOREX'"),
        ("hello world", "one word"),
        ("deadbeef", "bare number"),
        (".BEGIN", "needs a name"),
        ("my tx.BEGIN", "one word"),
        ("x" * 5000, "5000 characters"),
        ("tx.BEGIN;a\x00b", r"control character '\\x00'"),
    ],
)
def test_unknown_records_are_not_markers(record: str, message: str) -> None:
    with pytest.raises(PmemcheckFormatError, match=message) as info:
        loads_pmemcheck(log_of("FENCE", record))
    assert (info.value.record, info.value.line) == (3, 3) and one_line(info.value)


@pytest.mark.parametrize("name", ["FENCE", "stop", "Fencee", " note", "two words", "12ab"])
def test_markers_that_would_not_read_back_are_not_exported(name: str) -> None:
    rec = Recorder()
    rec.register_file("k", "/pool", 64)
    rec.mark(name)
    with pytest.raises(LogError, match="cannot export marker"):
        dumps_pmemcheck(rec.log)


# -- numbers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            f"STORE;{B:#x};0x1;{(1 << 64) - 1:#x}",
            "STORE of size 0xffffffffffffffff: pmemcheck logs at most 8",
        ),
        (f"STORE;{B:#x};0x1;0x100000000", "STORE of size 0x100000000"),
        (f"STORE;{B:#x};0x1;0x9", "STORE of size 0x9"),
        (f"STORE;{B:#x};0x10000;0x2", "value 0x10000 does not fit in 2 bytes"),
        (f"STORE;{1 << 60:#x};0x1;0x1", "not inside any registered file"),
        (f"STORE;{1 << 80:#x};0x1;0x1", f"address '{1 << 80:#x}' has 21 significant hex digits"),
        (f"STORE;0x{'7' * 3000};0x1;0x1", "3000 significant hex digits"),
        (f"STORE;{(1 << 64) - 1:#x};0x1;0x2", "runs past the end of the 64-bit address space"),
        (f"STORE;-{B:#x};0x1;0x1", "is negative"),
        (f"STORE;{B:#x};0x;0x1", "value '0x' is not a hexadecimal number"),
        (f"STORE;{B:#x};+0x1;0x1", "not a hexadecimal number"),
        (f"STORE;{B:#x};0x1_0;0x1", "not a hexadecimal number"),
        (f"FLUSH;{(1 << 64) - 0x10:#x};0x20", "FLUSH .* runs past the end"),
        (f"FLUSH;{B:#x};{1 << 70:#x}", "size '0x4000.*' has 18 significant hex digits"),
        (reg("/q", B, 1 << 60), "reaches 0x1000000000000000 bytes into '/q', more than the limit"),
        (reg("/q", B, 0x10, 1 << 62), "more than the limit"),
        (reg("/q", (1 << 64) - 0x10, 0x20), "REGISTER_FILE .* runs past the end"),
        (reg("/" + "q" * 5000, B, 0x10), "path of 5001 characters"),
        ("REGISTER_FILE;;0x0;0x10;0x0", "empty path"),
    ],
)
def test_numbers_are_range_checked_before_use(record: str, message: str) -> None:
    with pytest.raises(PmemcheckFormatError, match=message) as info:
        loads_pmemcheck(log_of(reg("/p", B, 0x1000), record))
    assert info.value.record == 3 and info.value.line == 3 and info.value.column is not None
    assert one_line(info.value) and len(str(info.value)) < 400


def test_largest_values_that_are_valid() -> None:
    top = (1 << 64) - 8
    text = log_of(reg("/p", top, 8), f"STORE;{top:#x};0xffffffffffffffff;0x8", f"FLUSH;{top:#x};0x8")
    log = loads_pmemcheck(text)
    assert log.records == [Store("/p", 0, b"\xff" * 8, top), Flush("/p", 0, 8, top)]
    assert loads_pmemcheck(log_of("FLUSH;0x0;0xffffffffffffffff")).records == [Flush("", 0, (1 << 64) - 1, 0)]


# -- reading files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", [load_pmemcheck, load_log, read_log])
def test_non_regular_files_are_refused_before_reading(reader: object, tmp_path: Path) -> None:
    assert callable(reader)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: reading would block forever
    for path, kind in [(fifo, "a FIFO"), ("/dev/zero", "a character device"), (tmp_path, "a directory")]:
        with pytest.raises(LogError, match=f"{kind}, not a regular file") as info:
            reader(path)
        assert str(info.value).startswith(str(path)) and one_line(info.value)


@pytest.mark.parametrize("reader", [load_pmemcheck, load_log, read_log])
def test_files_larger_than_the_limit_are_refused(reader: object, tmp_path: Path) -> None:
    assert callable(reader)
    path = tmp_path / "big.log"
    path.write_text(log_of("FENCE"))
    with pytest.raises(LogError, match=r"big\.log: \d+ bytes, more than the limit of 16"):
        reader(path, max_bytes=16)


def test_non_utf8_paths_survive_import_and_export(tmp_path: Path) -> None:
    raw = b"START|REGISTER_FILE;/mnt/caf\xe9;" + f"{B:#x};0x40;0x0|STORE;{B:#x};0x1;0x1|STOP\n".encode()
    (tmp_path / "in.log").write_bytes(raw)
    log = load_pmemcheck(tmp_path / "in.log")
    (path,) = log.files
    assert os.fsencode(path) == b"/mnt/caf\xe9"
    pmemcheck.dump_pmemcheck(log, tmp_path / "out.log")
    assert b"REGISTER_FILE;/mnt/caf\xe9;" in (tmp_path / "out.log").read_bytes()


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_pmemcheck(tmp_path / "nope.log")


def test_export_of_a_reused_address_log_keeps_stores_in_their_files() -> None:
    log = load_pmemcheck(DATA / "reused_address.log")
    text = dumps_pmemcheck(log)
    again = loads_pmemcheck(text)
    # The two files shared a base; exported registrations must not overlap.
    stores = [(r.file, r.offset, r.data) for r in again.records if isinstance(r, Store)]
    assert stores == [(r.file, r.offset, r.data) for r in log.records if isinstance(r, Store)]
    assert again.files["/nonexistent-pmemsim/a.pool"].base == B
    assert again.files["/nonexistent-pmemsim/b.pool"].base != B


def test_reusing_one_piece_of_a_file_leaves_its_other_pieces_mapped() -> None:
    pieces = (reg("/f", B, 0x1000), reg("/f", B + 0x1000, 0x1000, 0x1000))  # one file, two part maps
    text = log_of(*pieces, reg("/g", B, 0x1000), f"STORE;{B + 0x1800:#x};0x1;0x1", f"STORE;{B:#x};0x2;0x1")
    assert loads_pmemcheck(text).records == [
        Store("/f", 0x1800, b"\x01", B + 0x1800),
        Store("/g", 0, b"\x02", B),
    ]
