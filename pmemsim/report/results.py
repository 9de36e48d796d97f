"""The results JSON: one record per run (a scenario on a backend, or a test), with the
error paths it reached. ``pmemsim run --json``/``--results``, the pytest plugin's
``--pmemsim-report`` and ``pmemsim report --from`` all speak this one format::

    {"format": "pmemsim-results", "version": 1,
     "runs": [{"name": "scenarios/coalesce_full.toml", "kind": "scenario", "backend": "sim",
               "outcome": "passed", "duration": 0.01, "message": "",
               "errors": {"PMEMSET_E_CANNOT_COALESCE_PARTS": 1}}]}

``errors`` counts every PmemsetError created during the run, by C name
(``PMEMSET_E_*`` or an errno name such as ``ENOMEM``). A run of a fault sweep also has
``"fault": {"site": "os.msync", "hit": 3, "outcome": "raised"}``: the one hit it failed
and how the code under test took it (:class:`FaultOutcome`); other runs have no ``fault``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from pmemsim._files import InputFileError, read_regular_file, why_refused
from pmemsim.errors import PmemsetError, add_error_observer, remove_error_observer
from pmemsim.faults import as_site

__all__ = [
    "FORMAT",
    "MAX_RESULTS_BYTES",
    "VERSION",
    "ErrorCounter",
    "FaultOutcome",
    "FaultRun",
    "Outcome",
    "ResultsError",
    "ResultsFile",
    "RunKind",
    "RunResult",
    "load_results",
]

FORMAT = "pmemsim-results"
VERSION = 1


class RunKind(StrEnum):
    """What produced a run record."""

    SCENARIO = "scenario"
    TEST = "test"


class Outcome(StrEnum):
    """How a run ended."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


class FaultOutcome(StrEnum):
    """How a run of a fault sweep took the one failure it injected.

    ``handled`` and ``raised`` are what correct code does (which of them a test wants,
    it says); the others are misbehaviour.
    """

    HANDLED = "handled"  # the run passed: the code under test dealt with the error
    RAISED = "raised"  # the injected failure's PmemsetError escaped, and nothing else went wrong
    UNHANDLED = "unhandled"  # the PmemsetError escaped where the test wants it handled
    SWALLOWED = "swallowed"  # the run passed where the test wants the error to escape
    FAILED = "failed"  # anything else: an assertion, another exception, a changed state
    LEAKED = "leaked"  # a mapping, reservation, descriptor or temporary file outlived the run
    UNREACHED = "unreached"  # the hit never came: the run did not do what the counting run did

    @property
    def ok(self) -> bool:
        """True for the outcomes correct code has (handled, raised)."""
        return self in (FaultOutcome.HANDLED, FaultOutcome.RAISED)


@dataclass(frozen=True)
class FaultRun:
    """The fault of one sweep run: the ``hit``-th arrival at ``site`` failed, with ``outcome``."""

    site: str
    hit: int
    outcome: FaultOutcome

    @property
    def point(self) -> str:
        """``"os.msync@3"``."""
        return f"{self.site}@{self.hit}"


@dataclass(frozen=True)
class RunResult:
    """One run: a scenario on one backend, or one test; ``fault`` is set for a run of a fault sweep."""

    name: str
    kind: RunKind
    backend: str
    outcome: Outcome
    errors: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    message: str = ""
    fault: FaultRun | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (no ``fault`` key for a run that is not part of a sweep)."""
        d = asdict(self)
        d["kind"] = str(self.kind)
        d["outcome"] = str(self.outcome)
        if self.fault is None:
            del d["fault"]
        else:
            d["fault"]["outcome"] = str(self.fault.outcome)
        return d

    @classmethod
    def from_json(cls, data: object, where: str = "") -> RunResult:
        """Parse one run record; ResultsError (a ValueError) naming ``where`` and the bad key."""
        return _run_from_json(data, where, (where.rsplit(": ", 1)[-1] if where else "run"), None)


@dataclass
class ResultsFile:
    """A list of runs, read from or written to the results JSON."""

    runs: list[RunResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"format": FORMAT, "version": VERSION, "runs": [r.to_json() for r in self.runs]}

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file (creating parent directories)."""
        parent = os.path.dirname(os.fspath(path))
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, sort_keys=True)
            f.write("\n")


#: Largest results file read: about 200,000 runs.
MAX_RESULTS_BYTES = 64 << 20
#: Deepest nesting a results file needs is 4 (document, runs, run, errors or fault); more is refused.
MAX_DEPTH = 8
#: Largest error count and duration (seconds) a run may claim.
MAX_COUNT = (1 << 63) - 1
MAX_DURATION = 1e9


class ResultsError(ValueError):
    """A results file that cannot be read: ``file``, ``line`` (None when unknown), ``field``, reason.

    ``str()`` is one line: ``FILE[:LINE]: FIELD: REASON``.
    """

    def __init__(self, file: str, line: int | None, field: str, reason: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {reason}")


def _what(value: object) -> str:
    kind = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    word = kind.get(type(value))
    if word is None:
        word = "a number"
    text = repr(value) if isinstance(value, bool | float | str) or value is None else ""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(value)) if value.bit_length() < 1000 else None
        text = str(value) if digits is not None and digits <= 40 else "(a very large integer)"
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{word} {text}".rstrip()


def _value_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The line on which each value of a JSON document starts, by key path (``("runs", 0, "name")``).

    A small scanner over a document ``json`` already accepted (so it is well formed):
    strings are skipped whole, and every object key and array element records where its
    value starts. Runtime: O(len(text)).
    """
    lines: dict[tuple[str | int, ...], int] = {}
    stack: list[list[Any]] = []  # per open container: [path, is_array, next index or pending key]
    line, i, n = 1, 0, len(text)
    key: str | None = None

    def start_value() -> tuple[str | int, ...] | None:
        nonlocal key
        if not stack:
            return ()
        path, is_array, slot = stack[-1]
        if is_array:
            stack[-1][2] = slot + 1
            return (*path, slot)
        if key is None:
            return None
        at, key = (*path, key), None
        return at

    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            literal = text[i : j + 1]
            if stack and not stack[-1][1] and key is None and _is_key(text, j + 1):
                key = json.loads(literal)
            else:
                at = start_value()
                if at is not None:
                    lines[at] = line
            i = j
        elif c in "{[":
            at = start_value()
            at = () if at is None else at
            lines[at] = line
            stack.append([at, c == "[", 0])
        elif c in "}]":
            stack.pop()
        elif c not in " \t\r,:":
            at = start_value()  # a number, true, false or null
            if at is not None:
                lines[at] = line
            while i + 1 < n and text[i + 1] not in " \t\r\n,]}":
                i += 1
        i += 1
    return lines


def _is_key(text: str, i: int) -> bool:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i < len(text) and text[i] == ":"


def _run_from_json(
    data: object,
    file: str,
    field: str,
    line: int | None,
    lines: dict[tuple[str | int, ...], int] | None = None,
) -> RunResult:
    where = tuple(int(p) if p.isdigit() else p for p in field.replace("[", ".").replace("]", "").split("."))

    def bad(key: str, reason: str) -> ResultsError:
        at = (lines or {}).get((*where, key.split(".")[0]) if key else where, line)
        if at is None and lines:
            at = lines.get(where)
        return ResultsError(file, at, f"{field}.{key}" if key else field, reason)

    if not isinstance(data, dict):
        raise bad("", f"a run must be an object, got {_what(data)}")

    def text(key: str, default: str | None = None) -> str:
        if key not in data:
            if default is None:
                raise bad("", f"run is missing the key {key!r}")
            return default
        value = data[key]
        if not isinstance(value, str):
            raise bad(key, f"expected a string, got {_what(value)}")
        return value

    def choice(key: str, enum: type[RunKind] | type[Outcome]) -> Any:
        value = text(key)
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in enum)
            raise bad(key, f"expected one of {allowed}, got {_what(value)}") from None

    errors = data.get("errors", {})
    if not isinstance(errors, dict):
        raise bad("errors", f"expected an object mapping error names to counts, got {_what(errors)}")
    for name, count in errors.items():
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise bad(f"errors.{name[:60]}", f"expected a count from 0 to {MAX_COUNT}, got {_what(count)}")
    duration = data.get("duration", 0.0)
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not 0 <= duration <= MAX_DURATION  # also refuses nan
    ):
        reason = f"expected a number of seconds from 0 to {MAX_DURATION:g}, got {_what(duration)}"
        raise bad("duration", reason)
    return RunResult(
        name=text("name"),
        kind=choice("kind", RunKind),
        backend=text("backend"),
        outcome=choice("outcome", Outcome),
        errors=dict(errors),
        duration=float(duration),
        message=text("message", ""),
        fault=_fault_from_json(data.get("fault"), bad),
    )


#: Largest hit number a results file may name.
MAX_HIT = 1 << 31


def _fault_from_json(value: object, bad: Any) -> FaultRun | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad("fault", f"expected an object with site, hit and outcome, got {_what(value)}")
    site = value.get("site")
    if not isinstance(site, str):
        raise bad("fault.site", f"expected a fault site name, got {_what(site)}")
    try:
        as_site(site)
    except ValueError:
        raise bad("fault.site", f"unknown fault site {_what(site)}") from None
    hit = value.get("hit")
    if isinstance(hit, bool) or not isinstance(hit, int) or not 1 <= hit <= MAX_HIT:
        raise bad("fault.hit", f"expected a hit number from 1 to {MAX_HIT}, got {_what(hit)}")
    outcome = value.get("outcome")
    try:
        kind = FaultOutcome(outcome) if isinstance(outcome, str) else None
    except ValueError:
        kind = None
    if kind is None:
        allowed = ", ".join(repr(m.value) for m in FaultOutcome)
        raise bad("fault.outcome", f"expected one of {allowed}, got {_what(outcome)}")
    return FaultRun(site=site, hit=hit, outcome=kind)


def _depth_problem(data: object) -> str | None:
    """The key path of the first value nested deeper than MAX_DEPTH (iteratively), or None."""
    stack: list[tuple[object, str, int]] = [(data, "(top level)", 0)]
    while stack:
        value, path, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_DEPTH:
            return path
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            sub = f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}"
            stack.append((v, sub.removeprefix("(top level)").lstrip("."), depth + 1))
    return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def load_results(path: str | os.PathLike[str]) -> ResultsFile:
    """Read a results file; :class:`ResultsError` (a ValueError) naming the file, line and field.

    The file is refused unless it is a regular file of at most :data:`MAX_RESULTS_BYTES`
    (opened without blocking, so a FIFO or a device is never waited on or read); JSON
    nested too deeply, numbers with thousands of digits, NaN and Infinity, and every
    field of the wrong type or out of range are reported, never raised as anything else.
    """
    p = os.fspath(path)
    try:
        raw = read_regular_file(p, MAX_RESULTS_BYTES, "results")
    except (OSError, InputFileError) as exc:
        raise ResultsError(p, None, "(file)", f"cannot read results: {why_refused(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ResultsError(p, line, "(file)", "not UTF-8 text") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ResultsError(p, exc.lineno, "(syntax)", f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ResultsError(p, None, "(syntax)", f"JSON nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with thousands of digits
        reason = str(exc) if "JSON allows" in str(exc) else "a number with thousands of digits"
        raise ResultsError(p, None, "(syntax)", reason) from None
    deep = _depth_problem(data)
    if deep is not None:
        raise ResultsError(p, None, deep or "(top level)", f"nested more than {MAX_DEPTH} levels deep")
    lines = _value_lines(text)  # where each value starts, to name the line of a problem
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultsError(
            p, lines.get(("format",)), "format", f'not a pmemsim results file (missing "format": {FORMAT!r})'
        )
    version = data.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise ResultsError(
            p,
            lines.get(("version",)),
            "version",
            f"results version {_what(version)} is not supported (expected {VERSION})",
        )
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise ResultsError(p, lines.get(("runs",)), "runs", f"expected an array of runs, got {_what(runs)}")
    return ResultsFile([_run_from_json(r, p, f"runs[{i}]", None, lines) for i, r in enumerate(runs)])


class ErrorCounter:
    """Counts the PmemsetErrors created while active: ``with ErrorCounter() as c: ...; c.counts``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def _seen(self, exc: PmemsetError) -> None:
        self.counts[exc.name] += 1

    def __enter__(self) -> ErrorCounter:
        add_error_observer(self._seen)
        return self

    def __exit__(self, *exc_info: object) -> None:
        remove_error_observer(self._seen)
