"""Lazy exploration (pmemsim.persistence.lazy) against the eager Exhaustive and the x86 oracle.

Lazy Exhaustive branches only over the lines a Python checker reads. On every random
log (``support.logs``) both explorations must reach the same verdict, and every
failure the lazy one reports must name an image the brute-force oracle
(``support.x86_oracle``) says a crash can leave, under the markers of its crash point,
and that the checker itself rejects when handed that image as plain bytes. Checkers
that read a few ranges through every memoryview idiom, read ranges that depend on what
they read, see markers, or read the whole image (which must fall back to eager
exploration) are all exercised, on one to three files with non-temporal stores.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.logs import store_logs
from support.x86_oracle import EADR, OracleModel, crash_states

from pmemsim.persistence import (
    CallableChecker,
    CrashReport,
    Exhaustive,
    PersistencyModel,
    Platform,
    Recorder,
    StoreLog,
    plan_replay,
    replay,
)
from pmemsim.persistence import lazy as lazy_module
from pmemsim.persistence.engines import _Lines
from pmemsim.persistence.image import Image
from pmemsim.persistence.model import predecessors
from pmemsim.persistence.shards import explore_shard, merge_shards

LAZY = Exhaustive(lazy_above=0)  # lazy at every crash point, however small
EAGER = Exhaustive(lazy_above=None)
MODELS = {
    "adr": (PersistencyModel(Platform.ADR, 64), OracleModel()),
    "eadr": (PersistencyModel(Platform.EADR, 64), EADR),
}

# --- reading ranges through memoryview idioms ---------------------------------------------------

#: Ways to read bytes [lo, hi) of an image; each gives back exactly those bytes.
READS: dict[str, Callable[[Any, int, int], bytes]] = {
    "bytes": lambda img, lo, hi: bytes(img[lo:hi]),
    "from_bytes": lambda img, lo, hi: int.from_bytes(img[lo:hi], "little").to_bytes(hi - lo, "little"),
    "index": lambda img, lo, hi: bytes(img[i] for i in range(lo, hi)),
    "negative": lambda img, lo, hi: bytes(img[i - len(img)] for i in range(lo, hi)),
    "struct": lambda img, lo, hi: struct.unpack_from(f"{hi - lo}s", img[lo:hi])[0],
    "memoryview": lambda img, lo, hi: memoryview(img[lo:hi]).tobytes(),
    "tobytes": lambda img, lo, hi: img[lo:hi].tobytes(),
    "nested": lambda img, lo, hi: bytes(img[lo:][: hi - lo]),
    "hex": lambda img, lo, hi: bytes.fromhex(img[lo:hi].hex()),
    "cast": lambda img, lo, hi: bytes(img[lo:hi].cast("B").tolist()),
    "stepped": lambda img, lo, hi: bytes(img[lo:hi:2]) + bytes(img[lo + 1 : hi : 2]),
    "sha": lambda img, lo, hi: hashlib.sha256(img[lo:hi]).digest(),
    "iterate": lambda img, lo, hi: bytes(list(img[lo:hi])),
}


@dataclass(frozen=True)
class Reading:
    """Read ``ranges`` of file ``fidx`` (each with a READS idiom); the second range only when the
    first byte read is odd (reads that depend on content). Inconsistent when a hash of what was
    read (and of the markers, with ``ctx``) is 0 mod ``modulus``."""

    reads: tuple[tuple[int, int, int, str], ...]  # (file index, lo, hi, idiom)
    modulus: int
    with_ctx: bool

    def verdict(self, images: Sequence[Any], markers: tuple[str, ...]) -> bool:
        h = hashlib.blake2b(digest_size=8)
        first = None
        for n, (fidx, lo, hi, how) in enumerate(self.reads):
            if n == 1 and first is not None and first % 2 == 0:
                continue
            data = READS[how](images[fidx], lo, hi)
            first = data[0] if first is None and data else first
            h.update(bytes([n]) + data)
        if self.with_ctx:
            h.update("|".join(markers).encode())
        return int.from_bytes(h.digest(), "little") % self.modulus != 0

    def checker(self, keys: Sequence[str]) -> CallableChecker:
        """The checker over every file (``all_files``), with or without ``ctx``."""
        if self.with_ctx:

            def check_ctx(images: dict[str, Any], ctx: Any) -> bool:
                return self.verdict([images[k] for k in keys], ctx.markers)

            return CallableChecker(check_ctx, all_files=True)

        def check(images: dict[str, Any]) -> bool:
            return self.verdict([images[k] for k in keys], ())

        return CallableChecker(check, all_files=True)


@st.composite
def readings(draw: st.DrawFn, log: StoreLog) -> Reading:
    sizes = [info.size for info in log.files.values()]
    reads = []
    for _ in range(draw(st.integers(1, 3))):
        fidx = draw(st.integers(0, len(sizes) - 1))
        lo = draw(st.integers(0, sizes[fidx] - 1))
        hi = draw(st.integers(lo + 1, min(sizes[fidx], lo + 80)))
        reads.append((fidx, lo, hi, draw(st.sampled_from(sorted(READS)))))
    return Reading(tuple(reads), draw(st.sampled_from([2, 3, 5])), draw(st.booleans()))


# --- the image of a failure ---------------------------------------------------------------------


def failure_image(log: StoreLog, model: PersistencyModel, failure: Any) -> tuple[bytes, ...]:
    """The concrete image a failure reports: the durable base of its epoch plus the atoms it applied."""
    plan = plan_replay(log, model=model)
    files = [
        bytearray(info.initial if info.initial is not None else bytes(info.size))
        for info in log.files.values()
    ]
    for epoch in plan.epochs[: failure.epoch]:
        for atom in epoch.flushed:
            files[atom.fidx][atom.offset : atom.end] = atom.data
    for atom in sorted(failure.applied, key=lambda a: a.id):
        files[atom.fidx][atom.offset : atom.end] = atom.data
    return tuple(bytes(f) for f in files)


def run_both(
    log: StoreLog, checker: CallableChecker, model: PersistencyModel
) -> tuple[CrashReport, CrashReport]:
    lazy = replay(log, checker, engine=LAZY, model=model, allow_empty=True, max_failures=10_000)
    eager = replay(log, checker, engine=EAGER, model=model, allow_empty=True, max_failures=10_000)
    return lazy, eager


def same_verdict(lazy: CrashReport, eager: CrashReport) -> None:
    assert lazy.complete and eager.complete
    assert (lazy.inconsistent > 0) == (eager.inconsistent > 0), (str(lazy), str(eager))
    assert (lazy.errors > 0) == (eager.errors > 0), (str(lazy), str(eager))
    assert lazy.ok == eager.ok
    assert lazy.states_checked <= eager.states_checked  # a lazy state stands for one image or more


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=60)
@given(data=st.data())
def test_lazy_and_eager_agree_and_lazy_failures_are_real(name: str, data: st.DataObject) -> None:
    model, oracle_model = MODELS[name]
    log = data.draw(store_logs())
    reading = data.draw(readings(log))
    keys = list(log.files)
    lazy, eager = run_both(log, reading.checker(keys), model)
    same_verdict(lazy, eager)
    states = crash_states(log, oracle_model)
    bad = {(img, m) for img, m in states if not reading.verdict([memoryview(b) for b in img], m)}
    assert bool(bad) == (not lazy.ok)
    eager_bad = {
        (failure_image(log, model, f), tuple(f.markers) if reading.with_ctx else ()) for f in eager.failures
    }
    for failure in lazy.failures:
        image = failure_image(log, model, failure)
        markers = tuple(failure.markers) if reading.with_ctx else None
        assert (image, markers or ()) in eager_bad, "a lazy failure the eager run does not report"
        if markers is None:  # judged without markers: any crash point's markers
            assert any(img == image for img, _ in bad), "a lazy failure names an image no crash rejects"
        else:
            assert (image, markers) in bad, "a lazy failure names a state no crash rejects"


@settings(max_examples=40)
@given(log=store_logs(), how=st.sampled_from(["bytes", "struct", "obj", "iterate", "memoryview", "writable"]))
def test_checkers_that_read_the_whole_image_fall_back_to_eager(log: StoreLog, how: str) -> None:
    keys = list(log.files)

    def whole(img: Any) -> bytes:
        if how == "bytes":
            return bytes(img)
        if how == "struct":
            return struct.unpack_from(f"{len(img)}s", img)[0]  # type: ignore[no-any-return]
        if how == "obj":
            return bytes(img.obj)
        if how == "iterate":
            return bytes(list(img))
        if how == "writable":  # a memoryview refuses a writable buffer: pack_into raises
            struct.pack_into("<Q", img[0:8], 0, 1)
            return b""
        return memoryview(img).tobytes()

    def check(images: dict[str, Any]) -> bool:
        return hashlib.blake2b(b"".join(whole(images[k]) for k in keys)).digest()[0] % 3 != 0

    checker = CallableChecker(check, all_files=True)
    lazy, eager = run_both(log, checker, PersistencyModel())
    same_verdict(lazy, eager)
    # Eager at every crash point: the very same states and failures.
    assert lazy.states_checked == eager.states_checked
    assert lazy.inconsistent == eager.inconsistent
    assert [(f.epoch, f.seq) for f in lazy.failures] == [(f.epoch, f.seq) for f in eager.failures]
    assert lazy.checker_calls >= eager.checker_calls  # plus the runs that escaped


def test_per_line_independence_holds_for_every_atom_kind() -> None:
    """The lazy walk chooses lines independently: every predecessor of an atom is in its line."""

    @settings(max_examples=200)
    @given(log=store_logs(max_in_flight=12))
    def check(log: StoreLog) -> None:
        for epoch in plan_replay(log).epochs:
            atoms = epoch.inflight
            for atom, preds in zip(atoms, predecessors(atoms), strict=True):
                assert all(atoms[j].line == atom.line for j in preds)

    check()


# --- scale: only the lines read branch ----------------------------------------------------------

PAGE_HDR, PAGE, POOL = 0x40, 0x1000, 0x2000
PAGE_DATA = bytes((i * 7 + 3) & 0xFF or 1 for i in range(4096))


def page_copy(torn_check: bool) -> tuple[StoreLog, Callable[[Any], bool]]:
    """A 4 KiB memcpy persisted, then a header flag: 64 lines of 9 contents each in one epoch."""
    rec = Recorder()
    rec.register_file("pool", None, POOL)
    rec.store("pool", PAGE, PAGE_DATA)
    rec.persist("pool", PAGE, len(PAGE_DATA))
    rec.store("pool", PAGE_HDR, struct.pack("<Q", 1))
    rec.persist("pool", PAGE_HDR, 8)
    entry = PAGE + 64 * 5

    def check(image: Any) -> bool:
        if int.from_bytes(image[PAGE_HDR : PAGE_HDR + 8], "little") == 1:
            return bytes(image[entry : entry + 64]) == PAGE_DATA[320:384]
        if torn_check:  # before the flag: the entry's word 1 never lands without word 7 of the next line
            return not (image[entry + 8 : entry + 16] == PAGE_DATA[328:336] and image[entry + 64] == 0)
        return True

    return rec.log, check


def test_a_4k_memcpy_checker_reading_a_header_and_an_entry_gets_a_complete_verdict() -> None:
    log, check = page_copy(torn_check=False)
    report = replay(log, check)
    assert report.ok and report.complete
    assert report.states_checked == 3  # the header at base, then both contents of the flag
    eager = replay(log, check, engine=EAGER)
    assert eager.ok and not eager.complete  # 9^64 images: capped


def test_a_torn_4k_memcpy_is_found_with_a_concrete_image() -> None:
    log, check = page_copy(torn_check=True)
    report = replay(log, check)
    assert not report.ok and report.complete
    # Line 5 has 7 contents with its word 1 on media, line 6 one content with its first byte at 0.
    assert report.inconsistent == 7
    for failure in report.failures:
        image = failure_image(log, PersistencyModel(), failure)
        assert check(memoryview(image[0])) is False
        assert all(a.line == failure.applied[0].line for a in failure.applied)  # only line 5 changed


def linked_list(pushes: int) -> tuple[StoreLog, Callable[[Any], bool]]:
    """``pushes`` pushes of 96-byte nodes (key, payload, checksum), each node and head in one step."""
    rec = Recorder()
    size = 64 + 128 * (pushes + 1)
    rec.register_file("pool", None, size)
    head = 0
    for k in range(pushes):
        at = 128 + 128 * k
        words = [k + 1, head, *(k * 100 + i for i in range(9))]
        node = struct.pack("<12Q", *words, sum(words) & (2**64 - 1))
        rec.store("pool", at, node)
        rec.store("pool", 0, struct.pack("<Q", at))
        rec.persist("pool", 0, size)
        head = at

    def check(image: Any) -> bool:
        at = int.from_bytes(image[0:8], "little")
        seen = 0
        while at:
            words = struct.unpack("<12Q", image[at : at + 96])
            if sum(words[:11]) & (2**64 - 1) != words[11]:
                return False
            at, seen = words[1], seen + 1
        return True

    return rec.log, check


def test_pushes_to_a_list_are_explored_by_what_the_checker_reads() -> None:
    log, check = linked_list(6)
    lazy = replay(log, check)
    eager = replay(log, check, engine=EAGER)
    assert lazy.complete and eager.complete
    assert not lazy.ok and not eager.ok  # the head can land before the node
    assert lazy.states_checked < eager.states_checked
    for failure in lazy.failures:
        assert check(memoryview(failure_image(log, PersistencyModel(), failure)[0])) is False


# --- escapes, determinism, workers --------------------------------------------------------------


def test_a_view_kept_from_an_earlier_call_or_unstable_reads_fall_back() -> None:
    log, _ = page_copy(torn_check=False)
    kept: list[Any] = []

    def keeps(image: Any) -> bool:
        if kept:
            kept[0][PAGE]
        kept.append(image)
        return image[PAGE + 8] != 0xFF

    calls = [0]

    def unstable(image: Any) -> bool:
        calls[0] += 1
        line = PAGE + 64 * (calls[0] % 3)
        return image[line] != 0xFF

    for check in (keeps, unstable):
        kept.clear()
        report = replay(log, check, max_states=300)
        assert report.ok and not report.complete  # eager, capped: the walk gave up
        kept.clear()
        eager = replay(log, check, engine=EAGER, max_states=300)
        assert report.states_checked == eager.states_checked
        assert report.limits == eager.limits


def test_lazy_image_behaves_like_a_memoryview() -> None:
    content = bytes(range(256)) * 2
    image = Image([len(content)], [content])

    no_lines = _Lines([], image, 10)  # no line to choose: the image reads as it is
    ref = memoryview(content)
    problems: list[str] = []

    def judge(views: Sequence[Any]) -> None:
        img = views[0]
        pairs = [
            (len(img), len(ref)),
            (isinstance(img, memoryview), True),  # as without lazy reads (type checkers assert it)
            (img[3], ref[3]),
            (img[-1], ref[-1]),
            (bytes(img[10:20]), bytes(ref[10:20])),
            (bytes(img[20:10]), b""),
            (bytes(img[-8:]), bytes(ref[-8:])),
            (bytes(img[100:10:-3]), bytes(ref[100:10:-3])),
            (img[0:16].cast("Q").tolist(), ref[0:16].cast("Q").tolist()),
            (img[5:9] == ref[5:9], True),
            (img[5:9] == b"nope", False),
            (5 in img[0:8], True),
            (hash(img[0:4]), hash(bytes(ref[0:4]))),
            (
                (img.nbytes, img.readonly, img.format, img.itemsize, img.ndim, img.shape),
                (512, True, "B", 1, 1, (512,)),
            ),
        ]
        problems.extend(f"{got!r} != {want!r}" for got, want in pairs if got != want)
        for bad, exc in ((lambda: img[512], IndexError), (lambda: img.__setitem__(0, 1), TypeError)):
            try:
                bad()
                problems.append(f"no {exc.__name__}")
            except exc:
                pass

    leaves = lazy_module.walk(no_lines, image, judge, 10)
    image.close()
    assert problems == []
    assert isinstance(leaves, list) and len(leaves) == 1 and leaves[0].path == ()


def many_copies(epochs: int) -> tuple[StoreLog, Callable[[Any], bool]]:
    rec = Recorder()
    rec.register_file("pool", None, 0x400)
    for k in range(epochs):
        rec.store("pool", 0x100, bytes([k + 1]) * 256)
        rec.persist("pool", 0x100, 256)
        rec.store("pool", 0, struct.pack("<Q", k + 1))
        rec.persist("pool", 0, 8)

    def check(image: Any) -> bool:
        n = int.from_bytes(image[0:8], "little")
        return n == 0 or (image[0x100 + 64 * (n % 4)] in (n, n - 1 if n > 1 else 0) and image[0x1C0] != 7)

    return rec.log, check


def _summary(report: CrashReport) -> tuple[Any, ...]:
    return (
        report.states_checked,
        report.inconsistent,
        report.errors,
        [(f.epoch, f.seq, f.prefix, tuple(a.id for a in f.applied)) for f in report.failures],
    )


def test_workers_executors_and_shards_give_the_lazy_report_of_one_process() -> None:
    log, check = many_copies(24)
    one = replay(log, check)
    assert not one.ok and one.complete and one.failures
    assert _summary(replay(log, check, workers=2)) == _summary(one)
    assert _summary(replay(log, check, isolate=True)) == _summary(one)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert _summary(replay(log, check, executor=pool, slices=5)) == _summary(one)
    docs = [json.loads(json.dumps(explore_shard(log, check, k, 3, slices=7))) for k in (1, 2, 3)]
    assert _summary(merge_shards(log, check, docs, slices=7)) == _summary(one)


def test_program_checkers_keep_eager_exploration() -> None:
    log, _ = page_copy(torn_check=False)
    report = replay(log, ["true"], max_states=100)
    assert not report.complete and report.limits  # the memcpy epoch capped, honestly
    assert report.states_checked == report.checker_calls == 100 + 2  # capped epoch, then the flag's 2


def test_a_timeout_inside_a_lazy_read_leaves_the_image_intact() -> None:
    log, check = many_copies(6)
    hangs = [0]

    def hanging(image: Any) -> bool:
        n = int.from_bytes(image[0:8], "little")
        if n == 3 and image[0x100] == 3 and hangs[0] < 2:
            hangs[0] += 1
            while True:  # the watchdog's exception lands inside the lazy image's own code
                image[0x100 + 64 * (n % 4)]
        return check(image)

    lazy = replay(log, CallableChecker(hanging, timeout=0.2), max_failures=10_000)
    hangs[0] = 0
    eager = replay(log, CallableChecker(hanging, timeout=0.2), engine=EAGER)
    assert lazy.errors and eager.errors  # the timeouts
    assert (lazy.inconsistent > 0) == (eager.inconsistent > 0)
    # After the epoch that timed out, every verdict is the one a checker that never hangs gives:
    # the image was left intact.
    hung = max(f.epoch for f in lazy.failures if f.verdict.value == "error")
    plain = replay(log, check, max_failures=10_000)
    after = [(f.epoch, f.seq, f.applied, f.verdict) for f in lazy.failures if f.epoch > hung]
    assert after == [(f.epoch, f.seq, f.applied, f.verdict) for f in plain.failures if f.epoch > hung]
    assert after  # the comparison covers some failures


def test_the_command_line_counting_checker_reads_lazily() -> None:
    from pmemsim.persistence import CountingChecker

    log, check = page_copy(torn_check=False)
    report = replay(log, CountingChecker(CallableChecker(check)))
    assert report.ok and report.complete and report.states_checked == 3
