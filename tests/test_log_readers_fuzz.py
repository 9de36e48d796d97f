"""Hostile input for both log readers: targeted cases, then fuzzing.

Whatever the text, :func:`loads_pmemcheck` and :func:`loads_log` return a log that
validates or raise :class:`LogError` with a one-line message -- never another exception,
and never more memory than a small multiple of the input (measured with tracemalloc).
The fuzzers mutate valid logs (pmemcheck logs as valgrind writes them, exports of the
example programs, saved logs) and also throw random text and random JSON values at the
readers. CI runs the default hypothesis profile (a few seconds); ``pytest -m slow`` runs
10,000 examples per reader.
"""

from __future__ import annotations

import json
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import CORRECT
from support.pmemcheck_inputs import EXPORTED, PMEMCHECK_TEXT, VALGRIND_LOGS, mutated

from pmemsim.persistence import LogError, PmemcheckFormatError, Recorder, Store, StoreLog, dumps_pmemcheck
from pmemsim.persistence.pmemcheck import LogWarning, loads_pmemcheck
from pmemsim.persistence.saved import dumps_log, load_log, loads_log, read_log

LONG = 10_000


def saved_doc(**changes: Any) -> str:
    """A valid saved log with one file and one store, with top-level keys changed."""
    rec = Recorder(page_size=4096)
    rec.register_file("pool", "/pool", 16, bytes(16))
    rec.store("pool", 0, b"\x01\x02", addr=0x1000, location="a.py:1")
    rec.flush("pool", 0, 2)
    rec.fence()
    rec.mark("tx.BEGIN")
    doc = json.loads(dumps_log(rec.log))
    doc.update(changes)
    return json.dumps(doc)


def with_file(**changes: Any) -> str:
    doc = json.loads(saved_doc())
    doc["files"][0].update(changes)
    return json.dumps(doc)


def with_record(index: int, **changes: Any) -> str:
    doc = json.loads(saved_doc())
    doc["records"][index].update(changes)
    return json.dumps(doc)


# -- targeted hostile saved logs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (with_file(size=1e30), r"files\[0\]\.size: expected a non-negative integer, got 1e\+30"),
        (with_file(size=1 << 41), r"files\[0\]\.size: expected an integer in \[0, 0x10000000000\]"),
        (with_file(size=-1), r"files\[0\]\.size"),
        (with_file(size=True), r"files\[0\]\.size: expected a non-negative integer, got true"),
        (with_file(size="16"), r"files\[0\]\.size: expected a non-negative integer, got '16'"),
        (with_file(base=1 << 64), r"files\[0\]\.base: expected an integer in \[0, 0xffffffffffffffff\]"),
        (with_file(initial="AAAA"), r"files\[0\]\.initial: 4 base64 characters cannot hold 16 bytes"),
        (with_file(initial="!" * 24), r"files\[0\]\.initial: not valid base64"),
        (with_file(path="/a\x00b"), r"files\[0\]\.path: a path cannot contain a NUL"),
        (with_file(path="/a\ud800"), r"files\[0\]\.path: .* cannot be a file name"),
        (with_file(key=""), r"files\[0\]: file key must be a non-empty str"),
        (saved_doc(page_size=3), r"page_size: expected a power of two <= 0x40000000, got 3"),
        (saved_doc(page_size=0), "page_size: expected a power of two"),
        (saved_doc(page_size=1 << 31), r"page_size: expected an integer in \[0, 0x40000000\]"),
        (saved_doc(page_size=4096.0), "page_size: expected a non-negative integer, got 4096.0"),
        (saved_doc(version="x" * 10_000), "store-log version 'xxxxx.*' is not supported"),
        (saved_doc(version=[[[1]]]), "store-log version a list of 1 is not supported"),
        (saved_doc(granularity=7), "granularity: expected a string, got 7"),
        (saved_doc(files={"a": 1}), "files: expected a list of files, got an object of 1 keys"),
        (with_record(0, offset=1 << 80), r"records\[0\]\.offset: expected an integer in .*got 1208925819"),
        (with_record(0, offset=10**1000), r"records\[0\]\.offset: .*got an integer of 3322 bits"),
        (with_record(0, addr=-5), r"records\[0\]\.addr"),
        (with_record(0, data="zz"), r"records\[0\]\.data: expected hexadecimal bytes, got 'zz'"),
        (with_record(0, data=""), r"records\[0\]: a store must write at least one byte"),
        (with_record(0, frames=[1]), r"records\[0\]\.frames: expected a list of strings"),
        (with_record(1, length=1 << 40), "FLUSH .* is outside file 'pool'"),
        (with_record(3, name="a\nb"), r"records\[3\]: bad marker name"),
        (with_record(3, op=["marker"]), r"records\[3\]\.op: expected a string, got a list of 1"),
        ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
        ('{"format": "pmemsim-store-log", "version": ' + "9" * 5000 + "}", "thousands of digits"),
        ('{"format": "pmemsim-store-log", "version": 1, "files": [], "records": [[[[[[1]]]]]]}', "object"),
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        ("null", "not a pmemsim store log"),
    ],
)
def test_hostile_saved_logs(text: str, message: str) -> None:
    with pytest.raises(LogError, match=message) as info:
        loads_log(text, "bad.json")
    assert str(info.value).startswith("bad.json") and one_line(info.value)


@pytest.mark.parametrize("reader", [load_log, read_log])
def test_saved_log_that_is_not_utf8(reader: Callable[[Path], StoreLog], tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    text = saved_doc().encode()
    path.write_bytes(text[:-1] + b', "x": "\xe9"}')
    with pytest.raises(LogError, match=rf"latin1\.json: not UTF-8 text \(byte {len(text) + 7}\)"):
        reader(path)


def test_error_messages_stay_short_whatever_the_values() -> None:
    doc = json.loads(saved_doc())
    key = "k" * 100_000
    doc["files"][0]["key"] = doc["records"][0]["file"] = key
    doc["records"][0]["offset"] = 20
    doc["records"][3]["name"] = "x\n" * 100_000
    with pytest.raises(LogError, match=r"records\[3\]: bad marker name") as info:
        loads_log(json.dumps(doc))
    assert one_line(info.value) and len(str(info.value)) < 400
    del doc["records"][3]
    with pytest.raises(LogError, match=r"record 0: STORE \[0x14, 0x16\) is outside .* \(size 0x10\)") as info:
        loads_log(json.dumps(doc))
    assert one_line(info.value) and len(str(info.value)) < 400
    path = "/" + "p" * 4000
    text = f"START|REGISTER_FILE;{path};0x1000;0x100;0x0|REGISTER_FILE;/q;0x1000;0x10;0x0"
    text += "|STORE;0x1080;0x1;0x1|STOP"
    with pytest.raises(PmemcheckFormatError, match="reused by '/q'") as exc_info:
        loads_pmemcheck(text)
    assert one_line(exc_info.value) and len(str(exc_info.value)) < 600


# -- properties -------------------------------------------------------------------------------------


def one_line(exc: BaseException) -> bool:
    return "\n" not in str(exc) and "\r" not in str(exc) and len(str(exc)) < 1000


def measured(call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()`` and the peak memory it allocated (tracemalloc, bytes)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def byte_writes(log: StoreLog) -> list[tuple[str, int, int]]:
    """Every byte a log's stores write, in order, by file path."""
    out: list[tuple[str, int, int]] = []
    for rec in log.records:
        if isinstance(rec, Store):
            path = log.files[rec.file].path or rec.file
            out.extend((path, rec.offset + i, b) for i, b in enumerate(rec.data))
    return out


def check_pmemcheck_reader(text: str, allow_truncated: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogWarning)  # any other warning stays an error
        try:
            log, peak = measured(lambda: loads_pmemcheck(text, allow_truncated=allow_truncated))
        except PmemcheckFormatError as exc:
            assert one_line(exc), str(exc)
            return
        assert peak < 200 * len(text) + (2 << 20), (peak, len(text))
        log.validate()
        try:
            exported = dumps_pmemcheck(log)
        except LogError as exc:  # a path or marker pmreorder could not read back
            assert one_line(exc)
            return
        again = loads_pmemcheck(exported)
    assert byte_writes(again) == byte_writes(log)


def check_saved_reader(text: str) -> None:
    try:
        log, peak = measured(lambda: loads_log(text, "fuzz.json"))
    except LogError as exc:
        assert one_line(exc), str(exc)
        return
    assert peak < 200 * len(text) + (2 << 20), (peak, len(text))
    log.validate()
    assert loads_log(dumps_log(log)) == log


# -- strategies ---------------------------------------------------------------------------------------

SAVED = [saved_doc(), dumps_log(CORRECT[0].log)]

JSON_TOKENS = [
    "{", "}", "[", "]", '"', ",", ":", "1e30", "-1", "null", "true", "9" * 30, "\\u0000", "\\ud800", "0.5",
    '"size"', '"offset"', '"page_size"', "[" * 50,
]  # fmt: skip


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 80), 1 << 80),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from([10**300, -1, 0, 1 << 64, 3, "", "STORE", "/dev/zero"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def json_mutated(draw: st.DrawFn) -> str:
    """A valid saved log with one value (or container) somewhere replaced by a random one."""
    doc = json.loads(draw(st.sampled_from(SAVED)))
    node: Any = doc
    for _ in range(draw(st.integers(0, 3))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()) and isinstance(node[key], dict | list):
            node = node[key]
            continue
        node[key] = draw(JSON_VALUES)
        break
    return json.dumps(doc)


SAVED_TEXT = st.one_of(
    mutated(SAVED, JSON_TOKENS),
    json_mutated(),
    json_mutated(),
    st.lists(st.sampled_from(JSON_TOKENS), max_size=40).map("".join),
)


# -- fuzzers ---------------------------------------------------------------------------------------------


def run_long(request: pytest.FixtureRequest) -> None:
    markexpr = request.config.option.markexpr or ""
    if "slow" not in markexpr or "not slow" in markexpr:
        pytest.skip(f"{LONG:,} examples: run with -m slow")


@pytest.mark.parametrize("text", VALGRIND_LOGS + EXPORTED)
def test_unmutated_pmemcheck_logs_read_and_round_trip(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogWarning)  # killed.log's cut record
        assert byte_writes(loads_pmemcheck(text, allow_truncated=True))  # every base log writes
    check_pmemcheck_reader(text, allow_truncated=True)


@pytest.mark.parametrize("text", SAVED)
def test_unmutated_saved_logs_read_and_round_trip(text: str) -> None:
    assert byte_writes(loads_log(text))
    check_saved_reader(text)


@given(PMEMCHECK_TEXT, st.booleans())
def test_pmemcheck_reader_fuzz(text: str, allow_truncated: bool) -> None:
    check_pmemcheck_reader(text, allow_truncated)


@given(SAVED_TEXT)
def test_saved_reader_fuzz(text: str) -> None:
    check_saved_reader(text)


@pytest.mark.slow
def test_pmemcheck_reader_fuzz_long(request: pytest.FixtureRequest) -> None:
    run_long(request)
    settings(max_examples=LONG)(given(PMEMCHECK_TEXT, st.booleans())(check_pmemcheck_reader))()


@pytest.mark.slow
def test_saved_reader_fuzz_long(request: pytest.FixtureRequest) -> None:
    run_long(request)
    settings(max_examples=LONG)(given(SAVED_TEXT)(check_saved_reader))()
