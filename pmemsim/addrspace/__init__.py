"""Address-space backends: the seam the part-mapping core talks to.

The seam is :class:`AddressSpace` (``base.py``); the backends are made by name through
the table in ``backends.py``. The backend classes load on first use (PEP 562), so the
table and the protocol stay cheap for the pytest plugin.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from pmemsim.addrspace.backends import BACKENDS, Backend, SpaceOptions, backend, make_address_space
from pmemsim.addrspace.base import (
    AddressSpace,
    AddressSpaceError,
    FileRef,
    MapFailed,
    Mapping,
    NotMapped,
    Occupied,
    OutOfAddressSpace,
    Placement,
    RangeOccupied,
    Reservation,
    check_address_space,
)

if TYPE_CHECKING:
    from pmemsim.addrspace.layout import LayoutAddressSpace
    from pmemsim.addrspace.mmap import MmapAddressSpace
    from pmemsim.addrspace.simulated import SimulatedAddressSpace

_LAZY = {
    "LayoutAddressSpace": "pmemsim.addrspace.layout",
    "MmapAddressSpace": "pmemsim.addrspace.mmap",
    "SimulatedAddressSpace": "pmemsim.addrspace.simulated",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pmemsim.addrspace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKENDS",
    "AddressSpace",
    "AddressSpaceError",
    "Backend",
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
    "SpaceOptions",
    "backend",
    "check_address_space",
    "default_address_space",
    "make_address_space",
    "set_default_address_space",
]

BACKEND_ENV = "PMEMSIM_BACKEND"

_default: AddressSpace | None = None


def _make_default() -> AddressSpace:
    # The contract: real mmap unless PMEMSIM_BACKEND=sim says otherwise.
    name = os.environ.get(BACKEND_ENV, "").strip().lower() or "mmap"
    try:
        entry = backend(name)
    except ValueError:
        raise ValueError(
            f"{BACKEND_ENV}={name!r} is not a known backend; use {' or '.join(repr(n) for n in BACKENDS)}"
        ) from None
    return entry.build()


def default_address_space() -> AddressSpace:
    """The process-wide address space used by a Config that names none."""
    global _default
    if _default is None:
        _default = _make_default()
    return _default


def set_default_address_space(space: AddressSpace | None) -> None:
    """Replace the process default (None: choose again from ``PMEMSIM_BACKEND``).

    TypeError when ``space`` lacks a member of :class:`AddressSpace`.
    """
    global _default
    if space is not None:
        check_address_space(space)
    _default = space
