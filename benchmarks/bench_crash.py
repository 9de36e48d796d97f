"""Crash-state exploration throughput on an undo-logged record update.

Workload: a 4 KiB pool with eight 64-byte records (seven value words and a checksum
word each) and a one-entry undo log. Each of the 1,000 transactions updates one record
the textbook way -- copy the old record into the undo log and persist, set the log's
valid flag and persist, write the new record and persist, clear the flag and persist --
so each transaction has four fence epochs (9, 1, 8 and 1 flushed 8-byte atoms). The
in-process checker rolls the undo log back (virtually) when its flag is set and
verifies every record's checksum.

The log is replayed with NoReorderDoCheck, ReorderAccumulative, ReorderPartial and
Exhaustive, single-process and with ``--workers`` processes, and the crash states
checked per second are printed. The same log is written in pmemcheck format (with the
initial pool image beside it) so the work can be handed to pmreorder.

Targets: >= 20,000 states/s single-process for ReorderAccumulative, and a near-linear
speed-up with 2 workers (the machine needs 2 idle cores for that).

First, the state counts of the crash model on two realistic steps, before and after
stores to one cache line were ordered (each line reaches media as a program-order
prefix; before, every 8-byte word went on its own), with the time to a complete
Exhaustive verdict: a 128-byte linked-list node insert (the node persisted, then the
head pointer) and a 4 KiB ``memcpy`` of a page followed by its header's valid flag.
The "before" column is computed from the word-level rule directly (the product over
words of their distinct values); the "after" column is what ``replay`` checks.

Then lazy exploration: Exhaustive with a Python checker branches only over the cache lines
the checker reads (Jaaru's lazy choice of line contents). Two steps, lazy beside eager,
with the time to a complete verdict: the 4 KiB ``memcpy`` with a checker that reads the
header and one 64-byte entry (target: under 1 s), and ``--pushes`` (150) pushes onto a
linked list of 96-byte nodes, each push one flush-and-fence step writing the node and the
head, with a checker that walks the list (target: under 10 s). Both checkers read
through slices: a checker that hands the whole image to ``struct.unpack_from`` is
explored eagerly.

Timing: each engine is run ``--repeat`` times single-process and with ``--workers``,
alternating, and the best wall time of each is kept (the same end-to-end ``replay``
call in both cases: log validation, epoch planning, forking, exploration, merging). On a
shared machine the best of a few runs is the least disturbed one. ``--scale K`` adds
clearly labelled lines for ReorderAccumulative and ReorderPartial on K times the
transactions, where fixed costs (forking, merging) weigh less; the fixed-workload lines
above them are the ones the targets refer to.

Last, what users run, side by side with PMDK's pmreorder (``--pmreorder DIR``: its
directory, holding ``pmreorder.py``; skipped with a note without it): the whole ``pmemsim
replay`` command line against pmreorder's on the same pmemcheck logs of this workload,
fresh processes with cached bytecode, pools and logs on tmpfs, medians of ``--pairs``
alternating pairs: a free checker at ``--sizes`` stores (a C function for pmreorder's
``-c lib``, compiled here with gcc; a Python function for pmemsim) with
ReorderAccumulative, NoReorderDoCheck and ReorderPartial, then the same C program and the
same Python program as checker on both sides. Targets: 5x from 10,000 stores and never
slower with the free checker, 1.5x with the same program. Then the serial fraction of a
replay with a checker of ~100 us per state (parse + scan + merge, CPU time) and its
Amdahl projection for 16 workers (target 8x), the hand-over of a program checker's image
on a 64 MiB pool (the whole image per state beside only the pages that changed), and the
peak memory of a whole ``pmemsim replay`` (which streams the log) of a ``--memory-stores``
log and of one a tenth as long, so that any growth with the log shows. ``--versus-only``
runs only these.

Run: ``python benchmarks/bench_crash.py [--transactions 1000] [--workers 2] [--repeat 3]
[--scale 10] [--out DIR] [--pmreorder DIR] [--versus-only]``. Exit status 0 when every target
is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from pmemsim.persistence import (
    CrashReport,
    Exhaustive,
    Recorder,
    StoreLog,
    dump_pmemcheck,
    plan_replay,
    replay,
)

RECORDS = 8
POOL = 4096
VALID, INDEX, UNDO, TABLE = 0x00, 0x08, 0x40, 0x100
MAGIC = 0x5EED_F00D_CAFE_BEEF
TARGET = 20_000
_REC = "<8Q"  # a format, not a struct.Struct: checkers travel to Dask workers, and a Struct cannot be pickled


def record(version: int, index: int) -> bytes:
    """A consistent record: seven value words and their checksum."""
    words = [version * 64 + index * 8 + k for k in range(7)]
    check = MAGIC
    for w in words:
        check ^= w
    return struct.pack(_REC, *words, check)


def initial_pool() -> bytes:
    """Every record at version 0, undo log empty."""
    pool = bytearray(POOL)
    for i in range(RECORDS):
        pool[TABLE + 64 * i : TABLE + 64 * (i + 1)] = record(0, i)
    return bytes(pool)


def workload(transactions: int, path: str | None = None) -> StoreLog:
    """The undo-logged updates as a store log (``path`` is where the pool file lives, for export)."""
    rec = Recorder()
    rec.register_file("pool", path, POOL, initial_pool())
    versions = [0] * RECORDS
    for t in range(transactions):
        i = t % RECORDS
        rec.mark("tx.BEGIN")
        rec.store("pool", INDEX, struct.pack("<Q", i), location="bench_crash.py:undo-index")
        rec.store("pool", UNDO, record(versions[i], i), location="bench_crash.py:undo-data")
        rec.flush("pool", INDEX, 8)
        rec.persist("pool", UNDO, 64)
        rec.store("pool", VALID, struct.pack("<Q", 1), location="bench_crash.py:undo-valid")
        rec.persist("pool", VALID, 8)
        versions[i] += 1
        rec.store("pool", TABLE + 64 * i, record(versions[i], i), location="bench_crash.py:update")
        rec.persist("pool", TABLE + 64 * i, 64)
        rec.store("pool", VALID, struct.pack("<Q", 0), location="bench_crash.py:undo-clear")
        rec.persist("pool", VALID, 8)
        rec.mark("tx.END")
    return rec.log


def check(image: memoryview) -> bool:
    """Recover (virtually) from the undo log, then every record must pass its checksum."""
    valid, index = struct.unpack_from("<QQ", image, VALID)
    if valid not in (0, 1) or index >= RECORDS:
        return False
    for i in range(RECORDS):
        src = UNDO if valid and i == index else TABLE + 64 * i
        *words, check_word = struct.unpack_from(_REC, image, src)
        for w in words:
            check_word ^= w
        if check_word != MAGIC:
            return False
    return True


NODE, HEAD, PAGE_HDR, PAGE = 0x400, 0x0, 0x40, 0x1000


def node_insert() -> tuple[StoreLog, Callable[[memoryview], bool]]:
    """A 128-byte node (key, value words, checksum) persisted, then the list head pointing to it."""
    rec = Recorder()
    rec.register_file("pool", None, 0x2000)
    words = [0xA0 + k for k in range(15)]
    node = struct.pack("<16Q", *words, MAGIC ^ sum(words))
    rec.store("pool", NODE, node, location="bench_crash.py:node")
    rec.persist("pool", NODE, len(node))
    rec.store("pool", HEAD, struct.pack("<Q", NODE), location="bench_crash.py:head")
    rec.persist("pool", HEAD, 8)

    def check_node(image: memoryview) -> bool:
        head = struct.unpack_from("<Q", image, HEAD)[0]
        if head == 0:
            return True
        *values, checksum = struct.unpack_from("<16Q", image, head)
        return checksum == MAGIC ^ sum(values)

    return rec.log, check_node


def page_copy() -> tuple[StoreLog, Callable[[memoryview], bool]]:
    """A 4 KiB page copied (memcpy + persist), then its header's valid flag persisted."""
    rec = Recorder()
    rec.register_file("pool", None, 0x2000)
    page = bytes((i * 7 + 3) & 0xFF for i in range(4096))
    rec.store("pool", PAGE, page, location="bench_crash.py:memcpy")
    rec.persist("pool", PAGE, len(page))
    rec.store("pool", PAGE_HDR, struct.pack("<Q", 1), location="bench_crash.py:valid")
    rec.persist("pool", PAGE_HDR, 8)

    def check_page(image: memoryview) -> bool:
        if struct.unpack_from("<Q", image, PAGE_HDR)[0] != 1:
            return True
        first, last = bytes(image[PAGE : PAGE + 64]), bytes(image[PAGE + 4032 : PAGE + 4096])
        return first == page[:64] and last == page[4032:]

    return rec.log, check_page


def word_level_images(log: StoreLog) -> int:
    """States of the old per-word rule: per epoch, the product over words of their distinct values."""
    total = 0
    for epoch in plan_replay(log).epochs:
        values: dict[tuple[int, int], set[bytes]] = {}
        content: dict[tuple[int, int], bytearray] = {}
        for atom in epoch.inflight:
            key = (atom.fidx, atom.offset - atom.offset % 8)
            word = content.setdefault(key, bytearray(8))
            values.setdefault(key, {bytes(word)})
            word[atom.offset - key[1] : atom.end - key[1]] = atom.data
            values[key].add(bytes(word))
        total += math.prod(len(v) for v in values.values())
    return total


def line_level_images(log: StoreLog) -> int:
    """States of the cache-line rule: per epoch, the product over lines of (cached stores + 1) prefixes."""
    total = 0
    for epoch in plan_replay(log).epochs:
        per_line: dict[int, int] = {}
        for atom in epoch.inflight:
            per_line[atom.line] = per_line.get(atom.line, 0) + 1
        total += math.prod(n + 1 for n in per_line.values())
    return total


def _big(n: int) -> str:
    return f"{n:,}" if n < 10**12 else f"~10^{len(str(n)) - 1}"


def model_counts() -> None:
    """Print the state counts before and after the cache-line order, and the time to a verdict."""
    print(f"{'step':<24}{'before (words)':>16}{'after (lines)':>15}{'checked':>10}{'verdict':>28}{'s':>8}")
    steps = (("128-byte node insert", node_insert()), ("4 KiB memcpy + flag", page_copy()))
    for label, (log, checker) in steps:
        t0 = time.perf_counter()
        report = replay(log, checker)
        secs = time.perf_counter() - t0
        print(
            f"{label:<24}{_big(word_level_images(log)):>16}{_big(line_level_images(log)):>15}"
            f"{report.states_checked:>10,}{report.verdict:>28}{secs:>8.2f}"
        )
    print()


def slow_check(image: memoryview) -> bool:
    """:func:`check` plus about 100 us of work: a checker whose cost dominates, as real ones do."""
    deadline = time.perf_counter() + 100e-6
    while time.perf_counter() < deadline:
        pass
    return check(image)


def distributed_speedups(log: StoreLog, workers: int) -> None:
    """One process vs ``workers`` forked workers vs a Dask LocalCluster of ``workers``, and a projection.

    The serial part -- the scan for slices and the merge of the slices' results -- is timed
    on its own; Amdahl's law with that fraction projects the speed-up of 16 and 64 workers
    (the slices are many enough: 64 by default).
    """
    from pmemsim.persistence.explore import DEFAULT_SLICES
    from pmemsim.persistence.model import PersistencyModel, scan_log
    from pmemsim.persistence.shards import explore_shard, merge_shards

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("distributed: skipped (pip install 'pmemsim[dask]')")
        return
    t0 = time.perf_counter()
    one = replay(log, slow_check, engine="ReorderAccumulative")
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    forked = replay(log, slow_check, engine="ReorderAccumulative", workers=workers)
    t_forked = time.perf_counter() - t0
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as c,
        Client(c) as client,
    ):
        replay(
            log, slow_check, engine="ReorderAccumulative", executor=client.get_executor()
        )  # warm the workers
        t0 = time.perf_counter()
        on_dask = replay(log, slow_check, engine="ReorderAccumulative", executor=client.get_executor())
        t_dask = time.perf_counter() - t0
    assert one == forked == on_dask
    t0 = time.perf_counter()
    scan_log(log, PersistencyModel.adr(), slices=DEFAULT_SLICES)
    t_scan = time.perf_counter() - t0
    doc = explore_shard(log, slow_check, 1, 1, engine="ReorderAccumulative")
    t0 = time.perf_counter()
    merge_shards(log, slow_check, [doc], engine="ReorderAccumulative")
    t_merge = time.perf_counter() - t0
    serial = (t_scan + t_merge) / t_one
    print(f"distributed ({one.states_checked} states, a checker of ~100 us per state, ReorderAccumulative):")
    print(f"  1 process {t_one:.2f} s; {workers} forked workers {t_forked:.2f} s ({t_one / t_forked:.2f}x); "
          f"Dask LocalCluster({workers}) {t_dask:.2f} s ({t_one / t_dask:.2f}x)")  # fmt: skip
    print(
        f"  serial part: scan {t_scan * 1000:.0f} ms + merge {t_merge * 1000:.0f} ms "
        f"= {serial:.1%} of one process"
    )
    for n in (16, 64):
        print(f"  projected speed-up with {n} workers (Amdahl): {1 / (serial + (1 - serial) / n):.1f}x")


def run(log: StoreLog, engine: str, workers: int) -> tuple[int, float, bool]:
    """(states checked, seconds, consistent) for one engine."""
    t0 = time.perf_counter()
    report = replay(log, check, engine=engine, workers=workers, seed=1)
    return report.states_checked, time.perf_counter() - t0, report.ok


def compare(log: StoreLog, engine: str, workers: int, repeat: int) -> tuple[int, float, float]:
    """(states, best single-process seconds, best ``workers`` seconds), the two runs alternating."""
    best1 = best_n = float("inf")
    states = 0
    for _ in range(max(1, repeat)):
        states, secs, ok = run(log, engine, 1)
        states_n, secs_n, ok_n = run(log, engine, workers)
        assert ok and ok_n and states == states_n, (engine, ok, ok_n, states, states_n)
        best1, best_n = min(best1, secs), min(best_n, secs_n)
    return states, best1, best_n


def line(label: str, states: int, secs: float, secs_n: float) -> str:
    """One row of the table."""
    return (
        f"{label:<22}{states:>10}{secs:>10.2f}{states / secs:>12,.0f}{secs_n:>12.2f}{states / secs_n:>12,.0f}"
        f"{secs / secs_n:>9.2f}x"
    )


# -- Lazy exploration: Exhaustive branching only over the lines a Python checker reads ------------

LAZY_MEMCPY_TARGET, LAZY_PUSHES_TARGET = 1.0, 10.0  # seconds to a complete verdict
LIST_HEAD, LIST_NODES, NODE_SIZE = 0x0, 0x40, 96


def memcpy_header_entry() -> tuple[StoreLog, Callable[[memoryview], bool]]:
    """A 4 KiB ``memcpy`` persisted in one step, then its header's valid flag; the checker reads the
    header and one 64-byte entry, through slices (what a recovery procedure reads)."""
    rec = Recorder()
    rec.register_file("pool", None, 0x2000)
    page = bytes((i * 7 + 3) & 0xFF for i in range(4096))
    rec.store("pool", PAGE, page, location="bench_crash.py:memcpy")
    rec.persist("pool", PAGE, len(page))
    rec.store("pool", PAGE_HDR, struct.pack("<Q", 1), location="bench_crash.py:valid")
    rec.persist("pool", PAGE_HDR, 8)
    entry = PAGE + 64 * 17

    def check_entry(image: memoryview) -> bool:
        if int.from_bytes(image[PAGE_HDR : PAGE_HDR + 8], "little") != 1:
            return True
        return bytes(image[entry : entry + 64]) == page[entry - PAGE : entry - PAGE + 64]

    return rec.log, check_entry


def list_pushes(pushes: int) -> tuple[StoreLog, Callable[[memoryview], bool]]:
    """``pushes`` pushes onto a linked list of 96-byte nodes (key, next, nine values, checksum):
    each push writes its node and the head in one flush-and-fence step; the checker walks the list
    from the head and verifies every node's checksum, reading each node as one slice."""
    rec = Recorder()
    size = LIST_NODES + NODE_SIZE * pushes
    rec.register_file("pool", None, size)
    head = 0
    for k in range(pushes):
        at = LIST_NODES + NODE_SIZE * k
        words = [k + 1, head, *((k * 16 + i) & 0xFFFF for i in range(9))]
        rec.store("pool", at, struct.pack("<12Q", *words, MAGIC ^ sum(words)), location="bench_crash.py:node")
        rec.store("pool", LIST_HEAD, struct.pack("<Q", at), location="bench_crash.py:head")
        rec.flush("pool", at, NODE_SIZE)
        rec.persist("pool", LIST_HEAD, 8)
        head = at

    node = struct.Struct("<12Q")

    def check_list(image: memoryview) -> bool:
        at = int.from_bytes(image[LIST_HEAD : LIST_HEAD + 8], "little")
        while at:
            *words, checksum = node.unpack(image[at : at + NODE_SIZE])
            if checksum != MAGIC ^ sum(words):
                return False
            at = words[1]
        return True

    return rec.log, check_list


def _timed(
    log: StoreLog, checker: Callable[[memoryview], bool], engine: Exhaustive
) -> tuple[CrashReport, float]:
    t0 = time.perf_counter()
    report = replay(log, checker, engine=engine)
    return report, time.perf_counter() - t0


def lazy_exploration(pushes: int = 150, eager_pushes: int | None = None) -> bool:
    """Print lazy Exhaustive beside the eager one on two steps; True when both lazy targets are met.

    The targets: a complete verdict on the 4 KiB ``memcpy`` in under 1 s, and on ``pushes``
    list pushes in under 10 s (printed, not asserted). The eager column of the list runs
    ``eager_pushes`` pushes (default: all) and, when fewer, projects to ``pushes`` linearly
    (a lower bound: later pushes walk a longer list).
    """
    eager_pushes = pushes if eager_pushes is None else eager_pushes
    lazy, eager = Exhaustive(), Exhaustive(lazy_above=None)
    print("Lazy Exhaustive (only the lines the checker reads branch) beside the eager one:")
    print(
        f"{'step':<30}{'lazy states':>12}{'s':>8}{'complete':>10}{'eager states':>14}{'s':>9}{'complete':>10}"
    )
    log, check_entry = memcpy_header_entry()
    lz, lz_s = _timed(log, check_entry, lazy)
    ea, ea_s = _timed(log, check_entry, eager)
    print(
        f"{'4 KiB memcpy + flag':<30}{lz.states_checked:>12,}{lz_s:>8.2f}{lz.complete!s:>10}"
        f"{ea.states_checked:>14,}{ea_s:>9.2f}{ea.complete!s:>10}"
    )
    memcpy_met = lz.complete and lz.ok and lz_s < LAZY_MEMCPY_TARGET
    log, check_list = list_pushes(pushes)
    lz, lz_s = _timed(log, check_list, lazy)
    small, check_small = list_pushes(eager_pushes)
    ea, ea_s = _timed(small, check_small, eager)
    scale = pushes / eager_pushes
    label = "" if eager_pushes == pushes else f" (x{scale:g}, projected from {eager_pushes} pushes)"
    print(
        f"{f'{pushes} pushes of 96-byte nodes':<30}{lz.states_checked:>12,}{lz_s:>8.2f}{lz.complete!s:>10}"
        f"{round(ea.states_checked * scale):>14,}{ea_s * scale:>9.2f}{ea.complete!s:>10}{label}"
    )
    pushes_met = lz.complete and not lz.ok and lz_s < LAZY_PUSHES_TARGET  # a push can land its head first
    print(
        f"targets: memcpy < {LAZY_MEMCPY_TARGET:g} s: {'met' if memcpy_met else 'NOT met'}; "
        f"{pushes} pushes < {LAZY_PUSHES_TARGET:g} s: {'met' if pushes_met else 'NOT met'}"
    )
    print()
    return memcpy_met and pushes_met


# -- side by side with pmreorder: the whole command line -----------------------------------------------

FREE_C = "int check(const char *path) { (void)path; return 0; }\n"  # pmreorder -c lib: 0 = consistent
PROGRAM_C = r"""#include <stdio.h>
int main(int argc, char **argv) {
    unsigned char buf[4096];
    FILE *f = fopen(argv[argc - 1], "rb");
    if (!f) return 2;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == sizeof buf ? 0 : 1;
}
"""
PROGRAM_PY = (
    "import sys\n"
    "with open(sys.argv[-1], 'rb') as f:\n"
    "    data = f.read()\n"
    "sys.exit(0 if len(data) == 4096 else 1)\n"
)
FREE_PY = "def check(image):\n    return True\n"


def _scratch_dir() -> str:
    """A directory for pools and logs: on tmpfs when there is one (see :func:`versus_pmreorder`)."""
    shm = "/dev/shm"
    return tempfile.mkdtemp(prefix="bench-crash-", dir=shm if os.path.isdir(shm) else None)


def _store_log(stores: int, directory: str) -> tuple[str, str, bytes]:
    """A pmemcheck log of the undo-log workload with about ``stores`` STORE records: (log, pool, pristine)."""
    pool = os.path.join(directory, f"pool{stores}.img")
    pristine = initial_pool()
    log = workload(max(1, round(stores / 19)), pool)  # 19 STOREs per transaction once exported
    path = os.path.join(directory, f"store{stores}.log")
    dump_pmemcheck(log, path)
    return path, pool, pristine


def _environment(directory: str) -> dict[str, str]:
    """What both tools run with: compiled bytecode kept (outside the sources), this tree first on the path."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' installs have .pyc files: so do both tools here
    env["PYTHONPYCACHEPREFIX"] = os.path.join(directory, "pycache")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, directory, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _wall(argv: list[str], env: dict[str, str], pool: str, pristine: bytes, cwd: str) -> float:
    """Seconds of one run of ``argv`` on a freshly restored pool (it must exit 0: consistent)."""
    with open(pool, "wb") as f:
        f.write(pristine)  # pmreorder leaves its last crash state in the pool
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        tail = proc.stdout[-400:] + proc.stderr[-400:]
        raise RuntimeError(f"{argv[:4]}... exited {proc.returncode}: {tail}")
    return secs


def _pairs(
    theirs: Callable[[], float], ours: Callable[[], float], repeat: int, warm: bool
) -> tuple[float, float, float]:
    """Alternating runs (after one of each when ``warm``): (median pmreorder s, median pmemsim s,
    median of the per-pair ratios)."""
    a, b, ratios = [], [], []
    if warm:  # bytecode compiled and cached, files in the page cache
        ours()
        theirs()
    for _ in range(max(1, repeat)):
        ta, tb = theirs(), ours()
        a.append(ta)
        b.append(tb)
        ratios.append(ta / tb)
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


def versus_pmreorder(
    pmreorder: str | None, sizes: list[int], program_stores: tuple[int, int], repeat: int
) -> bool:
    """``pmemsim replay`` against PMDK's pmreorder on the same pmemcheck logs, whole command lines.

    Both start as fresh processes (interpreter start, imports, parsing and the command
    line included) with compiled bytecode cached, on a pool and logs on tmpfs: pmreorder
    msyncs the pool file after every store it applies, so on a disk its time is that of
    the disk, not of its engine. Ratios are pmreorder's time over pmemsim's, the median of
    ``repeat`` alternating pairs after one warm-up of each. Returns whether the targets
    hold: free checker >= 5x from 10k stores and >= 1x everywhere (NoReorderDoCheck
    included), the same program >= 1.5x.
    """
    if pmreorder is None or not os.path.isfile(os.path.join(pmreorder, "pmreorder.py")):
        print(
            f"versus pmreorder: skipped (give PMDK's pmreorder directory with --pmreorder, not {pmreorder})"
        )
        return True
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        print("versus pmreorder: skipped (no C compiler for the free and program checkers)")
        return True
    work = _scratch_dir()
    env = _environment(work)
    py = sys.executable
    with open(os.path.join(work, "free.c"), "w") as f:
        f.write(FREE_C)
    with open(os.path.join(work, "check.c"), "w") as f:
        f.write(PROGRAM_C)
    with open(os.path.join(work, "freecheck.py"), "w") as f:
        f.write(FREE_PY)
    with open(os.path.join(work, "check.py"), "w") as f:
        f.write(PROGRAM_PY)
    libfree, program = os.path.join(work, "libfree.so"), os.path.join(work, "check")
    subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", libfree, os.path.join(work, "free.c")], check=True)
    subprocess.run([gcc, "-O2", "-o", program, os.path.join(work, "check.c")], check=True)
    out = os.path.join(work, "pmreorder.out")

    def pmreorder_run(log: str, engine: str, checker: list[str]) -> list[str]:
        return [py, os.path.join(pmreorder, "run_lib_checker.py" if checker[0] == "lib" else "pmreorder.py"),
                "-l", log, "-o", out, "-r", engine, "-c", *checker]  # fmt: skip

    def pmemsim_run(log: str, engine: str, checker: list[str]) -> list[str]:
        return [py, "-m", "pmemsim", "replay", log, "--engine", engine, *checker, "--no-shrink"]

    free_theirs = ["lib", "-p", libfree, "-n", "check"]
    free_ours = ["--checker", "freecheck:check"]
    cases: list[tuple[str, int, str, list[str], list[str], float]] = [
        (f"free checker, {n:,} stores", n, "ReorderAccumulative", free_theirs, free_ours,
         5.0 if n >= 10_000 else 1.0)
        for n in sizes
    ]  # fmt: skip
    middle = sorted(sizes)[len(sizes) // 2]
    cases += [
        (f"free checker, {middle:,} stores", middle, engine, free_theirs, free_ours, 1.0)
        for engine in ("NoReorderDoCheck", "ReorderPartial")
    ]
    cases += [
        (f"same C program, {program_stores[0]:,} stores", program_stores[0], "ReorderAccumulative",
         ["prog", "-p", program], ["--checker-prog", program], 1.5),
        (f"same Python program, {program_stores[1]:,} stores", program_stores[1], "ReorderAccumulative",
         ["prog", "-p", f"{py} -S {os.path.join(work, 'check.py')}"],
         ["--checker-prog", f"{py} -S {os.path.join(work, 'check.py')}"], 1.5),
    ]  # fmt: skip
    logs: dict[int, tuple[str, str, bytes]] = {}
    print(f"versus pmreorder ({pmreorder}; pools and logs in {work}; medians of {repeat} alternating pairs):")
    print(f"  {'case':<34}{'engine':<22}{'pmreorder s':>12}{'pmemsim s':>11}{'ratio':>9}{'target':>9}")
    met = True
    for label, stores, engine, theirs, ours, target in cases:
        if stores not in logs:
            logs[stores] = _store_log(stores, work)
        log, pool, pristine = logs[stores]
        argv_a, argv_b = pmreorder_run(log, engine, theirs), pmemsim_run(log, engine, ours)
        big = stores >= 100_000  # pmreorder takes minutes there: one pair, no warm-up
        ta, tb, ratio = _pairs(
            functools.partial(_wall, argv_a, env, pool, pristine, work),
            functools.partial(_wall, argv_b, env, pool, pristine, work),
            1 if big else repeat,
            not big,
        )
        ok = ratio >= target
        met &= ok
        print(f"  {label:<34}{engine:<22}{ta:>12.2f}{tb:>11.2f}{ratio:>8.2f}x{target:>8.1f}x"
              f"{'' if ok else '  NOT met'}", flush=True)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return met


def serial_fraction(stores: int, workers: int = 16) -> float:
    """The serial share of a replay with a checker of ~100 us per state, and its Amdahl projection.

    Serial: parsing the pmemcheck log, scanning it for the slices' quiescent starts, and
    merging the slices' results (states, failures) -- what no worker can take over. The
    rest (exploring, judging) runs in the workers. The fraction is over the whole
    single-process replay (parse included); Amdahl's law gives the speed-up of ``workers``.
    Times are CPU times of this process: on a shared machine, wall time would add other
    processes' turns to whichever part ran while they did.
    """
    from pmemsim.persistence.explore import DEFAULT_SLICES
    from pmemsim.persistence.model import PersistencyModel, scan_log
    from pmemsim.persistence.saved import read_log
    from pmemsim.persistence.shards import explore_shard, merge_shards

    work = _scratch_dir()
    try:
        path, _, _ = _store_log(stores, work)
        t0 = time.process_time()
        log = read_log(path)
        t_parse = time.process_time() - t0
        t0 = time.process_time()
        images = {k: initial_pool() for k in log.files}
        one = replay(log, slow_check, engine="ReorderAccumulative", images=images)
        t_one = time.process_time() - t0
        t0 = time.process_time()
        scan_log(log, PersistencyModel.adr(), slices=DEFAULT_SLICES)
        t_scan = time.process_time() - t0
        doc = explore_shard(log, slow_check, 1, 1, engine="ReorderAccumulative", images=images)
        t0 = time.process_time()
        merged = merge_shards(log, slow_check, [doc], engine="ReorderAccumulative", images=images)
        t_merge = time.process_time() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert merged.states_checked == one.states_checked
    total = t_parse + t_one
    serial = (t_parse + t_scan + t_merge) / total
    speedup = 1 / (serial + (1 - serial) / workers)
    print(
        f"serial fraction ({stores:,} stores, {one.states_checked:,} states, a checker of ~100 us each): "
        f"parse {t_parse * 1000:.0f} ms + scan {t_scan * 1000:.0f} ms + merge {t_merge * 1000:.0f} ms "
        f"of {total:.2f} s CPU = {serial:.1%}; Amdahl with {workers} workers: {speedup:.1f}x (target 8x)"
    )
    return speedup


def image_handover(pool_mib: int = 64, states: int = 50, lines: int = 4) -> float:
    """A program checker's image file, state after state, on a ``pool_mib`` MiB pool of which each
    state changes ``lines`` cache lines: the whole image written per state (how program checkers
    got it before) beside the pages that changed (:class:`ImageFiles`). Both on tmpfs when there
    is one; the ratio is the whole write's time over the partial one's."""
    from pmemsim.persistence.programs import ImageFiles

    size = pool_mib << 20
    image = bytearray(size)
    work = _scratch_dir()
    try:
        files = ImageFiles(["pool"], os.path.join(work, "handover-"))
        whole_path = os.path.join(work, "whole.img")
        fd = os.open(whole_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            files.write(0, memoryview(image))
            os.pwrite(fd, image, 0)
            whole = partial = 0.0
            for n in range(states):
                for k in range(lines):  # a few lines anywhere in the pool
                    at = (n * 7919 + k * 104729) * 64 % size
                    image[at : at + 8] = struct.pack("<Q", n * lines + k + 1)
                t0 = time.perf_counter()
                os.pwrite(fd, image, 0)
                t1 = time.perf_counter()
                files.write(0, memoryview(image))
                t2 = time.perf_counter()
                whole, partial = whole + (t1 - t0), partial + (t2 - t1)
            assert open(files.paths[0], "rb").read() == image  # noqa: SIM115 - what the program reads
        finally:
            os.close(fd)
            files.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = whole / partial
    print(
        f"image hand-over ({pool_mib} MiB pool, {lines} lines changed per state, {states} states): "
        f"whole image {whole / states * 1000:.2f} ms per state, changed pages "
        f"{partial / states * 1000:.2f} ms ({files.page_writes} pages written): {ratio:.1f}x"
    )
    return ratio


def _peak_rss_code() -> str:
    """A program that runs ``pmemsim replay`` with the arguments it is given, in this process, and
    prints the peak RSS (VmHWM) after the imports and at the end.

    The end figure is the largest of this process's and of any child it waited for (a Python
    checker's replay runs in a forked child: ru_maxrss of the children covers it)."""
    return (
        "import resource, sys\n"
        "def peak():\n"
        "    with open('/proc/self/status') as f:\n"
        "        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmHWM:'))\n"
        "from pmemsim.cli import main\n"
        "base = peak()\n"
        "code = main(['replay', *sys.argv[1:]])\n"
        "children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(code, base, max(peak(), children), file=sys.stderr)\n"
    )


def replay_peak(path: str, env: dict[str, str], cwd: str, engine: str) -> tuple[int, int, int]:
    """Peak RSS of a fresh ``pmemsim replay`` of ``path`` with the free checker: (after imports,
    whole run, distinct states judged)."""
    import json

    argv = [sys.executable, "-c", _peak_rss_code(), path, "--checker", "freecheck:check"]
    argv += ["--engine", engine, "--no-shrink", "--json"]
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    try:
        code, base, peak = (int(v) for v in result.stderr.split()[-3:])
    except ValueError:
        code, base, peak = -1, 0, 0
    if code != 0:
        raise RuntimeError(f"replay of {path} exited {code}: {result.stdout[-400:]}{result.stderr[-400:]}")
    return base, peak, int(json.loads(result.stdout)["distinct_images"])


def parse_memory(stores: int, engines: Sequence[str] = ("ReorderAccumulative", "NoReorderDoCheck")) -> None:
    """Peak memory of a whole ``pmemsim replay`` (a fresh process) of pmemcheck logs of ``stores``
    STOREs and of a tenth of that, so that growth with the log's length shows.

    A single-process replay of a pmemcheck log reads, cuts and explores it as it comes
    (:mod:`pmemsim.persistence.stream`): what stays is the pool, the atoms in flight, the
    visible markers, and one entry per distinct state judged (the deduplication set and
    the verdict cache). The workload's images are all distinct, so that last part grows
    with the states checked: the figures say how much per state.
    """
    if not os.path.exists("/proc/self/status"):
        print("memory: skipped (needs /proc/self/status)")
        return
    work = _scratch_dir()
    mib = 1 << 20
    try:
        env = _environment(work)
        with open(os.path.join(work, "freecheck.py"), "w") as f:
            f.write(FREE_PY)
        sizes = sorted({max(1, stores // 10), stores})
        logs = {n: _store_log(n, work) for n in sizes}
        print(f"memory of a whole `pmemsim replay` (free Python checker, pool {POOL // 1024} KiB), peak RSS:")
        for engine in engines:
            cells, points = [], []
            for n in sizes:
                path, pool, pristine = logs[n]
                with open(pool, "wb") as f:
                    f.write(pristine)
                base, peak, states = replay_peak(path, env, work, engine)
                log_mib = os.path.getsize(path) / mib
                cells.append(f"{n:,} stores (log {log_mib:.0f} MiB, {states:,} states): {peak / mib:.0f} MiB")
                points.append((peak, states, os.path.getsize(path)))
            line = f"  {engine:<22}" + "; ".join(cells) + f" (after imports: {base / mib:.0f} MiB)"
            if len(points) == 2 and points[1][1] > points[0][1]:
                (p0, s0, b0), (p1, s1, b1) = points
                line += (
                    f"; growth {(p1 - p0) / (s1 - s0):.0f} B per more distinct state, "
                    f"{(p1 - p0) / (b1 - b0):.2f}x the log's growth"
                )
            print(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_versus_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the sections above (pmreorder side by side, serial fraction, memory)."""
    parser.add_argument(
        "--pmreorder", metavar="DIR", default=None, help="PMDK pmreorder's directory: time replay against it"
    )
    parser.add_argument("--sizes", default="1000,10000,100000", help="STOREs of the free-checker logs")
    parser.add_argument(
        "--program-stores", default="1000,300", help="STOREs of the C and the Python program-checker logs"
    )
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs per case (median)")
    parser.add_argument("--serial-stores", type=int, default=10_000, help="STOREs of the serial-fraction log")
    parser.add_argument(
        "--memory-stores",
        type=int,
        default=1_000_000,
        help="STOREs of the larger memory log; a tenth of it is measured too (0: no)",
    )
    parser.add_argument("--versus-only", action="store_true", help="run only these sections")


def versus_sections(args: argparse.Namespace) -> bool:
    """pmreorder side by side, the serial fraction and its projection, peak memory; whether targets hold."""
    sizes = [int(n) for n in args.sizes.split(",") if n]
    c_stores, py_stores = (int(n) for n in args.program_stores.split(","))
    met = versus_pmreorder(args.pmreorder, sizes, (c_stores, py_stores), args.pairs)
    met &= serial_fraction(args.serial_stores) >= 8
    image_handover()
    if args.memory_stores:
        parse_memory(args.memory_stores)
    return met


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when ReorderAccumulative reaches the single-process target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None, help="directory for the pmemcheck log (default: a temp dir)")
    parser.add_argument("--engines", default="NoReorderDoCheck,ReorderAccumulative,ReorderPartial,Exhaustive")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine and mode; the best is kept")
    parser.add_argument("--scale", type=int, default=10, help="also time K x the transactions (0: skip)")
    parser.add_argument("--pushes", type=int, default=150, help="list pushes of the lazy-exploration section")
    add_versus_arguments(parser)
    args = parser.parse_args(argv)
    if args.versus_only:
        return 0 if versus_sections(args) else 1
    model_counts()
    lazy_exploration(args.pushes)

    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="bench-crash-"))
    os.makedirs(out, exist_ok=True)
    pool_path = os.path.join(out, "pool.img")
    with open(pool_path, "wb") as f:
        f.write(initial_pool())  # pmreorder replays onto this file in place: copy it first
    t0 = time.perf_counter()
    log = workload(args.transactions, pool_path)
    print(
        f"workload: {args.transactions} transactions, {len(log)} records ({time.perf_counter() - t0:.2f} s)"
    )
    log_path = os.path.join(out, "store.log")
    dump_pmemcheck(log, log_path)
    print(f"pmemcheck log: {log_path} (pool image: {pool_path})")
    print(f"cores available: {len(os.sched_getaffinity(0))}")

    print(
        f"{'engine':<22}{'states':>10}{'1 proc s':>10}{'states/s':>12}{f'{args.workers} procs s':>12}"
        f"{'states/s':>12}{'speed-up':>10}"
    )
    accumulative_rate = 0.0
    for engine in args.engines.split(","):
        repeat = 1 if engine == "Exhaustive" else args.repeat  # seconds per run already
        states, secs, secs_n = compare(log, engine, args.workers, repeat)
        if engine == "ReorderAccumulative":
            accumulative_rate = states / secs
        print(line(engine, states, secs, secs_n), flush=True)
    if args.scale > 1:
        big = workload(args.transactions * args.scale, pool_path)
        print(f"scaled workload (not the issue's fixed one): {args.transactions * args.scale} transactions")
        for engine in ("ReorderAccumulative", "ReorderPartial"):
            states, secs, secs_n = compare(big, engine, args.workers, 1)
            print(line(f"{engine} x{args.scale}", states, secs, secs_n), flush=True)
    distributed_speedups(workload(args.transactions, pool_path), args.workers)
    met = accumulative_rate >= TARGET
    print(
        f"ReorderAccumulative single-process: {accumulative_rate:,.0f} states/s "
        f"(target {TARGET:,}): {'met' if met else 'NOT met'}"
    )
    met &= versus_sections(args)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
