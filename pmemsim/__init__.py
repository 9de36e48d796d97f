"""pmemsim: PMDK libpmemset's part-mapping API on simulated and real address spaces.

Every documented error of ``pmemset_part_map`` can be reproduced on demand (occupy a
range, exhaust the space, inject a fault), on a backend that never touches real
memory. See docs/design.md for the design and README.md for a tour.
"""

from __future__ import annotations

import typing as _typing

from pmemsim._exports import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
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
    from pmemsim.persistence import CrashReport, Recorder, StoreLog, replay, shrink
    from pmemsim.pmemset import Part, PartDescriptor, PartMap, PmemSet
    from pmemsim.source import Source

__version__ = "0.1.0"

# Every public name loads its module on first use: `import pmemsim` is what the pytest
# plugin (imported by every pytest run once pmemsim is installed) and `pmemsim --help`
# pay, so it stays cheap. The table is the one place that says where a name lives.
_EXPORTS: dict[str, str] = {
    "AddressSpace": "pmemsim.addrspace",
    "LayoutAddressSpace": "pmemsim.addrspace",
    "Mapping": "pmemsim.addrspace",
    "MmapAddressSpace": "pmemsim.addrspace",
    "Occupied": "pmemsim.addrspace",
    "Placement": "pmemsim.addrspace",
    "Reservation": "pmemsim.addrspace",
    "SimulatedAddressSpace": "pmemsim.addrspace",
    "default_address_space": "pmemsim.addrspace",
    "set_default_address_space": "pmemsim.addrspace",
    "Config": "pmemsim.config",
    "Coalescing": "pmemsim.enums",
    "EventType": "pmemsim.enums",
    "Granularity": "pmemsim.enums",
    "MemFlags": "pmemsim.enums",
    "SourceFlags": "pmemsim.enums",
    "ErrorCode": "pmemsim.errors",
    "PmemsetError": "pmemsim.errors",
    "err_to_errno": "pmemsim.errors",
    "BadBlockEvent": "pmemsim.events",
    "CopyEvent": "pmemsim.events",
    "DrainEvent": "pmemsim.events",
    "Event": "pmemsim.events",
    "FlushEvent": "pmemsim.events",
    "MoveEvent": "pmemsim.events",
    "PartAddEvent": "pmemsim.events",
    "PartRemoveEvent": "pmemsim.events",
    "PersistEvent": "pmemsim.events",
    "SetEvent": "pmemsim.events",
    "FaultPlan": "pmemsim.faults",
    "FaultSite": "pmemsim.faults",
    "FiredFault": "pmemsim.faults",
    "CrashReport": "pmemsim.persistence",
    "Recorder": "pmemsim.persistence",
    "StoreLog": "pmemsim.persistence",
    "replay": "pmemsim.persistence",
    "shrink": "pmemsim.persistence",
    "Part": "pmemsim.pmemset",
    "PartDescriptor": "pmemsim.pmemset",
    "PartMap": "pmemsim.pmemset",
    "PmemSet": "pmemsim.pmemset",
    "Source": "pmemsim.source",
}

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


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())
