"""Inputs for the pmemcheck readers' fuzzers: real valgrind logs, exports, and mutations of them.

Shared by tests/test_log_readers_fuzz.py (the hardened reader) and
tests/test_pmemcheck_streaming.py (the streaming reader against the full one).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from pmemsim.persistence import dumps_pmemcheck
from support.examples import BUGGY, CORRECT

DATA = Path(__file__).parent.parent / "data" / "pmemcheck"

VALGRIND_LOGS = [p.read_text() for p in sorted(DATA.glob("*.log"))]
EXPORTED = [dumps_pmemcheck(e.log) for e in [CORRECT[0], *list(BUGGY.values())[:2]]]

PMEMCHECK_TOKENS = [
    "|", ";", "\n", "\r", " ", "\x00", "==1== ", "--1-- ", "START", "STOP", "FENCE", "STORE;", "FLUSH;",
    "REGISTER_FILE;/p;", "DEEP_SYNC", "COMMIT", ".BEGIN", ".END", "0x", "-", "f" * 17, "0" * 40, "8", "0x7f",
    "ffffffffffffffff", "1" + "0" * 30, "é", "\udcff",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, bases: list[str], tokens: list[str]) -> str:
    """A base text with one to four random edits: insert, delete, duplicate, replace, cut."""
    text = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "replace", "cut"]))
        if kind == "insert":
            piece = draw(st.one_of(st.sampled_from(tokens), st.text(max_size=8)))
            text = text[:pos] + piece + text[pos:]
        elif kind in ("delete", "duplicate"):
            end = draw(st.integers(pos, min(len(text), pos + 64)))
            text = text[:pos] + (text[pos:end] * 2 if kind == "duplicate" else "") + text[end:]
        elif kind == "replace" and pos < len(text):
            text = text[:pos] + draw(st.sampled_from(tokens)) + text[pos + 1 :]
        elif kind == "cut":
            text = text[:pos]
    return text


PMEMCHECK_TEXT = st.one_of(
    mutated(VALGRIND_LOGS + EXPORTED, PMEMCHECK_TOKENS),
    mutated(VALGRIND_LOGS + EXPORTED, PMEMCHECK_TOKENS),
    st.lists(st.sampled_from(PMEMCHECK_TOKENS), max_size=40).map(lambda t: "START|" + "".join(t)),
    st.text(max_size=200).map(lambda t: "START|" + t),
    st.text(max_size=50),
)
