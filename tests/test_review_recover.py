"""Durable linearizability (``recover=``) with recoveries written the way users write them.

The expected verdicts come from the definition alone (a crash inside an operation must
recover to the value before or after it, elsewhere to the current value), computed
over the brute-force crash oracle by ``test_linearizability.expected``; nothing of
pmemsim's exploration is used to compute them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.recovery import RECOVERIES, expected, logs_with_operations
from support.x86_oracle import OracleModel

from pmemsim.persistence import CheckerError, Marker, PersistencyModel, Recorder, StoreLog, replay


def flag_with_record() -> StoreLog:
    """BUG: the commit flag is made durable together with the record it commits (one persist)."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("OP.BEGIN")
    rec.store("pool", 64, b"record. record. ")
    rec.store("pool", 0, b"COMMITED")
    rec.persist("pool", 0, 128)
    rec.mark("OP.END")
    return rec.log


def committed(image: Any) -> list[bytes]:
    return [bytes(image[64:80])] if bytes(image[0:8]) == b"COMMITED" else []


def test_a_recovery_that_refills_one_object_is_judged_on_the_values_it_gave() -> None:
    class Pool:
        """Recovery into one list, refilled on every call (``self.items``), as an object would."""

        def __init__(self) -> None:
            self.items: list[bytes] = []

        def recover(self, image: Any) -> list[bytes]:
            self.items.clear()
            self.items.extend(committed(image))
            return self.items

    fresh = replay(flag_with_record(), recover=committed)
    assert not fresh.ok  # the torn commit: the flag on media without its record
    refilled = replay(flag_with_record(), recover=Pool().recover)
    assert (refilled.ok, refilled.inconsistent) == (fresh.ok, fresh.inconsistent)


@st.composite
def logs_with_data_markers(draw: st.DrawFn) -> StoreLog:
    """Logs with operations (``logs_with_operations``) and notes carrying data anywhere, sections too.

    A marker with data is visible to checkers (it cuts crash points) but is no boundary.
    """
    log = draw(logs_with_operations())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(log.records)))
        log.records.insert(at, Marker("note", data={"n": draw(st.integers(0, 3))}))
    return log


@settings(max_examples=40)
@given(log=logs_with_data_markers(), recover=st.sampled_from(RECOVERIES))
def test_markers_with_data_cut_no_operation(log: StoreLog, recover: Any) -> None:
    want = expected(log, recover, OracleModel())
    if want.boundary_fails:
        try:
            replay(log, recover=recover)
        except CheckerError:
            return
        raise AssertionError("a recovery failing with no crash was not refused")
    report = replay(log, recover=recover, model=PersistencyModel.adr())
    assert report.states_checked == len(want.judged)
    assert report.inconsistent == len(want.failing)
    assert report.errors == 0


def test_a_recovery_program_printing_binary_is_compared_byte_for_byte(tmp_path: Path) -> None:
    """Two different records that are not UTF-8 must not compare equal (both decoded to U+FFFD)."""
    script = tmp_path / "dump.py"
    script.write_text(
        "import sys\n"
        "data = open(sys.argv[-1], 'rb').read()\n"
        "sys.stdout.buffer.write(data[64:80] if data[0:8] == b'COMMITED' else b'')\n"
    )

    def dump(image: Any) -> bytes:  # the same recovery in Python: the reference
        return bytes(image[64:80]) if bytes(image[0:8]) == b"COMMITED" else b""

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("OP.BEGIN")
    rec.store("pool", 64, b"\x80" * 16)
    rec.persist("pool", 64, 16)
    rec.store("pool", 0, b"COMMITED")
    rec.persist("pool", 0, 8)
    rec.mark("OP.END")
    rec.mark("OP.BEGIN")  # BUG: a 16-byte record updated in place, two atomic words
    rec.store("pool", 64, b"\x81" * 16)
    rec.persist("pool", 64, 16)
    rec.mark("OP.END")
    reference = replay(rec.log, recover=dump)
    assert reference.inconsistent == 1  # the torn record: one word old, one new
    report = replay(rec.log, recover=[sys.executable, "-I", "-S", str(script)])
    assert (report.inconsistent, report.errors) == (1, 0), report.summary()
    json.dumps(report.to_dict())  # the values shown stay printable


def test_a_recovery_program_printing_its_image_path_gets_the_same_value_everywhere(tmp_path: Path) -> None:
    """The copy's path is pmemsim's (a directory per process and per open), not part of the value."""
    script = tmp_path / "dump.py"
    script.write_text(
        "import sys\n"
        "path = sys.argv[-1]\n"
        "data = open(path, 'rb').read()\n"
        "print(f'pool {path}:', data[64:80] if data[0:8] == b'COMMITED' else None)\n"
    )
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("OP.BEGIN")
    rec.store("pool", 64, b"record. record. ")
    rec.persist("pool", 64, 16)
    rec.store("pool", 0, b"COMMITED")
    rec.persist("pool", 0, 8)
    rec.mark("OP.END")
    command = [sys.executable, "-I", "-S", str(script)]
    report = replay(rec.log, recover=command)
    assert report.ok and report.states_checked, report.summary()
    assert replay(rec.log, recover=command, workers=2) == report
