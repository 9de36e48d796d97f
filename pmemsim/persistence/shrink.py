"""Shrinking a failing crash state to the few stores that decide it (delta debugging).

A failing state is "these in-flight atoms reached media, the others did not". Most of
them do not matter. :func:`shrink` finds

1. a 1-minimal set **P** of atoms such that the state where *only* P reached media (every
   other in-flight atom lost) still fails -- ddmin over the atoms that reached media;
2. a 1-minimal set **L** of atoms such that the state where *everything but* L reached
   media still fails -- ddmin over the remaining in-flight atoms.

The trace reports P as PERSISTED and L as LOST: the crash fails with only P on media
and with all but L on media, whatever the other atoms did between those two extremes
is what the checker tolerated. Under the model an atom can be on media only if its
predecessors are (the earlier stores of its cache line, and earlier stores to its
bytes: :func:`~pmemsim.persistence.model.predecessors`), so every state tried is built
with P closed downwards and L closed upwards under that rule: the shrinker never
reports a state a crash cannot leave. Only the atoms issued by the crash point take
part. A failure found by a pmreorder engine in a state the model does not allow
(ReorderFull applies a line's stores out of order) is first brought back into the
model (its atoms with their predecessors, or only those whose predecessors it holds);
when neither state fails, it is shrunk in the engine's order, phase 1 only, and the
trace says so.

Runtime: O(n^2) checker calls in the worst case, usually O(|P| log n).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pmemsim.enums import Granularity
from pmemsim.persistence.checkers import Checker, CheckOutcome, CrashContext, as_checker
from pmemsim.persistence.explore import plan_replay
from pmemsim.persistence.image import Image, initial_images
from pmemsim.persistence.log import Marker, Store, StoreLog
from pmemsim.persistence.model import Atom, Epoch, PersistencyModel, down_closure, down_interior, up_closure
from pmemsim.persistence.results import Failure

__all__ = ["ShrinkError", "ShrinkResult", "ddmin", "shrink"]

T = TypeVar("T")


class ShrinkError(ValueError):
    """The failure cannot be shrunk: it does not belong to the log, or it no longer fails."""


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool]) -> list[T]:
    """Zeller's ddmin: a 1-minimal sublist of ``items`` (order kept) for which ``fails`` holds.

    ``fails(list(items))`` must hold. Runtime: O(n^2) calls in the worst case.
    """
    current = list(items)
    if fails([]):
        return []
    n = 2
    while len(current) >= 2:
        size = -(-len(current) // n)
        subsets = [current[i : i + size] for i in range(0, len(current), size)]
        for subset in subsets:
            if fails(subset):
                current, n = subset, 2
                break
        else:
            for i in range(len(subsets)):
                complement = [x for j, s in enumerate(subsets) if j != i for x in s]
                if fails(complement):
                    current, n = complement, max(n - 1, 2)
                    break
            else:
                if n >= len(current):
                    break
                n = min(len(current), 2 * n)
    return current


@dataclass(frozen=True)
class ShrinkResult:
    """The smallest explanation found for a failure; ``str()`` gives the readable trace."""

    failure: Failure
    persisted: tuple[Atom, ...]
    lost: tuple[Atom, ...]
    irrelevant: int
    message: str
    tests: int
    in_model: bool
    trace: str

    @property
    def size(self) -> int:
        """How many stores the trace needs: persisted plus lost."""
        return len(self.persisted) + len(self.lost)

    def __str__(self) -> str:
        return self.trace


class _Tester:
    def __init__(self, image: Image, checker: Checker, ctx: CrashContext) -> None:
        self.image = image
        self.checker = checker
        self.ctx = ctx
        self.cache: dict[tuple[int, ...], CheckOutcome | None] = {}
        self.tests = 0

    def run(self, atoms: Sequence[Atom]) -> CheckOutcome | None:
        key = tuple(a.id for a in atoms)
        if key not in self.cache:
            for atom in atoms:
                self.image.push(atom)
            try:
                self.tests += 1
                self.cache[key] = self.checker.check(self.image.views, self.ctx)
            finally:
                self.image.unwind()
        return self.cache[key]


def shrink(
    log: StoreLog,
    failure: Failure,
    checker: Checker | Callable[[Any], object] | str | Sequence[str],
    *,
    model: PersistencyModel | Granularity | None = None,
    images: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    timeout: float | None = 60.0,
) -> ShrinkResult:
    """Reduce ``failure`` (from :func:`replay` of ``log`` with the same ``model``) to a minimal trace.

    Raises ShrinkError when the failure does not match the log's epochs or its state no
    longer fails (a nondeterministic checker), LogError for a bad log or image.
    """
    plan = plan_replay(log, model=model, allow_open_markers=True)
    if not 0 <= failure.epoch < len(plan.epochs):
        raise ShrinkError(f"failure is in epoch {failure.epoch}, the log has {len(plan.epochs)} epochs")
    epoch = plan.epochs[failure.epoch]
    universe = tuple(a for a in epoch.inflight if a.record < failure.prefix)
    inflight = {a.id: a for a in universe}
    if any(inflight.get(a.id) != a for a in failure.applied):
        raise ShrinkError(f"the failure's stores are not in flight in epoch {failure.epoch} of this log")
    check = as_checker(checker, timeout=timeout)
    image = Image(plan.sizes, initial_images(log, images))
    image.make_durable(a for e in plan.epochs[: failure.epoch] for a in e.flushed)
    markers = sum(1 for _, _, at in plan.markers if at < failure.prefix)
    ctx = CrashContext(failure.epoch, failure.prefix, "", plan.markers, markers)
    check.open(plan.keys, plan.sizes)
    try:
        return _shrink(log, failure, epoch, universe, _Tester(image, check, ctx))
    finally:
        check.close()
        image.close()


def _shrink(
    log: StoreLog, failure: Failure, epoch: Epoch, universe: tuple[Atom, ...], tester: _Tester
) -> ShrinkResult:
    order = list(universe)

    def state(ids: set[int]) -> list[Atom]:
        return [a for a in order if a.id in ids]

    def persisted_only(atoms: list[Atom]) -> CheckOutcome | None:
        return tester.run(state(down_closure(universe, [a.id for a in atoms])))

    applied = sorted(failure.applied, key=lambda a: a.id)
    # A state a crash can leave near the failure's: its atoms with their predecessors on media,
    # else only those of its atoms whose predecessors it holds (ReorderFull states are cut back).
    in_model = persisted_only(applied) is not None
    if not in_model:
        interior = down_interior(universe, [a.id for a in applied])
        if len(interior) < len(applied) and persisted_only(state(interior)) is not None:
            applied, in_model = state(interior), True
    if in_model:
        persisted = ddmin(applied, lambda s: persisted_only(s) is not None)
        kept = down_closure(universe, [a.id for a in persisted])
        outcome = persisted_only(persisted)
        candidates = [a for a in order if a.id not in kept]

        def all_but(atoms: list[Atom]) -> CheckOutcome | None:
            gone = up_closure(universe, [a.id for a in atoms])
            return tester.run([a for a in order if a.id not in gone])

        lost = ddmin(candidates, lambda s: all_but(s) is not None)
    else:
        sequence = list(failure.applied)
        if tester.run(sequence) is None:
            raise ShrinkError(
                f"epoch {failure.epoch} state {failure.seq} no longer fails: is the checker deterministic?"
            )
        persisted = ddmin(sequence, lambda s: tester.run(s) is not None)
        outcome = tester.run(persisted)
        shown = {a.id for a in persisted}
        lost = [a for a in failure.applied + failure.lost if a.id not in shown]
        lost.sort(key=lambda a: a.id)
    assert outcome is not None
    irrelevant = len(order) - len(persisted) - len(lost)
    trace = _trace(log, failure, epoch, persisted, lost, irrelevant, outcome, in_model)
    return ShrinkResult(
        failure, tuple(persisted), tuple(lost), irrelevant, outcome.message, tester.tests, in_model, trace
    )


def _open_begins(log: StoreLog, upto: int) -> list[tuple[int, str]]:
    """The BEGIN markers still open at record ``upto``: (record index, name)."""
    stack: list[tuple[int, str]] = []
    for i, rec in enumerate(log.records[:upto]):
        if isinstance(rec, Marker) and rec.section is not None:
            if rec.is_begin:
                stack.append((i, rec.name))
            elif stack:
                stack.pop()
    return stack


def _trace(
    log: StoreLog,
    failure: Failure,
    epoch: Epoch,
    persisted: list[Atom],
    lost: list[Atom],
    irrelevant: int,
    outcome: CheckOutcome,
    in_model: bool,
) -> str:
    flushed = {a.id for a in epoch.flushed}
    status = {a.id: "PERSISTED" for a in persisted} | {a.id: "LOST" for a in lost}
    atoms = sorted(persisted + lost, key=lambda a: a.id)
    fence = failure.prefix
    at_fence = not epoch.final and failure.prefix == epoch.end
    first = min([a.record for a in atoms] + [fence])
    rows = _open_begins(log, first)
    for i in range(first, min(fence, len(log.records))):
        rec = log.records[i]
        if isinstance(rec, Marker):
            rows.append((i, rec.name))
    for atom in atoms:
        store = log.records[atom.record]
        assert isinstance(store, Store)
        piece = (
            f" (piece {atom.piece} of a {len(store.data)}-byte store)"
            if len(store.data) != len(atom.data)
            else ""
        )
        where = f" at {store.location}" if store.location else ""
        flush = "flushed" if atom.id in flushed else "NOT flushed"
        rows.append(
            (
                atom.record,
                f"STORE {atom.describe()} ({len(atom.data)} B){piece}{where}, {flush} -> {status[atom.id]}",
            )
        )
    rows.sort(key=lambda r: r[0])
    lines = [
        f"Minimal crash {failure.where()}, epoch {epoch.index}"
        + (f", inside {'/'.join(failure.sections)}" if failure.sections else "")
        + f": {len(persisted)} store(s) persisted, {len(lost)} lost",
        f"checker [{outcome.file}]: {outcome.message}",
    ]
    width = len(str(max([r[0] for r in rows] + [fence])))
    lines += [f"  [{i:>{width}}] {text}" for i, text in rows]
    if at_fence:
        lines.append(f"  [{fence:>{width}}] FENCE  <- crash before this fence")
    elif fence < len(log.records):
        lines.append(f"  [{fence:>{width}}] <- crash before this record")
    if in_model:
        lines.append(
            f"It fails with only the PERSISTED stores on media and with everything but the LOST ones; "
            f"the other {irrelevant} in-flight store piece(s) do not matter."
        )
    else:
        lines.append(
            "This state is outside the persistency model (the engine applied a cache line's stores out "
            "of program order, which no crash can do); shown in the engine's order."
        )
    return "\n".join(lines)
