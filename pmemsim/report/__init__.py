"""Error-path coverage: results files written by runs, and the matrix built from them."""

from __future__ import annotations

from pmemsim.report.results import ErrorCounter, ResultsFile, RunResult, load_results

__all__ = ["ErrorCounter", "ResultsFile", "RunResult", "load_results"]
