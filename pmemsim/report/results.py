"""The results JSON: one record per run (a scenario on a backend, or a test), with the
error paths it reached. ``pmemsim run --json``/``--results``, the pytest plugin's
``--pmemsim-report`` and ``pmemsim report --from`` all speak this one format::

    {"format": "pmemsim-results", "version": 1,
     "runs": [{"name": "scenarios/coalesce_full.toml", "kind": "scenario", "backend": "sim",
               "outcome": "passed", "duration": 0.01, "message": "",
               "errors": {"PMEMSET_E_CANNOT_COALESCE_PARTS": 1}}]}

``errors`` counts every PmemsetError created during the run, by C name
(``PMEMSET_E_*`` or an errno name such as ``ENOMEM``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from pmemsim._files import read_regular_file
from pmemsim.errors import PmemsetError, add_error_observer, remove_error_observer

__all__ = [
    "FORMAT",
    "VERSION",
    "ErrorCounter",
    "Outcome",
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


@dataclass(frozen=True)
class RunResult:
    """One run: a scenario on one backend, or one test."""

    name: str
    kind: RunKind
    backend: str
    outcome: Outcome
    errors: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["kind"] = str(self.kind)
        d["outcome"] = str(self.outcome)
        return d

    @classmethod
    def from_json(cls, data: object, where: str = "") -> RunResult:
        """Parse one run record; ValueError naming ``where`` and the bad key."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a run must be an object, got {type(data).__name__}")

        def text(key: str, default: str | None = None) -> str:
            value = data.get(key, default)
            if value is None:
                raise ValueError(f"run is missing the key {key!r}")
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise ValueError(f"{key!r} must be a string (at most {_MAX_TEXT} characters): {_show(value)}")
            return value

        try:
            errors = data.get("errors", {})
            if not isinstance(errors, dict) or not all(
                isinstance(k, str) and type(v) is int and 0 <= v < 1 << 63 for k, v in errors.items()
            ):
                raise ValueError(f"'errors' must map error names to counts, got {_show(errors)}")
            duration = data.get("duration", 0.0)
            if type(duration) not in (int, float) or not 0 <= duration < 1e9:  # also refuses NaN
                raise ValueError(f"'duration' must be a number of seconds, got {_show(duration)}")
            return cls(
                name=text("name"),
                kind=RunKind(text("kind")),
                backend=text("backend"),
                outcome=Outcome(text("outcome")),
                errors=dict(errors),
                duration=float(duration),
                message=text("message", ""),
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


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


#: The largest results file read, and the longest text field of a run.
MAX_RESULTS_BYTES = 256 << 20
_MAX_TEXT = 1 << 16


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_results(path: str | os.PathLike[str]) -> ResultsFile:
    """Read a results file; ValueError naming the file and the problem (one line, never another error).

    Non-regular files (a FIFO, ``/dev/zero``) and files over :data:`MAX_RESULTS_BYTES` are
    refused before they are read.
    """
    p = os.fspath(path)
    try:
        raw = read_regular_file(p, MAX_RESULTS_BYTES, "a results file")  # InputFileError: a ValueError
    except OSError as exc:
        raise ValueError(f"{p}: cannot read results: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:  # nested too deeply; a number over the digit limit
        raise ValueError(f"{p}: not a results file ({type(exc).__name__}: {_show(str(exc))})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'{p}: not a pmemsim results file (missing "format": {FORMAT!r})')
    if data.get("version") != VERSION:
        raise ValueError(
            f"{p}: results version {data.get('version')!r} is not supported (expected {VERSION})"
        )
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise ValueError(f"{p}: 'runs' must be a list")
    return ResultsFile([RunResult.from_json(r, f"{p}: runs[{i}]") for i, r in enumerate(runs)])


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
