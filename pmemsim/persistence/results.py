"""What a crash replay found: :class:`CrashReport` and its :class:`Failure` entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pmemsim.persistence.checkers import Verdict
from pmemsim.persistence.model import Atom

__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "CrashReport", "Failure"]


def _atom_dict(atom: Atom) -> dict[str, Any]:
    return {
        "record": atom.record,
        "piece": atom.piece,
        "file": atom.file,
        "offset": atom.offset,
        "length": len(atom.data),
        "data": atom.data.hex(),
    }


@dataclass(frozen=True)
class Failure:
    """One crash state the checker did not accept.

    The crash happened right before record ``prefix`` (``log.records[:prefix]`` had
    executed), in the epoch ending at record ``fence`` (None when the log ended without
    one); ``markers`` are the BEGIN/END markers before it and ``sections`` the sections
    open there. Of the atoms the epoch's engine could apply by then, ``applied`` reached
    media (in the order they were applied) and ``lost`` did not. ``seq`` numbers the
    state within its epoch in exploration order; ``verdict`` is INCONSISTENT, or ERROR
    when the checker gave no usable answer (timeout, garbage return value, a program
    that died, a rejection of the initial image).
    """

    epoch: int
    seq: int
    fence: int | None
    prefix: int
    engine: str
    sections: tuple[str, ...]
    markers: tuple[str, ...]
    file: str
    verdict: Verdict
    message: str
    applied: tuple[Atom, ...]
    lost: tuple[Atom, ...]
    #: Named values behind ``message`` (a recovery check: "step", "before", "after", "recovered").
    details: tuple[tuple[str, str], ...] = ()

    def where(self) -> str:
        """Where the crash happened, in words."""
        if self.fence is not None and self.prefix == self.fence:
            return f"before FENCE record {self.fence}"
        if self.prefix == 0:
            return "at the start of the log"
        return f"right after record {self.prefix - 1}" + (
            "" if self.fence is not None else " (no fence after)"
        )

    def describe(self) -> str:
        """A few lines: where the crash was, what reached media, what the checker said."""
        where = self.where()
        inside = f" inside {'/'.join(self.sections)}" if self.sections else ""
        lines = [
            f"epoch {self.epoch} state {self.seq} ({self.engine}), crash {where}{inside}: "
            f"{self.verdict.value} [{self.file}]: {self.message}",
            "  reached media: " + (", ".join(_short(a) for a in self.applied) or "nothing"),
            "  lost: " + (", ".join(_short(a) for a in self.lost) or "nothing"),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "epoch": self.epoch,
            "seq": self.seq,
            "fence": self.fence,
            "prefix": self.prefix,
            "engine": self.engine,
            "sections": list(self.sections),
            "markers": list(self.markers),
            "file": self.file,
            "verdict": self.verdict.value,
            "message": self.message,
            "stores": [_atom_dict(a) for a in self.applied],
            "lost": [_atom_dict(a) for a in self.lost],
            "details": dict(self.details),
        }


def _short(atom: Atom) -> str:
    return f"#{atom.record}.{atom.piece}@{atom.offset:#x}"


#: The ``format`` and ``version`` of :meth:`CrashReport.to_dict` (``pmemsim replay --json``).
REPORT_FORMAT = "pmemsim-crash-report"
REPORT_VERSION = 2


@dataclass(frozen=True)
class CrashReport:
    """The outcome of :func:`~pmemsim.persistence.replay`.

    ``states_checked`` counts the crash states judged (for the pmreorder engines one per
    sequence, as pmreorder counts checker calls; for Exhaustive/Random one per distinct
    state), ``distinct_images`` the distinct images among them (with a checker that sees
    markers, Exhaustive judges each image once per markers it is reached under),
    ``inconsistent`` the states the checker rejected, ``errors`` the states it gave no
    usable answer for (checker errors: its own fault, not the pool's), and ``failures``
    the first ``max_failures`` of both in exploration order. ``limits`` says why the run
    was not exhaustive (an engine that samples, an epoch over its state budget); empty
    when it was. Equal inputs give equal
    reports for any number of workers; ``warnings`` (how the run went: worker counts
    capped, ...), ``checker_calls``, ``elapsed`` and ``workers`` are excluded from
    comparison (verdicts of identical images are cached per process). ``checker_calls``
    counts the states judged by the checker rather than from a cached verdict (a
    per-file checker is then called once for each file of the state).
    """

    engine: str
    markers: tuple[tuple[str, str], ...]
    model: str
    epochs: int
    states_checked: int
    distinct_images: int
    inconsistent: int
    errors: int
    failures: tuple[Failure, ...]
    warnings: tuple[str, ...] = field(default=(), compare=False)
    limits: tuple[str, ...] = ()
    checker_calls: int = field(default=0, compare=False)
    elapsed: float = field(default=0.0, compare=False)
    workers: int = field(default=1, compare=False)

    @property
    def ok(self) -> bool:
        """True when every checked state was consistent and the checker answered every time."""
        return self.inconsistent == 0 and self.errors == 0

    @property
    def complete(self) -> bool:
        """True when every state the engines define was checked (nothing sampled, no budget hit)."""
        return not self.limits

    @property
    def states_per_second(self) -> float:
        """Throughput of the exploration (0 when nothing was timed)."""
        return self.states_checked / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the shape ``pmemsim replay --json`` prints, without the minimal trace)."""
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "verdict": self.verdict,
            "engine": self.engine,
            "markers": dict(self.markers),
            "model": self.model,
            "epochs": self.epochs,
            "states_checked": self.states_checked,
            "distinct_images": self.distinct_images,
            "inconsistent": self.inconsistent,
            "errors": self.errors,
            "complete": self.complete,
            "limits": list(self.limits),
            "failures": [f.to_dict() for f in self.failures],
            "warnings": list(self.warnings),
            "checker_calls": self.checker_calls,
            "elapsed": self.elapsed,
            "workers": self.workers,
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def verdict(self) -> str:
        """``"checker error"``, ``"inconsistent"``, ``"consistent"`` or ``"consistent, not exhaustive"``."""
        if self.errors:
            return "checker error"
        if self.inconsistent:
            return "inconsistent"
        return "consistent" if self.complete else "consistent, not exhaustive"

    def summary(self) -> str:
        """One line: verdict and counts (a run that sampled or stopped early says so)."""
        if self.errors:
            verdict = f"{self.errors} CHECKER ERROR(S)" + (
                f", {self.inconsistent} INCONSISTENT" if self.inconsistent else ""
            )
        elif self.inconsistent:
            verdict = f"{self.inconsistent} INCONSISTENT"
        else:
            verdict = "consistent"
        if not self.complete:
            verdict += (
                f" (NOT EXHAUSTIVE: {self.limits[0]}"
                + (f"; {len(self.limits) - 1} more limit(s)" if len(self.limits) > 1 else "")
                + ")"
            )
        return (
            f"{verdict}: {self.states_checked} states checked ({self.distinct_images} distinct images) "
            f"in {self.epochs} epochs with {self.engine}"
        )

    def __str__(self) -> str:
        parts = [self.summary()]
        parts += [f"warning: {w}" for w in self.warnings]
        parts += [f"not exhaustive: {w}" for w in self.limits[1:]]
        parts += [f.describe() for f in self.failures]
        listed = self.inconsistent + self.errors
        if listed > len(self.failures):
            parts.append(f"... {listed - len(self.failures)} more failing states not listed")
        return "\n".join(parts)
