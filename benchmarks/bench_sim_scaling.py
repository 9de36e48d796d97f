"""How part_map and address lookups scale with the number of part maps on the simulator.

Maps N page-sized parts (N = 1,000 / 10,000 / 100,000) of one small file into a
:class:`pmemsim.SimulatedAddressSpace`, with coalescing NONE (one reservation and one
part map per part) and FULL (one reservation, one part map growing by a page each
time), then looks up 100,000 random mapped addresses two ways: ``part_map_by_address``
followed by ``drop``, and an 8-byte ``read``. Prints the cost per operation at each size
and the ratio cost(largest) / cost(smallest).

Target: every ratio within 2x of the same ratio for the floor -- a bare SortedDict of the
same size, bisect_right + peekitem, the least any SortedDict-based lookup can cost -- i.e.
the per-operation cost grows no faster than the data structure underneath it does
(O(log n), not O(n)). The floor itself grows with n (cache misses over a larger tree),
so an absolute bound of 2x on pmemsim's own ratio would measure the CPU caches, not
pmemsim. The file is only fstat'ed when a part is mapped, so every part maps the same
page (offset 0, length PAGE).

Run: ``python benchmarks/bench_sim_scaling.py [--sizes 1000,10000,100000] [--lookups N]``.
Exit status 0 when the target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from sortedcontainers import SortedDict

import pmemsim
from pmemsim import Coalescing, Config, Granularity, PmemSet, SimulatedAddressSpace, Source

PAGE = 4096
SEED = 20240607
TARGET_RATIO = 2.0


@dataclass
class Row:
    mode: str
    n: int
    map_us: float
    by_address_us: float
    read_us: float


def _timed(fn: Callable[[], None], keep_gc: bool) -> float:
    """Seconds ``fn`` takes; like ``timeit``, with the cyclic GC off unless ``keep_gc``.

    A full collection walks every live object in the process, so with 100,000 part
    maps alive it charges the map loop for the heap's size, not for pmemsim's work.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()


def measure(
    path: str, mode: Coalescing, n: int, lookups: int, rng: random.Random, keep_gc: bool = False
) -> Row:
    """Map ``n`` parts with ``mode``, then time ``lookups`` by-address lookups and reads."""
    space = SimulatedAddressSpace(page_size=PAGE)
    pset = PmemSet(Config(Granularity.PAGE, address_space=space))
    src = Source.from_file(path)
    try:
        pset.set_contiguous_part_coalescing(mode)
        parts = [pset.part_new(src, 0, PAGE) for _ in range(n)]
        descs: list[pmemsim.PartDescriptor] = []

        def map_all() -> None:
            part_map = pset.part_map
            append = descs.append
            for part in parts:
                append(part_map(part))

        map_s = _timed(map_all, keep_gc)
        expected = n if mode is Coalescing.NONE else 1
        if len(pset) != expected:
            raise AssertionError(f"{mode.name}: expected {expected} part maps, got {len(pset)}")
        # Bottom-up placement packs everything from descs[0].addr up: every page is mapped.
        base = descs[0].addr
        if descs[-1].end != base + n * PAGE:
            raise AssertionError(f"{mode.name}: parts are not contiguous")
        addrs = [base + rng.randrange(n) * PAGE + rng.randrange(PAGE - 8) for _ in range(lookups)]

        def by_address() -> None:
            find = pset.part_map_by_address
            for a in addrs:
                find(a).drop()

        def reads() -> None:
            read = pset.read
            for a in addrs:
                read(a, 8)

        by_s = _timed(by_address, keep_gc)
        read_s = _timed(reads, keep_gc)
        return Row(mode.name, n, map_s / n * 1e6, by_s / lookups * 1e6, read_s / lookups * 1e6)
    finally:
        pset.close()
        src.delete()


def floor_lookup_us(n: int, lookups: int, rng: random.Random) -> float:
    """µs per lookup of the bare structure under every by-address lookup: the SortedDict
    bisect + peekitem that finds the part map below an address, over ``n`` keys."""
    keys: SortedDict = SortedDict((i * PAGE, i) for i in range(n))
    addrs = [rng.randrange(n * PAGE) for _ in range(lookups)]

    def run() -> None:
        bisect, peek = keys.bisect_right, keys.peekitem
        for a in addrs:
            peek(bisect(a) - 1)

    return _timed(run, False) / lookups * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated part counts")
    ap.add_argument("--lookups", type=int, default=100_000, help="random addresses looked up per size")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--gc", action="store_true", help="keep the cyclic GC on while timing")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="pmemsim-bench-") as tmp:
        path = os.path.join(tmp, "part.pmem")
        with open(path, "wb") as f:
            f.truncate(PAGE)
        t_start = time.perf_counter()
        measure(path, Coalescing.NONE, min(sizes), 1000, rng, args.gc)  # warm-up, not reported
        for mode in (Coalescing.NONE, Coalescing.FULL):
            for n in sizes:
                rows.append(measure(path, mode, n, args.lookups, rng, args.gc))
        floors = {n: floor_lookup_us(n, args.lookups, rng) for n in sizes}
        total = time.perf_counter() - t_start

    gc_note = "GC on" if args.gc else "GC off while timing, as timeit"
    print(f"pmemsim simulator scaling: page {PAGE} B, {args.lookups:,} random lookups per size, ", end="")
    print(f"seed {args.seed}, {gc_note}")
    print()
    header = (
        f"{'coalescing':<10} {'parts':>9} {'map µs/op':>10} {'by_address+drop µs/op':>22} "
        f"{'read(8) µs/op':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.mode:<10} {r.n:>9,} {r.map_us:>10.2f} {r.by_address_us:>22.2f} {r.read_us:>14.2f}")
    for n, us in floors.items():
        print(f"{'(floor)':<10} {n:>9,} {'':>10} {us:>22.2f} {'':>14}")
    print("(floor: a bare SortedDict bisect_right + peekitem over n keys, the least any")
    print(" SortedDict-based lookup can cost)")
    print()

    ok = True
    lo, hi = min(sizes), max(sizes)
    floor_ratio = floors[hi] / floors[lo]
    print(
        f"ratio cost({hi:,}) / cost({lo:,}), and that ratio over the floor's ({floor_ratio:.2f}x); "
        f"target: over the floor's <= {TARGET_RATIO:.1f}x"
    )
    for mode in ("NONE", "FULL"):
        small = next(r for r in rows if r.mode == mode and r.n == lo)
        big = next(r for r in rows if r.mode == mode and r.n == hi)
        for op, a, b in (
            ("map", small.map_us, big.map_us),
            ("by_address+drop", small.by_address_us, big.by_address_us),
            ("read(8)", small.read_us, big.read_us),
        ):
            ratio = b / a
            verdict = "PASS" if ratio / floor_ratio <= TARGET_RATIO else "FAIL"
            ok &= verdict == "PASS"
            print(f"  {mode:<5} {op:<16} {ratio:6.2f}x  {ratio / floor_ratio:6.2f}x the floor's  {verdict}")
    print(f"  {'floor':<5} {'by_address':<16} {floor_ratio:6.2f}x  (reference)")
    print()
    print(f"overall: {'PASS' if ok else 'FAIL'}  (total {total:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
