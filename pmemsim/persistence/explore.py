"""Crash-state exploration: the image being explored, epoch chunks, worker processes, the merge.

Theory of operation
-------------------
An :class:`Explorer` holds one ``bytearray`` per file, positioned at an epoch's durable
base. Engines change it one atom or one word at a time (``push``/``pop``/``set_word``)
and call ``check()`` per crash state, so building a state costs O(bytes changed), never
a copy of the file. The image also carries an incremental 128-bit hash: the sum over
8-byte words of blake2b(file, word, content), minus the same for the initial image. It
identifies images across epochs (deduplication for Exhaustive/Random, verdict caching
for the others) without ever hashing a whole file.

The epochs are cut into contiguous chunks. A chunk is explored by one process, which
fast-forwards its image over the epochs before the chunk (writing bytes, then hashing
each touched word once). A chunk reports, per state, only what the merge needs: the
first-in-chunk image hashes, the count of non-deduplicating states and the failing
(epoch, state number, hash) triples. The parent merges chunks in order, dropping
deduplicated states whose image an earlier chunk saw, which gives exactly the
single-process result for any chunking. The details of the reported failures (which
atoms reached media) are recovered afterwards by re-running those epochs' engines
without the checker.

With ``workers=N`` nothing is planned up front, so that the workers start at once:
:func:`~pmemsim.persistence.model.scan_log` validates the log and finds its quiescent
points (fences after which nothing is in flight); these cut the log into about 8N
slices, and each process (N-1 forked workers and the caller, when it is the main
thread) takes the next free slice, cuts that slice's epochs itself from its quiescent
start, and explores them. A log with too few quiescent points (a store left unflushed
for most of it) falls back to planning in the parent, forking each worker as soon as
the epochs it starts with are cut, with work stealing between blocks of epochs. Forked
workers share the log, images and checker copy-on-write (closures work as checkers)
and send back only their chunk results.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pmemsim.enums import Granularity
from pmemsim.persistence.checkers import CallableChecker, Checker, CheckOutcome, Verdict, as_checker
from pmemsim.persistence.engines import Engine, engine_from_name
from pmemsim.persistence.log import LogError, Store, StoreLog
from pmemsim.persistence.model import (
    Atom,
    Epoch,
    EpochBuilder,
    EpochPlan,
    PersistencyModel,
    Platform,
    Resume,
    build_epochs,
    scan_log,
)
from pmemsim.persistence.results import CrashReport, Failure

__all__ = ["Explorer", "initial_images", "plan_replay", "replay"]

_MASK = (1 << 128) - 1
_KEY = struct.Struct("<IQ").pack
#: Word hashes an Explorer remembers before starting over (a few hundred bytes each).
_HASH_CACHE = 1 << 18


def _word_hash(fidx: int, w0: int, value: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(_KEY(fidx, w0) + value, digest_size=16).digest(), "little")


class _EpochLimit(Exception):
    """The engine's per-epoch state limit was reached."""


class _Located(Exception):
    """Every state being located was found."""


class Explorer:
    """The image under exploration and the bookkeeping of one chunk of epochs.

    Engines use :meth:`push`/:meth:`pop` (apply/undo one atom), :meth:`word`/
    :meth:`set_word` (whole-word values), :meth:`check` (judge the current state) and
    :meth:`warn`. Runtime: O(atom size) per push/pop, O(1) plus the checker per check.
    """

    def __init__(self, plan: EpochPlan, images: Sequence[bytes], checker: Checker | None) -> None:
        self.plan = plan
        self.initial = images
        self.bufs = [bytearray(img) for img in images]
        self.views = [memoryview(b).toreadonly() for b in self.bufs]
        self.sizes = plan.sizes
        self.h = 0
        # Word hashes by (file, word, content): a word's old content was almost always hashed
        # when it was written, so a push or an advance mostly costs one blake2b or none.
        self.hashes: dict[tuple[int, int, bytes], int] = {}
        self.stack: list[tuple[Atom, int, bytes, int]] = []
        self.position = 0  # the epoch whose durable base the image holds
        self.offset = 0  # the index of plan.epochs[0] (a slice of the log's plan starts later)
        self.checker = checker
        self.verdicts: dict[object, CheckOutcome | None] = {}  # image hash, or (hash, markers)
        self.calls = 0
        # Per-epoch state, set by run_epoch.
        self.epoch: Epoch | None = None
        self.dedup = False
        self.seq = 0
        self.limit: int | None = None
        self.describer: Callable[[], tuple[Atom, ...]] | None = None
        self.markers = ""
        # Per-chunk results.
        self.seen: set[int] = set()
        self.first_hashes: list[int] = []
        self.first_dedup = bytearray()
        self.nondedup = 0
        self.failures: list[tuple[int, int, int, bool, CheckOutcome]] = []
        self.warnings: list[str] = []
        # Locate mode: state numbers of the current epoch whose applied atoms are wanted.
        self.targets: set[int] | None = None
        self.found: dict[int, tuple[Atom, ...]] = {}

    # -- the image ---------------------------------------------------------------
    def word(self, fidx: int, w0: int) -> bytes:
        """The current content of the aligned word at ``w0`` (shorter at the end of the file)."""
        return bytes(self.bufs[fidx][w0 : min(w0 + 8, self.sizes[fidx])])

    def word_hash(self, fidx: int, w0: int, value: bytes) -> int:
        """The hash contribution of ``value`` in the word at ``w0`` of file ``fidx``."""
        key = (fidx, w0, value)
        h = self.hashes.get(key)
        if h is None:
            if len(self.hashes) >= _HASH_CACHE:
                self.hashes.clear()
            h = self.hashes[key] = _word_hash(fidx, w0, value)
        return h

    def set_word(self, fidx: int, w0: int, value: bytes, delta: int) -> None:
        """Overwrite a word with ``value``; ``delta`` is its hash change (new minus old contribution)."""
        self.bufs[fidx][w0 : w0 + len(value)] = value
        self.h = (self.h + delta) & _MASK

    def _write(self, atom: Atom) -> tuple[int, bytes]:
        buf = self.bufs[atom.fidx]
        off = atom.offset
        w0 = off - (off & 7)
        w1 = min(w0 + 8, self.sizes[atom.fidx])
        old = bytes(buf[w0:w1])
        buf[off : off + len(atom.data)] = atom.data
        new = bytes(buf[w0:w1])
        if new != old:
            hashes, fidx = self.hashes, atom.fidx
            h_new = hashes.get((fidx, w0, new))
            if h_new is None:
                h_new = self.word_hash(fidx, w0, new)
            h_old = hashes.get((fidx, w0, old))
            if h_old is None:
                h_old = self.word_hash(fidx, w0, old)
            self.h = (self.h + h_new - h_old) & _MASK
        return w0, old

    def push(self, atom: Atom) -> None:
        """Apply ``atom`` on top of the current state (undone by :meth:`pop`)."""
        h = self.h
        w0, old = self._write(atom)
        self.stack.append((atom, w0, old, h))

    def pop(self) -> None:
        """Undo the last :meth:`push`."""
        atom, w0, old, h = self.stack.pop()
        self.bufs[atom.fidx][w0 : w0 + len(old)] = old
        self.h = h

    def unwind(self) -> None:
        """Undo every outstanding push."""
        while self.stack:
            self.pop()

    def advance(self, to_epoch: int) -> None:
        """Make the durable atoms of epochs ``position .. to_epoch-1`` part of the base."""
        if to_epoch < self.position:
            raise ValueError(f"cannot go back from epoch {self.position} to {to_epoch}")
        # Write the bytes now and hash each touched word once at the end: a worker
        # fast-forwarding over other workers' epochs then costs little more than the copying.
        bufs, sizes = self.bufs, self.sizes
        before: dict[tuple[int, int], bytes] = {}
        for epoch in self.plan.epochs[self.position - self.offset : to_epoch - self.offset]:
            for atom in epoch.flushed:
                fidx, off, data = atom.fidx, atom.offset, atom.data
                buf = bufs[fidx]
                key = (fidx, off - (off & 7))
                if key not in before:
                    w0 = key[1]
                    before[key] = bytes(buf[w0 : min(w0 + 8, sizes[fidx])])
                buf[off : off + len(data)] = data
        self._rehash(before)
        self.position = to_epoch

    def apply_stores(self, log: StoreLog, lo: int, hi: int) -> None:
        """Write the stores of records ``lo .. hi-1`` into the image (all durable: a quiescent point)."""
        bufs, sizes, fidx_of = self.bufs, self.sizes, {k: i for i, k in enumerate(self.plan.keys)}
        before: dict[tuple[int, int], bytes] = {}
        for rec in log.records[lo:hi]:
            if isinstance(rec, Store):
                fidx, off, data = fidx_of[rec.file], rec.offset, rec.data
                buf = bufs[fidx]
                for w0 in range(off - (off & 7), off + len(data), 8):
                    if (fidx, w0) not in before:
                        before[fidx, w0] = bytes(buf[w0 : min(w0 + 8, sizes[fidx])])
                buf[off : off + len(data)] = data
        self._rehash(before)

    def _rehash(self, before: dict[tuple[int, int], bytes]) -> None:
        h = self.h
        for (fidx, w0), old in before.items():
            new = bytes(self.bufs[fidx][w0 : w0 + len(old)])
            if new != old:
                h += self.word_hash(fidx, w0, new) - self.word_hash(fidx, w0, old)
        self.h = h & _MASK

    def _check(self) -> None:
        """Assert that the incremental hash matches the image (tests call this). Runtime: O(file sizes)."""
        total = 0
        for fidx, (buf, init) in enumerate(zip(self.bufs, self.initial, strict=True)):
            for w0 in range(0, len(buf), 8):
                cur, old = bytes(buf[w0 : w0 + 8]), init[w0 : w0 + 8]
                if cur != old:
                    total += _word_hash(fidx, w0, cur) - _word_hash(fidx, w0, old)
        assert total & _MASK == self.h, "image hash out of sync with the image"

    # -- states ------------------------------------------------------------------
    def applied(self) -> tuple[Atom, ...]:
        """The atoms that reached media in the current state."""
        if self.describer is not None:
            return self.describer()
        return tuple(entry[0] for entry in self.stack)

    def warn(self, message: str) -> None:
        """Attach a warning to the report (once: locating failures re-runs engines)."""
        if self.targets is None:
            self.warnings.append(message)

    def check(self) -> None:
        """Judge the current state (or, locating, remember its atoms)."""
        seq = self.seq
        if self.limit is not None and seq >= self.limit:
            raise _EpochLimit
        self.seq = seq + 1
        if self.targets is not None:
            if seq in self.targets:
                self.found[seq] = self.applied()
                if len(self.found) == len(self.targets):
                    raise _Located
            return
        h = self.h
        if h not in self.seen:
            self.seen.add(h)
            self.first_hashes.append(h)
            self.first_dedup.append(self.dedup)
        elif self.dedup:
            return
        assert self.checker is not None and self.epoch is not None
        # A checker that reads the markers may judge one image differently under other
        # markers: its verdicts are remembered per (image, markers seen so far).
        key: object = (h, self.epoch.markers_before) if self.checker.needs_markers else h
        try:
            outcome = self.verdicts[key]
        except KeyError:
            if self.checker.needs_markers:
                self.markers = "|".join(self.plan.markers[: self.epoch.markers_before])
            outcome = self.checker.check(self.views, self.markers)
            self.calls += 1
            if not self.dedup:  # a deduplicating engine never asks twice: keep memory for the others
                self.verdicts[key] = outcome
        if not self.dedup:
            self.nondedup += 1
        if outcome is not None:
            assert self.epoch is not None
            self.failures.append((self.epoch.index, seq, h, self.dedup, outcome))

    def run_epoch(self, epoch: Epoch, seed: int) -> None:
        """Explore ``epoch`` (the image must be at its base) and advance past it."""
        if epoch.index != self.position:
            self.advance(epoch.index)
        engine = epoch.engine
        if engine.wants(epoch):
            self.epoch = epoch
            self.dedup = engine.dedup
            self.seq = 0
            self.limit = None
            self.describer = None
            try:
                engine.explore(epoch, self, seed)
            except _EpochLimit:
                self.warn(
                    f"epoch {epoch.index}: {engine.name} stopped after {self.limit} states (limit reached)"
                )
            finally:
                self.unwind()
                self.describer = None
        self.advance(epoch.index + 1)


@dataclass(frozen=True)
class _Job:
    plan: EpochPlan
    images: tuple[bytes, ...]
    checker: Checker
    seed: int


@dataclass
class _ChunkResult:
    first_hashes: list[int]
    first_dedup: bytes
    nondedup: int
    failures: list[tuple[int, int, int, bool, CheckOutcome]]
    warnings: list[str]
    calls: int
    elapsed: float = field(default=0.0)


def _explore_range(ex: Explorer, lo: int, hi: int, seed: int) -> _ChunkResult:
    """Explore epochs ``lo .. hi-1`` with ``ex`` (at or before ``lo``; its checker open) as one chunk."""
    ex.seen, ex.first_hashes, ex.first_dedup = set(), [], bytearray()
    ex.nondedup, ex.failures, ex.warnings = 0, [], []
    calls_before = ex.calls
    start = time.perf_counter()
    ex.advance(lo)
    for epoch in ex.plan.epochs[lo - ex.offset : hi - ex.offset]:
        ex.run_epoch(epoch, seed)
    return _ChunkResult(
        ex.first_hashes,
        bytes(ex.first_dedup),
        ex.nondedup,
        ex.failures,
        ex.warnings,
        ex.calls - calls_before,
        time.perf_counter() - start,
    )


def _run_chunk(job: _Job, lo: int, hi: int) -> _ChunkResult:
    job.checker.open(job.plan.keys, job.plan.sizes)
    try:
        return _explore_range(Explorer(job.plan, job.images, job.checker), lo, hi, job.seed)
    finally:
        job.checker.close()


class _Claims:
    """Which blocks of ``block`` consecutive epochs some process took (shared memory, set before forking).

    A process explores its own blocks front to back, taking them one at a time; once out
    of them it steals the back half of the last run of free blocks it knows the epochs of
    (work stealing: a few large steals, each costing one fast-forward of the image).
    """

    def __init__(self, count: int, block: int, context: Any) -> None:
        self.flags = context.RawArray("b", max(count, 1))
        self.lock = context.Lock()
        self.block = block

    def take(self, index: int) -> bool:
        """Claim block ``index``; False when another process has it."""
        with self.lock:
            if self.flags[index]:
                return False
            self.flags[index] = 1
            return True

    def steal(self, below: int) -> tuple[int, int] | None:
        """Claim the back half (rounded up) of the last run of free blocks under ``below``."""
        flags = self.flags
        with self.lock:
            last = below - 1
            while last >= 0 and flags[last]:
                last -= 1
            if last < 0:
                return None
            first = last
            while first > 0 and not flags[first - 1]:
                first -= 1
            first += (last + 1 - first) // 2
            for i in range(first, last + 1):
                flags[i] = 1
            return first, last + 1


def _explore_blocks(
    job: _Job, claims: _Claims, own: tuple[int, int], known: int
) -> list[tuple[int, _ChunkResult]]:
    """One process's share: its own blocks ``own``, then steals among blocks ``< known``."""
    plan, block, count = job.plan, claims.block, len(job.plan.epochs)
    out: list[tuple[int, _ChunkResult]] = []
    ex = Explorer(plan, job.images, job.checker)

    def run(first: int, last: int) -> None:
        nonlocal ex
        lo, hi = first * block, min(last * block, count)
        if ex.position > lo:  # a steal behind the image: start again from the initial image
            old, ex = ex, Explorer(plan, job.images, job.checker)
            ex.verdicts, ex.hashes, ex.calls = old.verdicts, old.hashes, old.calls
        out.append((lo, _explore_range(ex, lo, hi, job.seed)))

    job.checker.open(plan.keys, plan.sizes)
    try:
        for b in range(*own):
            if claims.take(b):
                run(b, b + 1)
        while (stolen := claims.steal(known)) is not None:
            run(*stolen)
    finally:
        job.checker.close()
    return out


def _fork(work: Callable[[], object]) -> tuple[int, int]:
    """Run ``work`` in a forked child; returns (pid, read end of the pipe carrying its pickled outcome)."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    status = 1  # pragma: no cover - the child's side (coverage does not follow os._exit)
    try:  # pragma: no cover
        os.close(read)
        try:
            payload: tuple[bool, object] = (True, work())
        except BaseException as exc:
            payload = (False, exc)
        try:
            data = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = pickle.dumps((False, RuntimeError(f"worker {os.getpid()} failed: {payload[1]!r}")))
        with os.fdopen(write, "wb") as f:
            f.write(data)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        status = 0
    finally:  # pragma: no cover
        os._exit(status)


def _collect(pid: int, read: int) -> Any:
    """The outcome a forked worker sent (its exception is raised here)."""
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"crash-state worker process {pid} died (wait status {status})")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


def _stop(children: list[tuple[int, int]]) -> None:
    """Kill and reap the workers still running (after an error)."""
    for pid, read in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        finally:
            os.close(read)


def _explore_parallel(
    log: StoreLog,
    builder: EpochBuilder,
    images: tuple[bytes, ...],
    checker: Checker,
    seed: int,
    workers: int,
    fences: int,
    allow_open_markers: bool,
) -> tuple[EpochPlan, list[_ChunkResult]]:
    """Build the plan and explore it in ``workers`` processes, building and exploring at once.

    The parent scans the log; when it has cut the first epochs it forks a worker that
    explores them (a fork shares the plan so far copy-on-write, nothing is pickled)
    while the parent goes on cutting. The parent explores the last epochs itself (when
    it is the main thread, which the checker timeout needs; else it forks one more
    worker). Early workers get more epochs than an even share because they start before
    the plan is complete, and work stealing evens out the rest. Results come back per
    block and are merged in epoch order, so they do not depend on the split.
    """
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Linux always forks
        raise ValueError("workers > 1 needs the 'fork' start method, which this platform lacks")
    context = multiprocessing.get_context("fork")
    block = max(1, -(-(fences + 1) // (16 * workers)))
    claims = _Claims(-(-(fences + 1) // block) + 1, block, context)
    in_parent = threading.current_thread() is threading.main_thread()
    forks = workers - 1 if in_parent else workers
    records = len(log.records)
    children: list[tuple[int, int]] = []
    results: list[tuple[int, _ChunkResult]] = []
    try:
        start = 0
        for k in range(1, forks + 1):
            if k < workers:
                builder.feed(records * (4 * k + 1) // (4 * workers))
                plan = builder.partial()
            else:
                plan = builder.finish(allow_open_markers=allow_open_markers)
            known = len(plan.epochs) // block if k < workers else -(-len(plan.epochs) // block)
            job = _Job(plan, images, checker, seed)
            own = (start, known)
            children.append(_fork(functools.partial(_explore_blocks, job, claims, own, known)))
            start = known
        if in_parent:
            plan = builder.finish(allow_open_markers=allow_open_markers)
            total = -(-len(plan.epochs) // block)
            results += _explore_blocks(_Job(plan, images, checker, seed), claims, (start, total), total)
        while children:
            results += _collect(*children.pop(0))
    finally:
        _stop(children)
    results.sort(key=lambda item: item[0])
    return plan, [result for _, result in results]


def _read_image(key: str, source: bytes | str | os.PathLike[str], size: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(size)
        except OSError as exc:
            raise LogError(
                f"cannot read the initial image of file {key!r} from {os.fspath(source)!r}: {exc}"
            ) from exc
    if len(data) < size:
        raise LogError(f"initial image of file {key!r} is {len(data)} bytes, the log needs {size}")
    return data[:size]


def initial_images(
    log: StoreLog, images: Mapping[str, bytes | str | os.PathLike[str]] | None = None
) -> tuple[bytes, ...]:
    """The durable content of every file of ``log`` when recording started, in ``log.files`` order.

    ``images`` overrides by key (bytes or a path); otherwise ``FileInfo.initial``, else the
    file at ``FileInfo.path``, else zeros when the file has no path. Raises LogError for an
    unreadable or too short image, or an override for an unknown key.
    """
    images = dict(images or {})
    unknown = set(images) - set(log.files)
    if unknown:
        raise LogError(f"images given for files the log does not register: {sorted(unknown)}")
    out = []
    for key, info in log.files.items():
        if key in images:
            out.append(_read_image(key, images[key], info.size))
        elif info.initial is not None:
            out.append(info.initial)
        elif info.path is not None:
            out.append(_read_image(key, info.path, info.size))
        else:
            out.append(bytes(info.size))
    return tuple(out)


def _resolve_model(log: StoreLog, model: PersistencyModel | Granularity | None) -> PersistencyModel:
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
    engine: Engine | str = "Exhaustive",
    markers: Mapping[str, Engine | str] | None = None,
    model: PersistencyModel | Granularity | None = None,
    allow_open_markers: bool = False,
) -> EpochPlan:
    """The epochs :func:`replay` explores (validates the log; raises LogError/MarkerError)."""
    if not isinstance(log, StoreLog):
        raise TypeError(f"log must be a StoreLog, not {type(log).__name__}")
    section_engines = {name: engine_from_name(spec) for name, spec in (markers or {}).items()}
    return build_epochs(
        log,
        _resolve_model(log, model),
        engine_from_name(engine),
        section_engines,
        allow_open_markers=allow_open_markers,
    )


def _model_name(model: PersistencyModel) -> str:
    if model.platform is Platform.EADR:
        return "eADR"
    return "ADR" if model.flush_unit == 64 else f"ADR (flush unit {model.flush_unit} B)"


class _Counter:
    """A counter shared by forked processes: each :meth:`take` returns the next integer."""

    def __init__(self, context: Any) -> None:
        self.value = context.RawValue("q", 0)
        self.lock = context.Lock()

    def take(self) -> int:
        """The next integer (0, 1, 2, ... across all processes)."""
        with self.lock:
            value = int(self.value.value)
            self.value.value = value + 1
            return value


@dataclass(frozen=True)
class _Slices:
    log: StoreLog
    model: PersistencyModel
    engine: Engine
    sections: Mapping[str, Engine]
    markers: tuple[str, ...]
    starts: list[Resume]
    images: tuple[bytes, ...]
    checker: Checker
    seed: int
    counter: _Counter


def _explore_slices(job: _Slices) -> list[tuple[int, int, _ChunkResult]]:
    """Take slices of the log in turn; cut each one's epochs (from its quiescent start) and explore them.

    Returns (slice, epoch count, result) per slice taken. The image is carried from one
    slice to the next by writing the stores in between (all durable at quiescent points).
    """
    log, starts = job.log, job.starts
    ex: Explorer | None = None
    at = 0  # the image holds the stores of records before this one
    out: list[tuple[int, int, _ChunkResult]] = []
    job.checker.open(tuple(log.files), tuple(info.size for info in log.files.values()))
    try:
        while (s := job.counter.take()) < len(starts):
            start = starts[s]
            last = s + 1 == len(starts)
            builder = EpochBuilder(
                log, job.model, job.engine, job.sections, check=False, resume=start, marker_names=job.markers
            )
            builder.feed(len(log.records) if last else starts[s + 1].record)
            plan = builder.finish(allow_open_markers=True) if last else builder.partial()
            if ex is None:
                ex = Explorer(plan, job.images, job.checker)
            ex.plan = plan
            ex.apply_stores(log, at, start.record)
            ex.offset = ex.position = start.epochs
            count = len(plan.epochs)
            out.append((s, count, _explore_range(ex, start.epochs, start.epochs + count, job.seed)))
            at = len(log.records) if last else starts[s + 1].record
    finally:
        job.checker.close()
    return out


def _explore_sliced(job: _Slices, workers: int) -> tuple[int, list[_ChunkResult]]:
    """Explore the slices in ``workers`` processes (the caller's included when it is the main thread).

    Every process cuts the epochs of the slices it takes itself, so nothing is planned
    before the workers start. Returns the epoch count and the results in epoch order.
    """
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Linux always forks
        raise ValueError("workers > 1 needs the 'fork' start method, which this platform lacks")
    in_parent = threading.current_thread() is threading.main_thread()
    children: list[tuple[int, int]] = []
    results: list[tuple[int, int, _ChunkResult]] = []
    try:
        for _ in range(workers - 1 if in_parent else workers):
            children.append(_fork(functools.partial(_explore_slices, job)))
        if in_parent:
            results += _explore_slices(job)
        while children:
            results += _collect(*children.pop(0))
    finally:
        _stop(children)
    results.sort(key=lambda item: item[0])
    if [s for s, _, _ in results] != list(range(len(job.starts))):  # pragma: no cover - a bug
        raise RuntimeError("crash-state workers lost a slice of the log")
    return sum(count for _, count, _ in results), [result for _, _, result in results]


def _locate(
    job: _Job, picked: list[tuple[int, int, int, bool, CheckOutcome]]
) -> dict[tuple[int, int], tuple[Atom, ...]]:
    """Re-run the epochs of ``picked`` failures without the checker to recover their applied atoms."""
    ex = Explorer(job.plan, job.images, None)
    wanted: dict[int, set[int]] = {}
    for epoch_index, seq, *_ in picked:
        wanted.setdefault(epoch_index, set()).add(seq)
    out: dict[tuple[int, int], tuple[Atom, ...]] = {}
    for index in sorted(wanted):
        epoch = job.plan.epochs[index]
        ex.advance(index)
        ex.targets, ex.found = wanted[index], {}
        ex.epoch, ex.dedup, ex.seq, ex.limit, ex.describer = epoch, epoch.engine.dedup, 0, None, None
        try:
            epoch.engine.explore(epoch, ex, job.seed)
        except (_Located, _EpochLimit):
            pass
        finally:
            ex.unwind()
            ex.describer = None
        out.update({(index, seq): atoms for seq, atoms in ex.found.items()})
        ex.targets = None
    return out


def replay(
    log: StoreLog,
    checker: Checker | Callable[[Any], object] | str | Sequence[str],
    *,
    engine: Engine | str = "Exhaustive",
    markers: Mapping[str, Engine | str] | None = None,
    workers: int = 1,
    seed: int | None = None,
    model: PersistencyModel | Granularity | None = None,
    images: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    timeout: float | None = 60.0,
    max_failures: int = 100,
    allow_open_markers: bool = False,
) -> CrashReport:
    """Check every crash state ``engine`` picks from ``log`` with ``checker``; return a :class:`CrashReport`.

    ``engine`` applies to the whole log and ``markers`` maps section names to engines for
    the epochs inside ``NAME.BEGIN``/``NAME.END`` (pmreorder's ``-x NAME=Engine``); both
    take :class:`Engine` instances or names. ``model`` defaults to the log's granularity
    (ADR when unknown). ``seed`` (None = 0) drives ReorderPartial and Random. ``images``
    overrides the initial content of files (see :func:`initial_images`); the user's files
    are never written. ``timeout`` bounds each checker call. ``workers`` > 1 explores
    in forked processes with identical results.

    Raises LogError (bad record or range, unreadable image), MarkerError (markers that do
    not nest), ValueError/TypeError (bad arguments). Checker failures are not raised:
    they are failing states in the report.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be a non-negative int, got {max_failures!r}")
    started = time.perf_counter()
    if not isinstance(log, StoreLog):
        raise TypeError(f"log must be a StoreLog, not {type(log).__name__}")
    section_engines = {name: engine_from_name(spec) for name, spec in (markers or {}).items()}
    default = engine_from_name(engine)
    resolved = _resolve_model(log, model)
    if workers == 1:
        plan: EpochPlan | None = build_epochs(
            log, resolved, default, section_engines, allow_open_markers=allow_open_markers
        )
    else:
        # Validates the log first, so no checker runs on a log that turns out to be bad halfway.
        scan = scan_log(log, resolved, allow_open_markers=allow_open_markers, slices=8 * workers)
    images_ = initial_images(log, images)
    checker_ = as_checker(checker, timeout=timeout)
    seed_ = 0 if seed is None else seed
    if workers == 1:
        assert plan is not None
        chunks = [_run_chunk(_Job(plan, images_, checker_, seed_), 0, len(plan.epochs))]
        epoch_count = len(plan.epochs)
    else:
        records = len(log.records)
        starts = list(scan.points)
        bounds = [p.record for p in starts] + [records]
        if len(starts) > 1 and max(b - a for a, b in itertools.pairwise(bounds)) * workers <= records:
            # Quiescent points cut the log into slices that workers plan and explore on their own.
            plan = None
            slices = _Slices(
                log,
                resolved,
                default,
                section_engines,
                scan.markers,
                starts,
                images_,
                checker_,
                seed_,
                _Counter(multiprocessing.get_context("fork")),
            )
            epoch_count, chunks = _explore_sliced(slices, workers)
        else:
            # Something stays in flight across most fences: plan in the parent, forking as it goes.
            builder = EpochBuilder(log, resolved, default, section_engines, check=False)
            plan, chunks = _explore_parallel(
                log, builder, images_, checker_, seed_, workers, scan.epochs, allow_open_markers
            )
            epoch_count = len(plan.epochs)

    seen: set[int] = set()
    checked = 0
    kept: list[tuple[int, int, int, bool, CheckOutcome]] = []
    inconsistent = errors = calls = 0
    notes: list[str] = []
    if (
        workers == 1
        and isinstance(checker_, CallableChecker)
        and checker_.timeout is not None
        and threading.current_thread() is not threading.main_thread()
    ):
        notes.append("checker timeout not enforced: SIGALRM needs the main thread (use workers >= 2)")
    for result in chunks:
        checked += result.nondedup
        new = []
        for h, dedup in zip(result.first_hashes, result.first_dedup, strict=True):
            if h not in seen:
                new.append(h)
                checked += dedup
        for failure in result.failures:
            if failure[3] and failure[2] in seen:
                continue  # an image an earlier chunk already judged
            inconsistent += 1
            errors += failure[4].verdict is Verdict.ERROR
            if len(kept) < max_failures:
                kept.append(failure)
        seen.update(new)
        notes += result.warnings
        calls += result.calls

    if kept and plan is None:  # the workers planned their slices: plan the whole log for the details
        plan = build_epochs(log, resolved, default, section_engines, allow_open_markers=allow_open_markers)
    located = _locate(_Job(plan, images_, checker_, seed_), kept) if kept and plan is not None else {}
    failures = []
    for epoch_index, seq, _, _, outcome in kept:
        assert plan is not None
        epoch = plan.epochs[epoch_index]
        applied = located[(epoch_index, seq)]
        applied_ids = {a.id for a in applied}
        failures.append(
            Failure(
                epoch=epoch_index,
                seq=seq,
                fence=None if epoch.final else epoch.end,
                prefix=epoch.end,
                engine=epoch.engine.name,
                sections=epoch.sections,
                file=outcome.file,
                verdict=outcome.verdict,
                message=outcome.message,
                applied=applied,
                lost=tuple(a for a in epoch.engine.universe(epoch) if a.id not in applied_ids),
            )
        )
    return CrashReport(
        engine=default.name,
        markers=tuple((name, engine_from_name(spec).name) for name, spec in (markers or {}).items()),
        model=_model_name(resolved),
        epochs=epoch_count,
        states_checked=checked,
        distinct_images=len(seen),
        inconsistent=inconsistent,
        errors=errors,
        failures=tuple(failures),
        warnings=tuple(notes),
        checker_calls=calls,
        elapsed=time.perf_counter() - started,
        workers=workers,
    )
