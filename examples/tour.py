"""The README tour: map parts, coalesce, make coalescing fail on purpose, remove a range.

Run it with ``python examples/tour.py``; it prints what happens and exits 0.
"""

from __future__ import annotations

import os
import tempfile

import pmemsim
from pmemsim import Coalescing, Config, ErrorCode, FaultPlan, Granularity, PmemSet, PmemsetError, Source

PAGE = 4096

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "pool.pmem")
    with open(path, "wb") as f:
        f.truncate(64 * PAGE)

    space = pmemsim.SimulatedAddressSpace(page_size=PAGE)  # deterministic addresses
    plan = FaultPlan()
    cfg = Config(Granularity.PAGE, address_space=space, fault_plan=plan)
    with PmemSet(cfg) as pset, Source.from_file(path) as src:
        first = pset.part_map(pset.part_new(src, offset=0, length=16 * PAGE))
        print(f"mapped 16 pages at {first.addr:#x}")

        pset.set_contiguous_part_coalescing(Coalescing.FULL)
        grown = pset.part_map(pset.part_new(src, offset=16 * PAGE, length=16 * PAGE))
        print(f"coalesced: one part map of {grown.size // PAGE} pages at {grown.addr:#x}")

        pset.memcpy(grown.addr + 20 * PAGE, b"hello, pmem")  # copies and persists
        print("read back:", pset.read(grown.addr + 20 * PAGE, 11))

        space.occupy(grown.end, PAGE)  # someone else maps right after our part map
        part = pset.part_new(src, offset=32 * PAGE, length=PAGE)
        try:
            pset.part_map(part)
        except PmemsetError as exc:
            assert exc.code == ErrorCode.CANNOT_COALESCE_PARTS
            print("as planned:", exc)
        print("part still usable:", not part.consumed, "| part maps:", len(pset))

        plan.fail_next("map.file")  # the next mapping fails, once
        pset.set_contiguous_part_coalescing(Coalescing.OPPORTUNISTIC)
        try:
            pset.part_map(part)
        except PmemsetError as exc:
            print("injected:", exc.name, "| fired:", [f.site.value for f in plan.fired])
        other = pset.part_map(part)  # retried: falls back to a new part map
        print(f"second part map at {other.addr:#x}; part maps: {len(pset)}")

        pset.remove_range(grown.addr + 4 * PAGE, PAGE)  # drops the first 16-page part
        print("after remove_range:", [(hex(d.addr), d.size // PAGE) for d in pset.descriptors()])

    with open(path, "rb") as f:
        f.seek(20 * PAGE)
        print("in the file:", f.read(11))
