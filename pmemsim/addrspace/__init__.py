"""Address-space backends: the seam the part-mapping core talks to."""

from __future__ import annotations

import os

from pmemsim.addrspace.base import (
    AddressSpace,
    AddressSpaceError,
    FileRef,
    MapFailed,
    Mapping,
    OutOfAddressSpace,
    RangeOccupied,
    Reservation,
)
from pmemsim.addrspace.layout import LayoutAddressSpace, NotMapped, Occupied, Placement
from pmemsim.addrspace.mmap import MmapAddressSpace
from pmemsim.addrspace.simulated import SimulatedAddressSpace

__all__ = [
    "AddressSpace",
    "AddressSpaceError",
    "FileRef",
    "LayoutAddressSpace",
    "MapFailed",
    "Mapping",
    "MmapAddressSpace",
    "NotMapped",
    "Occupied",
    "OutOfAddressSpace",
    "Placement",
    "RangeOccupied",
    "Reservation",
    "SimulatedAddressSpace",
    "default_address_space",
    "set_default_address_space",
]

BACKEND_ENV = "PMEMSIM_BACKEND"

_default: LayoutAddressSpace | None = None


def _make_default() -> LayoutAddressSpace:
    # The contract: real mmap unless PMEMSIM_BACKEND=sim says otherwise.
    backend = os.environ.get(BACKEND_ENV, "").strip().lower()
    if backend in ("sim", "simulated"):
        return SimulatedAddressSpace()
    if backend in ("", "mmap"):
        return MmapAddressSpace()
    raise ValueError(f"{BACKEND_ENV}={backend!r} is not a known backend; use 'sim' or 'mmap'")


def default_address_space() -> LayoutAddressSpace:
    """The process-wide address space used by a Config that names none."""
    global _default
    if _default is None:
        _default = _make_default()
    return _default


def set_default_address_space(space: LayoutAddressSpace | None) -> None:
    """Replace the process default (None: choose again from ``PMEMSIM_BACKEND``)."""
    global _default
    if space is not None and not isinstance(space, LayoutAddressSpace):
        raise TypeError(f"expected an address space, got {type(space).__name__}")
    _default = space
