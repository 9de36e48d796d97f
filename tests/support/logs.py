"""A hypothesis strategy for small random store logs that stress the x86 crash model.

:func:`store_logs` draws one to three files (all-zero images with no path, or given
initial bytes) and a sequence of records aimed at the model's corners: stores that share
a word or a line, unaligned stores, 16-byte stores and stores across a line boundary,
non-temporal stores, stores that write the bytes already there, flushes of part of a
line, of a whole file, of another file and of no file (``""``), fences with and without
flushes, nested ``NAME.BEGIN`` / ``NAME.END`` sections (some with a ``;`` suffix) and
plain notes. The log is cut at the last record that keeps at most ``max_in_flight``
atoms in flight at every crash point under ADR with a 64-byte flush unit, the model that
keeps the most in flight, so the brute-force oracle stays cheap under every model; open
sections are then closed, and logs often end with stores still in flight.
"""

from __future__ import annotations

from hypothesis import strategies as st

from pmemsim.persistence.log import Fence, FileInfo, Flush, Marker, Record, Store, StoreLog
from support.x86_oracle import LINE, crash_points

__all__ = ["store_logs"]

KEYS = ("a", "b", "c")
SECTIONS = ("TX", "OP", "ALLOC")
NOTES = ("note", "TX.BEGIN.not-a-section", "checkpoint;TX.END", "OP.MIDDLE")


@st.composite
def _initial(draw: st.DrawFn, size: int) -> bytes | None:
    kind = draw(st.sampled_from(["zeros", "pattern", "random"]))
    if kind == "zeros":
        return None
    if kind == "pattern":
        return bytes((i * 7 + 3) % 256 for i in range(size))
    return draw(st.binary(min_size=size, max_size=size))


@st.composite
def _store(draw: st.DrawFn, files: list[FileInfo], serial: int, nontemporal: bool) -> Store:
    info = draw(st.sampled_from(files))
    # Most stores land in the first two lines so that stores share words and lines.
    hot = min(info.size, 2 * LINE)
    kind = draw(st.sampled_from(["word", "word", "small", "sixteen", "across", "anywhere"]))
    if kind == "word":
        offset, length = 8 * draw(st.integers(0, hot // 8 - 1)), 8
    elif kind == "small":
        offset = draw(st.integers(0, hot - 1))
        length = draw(st.integers(1, min(8, info.size - offset)))
    elif kind == "sixteen":
        offset = draw(st.integers(0, hot - 16))
        length = 16
    elif kind == "across":
        line = draw(st.integers(1, info.size // LINE - 1))
        offset = line * LINE - draw(st.integers(1, 12))
        length = draw(st.integers(LINE * line - offset + 1, min(24, info.size - offset)))
    else:
        length = draw(st.integers(1, 8))
        offset = draw(st.integers(0, info.size - length))
    style = draw(st.sampled_from(["fresh", "fresh", "fresh", "unchanged", "zeros"]))
    if style == "fresh":  # distinct bytes per store, never zero: every atom shows in the image
        data = bytes((serial * 37 + i) % 251 + 1 for i in range(length))
    elif style == "unchanged":  # the bytes already in the initial image: a store that changes nothing
        initial = info.initial if info.initial is not None else bytes(info.size)
        data = initial[offset : offset + length]
    else:
        data = bytes(length)
    nt = nontemporal and draw(st.integers(0, 3)) == 0
    return Store(info.key, offset, data, nontemporal=nt)


@st.composite
def _flush(draw: st.DrawFn, files: list[FileInfo]) -> Flush:
    kind = draw(st.sampled_from(["line", "line", "part", "file", "range", "nothing"]))
    if kind == "nothing":
        return Flush("", draw(st.integers(0, 4096)), draw(st.integers(1, 64)))
    info = draw(st.sampled_from(files))
    if kind == "file":
        return Flush(info.key, 0, info.size)
    if kind == "line":
        return Flush(info.key, LINE * draw(st.integers(0, info.size // LINE - 1)), LINE)
    if kind == "part":  # a few bytes somewhere: flushes their whole flush unit
        offset = draw(st.integers(0, info.size - 1))
        return Flush(info.key, offset, draw(st.integers(1, min(8, info.size - offset))))
    offset = draw(st.integers(0, info.size - 1))
    return Flush(info.key, offset, draw(st.integers(1, info.size - offset)))


def _closing(records: list[Record]) -> list[Record]:
    """END markers for the sections still open at the end of ``records``, innermost first."""
    stack: list[str] = []
    for rec in records:
        if isinstance(rec, Marker):
            head = rec.name.split(";", 1)[0]
            if head.endswith(".BEGIN"):
                stack.append(head.split(".", 1)[0])
            elif head.endswith(".END"):
                stack.pop()
    return [Marker(f"{name}.END") for name in reversed(stack)]


@st.composite
def store_logs(
    draw: st.DrawFn,
    *,
    max_files: int = 3,
    max_records: int = 24,
    max_in_flight: int = 8,
    sizes: tuple[int, ...] = (128, 256, 512),
    nontemporal: bool = True,
    markers: bool = True,
) -> StoreLog:
    """A random :class:`StoreLog` with at least one store and at most ``max_in_flight`` atoms in flight.

    ``sizes`` are the file sizes to choose from (multiples of 64, at least 128).
    """
    log = StoreLog()
    for key in KEYS[: draw(st.integers(1, max_files))]:
        size = draw(st.sampled_from(sizes))
        log.add_file(FileInfo(key, None, size, draw(_initial(size))))
    files = list(log.files.values())

    records: list[Record] = [draw(_store(files, 0, nontemporal))]
    open_sections: list[str] = []
    kinds = ["store", "store", "store", "flush", "flush", "fence", "persist"]
    if markers:
        kinds += ["begin", "end", "note"]
    for serial in range(1, draw(st.integers(0, max_records - 1)) + 1):
        kind = draw(st.sampled_from(kinds))
        if kind == "store":
            records.append(draw(_store(files, serial, nontemporal)))
        elif kind == "flush":
            records.append(draw(_flush(files)))
        elif kind == "fence":
            records.append(Fence())
        elif kind == "persist":
            records += [draw(_flush(files)), Fence()]
        elif kind == "begin":
            free = [s for s in SECTIONS if s not in open_sections]
            if free:
                name = draw(st.sampled_from(free))
                open_sections.append(name)
                suffix = draw(st.sampled_from(["", "", f";{serial}"]))
                records.append(Marker(f"{name}.BEGIN{suffix}"))
        elif kind == "end":
            if open_sections:
                suffix = draw(st.sampled_from(["", "", f";{serial}"]))
                records.append(Marker(f"{open_sections.pop()}.END{suffix}"))
        else:
            records.append(Marker(draw(st.sampled_from(NOTES))))

    log.records = records
    keep = len(records)
    for point in crash_points(log):
        if len(point.in_flight) > max_in_flight:
            keep = point.prefix - 1
            break
    del records[keep:]
    records += _closing(records)
    return log
