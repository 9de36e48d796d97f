"""Error-path coverage: results files written by runs, and the matrix built from them."""

from __future__ import annotations

from pmemsim.report.matrix import MAN_PAGE_ERRORS, Matrix, build_matrix
from pmemsim.report.results import ErrorCounter, ResultsFile, RunResult, load_results

__all__ = [
    "MAN_PAGE_ERRORS",
    "ErrorCounter",
    "Matrix",
    "ResultsFile",
    "RunResult",
    "build_matrix",
    "load_results",
]
