"""A brute-force oracle of the x86 crash model: every (image, markers) pair a crash can leave.

This module is the reference the crash engine is tested against. It is written from the
model's statement below, without reference to the engine, and it favours being obviously
right over being fast: it enumerates every subset of the in-flight atoms and keeps those
the two ordering rules allow. Keep the logs you give it small (:data:`DEFAULT_MAX_IN_FLIGHT`).

Theory of operation
-------------------
A :class:`~pmemsim.persistence.log.StoreLog` is a list of records in program order:
``Store(file, offset, data, nontemporal)``, ``Flush(file, offset, length)`` (``file=""``
flushes nothing), ``Fence()`` and ``Marker(name)``. File offsets are addresses: a file is
mapped at a page-aligned address, so offset ``o`` lies in cache line ``o // 64``.

The model has two parameters: the platform, ADR or eADR (:attr:`OracleModel.eadr`), and
the flush unit ``F`` in bytes (:attr:`OracleModel.flush_unit`; 64 for byte-addressable
devices, a page for PAGE devices; a multiple of 64).

* **Atoms.** A store splits at the 8-byte-aligned boundaries of its file offsets: an
  aligned 8-byte store is one atom, a 16-byte or unaligned store tears into several.
  Atoms are numbered in program order (store order, then piece order within a store).
  x86 guarantees atomicity for aligned 8-byte accesses, no more (Intel SDM vol. 3A,
  "Guaranteed Atomic Operations").
* **Flushed.** A cached (non-NT) atom becomes flushed when a later ``Flush`` of the same
  file covers any byte of its flush unit (``offset // F``). Under eADR the caches are in
  the persistence domain, so every atom is flushed when issued. A non-temporal atom is
  flushed when issued, and an NT store also flushes every earlier pending cached atom of
  the same file in the flush units it touches: a non-temporal store to a cached line
  evicts the line (Intel SDM vol. 1, "Caching of Temporal vs. Non-Temporal Data").
* **Durable.** At a ``Fence`` every flushed, not yet durable atom becomes durable: it is
  applied to the durable base, in program order.
* **Crash at point p** (after ``records[:p]``, for every ``p = 0 .. len(records)``). The
  in-flight atoms are those issued before ``p`` and not durable at ``p``. A set ``L`` of
  in-flight atoms may have reached media iff

  (a) for every 64-byte cache line of every file, the cached in-flight atoms of that line,
      in program order, form a chain and ``L`` holds a prefix of it: a line is written
      back whole, so media holds the line as it was at some moment (Px86, Raad et al.,
      POPL 2020; Jaaru, Gorjiara et al., ASPLOS 2021). The ordering unit is the 64-byte
      line whatever the platform and flush unit;
  (b) for any two in-flight atoms ``x`` before ``y`` whose byte ranges overlap,
      ``y`` in ``L`` implies ``x`` in ``L`` (coherence: a later write to a byte is never
      overwritten by an earlier one). This is the only order of NT atoms: they are weakly
      ordered and leave through write-combining buffers in any order (Intel SDM vol. 3A,
      "Memory Ordering" and "Write Combining").

  The crash image is the durable base at ``p`` with the atoms of ``L`` applied in program
  order. Both rules say "``y`` in ``L`` needs ``x`` in ``L``", so the oracle lists those
  implications (:func:`implications`) and filters the subsets by them.
* **Markers at p.** The names of the ``Marker`` records among ``records[:p]`` whose name,
  up to the first ``;``, ends with ``.BEGIN`` or ``.END``, as a tuple in log order (the
  markers pmreorder passes to a checker in ``PMREORDER_MARKERS``). The tuple holds each
  marker's whole name, ``;`` suffix included.

Why the durable base and the in-flight atoms never disagree: an atom overlapping an older
in-flight atom shares its word, hence its line and flush unit, so any flush or NT eviction
that flushes the younger one flushes the older one too (:func:`crash_points` asserts it).

API: :func:`crash_states` (the set of ``(image, markers)`` pairs over all crash points),
:func:`crash_images` (the set of images), :func:`crash_points` and :func:`images_at` (per
point), :func:`split_store` (atoms), :func:`max_in_flight` (for sizing random logs).
An image is a tuple of every file's bytes, in ``log.files`` order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pmemsim.persistence.log import Fence, Flush, Marker, Store, StoreLog

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "EADR",
    "LINE",
    "WORD",
    "CrashPoint",
    "Image",
    "OracleAtom",
    "OracleModel",
    "State",
    "crash_images",
    "crash_points",
    "crash_states",
    "images_at",
    "implications",
    "is_crash_set",
    "marker_names",
    "max_in_flight",
    "split_store",
]

#: x86's atomic store unit: aligned 8 bytes.
WORD = 8
#: The cache line, the unit of write-back order.
LINE = 64
#: The oracle refuses crash points with more in-flight atoms (2**n subsets each).
DEFAULT_MAX_IN_FLIGHT = 14

#: An image: the bytes of every file, in ``log.files`` order.
Image = tuple[bytes, ...]
#: A crash state as a checker sees it: the image and the markers at the crash point.
State = tuple[Image, tuple[str, ...]]


@dataclass(frozen=True)
class OracleModel:
    """The platform (``eadr``: caches are persistent) and the flush unit ``flush_unit`` in bytes."""

    eadr: bool = False
    flush_unit: int = LINE

    def __post_init__(self) -> None:
        if self.flush_unit <= 0 or self.flush_unit % LINE:
            raise ValueError(f"flush_unit must be a positive multiple of {LINE}, got {self.flush_unit}")


#: eADR with the default 64-byte flush unit.
EADR = OracleModel(eadr=True)


@dataclass(frozen=True)
class OracleAtom:
    """One 8-byte-bounded piece of a store: ``seq`` is its place in program order among all atoms."""

    seq: int
    record: int
    piece: int
    file: str
    offset: int
    data: bytes
    nontemporal: bool

    @property
    def end(self) -> int:
        """One past the last file offset written."""
        return self.offset + len(self.data)

    @property
    def line(self) -> tuple[str, int]:
        """The 64-byte cache line holding the atom (an atom never crosses a word, so never a line)."""
        return (self.file, self.offset // LINE)

    def unit(self, flush_unit: int) -> int:
        """The flush unit holding the atom."""
        return self.offset // flush_unit

    def overlaps(self, other: OracleAtom) -> bool:
        """True when both write some byte of the same file."""
        return self.file == other.file and self.offset < other.end and other.offset < self.end


def split_store(store: Store, record: int, first_seq: int) -> list[OracleAtom]:
    """The atoms of ``store`` (record ``record``), numbered from ``first_seq``: cut at 8-byte boundaries."""
    atoms: list[OracleAtom] = []
    start = store.offset
    while start < store.end:
        stop = min(store.end, (start // WORD + 1) * WORD)
        data = store.data[start - store.offset : stop - store.offset]
        atoms.append(
            OracleAtom(first_seq + len(atoms), record, len(atoms), store.file, start, data, store.nontemporal)
        )
        start = stop
    return atoms


def marker_names(records: Sequence[object]) -> tuple[str, ...]:
    """The names of the section markers (``.BEGIN`` / ``.END`` before the first ``;``) among ``records``."""
    return tuple(
        r.name
        for r in records
        if isinstance(r, Marker) and r.name.split(";", 1)[0].endswith((".BEGIN", ".END"))
    )


@dataclass(frozen=True)
class CrashPoint:
    """The machine after ``records[:prefix]``: durable base, in-flight atoms, markers so far."""

    prefix: int
    base: Image
    in_flight: tuple[OracleAtom, ...]
    markers: tuple[str, ...]


def _initial_image(log: StoreLog) -> list[bytearray]:
    images = []
    for key, info in log.files.items():
        if info.initial is not None:
            images.append(bytearray(info.initial))
        elif info.path is None:
            images.append(bytearray(info.size))
        else:
            raise ValueError(f"file {key!r} has a path and no initial bytes; the oracle reads no files")
    return images


def crash_points(log: StoreLog, model: OracleModel = OracleModel()) -> Iterator[CrashPoint]:
    """Every crash point ``p = 0 .. len(log.records)``, in order.

    Raises ValueError for a store or flush of an unregistered file.
    """
    keys = list(log.files)
    index = {key: i for i, key in enumerate(keys)}
    base = _initial_image(log)
    F = model.flush_unit
    pending: list[OracleAtom] = []  # issued, not durable, in program order
    flushed: set[int] = set()  # seq of the pending atoms that are flushed
    next_seq = 0

    def point(prefix: int) -> CrashPoint:
        return CrashPoint(
            prefix, tuple(bytes(b) for b in base), tuple(pending), marker_names(log.records[:prefix])
        )

    yield point(0)
    for i, rec in enumerate(log.records):
        if isinstance(rec, Store):
            if rec.file not in index:
                raise ValueError(f"record {i}: store to unregistered file {rec.file!r}")
            atoms = split_store(rec, i, next_seq)
            next_seq += len(atoms)
            if rec.nontemporal:
                # The NT store evicts its flush units first: earlier cached atoms there are written back.
                units = range(rec.offset // F, (rec.end - 1) // F + 1)
                for a in pending:
                    if a.file == rec.file and not a.nontemporal and a.unit(F) in units:
                        flushed.add(a.seq)
            for a in atoms:
                pending.append(a)
                if a.nontemporal or model.eadr:
                    flushed.add(a.seq)
        elif isinstance(rec, Flush):
            if rec.file and rec.file not in index:
                raise ValueError(f"record {i}: flush of unregistered file {rec.file!r}")
            for a in pending:
                unit_start = a.unit(F) * F
                if a.file == rec.file and rec.offset < unit_start + F and unit_start < rec.end:
                    flushed.add(a.seq)
        elif isinstance(rec, Fence):
            durable = [a for a in pending if a.seq in flushed]
            pending = [a for a in pending if a.seq not in flushed]
            for a in durable:  # program order
                # An atom that stays in flight is never overwritten on media by a younger durable one.
                assert not any(p.seq < a.seq and p.overlaps(a) for p in pending), (a, pending)
                base[index[a.file]][a.offset : a.end] = a.data
            flushed.clear()
        yield point(i + 1)


def implications(in_flight: Sequence[OracleAtom]) -> list[tuple[OracleAtom, OracleAtom]]:
    """Pairs ``(x, y)`` meaning "``y`` reached media only if ``x`` did", from rules (a) and (b).

    (a): consecutive cached atoms of one line (a prefix of the line's chain is a set closed
    under "the previous link"). (b): an older atom overlapping a younger one.
    """
    pairs: list[tuple[OracleAtom, OracleAtom]] = []
    chains: dict[tuple[str, int], list[OracleAtom]] = {}
    for a in sorted(in_flight, key=lambda a: a.seq):
        if not a.nontemporal:
            chains.setdefault(a.line, []).append(a)
    for chain in chains.values():
        pairs += itertools.pairwise(chain)
    for x, y in itertools.combinations(sorted(in_flight, key=lambda a: a.seq), 2):
        if x.overlaps(y):
            pairs.append((x, y))
    return pairs


def _closed(seqs: set[int], pairs: Sequence[tuple[OracleAtom, OracleAtom]]) -> bool:
    return all(x.seq in seqs or y.seq not in seqs for x, y in pairs)


def is_crash_set(chosen: Sequence[OracleAtom], in_flight: Sequence[OracleAtom]) -> bool:
    """Whether exactly the atoms ``chosen`` of ``in_flight`` may have reached media at a crash."""
    return _closed({a.seq for a in chosen}, implications(in_flight))


def _apply(base: Image, keys: list[str], atoms: Sequence[OracleAtom]) -> Image:
    files = [bytearray(b) for b in base]
    for a in sorted(atoms, key=lambda a: a.seq):
        files[keys.index(a.file)][a.offset : a.end] = a.data
    return tuple(bytes(f) for f in files)


def images_at(
    point: CrashPoint, keys: list[str], max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
) -> frozenset[Image]:
    """Every image a crash at ``point`` can leave (``keys``: the file keys in ``log.files`` order).

    Raises ValueError when more than ``max_in_flight`` atoms are in flight (2**n subsets).
    """
    atoms = point.in_flight
    if len(atoms) > max_in_flight:
        raise ValueError(
            f"{len(atoms)} atoms in flight after record {point.prefix}; "
            f"the oracle takes at most {max_in_flight}"
        )
    pairs = implications(atoms)
    out = set()
    for picks in itertools.product((False, True), repeat=len(atoms)):
        chosen = [a for a, pick in zip(atoms, picks, strict=True) if pick]
        if _closed({a.seq for a in chosen}, pairs):
            out.add(_apply(point.base, keys, chosen))
    return frozenset(out)


def crash_states(
    log: StoreLog, model: OracleModel = OracleModel(), max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
) -> frozenset[State]:
    """Every ``(image, markers)`` pair over all crash points of ``log``."""
    keys = list(log.files)
    cache: dict[tuple[Image, tuple[OracleAtom, ...]], frozenset[Image]] = {}
    out: set[State] = set()
    for point in crash_points(log, model):
        # Points that differ only by flushes or markers have the same images: compute them once.
        key = (point.base, point.in_flight)
        if key not in cache:
            cache[key] = images_at(point, keys, max_in_flight)
        out.update((image, point.markers) for image in cache[key])
    return frozenset(out)


def crash_images(
    log: StoreLog, model: OracleModel = OracleModel(), max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
) -> frozenset[Image]:
    """Every image over all crash points of ``log``."""
    return frozenset(image for image, _ in crash_states(log, model, max_in_flight))


def max_in_flight(log: StoreLog, model: OracleModel = OracleModel()) -> int:
    """The most atoms in flight at any crash point (ADR with a 64-byte unit has the most)."""
    return max(len(p.in_flight) for p in crash_points(log, model))
