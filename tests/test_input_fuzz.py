"""Fuzzing the two file readers users hand arbitrary files to: the scenario loader and the
results reader behind ``pmemsim report``. Whatever the bytes, the only exception is the
documented one (ScenarioError, ResultsError), every problem is one line, and loading
never allocates more than a few megabytes.

Inputs: the shipped scenarios and a valid results file, mutated structurally (a value
replaced by a hostile one: huge, negative, NaN, deep, long, a path out of the folder, a
device) or textually (characters inserted, deleted, replaced, and whole hostile
constructs spliced in: 600-deep nesting, 5,000-digit numbers, repeat bombs), plus
random TOML text and random bytes.

Memory: every input here is at most about a hundred kilobytes, so only an amplification in the
reader (a ``repeat``, a size, a depth read from the file and acted on) could use much
memory. Each example checks that the process's peak resident size grew by less than
256 MiB while reading it: the peak is reset before each example (``/proc/self/clear_refs``)
where Linux allows it, else measured from the start of the property (``ru_maxrss`` only
grows). A bounded reader never approaches that and the old loader (1 GiB from a 213-byte
``repeat``) exceeded it; what earlier tests in the same process used does not count.
``test_hostile_scenarios`` holds the exact amplification cases with a tighter per-call bound.

CI runs the ``ci`` hypothesis profile (100 derandomized examples per property, a few
seconds); ``pytest -m slow tests/test_input_fuzz.py`` runs 10,000 examples of each.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmemsim.report.results import ResultsError, load_results
from pmemsim.scenario import ScenarioError, load_scenario, loads_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
SHIPPED = {p.name: p.read_text(encoding="utf-8") for p in sorted(SCENARIOS.glob("*.toml"))}
SHIPPED_DOCS = {name: tomllib.loads(text) for name, text in SHIPPED.items()}

_GROWTH_KIB = 256 * 1024
#: The resident size an example's growth is measured from (set by _start_example).
_baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

LONG_PROFILE = 10_000


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration, ValueError):
        return None


def _start_example() -> None:
    """Measure the next example's peak from now: reset the kernel's peak (VmHWM) to the current size."""
    global _baseline_kib
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux 4.0 and later: the peak RSS starts over from the current RSS
        now = _status_kib("VmRSS")
    except OSError:
        now = None
    if now is not None:
        _baseline_kib = now
    # Else the baseline stays where the property started: ru_maxrss cannot be reset.


def _peak_kib() -> int:
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _memory_stays_bounded() -> None:
    grown = _peak_kib() - _baseline_kib
    assert grown < _GROWTH_KIB, f"peak RSS grew by {grown} KiB while reading fuzzed input"


# -- a tiny TOML writer (inline tables and arrays only; enough for any parsed document) ----------


def _toml_key(key: str) -> str:
    return json.dumps(key)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (JSON string escapes are TOML basic-string escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # dates and times: written as strings


def toml_document(doc: Any) -> str:
    if not isinstance(doc, dict):  # the mutation replaced the whole document
        doc = {"value": doc}
    return "".join(f"{_toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


# -- hostile values and mutations ------------------------------------------------------------------

HOSTILE_STRINGS = [
    "",
    "..",
    "../../etc/passwd",
    "/dev/zero",
    "/etc/passwd",
    "a\x00b",
    "a\nb",
    "x" * 300,
    "check_committed.py",
    ".",
    "sub/",
    "a.end-0x" + "f" * 20,
    "a+99999999999999999999",
    "Random:1:999999",
    "m:f",
    "{python}",
    "NaN",
]
HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    3,
    4095,
    4096,
    1 << 30,
    1 << 46,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
    1 << 64,
    -(1 << 63),
    float("nan"),
    float("inf"),
    -0.0,
    1e300,
    0.5,
    True,
]


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


hostile_values = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.integers(0, 40).map(nested),
    st.lists(st.sampled_from(HOSTILE_NUMBERS + HOSTILE_STRINGS), max_size=5),
    st.dictionaries(st.sampled_from(["op", "name", "size", "at", "x"]), st.integers(), max_size=3),
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


ADDED_KEYS = ["size", "repeat", "image", "file", "timeout", "addr", "zz", "length"]


@st.composite
def mutated_document(draw: st.DrawFn, docs: dict[str, Any]) -> Any:
    """A parsed document with 1-3 values replaced, keys added or removed."""
    doc = docs[draw(st.sampled_from(sorted(docs)))]
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        target = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "add", "drop"]))
        parent = _get(doc, target)
        if action == "add" and isinstance(parent, dict):
            key = draw(st.sampled_from(ADDED_KEYS))
            doc = _replace(doc, target, {**parent, key: draw(hostile_values)})
        elif action == "drop" and target:
            container = _get(doc, target[:-1])
            if isinstance(container, dict):
                doc = _replace(doc, target[:-1], {k: v for k, v in container.items() if k != target[-1]})
            else:
                doc = _replace(doc, target[:-1], [v for i, v in enumerate(container) if i != target[-1]])
        else:
            doc = _replace(doc, target, draw(hostile_values))
    return doc


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


# Whole hostile constructs, spliced into text: what a character-level edit rarely builds.
HOSTILE_SNIPPETS = [
    "x = " + "[" * 600 + "]" * 600 + "\n",
    "x = " + "{a = " * 600 + "1" + "}" * 600 + "\n",
    "[" + ".".join(["a"] * 40) + "]\n",
    "x = " + "9" * 5000 + "\n",
    "addr = 0x" + "f" * 5000 + "\n",
    "\nrepeat = 16777216\n",
    "\nrepeat = 1073741824\n",
    "\ntimeout = nan\n",
    '\nimage = "/dev/zero"\n',
    '\nimage = "../../../../etc/passwd"\n',
    '\nfile = "a\\u0000b"\n',
    'addr = "a+0123"\n',
    'addr = "a.end-0x10000000000000000"\n',
    "\n[space]\npage_size = 3\n",
    '\n[[steps]]\nop = "drain"\n',
    "\n[[space.occupied]]\nat = 0\nsize = 70368744177664\n",
    "backends = [" + ", ".join(['"sim"'] * 10_001) + "]\n",
]

TOML_ALPHABET = st.sampled_from([*"[]{}=,.\"'#\n \\0123456789abcdefxyz_-+:", "\x00", "é", "\ud800"])


@st.composite
def mutated_text(draw: st.DrawFn, texts: dict[str, str]) -> str:
    """A text with 0-4 character-level edits, then, half the time, a hostile construct spliced
    in at a line start (after the edits, so that they rarely hide it behind a syntax error)."""
    text = texts[draw(st.sampled_from(sorted(texts)))]
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        piece = draw(st.text(TOML_ALPHABET, max_size=12))
        if edit == "insert":
            text = text[:i] + piece + text[i:]
        elif edit == "delete":
            text = text[:i] + text[j:]
        elif edit == "replace":
            text = text[:i] + piece + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    if draw(st.booleans()):
        # Right after a table header (or at the end): never inside a multi-line string.
        spots = [m.end() for m in re.finditer(r"^\[[^\n]*\]\n", text, re.MULTILINE)] + [len(text)]
        i = draw(st.sampled_from(spots))
        text = text[:i] + draw(st.sampled_from(HOSTILE_SNIPPETS)) + text[i:]
    return text


# -- the properties -----------------------------------------------------------------------------------


def check_scenario_text(text: str) -> None:
    """Loading ``text`` next to the shipped scenarios returns a Scenario or raises ScenarioError."""
    _start_example()
    try:
        loads_scenario(text, SCENARIOS / "fuzzed.toml")
    except ScenarioError as exc:
        assert exc.problems
        for problem in exc.problems:
            line = str(problem)
            assert "\n" not in line, line
            assert line.startswith(f"{SCENARIOS / 'fuzzed.toml'}"), line
    _memory_stays_bounded()


def check_scenario_bytes(data: bytes) -> None:
    """Through the file reader: bytes that may not even be UTF-8."""
    _start_example()
    with tempfile.NamedTemporaryFile("wb", suffix=".toml", dir=_TMP, delete=False) as f:
        f.write(data)
    try:
        load_scenario(f.name)
    except ScenarioError as exc:
        assert all("\n" not in str(p) for p in exc.problems), str(exc)
    finally:
        os.unlink(f.name)
    _memory_stays_bounded()


def check_results_text(text: str) -> None:
    _start_example()
    with tempfile.NamedTemporaryFile("wb", suffix=".json", dir=_TMP, delete=False) as f:
        f.write(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: bytes that are not UTF-8
    try:
        load_results(f.name)
    except ResultsError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f.name), str(exc)
    finally:
        os.unlink(f.name)
    _memory_stays_bounded()


_TMP = tempfile.mkdtemp(prefix="pmemsim-fuzz-")

RESULTS_DOC = {
    "format": "pmemsim-results",
    "version": 1,
    "runs": [
        {
            "name": "scenarios/a.toml",
            "kind": "scenario",
            "backend": "sim",
            "outcome": "passed",
            "duration": 0.01,
            "message": "",
            "errors": {"PMEMSET_E_CANNOT_COALESCE_PARTS": 1},
        },
        {"name": "t::x", "kind": "test", "backend": "mmap", "outcome": "failed", "errors": {}},
    ],
}


def _json_text(doc: Any) -> str:
    # allow_nan: the writer may produce NaN/Infinity, which the reader must refuse cleanly.
    return json.dumps(doc, allow_nan=True, default=str)


PROPERTIES: dict[str, tuple[Callable[[Any], None], st.SearchStrategy[Any]]] = {
    "scenario_structure": (
        check_scenario_text,
        mutated_document(SHIPPED_DOCS).map(toml_document),
    ),
    "scenario_text": (check_scenario_text, mutated_text(SHIPPED)),
    "scenario_random_toml": (check_scenario_text, st.text(TOML_ALPHABET, max_size=200)),
    "scenario_bytes": (check_scenario_bytes, st.binary(max_size=200)),
    "results_structure": (
        check_results_text,
        mutated_document({"results": RESULTS_DOC}).map(_json_text),
    ),
    "results_text": (check_results_text, mutated_text({"results": json.dumps(RESULTS_DOC, indent=1)})),
}


def _run(name: str, max_examples: int | None = None) -> None:
    global _baseline_kib
    _baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # without clear_refs
    check, strategy = PROPERTIES[name]
    test = given(strategy)(check)
    if max_examples is not None:
        # Not derandomized: each long run explores new examples.
        test = settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )(test)
    else:
        test = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])(test)
    test()


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_fuzz(name: str) -> None:
    _run(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_fuzz_long(name: str, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long profile runs with `pytest -m slow`")
    _run(name, LONG_PROFILE)


def test_the_writer_round_trips_the_shipped_scenarios() -> None:
    # The structural mutations rely on toml_document writing what tomllib reads back.
    for name, doc in SHIPPED_DOCS.items():
        assert tomllib.loads(toml_document(doc)) == doc, name
        assert loads_scenario(toml_document(doc), SCENARIOS / name).steps


@pytest.mark.parametrize("snippet", range(len(HOSTILE_SNIPPETS)))
def test_every_hostile_construct_after_every_table_header(snippet: int) -> None:
    # The fuzzer splices these in at random; here every one goes after every header of
    # three shipped scenarios, so CI covers each construct whatever the random draws.
    for name in ("memory_operations.toml", "crash_commit_correct.toml", "reservation_fit.toml"):
        text = SHIPPED[name]
        spots = [m.end() for m in re.finditer(r"^\[[^\n]*\]\n", text, re.MULTILINE)] + [len(text)]
        for i in spots:
            check_scenario_text(text[:i] + HOSTILE_SNIPPETS[snippet] + text[i:])
