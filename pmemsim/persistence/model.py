"""The x86 persistency model: which media images a crash can leave behind.

Theory of operation
-------------------
**ADR** (the default; ``Granularity.CACHE_LINE``). Stores land in the CPU cache. A
store is *guaranteed* durable only after a flush covering its cache line (64 B) and
then a fence. Until then it may or may not have reached media -- a cache line can be
evicted at any moment -- so between fences stores reach media in any order. A flush
without a fence guarantees nothing yet. Power-fail atomicity is 8 bytes: a store is
split at 8-byte-aligned boundaries into **atoms** (an aligned 8-byte store is one
atom; a 16-byte or unaligned store tears into several). Cache coherence still orders
writes to one 8-byte word: media holds the word as of some *program-order prefix* of
the stores to it, so an older value never overwrites a newer one.

**eADR** (``Granularity.BYTE``): the cache is in the persistence domain; every store
counts as flushed when issued, a fence makes it durable, and between fences stores may
still reach media in any order (we do not rely on x86-TSO store order, which would be
unsound for non-temporal stores).

**PAGE** (``Granularity.PAGE``, a regular file behind the page cache): like ADR with
the flush unit being the page (``msync`` writes whole pages back).

Fence epochs follow pmreorder (``statemachine.py``): a fence ends an epoch only if some
flush (or a non-temporal store, or under eADR any store) came since the previous epoch
ended; a fence with nothing flushed before it changes nothing, so merging it into the
next epoch loses no crash state. For each epoch the model yields

* ``inflight`` -- every atom not yet durable at the fence (carried-over unflushed atoms
  and the epoch's own), in program order: any per-word prefix of them may be on media
  at a crash before the fence;
* ``flushed`` -- the subset covered by a flush: durable once the fence executes. This
  is the list pmreorder's engines permute (pmreorder never applies unflushed stores).

A log that ends with atoms still pending gets a ``final`` epoch (no fence).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pmemsim.enums import Granularity
from pmemsim.persistence.log import Fence, Flush, LogError, Marker, Store, StoreLog, check_record

if TYPE_CHECKING:
    from pmemsim.persistence.engines import Engine

__all__ = [
    "Atom",
    "Epoch",
    "EpochBuilder",
    "EpochPlan",
    "LogScan",
    "MarkerError",
    "PersistencyModel",
    "Platform",
    "Resume",
    "build_epochs",
    "scan_log",
]

#: The power-fail atomicity of x86 stores, in bytes.
ATOMIC_UNIT = 8
#: The x86 cache-line size, in bytes.
CACHE_LINE = 64


class MarkerError(LogError):
    """Markers that do not nest: an END without its BEGIN, crossed sections, or a section left open."""


class Platform(enum.Enum):
    """Where the persistence domain starts."""

    ADR = "adr"  # the memory controller: stores need a flush and a fence
    EADR = "eadr"  # the CPU caches: a fence alone makes stores durable


@dataclass(frozen=True, slots=True)
class PersistencyModel:
    """The rules :func:`build_epochs` applies: the platform and the flush unit in bytes.

    The atomic unit is x86's 8 bytes (:data:`ATOMIC_UNIT`) in every model.
    """

    platform: Platform = Platform.ADR
    flush_unit: int = CACHE_LINE

    def __post_init__(self) -> None:
        if not isinstance(self.platform, Platform):
            raise TypeError(f"platform must be a Platform, not {type(self.platform).__name__}")
        value = self.flush_unit
        if not isinstance(value, int) or value < ATOMIC_UNIT or value & (value - 1):
            raise ValueError(f"flush_unit must be a power of two >= {ATOMIC_UNIT}, got {value!r}")

    @classmethod
    def adr(cls) -> PersistencyModel:
        """x86 ADR with 64-byte cache lines (DAX on persistent memory)."""
        return cls(Platform.ADR, CACHE_LINE)

    @classmethod
    def eadr(cls) -> PersistencyModel:
        """x86 eADR: stores are durable once fenced, flushes are not needed."""
        return cls(Platform.EADR, CACHE_LINE)

    @classmethod
    def for_granularity(cls, granularity: Granularity, page_size: int = 4096) -> PersistencyModel:
        """The model matching a set's effective store granularity (BYTE=eADR, CACHE_LINE=ADR, PAGE=msync)."""
        g = Granularity(granularity)
        if g is Granularity.BYTE:
            return cls.eadr()
        if g is Granularity.CACHE_LINE:
            return cls.adr()
        return cls(Platform.ADR, page_size)

    @property
    def eadr_mode(self) -> bool:
        """True when stores need no flush."""
        return self.platform is Platform.EADR


@dataclass(frozen=True, slots=True)
class Atom:
    """The unit that reaches media atomically: a piece of a store inside one aligned 8-byte word.

    ``id`` is its position among all atoms (program order), ``record`` the index of its
    :class:`Store` in the log, ``piece`` its index within that store. ``fidx`` is the
    file's index in the plan and ``word`` a key unique to (file, aligned word).
    """

    id: int
    record: int
    piece: int
    file: str
    offset: int
    data: bytes
    fidx: int
    word: int

    @property
    def end(self) -> int:
        """One past the last file offset written."""
        return self.offset + len(self.data)

    def describe(self) -> str:
        """``file+0x40..0x48`` (the bytes this atom writes)."""
        return f"{self.file}+{self.offset:#x}..{self.end:#x}"


@dataclass(frozen=True, slots=True)
class Epoch:
    """Everything that may be in flight at one fence (or at the end of the log when ``final``).

    ``start`` is the first record of the epoch, ``end`` the index of its fence (``len(records)``
    when final). ``engine`` is the engine in force at the fence and ``sections`` the marker
    sections open there (outermost first). ``markers_before`` counts BEGIN/END markers in
    the log before the fence (for the checker's ``PMREORDER_MARKERS``).
    """

    index: int
    start: int
    end: int
    final: bool
    inflight: tuple[Atom, ...]
    flushed: tuple[Atom, ...]
    engine: Engine
    sections: tuple[str, ...]
    markers_before: int


@dataclass(frozen=True)
class EpochPlan:
    """A log cut into epochs under one model: what the engines explore."""

    keys: tuple[str, ...]
    sizes: tuple[int, ...]
    epochs: tuple[Epoch, ...]
    atoms: tuple[Atom, ...]
    model: PersistencyModel
    markers: tuple[str, ...]  # every BEGIN/END marker name, in log order

    def _check(self) -> None:
        """Assert the plan's invariants (tests call this). Runtime: O(atoms)."""
        assert all(a.id == i for i, a in enumerate(self.atoms))
        for a in self.atoms:
            assert a.data and a.offset // ATOMIC_UNIT == (a.end - 1) // ATOMIC_UNIT, a
            assert a.end <= self.sizes[a.fidx] and self.keys[a.fidx] == a.file
        durable: set[int] = set()
        last_end = -1
        for i, epoch in enumerate(self.epochs):
            assert (
                epoch.index == i and epoch.end > last_end and (not epoch.final or i == len(self.epochs) - 1)
            )
            last_end = epoch.end
            ids = [a.id for a in epoch.inflight]
            assert ids == sorted(ids) and not durable & set(ids)
            flushed = {a.id for a in epoch.flushed}
            assert flushed <= set(ids) and [a.id for a in epoch.flushed] == sorted(flushed)
            # Cache coherence: per word, what becomes durable is a program-order prefix of what is in flight.
            by_word: dict[int, list[bool]] = {}
            for a in epoch.inflight:
                by_word.setdefault(a.word, []).append(a.id in flushed)
            for marks in by_word.values():
                assert marks == sorted(marks, reverse=True), marks
            durable |= flushed


def _word_key(fidx: int, offset: int) -> int:
    # One int per (file, aligned 8-byte word): cheap to hash and to sort.
    return (fidx << 58) | (offset >> 3)


# Building an Atom field by field through its slots skips the frozen-dataclass __init__
# (object.__setattr__ per field): EpochBuilder.feed creates one per 8-byte piece of a store.
_new_atom = object.__new__
_ATOM_FIELDS = ("id", "record", "piece", "file", "offset", "data", "fidx", "word")
_set_id, _set_record, _set_piece, _set_file, _set_offset, _set_data, _set_fidx, _set_word = (
    getattr(Atom, name).__set__ for name in _ATOM_FIELDS
)


def build_epochs(
    log: StoreLog,
    model: PersistencyModel,
    engine: Engine,
    markers: Mapping[str, Engine] | None = None,
    *,
    allow_open_markers: bool = False,
) -> EpochPlan:
    """Cut ``log`` into fence epochs under ``model``, choosing each epoch's engine by marker section.

    Raises :class:`LogError` for a record outside its file or naming an unknown one, and
    :class:`MarkerError` for an END without a matching BEGIN, crossed sections, or (unless
    ``allow_open_markers``) a section still open at the end of the log.
    Runtime: O(records + atoms + flushed cache lines).
    """
    builder = EpochBuilder(log, model, engine, markers)
    builder.feed(len(log.records))
    return builder.finish(allow_open_markers=allow_open_markers)


class EpochBuilder:
    """:func:`build_epochs` one slice of the log at a time (parallel replay explores early epochs early).

    :meth:`feed` scans records up to an index, appending the epochs whose fence it passes
    to :attr:`epochs`; :meth:`partial` is the plan of those epochs so far (enough to explore
    them); :meth:`finish` closes the log. ``check=False`` skips the record and marker
    validation (for a log :func:`scan_log` already accepted); ``resume`` starts at a
    quiescent point of that scan instead of the beginning of the log.
    """

    def __init__(
        self,
        log: StoreLog,
        model: PersistencyModel,
        engine: Engine,
        markers: Mapping[str, Engine] | None = None,
        *,
        check: bool = True,
        resume: Resume | None = None,
        marker_names: Sequence[str] = (),
    ) -> None:
        self.log = log
        self.model = model
        self.check = check
        self.section_engines = dict(markers or {})
        self.keys = tuple(log.files)
        self.fidx_of = {k: i for i, k in enumerate(self.keys)}
        self.sizes = tuple(log.files[k].size for k in self.keys)
        self.atoms: list[Atom] = []
        self.epochs: list[Epoch] = []
        self.pending: dict[int, Atom] = {}  # atom id -> atom, in program order
        self.by_unit: dict[tuple[int, int], list[int]] = {}  # (fidx, unit) -> unflushed atom ids
        self.flushed: set[int] = set()
        self.flush_seen = False
        self.epoch_start = 0
        # The engine stack: (section name, BEGIN record index, engine); the bottom is the default.
        self.stack: list[tuple[str, int, Engine]] = [("", -1, engine)]
        self.marker_names: list[str] = []
        self.position = 0  # the next record to scan
        self.atom_base = self.epoch_base = 0
        if resume is not None:  # start at a quiescent point found by scan_log
            self.atom_base, self.epoch_base = resume.atoms, resume.epochs
            self.position = self.epoch_start = resume.record
            self.marker_names = list(marker_names[: resume.markers])
            for section, begin_at in resume.sections:
                self.stack.append((section, begin_at, self.section_engines.get(section, self.stack[-1][2])))

    def _flush_range(self, fidx: int, lo: int, hi: int) -> None:
        # Mark every pending atom whose flush unit intersects [lo, hi) as flushed.
        if hi <= lo:
            return
        by_unit = self.by_unit
        shift = self.model.flush_unit.bit_length() - 1
        first, last = lo >> shift, (hi - 1) >> shift
        if last - first + 1 <= len(by_unit):
            candidates = [(fidx, u) for u in range(first, last + 1)]
        else:
            candidates = [k for k in by_unit if k[0] == fidx and first <= k[1] <= last]
        for key in candidates:
            ids = by_unit.pop(key, None)
            if ids:
                self.flushed.update(ids)

    def _close_epoch(self, end: int, final: bool) -> None:
        pending, flushed, stack = self.pending, self.flushed, self.stack
        inflight = tuple(pending.values())
        done = tuple(a for a in inflight if a.id in flushed)
        self.epochs.append(
            Epoch(
                index=self.epoch_base + len(self.epochs),
                start=self.epoch_start,
                end=end,
                final=final,
                inflight=inflight,
                flushed=done,
                engine=stack[-1][2],
                sections=tuple(name for name, _, _ in stack[1:]),
                markers_before=len(self.marker_names),
            )
        )
        for a in done:
            del pending[a.id]
        flushed.clear()  # every flushed atom was pending, and is durable now

    def feed(self, stop: int) -> None:
        """Scan records ``position .. stop-1`` (raises LogError/MarkerError like :func:`build_epochs`)."""
        log, check = self.log, self.check
        fidx_of = self.fidx_of
        unit_shift = self.model.flush_unit.bit_length() - 1
        atomic = ATOMIC_UNIT
        eadr = self.model.eadr_mode
        atoms, pending, by_unit, flushed = self.atoms, self.pending, self.by_unit, self.flushed
        stack, marker_names = self.stack, self.marker_names
        atom_base = self.atom_base
        records = log.records
        for index in range(self.position, stop):
            rec = records[index]
            kind = type(rec)
            if kind is Store or (kind is not Flush and kind is not Fence and isinstance(rec, Store)):
                assert isinstance(rec, Store)
                if check:
                    check_record(log, index, rec)
                file, base, data, nontemporal = rec.file, rec.offset, rec.data, rec.nontemporal
                fidx = fidx_of[file]
                end = base + len(data)
                if nontemporal:
                    # An NT store to a cached line evicts the line: earlier cached stores go too.
                    self._flush_range(fidx, base, end)
                direct = eadr or nontemporal
                if direct:
                    self.flush_seen = True
                pos, piece = base, 0
                while pos < end:
                    stop_at = (pos | (atomic - 1)) + 1
                    if stop_at > end:
                        stop_at = end
                    aid = atom_base + len(atoms)
                    # Atom(...) without the frozen dataclass __init__ (a third of the cost of a plan).
                    atom = _new_atom(Atom)
                    _set_id(atom, aid)
                    _set_record(atom, index)
                    _set_piece(atom, piece)
                    _set_file(atom, file)
                    _set_offset(atom, pos)
                    _set_data(atom, data if stop_at - pos == len(data) else data[pos - base : stop_at - base])
                    _set_fidx(atom, fidx)
                    _set_word(atom, (fidx << 58) | (pos >> 3))
                    atoms.append(atom)
                    pending[aid] = atom
                    if direct:
                        flushed.add(aid)
                    else:
                        key = (fidx, pos >> unit_shift)
                        ids = by_unit.get(key)
                        if ids is None:
                            by_unit[key] = [aid]
                        else:
                            ids.append(aid)
                    pos, piece = stop_at, piece + 1
            elif isinstance(rec, Flush):
                if check:
                    check_record(log, index, rec)
                self.flush_seen = True
                if rec.file:
                    self._flush_range(fidx_of[rec.file], rec.offset, rec.end)
            elif isinstance(rec, Fence):
                if self.flush_seen:
                    self._close_epoch(index, final=False)
                    self.flush_seen = False
                    self.epoch_start = index + 1
            elif isinstance(rec, Marker):
                section = rec.section
                if section is None:
                    continue
                marker_names.append(rec.name)
                if rec.is_begin:
                    stack.append((section, index, self.section_engines.get(section, stack[-1][2])))
                else:
                    top, begin_at, _ = stack[-1]
                    if len(stack) == 1:
                        raise MarkerError(f"record {index}: {rec.name!r} has no matching {section}.BEGIN")
                    if top != section:
                        raise MarkerError(
                            f"record {index}: {rec.name!r} crosses section {top!r} "
                            f"(opened by {top}.BEGIN at record {begin_at}); markers may nest but not cross"
                        )
                    stack.pop()
            else:  # pragma: no cover - StoreLog.append refuses anything else
                raise LogError(f"record {index}: not a log record: {type(rec).__name__}")
        self.position = max(self.position, stop)

    def partial(self) -> EpochPlan:
        """The plan of the epochs built so far (their atoms and markers included)."""
        return EpochPlan(
            self.keys,
            self.sizes,
            tuple(self.epochs),
            tuple(self.atoms),
            self.model,
            tuple(self.marker_names),
        )

    def finish(self, *, allow_open_markers: bool = False) -> EpochPlan:
        """Close the final epoch (after feeding every record) and return the whole plan."""
        if self.position < len(self.log.records):
            self.feed(len(self.log.records))
        if self.pending:
            self._close_epoch(len(self.log.records), final=True)
            self.pending.clear()
        stack = self.stack
        if len(stack) > 1 and not allow_open_markers:
            name, begin_at, _ = stack[-1]
            raise MarkerError(f"record {begin_at}: section {name!r} is never closed ({name}.END missing)")
        return self.partial()


@dataclass(frozen=True, slots=True)
class Resume:
    """A quiescent point of a log: right after a fence that left nothing in flight.

    An :class:`EpochBuilder` can start there (``resume=``) knowing only these counts:
    ``record`` is the next record, ``atoms``/``epochs``/``markers`` how many atoms,
    epochs and section markers come before it, ``sections`` the open sections as
    (name, BEGIN record). Every store before it is durable, so the image there is the
    initial image with those stores applied in order.
    """

    record: int
    atoms: int
    epochs: int
    markers: int
    sections: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class LogScan:
    """What :func:`scan_log` learnt: section markers in order, quiescent points, the epoch count."""

    markers: tuple[str, ...]
    points: tuple[Resume, ...]  # the first is the start of the log
    epochs: int


def scan_log(
    log: StoreLog, model: PersistencyModel, *, allow_open_markers: bool = False, slices: int | None = None
) -> LogScan:
    """Validate ``log`` like :func:`build_epochs` (same errors) and find its quiescent points.

    With ``slices`` it keeps only the first quiescent point at or after each record
    ``k * len(records) // slices`` (k >= 1), else every one. It tracks only which flush
    units hold unflushed stores, not atoms, so it costs a fraction of a build.
    Runtime: O(records + flushed units).
    """
    records = log.records
    files = log.files
    fidx_of = {k: i for i, k in enumerate(files)}
    sizes = [info.size for info in files.values()]
    shift = model.flush_unit.bit_length() - 1
    eadr = model.eadr_mode
    stack: list[tuple[str, int]] = []
    names: list[str] = []
    points = [Resume(0, 0, 0, 0, ())]
    dirty: set[tuple[int, int]] = set()  # (file, flush unit) holding a store not yet flushed
    atoms = epochs = 0
    flush_seen = False
    waiting = False  # some atom is flushed but not fenced yet
    count = len(records)
    step = 1 if slices is None else slices
    k = 1  # keep the next quiescent point at or after record count * k // step
    target = 0 if slices is None else count // step

    def flush(fidx: int, lo: int, hi: int) -> bool:
        # Whether some unflushed store got flushed.
        if hi <= lo or not dirty:
            return False
        before = len(dirty)
        first, last = lo >> shift, (hi - 1) >> shift
        if last - first + 1 <= len(dirty):
            for unit in range(first, last + 1):
                dirty.discard((fidx, unit))
        else:
            for key in [k for k in dirty if k[0] == fidx and first <= k[1] <= last]:
                dirty.discard(key)
        return len(dirty) < before

    for index, rec in enumerate(records):
        kind = type(rec)
        if kind is Fence or (kind is not Store and kind is not Flush and isinstance(rec, Fence)):
            if flush_seen:
                epochs += 1
                flush_seen = waiting = False
                if not dirty and index + 1 >= target:
                    points.append(Resume(index + 1, atoms, epochs, len(names), tuple(stack)))
                    if slices is not None:
                        while target <= index + 1 and k < step:
                            k += 1
                            target = count * k // step
                        if target <= index + 1:
                            target = count + 1
        elif kind is Store or isinstance(rec, Store):
            assert isinstance(rec, Store)
            lo, hi = rec.offset, rec.offset + len(rec.data)
            fidx = fidx_of.get(rec.file, -1)
            if fidx < 0 or hi > sizes[fidx]:
                check_record(log, index, rec)  # raises the error
            atoms += ((hi - 1) >> 3) - (lo >> 3) + 1
            if rec.nontemporal:
                flush(fidx, lo, hi)
                flush_seen = waiting = True
            elif eadr:
                flush_seen = waiting = True
            elif lo >> shift == (hi - 1) >> shift:
                dirty.add((fidx, lo >> shift))
            else:
                dirty.update((fidx, unit) for unit in range(lo >> shift, ((hi - 1) >> shift) + 1))
        elif kind is Flush or isinstance(rec, Flush):
            assert isinstance(rec, Flush)
            if rec.file and (rec.file not in fidx_of or rec.offset + rec.length > sizes[fidx_of[rec.file]]):
                check_record(log, index, rec)  # raises the error
            flush_seen = True
            if rec.file and flush(fidx_of[rec.file], rec.offset, rec.offset + rec.length):
                waiting = True
        elif isinstance(rec, Marker):
            section = rec.section
            if section is None:
                continue
            names.append(rec.name)
            if rec.is_begin:
                stack.append((section, index))
            elif not stack:
                raise MarkerError(f"record {index}: {rec.name!r} has no matching {section}.BEGIN")
            elif stack[-1][0] != section:
                top, begin_at = stack[-1]
                raise MarkerError(
                    f"record {index}: {rec.name!r} crosses section {top!r} "
                    f"(opened by {top}.BEGIN at record {begin_at}); markers may nest but not cross"
                )
            else:
                stack.pop()
        else:  # pragma: no cover - StoreLog.append refuses anything else
            raise LogError(f"record {index}: not a log record: {type(rec).__name__}")
    if stack and not allow_open_markers:
        name, begin_at = stack[-1]
        raise MarkerError(f"record {begin_at}: section {name!r} is never closed ({name}.END missing)")
    if points[-1].record == len(records) and len(points) > 1:
        points.pop()  # nothing after the last point
    return LogScan(tuple(names), tuple(points), epochs + bool(dirty or waiting))
