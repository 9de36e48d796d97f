"""A simulated virtual address space: deterministic placement, file I/O instead of mmap.

Nothing is mapped for real. Reservations and mappings are entries in interval maps
(see :mod:`pmemsim.addrspace.layout`); a read or write at a mapped address becomes a
read or write of the file behind it, through ``os`` calls that pyfakefs also fakes, so
file contents may live on disk or in a fake file system. Tests make it fail on purpose:
``occupy`` a range, set ``high``/``limit`` to exhaust it, or give it a tiny page size.
"""

from __future__ import annotations

import os
from errno import EACCES

from pmemsim._files import not_read_write, read_at, write_at
from pmemsim.addrspace.base import FileRef, MapFailed, Mapping
from pmemsim.addrspace.layout import LayoutAddressSpace, Placement
from pmemsim.enums import Granularity

__all__ = ["SimulatedAddressSpace"]

#: Default bounds: above the first 4 GiB (address 0 and small addresses are never
#: handed out) and below the top of x86-64's 47-bit user space.
DEFAULT_LOW = 1 << 32
DEFAULT_HIGH = 1 << 47


class SimulatedAddressSpace(LayoutAddressSpace):
    """A deterministic, fully simulated address space.

    ``page_size`` (default 4096, any power of two) is the allocation granularity;
    ``[low, high)`` bounds the space; ``limit`` caps the bytes reserved plus occupied
    (like ``RLIMIT_AS``); ``placement`` is "bottom-up" (default) or "top-down".
    The same sequence of calls always yields the same addresses.
    """

    def __init__(
        self,
        page_size: int = 4096,
        *,
        low: int | None = None,
        high: int | None = None,
        placement: Placement | str = Placement.BOTTOM_UP,
        limit: int | None = None,
        supported_granularities: frozenset[Granularity] | None = None,
    ) -> None:
        super().__init__(
            page_size=page_size,
            low=DEFAULT_LOW if low is None else low,
            high=DEFAULT_HIGH if high is None else high,
            placement=placement,
            limit=limit,
            supported_granularities=supported_granularities,
        )

    #: The simulator's flush does nothing, so it cannot fail.
    flush_may_fail = False

    def __repr__(self) -> str:
        return (
            f"SimulatedAddressSpace(page_size={self.page_size}, low={self.low:#x}, "
            f"high={self.high:#x}, reservations={len(self.reservations())})"
        )

    def _os_map(self, addr: int, length: int, file: FileRef, file_offset: int) -> None:
        try:
            size = os.fstat(file.fd).st_size
        except OSError as exc:
            raise MapFailed(f"cannot stat the file to map: {exc}", exc.errno) from exc
        if not_read_write(file.fd):
            raise MapFailed("the descriptor is not open O_RDWR: a shared writable mapping needs it", EACCES)
        if file_offset + length > size:
            raise MapFailed(f"file of {size} bytes is shorter than offset {file_offset} + length {length}")

    def _os_read(self, mapping: Mapping, offset: int, n: int) -> bytes:
        # Past the end of a file that shrank under the mapping real mmap would SIGBUS;
        # the simulator reads zeros there.
        return read_at(mapping.file.fd, mapping.file_offset + offset, n)

    def _os_write(self, mapping: Mapping, offset: int, data: memoryview) -> None:
        write_at(mapping.file.fd, mapping.file_offset + offset, data)
