"""Line and branch coverage of the user's code from a coverage.py data file, for the report page.

coverage.py is optional (the ``coverage`` extra): :func:`load_coverage` imports it only
when called and raises :class:`CoverageUnavailable` when it is missing, so the report
says so instead of failing. The numbers come from coverage.py's public ``json_report``
(the same ones ``coverage json`` prints), restricted to the packages the user names
(``--coverage-source mypkg``: files under a ``mypkg/`` directory, or a ``mypkg.py``
module, or under a path given with a slash). Without names it is the code under test:
every measured file except pmemsim's own, the standard library's, installed packages'
and the tests' (``tests/``, ``test_*.py``, ``conftest.py``).
Files that the measured run never imported are not in the data and so not listed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CoverageSummary", "CoverageUnavailable", "FileCoverage", "load_coverage"]


def _include(sources: Sequence[str]) -> list[str]:
    """coverage.py include patterns for package names or paths."""
    patterns = []
    for src in sources:
        if "/" in src or os.sep in src or os.path.isdir(src):
            patterns.append(os.path.join(os.path.abspath(src), "*"))
        else:
            name = src.replace(".", "/")
            patterns += [f"*/{name}/*", f"*/{name}.py"]
    return patterns


def _omit_not_under_test() -> list[str]:
    """coverage.py omit patterns for what is not the user's code: pmemsim, stdlib, installed packages."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the pmemsim package
    paths = {here}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            paths.add(sysconfig.get_paths()[key])
    # The tests themselves run too, but they are not the code under test.
    tests = ["*/tests/*", "*/test_*.py", "*/*_test.py", "*/conftest.py"]
    return [os.path.join(p, "*") for p in sorted(paths)] + tests


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
    """The coverage of the measured code in one data file: per file and in total.

    ``sources`` are the package names or paths the user asked for; empty means the code
    under test (everything but pmemsim, the standard library and installed packages).
    """

    data_file: str
    branch: bool
    files: tuple[FileCoverage, ...]
    version: str
    sources: tuple[str, ...] = ()

    @property
    def scope(self) -> str:
        """What was measured, in words: ``"mypkg, tools/"`` or ``"the code under test"``."""
        return ", ".join(self.sources) if self.sources else "the code under test"

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
    """A file's name relative to the current directory when it is under it, else as recorded."""
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    shown = path if rel.startswith("..") else rel
    return shown.replace(os.sep, "/")


def load_coverage(data_file: str | os.PathLike[str], sources: Sequence[str] = ()) -> CoverageSummary:
    """Read a coverage.py data file (``.coverage``) and summarise the code under test.

    ``sources`` names the packages (``"mypkg"``, ``"mypkg.sub"``) or directories
    (``"src/mypkg/"``) to report; empty means every measured file but pmemsim's own, the
    standard library's and installed packages'. Matching nothing gives a summary without
    files, not an error.

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
    include = _include(sources) if sources else None
    omit = None if sources else _omit_not_under_test()
    try:
        cov.load()
        with tempfile.TemporaryDirectory(prefix="pmemsim-cov-") as tmp:
            out = os.path.join(tmp, "coverage.json")
            try:
                cov.json_report(outfile=out, include=include, omit=omit, ignore_errors=True)
            except coverage.exceptions.NoDataError:
                data: dict[str, Any] = {"files": {}, "meta": {"version": coverage.__version__}}
            else:
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
    branch = bool(meta.get("branch_coverage")) or bool(cov.get_data().has_arcs())
    return CoverageSummary(path, branch, tuple(files), str(meta.get("version", "")), tuple(sources))
