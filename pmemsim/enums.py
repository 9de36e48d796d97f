"""Closed sets of libpmemset values, with PMDK's numbers (libpmemset.h, libpmem2.h)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = ["Coalescing", "EventType", "Granularity", "MemFlags", "SourceFlags"]


class Granularity(IntEnum):
    """Store granularity (``PMEM2_GRANULARITY_*``); a larger value is a coarser granularity."""

    BYTE = 0
    CACHE_LINE = 1
    PAGE = 2


class Coalescing(IntEnum):
    """Contiguous part coalescing mode (``PMEMSET_COALESCING_*``)."""

    NONE = 0
    OPPORTUNISTIC = 1
    FULL = 2


class SourceFlags(IntFlag):
    """Flags of ``pmemset_xsource_from_file`` (``PMEMSET_SOURCE_FILE_*``)."""

    CREATE_ALWAYS = 1 << 0
    CREATE_IF_NEEDED = 1 << 1
    TRUNCATE_IF_NEEDED = 1 << 2


class MemFlags(IntFlag):
    """Flags of memcpy / memmove / memset (``PMEMSET_F_MEM_*``)."""

    NODRAIN = 1 << 0
    NONTEMPORAL = 1 << 1
    TEMPORAL = 1 << 2
    WC = 1 << 3
    WB = 1 << 4
    NOFLUSH = 1 << 5


class EventType(IntEnum):
    """Kinds of events delivered to the config's event callback (``PMEMSET_EVENT_*``)."""

    COPY = 0
    MOVE = 1
    SET = 2
    FLUSH = 3
    DRAIN = 4
    PERSIST = 5
    BAD_BLOCK = 6
    PART_ADD = 7
    PART_REMOVE = 8
