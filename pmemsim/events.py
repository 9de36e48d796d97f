"""Events delivered to a set's event callback: small frozen values, one class per kind.

Events named "Before ..." are delivered before the operation: an exception from the
callback propagates and the operation does not happen. PART_ADD and PART_REMOVE are
delivered after the change was made: an ``Exception`` from the callback cannot undo
it, so the call still succeeds and the exception goes to ``PmemSet.callback_errors``
(and the ``pmemsim`` logger).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pmemsim.enums import EventType, MemFlags

if TYPE_CHECKING:
    from pmemsim.source import Source

__all__ = [
    "BadBlockEvent",
    "CopyEvent",
    "DrainEvent",
    "Event",
    "FlushEvent",
    "MoveEvent",
    "PartAddEvent",
    "PartRemoveEvent",
    "PersistEvent",
    "SetEvent",
]


@dataclass(frozen=True)
class Event:
    """Base of all events; ``type`` tells the kind."""

    type: ClassVar[EventType]


@dataclass(frozen=True)
class CopyEvent(Event):
    """Before ``memcpy`` writes ``len`` bytes at ``dest``."""

    type: ClassVar[EventType] = EventType.COPY
    dest: int
    len: int
    flags: MemFlags


@dataclass(frozen=True)
class MoveEvent(Event):
    """Before ``memmove`` writes ``len`` bytes at ``dest``."""

    type: ClassVar[EventType] = EventType.MOVE
    dest: int
    len: int
    flags: MemFlags


@dataclass(frozen=True)
class SetEvent(Event):
    """Before ``memset`` fills ``len`` bytes at ``dest`` with ``value``."""

    type: ClassVar[EventType] = EventType.SET
    dest: int
    value: int
    len: int
    flags: MemFlags


@dataclass(frozen=True)
class FlushEvent(Event):
    """Before ``flush`` of ``[addr, addr+len)``."""

    type: ClassVar[EventType] = EventType.FLUSH
    addr: int
    len: int


@dataclass(frozen=True)
class DrainEvent(Event):
    """Before ``drain``."""

    type: ClassVar[EventType] = EventType.DRAIN


@dataclass(frozen=True)
class PersistEvent(Event):
    """Before ``persist`` of ``[addr, addr+len)``."""

    type: ClassVar[EventType] = EventType.PERSIST
    addr: int
    len: int


@dataclass(frozen=True)
class BadBlockEvent(Event):
    """A bad block was found in ``[addr, addr+len)`` (never emitted by the simulator yet)."""

    type: ClassVar[EventType] = EventType.BAD_BLOCK
    addr: int
    len: int


@dataclass(frozen=True)
class PartAddEvent(Event):
    """After a successful part_map: the whole part map the part ended up in."""

    type: ClassVar[EventType] = EventType.PART_ADD
    addr: int
    len: int
    source: Source


@dataclass(frozen=True)
class PartRemoveEvent(Event):
    """After a part map (or a range of it) was removed: the range that went away."""

    type: ClassVar[EventType] = EventType.PART_REMOVE
    addr: int
    len: int
