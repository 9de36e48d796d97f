"""The fast, streaming pmemcheck reader against the full reader that locates every record.

:func:`loads_pmemcheck` and :func:`load_pmemcheck` first read a log in one pass that
locates nothing, chunk by chunk as it is read, and hand it to the full reader
(record, line and column for every record) as soon as anything needs a message. These
tests hold the two to the same result: on every text the fast reader accepts, whatever
the chunking, the full reader gives the same records and files and no warning; on
every text it gives up on, the public functions give the full reader's answer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.pmemcheck_inputs import PMEMCHECK_TEXT, VALGRIND_LOGS

from pmemsim.persistence import PmemcheckFormatError, Recorder, dumps_pmemcheck, pmemcheck
from pmemsim.persistence.pmemcheck import (
    LogWarning,
    _Fallback,
    _read_fast,
    _read_full,
    load_pmemcheck,
    loads_pmemcheck,
)
from pmemsim.persistence.saved import read_log


def chunked(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def full_or_error(text: str) -> tuple[object, object, list[str]] | str:
    """What the full reader says: (records, files, warnings), or the error message."""
    try:
        log, notes = _read_full(text, False, None, 4096)
    except PmemcheckFormatError as exc:
        return str(exc)
    return log.records, log.files, notes


def check_same(text: str, size: int) -> None:
    try:
        fast = _read_fast(chunked(text, size), len(text), None, 4096)
    except _Fallback:
        fast = None
    full = full_or_error(text)
    if fast is not None:
        # Accepted fast: the full reader accepts it too, with the same log and nothing to warn.
        assert full == (fast.records, fast.files, []), text
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            public: object = loads_pmemcheck(text)
        except PmemcheckFormatError as exc:
            public = str(exc)
    if isinstance(public, str):
        assert public == full
    else:
        assert isinstance(full, tuple)
        assert (public.records, public.files) == full[:2]  # type: ignore[attr-defined]
        assert [str(w.message) for w in caught] == full[2]


@given(PMEMCHECK_TEXT, st.integers(1, 64))
@settings(max_examples=300)
def test_fast_reader_agrees_with_the_full_reader(text: str, size: int) -> None:
    check_same(text, size)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("index", range(len(VALGRIND_LOGS)))
def test_real_logs_read_the_same_in_any_chunks(index: int, size: int) -> None:
    check_same(VALGRIND_LOGS[index], size)


def test_a_well_formed_log_is_read_fast_and_valgrind_lines_after_stop_are_ignored() -> None:
    rec = Recorder()
    rec.register_file("pool", "/nonexistent/pool", 4096, bytes(4096))
    for i in range(50):
        rec.store("pool", 8 * i, (i + 1).to_bytes(8, "little"), location=f"a.c:{i}")
        rec.persist("pool", 8 * i, 8)
        rec.mark("tx.BEGIN")
        rec.mark("tx.END")
    text = "==7== banner|with a pipe\n==7== " + dumps_pmemcheck(rec.log) + "==7== ERROR SUMMARY: 0 errors\n"
    fast = _read_fast(chunked(text, 5), len(text), None, 4096)  # no _Fallback: read in one pass
    assert fast.records == loads_pmemcheck(text).records == _read_full(text, False, None, 4096)[0].records


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("START|STORE;0x0;0x1;0x1|STOP", "STORE to 0x0 is not inside any registered file"),
        ("START|FENCE", "no STOP record"),
        ("START|FENCE|STOP|FENCE|STOP", "a record after STOP, before another STOP"),
        ("START|REGISTER_FILE;/p;0x0;0x10;0x0\n==1== hello\n|STOP", None),  # a warning
        ("START|COMMIT|STOP", None),  # a warning
    ],
)
def test_what_the_fast_reader_leaves_to_the_full_one(text: str, why: str | None) -> None:
    with pytest.raises(_Fallback):
        _read_fast([text], len(text), None, 4096)
    if why is None:
        with pytest.warns(LogWarning):
            loads_pmemcheck(text)
    else:
        with pytest.raises(PmemcheckFormatError, match=why) as info:
            loads_pmemcheck(text)
        if "STOP record" not in why:  # that one is about the whole log
            assert "(line 1, column" in str(info.value)


def test_files_stream_and_errors_name_their_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pmemcheck, "_CHUNK", 4096)  # many chunks, some cut inside a UTF-8 character
    rec = Recorder()
    rec.register_file("pool", "/nonexistent/pool\u00e9\u00e9", 4096, bytes(4096))
    for i in range(3000):
        rec.store("pool", 8 * (i % 500), i.to_bytes(8, "little"))
        rec.persist("pool", 8 * (i % 500), 8)
    good = tmp_path / "good.log"
    good.write_text(dumps_pmemcheck(rec.log))
    assert good.stat().st_size > 40 * 4096
    assert load_pmemcheck(good).records == read_log(good).records == loads_pmemcheck(good.read_text()).records
    # One record per line, the last one broken: the error names its line, found only then.
    lines = good.read_text().replace("|", "\n|").split("\n")
    assert lines[5000].startswith("|STORE;0x7f")
    lines[5000] = lines[5000].replace("STORE;0x7f", "STORE;0xg7f", 1)
    bad = tmp_path / "bad.log"
    bad.write_text("\n".join(lines))
    with pytest.raises(PmemcheckFormatError, match=r"\(line 5001, column 2\): address '0xg7f"):
        read_log(bad)


def test_reading_a_large_log_holds_the_log_not_its_text(tmp_path: Path) -> None:
    # The text is parsed as it is read: what stays is one small object per record. Reading
    # the whole text first, then splitting it into located records, peaked at 15.6x the
    # file here; streaming at 7.2x (tracemalloc counts every allocation, deterministically).
    import tracemalloc

    records = ["START", "REGISTER_FILE;/nonexistent/pool;0x7f0000000000;0x100000;0x0"]
    for i in range(20_000):
        addr = 0x7F0000000000 + 8 * (i % 8192)
        records += [
            f"STORE;{addr:#x};{i:#x};0x8;0x401a2b: push (list.c:{i % 40})",
            f"FLUSH;{addr:#x};0x8",
            "FENCE",
        ]
    path = tmp_path / "big.log"
    path.write_text("|".join([*records, "STOP"]) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        log = read_log(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(log.records) == 60_000
    assert peak < 11 * size, (peak, size)
