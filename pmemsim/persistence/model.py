"""The x86 persistency model: which media images a crash can leave behind.

Theory of operation
-------------------
**Atoms.** Power-fail atomicity on x86 is 8 bytes: a store is split at 8-byte-aligned
boundaries into *atoms* (an aligned 8-byte store is one atom; a 16-byte or unaligned
store tears into several, which may reach media independently).

**Durability (ADR, the default; ``Granularity.CACHE_LINE``).** Stores land in the CPU
cache. A store is *guaranteed* durable only after a flush covering its flush unit (the
64-byte cache line) and then a fence. A flush without a fence guarantees nothing yet.
A non-temporal (NT) store bypasses the cache: it counts as flushed when issued, and it
evicts the lines it writes, so earlier cached stores to those lines count as flushed
too (Intel SDM vol. 1, 10.4.6.2). **eADR** (``Granularity.BYTE``): the caches are in the
persistence domain, every store counts as flushed when issued and a fence makes it
durable. **PAGE** (``Granularity.PAGE``, a regular file behind the page cache): like ADR
with the page as the flush unit (``msync`` writes whole pages back).

**Order (what may be on media at a crash).** Before it is durable, an atom may or may
not have reached media, but not in any order. Under every platform:

1. *Cache lines are written back whole.* The cached (not NT) atoms stored to one 64-byte
   line since its last durable point reach media as a **program-order prefix**: the line
   moves between the cache and media as a unit, so a later store to it cannot be on
   media without the earlier ones (Px86, Raad et al., POPL 2020; Jaaru, Gorjiara et al.,
   ASPLOS 2021; Witcher, Fu et al., SOSP 2021). Lines are independent of each other.
2. *Non-temporal stores* are ordered only with stores to overlapping bytes: a store
   cannot be on media while an earlier store to one of its bytes is not.

Both rules say the same thing: an atom can be on media only if its **predecessors**
are, where the predecessors of an atom are the previous cached atom of its line (for a
cached atom) and the latest earlier atom writing each of its bytes. The images a crash
can leave are therefore the durable base plus any *down-set* (a set closed under
predecessors) of the atoms in flight, applied in program order. All constraints stay
inside one line, so the images of a crash point are the product of each line's own
reachable contents. :func:`predecessors`, :func:`down_closure` and :func:`up_closure`
state this rule once; the engines, the random sampler and the shrinker all use them.
The ordering unit is the 64-byte line on PAGE devices too: page write-back reads
memory a coherent line at a time, so a line still reaches the file as a prefix, while
a page is no unit of order (a write-back may run while the page is being written).

**Epochs and crash points.** Fence epochs follow pmreorder (``statemachine.py``): a
fence ends an epoch only if some flush (or an NT store, or under eADR any store) came
since the previous epoch ended; a fence with nothing flushed before it makes nothing
durable. For each epoch the model yields ``inflight`` (every atom not yet durable at
the fence, carried-over ones first, in program order) and ``flushed`` (the subset that
becomes durable at the fence: the list pmreorder's engines permute). A crash can happen
anywhere in the epoch; within one epoch the images only grow as more atoms are issued,
so the images at the fence include those of every earlier crash point. What changes
at earlier points is the *markers* a checker sees: :attr:`Epoch.points` lists the crash
points where the visible markers change (before each marker record) and the fence, each
with how many in-flight atoms were issued by then. A log that ends with atoms still
pending gets a ``final`` epoch (no fence).

A marker is *visible* to a checker when it is a section marker (``NAME.BEGIN`` /
``NAME.END``, what pmreorder passes in ``PMREORDER_MARKERS``) or carries user data.

This module knows nothing of engines: which engine explores an epoch is chosen by
:func:`pmemsim.persistence.engines.engine_for` from the epoch's open sections.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pmemsim.enums import Granularity
from pmemsim.persistence.log import Fence, Flush, LogError, Marker, Store, StoreLog, check_record

__all__ = [
    "ATOMIC_UNIT",
    "CACHE_LINE",
    "ORDER_UNIT",
    "Atom",
    "CrashPoint",
    "Epoch",
    "EpochBuilder",
    "EpochPlan",
    "LogScan",
    "MarkerError",
    "PersistencyModel",
    "Platform",
    "Resume",
    "build_epochs",
    "down_closure",
    "down_interior",
    "is_down_set",
    "predecessors",
    "scan_log",
    "up_closure",
]

#: The power-fail atomicity of x86 stores, in bytes.
ATOMIC_UNIT = 8
#: The x86 cache-line size, in bytes.
CACHE_LINE = 64
#: The unit within which stores reach media in program order (a cache line, on every platform).
ORDER_UNIT = CACHE_LINE
_LINE_SHIFT = ORDER_UNIT.bit_length() - 1
#: Line keys pack the file index above the line number: (fidx << _FILE_SHIFT) | line.
_FILE_SHIFT = 58


class MarkerError(LogError):
    """Markers that do not nest: an END without its BEGIN, crossed sections, or a section left open."""


class Platform(enum.Enum):
    """Where the persistence domain starts."""

    ADR = "adr"  # the memory controller: stores need a flush and a fence
    EADR = "eadr"  # the CPU caches: a fence alone makes stores durable


@dataclass(frozen=True, slots=True)
class PersistencyModel:
    """The rules :func:`build_epochs` applies: the platform and the flush unit in bytes.

    The atomic unit is x86's 8 bytes (:data:`ATOMIC_UNIT`) and the ordering unit the
    64-byte line (:data:`ORDER_UNIT`) in every model; the flush unit is what one flush
    makes durable (a cache line, or a page for a regular file).
    """

    platform: Platform = Platform.ADR
    flush_unit: int = CACHE_LINE

    def __post_init__(self) -> None:
        if not isinstance(self.platform, Platform):
            raise TypeError(f"platform must be a Platform, not {type(self.platform).__name__}")
        value = self.flush_unit
        if not isinstance(value, int) or value < CACHE_LINE or value & (value - 1) or value > 1 << 30:
            raise ValueError(f"flush_unit must be a power of two from {CACHE_LINE} to 1 GiB, got {value!r}")

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
    file's index in the plan, ``line`` a key unique to (file, 64-byte line) and
    ``nontemporal`` whether it bypassed the cache.
    """

    id: int
    record: int
    piece: int
    file: str
    offset: int
    data: bytes
    fidx: int
    line: int
    nontemporal: bool

    @property
    def end(self) -> int:
        """One past the last file offset written."""
        return self.offset + len(self.data)

    def describe(self) -> str:
        """``file+0x40..0x48`` (the bytes this atom writes)."""
        return f"{self.file}+{self.offset:#x}..{self.end:#x}"


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """A crash right before record ``record``: ``atoms`` in-flight atoms of the epoch were issued by
    then, and ``markers`` visible markers came before it."""

    record: int
    atoms: int
    markers: int


@dataclass(frozen=True, slots=True)
class Epoch:
    """Everything that may be in flight at one fence (or at the end of the log when ``final``).

    ``start`` is the first record of the epoch, ``end`` the index of its fence (``len(records)``
    when final). ``sections`` are the marker sections open at the fence (outermost first)
    and ``markers_before`` counts the visible markers before the fence. ``cuts`` are the
    crash points inside the epoch where the visible markers change (see :attr:`points`).
    """

    index: int
    start: int
    end: int
    final: bool
    inflight: tuple[Atom, ...]
    flushed: tuple[Atom, ...]
    sections: tuple[str, ...]
    markers_before: int
    cuts: tuple[CrashPoint, ...] = ()

    @property
    def fence_point(self) -> CrashPoint:
        """The crash right before the fence (or at the end of the log): every in-flight atom issued."""
        return CrashPoint(self.end, len(self.inflight), self.markers_before)

    @property
    def points(self) -> tuple[CrashPoint, ...]:
        """The crash points a marker-aware checker must see: before each visible marker, then the fence."""
        return (*self.cuts, self.fence_point)


@dataclass(frozen=True)
class EpochPlan:
    """A log cut into epochs under one model: what the engines explore.

    ``markers`` are the visible markers of the log as (name, data, record index), in order.
    """

    keys: tuple[str, ...]
    sizes: tuple[int, ...]
    epochs: tuple[Epoch, ...]
    atoms: tuple[Atom, ...]
    model: PersistencyModel
    markers: tuple[tuple[str, Any, int], ...]

    def _check(self) -> None:
        """Assert the plan's invariants (tests call this). Runtime: O(atoms + cuts)."""
        assert all(a.id == i for i, a in enumerate(self.atoms))
        for a in self.atoms:
            assert a.data and a.offset // ATOMIC_UNIT == (a.end - 1) // ATOMIC_UNIT, a
            assert a.end <= self.sizes[a.fidx] and self.keys[a.fidx] == a.file
            assert a.line == line_key(a.fidx, a.offset)
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
            # What becomes durable is a down-set of what is in flight (never a line's later store alone).
            assert is_down_set(epoch.inflight, flushed)
            for point in epoch.points:
                assert 0 <= point.atoms <= len(epoch.inflight) and point.markers <= len(self.markers)
                assert all(a.record < point.record for a in epoch.inflight[: point.atoms])
                assert all(a.record >= point.record for a in epoch.inflight[point.atoms :])
            durable |= flushed


def line_key(fidx: int, offset: int) -> int:
    """The key of the 64-byte line holding ``offset`` of file ``fidx``."""
    return (fidx << _FILE_SHIFT) | (offset >> _LINE_SHIFT)


def predecessors(atoms: Sequence[Atom]) -> list[tuple[int, ...]]:
    """For ``atoms`` in program order, the indexes (into ``atoms``) of each atom's predecessors.

    An atom can be on media only if its predecessors are: the previous cached atom of
    its line (for a cached atom; lines are written back as program-order prefixes) and,
    for each of its bytes, the latest earlier atom writing that byte (stores to the same
    bytes reach media in program order, non-temporal ones included). The transitive
    closure of this relation is the model's whole ordering rule. Runtime: O(bytes stored).
    """
    last_cached: dict[int, int] = {}
    last_writer: dict[tuple[int, int], int] = {}  # (fidx, byte offset) -> atom index
    out: list[tuple[int, ...]] = []
    for i, atom in enumerate(atoms):
        preds: set[int] = set()
        if not atom.nontemporal:
            j = last_cached.get(atom.line)
            if j is not None:
                preds.add(j)
            last_cached[atom.line] = i
        fidx = atom.fidx
        for byte in range(atom.offset, atom.end):
            j = last_writer.get((fidx, byte))
            if j is not None:
                preds.add(j)
            last_writer[fidx, byte] = i
        out.append(tuple(sorted(preds)))
    return out


def _reach(atoms: Sequence[Atom], chosen: Iterable[int], edges: Sequence[Sequence[int]]) -> set[int]:
    # The ids of the atoms reachable from the ids ``chosen`` along ``edges`` (by index), included.
    index = {a.id: i for i, a in enumerate(atoms)}
    todo = [index[i] for i in chosen]
    out: set[int] = set()
    while todo:
        i = todo.pop()
        if atoms[i].id not in out:
            out.add(atoms[i].id)
            todo.extend(edges[i])
    return out


def down_closure(atoms: Sequence[Atom], chosen: Iterable[int]) -> set[int]:
    """The atom ids that must be on media when the atoms with ids ``chosen`` are (``chosen`` included)."""
    return _reach(atoms, chosen, predecessors(atoms))


def up_closure(atoms: Sequence[Atom], chosen: Iterable[int]) -> set[int]:
    """The atom ids that cannot be on media when those with ids ``chosen`` are not (``chosen`` included)."""
    succs: list[list[int]] = [[] for _ in atoms]
    for i, ps in enumerate(predecessors(atoms)):
        for j in ps:
            succs[j].append(i)
    return _reach(atoms, chosen, succs)


def down_interior(atoms: Sequence[Atom], chosen: Iterable[int]) -> set[int]:
    """The largest set of the atoms ``chosen`` that the model allows on media by themselves.

    An atom of ``chosen`` stays when all its predecessors stay (a state built by an engine
    that ignores the order, cut back to one a crash can leave).
    """
    wanted = set(chosen)
    preds = predecessors(atoms)
    kept: set[int] = set()
    for i, atom in enumerate(atoms):
        if atom.id in wanted and all(atoms[j].id in kept for j in preds[i]):
            kept.add(atom.id)
    return kept


def is_down_set(atoms: Sequence[Atom], ids: Iterable[int]) -> bool:
    """Whether the atoms ``ids`` (of ``atoms``) on media, the others not, is a state the model allows."""
    chosen = set(ids)
    preds = predecessors(atoms)
    return all(all(atoms[j].id in chosen for j in preds[i]) for i, a in enumerate(atoms) if a.id in chosen)


def build_epochs(log: StoreLog, model: PersistencyModel, *, allow_open_markers: bool = False) -> EpochPlan:
    """Cut ``log`` into fence epochs under ``model``.

    Raises :class:`LogError` for a record outside its file or naming an unknown one, and
    :class:`MarkerError` for an END without a matching BEGIN, crossed sections, or (unless
    ``allow_open_markers``) a section still open at the end of the log.
    Runtime: O(records + atoms + flushed flush units).
    """
    builder = EpochBuilder(log, model)
    builder.feed(len(log.records))
    return builder.finish(allow_open_markers=allow_open_markers)


def is_visible(marker: Marker) -> bool:
    """Whether a checker can see ``marker``: a section marker, or one carrying data."""
    return marker.section is not None or marker.data is not None


# Building an Atom field by field through its slots skips the frozen-dataclass __init__
# (object.__setattr__ per field): EpochBuilder.feed creates one per 8-byte piece of a store.
_new_atom = object.__new__
_ATOM_FIELDS = ("id", "record", "piece", "file", "offset", "data", "fidx", "line", "nontemporal")
_set_id, _set_record, _set_piece, _set_file, _set_offset, _set_data, _set_fidx, _set_line, _set_nt = (
    getattr(Atom, name).__set__ for name in _ATOM_FIELDS
)


class EpochBuilder:
    """:func:`build_epochs` one slice of the log at a time (parallel replay explores early epochs early).

    :meth:`feed` scans records up to an index, appending the epochs whose fence it passes
    to :attr:`epochs`; :meth:`partial` is the plan of those epochs so far (enough to explore
    them); :meth:`finish` closes the log. ``check=False`` skips the record and marker
    validation (for a log :func:`scan_log` already accepted); ``resume`` starts at a
    quiescent point of that scan instead of the beginning of the log, with ``markers``
    the scan's visible markers.

    A streaming replay (:mod:`pmemsim.persistence.stream`) gives it the log a window at a
    time: ``log.records`` holds only the records from index :attr:`base` on, :meth:`forget`
    drops the epochs and atoms already explored (ids and indices go on), :meth:`refresh_files`
    takes files registered since, and :meth:`close` closes the last epoch.
    """

    def __init__(
        self,
        log: StoreLog,
        model: PersistencyModel,
        *,
        check: bool = True,
        resume: Resume | None = None,
        markers: Sequence[tuple[str, Any, int]] = (),
    ) -> None:
        self.log = log
        self.model = model
        self.check = check
        self.keys = tuple(log.files)
        self.fidx_of = {k: i for i, k in enumerate(self.keys)}
        self.sizes = tuple(log.files[k].size for k in self.keys)
        self.atoms: list[Atom] = []
        self.epochs: list[Epoch] = []
        self.pending: dict[int, Atom] = {}  # atom id -> atom, in program order
        self.by_unit: dict[tuple[int, int], list[int]] = {}  # (fidx, flush unit) -> unflushed atom ids
        self.flushed: set[int] = set()
        self.flush_seen = False
        self.epoch_start = 0
        self.cuts: list[CrashPoint] = []
        # The open sections: (name, BEGIN record index).
        self.stack: list[tuple[str, int]] = []
        self.markers: list[tuple[str, Any, int]] = []
        self.position = 0  # the next record to scan
        self.atom_base = self.epoch_base = 0
        # The log index of ``log.records[0]``: a streaming replay hands the builder one window of
        # records at a time (see :meth:`forget`), and records keep their index in the whole log.
        self.base = 0
        if resume is not None:  # start at a quiescent point found by scan_log
            self.atom_base, self.epoch_base = resume.atoms, resume.epochs
            self.position = self.epoch_start = resume.record
            self.markers = list(markers[: resume.markers])
            self.stack = list(resume.sections)

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
        pending, flushed = self.pending, self.flushed
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
                sections=tuple(name for name, _ in self.stack),
                markers_before=len(self.markers),
                cuts=tuple(self.cuts),
            )
        )
        self.cuts = []
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
        stack, markers = self.stack, self.markers
        atom_base = self.atom_base
        records = log.records
        lo, hi = self.position - self.base, stop - self.base
        if lo or hi < len(records):
            records = records[lo:hi]
        for index, rec in enumerate(records, self.position):
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
                fkey = fidx << _FILE_SHIFT
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
                    _set_line(atom, fkey | (pos >> _LINE_SHIFT))
                    _set_nt(atom, nontemporal)
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
                if section is not None:
                    if rec.is_begin:
                        stack.append((section, index))
                    else:
                        if not stack:
                            raise MarkerError(f"record {index}: {rec.name!r} has no matching {section}.BEGIN")
                        top, begin_at = stack[-1]
                        if top != section:
                            raise MarkerError(
                                f"record {index}: {rec.name!r} crosses section {top!r} "
                                f"(opened by {top}.BEGIN at record {begin_at}); "
                                "markers may nest but not cross"
                            )
                        stack.pop()
                if section is not None or rec.data is not None:
                    self.cuts.append(CrashPoint(index, len(pending), len(markers)))
                    markers.append((rec.name, rec.data, index))
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
            tuple(self.markers),
        )

    def refresh_files(self) -> None:
        """Take the log's files again (a streamed log registers files as it is read). Files are
        only ever added or grown, so the index of a known file does not change."""
        files = self.log.files
        if len(files) != len(self.keys) or any(
            files[k].size != size for k, size in zip(self.keys, self.sizes, strict=True)
        ):
            self.keys = tuple(files)
            self.fidx_of = {k: i for i, k in enumerate(self.keys)}
            self.sizes = tuple(files[k].size for k in self.keys)

    def forget(self) -> None:
        """Drop the epochs and atoms built so far (a streaming replay explored them): the next
        :meth:`partial` holds only what is built after. Atoms still in flight stay known
        (the epochs to come hold them); ids and epoch indices go on from where they were."""
        self.atom_base += len(self.atoms)
        self.epoch_base += len(self.epochs)
        self.atoms = []
        self.epochs = []

    def close(self, *, allow_open_markers: bool = False) -> None:
        """Close the final epoch, after every record was fed (raises MarkerError for an open section)."""
        end = self.base + len(self.log.records)
        if self.position < end:
            self.feed(end)
        if self.pending or self.cuts:  # stores in flight, or markers a checker must see, after the last fence
            self._close_epoch(end, final=True)
            self.pending.clear()
        if self.stack and not allow_open_markers:
            name, begin_at = self.stack[-1]
            raise MarkerError(f"record {begin_at}: section {name!r} is never closed ({name}.END missing)")

    def finish(self, *, allow_open_markers: bool = False) -> EpochPlan:
        """Close the final epoch (after feeding every record) and return the whole plan."""
        self.close(allow_open_markers=allow_open_markers)
        return self.partial()


@dataclass(frozen=True, slots=True)
class Resume:
    """A quiescent point of a log: right after a fence that left nothing in flight.

    An :class:`EpochBuilder` can start there (``resume=``) knowing only these counts:
    ``record`` is the next record, ``atoms``/``epochs``/``markers`` how many atoms,
    epochs and visible markers come before it, ``sections`` the open sections as
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
    """What :func:`scan_log` learnt: visible markers in order, quiescent points, the epoch count."""

    markers: tuple[tuple[str, Any, int], ...]
    points: tuple[Resume, ...]  # the first is the start of the log
    epochs: int
    stores: int


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
    markers: list[tuple[str, Any, int]] = []
    points = [Resume(0, 0, 0, 0, ())]
    dirty: set[tuple[int, int]] = set()  # (file, flush unit) holding a store not yet flushed
    atoms = epochs = stores = 0
    flush_seen = False
    waiting = False  # some atom is flushed but not fenced yet
    cut = False  # a visible marker since the last epoch ended (it makes a final epoch of its own)
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
                flush_seen = waiting = cut = False
                if not dirty and index + 1 >= target:
                    points.append(Resume(index + 1, atoms, epochs, len(markers), tuple(stack)))
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
            stores += 1
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
            if section is not None:
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
            if section is not None or rec.data is not None:
                markers.append((rec.name, rec.data, index))
                cut = True
        else:  # pragma: no cover - StoreLog.append refuses anything else
            raise LogError(f"record {index}: not a log record: {type(rec).__name__}")
    if stack and not allow_open_markers:
        name, begin_at = stack[-1]
        raise MarkerError(f"record {begin_at}: section {name!r} is never closed ({name}.END missing)")
    if points[-1].record == len(records) and len(points) > 1:
        points.pop()  # nothing after the last point
    return LogScan(tuple(markers), tuple(points), epochs + bool(dirty or waiting or cut), stores)
