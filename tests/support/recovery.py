"""The brute-force judge of durable linearizability, and random logs with operations.

The expected verdicts come from the crash oracle (``support.x86_oracle``) and the
definition alone: a crash right before record ``p`` lies between the outermost section
markers around it, and each image it can leave must recover to the value before that
stretch or after it, the values being recovery of the image with every store up to the
boundary applied. Nothing of pmemsim's exploration is used. Shared by
tests/test_linearizability.py and tests/test_review_recover.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from pmemsim.persistence import Marker, Store, StoreLog
from support.logs import store_logs
from support.x86_oracle import OracleModel, crash_points, images_at


def outermost_boundaries(records: Sequence[object]) -> list[int]:
    """Record indexes of the BEGIN/END markers of outermost sections (names up to ';' ending .BEGIN/.END)."""
    out, depth = [], 0
    for i, rec in enumerate(records):
        if not isinstance(rec, Marker):
            continue
        head = rec.name.split(";", 1)[0]
        if head.endswith(".BEGIN"):
            if depth == 0:
                out.append(i)
            depth += 1
        elif head.endswith(".END"):
            depth -= 1
            if depth == 0:
                out.append(i)
    return out


def memory_after(log: StoreLog, upto: int) -> tuple[bytes, ...]:
    """Every file's bytes with the stores of ``records[:upto]`` applied in order (no crash)."""
    files = {k: bytearray(info.initial if info.initial is not None else bytes(info.size))
             for k, info in log.files.items()}  # fmt: skip
    for rec in log.records[:upto]:
        if isinstance(rec, Store):
            files[rec.file][rec.offset : rec.offset + len(rec.data)] = rec.data
    return tuple(bytes(b) for b in files.values())


class Raised(Exception):
    """A recovery that raised, as the oracle records it."""


def value_of(recover: Callable[[Any], object], image: tuple[bytes, ...]) -> object:
    if len(image) == 1:
        return recover(memoryview(image[0]))
    return tuple(recover(memoryview(b)) for b in image)


@dataclasses.dataclass
class Expected:
    boundary_fails: bool
    judged: set[tuple[tuple[bytes, ...], int]]
    failing: set[tuple[tuple[bytes, ...], int]]


def expected(log: StoreLog, recover: Callable[[Any], object], model: OracleModel) -> Expected:
    bounds = outermost_boundaries(log.records)
    edges = [0, *bounds, len(log.records)]
    try:
        values = [value_of(recover, memory_after(log, b)) for b in edges]
    except Exception:
        return Expected(True, set(), set())
    keys = list(log.files)
    judged, failing = set(), set()
    for point in crash_points(log, model):
        step = sum(1 for b in bounds if b < point.prefix)
        allowed = (values[step], values[step + 1])
        for image in images_at(point, keys):
            judged.add((image, step))
            try:
                got = value_of(recover, image)
            except Exception:
                failing.add((image, step))
                continue
            if got not in allowed:
                failing.add((image, step))
    return Expected(False, judged, failing)


# Recoveries from strict (every byte counts) to loose (a few bits), and one that raises on some images.
def whole(image: memoryview) -> bytes:
    return bytes(image)


def first_word(image: memoryview) -> bytes:
    return bytes(image[0:8])


def byte_sum_mod_3(image: memoryview) -> int:
    return sum(image[0:64]) % 3


def picky(image: memoryview) -> bytes:
    if image[0] % 3 == 1:
        raise ValueError(f"byte 0 is {image[0]}")
    return bytes(image[0:16])


RECOVERIES = [whole, first_word, byte_sum_mod_3, picky]


@st.composite
def logs_with_operations(draw: st.DrawFn, max_records: int = 16) -> StoreLog:
    """Random logs (:func:`store_logs`) with up to two more operations wrapped around stretches at top level.

    Markers change no crash image, so the oracle's cost stays that of the log drawn.
    """
    log = draw(store_logs(max_records=max_records, max_in_flight=6))
    for _ in range(draw(st.integers(0, 2))):
        depth, top = 0, [0]
        for i, rec in enumerate(log.records):
            if isinstance(rec, Marker):
                head = rec.name.split(";", 1)[0]
                depth += head.endswith(".BEGIN") - head.endswith(".END")
            if depth == 0:
                top.append(i + 1)
        start = draw(st.sampled_from(top))
        end = draw(st.sampled_from([t for t in top if t >= start]))
        log.records[start:end] = [Marker("W.BEGIN"), *log.records[start:end], Marker("W.END")]
    return log
