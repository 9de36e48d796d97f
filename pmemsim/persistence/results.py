"""What a crash replay found: :class:`CrashReport` and its :class:`Failure` entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pmemsim.persistence.checkers import Verdict
from pmemsim.persistence.model import Atom

__all__ = ["CrashReport", "Failure"]


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

    The crash happened before record ``fence`` (the fence ending epoch ``epoch``; None
    when the log ended without one), so ``log.records[:prefix]`` had executed. Of the
    atoms the epoch's engine could apply, ``applied`` reached media (in the order they
    were applied) and ``lost`` did not. ``seq`` numbers the state within its epoch in
    exploration order; ``verdict`` is INCONSISTENT, or ERROR when the checker gave no
    usable answer (timeout, garbage return value).
    """

    epoch: int
    seq: int
    fence: int | None
    prefix: int
    engine: str
    sections: tuple[str, ...]
    file: str
    verdict: Verdict
    message: str
    applied: tuple[Atom, ...]
    lost: tuple[Atom, ...]

    def describe(self) -> str:
        """A few lines: where the crash was, what reached media, what the checker said."""
        where = f"before FENCE record {self.fence}" if self.fence is not None else "at the end of the log"
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
            "file": self.file,
            "verdict": self.verdict.value,
            "message": self.message,
            "stores": [_atom_dict(a) for a in self.applied],
            "lost": [_atom_dict(a) for a in self.lost],
        }


def _short(atom: Atom) -> str:
    return f"#{atom.record}.{atom.piece}@{atom.offset:#x}"


@dataclass(frozen=True)
class CrashReport:
    """The outcome of :func:`~pmemsim.persistence.replay`.

    ``states_checked`` counts the crash states judged (for the pmreorder engines one per
    sequence, as pmreorder counts checker calls; for Exhaustive/Random one per image not
    seen before), ``distinct_images`` the different images among them, ``inconsistent``
    the failing states (``errors`` of them are checker errors) and ``failures`` the first
    ``max_failures`` of those in exploration order. Equal inputs give equal reports for
    any number of workers; ``checker_calls``, ``elapsed`` and ``workers`` are excluded
    from comparison (verdicts of identical images are cached per process).
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
    warnings: tuple[str, ...] = ()
    checker_calls: int = field(default=0, compare=False)
    elapsed: float = field(default=0.0, compare=False)
    workers: int = field(default=1, compare=False)

    @property
    def ok(self) -> bool:
        """True when every checked state was consistent."""
        return self.inconsistent == 0

    @property
    def states_per_second(self) -> float:
        """Throughput of the exploration (0 when nothing was timed)."""
        return self.states_checked / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the shape ``pmemsim replay --json`` prints)."""
        return {
            "engine": self.engine,
            "markers": dict(self.markers),
            "model": self.model,
            "epochs": self.epochs,
            "states_checked": self.states_checked,
            "distinct_images": self.distinct_images,
            "inconsistent": self.inconsistent,
            "errors": self.errors,
            "failures": [f.to_dict() for f in self.failures],
            "warnings": list(self.warnings),
            "checker_calls": self.checker_calls,
            "elapsed": self.elapsed,
            "workers": self.workers,
        }

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        """One line: verdict and counts."""
        verdict = "consistent" if self.ok else f"{self.inconsistent} INCONSISTENT"
        return (
            f"{verdict}: {self.states_checked} states checked ({self.distinct_images} distinct images) "
            f"in {self.epochs} epochs with {self.engine}"
        )

    def __str__(self) -> str:
        parts = [self.summary()]
        parts += [f"warning: {w}" for w in self.warnings]
        parts += [f.describe() for f in self.failures]
        if self.inconsistent > len(self.failures):
            parts.append(f"... {self.inconsistent - len(self.failures)} more failing states not listed")
        return "\n".join(parts)
