"""Helpers of the backend-independent suites: the page size, address spaces by name, snapshots.

The fixtures built on them (``backend``, ``space``, ``make_file``, ``make_set``) are in
``tests/conftest.py``; test modules import these names from here, never from conftest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pmemsim import Part, PmemSet, Source
from pmemsim.addrspace import BACKENDS, AddressSpace, make_address_space
from pmemsim.testing import ops

__all__ = ["BACKENDS", "PAGE", "Snapshot", "make_space", "snapshot"]

PAGE = 4096


def make_space(backend: str) -> AddressSpace:
    """A fresh address space of the named backend, with its defaults."""
    return make_address_space(backend)


@dataclass(frozen=True)
class Snapshot:
    """Everything a failed call promises not to change: the library's snapshot plus file sizes."""

    state: ops.Snapshot
    file_sizes: tuple[int, ...]


def snapshot(
    pset: PmemSet, *paths: str, part: Part | None = None, sources: tuple[Source, ...] = ()
) -> Snapshot:
    """Capture the observable state of ``pset``, its address space, files (by path) and a part."""
    state = ops.snapshot(pset, sources, parts=() if part is None else (part,))
    return Snapshot(state, tuple(os.stat(p).st_size for p in paths))
