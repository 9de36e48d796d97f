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
        try:
            errors = data.get("errors", {})
            if not isinstance(errors, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in errors.items()
            ):
                raise ValueError("'errors' must map error names to counts")
            return cls(
                name=str(data["name"]),
                kind=RunKind(data["kind"]),
                backend=str(data["backend"]),
                outcome=Outcome(data["outcome"]),
                errors=dict(errors),
                duration=float(data.get("duration", 0.0)),
                message=str(data.get("message", "")),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: run is missing the key {exc.args[0]!r}") from None
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


def load_results(path: str | os.PathLike[str]) -> ResultsFile:
    """Read a results file; ValueError naming the file and the problem."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError(f"{p}: cannot read results: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}") from None
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
