"""pmemsim: PMDK libpmemset's part-mapping API on simulated and real address spaces.

Every documented error of ``pmemset_part_map`` can be reproduced on demand (occupy a
range, exhaust the space, inject a fault), on a backend that never touches real
memory. See DESIGN.md for the contract and README.md for a tour.
"""

from __future__ import annotations

import typing as _typing

from pmemsim.addrspace import (
    AddressSpace,
    LayoutAddressSpace,
    Mapping,
    MmapAddressSpace,
    Occupied,
    Placement,
    Reservation,
    SimulatedAddressSpace,
    default_address_space,
    set_default_address_space,
)
from pmemsim.config import Config
from pmemsim.enums import Coalescing, EventType, Granularity, MemFlags, SourceFlags
from pmemsim.errors import ErrorCode, PmemsetError, err_to_errno
from pmemsim.events import (
    BadBlockEvent,
    CopyEvent,
    DrainEvent,
    Event,
    FlushEvent,
    MoveEvent,
    PartAddEvent,
    PartRemoveEvent,
    PersistEvent,
    SetEvent,
)
from pmemsim.faults import FaultPlan, FaultSite, FiredFault
from pmemsim.pmemset import Part, PartDescriptor, PartMap, PmemSet
from pmemsim.source import Source

if _typing.TYPE_CHECKING:
    from pmemsim.persistence import CrashReport, Recorder, StoreLog, replay, shrink

__version__ = "0.1.0"

# The crash-consistency names load pmemsim.persistence on first use: `import pmemsim`
# (and so `pmemsim --help`) stays fast for users who only map parts.
_LAZY = frozenset({"CrashReport", "Recorder", "StoreLog", "replay", "shrink"})


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        import pmemsim.persistence

        return getattr(pmemsim.persistence, name)
    raise AttributeError(f"module 'pmemsim' has no attribute {name!r}")


__all__ = [
    "AddressSpace",
    "BadBlockEvent",
    "Coalescing",
    "Config",
    "CopyEvent",
    "CrashReport",
    "DrainEvent",
    "ErrorCode",
    "Event",
    "EventType",
    "FaultPlan",
    "FaultSite",
    "FiredFault",
    "FlushEvent",
    "Granularity",
    "LayoutAddressSpace",
    "Mapping",
    "MemFlags",
    "MmapAddressSpace",
    "MoveEvent",
    "Occupied",
    "Part",
    "PartAddEvent",
    "PartDescriptor",
    "PartMap",
    "PartRemoveEvent",
    "PersistEvent",
    "Placement",
    "PmemSet",
    "PmemsetError",
    "Recorder",
    "Reservation",
    "SetEvent",
    "SimulatedAddressSpace",
    "Source",
    "SourceFlags",
    "StoreLog",
    "__version__",
    "default_address_space",
    "err_to_errno",
    "replay",
    "set_default_address_space",
    "shrink",
]
