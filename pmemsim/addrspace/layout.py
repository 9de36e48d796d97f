"""Bookkeeping and placement shared by every backend.

:class:`LayoutAddressSpace` keeps the whole address space in one
:class:`~pmemsim.addrspace.intervals.IntervalMap` (reservations and foreign
"occupied" ranges) and each reservation's mappings in its own, decides where new
reservations go, and checks every request before a backend hook touches anything. A
backend subclasses it and implements the ``_os_*`` hooks: the simulator does plain file
I/O, the mmap backend makes real system calls. Because placement is decided here, both
backends lay out the same calls identically.

Removal is all-or-nothing: :meth:`LayoutAddressSpace.unmap_many` groups the mappings
into contiguous runs, asks the backend to unmap each run (``_os_unmap_run``) and, when
one fails, to map the runs already gone back where they were (``_os_remap_run``)
before the error propagates; the bookkeeping changes only after every run is gone.
A multi-piece write likewise puts back the pieces it had written when a later piece
fails.

Threads: every space has one reentrant lock, :attr:`LayoutAddressSpace.lock`. Each
public method holds it, and so does every call of a set on the space, so two threads
may share a space and its sets; their calls run one at a time.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import ParamSpec, TypeVar

from pmemsim.addrspace.base import (
    FileRef,
    Mapping,
    NotMapped,
    Occupied,
    OutOfAddressSpace,
    Placement,
    RangeOccupied,
    Reservation,
)
from pmemsim.addrspace.intervals import IntervalMap
from pmemsim.enums import Granularity

__all__ = ["LayoutAddressSpace", "NotMapped", "Occupied", "Placement"]

_ALL_GRANULARITIES = frozenset(Granularity)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``method`` holding its space's lock (the first argument is the space)."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with args[0].lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


def _check_int(name: str, value: object, *, positive: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value}")
    return value


class LayoutAddressSpace:
    """Interval-map bookkeeping plus placement policy; backends fill in the ``_os_*`` hooks."""

    def __init__(
        self,
        *,
        page_size: int,
        low: int,
        high: int,
        placement: Placement | str = Placement.BOTTOM_UP,
        limit: int | None = None,
        supported_granularities: frozenset[Granularity] | None = None,
    ) -> None:
        _check_int("page_size", page_size, positive=True)
        if page_size & (page_size - 1):
            raise ValueError(f"page_size must be a power of two, got {page_size}")
        _check_int("low", low)
        _check_int("high", high)
        if low % page_size or high % page_size:
            raise ValueError(f"low {low:#x} and high {high:#x} must be multiples of page_size {page_size}")
        if low == 0:
            raise ValueError("low must not be 0: address 0 is never handed out")
        if high <= low:
            raise ValueError(f"high {high:#x} must be above low {low:#x}")
        if limit is not None:
            _check_int("limit", limit)
        try:
            self.placement = Placement(placement)
        except ValueError:
            raise ValueError(f"unknown placement {placement!r}; use 'bottom-up' or 'top-down'") from None
        self._page_size = page_size
        self.limit = limit
        self._space: IntervalMap[Reservation | Occupied] = IntervalMap(low, high)
        grans = _ALL_GRANULARITIES if supported_granularities is None else supported_granularities
        self._supported = frozenset(Granularity(g) for g in grans)
        self._device_gran_by_path: dict[str, Granularity] = {}
        self._device_gran_by_inode: dict[tuple[int, int], Granularity] = {}
        #: Held by each public method and by every call of a set on this space.
        self.lock = threading.RLock()

    # -- properties -----------------------------------------------------------

    @property
    def page_size(self) -> int:
        """Allocation granularity in bytes."""
        return self._page_size

    @property
    def low(self) -> int:
        """Lowest usable address."""
        return self._space.low

    @property
    def high(self) -> int:
        """One past the highest usable address."""
        return self._space.high

    @property
    def supported_granularities(self) -> frozenset[Granularity]:
        """Store granularities a set on this space may require."""
        return self._supported

    @supported_granularities.setter
    def supported_granularities(self, grans: frozenset[Granularity]) -> None:
        self._supported = frozenset(Granularity(g) for g in grans)

    #: False for a backend whose flush is bookkeeping only (it never fails), so a set
    #: need not keep the old bytes of a memcpy to put back should the flush fail.
    flush_may_fail: bool = True

    def close(self) -> None:
        """Give back what the space holds of the system: nothing here (a backend with an arena overrides)."""

    @property
    def used(self) -> int:
        """Bytes taken by reservations and occupied ranges."""
        return self._space.used

    # -- reservations -----------------------------------------------------------

    def _check_aligned(self, what: str, value: int) -> None:
        if value % self._page_size:
            raise ValueError(f"{what} {value:#x} is not a multiple of the page size {self._page_size}")

    def _check_limit(self, size: int) -> None:
        if self.limit is not None and self._space.used + size > self.limit:
            raise OutOfAddressSpace(
                f"address-space limit reached: {self._space.used:#x} of {self.limit:#x} bytes in use, "
                f"{size:#x} more requested"
            )

    def _place(self, size: int) -> int:
        if self.placement is Placement.BOTTOM_UP:
            addr = self._space.first_fit(size)
        else:
            # The top of the highest gap that fits, found through the size-class index.
            addr = self._space.last_fit(size)
        if addr is None:
            raise OutOfAddressSpace(f"no free range of {size:#x} bytes in [{self.low:#x}, {self.high:#x})")
        return addr

    def _claim(self, size: int, addr: int | None, what: str) -> int:
        _check_int("size", size, positive=True)
        self._check_aligned("size", size)
        if addr is not None:
            _check_int("addr", addr)
            self._check_aligned("addr", addr)
            if not self._space.is_free(addr, addr + size):
                raise RangeOccupied(f"cannot {what} [{addr:#x}, {addr + size:#x}): range is not free")
        self._check_limit(size)
        return self._place(size) if addr is None else addr

    @_locked
    def reserve(self, size: int, addr: int | None = None) -> Reservation:
        """Reserve ``size`` bytes, at ``addr`` or where the placement policy says.

        Raises OutOfAddressSpace when nothing fits, RangeOccupied when ``addr`` is taken,
        ValueError for sizes or addresses that are not page multiples.
        """
        start = self._claim(size, addr, "reserve")
        self._os_reserve(start, size)
        rsv = Reservation(self, start, size)
        self._space.insert(start, start + size, rsv)
        return rsv

    def _own(self, rsv: Reservation) -> None:
        if not isinstance(rsv, Reservation):
            raise TypeError(f"expected a Reservation, got {type(rsv).__name__}")
        if not self.owns(rsv):
            raise ValueError(f"{rsv!r} does not belong to this address space")

    @_locked
    def owns(self, rsv: Reservation) -> bool:
        """True when ``rsv`` is a live reservation this space made (not a copy or a forgery). O(log n)."""
        if not isinstance(rsv, Reservation) or rsv.space is not self or rsv.released:
            return False
        hit = self._space.get(rsv.addr)
        return hit is not None and hit[1] is rsv

    @_locked
    def release(self, rsv: Reservation) -> None:
        """Give back an empty reservation (ValueError if it still holds mappings)."""
        self._own(rsv)
        held = rsv.mapping_count()  # not len(rsv.mappings): that builds a list of them all
        if held:
            raise ValueError(f"{rsv!r} still holds {held} mapping(s)")
        self._os_release(rsv.addr, rsv.size)
        self._space.remove(rsv.addr)
        rsv.released = True

    @_locked
    def extend(self, rsv: Reservation, size: int) -> None:
        """Grow ``rsv`` by ``size`` bytes at its end; RangeOccupied if that range is taken."""
        self._own(rsv)
        _check_int("size", size, positive=True)
        self._check_aligned("size", size)
        end = rsv.end
        if not self._space.is_free(end, end + size):
            raise RangeOccupied(
                f"cannot extend {rsv!r} by {size:#x}: [{end:#x}, {end + size:#x}) is not free"
            )
        self._check_limit(size)
        self._os_extend(end, size)
        start = rsv.addr
        self._space.remove(start)
        self._space.insert(start, end + size, rsv)
        rsv.set_bounds(start, end + size)

    @_locked
    def shrink(self, rsv: Reservation, offset: int, size: int) -> None:
        """Cut ``[rsv.addr+offset, +size)`` off the start or the end of ``rsv``.

        The range must be free of mappings and must not be all of ``rsv`` (release it).
        """
        self._own(rsv)
        _check_int("offset", offset)
        _check_int("size", size, positive=True)
        self._check_aligned("offset", offset)
        self._check_aligned("size", size)
        start, end = rsv.addr, rsv.end
        cut_start = start + offset
        cut_end = cut_start + size
        if cut_end > end or (cut_start != start and cut_end != end) or size == rsv.size:
            raise ValueError(
                f"shrink of {rsv!r} by [{cut_start:#x}, {cut_end:#x}) must take a proper prefix or suffix"
            )
        if not rsv.is_free(cut_start, size):
            raise RangeOccupied(f"cannot shrink {rsv!r}: [{cut_start:#x}, {cut_end:#x}) holds mappings")
        self._os_release(cut_start, size)
        new_start, new_end = (cut_end, end) if cut_start == start else (start, cut_start)
        self._space.remove(start)
        self._space.insert(new_start, new_end, rsv)
        rsv.set_bounds(new_start, new_end)

    @_locked
    def reservations(self) -> list[Reservation]:
        """Every live reservation, in address order."""
        return [v for _s, _e, v in self._space if isinstance(v, Reservation)]

    # -- foreign mappings -------------------------------------------------------

    @_locked
    def occupy(self, addr: int, size: int) -> Occupied:
        """Place a foreign mapping at ``[addr, addr+size)`` that sets must step around.

        Raises RangeOccupied when the range is not free.
        """
        start = self._claim(size, addr, "occupy")
        self._os_occupy(start, size)
        occ = Occupied(start, size)
        self._space.insert(start, start + size, occ)
        return occ

    @_locked
    def free(self, addr: int) -> None:
        """Remove the occupied range starting at ``addr`` (ValueError if there is none)."""
        hit = self._space.get(addr) if isinstance(addr, int) else None
        if hit is None or not isinstance(hit[1], Occupied):
            raise ValueError(f"no occupied range starts at {addr!r}")
        self._os_free(addr, hit[1].size)
        self._space.remove(addr)

    @_locked
    def occupied(self) -> list[Occupied]:
        """Every occupied range, in address order."""
        return [v for _s, _e, v in self._space if isinstance(v, Occupied)]

    @_locked
    def is_free(self, addr: int, size: int) -> bool:
        """True when nothing (reservation or occupied range) touches ``[addr, addr+size)``."""
        return self._space.is_free(addr, addr + size)

    # -- file mappings ------------------------------------------------------------

    @_locked
    def map_file(
        self,
        rsv: Reservation,
        addr: int,
        file: FileRef,
        file_offset: int,
        length: int,
        granularity: Granularity,
    ) -> Mapping:
        """Map ``length`` bytes of ``file`` at ``addr``, a free range inside ``rsv``."""
        self._own(rsv)
        _check_int("length", length, positive=True)
        _check_int("file_offset", file_offset)
        if not rsv.is_free(addr, length):
            raise RangeOccupied(f"[{addr:#x}, {addr + length:#x}) is not a free range of {rsv!r}")
        self._os_map(addr, length, file, file_offset)
        mapping = Mapping(rsv, addr, length, file, file_offset, Granularity(granularity))
        rsv.add_mapping(mapping)
        return mapping

    def unmap(self, mapping: Mapping) -> None:
        """Remove ``mapping``; its range goes back to the reservation as free space."""
        self.unmap_many([mapping])

    @_locked
    def unmap_many(self, mappings: Sequence[Mapping]) -> None:
        """Remove every mapping of ``mappings``, or (raising) none of them.

        ValueError (nothing done) when one is not mapped or is listed twice; the
        backend's OSError when the OS refuses, after the mappings already removed were
        put back.
        """
        seen: set[int] = set()
        for m in mappings:
            rsv = m.reservation
            self._own(rsv)
            if not rsv.holds(m):
                raise ValueError(f"mapping at {m.addr:#x} is not mapped")
            if id(m) in seen:
                raise ValueError(f"mapping at {m.addr:#x} is listed twice")
            seen.add(id(m))
        runs: list[list[Mapping]] = []
        for m in sorted(mappings, key=lambda m: m.addr):
            last = runs[-1][-1] if runs else None
            if last is not None and last.reservation is m.reservation and last.end == m.addr:
                runs[-1].append(m)
            else:
                runs.append([m])
        done: list[list[Mapping]] = []
        try:
            for run in runs:
                self._os_unmap_run(run)
                done.append(run)
        except BaseException:
            for run in reversed(done):
                self._os_remap_run(run)
            raise
        for m in mappings:
            m.reservation.remove_mapping(m)

    def _pieces(self, addr: int, length: int) -> Iterator[tuple[Mapping, int, int]]:
        """``(mapping, offset in mapping, n)`` covering ``[addr, addr+length)``; NotMapped if a hole."""
        _check_int("addr", addr)
        _check_int("length", length)
        end = addr + length
        cur = addr
        pieces: list[tuple[Mapping, int, int]] = []
        while cur < end:
            hit = self._space.find(cur)
            mapping = hit[2].mapping_at(cur) if hit and isinstance(hit[2], Reservation) else None
            if mapping is None:
                raise NotMapped(f"address {cur:#x} is not mapped")
            n = min(mapping.end, end) - cur
            pieces.append((mapping, cur - mapping.addr, n))
            cur += n
        return iter(pieces)

    @_locked
    def mapping_at(self, addr: int) -> Mapping | None:
        """The file mapping containing ``addr``, or None."""
        hit = self._space.find(addr)
        if hit is None or not isinstance(hit[2], Reservation):
            return None
        return hit[2].mapping_at(addr)

    @_locked
    def read(self, addr: int, length: int) -> bytes:
        """Bytes at ``[addr, addr+length)``; NotMapped if any of it is not mapped."""
        return b"".join(self._os_read(m, off, n) for m, off, n in self._pieces(addr, length))

    @_locked
    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``addr``; NotMapped (and nothing written) if any of it is not mapped.

        When the OS fails a piece after earlier pieces were written, those get their
        old bytes back before the error propagates.
        """
        view = memoryview(data).cast("B")
        pieces = list(self._pieces(addr, len(view)))
        if len(pieces) == 1:
            m, off, n = pieces[0]
            self._os_write(m, off, view)
            return
        old = [self._os_read(m, off, n) for m, off, n in pieces]
        pos = 0
        for i, (m, off, n) in enumerate(pieces):
            try:
                self._os_write(m, off, view[pos : pos + n])
            except BaseException:
                for (pm, poff, _n), before in zip(pieces[:i], old, strict=False):
                    self._os_write(pm, poff, memoryview(before))
                raise
            pos += n

    @_locked
    def flush(self, addr: int, length: int) -> None:
        """Make ``[addr, addr+length)`` durable in the backing files."""
        for m, off, n in self._pieces(addr, length):
            self._os_flush(m, off, n)

    # -- device granularity ---------------------------------------------------------

    def set_device_granularity(self, path: str | os.PathLike[str], granularity: Granularity) -> None:
        """Pretend the file at ``path`` lives on a device of ``granularity``.

        PAGE is a regular file, CACHE_LINE a DAX device, BYTE a DAX device with eADR.
        """
        g = Granularity(granularity)
        key = os.path.abspath(os.fspath(path))
        self._device_gran_by_path[key] = g
        try:
            st = os.stat(key)
        except OSError:
            return
        self._device_gran_by_inode[(st.st_dev, st.st_ino)] = g

    def device_granularity(self, file: FileRef) -> Granularity:
        """The store granularity of ``file``'s device: PAGE unless set otherwise."""
        try:
            st = os.fstat(file.fd)
            g = self._device_gran_by_inode.get((st.st_dev, st.st_ino))
            if g is not None:
                return g
        except OSError:
            pass
        if file.path is not None:
            return self._device_gran_by_path.get(os.path.abspath(file.path), Granularity.PAGE)
        return Granularity.PAGE

    # -- hooks -------------------------------------------------------------------

    def _os_reserve(self, addr: int, size: int) -> None:
        """Back a new reservation at ``[addr, addr+size)``."""

    def _os_extend(self, addr: int, size: int) -> None:
        """Back ``[addr, addr+size)`` right after an existing reservation."""
        self._os_reserve(addr, size)

    def _os_release(self, addr: int, size: int) -> None:
        """Give back ``[addr, addr+size)`` of a reservation or occupied range."""

    def _os_free(self, addr: int, size: int) -> None:
        """Give back an occupied range (a foreign mapping)."""
        self._os_release(addr, size)

    def _os_occupy(self, addr: int, size: int) -> None:
        """Back a foreign mapping at ``[addr, addr+size)``."""
        self._os_reserve(addr, size)

    def _os_map(self, addr: int, length: int, file: FileRef, file_offset: int) -> None:
        """Map the file range (MapFailed when impossible)."""

    def _os_unmap(self, mapping: Mapping) -> None:
        """Return the mapping's range to the reservation."""

    def _os_unmap_run(self, run: list[Mapping]) -> None:
        """Unmap contiguous mappings of one reservation, all or (raising) none."""
        for m in run:
            self._os_unmap(m)

    def _os_remap_run(self, run: list[Mapping]) -> None:
        """Map again, where they were, mappings :meth:`_os_unmap_run` removed (an undo: never raises)."""

    def _os_read(self, mapping: Mapping, offset: int, n: int) -> bytes:
        raise NotImplementedError

    def _os_write(self, mapping: Mapping, offset: int, data: memoryview) -> None:
        raise NotImplementedError

    def _os_flush(self, mapping: Mapping, offset: int, n: int) -> None:
        """Write back ``n`` bytes at ``offset`` of ``mapping``."""

    def _check(self) -> None:
        """Assert the bookkeeping is consistent (for tests)."""
        self._space._check()
        for rsv in self.reservations():
            rsv._check()
            assert self._space.get(rsv.addr) == (rsv.end, rsv)
