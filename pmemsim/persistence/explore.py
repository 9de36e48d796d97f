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

The epochs are cut into contiguous chunks. A chunk is explored by one process (the
caller's with ``workers=1``, a forked worker otherwise), which fast-forwards its image
by applying the durable atoms of the epochs before the chunk. A chunk reports, per
state, only what the merge needs: the first-in-chunk image hashes, the count of
non-deduplicating states and the failing (epoch, state number, hash) triples. The
parent merges chunks in order, dropping deduplicated states whose image an earlier
chunk saw, which gives exactly the single-process result for any chunking. The
details of the reported failures (which atoms reached media) are recovered afterwards
by re-running those epochs' engines without the checker.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pmemsim.enums import Granularity
from pmemsim.persistence.checkers import CallableChecker, Checker, CheckOutcome, Verdict, as_checker
from pmemsim.persistence.engines import Engine, engine_from_name
from pmemsim.persistence.log import LogError, StoreLog
from pmemsim.persistence.model import Atom, Epoch, EpochPlan, PersistencyModel, Platform, build_epochs
from pmemsim.persistence.results import CrashReport, Failure

__all__ = ["Explorer", "initial_images", "plan_replay", "replay"]

_MASK = (1 << 128) - 1
_KEY = struct.Struct("<IQ").pack


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
        self.stack: list[tuple[Atom, int, bytes, int]] = []
        self.position = 0  # the epoch whose durable base the image holds
        self.checker = checker
        self.verdicts: dict[int, CheckOutcome | None] = {}
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
        return _word_hash(fidx, w0, value)

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
            self.h = (self.h + _word_hash(atom.fidx, w0, new) - _word_hash(atom.fidx, w0, old)) & _MASK
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
        for epoch in self.plan.epochs[self.position : to_epoch]:
            for atom in epoch.flushed:
                self._write(atom)
        self.position = to_epoch

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
        try:
            outcome = self.verdicts[h]
        except KeyError:
            assert self.checker is not None and self.epoch is not None
            if self.checker.needs_markers:
                self.markers = "|".join(self.plan.markers[: self.epoch.markers_before])
            outcome = self.checker.check(self.views, self.markers)
            self.calls += 1
            if not self.dedup:  # a deduplicating engine never asks twice: keep memory for the others
                self.verdicts[h] = outcome
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


_WORKER: dict[str, Any] = {}


def _run_chunk(
    job: _Job, lo: int, hi: int, explorer: Explorer | None = None
) -> tuple[_ChunkResult, Explorer]:
    ex = explorer
    if ex is None or ex.position > lo:
        ex = Explorer(job.plan, job.images, job.checker)
    ex.seen, ex.first_hashes, ex.first_dedup = set(), [], bytearray()
    ex.nondedup, ex.failures, ex.warnings = 0, [], []
    calls_before = ex.calls
    start = time.perf_counter()
    job.checker.open(job.plan.keys, job.plan.sizes)
    try:
        ex.advance(lo)
        for epoch in job.plan.epochs[lo:hi]:
            ex.run_epoch(epoch, job.seed)
    finally:
        job.checker.close()
    result = _ChunkResult(
        ex.first_hashes,
        bytes(ex.first_dedup),
        ex.nondedup,
        ex.failures,
        ex.warnings,
        ex.calls - calls_before,
        time.perf_counter() - start,
    )
    return result, ex


def _worker_init(job: _Job) -> None:
    _WORKER["job"] = job
    _WORKER["explorer"] = None


def _worker_chunk(lo: int, hi: int) -> _ChunkResult:
    result, ex = _run_chunk(_WORKER["job"], lo, hi, _WORKER["explorer"])
    _WORKER["explorer"] = ex
    return result


def _chunks(plan: EpochPlan, count: int) -> list[tuple[int, int]]:
    """Contiguous epoch ranges of about equal estimated work."""
    weights = [1 + (e.engine.estimate(e) if e.engine.wants(e) else 0) for e in plan.epochs]
    total = sum(weights)
    if count <= 1 or not weights:
        return [(0, len(weights))]
    target = total / count
    out: list[tuple[int, int]] = []
    lo, acc = 0, 0
    for i, w in enumerate(weights):
        acc += w
        if acc >= target * (len(out) + 1) and i + 1 < len(weights):
            out.append((lo, i + 1))
            lo = i + 1
    out.append((lo, len(weights)))
    return out


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


def _explore_chunks(job: _Job, workers: int) -> Iterator[_ChunkResult]:
    if workers == 1:
        yield _run_chunk(job, 0, len(job.plan.epochs))[0]
        return
    chunks = _chunks(job.plan, workers * 8)
    methods = multiprocessing.get_all_start_methods()
    if "fork" not in methods:  # pragma: no cover - Linux always forks
        raise ValueError("workers > 1 needs the 'fork' start method, which this platform lacks")
    # Forked workers inherit the job (plan, images, checker) without pickling, so closures work as checkers.
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_init, initargs=(job,)
        ) as pool:
            futures = [pool.submit(_worker_chunk, lo, hi) for lo, hi in chunks]
            for future in futures:
                yield future.result()


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
    plan = plan_replay(
        log, engine=engine, markers=markers, model=model, allow_open_markers=allow_open_markers
    )
    job = _Job(
        plan, initial_images(log, images), as_checker(checker, timeout=timeout), 0 if seed is None else seed
    )

    seen: set[int] = set()
    checked = 0
    kept: list[tuple[int, int, int, bool, CheckOutcome]] = []
    inconsistent = errors = calls = 0
    notes: list[str] = []
    if (
        workers == 1
        and isinstance(job.checker, CallableChecker)
        and job.checker.timeout is not None
        and threading.current_thread() is not threading.main_thread()
    ):
        notes.append("checker timeout not enforced: SIGALRM needs the main thread (use workers >= 2)")
    for result in _explore_chunks(job, workers):
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

    located = _locate(job, kept) if kept else {}
    failures = []
    for epoch_index, seq, _, _, outcome in kept:
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
    default = engine_from_name(engine)
    return CrashReport(
        engine=default.name,
        markers=tuple((name, engine_from_name(spec).name) for name, spec in (markers or {}).items()),
        model=_model_name(plan.model),
        epochs=len(plan.epochs),
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
