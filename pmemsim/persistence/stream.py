"""Streaming replay: a store log judged as it is read, in memory that does not grow with its length.

Theory of operation
-------------------
A single-process :func:`~pmemsim.persistence.replay` builds the whole log, then the whole
plan (an :class:`~pmemsim.persistence.model.Atom` per 8-byte piece of a store), then
explores it; both grow with the log. :func:`replay_stream` does the same work from a
:class:`RecordSource` that hands out the log in batches of records (a pmemcheck file
read a chunk at a time: :class:`~pmemsim.persistence.pmemcheck.PmemcheckStream`):

* one :class:`~pmemsim.persistence.model.EpochBuilder` sees every batch in turn (it
  validates each record as :func:`~pmemsim.persistence.model.build_epochs` does) and
  cuts the epochs it closes; records keep their index in the whole log;
* one :class:`~pmemsim.persistence.explore.Explorer` explores those epochs at once, in
  order, carrying the durable image from one to the next, exactly as it explores a
  whole plan; then the builder forgets them (:meth:`EpochBuilder.forget`) and the batch
  is dropped. What stays is the image (the pool), the atoms still in flight, the
  visible markers (checkers are shown all those before a crash), and the explorer's
  deduplication set and verdict cache (one entry per distinct state: the same memory
  the whole-log path needs for them);
* a failure is located (its atoms and crash point, by re-running its epoch's engine
  without the checker, as :func:`~pmemsim.persistence.explore.build_report` does) right
  after its epoch, while the epoch is still known; only the first ``max_failures`` are
  kept, which are the ones the whole-log path keeps.

The report is the whole-log path's, field for field (tests compare them). The whole-log
path checks the log before it runs the checker; here a bad record is found when it is
read, so the checker may have judged earlier states by then: the error raised is still
the one the whole-log path raises (after a checker or image error the rest of the log is
still read and checked, and a log error found there wins). No epoch is explored before
the log's first store, so a log without stores calls no checker. The files and their
sizes are taken when the first epoch is explored; a file registered (or grown) after
that raises :class:`Restart`: the caller replays the whole log instead, since the states
already judged lacked it.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from pmemsim.persistence.checkers import (
    Checker,
    CheckerError,
    Verdict,
    as_checker,
)
from pmemsim.persistence.engines import Engine, engine_from_name, with_max_states
from pmemsim.persistence.explore import (
    EngineChoice,
    Explorer,
    Located,
    NothingToCheck,
    failure_at,
    report_of,
    resolve_model,
)
from pmemsim.persistence.image import initial_images
from pmemsim.persistence.log import Fence, Flush, LogError, Record, Store, StoreLog, paused_gc
from pmemsim.persistence.model import Epoch, EpochBuilder, EpochPlan
from pmemsim.persistence.results import CrashReport, Failure

__all__ = [
    "ImagesRefused",
    "ImagesUnreadable",
    "ListSource",
    "RecordSource",
    "Restart",
    "SharedWord",
    "StreamResult",
    "replay_stream",
]


class Restart(Exception):
    """The streamed log needs the whole-log replay (a file registered after exploring began, or
    a log only the full reader reads): nothing of this run is kept."""


class ImagesUnreadable(LogError):
    """The initial content of a registered file cannot be read (the message says which)."""


class ImagesRefused(ValueError):
    """``images``, a callable, refused the log's files (an --image naming no file of the log)."""


class RecordSource(Protocol):
    """A store log handed out in batches of records, in program order.

    ``log.files`` holds the files registered so far (it may grow while batches come);
    ``log.granularity`` and ``log.page_size`` are the log's.
    """

    log: StoreLog

    def batches(self) -> Iterator[list[Record]]:
        """The records, in order, a list at a time."""
        ...


class ListSource:
    """A log already in memory (a saved log) handed out in batches: the plan is never built whole."""

    def __init__(self, log: StoreLog, batch: int = 1 << 14) -> None:
        self.log = StoreLog([], log.files, log.granularity, log.page_size)
        self._records = log.records
        self._batch = batch
        #: Records handed out so far, of ``total``; ``on_read`` (if set) gets ``done`` per batch.
        self.done = 0
        self.total = len(log.records)
        self.on_read: Callable[[int], None] | None = None

    def batches(self) -> Iterator[list[Record]]:
        """Slices of the log's records."""
        records, step = self._records, self._batch
        for i in range(0, len(records), step):
            batch = records[i : i + step]
            self.done = i + len(batch)
            if self.on_read is not None:
                self.on_read(self.done)
            yield batch


class SharedWord:
    """One integer in anonymous shared memory: a forked child writes it, its parent reads it."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 8)
        self._word = memoryview(self._memory).cast("q")

    @property
    def value(self) -> int:
        """The integer."""
        return int(self._word[0])

    def set(self, value: int) -> None:
        """Make the integer ``value``."""
        self._word[0] = value


@dataclass
class StreamResult:
    """What :func:`replay_stream` gives: the report, and the files that already held every store."""

    report: CrashReport
    #: Keys of the files the log stores to whose initial image already holds every store
    #: (see :func:`~pmemsim.persistence.progress.stale_files`).
    stale: list[str] = field(default_factory=list)
    #: How many records the log holds, and how many files it registers.
    records: int = 0
    files: int = 0


class _After:
    """Every store applied to a copy of the initial images, to tell a stale image (see StreamResult)."""

    def __init__(self, keys: Sequence[str], images: Sequence[bytes]) -> None:
        self.keys = tuple(keys)
        self.initial = tuple(images)
        self.after = {key: bytearray(img) for key, img in zip(keys, images, strict=True)}
        self.touched: set[str] = set()

    def apply(self, records: Sequence[Record]) -> None:
        after, touched = self.after, self.touched
        file = ""
        image = bytearray()
        for rec in records:
            kind = type(rec)
            if kind is Store or (kind is not Flush and kind is not Fence and isinstance(rec, Store)):
                rec = cast(Store, rec)
                offset, data = rec.offset, rec.data
                if rec.file != file:
                    file = rec.file
                    image = after[file]
                    touched.add(file)
                image[offset : offset + len(data)] = data

    def stale(self) -> list[str]:
        return [
            key
            for key, img in zip(self.keys, self.initial, strict=True)
            if key in self.touched and self.after[key] == img
        ]


class _Run:
    """The state of one streaming replay between batches."""

    def __init__(
        self,
        window: StoreLog,
        checker: Checker,
        engine_of: EngineChoice,
        seed: int,
        images: Mapping[str, Any] | Callable[[Sequence[str]], Mapping[str, Any]] | None,
        max_failures: int,
        slots: Any,
    ) -> None:
        self.window = window
        self.checker = checker
        self.engine_of = engine_of
        self.seed = seed
        self.images_arg = images
        self.max_failures = max_failures
        self.slots = slots
        self.ex: Explorer | None = None
        self.images: tuple[bytes, ...] | None = None
        self.shape: tuple[tuple[str, ...], tuple[int, ...]] | None = None
        self.after: _After | None = None  # set when the explorer starts
        self.opened = False
        self.first_store: int | None = None
        self.markers: tuple[tuple[str, Any, int], ...] = ()
        self.wanted = False
        self.checked = 0
        self.inconsistent = self.errors = 0
        self.failures: list[Failure] = []
        self.failed: BaseException | None = None  # a checker or image error: the log is still read to its end

    def read_images(self) -> tuple[bytes, ...]:
        """The files' initial images (once); ImagesUnreadable when one cannot be read."""
        if self.images is None:
            given = self.images_arg
            if callable(given):  # resolved against the files now known (ImagesRefused when it cannot)
                given = given(tuple(self.window.files))
            try:
                self.images = initial_images(self.window, given)
            except LogError as exc:
                raise ImagesUnreadable(str(exc)) from None
        return self.images

    def start(self, model: Any) -> Explorer:
        """The explorer, on the files known now (their initial images read)."""
        files = self.window.files
        keys = tuple(files)
        sizes = tuple(info.size for info in files.values())
        self.shape = (keys, sizes)
        images = self.read_images()
        self.after = _After(keys, images)
        plan = EpochPlan(keys, sizes, (), (), model, ())
        ex = Explorer(plan, images, self.checker, self.engine_of, sees_markers=self.checker.sees_markers)
        ex.slots, ex.slot = self.slots, 0
        ex.first_store = self.first_store
        self.ex = ex
        self.checker.open(keys, sizes)
        self.opened = True
        return ex

    def same_files(self) -> bool:
        """Whether the files and sizes are those the exploration started with."""
        files = self.window.files
        assert self.shape is not None
        keys, sizes = self.shape
        return (
            len(files) == len(keys)
            and tuple(info.size for info in files.values()) == sizes
            and (tuple(files) == keys)
        )

    def explore(self, builder: EpochBuilder, model: Any) -> None:
        """Explore the epochs ``builder`` closed, in order, then make it forget them."""
        if self.first_store is None:
            if not builder.atoms:
                return  # nothing stored yet: epochs wait (a log with no store calls no checker)
            self.first_store = builder.atoms[0].record
        ex = self.ex if self.ex is not None else self.start(model)
        if not self.same_files():
            raise Restart("a file was registered or grew after exploring began")
        if len(builder.markers) != len(self.markers):
            self.markers = tuple(builder.markers)
        epochs = builder.epochs
        if epochs:
            ex.plan = EpochPlan(ex.plan.keys, ex.plan.sizes, tuple(epochs), (), model, self.markers)
            ex.offset = epochs[0].index
            # The batch's records, atoms and epochs live while it is explored and form no cycle:
            # collections need not walk them over and over (as the whole-log path freezes its log).
            frozen = gc.get_freeze_count() == 0
            gc.freeze()
            try:
                for epoch in epochs:
                    self.run_epoch(ex, epoch)
            finally:
                if frozen:
                    gc.unfreeze()
            self.checked += ex.first_dedup.count(1)
            ex.first_keys.clear()
            ex.first_dedup.clear()
        builder.forget()

    def run_epoch(self, ex: Explorer, epoch: Epoch) -> None:
        """Explore ``epoch`` (as Explorer.run_epoch), then locate and keep its first failures."""
        if epoch.index != ex.position:
            ex.advance(epoch.index)
        engine = self.engine_of(epoch)
        if engine.wants(epoch):
            self.wanted = True
            ex.explore_epoch(epoch, engine, self.seed)
            if ex.failures:
                self.keep(ex, epoch, engine)
        ex.advance(epoch.index + 1)

    def keep(self, ex: Explorer, epoch: Epoch, engine: Engine) -> None:
        """Count the failures ``epoch`` gave; locate and describe those within ``max_failures``."""
        new, ex.failures = ex.failures, []
        located, ex.located = ex.located, {}
        for failure in new:
            if failure[4].verdict is Verdict.ERROR:
                self.errors += 1
            else:
                self.inconsistent += 1
        picked = new[: max(0, self.max_failures - len(self.failures))]
        if not picked:
            return
        found: dict[int, Any] = {}
        rest = {seq for _, seq, *_ in picked if (epoch.index, seq) not in located}
        if rest:  # re-run the engine without judging: which atoms, which crash point (see _locate)
            ex.targets, ex.found = rest, {}
            try:
                with contextlib.suppress(Located):
                    ex.explore_epoch(epoch, engine, self.seed)
                found = ex.found
            finally:
                ex.targets, ex.found = None, {}
        by_id = {a.id: a for a in epoch.inflight}
        for epoch_index, seq, _, _, outcome in picked:
            if (epoch_index, seq) in located:
                ids, point = located[epoch_index, seq]
                if any(i not in by_id for i in ids) or point.atoms > len(epoch.inflight):
                    raise LogError(
                        f"epoch {epoch_index} state {seq}: its location names atoms the log does not have"
                    )
                applied = tuple(by_id[i] for i in ids)
            else:
                applied, point = found[seq]
            self.failures.append(
                failure_at(epoch_index, epoch, seq, engine, point, applied, self.markers, outcome)
            )

    def close(self) -> None:
        if self.ex is not None:
            self.ex.close()
            self.ex = None
        if self.opened:
            self.opened = False
            self.checker.close()


def replay_stream(
    source: RecordSource,
    checker: Checker | Callable[..., object] | str | Sequence[str],
    *,
    engine: Engine | str = "Exhaustive",
    markers: Mapping[str, Engine | str] | None = None,
    seed: int | None = None,
    images: Mapping[str, Any] | Callable[[Sequence[str]], Mapping[str, Any]] | None = None,
    timeout: float | None = 60.0,
    max_failures: int = 100,
    max_states: int | None = None,
    allow_open_markers: bool = False,
    allow_empty: bool = False,
    slots: Any = None,
) -> StreamResult:
    """:func:`~pmemsim.persistence.replay` (one process) of the log ``source`` hands out, as it comes.

    The arguments mean what they mean for ``replay`` (the model is the log's granularity's,
    ADR when unknown), except that ``images`` may also be a callable that gets the file keys
    once they are known (when the first epoch is explored) and returns the mapping, or raises
    ImagesRefused; ``slots`` is the StateSlots a forked run reports the state it judges to.
    The report is the one ``replay`` gives. Raises as ``replay`` does (the error the
    whole-log path would raise first, see the module docstring), ImagesUnreadable when a
    file's initial content cannot be read, and :class:`Restart` when the log needs the
    whole-log path. Memory: the pool, the records of one batch, the atoms in flight, the
    visible markers and one entry per distinct state judged.
    """
    if not isinstance(max_failures, int) or max_failures < 0:
        raise ValueError(f"max_failures must be a non-negative int, got {max_failures!r}")
    if max_states is not None and (not isinstance(max_states, int) or max_states < 1):
        raise ValueError(f"max_states must be a positive int or None, got {max_states!r}")
    started = time.perf_counter()
    default = engine_from_name(engine)
    section_engines = {name: engine_from_name(spec) for name, spec in (markers or {}).items()}
    if max_states is not None:
        default = with_max_states(default, max_states)
        section_engines = {name: with_max_states(e, max_states) for name, e in section_engines.items()}
    engine_of = EngineChoice(default, tuple(section_engines.items()))
    judge = as_checker(checker, timeout=timeout)
    window = StoreLog([], source.log.files, source.log.granularity, source.log.page_size)
    model = resolve_model(window, None)
    builder = EpochBuilder(window, model)
    run = _Run(window, judge, engine_of, 0 if seed is None else seed, images, max_failures, slots)
    try:
        try:
            _feed_all(source, window, builder, run, allow_open_markers)
        except LogError:
            if isinstance(run.failed, ImagesRefused):  # the whole-log path refuses --image before it checks
                raise run.failed from None
            raise
        if run.shape is not None and not run.same_files():
            # Registered after exploring began: the states judged lacked the file (and an image
            # given for it was refused then).
            raise Restart("a file was registered or grew after exploring began")
        if run.failed is not None:
            raise _counted(run.failed, builder)
        run.explore(builder, model)
        if run.first_store is None:
            run.read_images()  # the whole-log path reads them before it finds there is nothing to check
            if not allow_empty:
                raise _counted(
                    NothingToCheck(
                        "the log holds no store: nothing to check (did the code write to another set, or "
                        "record nothing?); allow_empty=True accepts that"
                    ),
                    builder,
                )
        elif not run.wanted and not allow_empty:
            raise _counted(
                NothingToCheck(
                    f"engine {default.name} picks no crash state in this log: nothing to check "
                    "(NoReorderNoCheck checks nothing); allow_empty=True accepts that"
                ),
                builder,
            )
        report = _report(run, builder, judge, default, section_engines, started)
    finally:
        run.close()
    if report.states_checked == 0 and not allow_empty:
        raise _counted(
            NothingToCheck(
                f"no crash state was checked (engine {default.name}): nothing to judge; "
                "allow_empty=True accepts that"
            ),
            builder,
        )
    stale = run.after.stale() if run.after is not None else []
    return StreamResult(report, stale, builder.base, len(window.files))


def _counted(exc: BaseException, builder: EpochBuilder) -> BaseException:
    """``exc`` with ``counts``: (records, files, epochs) of the log, all read (the command line
    says them before such an error, as the whole-log path does; they travel with a pickle)."""
    exc.counts = (builder.base, len(builder.log.files), builder.epoch_base + len(builder.epochs))  # type: ignore[attr-defined]
    return exc


def _feed_all(
    source: RecordSource, window: StoreLog, builder: EpochBuilder, run: _Run, allow_open_markers: bool
) -> None:
    """Read every batch: cut its epochs and explore them (until a checker or image error, after
    which the rest is only checked); close the last epoch."""
    model = builder.model
    for batch in source.batches():
        window.records = batch
        builder.refresh_files()
        with paused_gc():
            builder.feed(builder.base + len(batch))
        if run.failed is None:
            try:
                run.explore(builder, model)
                if run.after is not None:
                    run.after.apply(batch)
            except (CheckerError, ImagesUnreadable, ImagesRefused) as exc:
                run.failed = exc
                run.close()
        if run.failed is not None:
            builder.forget()  # only checked now
        builder.base += len(batch)
        window.records = []
    builder.close(allow_open_markers=allow_open_markers)


def _report(
    run: _Run,
    builder: EpochBuilder,
    judge: Checker,
    default: Engine,
    section_engines: dict[str, Engine],
    started: float,
) -> CrashReport:
    """The report of a finished streaming run, as build_report makes it from one chunk."""
    ex = run.ex
    notes = list(judge.notes)
    limits: list[str] = []
    checked = distinct = calls = 0
    if ex is not None:
        notes += ex.warnings
        limits += ex.limits
        checked = ex.nondedup + run.checked
        distinct = len(ex.images) if judge.sees_markers else len(ex.seen)
        calls = ex.calls
    return report_of(
        default,
        section_engines,
        builder.model,
        epochs=builder.epoch_base + len(builder.epochs),
        states_checked=checked,
        distinct_images=distinct,
        inconsistent=run.inconsistent,
        errors=run.errors,
        failures=run.failures,
        warnings=notes,
        limits=limits,
        checker_calls=calls,
        elapsed=time.perf_counter() - started,
        workers=1,
    )
