"""Line and branch coverage of ``pmemsim/`` from a coverage.py data file, for the report page.

coverage.py is optional (not a dependency of pmemsim): :func:`load_coverage` imports it
only when called and raises :class:`CoverageUnavailable` when it is missing, so the
report says so instead of failing. The numbers come from coverage.py's public
``json_report`` (the same ones ``coverage json`` prints), restricted to files under a
``pmemsim/`` directory. Files that the measured run never imported are not in the data
and so not listed.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

__all__ = ["CoverageSummary", "CoverageUnavailable", "FileCoverage", "load_coverage"]

_INCLUDE = ["*/pmemsim/*"]


class CoverageUnavailable(RuntimeError):
    """coverage.py is not installed, so its data file cannot be read."""


@dataclass(frozen=True)
class FileCoverage:
    """One source file: statements and branches, measured and missed."""

    path: str
    statements: int
    missing: int
    branches: int
    missing_branches: int

    @property
    def line_percent(self) -> float:
        """Statements run, in percent (100 for a file without statements)."""
        return 100.0 * (self.statements - self.missing) / self.statements if self.statements else 100.0

    @property
    def branch_percent(self) -> float | None:
        """Branches taken, in percent; None when the file has no branches."""
        if not self.branches:
            return None
        return 100.0 * (self.branches - self.missing_branches) / self.branches


@dataclass(frozen=True)
class CoverageSummary:
    """The coverage of ``pmemsim/`` in one data file: per file and in total."""

    data_file: str
    branch: bool
    files: tuple[FileCoverage, ...]
    version: str

    @property
    def total(self) -> FileCoverage:
        """Every file added up (``path`` is ``"total"``)."""
        return FileCoverage(
            "total",
            sum(f.statements for f in self.files),
            sum(f.missing for f in self.files),
            sum(f.branches for f in self.files),
            sum(f.missing_branches for f in self.files),
        )


def _short(path: str) -> str:
    """``/x/y/pmemsim/report/html.py`` -> ``pmemsim/report/html.py``."""
    norm = path.replace(os.sep, "/")
    cut = norm.rfind("/pmemsim/")
    return norm[cut + 1 :] if cut >= 0 else norm


def load_coverage(data_file: str | os.PathLike[str]) -> CoverageSummary:
    """Read a coverage.py data file (``.coverage``) and summarise ``pmemsim/``.

    Raises CoverageUnavailable when coverage.py is not installed, FileNotFoundError when
    the file does not exist, ValueError when coverage.py cannot use it.
    """
    path = os.fspath(data_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such coverage data file")
    try:
        # Imported by name: coverage.py is optional, and mypy must not need it either.
        coverage: Any = importlib.import_module("coverage")
    except ImportError:
        raise CoverageUnavailable(
            "coverage.py is not installed, so line/branch coverage is not shown (pip install coverage)"
        ) from None
    cov = coverage.Coverage(data_file=path, config_file=False)
    try:
        cov.load()
        with tempfile.TemporaryDirectory(prefix="pmemsim-cov-") as tmp:
            out = os.path.join(tmp, "coverage.json")
            cov.json_report(outfile=out, include=_INCLUDE, ignore_errors=True)
            with open(out, encoding="utf-8") as f:
                data = json.load(f)
    except coverage.CoverageException as exc:
        raise ValueError(f"{path}: coverage.py cannot read it: {exc}") from None
    files = []
    for name, entry in sorted(data.get("files", {}).items(), key=lambda kv: _short(kv[0])):
        s = entry["summary"]
        files.append(
            FileCoverage(
                _short(name),
                int(s["num_statements"]),
                int(s["missing_lines"]),
                int(s.get("num_branches", 0)),
                int(s.get("missing_branches", 0)),
            )
        )
    meta = data.get("meta", {})
    return CoverageSummary(
        path, bool(meta.get("branch_coverage")), tuple(files), str(meta.get("version", ""))
    )
