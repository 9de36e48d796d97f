"""A first end-to-end pass through the API on each backend."""

from __future__ import annotations

from support.sets import PAGE, snapshot

import pmemsim
from pmemsim import Coalescing, ErrorCode, PmemsetError, Source


def test_map_write_read_and_coalesce(make_set, make_file, space):
    path = make_file(16 * PAGE)
    pset = make_set()
    src = Source.from_file(path)
    d1 = pset.part_map(pset.part_new(src, 0, 4 * PAGE))
    assert d1.size == 4 * PAGE
    pset.set_contiguous_part_coalescing(Coalescing.FULL)
    d2 = pset.part_map(pset.part_new(src, 4 * PAGE, 4 * PAGE))
    assert d2 == pmemsim.PartDescriptor(d1.addr, 8 * PAGE)
    pset.memcpy(d2.addr + 5 * PAGE, b"hello")
    assert pset.read(d2.addr + 5 * PAGE, 5) == b"hello"
    with open(path, "rb") as f:
        f.seek(5 * PAGE)
        assert f.read(5) == b"hello"
    space.occupy(d2.end, PAGE)
    before = snapshot(pset, path)
    part = pset.part_new(src, 0, PAGE)
    try:
        pset.part_map(part)
    except PmemsetError as exc:
        assert exc.code == ErrorCode.CANNOT_COALESCE_PARTS
    else:
        raise AssertionError("coalescing into an occupied range succeeded")
    assert snapshot(pset, path) == before
    assert not part.consumed
