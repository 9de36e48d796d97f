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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pmemsim.enums import Granularity
from pmemsim.persistence.log import Fence, Flush, LogError, Marker, Store, StoreLog, check_record

if TYPE_CHECKING:
    from pmemsim.persistence.engines import Engine

__all__ = [
    "Atom",
    "Epoch",
    "EpochPlan",
    "MarkerError",
    "PersistencyModel",
    "Platform",
    "build_epochs",
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
    section_engines = dict(markers or {})
    keys = tuple(log.files)
    fidx_of = {k: i for i, k in enumerate(keys)}
    sizes = tuple(log.files[k].size for k in keys)
    unit_shift = model.flush_unit.bit_length() - 1
    atomic = ATOMIC_UNIT
    eadr = model.eadr_mode

    atoms: list[Atom] = []
    epochs: list[Epoch] = []
    pending: dict[int, Atom] = {}  # atom id -> atom, in program order
    by_unit: dict[tuple[int, int], list[int]] = {}  # (fidx, flush unit) -> pending unflushed atom ids
    flushed: set[int] = set()
    flush_seen = False
    epoch_start = 0
    # The engine stack: (section name, BEGIN record index, engine); the bottom is the default.
    stack: list[tuple[str, int, Engine]] = [("", -1, engine)]
    marker_names: list[str] = []

    def flush_range(fidx: int, lo: int, hi: int) -> None:
        # Mark every pending atom whose flush unit intersects [lo, hi) as flushed.
        if hi <= lo:
            return
        first, last = lo >> unit_shift, (hi - 1) >> unit_shift
        if last - first + 1 <= len(by_unit):
            candidates = [(fidx, u) for u in range(first, last + 1)]
        else:
            candidates = [k for k in by_unit if k[0] == fidx and first <= k[1] <= last]
        for key in candidates:
            ids = by_unit.pop(key, None)
            if ids:
                flushed.update(ids)

    def close_epoch(end: int, final: bool) -> None:
        inflight = tuple(pending.values())
        done = tuple(a for a in inflight if a.id in flushed)
        epochs.append(
            Epoch(
                index=len(epochs),
                start=epoch_start,
                end=end,
                final=final,
                inflight=inflight,
                flushed=done,
                engine=stack[-1][2],
                sections=tuple(name for name, _, _ in stack[1:]),
                markers_before=len(marker_names),
            )
        )
        for a in done:
            del pending[a.id]
        flushed.clear()  # every flushed atom was pending, and is durable now

    for index, rec in enumerate(log.records):
        if isinstance(rec, Store):
            check_record(log, index, rec)
            fidx = fidx_of[rec.file]
            if rec.nontemporal:
                # An NT store to a cached line evicts the line: earlier cached stores go too.
                flush_range(fidx, rec.offset, rec.end)
            pos, piece, data = rec.offset, 0, rec.data
            while pos < rec.end:
                stop = min(rec.end, (pos // atomic + 1) * atomic)
                atom = Atom(
                    id=len(atoms),
                    record=index,
                    piece=piece,
                    file=rec.file,
                    offset=pos,
                    data=data[pos - rec.offset : stop - rec.offset],
                    fidx=fidx,
                    word=_word_key(fidx, pos),
                )
                atoms.append(atom)
                pending[atom.id] = atom
                if eadr or rec.nontemporal:
                    flushed.add(atom.id)
                    flush_seen = True
                else:
                    by_unit.setdefault((fidx, pos >> unit_shift), []).append(atom.id)
                pos, piece = stop, piece + 1
        elif isinstance(rec, Flush):
            check_record(log, index, rec)
            flush_seen = True
            if rec.file:
                flush_range(fidx_of[rec.file], rec.offset, rec.end)
        elif isinstance(rec, Fence):
            if flush_seen:
                close_epoch(index, final=False)
                flush_seen = False
                epoch_start = index + 1
        elif isinstance(rec, Marker):
            section = rec.section
            if section is None:
                continue
            marker_names.append(rec.name)
            if rec.is_begin:
                stack.append((section, index, section_engines.get(section, stack[-1][2])))
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

    if pending:
        close_epoch(len(log.records), final=True)
    if len(stack) > 1 and not allow_open_markers:
        name, begin_at, _ = stack[-1]
        raise MarkerError(f"record {begin_at}: section {name!r} is never closed ({name}.END missing)")
    return EpochPlan(keys, sizes, tuple(epochs), tuple(atoms), model, tuple(marker_names))
