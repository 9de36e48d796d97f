"""The backends by name: one table from a name (``"sim"``, ``"mmap"``) to how to build one.

Everything above the address-space layer that chooses a backend by name — the
``PMEMSIM_BACKEND`` default, scenario files, ``pmemsim run --backend``, the pytest
plugin's ``--pmemsim-backend``, the hypothesis layouts and the state machines — looks
it up here, so a backend is added by writing its module and one :func:`register` call
below; :data:`BACKENDS` (the names, in registration order) and :data:`DEFAULT_BACKENDS`
(those that run where no backend is named) follow.

A :class:`Backend` also says what a scenario loader must check before it builds one:
the address space it gives when none is sized, the page sizes it accepts, and whether
it can map files of a fake (pyfakefs) file system.
"""

from __future__ import annotations

import mmap as _mmap
from collections.abc import Callable
from dataclasses import dataclass

from pmemsim.addrspace.base import AddressSpace, Placement
from pmemsim.enums import Granularity

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKENDS",
    "Backend",
    "SpaceOptions",
    "backend",
    "make_address_space",
    "register",
]


@dataclass(frozen=True)
class SpaceOptions:
    """How to size and shape a new address space; None means the backend's default.

    ``size`` is the bytes of address space (the simulator's ``high - low``, the mmap
    arena); ``low`` its first address where the backend lets the caller choose (the
    simulator; the kernel places the mmap arena).
    """

    page_size: int | None = None
    size: int | None = None
    low: int | None = None
    placement: Placement | str = Placement.BOTTOM_UP
    limit: int | None = None
    supported_granularities: frozenset[Granularity] | None = None


@dataclass(frozen=True)
class Backend:
    """One backend: its name, a line for reports, its constraints and its factory."""

    name: str
    #: One line for reports ("simulated address space (SimulatedAddressSpace)").
    summary: str
    #: Bytes of address space when :attr:`SpaceOptions.size` is None.
    default_size: int
    #: Page sizes must be powers of two and multiples of this (the kernel's page for mmap).
    page_multiple: int
    #: True when it can map files of a pyfakefs file system (plain file I/O, no mmap).
    fake_files: bool
    factory: Callable[[SpaceOptions], AddressSpace]
    aliases: tuple[str, ...] = ()
    #: Whether it runs where no backend is named (a scenario without ``backends``, ``both``
    #: on the command line and in the pytest plugin, the coverage matrix's standard columns).
    #: A backend for debugging says False: it runs where it is named, and nothing that
    #: counts the default runs changes when it is added.
    default: bool = True

    def build(self, options: SpaceOptions | None = None) -> AddressSpace:
        """A fresh address space (the backend's TypeError, ValueError or OSError when impossible)."""
        return self.factory(options if options is not None else SpaceOptions())


_REGISTRY: dict[str, Backend] = {}


def register(entry: Backend) -> None:
    """Add a backend to the table (ValueError when its name or an alias is taken)."""
    for name in (entry.name, *entry.aliases):
        if name in _REGISTRY or any(name in b.aliases for b in _REGISTRY.values()):
            raise ValueError(f"a backend named {name!r} is already registered")
    _REGISTRY[entry.name] = entry
    global BACKENDS, DEFAULT_BACKENDS
    BACKENDS = tuple(_REGISTRY)
    DEFAULT_BACKENDS = tuple(name for name, b in _REGISTRY.items() if b.default)


def backend(name: str) -> Backend:
    """The backend called ``name`` (or one of its aliases); ValueError naming the choices."""
    key = name.strip().lower() if isinstance(name, str) else name
    for entry in _REGISTRY.values():
        if key == entry.name or key in entry.aliases:
            return entry
    raise ValueError(f"unknown backend {name!r}; use {' or '.join(repr(n) for n in BACKENDS)}")


def make_address_space(name: str, options: SpaceOptions | None = None) -> AddressSpace:
    """A fresh address space of the backend called ``name``."""
    return backend(name).build(options)


# -- the shipped backends --------------------------------------------------------------------
# A factory imports its backend on first use: the pytest plugin reads this table in every
# test run, and the mmap backend pulls in ctypes.


def _simulated(options: SpaceOptions) -> AddressSpace:
    from pmemsim.addrspace.simulated import DEFAULT_LOW, SimulatedAddressSpace

    low = DEFAULT_LOW if options.low is None else options.low
    return SimulatedAddressSpace(
        4096 if options.page_size is None else options.page_size,
        low=low,
        high=None if options.size is None else low + options.size,
        placement=options.placement,
        limit=options.limit,
        supported_granularities=options.supported_granularities,
    )


def _mmap_backed(options: SpaceOptions) -> AddressSpace:
    from pmemsim.addrspace.mmap import DEFAULT_ARENA_SIZE, MmapAddressSpace

    return MmapAddressSpace(
        DEFAULT_ARENA_SIZE if options.size is None else options.size,
        page_size=options.page_size,
        placement=options.placement,
        limit=options.limit,
        supported_granularities=options.supported_granularities,
    )


#: The names of the registered backends, in registration order.
BACKENDS: tuple[str, ...] = ()
#: The backends that run where none is named (:attr:`Backend.default`), in registration order.
DEFAULT_BACKENDS: tuple[str, ...] = ()

register(
    Backend(
        name="sim",
        summary="simulated address space (SimulatedAddressSpace)",
        default_size=(1 << 47) - (1 << 32),  # simulated.DEFAULT_HIGH - DEFAULT_LOW
        page_multiple=1,
        fake_files=True,
        factory=_simulated,
        aliases=("simulated",),
    )
)
register(
    Backend(
        name="mmap",
        summary="real mappings (MmapAddressSpace over the kernel's mmap)",
        default_size=64 << 30,  # mmap.DEFAULT_ARENA_SIZE
        page_multiple=_mmap.PAGESIZE,
        fake_files=False,
        factory=_mmap_backed,
    )
)
