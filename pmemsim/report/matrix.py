"""The error-path coverage matrix: which libpmemset errors were reached, where, how often.

Rows are every documented error of ``pmemset_part_map(3)`` (:data:`MAN_PAGE_ERRORS`, in
the newer man page's order), then the other ``PMEMSET_E_*`` codes of
:class:`~pmemsim.errors.ErrorCode`, then any other name a run reported (an errno such
as ``ENOENT``). Columns are (backend, kind) pairs: ``sim``/``mmap`` first, other
backends (``default`` from tests that used the process default) after, each with
``scenario`` and ``test`` runs. A cell is the number of times the error was raised in
that column's runs (the sum of the runs' ``errors`` counts), so the matrix only says
what the results files say.

Pure functions over :class:`~pmemsim.report.results.ResultsFile`: no I/O, no rich.
Runs with backend ``"-"`` (scenario files that could not be loaded) reach nothing and
are only counted in :attr:`Matrix.unloaded`. Runs that failed or ended in an error are
listed in :attr:`Matrix.failed`: a report over a failed run must not read like a green one.

Runs of a fault sweep (those with a ``fault``) count in the matrix like any other, and
are also summed per fault site in :attr:`Matrix.sweep` (:class:`SiteSweep`: how many
(run, hit) pairs were driven and what came of them); :attr:`Matrix.fault_runs` keeps every
one, for the list of pairs driven.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pmemsim.addrspace import backends as _backends
from pmemsim.errors import ErrorCode
from pmemsim.faults import ALL_SITES
from pmemsim.report.results import FaultOutcome, Outcome, ResultsFile, RunKind, RunResult

__all__ = [
    "BACKEND_MEANINGS",
    "JSON_FORMAT",
    "JSON_VERSION",
    "KINDS",
    "MAN_PAGE_ERRORS",
    "NEWER_PAGE_ONLY",
    "STANDARD_BACKENDS",
    "Column",
    "Matrix",
    "Row",
    "SiteSweep",
    "backend_meaning",
    "build_matrix",
    "merge_results",
]

#: The errors ``pmemset_part_map(3)`` documents, in the newer page's order.
MAN_PAGE_ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE,
    ErrorCode.INVALID_OFFSET_VALUE,
    ErrorCode.GRANULARITY_NOT_SUPPORTED,
    ErrorCode.INVALID_PMEM2_MAP,
    ErrorCode.LENGTH_UNALIGNED,
    ErrorCode.CANNOT_COALESCE_PARTS,
    ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE,
    ErrorCode.ENOMEM,
    ErrorCode.CANNOT_FIT_PART_MAP,
)

#: Documented by the newer man page only (where the two pages differ, the newer one wins).
NEWER_PAGE_ONLY: frozenset[ErrorCode] = frozenset(
    {ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE, ErrorCode.CANNOT_FIT_PART_MAP}
)

#: Backends always shown, in this order, even without runs: the registered ones.
STANDARD_BACKENDS: tuple[str, ...] = _backends.DEFAULT_BACKENDS

#: Kinds of run, in column order.
KINDS: tuple[RunKind, ...] = (RunKind.SCENARIO, RunKind.TEST)

_UNLOADED = "-"

#: ``"format"`` and ``"version"`` of :meth:`Matrix.to_json` (``pmemsim report --json``).
JSON_FORMAT = "pmemsim-report"
JSON_VERSION = 1

#: What each backend column stands for, in the words of the headers' legend.
BACKEND_MEANINGS: dict[str, str] = {
    **{name: _backends.backend(name).summary for name in _backends.BACKENDS},
    "own": "tests that did not use the pmem_space fixture: their own address space, or none",
    # Results written before the plugin named it "own".
    "default": "tests that did not use the pmem_space fixture: their own address space, or none",
}


def backend_meaning(backend: str) -> str:
    """What a backend column stands for (a backend name from the results files otherwise)."""
    return BACKEND_MEANINGS.get(backend, f"runs whose results name the backend {backend!r}")


@dataclass(frozen=True)
class Column:
    """One column: runs of ``kind`` on ``backend``; ``runs`` of them exist in the results."""

    backend: str
    kind: RunKind
    runs: int

    @property
    def key(self) -> str:
        """``"sim/scenario"``: a stable identifier (HTML ``data-column``)."""
        return f"{self.backend}/{self.kind.value}"

    @property
    def label(self) -> str:
        """``"sim scenarios"`` / ``"mmap tests"``: for headers."""
        return f"{self.backend} {self.kind.value}s"

    @property
    def meaning(self) -> str:
        """What the column's backend stands for (see :data:`BACKEND_MEANINGS`)."""
        return backend_meaning(self.backend)


@dataclass(frozen=True)
class Row:
    """One error: its C name, code, where it is documented, and one count per column.

    ``reached_by[i]`` names the runs of column ``i`` that raised it (sorted, unique).
    """

    name: str
    code: int | None
    man_page: bool
    newer_page_only: bool
    counts: tuple[int, ...]
    reached_by: tuple[tuple[str, ...], ...]

    @property
    def total(self) -> int:
        """How many times the error was raised, over every column."""
        return sum(self.counts)

    @property
    def reached(self) -> bool:
        """Raised at least once somewhere."""
        return self.total > 0

    @property
    def documented_by(self) -> str:
        """Where the error comes from, in a few words."""
        if self.man_page:
            return "pmemset_part_map(3), newer page only" if self.newer_page_only else "pmemset_part_map(3)"
        if self.code is not None:
            return "other libpmemset code"
        return "not a libpmemset code"


@dataclass(frozen=True)
class SiteSweep:
    """The fault-sweep runs that failed one site: ``driven`` (run, hit) pairs and their outcomes.

    ``outcomes`` holds one count per :class:`FaultOutcome`, in the enum's order.
    """

    site: str
    driven: int
    outcomes: tuple[tuple[FaultOutcome, int], ...]

    def count(self, outcome: FaultOutcome | str) -> int:
        """How many of the pairs had ``outcome``."""
        return dict(self.outcomes).get(FaultOutcome(outcome), 0)

    @property
    def misbehaved(self) -> int:
        """Pairs whose outcome is not one correct code has."""
        return sum(n for o, n in self.outcomes if not o.ok)


@dataclass(frozen=True)
class Matrix:
    """The whole matrix: :attr:`columns`, :attr:`rows`, how many runs fed it, and which failed.

    :attr:`sweep` sums the fault-sweep runs per site (sites in the fault plan's order);
    :attr:`fault_runs` lists them.
    """

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    runs: int
    unloaded: int
    failed: tuple[RunResult, ...] = ()
    sweep: tuple[SiteSweep, ...] = ()
    fault_runs: tuple[RunResult, ...] = ()

    def row(self, name: str) -> Row:
        """The row of ``name`` (C name such as ``"PMEMSET_E_CANNOT_FIT_PART_MAP"``, or ``"ENOMEM"``).

        Raises KeyError for a name with no row.
        """
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def man_page_rows(self) -> tuple[Row, ...]:
        """The rows of the part_map man page's errors."""
        return tuple(r for r in self.rows if r.man_page)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: format and version, columns, failed runs, per row its counts by column key."""
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "runs": self.runs,
            "unloaded": self.unloaded,
            "failed": [
                {
                    "name": r.name,
                    "kind": r.kind.value,
                    "backend": r.backend,
                    "outcome": r.outcome.value,
                    "message": r.message,
                }
                for r in self.failed
            ],
            "columns": [
                {"backend": c.backend, "kind": c.kind.value, "runs": c.runs, "meaning": c.meaning}
                for c in self.columns
            ],
            "rows": [
                {
                    "name": r.name,
                    "code": r.code,
                    "man_page": r.man_page,
                    "newer_page_only": r.newer_page_only,
                    "total": r.total,
                    "counts": {c.key: n for c, n in zip(self.columns, r.counts, strict=True)},
                    "reached_by": {
                        c.key: list(names)
                        for c, names in zip(self.columns, r.reached_by, strict=True)
                        if names
                    },
                }
                for r in self.rows
            ],
            "fault_sweep": {
                "driven": len(self.fault_runs),
                "sites": [
                    {"site": s.site, "driven": s.driven, "outcomes": {o.value: n for o, n in s.outcomes if n}}
                    for s in self.sweep
                ],
                "pairs": [
                    {
                        "name": r.name,
                        "kind": r.kind.value,
                        "backend": r.backend,
                        "site": r.fault.site,
                        "hit": r.fault.hit,
                        "outcome": r.fault.outcome.value,
                        "message": r.message,
                    }
                    for r in self.fault_runs
                    if r.fault is not None
                ],
            },
        }


def merge_results(files: Iterable[ResultsFile]) -> ResultsFile:
    """One ResultsFile holding the runs of all ``files``, in order."""
    return ResultsFile([run for f in files for run in f.runs])


def _columns(runs: Sequence[RunResult]) -> tuple[Column, ...]:
    counts: dict[tuple[str, RunKind], int] = {}
    for run in runs:
        key = (run.backend, run.kind)
        counts[key] = counts.get(key, 0) + 1
    extra = sorted({b for b, _ in counts} - set(STANDARD_BACKENDS))
    columns = []
    for backend in (*STANDARD_BACKENDS, *extra):
        for kind in KINDS:
            if backend in STANDARD_BACKENDS or (backend, kind) in counts:
                columns.append(Column(backend, kind, counts.get((backend, kind), 0)))
    return tuple(columns)


def _row_names(runs: Sequence[RunResult]) -> list[tuple[str, ErrorCode | None]]:
    names: list[tuple[str, ErrorCode | None]] = [(code.c_name, code) for code in MAN_PAGE_ERRORS]
    others = sorted((c for c in ErrorCode if c not in MAN_PAGE_ERRORS), key=lambda c: -c.value)
    names += [(code.c_name, code) for code in others]
    known = {n for n, _ in names}
    seen = sorted({name for run in runs for name in run.errors} - known)
    names += [(name, None) for name in seen]
    return names


def build_matrix(results: ResultsFile | Iterable[RunResult]) -> Matrix:
    """The matrix of ``results`` (a ResultsFile or runs).

    Runtime: O(runs x errors per run + rows x columns).
    """
    runs = list(results.runs if isinstance(results, ResultsFile) else results)
    loaded = [r for r in runs if r.backend != _UNLOADED]
    columns = _columns(loaded)
    index = {c.key: i for i, c in enumerate(columns)}
    tally: dict[str, list[int]] = {}
    who: dict[str, list[set[str]]] = {}
    for run in loaded:
        i = index[f"{run.backend}/{run.kind.value}"]
        for name, count in run.errors.items():
            if count <= 0:
                continue
            tally.setdefault(name, [0] * len(columns))[i] += count
            who.setdefault(name, [set() for _ in columns])[i].add(run.name)
    rows = []
    for name, code in _row_names(loaded):
        counts = tally.get(name, [0] * len(columns))
        names = who.get(name, [set() for _ in columns])
        rows.append(
            Row(
                name=name,
                code=int(code) if code is not None else None,
                man_page=code in MAN_PAGE_ERRORS,
                newer_page_only=code in NEWER_PAGE_ONLY,
                counts=tuple(counts),
                reached_by=tuple(tuple(sorted(s)) for s in names),
            )
        )
    failed = tuple(r for r in runs if r.outcome in (Outcome.FAILED, Outcome.ERROR))
    fault_runs = tuple(r for r in loaded if r.fault is not None)
    return Matrix(
        columns=columns,
        rows=tuple(rows),
        runs=len(runs),
        unloaded=len(runs) - len(loaded),
        failed=failed,
        sweep=_sweep(fault_runs),
        fault_runs=fault_runs,
    )


def _sweep(fault_runs: Sequence[RunResult]) -> tuple[SiteSweep, ...]:
    tally: dict[str, dict[FaultOutcome, int]] = {}
    for run in fault_runs:
        assert run.fault is not None
        counts = tally.setdefault(run.fault.site, dict.fromkeys(FaultOutcome, 0))
        counts[run.fault.outcome] += 1
    order = {site.value: i for i, site in enumerate(ALL_SITES)}
    return tuple(
        SiteSweep(site, sum(counts.values()), tuple(counts.items()))
        for site, counts in sorted(tally.items(), key=lambda kv: order.get(kv[0], len(order)))
    )
