"""The backend table: names, aliases, and which backends run where none is named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pmemsim.addrspace import SimulatedAddressSpace, backends
from pmemsim.addrspace.backends import Backend, SpaceOptions


@pytest.fixture
def restored_table() -> Iterator[None]:
    saved = dict(backends._REGISTRY), backends.BACKENDS, backends.DEFAULT_BACKENDS
    yield
    backends._REGISTRY.clear()
    backends._REGISTRY.update(saved[0])
    backends.BACKENDS, backends.DEFAULT_BACKENDS = saved[1], saved[2]


def debug_backend(name: str, *, default: bool) -> Backend:
    return Backend(
        name=name,
        summary="a test backend",
        default_size=1 << 30,
        page_multiple=1,
        fake_files=True,
        factory=lambda options: SimulatedAddressSpace(options.page_size or 4096),
        default=default,
    )


def test_the_shipped_backends_all_run_by_default() -> None:
    assert backends.BACKENDS == ("sim", "mmap")
    assert backends.DEFAULT_BACKENDS == ("sim", "mmap")


def test_a_backend_that_is_not_a_default_runs_only_where_named(restored_table: None) -> None:
    backends.register(debug_backend("sim-debug", default=False))
    assert backends.BACKENDS == ("sim", "mmap", "sim-debug")
    assert backends.DEFAULT_BACKENDS == ("sim", "mmap")
    space = backends.make_address_space("SIM-DEBUG", SpaceOptions(page_size=8192))
    assert space.page_size == 8192


def test_a_default_backend_joins_the_defaults(restored_table: None) -> None:
    backends.register(debug_backend("sim-two", default=True))
    assert backends.DEFAULT_BACKENDS == ("sim", "mmap", "sim-two")


def test_names_and_aliases_are_unique(restored_table: None) -> None:
    with pytest.raises(ValueError, match="'simulated' is already registered"):
        backends.register(debug_backend("simulated", default=False))
    with pytest.raises(ValueError, match="unknown backend 'nope'; use 'sim' or 'mmap'"):
        backends.backend("nope")
