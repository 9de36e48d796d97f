"""Real mappings of real files in this process, through ctypes over libc.

Theory of operation: at creation the space reserves one arena, an anonymous
``PROT_NONE`` ``MAP_PRIVATE|MAP_NORESERVE`` mapping placed by the kernel (64 GiB of
address space by default, no memory). :class:`~pmemsim.addrspace.layout.LayoutAddressSpace`
does all the bookkeeping and placement with the arena as its bounds, so layouts,
relative to the arena's start, are the ones the simulator gives. Every system call
below targets a range inside the arena that the bookkeeping has just said is ours,
so ``MAP_FIXED`` never clobbers anybody else's memory:

* reservations are bookkeeping only (the arena is already ``PROT_NONE``/NORESERVE);
* a file range is ``mmap(addr, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED, fd, off)``;
* unmapping, releasing and freeing map the range back as the arena's own kind of
  anonymous ``PROT_NONE`` mapping with ``MAP_FIXED`` (never a hole another allocator
  could take; the kernel merges it back into the arena);
* ``occupy`` places a distinct shared anonymous ``PROT_NONE`` mapping;
* flush is ``msync(MS_SYNC)`` of the page-aligned range.

Reads and writes through the API never touch the mapping: they are ``pread`` and
``pwrite`` on the mapped file's descriptor, which Linux keeps coherent with a
``MAP_SHARED`` mapping (one page cache). A load or store through a mapping whose file
another process has shrunk raises SIGBUS and kills the interpreter; a ``pread`` past
the end returns a short count (read as zeros) and a ``pwrite`` past the end grows the
file, exactly as the simulator's plain file I/O does, whatever another process does to
the file meanwhile. ``msync`` still goes through the mapping (a system call: it
reports errors, it never faults).

Removal is all-or-nothing. A contiguous run of mappings (the pieces of a coalesced part
map) is laid back to arena with one ``mmap(MAP_FIXED)``, which the kernel does or
refuses as a whole (e.g. ENOMEM at ``vm.max_map_count``: freeing the middle of a merged
VMA splits it). When a later run fails, the runs already unmapped are mapped again at
the same addresses before the error is raised. Should that restore itself fail (the
kernel refusing to recreate what it had a moment before), the mapping stays in the
bookkeeping as *detached*: reads, writes and flushes keep working through the file
descriptor (a flush becomes ``fdatasync``), so the set stays usable and consistent.

Every system call goes through :mod:`pmemsim._files` (``inject``), where a fault plan
can fail the k-th ``mmap``, ``munmap``, ``msync``, ``open``, ``fstat``, ``fallocate``...

Linux only (the flag values below are the generic Linux ones, as on x86-64 and
arm64), 64-bit only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import mmap as _mmap
import os
import stat
import sys
import weakref
from dataclasses import dataclass, field

from pmemsim import _files
from pmemsim.addrspace.base import FileRef, MapFailed, Mapping
from pmemsim.addrspace.layout import LayoutAddressSpace, NotMapped, Occupied, Placement
from pmemsim.enums import Granularity
from pmemsim.faults import OsCall

__all__ = ["DEFAULT_ARENA_SIZE", "MmapAddressSpace"]

#: Address space set aside by default: 64 GiB (no memory: PROT_NONE, MAP_NORESERVE).
DEFAULT_ARENA_SIZE = 64 << 30

#: The kernel's page size: mappings, file offsets and msync ranges align to it.
OS_PAGE = _mmap.PAGESIZE

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MS_SYNC = 4

_ARENA_FLAGS = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
# A foreign mapping must not merge with the arena, so /proc/self/maps shows it:
# shared anonymous memory is shmem-backed and never merges with private anonymous.
_OCCUPY_FLAGS = MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE
_MAP_FAILED = ctypes.c_void_p(-1).value
_OFF_MAX = (1 << 63) - 1
# Larger than any user address space (x86-64 5-level paging gives 2**56): refuse up front.
_ARENA_MAX = 1 << 60


class _Libc:
    """The libc calls the backend makes (mmap, munmap, msync), with their C signatures."""

    def __init__(self) -> None:
        # The interpreter is linked against libc: dlopen(NULL) finds its symbols without
        # ctypes.util.find_library, which runs ldconfig in a subprocess.
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        ]
        self.mmap.restype = ctypes.c_void_p
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.munmap.restype = ctypes.c_int
        self.msync = libc.msync
        self.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.msync.restype = ctypes.c_int


_libc: _Libc | None = None


def _get_libc() -> _Libc:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise OSError(_errno.ENOSYS, f"MmapAddressSpace needs Linux, not {sys.platform}")
        if ctypes.sizeof(ctypes.c_void_p) != 8:
            raise OSError(_errno.ENOSYS, "MmapAddressSpace needs a 64-bit process")
        _libc = _Libc()
    return _libc


def _oserror(call: str) -> OSError:
    err = ctypes.get_errno() or _errno.EIO
    return OSError(err, f"{call}: {os.strerror(err)}")


def _mmap_call(libc: _Libc, addr: int, length: int, prot: int, flags: int, fd: int, off: int) -> int:
    """``mmap``; returns the address or raises OSError with the call in the message."""
    what = f"mmap({addr:#x}, {length:#x}, prot={prot:#x}, flags={flags:#x}, fd={fd}, off={off:#x})"
    _files.inject(OsCall.MMAP, what)
    ctypes.set_errno(0)
    got = libc.mmap(addr or None, length, prot, flags, fd, off)
    if got is None or got == _MAP_FAILED:
        raise _oserror(what)
    return int(got)


def _munmap_call(libc: _Libc, addr: int, length: int) -> None:
    """``munmap``; raises OSError with the call in the message."""
    what = f"munmap({addr:#x}, {length:#x})"
    _files.inject(OsCall.MUNMAP, what)
    ctypes.set_errno(0)
    if libc.munmap(addr, length) != 0:
        raise _oserror(what)


@dataclass(eq=False)
class _Live:
    """A file mapping of the bookkeeping and what the kernel holds for it.

    ``detached`` is True when the kernel no longer maps it (a failed removal could not
    restore it); I/O then goes through the descriptor only, as always.
    """

    length: int
    file_offset: int
    inode: int
    detached: bool = False


@dataclass(eq=False)
class _Arena:
    """What the finalizer needs to tear the arena down (no reference to the space)."""

    libc: _Libc
    raw_addr: int
    raw_size: int
    live: dict[int, _Live] = field(default_factory=dict)  # by address
    closed: bool = False


def _teardown(arena: _Arena) -> None:
    """Forget every mapping, then unmap the whole arena (file mappings inside go with it)."""
    if arena.closed:
        return
    arena.closed = True
    arena.live.clear()
    # Not a fault site: nothing could be done about a failure here anyway.
    arena.libc.munmap(arena.raw_addr, arena.raw_size)


class MmapAddressSpace(LayoutAddressSpace):
    """An address space of real mappings inside one ``PROT_NONE`` arena of this process.

    ``arena_size`` (default 64 GiB, rounded up to ``page_size``) is the address space
    set aside at creation; it bounds the space as ``[low, high)`` does the simulator's.
    ``page_size`` defaults to the kernel's page size and may be any power-of-two
    multiple of it. ``placement``, ``limit`` and ``supported_granularities`` are as for
    :class:`~pmemsim.addrspace.simulated.SimulatedAddressSpace`.

    Raises OSError when the arena cannot be reserved (e.g. RLIMIT_AS) or the platform
    is not 64-bit Linux. :meth:`close` (or garbage collection) unmaps the arena and
    everything still mapped inside it; a closed space refuses new reservations and
    mappings, and reads or writes through it raise NotMapped.
    """

    def __init__(
        self,
        arena_size: int = DEFAULT_ARENA_SIZE,
        *,
        page_size: int | None = None,
        placement: Placement | str = Placement.BOTTOM_UP,
        limit: int | None = None,
        supported_granularities: frozenset[Granularity] | None = None,
    ) -> None:
        page = OS_PAGE if page_size is None else page_size
        for name, value in (("arena_size", arena_size), ("page_size", page)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if page % OS_PAGE or page & (page - 1):
            raise ValueError(
                f"page_size must be a power-of-two multiple of the OS page size {OS_PAGE}, got {page}"
            )
        size = -(-arena_size // page) * page
        if size > _ARENA_MAX:
            raise ValueError(f"arena_size {arena_size:#x} is larger than any address space ({_ARENA_MAX:#x})")
        libc = _get_libc()
        # Over-reserve by one page so the arena can start on a page_size boundary.
        raw_size = size + page - OS_PAGE
        raw = _mmap_call(libc, 0, raw_size, PROT_NONE, _ARENA_FLAGS, -1, 0)
        low = -(-raw // page) * page
        head, tail = low - raw, raw + raw_size - (low + size)
        try:
            if head:
                _munmap_call(libc, raw, head)
            if tail:
                _munmap_call(libc, low + size, tail)
        except OSError:
            libc.munmap(raw, raw_size)  # give all of it back, nothing half-made
            raise
        self._libc = libc
        self._arena = _Arena(libc, low, size)
        self._finalizer = weakref.finalize(self, _teardown, self._arena)
        try:
            super().__init__(
                page_size=page,
                low=low,
                high=low + size,
                placement=placement,
                limit=limit,
                supported_granularities=supported_granularities,
            )
        except BaseException:
            self._finalizer()
            raise

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return (
            f"MmapAddressSpace(arena=[{self.low:#x}, {self.high:#x}), page_size={self.page_size}, "
            f"reservations={len(self.reservations())}, mappings={len(self._arena.live)}{state})"
        )

    # -- life cycle ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (or once the arena was torn down)."""
        return self._arena.closed

    def close(self) -> None:
        """Unmap the arena and every mapping still inside it. Idempotent.

        Sets still using the space afterwards get NotMapped on reads and writes and
        ValueError on new mappings; their clean-up becomes bookkeeping only.
        """
        self._finalizer()

    def __enter__(self) -> MmapAddressSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_arena(self, what: str) -> None:
        if self._arena.closed:
            raise ValueError(f"cannot {what}: this MmapAddressSpace was closed")

    # -- system calls on our own arena ----------------------------------------------------

    def _check_arena_range(self, addr: int, size: int) -> None:
        """Refuse (before any system call) a range that is not page-aligned inside the arena."""
        if addr % OS_PAGE or size % OS_PAGE or size <= 0:
            raise ValueError(
                f"[{addr:#x}, +{size:#x}) is not a non-empty range of whole OS pages ({OS_PAGE})"
            )
        if addr < self.low or addr + size > self.high:
            raise ValueError(
                f"[{addr:#x}, {addr + size:#x}) is outside the arena [{self.low:#x}, {self.high:#x})"
            )

    def _to_arena(self, addr: int, size: int) -> None:
        """Turn ``[addr, addr+size)`` of the arena back into plain arena (PROT_NONE, NORESERVE)."""
        got = _mmap_call(self._libc, addr, size, PROT_NONE, _ARENA_FLAGS | MAP_FIXED, -1, 0)
        if got != addr:  # pragma: no cover - MAP_FIXED either lands at addr or fails
            raise OSError(_errno.EFAULT, f"mmap(MAP_FIXED) placed {size:#x} bytes at {got:#x}, not {addr:#x}")

    # -- hooks -------------------------------------------------------------------------------

    def _os_reserve(self, addr: int, size: int) -> None:
        # The arena is already PROT_NONE and NORESERVE: a reservation is bookkeeping.
        self._open_arena("reserve")
        self._check_arena_range(addr, size)

    def _os_extend(self, addr: int, size: int) -> None:
        self._open_arena("extend a reservation")
        self._check_arena_range(addr, size)

    def _os_release(self, addr: int, size: int) -> None:
        # A reservation being released or shrunk holds no mapping there (unmap already
        # laid arena back), so the range is plain arena: bookkeeping only, no system
        # call that could fail half-way through a release.
        if self._arena.closed:
            return
        self._check_arena_range(addr, size)

    def _os_free(self, addr: int, size: int) -> None:
        if self._arena.closed:
            return  # the arena is gone: nothing of ours is left to touch
        self._check_arena_range(addr, size)
        self._to_arena(addr, size)  # an occupied range is a distinct mapping

    def _os_occupy(self, addr: int, size: int) -> None:
        self._open_arena("occupy")
        self._check_arena_range(addr, size)
        try:
            got = _mmap_call(self._libc, addr, size, PROT_NONE, _OCCUPY_FLAGS | MAP_FIXED, -1, 0)
        except OSError:
            self._to_arena(addr, size)  # a failed MAP_FIXED may have left a hole
            raise
        if got != addr:  # pragma: no cover - MAP_FIXED either lands at addr or fails
            self._to_arena(addr, size)
            raise OSError(_errno.EFAULT, f"mmap(MAP_FIXED) placed {size:#x} bytes at {got:#x}, not {addr:#x}")

    def _os_map(self, addr: int, length: int, file: FileRef, file_offset: int) -> None:
        self._open_arena("map a file")
        if addr % OS_PAGE or length % OS_PAGE:
            raise MapFailed(
                f"address {addr:#x} and length {length:#x} must be multiples of the OS page size {OS_PAGE}",
                _errno.EINVAL,
            )
        self._check_arena_range(addr, length)
        if file_offset % OS_PAGE:
            raise MapFailed(
                f"file offset {file_offset:#x} is not a multiple of the OS page size {OS_PAGE}", _errno.EINVAL
            )
        if file_offset + length > _OFF_MAX:
            raise MapFailed(
                f"file offset {file_offset} + length {length} does not fit in off_t", _errno.EOVERFLOW
            )
        fd = file.fd
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise MapFailed(f"invalid file descriptor {fd!r}", _errno.EBADF)
        try:
            _files.check_mmapable()
        except OSError as exc:
            raise MapFailed(str(exc.strerror), exc.errno) from exc
        try:
            st = _files.fstat(fd)
        except OSError as exc:
            raise MapFailed(f"cannot stat the file to map (fd {fd}): {exc.strerror}", exc.errno) from exc
        if not stat.S_ISREG(st.st_mode):
            raise MapFailed(f"fd {fd} is not a regular file", _errno.ENODEV)
        if file_offset + length > st.st_size:
            # Touching a page past the end of the file would raise SIGBUS: refuse up front.
            raise MapFailed(
                f"file of {st.st_size} bytes is shorter than offset {file_offset} + length {length}"
            )
        try:
            _files.preallocate(fd, file_offset, length)
        except OSError as exc:
            raise MapFailed(
                f"cannot allocate blocks for [{file_offset:#x}, {file_offset + length:#x}) of fd {fd}: "
                f"{exc.strerror}",
                exc.errno,
            ) from exc
        try:
            got = _mmap_call(
                self._libc, addr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, file_offset
            )
        except OSError as exc:
            # A failed MAP_FIXED may have unmapped the range already: lay the arena back
            # (should that fail too, the error to report is still the first one).
            with contextlib.suppress(OSError):
                self._to_arena(addr, length)
            raise MapFailed(
                f"cannot map {length:#x} bytes of fd {fd} at {addr:#x}: {exc.strerror}", exc.errno
            ) from exc
        if got != addr:  # pragma: no cover - MAP_FIXED either lands at addr or fails
            self._to_arena(addr, length)
            raise MapFailed(f"mmap(MAP_FIXED) placed the file at {got:#x}, not {addr:#x}", _errno.EFAULT)
        # Nothing after the mmap can fail: the record is all that is left to make.
        self._arena.live[addr] = _Live(length, file_offset, st.st_ino)

    def _os_unmap(self, mapping: Mapping) -> None:
        self._os_unmap_run([mapping])

    def _os_unmap_run(self, run: list[Mapping]) -> None:
        # One system call for the whole contiguous run: the kernel does it or refuses it.
        arena = self._arena
        if arena.closed:
            return
        addr = run[0].addr
        length = run[-1].end - addr
        self._check_arena_range(addr, length)
        self._to_arena(addr, length)
        for m in run:
            arena.live.pop(m.addr, None)

    def _os_remap_run(self, run: list[Mapping]) -> None:
        # Undo of _os_unmap_run: map every piece again where it was. A piece the kernel
        # will not map again stays in the bookkeeping, detached (I/O goes by descriptor).
        arena = self._arena
        if arena.closed:
            return
        for m in run:
            try:
                ino = _files.fstat(m.file.fd).st_ino
                _mmap_call(
                    self._libc,
                    m.addr,
                    m.length,
                    PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_FIXED,
                    m.file.fd,
                    m.file_offset,
                )
            except OSError:
                with contextlib.suppress(OSError):
                    self._to_arena(m.addr, m.length)
                arena.live[m.addr] = _Live(m.length, m.file_offset, -1, detached=True)
            else:
                arena.live[m.addr] = _Live(m.length, m.file_offset, ino)

    def _live(self, mapping: Mapping, offset: int, n: int) -> _Live:
        """The live record of ``mapping``; NotMapped unless ``[offset, offset+n)`` is inside it."""
        rec = self._arena.live.get(mapping.addr)
        if rec is None or rec.length != mapping.length or rec.file_offset != mapping.file_offset:
            raise NotMapped(f"no live mapping at {mapping.addr:#x} in this address space")
        if offset < 0 or n < 0 or offset + n > rec.length:
            raise NotMapped(f"[{offset:#x}, +{n:#x}) is outside the mapping of {rec.length:#x} bytes")
        return rec

    def _os_read(self, mapping: Mapping, offset: int, n: int) -> bytes:
        self._live(mapping, offset, n)
        # pread, not a load through the mapping: past the end of a file another process
        # shrank it returns a short count (zeros here) where a load would raise SIGBUS.
        return _files.read_at(mapping.file.fd, mapping.file_offset + offset, n)

    def _os_write(self, mapping: Mapping, offset: int, data: memoryview) -> None:
        self._live(mapping, offset, len(data))
        # pwrite, not a store: past the end it grows the file where a store would SIGBUS.
        _files.write_at(mapping.file.fd, mapping.file_offset + offset, data)

    def _os_flush(self, mapping: Mapping, offset: int, n: int) -> None:
        rec = self._live(mapping, offset, n)
        if not n:
            return
        if rec.detached:
            _files.inject(OsCall.MSYNC, f"fdatasync({mapping.file.fd})")
            os.fdatasync(mapping.file.fd)
            return
        addr = mapping.addr + offset
        start = addr - addr % OS_PAGE
        end = -(-(addr + n) // OS_PAGE) * OS_PAGE
        what = f"msync({start:#x}, {end - start:#x}, MS_SYNC)"
        _files.inject(OsCall.MSYNC, what)
        ctypes.set_errno(0)
        if self._libc.msync(start, end - start, MS_SYNC) != 0:
            raise _oserror(what)

    # -- consistency -------------------------------------------------------------------------

    def _check(self) -> None:
        """Assert the bookkeeping is consistent and matches what the kernel has mapped.

        Reads ``/proc/self/maps``: O(number of mappings in the process).
        """
        super()._check()
        mapped = {m.addr: m for rsv in self.reservations() for m in rsv.mappings}
        live = self._arena.live
        if self._arena.closed:
            assert not live, "a closed arena kept views"
            return
        assert set(live) == set(mapped), "live views do not match the mappings"
        for addr, m in mapped.items():
            assert (live[addr].length, live[addr].file_offset) == (m.length, m.file_offset)
        self._check_kernel(sorted(mapped.values(), key=lambda m: m.addr))

    def _check_kernel(self, mappings: list[Mapping]) -> None:
        """Walk the arena's VMAs and the expected layout together; assert they agree."""
        segs: list[tuple[int, int, Mapping | Occupied]] = [(m.addr, m.end, m) for m in mappings]
        segs += [(o.addr, o.addr + o.size, o) for o in self.occupied()]
        segs.sort(key=lambda seg: seg[0])
        expected: list[tuple[int, int, Mapping | Occupied | None]] = []
        cur = self.low
        for s, e, obj in segs:
            if s > cur:
                expected.append((cur, s, None))
            expected.append((s, e, obj))
            cur = e
        if cur < self.high:
            expected.append((cur, self.high, None))
        vmas = [v for v in proc_maps() if v.end > self.low and v.start < self.high]
        i = j = 0
        pos = self.low
        while pos < self.high:
            assert i < len(vmas) and vmas[i].start <= pos, f"hole in the arena at {pos:#x}"
            v = vmas[i]
            _s, e, want = expected[j]
            if isinstance(want, Mapping) and self._arena.live[want.addr].detached:
                assert v.perms == "---p" and v.inode == 0, f"detached {want} should be plain arena: {v}"
            elif isinstance(want, Mapping):
                ino = self._arena.live[want.addr].inode
                assert v.perms == "rw-s" and v.inode == ino, f"{want} is not mapped: {v}"
                assert v.offset + (pos - v.start) == want.file_offset + (pos - want.addr), f"{want} vs {v}"
            elif isinstance(want, Occupied):
                assert v.perms == "---s", f"{want} is not a shared PROT_NONE mapping: {v}"
            else:
                assert v.perms == "---p" and v.inode == 0, f"{pos:#x} should be plain arena: {v}"
            pos = min(v.end, e)
            if v.end <= pos:
                i += 1
            if e <= pos:
                j += 1


@dataclass(frozen=True)
class Vma:
    """One line of ``/proc/self/maps``."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str


def proc_maps() -> list[Vma]:
    """This process's mappings, from ``/proc/self/maps``, in address order."""
    out: list[Vma] = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            lo, hi = parts[0].split("-")
            path = parts[5].rstrip("\n") if len(parts) > 5 else ""
            out.append(Vma(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), int(parts[4]), path))
    return out
