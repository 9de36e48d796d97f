"""Config: what a PmemSet is created from (``pmemset_config_*``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pmemsim.addrspace.base import AddressSpace, Reservation, check_address_space
from pmemsim.enums import Granularity
from pmemsim.errors import ErrorCode, PmemsetError, surfaces
from pmemsim.faults import FaultPlan

if TYPE_CHECKING:
    from pmemsim.events import Event

__all__ = ["Config", "EventCallback", "check_granularity"]

EventCallback = Callable[[Any, "Event"], object]


def check_granularity(value: object) -> Granularity:
    """``value`` as a Granularity; GRANULARITY_NOT_SUPPORTED for an unknown value."""
    if isinstance(value, Granularity):
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"granularity must be a Granularity, not {type(value).__name__}")
    try:
        return Granularity(value)
    except ValueError:
        raise PmemsetError(
            ErrorCode.GRANULARITY_NOT_SUPPORTED,
            f"granularity {value} is not one of " + ", ".join(f"{g.name}={g.value}" for g in Granularity),
        ) from None


class Config:
    """Settings a :class:`~pmemsim.PmemSet` copies when it is created.

    ``granularity`` is required (None → GRANULARITY_NOT_SET when the set is made);
    ``reservation`` confines every part map to one reservation whose address and size
    never change; ``event_callback(pset, event)`` sees every event (an exception from
    it stops an operation it announces, but never fails a PART_ADD / PART_REMOVE whose
    change is already made: see ``PmemSet.callback_errors``); ``address_space``
    defaults to the process default; ``fault_plan`` injects failures.
    """

    @surfaces
    def __init__(
        self,
        granularity: Granularity | None = None,
        *,
        reservation: Reservation | None = None,
        event_callback: EventCallback | None = None,
        address_space: AddressSpace | None = None,
        fault_plan: FaultPlan | None = None,
    ) -> None:
        self.granularity: Granularity | None = None
        self.reservation: Reservation | None = None
        self.event_callback: EventCallback | None = None
        self.address_space: AddressSpace | None = None
        self.fault_plan: FaultPlan | None = None
        if granularity is not None:
            self.set_granularity(granularity)
        self.set_reservation(reservation)
        self.set_event_callback(event_callback)
        self.set_address_space(address_space)
        self.set_fault_plan(fault_plan)

    @surfaces
    def set_granularity(self, granularity: Granularity | int) -> None:
        """The required store granularity; GRANULARITY_NOT_SUPPORTED for an unknown value."""
        self.granularity = check_granularity(granularity)

    def set_reservation(self, reservation: Reservation | None) -> None:
        """Confine part maps to ``reservation`` (None: each part map gets its own)."""
        if reservation is not None and not isinstance(reservation, Reservation):
            raise TypeError(f"reservation must be a Reservation, not {type(reservation).__name__}")
        if reservation is not None and reservation.released:
            raise ValueError(f"{reservation!r} was released")
        self.reservation = reservation

    def set_event_callback(self, callback: EventCallback | None) -> None:
        """Call ``callback(pset, event)`` for every event (None: no callback)."""
        if callback is not None and not callable(callback):
            raise TypeError(f"event_callback must be callable, got {type(callback).__name__}")
        self.event_callback = callback

    def set_address_space(self, space: AddressSpace | None) -> None:
        """The backend to map parts in (None: the process default)."""
        self.address_space = None if space is None else check_address_space(space)

    def set_fault_plan(self, plan: FaultPlan | None) -> None:
        """Inject the failures ``plan`` describes (None: no injected failures)."""
        if plan is not None and not isinstance(plan, FaultPlan):
            raise TypeError(f"fault_plan must be a FaultPlan, not {type(plan).__name__}")
        self.fault_plan = plan

    def __repr__(self) -> str:
        g = None if self.granularity is None else self.granularity.name
        return f"Config(granularity={g}, reservation={self.reservation!r})"
