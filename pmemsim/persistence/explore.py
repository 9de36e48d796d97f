"""Crash-state exploration: the explorer engines drive, chunks of epochs, workers, the merge, :func:`replay`.

Theory of operation
-------------------
An :class:`Explorer` holds the :class:`~pmemsim.persistence.image.Image` at an epoch's
durable base and judges each crash state an engine builds (:meth:`Explorer.check`). A
state is identified by its image hash and, when the checker can see markers (program
checkers, ``check(image, ctx)``), by the markers at its crash point too: deduplicating
engines judge each such key once; the others judge every state they visit but reuse
the verdict of a key already judged in the process. A verdict of "inconsistent" on the
initial image itself (before any recorded store) is the checker's error, not the pool's.

The epochs are cut into contiguous chunks. A chunk is explored by one process, which
fast-forwards its image over the epochs before the chunk (writing bytes, then hashing
each touched line once). A chunk reports, per state, only what the merge needs: the
first-in-chunk keys, the count of non-deduplicating states and the failing (epoch,
state number, key) triples. The parent merges chunks in order, dropping deduplicated
states whose key an earlier chunk saw, which gives exactly the single-process result
for any chunking. The details of the reported failures (which atoms reached media,
where the crash was) are recovered afterwards by re-running those epochs' engines
without the checker -- except in epochs an engine may explore lazily, whose states
depend on what the checker read: their failures are located as they are judged.

With ``workers=N`` nothing is planned up front, so that the workers start at once:
:func:`~pmemsim.persistence.model.scan_log` validates the log and finds its quiescent
points (fences after which nothing is in flight); these cut the log into about 8N
slices, and each process (N-1 forked workers and the caller, when it is the main
thread) takes the next free slice, cuts that slice's epochs itself from its quiescent
start, and explores them. A log with too few quiescent points (a store left unflushed
for most of it) falls back to planning in the parent, forking each worker as soon as
the epochs it starts with are cut, with work stealing between blocks of epochs.
``isolate=True`` runs a single-process exploration in one forked child, so that a
checker that crashes its process (a segfault in a C extension) ends the replay with a
checker error instead of killing it. A single-process replay of a log read as it comes
(the command line's, for pmemcheck logs) is :mod:`pmemsim.persistence.stream`'s: the
same Explorer, given epochs as they are cut.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pmemsim.enums import Granularity
from pmemsim.persistence import parallel
from pmemsim.persistence.checkers import (
    Checker,
    CheckerError,
    CheckOutcome,
    CrashContext,
    Verdict,
    as_checker,
)
from pmemsim.persistence.engines import Engine, engine_for, engine_from_name, with_max_states
from pmemsim.persistence.image import Image, initial_images
from pmemsim.persistence.log import LogError, StoreLog, paused_gc
from pmemsim.persistence.model import (
    Atom,
    CrashPoint,
    Epoch,
    EpochBuilder,
    EpochPlan,
    LogScan,
    PersistencyModel,
    Platform,
    Resume,
    build_epochs,
    scan_log,
)
from pmemsim.persistence.results import CrashReport, Failure

if TYPE_CHECKING:
    import concurrent.futures  # only executors' types: replay imports it only when given one

    from pmemsim.persistence.lazy import LazyImage

__all__ = [
    "DEFAULT_SLICES",
    "MAX_WORKERS",
    "CheckerCrashed",
    "ChunkResult",
    "EngineChoice",
    "Explorer",
    "Located",
    "NothingToCheck",
    "SliceWork",
    "build_report",
    "crashed_while_judging",
    "explore_slice",
    "failure_at",
    "initial_images",
    "model_name",
    "plan_replay",
    "prepare_replay",
    "replay",
    "report_of",
    "resolve_model",
    "usable_cpus",
]

_MASK = (1 << 128) - 1
#: Mixes the marker count into a state key (an odd 128-bit constant: keys of different
#: marker counts collide only as rarely as two image hashes do).
_MARKER_KEY = 0x9E3779B97F4A7C15F39CC0605CEDC835
#: The most worker processes a replay starts, whatever it is asked for.
MAX_WORKERS = 256
#: Slices a log is cut into for executors and shards (a fixed number: every shard job of a
#: CI matrix must cut the same slices).
DEFAULT_SLICES = 64


#: What Explorer.verdicts gives for a key not judged yet (None is a verdict: consistent).
_UNJUDGED: Any = object()


class NothingToCheck(LogError):
    """A replay that would judge nothing: no store in the log, or no state picked by the engines.

    Pass ``allow_empty=True`` when that is expected.
    """


class CheckerCrashed(CheckerError):
    """The checker killed the process judging a state (a segfault, an abort): no verdict exists."""


def crashed_while_judging(died: parallel.WorkerDied, slots: parallel.StateSlots) -> CheckerCrashed:
    """The error of a process that died judging a state: which state, from the slot it left."""
    epoch_index, seq = slots.get(died.slot)
    return CheckerCrashed(
        f"the checker crashed its process ({died}) while judging epoch {epoch_index} state {seq}: "
        "no verdict; run the checker on its own to debug it"
    )


class _EpochLimit(Exception):
    """The engine's per-epoch state limit was reached."""


class Located(Exception):
    """Every state being located was found (raised by :meth:`Explorer.check` to end a locating run)."""


EngineOf = Callable[[Epoch], Engine]


class Explorer:
    """The image under exploration and the bookkeeping of one chunk of epochs (the engines' Visitor).

    Runtime: O(atom size) per push/pop, O(1) plus the checker per check.
    """

    def __init__(
        self,
        plan: EpochPlan,
        images: Sequence[bytes],
        checker: Checker | None,
        engine_of: EngineOf,
        *,
        sees_markers: bool,
    ) -> None:
        self.plan = plan
        self.image = Image(plan.sizes, images)
        self.checker = checker
        self.engine_of = engine_of
        self.sees_markers = sees_markers
        self.position = 0  # the epoch whose durable base the image holds
        self.offset = 0  # the index of plan.epochs[0] (a slice of the log's plan starts later)
        self.durable = 0  # how many atoms the base holds (0: the initial image, no store applied)
        # The record of the log's first store, when the plan does not start with it (a streaming
        # replay's plan holds only the atoms of its window); None: the plan's first atom's.
        self.first_store: int | None = None
        self.verdicts: dict[int, CheckOutcome | None] = {}
        self.calls = 0
        self.slots: parallel.StateSlots | None = None
        self.slot = 0
        # Per-epoch state, set by run_epoch and at().
        self.epoch: Epoch | None = None
        self.dedup = False
        self.seq = 0
        self.limit: int | None = None
        self.describer: Callable[[], tuple[Atom, ...]] | None = None
        self.point = CrashPoint(0, 0, 0)
        self._marker_key = 0
        self._ctx: CrashContext | None = None
        # Per-chunk results.
        self.seen: set[int] = set()
        self.images: set[int] = set()  # image hashes judged (keys differ by markers, images may not)
        self.first_keys: list[int] = []
        self.first_dedup = bytearray()
        self.nondedup = 0
        self.failures: list[tuple[int, int, int, bool, CheckOutcome]] = []
        self.warnings: list[str] = []
        self.limits: list[str] = []
        # Locate mode: state numbers of the current epoch whose atoms and crash point are wanted.
        self.targets: set[int] | None = None
        self.found: dict[int, tuple[tuple[Atom, ...], CrashPoint]] = {}
        # Lazy exploration (pmemsim.persistence.lazy): a verdict already known for the state
        # being recorded, and, for epochs a lazy engine explored, the failures located at once
        # (their states depend on what the checker read, so no re-run without it finds them).
        self._given: tuple[CheckOutcome | None] | None = None
        self.locate_now = False
        self.located: dict[tuple[int, int], tuple[tuple[int, ...], CrashPoint]] = {}

    def close(self) -> None:
        """Release the image."""
        self.image.close()

    # -- the Visitor protocol ----------------------------------------------------------------
    def points(self, epoch: Epoch) -> Sequence[CrashPoint]:
        """Every crash point where the markers change when the checker sees markers, else the fence only."""
        return epoch.points if self.sees_markers else (epoch.fence_point,)

    def at(self, point: CrashPoint) -> None:
        """Judge the next states as crashes at ``point``."""
        self.point = point
        if self.sees_markers:  # the checker says which crash points it tells apart (default: all)
            region = point.markers if self.checker is None else self.checker.region(point.markers)
            self._marker_key = region * _MARKER_KEY
        else:
            self._marker_key = 0
        self._ctx = None

    def limited(self, message: str) -> None:
        """Record that the current epoch was not explored completely (once: locating re-runs engines)."""
        if self.targets is None:
            self.limits.append(message)

    def lazy_reads(self) -> bool:
        """Whether the checker can be given lazy images now (a Python checker, not locating)."""
        return self.targets is None and self.checker is not None and self.checker.lazy_reads

    def judge(self, views: Sequence[LazyImage]) -> CheckOutcome | None:
        """Run the checker on lazy ``views`` at the current crash point (counted as a call, not a state)."""
        assert self.checker is not None and self.epoch is not None
        if self.slots is not None:
            self.slots.set(self.slot, self.epoch.index, self.seq)
        self.calls += 1
        return self.checker.check(views, self.context())  # type: ignore[arg-type]

    def record(self, outcome: CheckOutcome | None) -> None:
        """Judge the current state with ``outcome`` already known (a lazy walk's leaf)."""
        self._given = (outcome,)
        try:
            self.check()
        finally:
            self._given = None

    def context(self) -> CrashContext:
        """The checker context of the current crash point."""
        if self._ctx is None:
            assert self.epoch is not None
            point = self.point
            self._ctx = CrashContext(self.epoch.index, point.record, "", self.plan.markers, point.markers)
        return self._ctx

    def _markers_before_stores(self) -> int:
        """How many visible markers come before the log's first store (only asked while none is durable)."""
        first: float = self.first_store if self.first_store is not None else math.inf
        if self.first_store is None and self.plan.atoms:
            first = self.plan.atoms[0].record
        return sum(1 for _, _, at in self.plan.markers if at < first)

    def applied(self) -> tuple[Atom, ...]:
        """The atoms on media in the current state."""
        if self.describer is not None:
            return self.describer()
        return tuple(entry[0] for entry in self.image.stack)

    def check(self) -> None:
        """Judge the current state (or, locating, remember its atoms and crash point)."""
        seq = self.seq
        if self.limit is not None and seq >= self.limit:
            raise _EpochLimit
        self.seq = seq + 1
        if self.targets is not None:
            if seq in self.targets:
                self.found[seq] = (self.applied(), self.point)
                if len(self.found) == len(self.targets):
                    raise Located
            return
        h = self.image.h
        key = (h + self._marker_key) & _MASK if self._marker_key else h
        seen, dedup = self.seen, self.dedup
        if key not in seen:
            seen.add(key)
            self.first_keys.append(key)
            self.first_dedup.append(dedup)
            if self.sees_markers:
                self.images.add(h)
        elif dedup:
            return
        outcome = self.verdicts.get(key, _UNJUDGED) if self._given is None else self._given[0]
        if outcome is _UNJUDGED:
            assert self.checker is not None and self.epoch is not None
            if self.slots is not None:
                self.slots.set(self.slot, self.epoch.index, seq)
            outcome = self.checker.check(self.image.views, self._ctx or self.context())
            self.calls += 1
            if not dedup:  # a deduplicating engine never asks twice: keep memory for the others
                self.verdicts[key] = outcome
        if not dedup:
            self.nondedup += 1
        if outcome is None:
            return
        if (
            outcome.verdict is Verdict.INCONSISTENT
            and not self.durable
            and not self.applied()
            and (not self.sees_markers or self.point.markers <= self._markers_before_stores())
        ):
            # Judged per state, not per cached verdict: the same image is the initial image only
            # while no store was applied, and which state comes first depends on the chunking.
            # A checker that sees markers judges (image, markers): the initial image after a
            # marker that follows the first store is a real crash state, not the initial one.
            outcome = CheckOutcome(
                Verdict.ERROR,
                outcome.file,
                "the checker rejects the image before any recorded store is applied (the initial "
                f"image): fix the checker, or give the file's content before the first store "
                f"({outcome.message})",
            )
        self.failures.append((self.epoch.index if self.epoch else 0, seq, key, dedup, outcome))
        if self.locate_now and self.epoch is not None:
            self.located[self.epoch.index, seq] = (tuple(a.id for a in self.applied()), self.point)

    # -- epochs ------------------------------------------------------------------------------
    def advance(self, to_epoch: int) -> None:
        """Make the durable atoms of epochs ``position .. to_epoch-1`` part of the base."""
        if to_epoch < self.position:
            raise ValueError(f"cannot go back from epoch {self.position} to {to_epoch}")
        epochs = self.plan.epochs[self.position - self.offset : to_epoch - self.offset]
        self.image.make_durable(itertools.chain.from_iterable(e.flushed for e in epochs))
        self.durable += sum(len(e.flushed) for e in epochs)
        self.position = to_epoch

    def explore_epoch(self, epoch: Epoch, engine: Engine, seed: int) -> None:
        """Run ``engine`` over ``epoch`` (the image at its base) within its limit; back at the base after."""
        self.epoch = epoch
        self.dedup = engine.dedup
        self.seq = 0
        self.limit = None
        self.describer = None
        self.locate_now = self.targets is None and engine.reads_lazily(epoch) and self.lazy_reads()
        try:
            engine.explore(epoch, self, seed)
        except _EpochLimit:
            self.limited(
                f"epoch {epoch.index}: {engine.name} stopped after {self.limit} states (max_states_per_epoch)"
            )
        finally:
            self.image.unwind()
            self.describer = None

    def run_epoch(self, epoch: Epoch, seed: int) -> None:
        """Explore ``epoch`` (the image must be at or before its base) and advance past it."""
        if epoch.index != self.position:
            self.advance(epoch.index)
        engine = self.engine_of(epoch)
        if engine.wants(epoch):
            self.explore_epoch(epoch, engine, seed)
        self.advance(epoch.index + 1)


@dataclass
class ChunkResult:
    """What exploring a chunk of epochs found: all the merge needs (see :func:`build_report`)."""

    first_keys: list[int]
    images: set[int]
    first_dedup: bytes
    nondedup: int
    failures: list[tuple[int, int, int, bool, CheckOutcome]]
    warnings: list[str]
    limits: list[str]
    calls: int
    elapsed: float = field(default=0.0)
    #: Failures located while exploring (epochs explored lazily): (epoch, seq) -> (atom ids, crash point).
    located: dict[tuple[int, int], tuple[tuple[int, ...], CrashPoint]] = field(default_factory=dict)


def _explore_range(ex: Explorer, lo: int, hi: int, seed: int) -> ChunkResult:
    """Explore epochs ``lo .. hi-1`` with ``ex`` (at or before ``lo``; its checker open) as one chunk."""
    ex.seen, ex.images, ex.first_keys, ex.first_dedup = set(), set(), [], bytearray()
    ex.nondedup, ex.failures, ex.warnings, ex.limits = 0, [], [], []
    ex.located = {}
    calls_before = ex.calls
    start = time.perf_counter()
    ex.advance(lo)
    for epoch in ex.plan.epochs[lo - ex.offset : hi - ex.offset]:
        ex.run_epoch(epoch, seed)
    return ChunkResult(
        ex.first_keys,
        ex.images,
        bytes(ex.first_dedup),
        ex.nondedup,
        ex.failures,
        ex.warnings,
        ex.limits,
        ex.calls - calls_before,
        time.perf_counter() - start,
        ex.located,
    )


@dataclass(frozen=True)
class EngineChoice:
    """The default engine and the section engines of a replay: picks an epoch's engine (picklable)."""

    default: Engine
    sections: tuple[tuple[str, Engine], ...] = ()

    def __call__(self, epoch: Epoch) -> Engine:
        """The engine of ``epoch``: its innermost section's, else the default."""
        return engine_for(epoch.sections, self.default, dict(self.sections))


@dataclass(frozen=True)
class _Job:
    """What every process of one replay shares (picklable when ``slots`` is None: sent to executors)."""

    log: StoreLog
    model: PersistencyModel
    engine_of: EngineChoice
    images: tuple[bytes, ...]
    checker: Checker
    seed: int
    slots: parallel.StateSlots | None = None


def _explorer(job: _Job, plan: EpochPlan, slot: int, checker: Checker | None = None) -> Explorer:
    checker = job.checker if checker is None else checker
    ex = Explorer(plan, job.images, checker, job.engine_of, sees_markers=checker.sees_markers)
    ex.slots, ex.slot = job.slots, slot
    return ex


def _run_whole(job: _Job, plan: EpochPlan, slot: int = 0) -> ChunkResult:
    """Explore every epoch of ``plan`` in this process."""
    job.checker.open(plan.keys, plan.sizes)
    ex = _explorer(job, plan, slot)
    try:
        return _explore_range(ex, 0, len(plan.epochs), job.seed)
    finally:
        ex.close()
        job.checker.close()


def _explore_slices(
    job: _Job, scan_markers: Sequence[Any], starts: list[Resume], counter: Any, slot: int
) -> list[tuple[int, int, ChunkResult]]:
    """Take slices of the log in turn (a forked worker's share); explore each with :func:`explore_slice`.

    Returns (slice, epoch count, result) per slice taken; the image is carried from one
    slice to the next.
    """
    work = SliceWork(job, tuple(scan_markers), tuple(starts), True)
    out: list[tuple[int, int, ChunkResult]] = []
    try:
        while (s := counter.take()) < len(starts):
            out.append(explore_slice(work, s, slot, carry=True))
    finally:
        release_carried()
    return out


@dataclass(frozen=True)
class SliceWork:
    """Everything one task needs to explore slices of a log anywhere: sent once per worker."""

    job: _Job
    markers: tuple[tuple[str, Any, int], ...]
    starts: tuple[Resume, ...]
    allow_open_markers: bool


class _Carried(threading.local):
    """Per thread: the explorer of the last slice explored, to carry its image to a later slice of
    the same work (an executor's worker thread runs its tasks one after the other)."""

    value: tuple[SliceWork, Explorer, int] | None = None


_carried = _Carried()


def release_carried() -> None:
    """Close the explorer this thread kept for a next slice (after a shard's last slice)."""
    carried, _carried.value = _carried.value, None
    if carried is not None:
        carried[1].close()


def explore_slice(
    work: SliceWork, s: int, slot: int = 0, *, carry: bool = False
) -> tuple[int, int, ChunkResult]:
    """Explore slice ``s`` of ``work`` (in any process or thread): (slice, epoch count, result).

    The image is the initial image with every store before the slice written (they are
    all durable at its quiescent start); a thread that explored an earlier slice of the
    same work carries its image forward instead of starting again. Each task judges with
    its own copy of the checker, so tasks running side by side in threads share nothing.
    ``slot`` is the worker's place in the job's StateSlots (which state a crash was in).
    With ``carry`` the explorer is kept for the next slice of this thread; the caller then
    calls :func:`release_carried` when done (executor tasks do not carry: nothing would
    release what a pool's threads keep).
    """
    job, starts = work.job, work.starts
    log = job.log
    start = starts[s]
    last = s + 1 == len(starts)
    builder = EpochBuilder(log, job.model, check=False, resume=start, markers=work.markers)
    builder.feed(len(log.records) if last else starts[s + 1].record)
    plan = builder.finish(allow_open_markers=True) if last else builder.partial()
    checker = copy.copy(job.checker)
    carried, _carried.value = _carried.value, None
    if carried is not None and carried[0] is work and carried[2] <= start.record:
        _, ex, at = carried
        ex.plan, ex.checker = plan, checker
    else:
        if carried is not None:
            carried[1].close()
        ex, at = _explorer(job, plan, slot, checker), 0
    checker.open(tuple(log.files), tuple(info.size for info in log.files.values()))
    try:
        ex.image.apply_stores(log, at, start.record)
        ex.offset = ex.position = start.epochs
        ex.durable = start.atoms
        count = len(plan.epochs)
        result = _explore_range(ex, start.epochs, start.epochs + count, job.seed)
    except BaseException:
        ex.close()
        raise
    finally:
        checker.close()
    if last or not carry:
        ex.close()
    else:
        _carried.value = (work, ex, starts[s + 1].record)
    return s, count, result


def _ship(executor: concurrent.futures.Executor, work: SliceWork) -> Any:
    """What to pass to every task: a Dask executor gets the work scattered to every worker once."""
    client = getattr(executor, "_client", None)
    scatter = getattr(client, "scatter", None)
    if scatter is not None:  # distributed.Client.get_executor(): send the log once per worker
        return scatter(work, broadcast=True, hash=False)
    return work


def _explore_on(
    executor: concurrent.futures.Executor, work: SliceWork, slices: Sequence[int]
) -> list[tuple[int, int, ChunkResult]]:
    """Explore ``slices`` of ``work`` as tasks of ``executor``, in slice order."""
    payload = _ship(executor, work)
    futures = [executor.submit(explore_slice, payload, s) for s in slices]
    try:
        return [future.result() for future in futures]
    except (CheckerError, LogError):
        raise
    except Exception as exc:  # a worker lost for good, a broken pool, a task the checker crashed
        raise CheckerCrashed(
            f"the exploration failed on the executor ({type(exc).__name__}: {exc}): a checker that "
            "crashes its worker, or workers lost for good; no verdict"
        ) from None
    finally:
        for future in futures:
            future.cancel()


def _explore_blocks(
    job: _Job, plan: EpochPlan, claims: parallel.BlockClaims, own: tuple[int, int], known: int, slot: int
) -> list[tuple[int, ChunkResult]]:
    """One process's share of a planned log: its own blocks ``own``, then steals among blocks ``< known``."""
    block, count = claims.block, len(plan.epochs)
    out: list[tuple[int, ChunkResult]] = []
    ex = _explorer(job, plan, slot)

    def run(first: int, last: int) -> None:
        nonlocal ex
        lo, hi = first * block, min(last * block, count)
        if ex.position > lo:  # a steal behind the image: start again from the initial image
            old, ex = ex, _explorer(job, plan, slot)
            ex.verdicts, ex.image.hashes, ex.calls = old.verdicts, old.image.hashes, old.calls
            old.close()
        out.append((lo, _explore_range(ex, lo, hi, job.seed)))

    job.checker.open(plan.keys, plan.sizes)
    try:
        for b in range(*own):
            if claims.take(b):
                run(b, b + 1)
        while (stolen := claims.steal(known)) is not None:
            run(*stolen)
    finally:
        ex.close()
        job.checker.close()
    return out


def _gather(children: list[tuple[int, int, int]], in_parent: Callable[[], list[Any]] | None) -> list[Any]:
    """Run ``in_parent`` here while the children work, then collect every child's list of results."""
    results: list[Any] = []
    try:
        if in_parent is not None:
            results += in_parent()
        while children:
            pid, read, slot = children[0]
            try:
                results += parallel.collect(pid, read, slot)
            except parallel.WorkerDied:
                children.pop(0)  # reaped, its pipe closed
                raise
            except BaseException:
                children.pop(0)  # its pipe is closed: end it without touching the descriptor again
                parallel.end(pid)
                raise
            children.pop(0)
    finally:
        parallel.stop(children)
    return results


def _explore_sliced(
    job: _Job, scan: Any, workers: int, isolate: bool = False
) -> tuple[int, list[ChunkResult]]:
    """Explore the slices in ``workers`` processes (the caller's included when it is the main thread).

    Every process cuts the epochs of the slices it takes itself, so nothing is planned
    before the workers start. Returns the epoch count and the results in epoch order.
    """
    ctx = parallel.context()
    counter = parallel.SharedCounter(ctx)
    starts = list(scan.points)
    in_parent = threading.current_thread() is threading.main_thread() and not isolate
    forks = workers - 1 if in_parent else workers
    children = [
        parallel.fork(functools.partial(_explore_slices, job, scan.markers, starts, counter, k), k)
        for k in range(forks)
    ]
    mine = (
        functools.partial(_explore_slices, job, scan.markers, starts, counter, forks) if in_parent else None
    )
    results: list[tuple[int, int, ChunkResult]] = _gather(children, mine)
    results.sort(key=lambda item: item[0])
    if [s for s, _, _ in results] != list(range(len(starts))):  # pragma: no cover - a bug
        raise RuntimeError("crash-state workers lost a slice of the log")
    return sum(count for _, count, _ in results), [result for _, _, result in results]


def _explore_planned(
    job: _Job,
    builder: EpochBuilder,
    workers: int,
    fences: int,
    allow_open_markers: bool,
    isolate: bool = False,
) -> tuple[EpochPlan, list[ChunkResult]]:
    """Build the plan and explore it in ``workers`` processes, building and exploring at once.

    The parent scans the log; when it has cut the first epochs it forks a worker that
    explores them (a fork shares the plan so far copy-on-write, nothing is pickled)
    while the parent goes on cutting. The parent explores the last epochs itself (when
    it is the main thread; else it forks one more worker). Early workers get more
    epochs than an even share because they start before the plan is complete, and work
    stealing evens out the rest. Results come back per block and are merged in epoch
    order, so they do not depend on the split.
    """
    ctx = parallel.context()
    block = max(1, -(-(fences + 1) // (16 * workers)))
    claims = parallel.BlockClaims(-(-(fences + 1) // block) + 1, block, ctx)
    in_parent = threading.current_thread() is threading.main_thread() and not isolate
    forks = workers - 1 if in_parent else workers
    records = len(job.log.records)
    children: list[tuple[int, int, int]] = []
    start = 0
    try:
        for k in range(1, forks + 1):
            if k < workers:
                builder.feed(records * (4 * k + 1) // (4 * workers))
                plan = builder.partial()
            else:
                plan = builder.finish(allow_open_markers=allow_open_markers)
            known = len(plan.epochs) // block if k < workers else -(-len(plan.epochs) // block)
            work = functools.partial(_explore_blocks, job, plan, claims, (start, known), known, k - 1)
            children.append(parallel.fork(work, k - 1))
            start = known
    except BaseException:
        parallel.stop(children)
        raise
    mine = None
    plan = builder.finish(allow_open_markers=allow_open_markers) if in_parent else plan
    if in_parent:
        total = -(-len(plan.epochs) // block)
        mine = functools.partial(_explore_blocks, job, plan, claims, (start, total), total, forks)
    results: list[tuple[int, ChunkResult]] = _gather(children, mine)
    results.sort(key=lambda item: item[0])
    return plan, [result for _, result in results]


def _locate(
    job: _Job, plan: EpochPlan, picked: list[tuple[int, int, int, bool, CheckOutcome]]
) -> dict[tuple[int, int], tuple[tuple[Atom, ...], CrashPoint]]:
    """Re-run the epochs of ``picked`` failures without the checker: their atoms and crash points."""
    ex = Explorer(plan, job.images, None, job.engine_of, sees_markers=job.checker.sees_markers)
    wanted: dict[int, set[int]] = {}
    for epoch_index, seq, *_ in picked:
        wanted.setdefault(epoch_index, set()).add(seq)
    out: dict[tuple[int, int], tuple[tuple[Atom, ...], CrashPoint]] = {}
    try:
        for index in sorted(wanted):
            epoch = plan.epochs[index]
            ex.advance(index)
            ex.targets, ex.found = wanted[index], {}
            with contextlib.suppress(Located):
                ex.explore_epoch(epoch, job.engine_of(epoch), job.seed)
            out.update({(index, seq): found for seq, found in ex.found.items()})
            ex.targets = None
    finally:
        ex.close()
    return out


def resolve_model(log: StoreLog, model: PersistencyModel | Granularity | None) -> PersistencyModel:
    """The model to replay ``log`` under: ``model``, else the log's granularity, else ADR."""
    if isinstance(model, PersistencyModel):
        return model
    if model is not None:
        return PersistencyModel.for_granularity(model, log.page_size)
    if log.granularity is not None:
        return PersistencyModel.for_granularity(log.granularity, log.page_size)
    return PersistencyModel.adr()


def plan_replay(
    log: StoreLog,
    *,
    model: PersistencyModel | Granularity | None = None,
    allow_open_markers: bool = False,
) -> EpochPlan:
    """The epochs :func:`replay` explores (validates the log; raises LogError/MarkerError)."""
    if not isinstance(log, StoreLog):
        raise TypeError(f"log must be a StoreLog, not {type(log).__name__}")
    with paused_gc():
        return build_epochs(log, resolve_model(log, model), allow_open_markers=allow_open_markers)


def failure_at(
    index: int,
    epoch: Epoch,
    seq: int,
    engine: Engine,
    point: CrashPoint,
    applied: tuple[Atom, ...],
    markers: Sequence[Any],
    outcome: CheckOutcome,
) -> Failure:
    """The reported failure of state ``seq`` of ``epoch`` (number ``index`` in the log): ``applied``
    reached media at crash ``point``; the atoms of the engine's universe written before the
    crash and not applied were lost."""
    applied_ids = {a.id for a in applied}
    ctx = CrashContext(index, point.record, "", tuple(markers), point.markers)
    return Failure(
        epoch=index,
        seq=seq,
        fence=None if epoch.final else epoch.end,
        prefix=point.record,
        engine=engine.name,
        sections=ctx.sections,
        markers=ctx.markers,
        file=outcome.file,
        verdict=outcome.verdict,
        message=outcome.message,
        applied=applied,
        lost=tuple(a for a in engine.universe(epoch) if a.id not in applied_ids and a.record < point.record),
        details=outcome.details,
    )


def model_name(model: PersistencyModel) -> str:
    """How a report names ``model``: ``eADR``, ``ADR``, or ADR with its flush unit."""
    if model.platform is Platform.EADR:
        return "eADR"
    return "ADR" if model.flush_unit == 64 else f"ADR (flush unit {model.flush_unit} B)"


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def replay(
    log: StoreLog,
    checker: Checker | Callable[..., object] | str | Sequence[str] | None = None,
    *,
    recover: Callable[..., object] | str | Sequence[str] | None = None,
    engine: Engine | str = "Exhaustive",
    markers: Mapping[str, Engine | str] | None = None,
    workers: int = 1,
    seed: int | None = None,
    model: PersistencyModel | Granularity | None = None,
    images: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    timeout: float | None = 60.0,
    max_failures: int = 100,
    max_states: int | None = None,
    allow_open_markers: bool = False,
    allow_empty: bool = False,
    isolate: bool = False,
    executor: concurrent.futures.Executor | None = None,
    slices: int = DEFAULT_SLICES,
    plan: EpochPlan | None = None,
) -> CrashReport:
    """Check every crash state ``engine`` picks from ``log`` with ``checker``; return a :class:`CrashReport`.

    ``engine`` applies to the whole log and ``markers`` maps section names to engines for
    the epochs inside ``NAME.BEGIN``/``NAME.END`` (pmreorder's ``-x NAME=Engine``); both
    take :class:`Engine` instances or names. ``model`` defaults to the log's granularity
    (ADR when unknown). ``seed`` (None = 0) drives ReorderPartial and Random. ``images``
    overrides the initial content of files (see :func:`initial_images`); the user's files
    are never written. ``timeout`` bounds each checker call. ``max_states`` sets the
    per-epoch state budget of Exhaustive and ReorderFull (None keeps theirs: 65,536);
    a run that hits it says so (``report.complete`` is False). ``workers`` > 1 explores
    in forked processes with identical results (capped by the usable CPUs, with a
    warning); ``isolate`` explores in one forked process so that a checker crashing its
    process cannot take the caller with it. ``executor`` (any
    :class:`concurrent.futures.Executor`: a process pool, Dask's
    ``Client.get_executor()``) explores the log's slices -- up to ``slices`` pieces cut at
    quiescent fences -- as its tasks instead; the checker must then be picklable (a
    module-level function, a program). The report is the same whichever way it ran.
    ``plan`` is the caller's :func:`plan_replay` of ``log`` (same model and
    ``allow_open_markers``), explored as it is instead of being planned again.

    ``recover`` instead of ``checker`` checks durable linearizability: ``recover(image)``
    (or a program printing the value) must give, for a crash inside an operation (an
    outermost ``NAME.BEGIN``/``NAME.END`` section), the value before it or after it, and
    outside operations the current value (see
    :mod:`~pmemsim.persistence.linearizability`).

    Raises LogError (bad record or range, unreadable image), MarkerError (markers that do
    not nest), NothingToCheck (no store in the log, or no state checked, unless
    ``allow_empty``), CheckerError (a checker that cannot be called; CheckerCrashed when
    it killed its process), ValueError/TypeError (bad arguments). Verdicts are not
    raised: inconsistent states and checker errors are in the report.
    """
    if not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be a non-negative int, got {max_failures!r}")
    started = time.perf_counter()
    job, notes, workers, plan, scan = prepare_replay(
        log,
        checker,
        recover=recover,
        engine=engine,
        markers=markers,
        workers=1 if executor is not None else workers,
        seed=seed,
        model=model,
        images=images,
        timeout=timeout,
        max_states=max_states,
        allow_open_markers=allow_open_markers,
        allow_empty=allow_empty,
        slices=slices if executor is not None else None,
        plan=plan,
    )
    if executor is not None:
        assert scan is not None
        work = SliceWork(job, scan.markers, scan.points, allow_open_markers)
        results = _explore_on(executor, work, range(len(scan.points)))
        return build_report(
            job,
            [r for _, _, r in results],
            None,
            sum(count for _, count, _ in results),
            max_failures=max_failures,
            allow_empty=allow_empty,
            allow_open_markers=allow_open_markers,
            notes=notes,
            started=started,
            workers=1,
        )
    resolved, engine_of = job.model, job.engine_of
    images_, checker_, seed_ = job.images, job.checker, job.seed
    slots = parallel.StateSlots(None, workers) if isolate or workers > 1 else None
    job = _Job(log, resolved, engine_of, images_, checker_, seed_, slots)
    try:
        if plan is not None and isolate:
            whole = plan
            chunks: list[ChunkResult] = _gather([parallel.fork(lambda: [_run_whole(job, whole)])], None)
        elif plan is not None:
            chunks = [_run_whole(job, plan)]
        else:
            assert scan is not None
            starts = list(scan.points)
            bounds = [p.record for p in starts] + [len(log.records)]
            if len(starts) > 1 and max(b - a for a, b in itertools.pairwise(bounds)) * workers <= len(
                log.records
            ):
                epoch_count, chunks = _explore_sliced(job, scan, workers, isolate)
            else:
                builder = EpochBuilder(log, resolved, check=False)
                plan, chunks = _explore_planned(
                    job, builder, workers, scan.epochs, allow_open_markers, isolate
                )
        if plan is not None:
            epoch_count = len(plan.epochs)
    except parallel.WorkerDied as died:
        assert slots is not None
        raise crashed_while_judging(died, slots) from None

    return build_report(
        job,
        chunks,
        plan,
        epoch_count,
        max_failures=max_failures,
        allow_empty=allow_empty,
        allow_open_markers=allow_open_markers,
        notes=notes,
        started=started,
        workers=workers,
    )


def prepare_replay(
    log: StoreLog,
    checker: Checker | Callable[..., object] | str | Sequence[str] | None,
    *,
    recover: Callable[..., object] | str | Sequence[str] | None = None,
    engine: Engine | str,
    markers: Mapping[str, Engine | str] | None,
    workers: int,
    seed: int | None,
    model: PersistencyModel | Granularity | None,
    images: Mapping[str, bytes | str | os.PathLike[str]] | None,
    timeout: float | None,
    max_states: int | None,
    allow_open_markers: bool,
    allow_empty: bool,
    slices: int | None,
    plan: EpochPlan | None = None,
) -> tuple[_Job, list[str], int, EpochPlan | None, LogScan | None]:
    """Validate the arguments and the log; the job, notes, the worker count, and a plan or a scan.

    With ``slices`` (executors, shards) or ``workers`` > 1 the log is scanned for quiescent
    points and not planned; else it is planned whole, unless ``plan`` (the caller's
    :func:`plan_replay` of it) is given.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if max_states is not None and (not isinstance(max_states, int) or max_states < 1):
        raise ValueError(f"max_states must be a positive int or None, got {max_states!r}")
    if slices is not None and (not isinstance(slices, int) or not 1 <= slices <= 1 << 20):
        raise ValueError(f"slices must be an int from 1 to 2^20, got {slices!r}")
    if not isinstance(log, StoreLog):
        raise TypeError(f"log must be a StoreLog, not {type(log).__name__}")
    default = engine_from_name(engine)
    section_engines = {name: engine_from_name(spec) for name, spec in (markers or {}).items()}
    if max_states is not None:
        default = with_max_states(default, max_states)
        section_engines = {name: with_max_states(e, max_states) for name, e in section_engines.items()}
    engine_of = EngineChoice(default, tuple(section_engines.items()))
    resolved = resolve_model(log, model)
    if plan is not None and (
        not isinstance(plan, EpochPlan) or plan.model != resolved or plan.keys != tuple(log.files)
    ):
        raise ValueError("plan must be plan_replay() of the same log, under the same model")
    notes: list[str] = []
    cpus = usable_cpus()
    if workers > min(cpus, MAX_WORKERS):
        notes.append(f"--workers {workers} capped at {min(cpus, MAX_WORKERS)}: the usable CPUs")
        workers = min(cpus, MAX_WORKERS)
    scan: LogScan | None = None
    if workers > 1 or slices is not None:
        # Validates the log first, so no checker runs on a log that turns out to be bad halfway.
        with paused_gc():
            scan = scan_log(
                log, resolved, allow_open_markers=allow_open_markers, slices=slices or 8 * workers
            )
        if slices is None and len(scan.points) < 2 and scan.epochs < 2:
            notes.append(f"--workers {workers} capped at 1: the log has a single epoch")
            workers, scan = 1, None
    if scan is not None:
        plan = None
    elif plan is None:
        with paused_gc():
            plan = build_epochs(log, resolved, allow_open_markers=allow_open_markers)
    has_stores = bool(plan.atoms) if plan is not None else scan is not None and scan.stores > 0
    if not has_stores and not allow_empty:
        raise NothingToCheck(
            "the log holds no store: nothing to check (did the code write to another set, or "
            "record nothing?); allow_empty=True accepts that"
        )
    if plan is not None and not allow_empty and not any(engine_of(e).wants(e) for e in plan.epochs):
        raise NothingToCheck(
            f"engine {default.name} picks no crash state in this log: nothing to check "
            "(NoReorderNoCheck checks nothing); allow_empty=True accepts that"
        )
    before = initial_images(log, images)
    judge = _judge(log, checker, recover, before, timeout)
    notes += judge.notes
    job = _Job(log, resolved, engine_of, before, judge, 0 if seed is None else seed)
    return job, notes, workers, plan, scan


def _judge(
    log: StoreLog,
    checker: Checker | Callable[..., object] | str | Sequence[str] | None,
    recover: Callable[..., object] | str | Sequence[str] | None,
    images: tuple[bytes, ...],
    timeout: float | None,
) -> Checker:
    """The replay's checker: ``checker``, or the durable-linearizability check of ``recover`` on ``log``."""
    if recover is None:
        if checker is None:
            raise TypeError("replay needs a checker, or recover= for a durable-linearizability check")
        return as_checker(checker, timeout=timeout)
    if checker is not None:
        raise TypeError("give replay a checker or recover=, not both")
    from pmemsim.persistence.linearizability import RecoveryChecker  # only a recovery check needs it

    return RecoveryChecker.for_log(log, recover, images=images, timeout=timeout)


def build_report(
    job: _Job,
    chunks: Sequence[ChunkResult],
    plan: EpochPlan | None,
    epoch_count: int,
    *,
    max_failures: int,
    allow_empty: bool,
    allow_open_markers: bool,
    notes: Sequence[str] = (),
    started: float | None = None,
    workers: int = 1,
) -> CrashReport:
    """Merge chunk results (in epoch order) into the report one process would have given.

    States whose key an earlier chunk saw are dropped for deduplicating engines; the kept
    failures are located by re-running their epochs without the checker.
    """
    log, engine_of, checker_ = job.log, job.engine_of, job.checker
    default, section_engines = engine_of.default, dict(engine_of.sections)
    notes = list(notes)
    seen: set[int] = set()
    images_seen: set[int] = set()
    checked = 0
    kept: list[tuple[int, int, int, bool, CheckOutcome]] = []
    inconsistent = errors = calls = 0
    limits: list[str] = []
    early: dict[tuple[int, int], tuple[tuple[int, ...], CrashPoint]] = {}
    for result in chunks:
        early.update(result.located)
        checked += result.nondedup
        new = []
        for key, dedup in zip(result.first_keys, result.first_dedup, strict=True):
            if key not in seen:
                new.append(key)
                checked += dedup
        for failure in result.failures:
            if failure[3] and failure[2] in seen:
                continue  # a state an earlier chunk already judged
            if failure[4].verdict is Verdict.ERROR:
                errors += 1
            else:
                inconsistent += 1
            if len(kept) < max_failures:
                kept.append(failure)
        seen.update(new)
        images_seen |= result.images
        notes += result.warnings
        limits += result.limits
        calls += result.calls
    if checked == 0 and not allow_empty:
        raise NothingToCheck(
            f"no crash state was checked (engine {default.name}): nothing to judge; "
            "allow_empty=True accepts that"
        )

    if kept and plan is None:  # the workers planned their slices: plan the whole log for the details
        plan = build_epochs(log, job.model, allow_open_markers=allow_open_markers)
    rest = [f for f in kept if (f[0], f[1]) not in early]
    located = _locate(job, plan, rest) if rest and plan is not None else {}
    for f in kept:
        if (f[0], f[1]) in early:
            assert plan is not None
            ids, where = early[f[0], f[1]]
            if any(i >= len(plan.atoms) for i in ids) or where.atoms > len(plan.epochs[f[0]].inflight):
                raise LogError(f"epoch {f[0]} state {f[1]}: its location names atoms the log does not have")
            located[f[0], f[1]] = (tuple(plan.atoms[i] for i in ids), where)
    failures = []
    for epoch_index, seq, _, _, outcome in kept:
        assert plan is not None
        epoch = plan.epochs[epoch_index]
        applied, point = located[(epoch_index, seq)]
        failures.append(
            failure_at(epoch_index, epoch, seq, engine_of(epoch), point, applied, plan.markers, outcome)
        )
    return report_of(
        default,
        section_engines,
        job.model,
        epochs=epoch_count,
        states_checked=checked,
        distinct_images=len(images_seen) if checker_.sees_markers else len(seen),
        inconsistent=inconsistent,
        errors=errors,
        failures=failures,
        warnings=notes,
        limits=limits,
        checker_calls=calls,
        elapsed=0.0 if started is None else time.perf_counter() - started,
        workers=workers,
    )


def report_of(
    default: Engine,
    section_engines: Mapping[str, Engine],
    model: PersistencyModel,
    *,
    limits: Sequence[str],
    failures: Sequence[Failure],
    warnings: Sequence[str],
    **counts: Any,
) -> CrashReport:
    """A replay's report: its engines and model named, sampling engines noted first among the
    limits, ``counts`` (epochs, states, verdicts, calls, elapsed, workers) as given."""
    samplers = sorted({e.name for e in (default, *section_engines.values()) if e.samples})
    noted = [f"{', '.join(samplers)} sample(s) crash states by design"] if samplers else []
    return CrashReport(
        engine=default.name,
        markers=tuple((name, e.name) for name, e in section_engines.items()),
        model=model_name(model),
        failures=tuple(failures),
        warnings=tuple(warnings),
        limits=(*noted, *limits),
        **counts,
    )
