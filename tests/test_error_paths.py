"""Error paths are counted where an error leaves the library, once, and only then.

The coverage matrix (``pmemsim report``) counts the error paths scenarios and tests
reach. An error the library makes and handles itself is not a path a user reached; an
entry point calling another must not count its error twice.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pmemsim import Config, Granularity, PmemSet, PmemsetError, SimulatedAddressSpace, Source
from pmemsim import capi as c
from pmemsim.addrspace.base import Mapping
from pmemsim.errors import ErrorCode
from pmemsim.report.results import ErrorCounter


class _FailingFlushSpace(SimulatedAddressSpace):
    """A space whose flush always fails and whose stores fail from the ``fail_from``-th one."""

    flush_may_fail = True

    def __init__(self, fail_from: int) -> None:
        super().__init__(4096)
        self.fail_from = fail_from
        self.writes = 0

    def _os_flush(self, mapping: Mapping, offset: int, n: int) -> None:
        raise OSError(errno.EIO, "flush refused")

    def _os_write(self, mapping: Mapping, offset: int, data: memoryview) -> None:
        self.writes += 1
        if self.writes >= self.fail_from:
            raise OSError(errno.EROFS, "store refused")
        super()._os_write(mapping, offset, data)


def _mapped_set(space: SimulatedAddressSpace, tmp_path: Path) -> tuple[PmemSet, Source, int]:
    path = tmp_path / "f.pmem"
    path.write_bytes(bytes(4096))
    src = Source.from_file(path)
    pset = PmemSet(Config(Granularity.PAGE, address_space=space))
    desc = pset.part_map(pset.part_new(src))
    return pset, src, desc.addr


def test_an_error_made_and_handled_inside_the_library_is_not_counted(tmp_path: Path) -> None:
    # memcpy stores, the flush fails, and putting the old bytes back fails too: the library
    # suppresses that second error (the first one is what the caller must see).
    space = _FailingFlushSpace(fail_from=2)
    pset, src, addr = _mapped_set(space, tmp_path)
    with ErrorCounter() as counter, pytest.raises(PmemsetError) as info:
        pset.memcpy(addr, b"x")
    assert space.writes == 2, "the undo store was not attempted: the test does not reach its path"
    assert info.value.code == -errno.EIO
    assert dict(counter.counts) == {"EIO": 1}
    pset.close()
    src.delete()


def test_the_error_a_call_raises_is_counted_once(tmp_path: Path) -> None:
    # The control: the same call without the failing undo, one error, one count.
    space = _FailingFlushSpace(fail_from=1_000)
    pset, src, addr = _mapped_set(space, tmp_path)
    with ErrorCounter() as counter, pytest.raises(PmemsetError):
        pset.memcpy(addr, b"x")
    assert dict(counter.counts) == {"EIO": 1}
    pset.close()
    src.delete()


def test_an_error_object_alone_is_not_an_error_path() -> None:
    with ErrorCounter() as counter:
        try:
            raise PmemsetError(ErrorCode.NOSUPP, "made here, caught here")
        except PmemsetError:
            pass
    assert dict(counter.counts) == {}


def test_nested_entry_points_count_their_error_once(tmp_path: Path) -> None:
    # from_file runs xfrom_file: both are entry points, the error leaves once.
    with ErrorCounter() as counter, pytest.raises(PmemsetError):
        Source.from_file(tmp_path / "missing")
    assert dict(counter.counts) == {"PMEMSET_E_INVALID_SOURCE_PATH": 1}


def test_capi_counts_the_code_it_returns(tmp_path: Path) -> None:
    src = c.Ref()
    with ErrorCounter() as counter:
        rc = c.pmemset_source_from_file(src, str(tmp_path / "missing"))
    assert rc == c.PMEMSET_E_INVALID_SOURCE_PATH
    assert dict(counter.counts) == {"PMEMSET_E_INVALID_SOURCE_PATH": 1}


def test_config_errors_are_counted() -> None:
    with ErrorCounter() as counter, pytest.raises(PmemsetError):
        Config(7)  # type: ignore[arg-type]
    assert dict(counter.counts) == {"PMEMSET_E_GRANULARITY_NOT_SUPPORTED": 1}
