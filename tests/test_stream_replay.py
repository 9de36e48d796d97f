"""The streaming replay (``pmemsim.persistence.stream``) against the whole-log replay.

A streamed replay must give the whole-log report field for field (failures, their
atoms and crash points, counts, limits, warnings), raise the error the whole-log path
raises, and judge exactly the oracle's states; ``pmemsim replay`` of a pmemcheck log
(which streams in one process) must print and exit as the whole-log path does. Logs
come from the examples, the pmemcheck files under ``tests/data`` and hypothesis.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.examples import check_flag, check_undo, flag_program, torn_program, undo_program
from support.logs import store_logs
from support.x86_oracle import crash_states

from pmemsim.persistence import (
    CallableChecker,
    Fence,
    FileInfo,
    Flush,
    Marker,
    Record,
    Store,
    StoreLog,
    dump_pmemcheck,
    pmemcheck,
    replay,
)
from pmemsim.persistence.log import LogError
from pmemsim.persistence.pmemcheck import PmemcheckStream, StreamFallback
from pmemsim.persistence.saved import read_log, save_log
from pmemsim.persistence.stream import ImagesUnreadable, ListSource, Restart, replay_stream

DATA = Path(__file__).parent / "data" / "pmemcheck"
ENGINES = [
    "Exhaustive",
    "ReorderFull",
    "ReorderAccumulative",
    "ReorderReverseAccumulative",
    "NoReorderDoCheck",
    "ReorderPartial",
    "Random:5:7",
]


def picky(image: memoryview) -> bool:
    """Rejects about a third of the images, by their hash."""
    return hashlib.blake2b(bytes(image), digest_size=2).digest()[0] % 3 != 0


def picky_ctx(image: memoryview, ctx: Any) -> bool:
    """Like :func:`picky`, over the image and the markers and data before the crash point."""
    seed = ("|".join(ctx.markers) + repr(ctx.data)).encode()
    return hashlib.blake2b(bytes(image) + seed, digest_size=2).digest()[0] % 3 != 0


def outcome(run: Callable[[], Any]) -> Any:
    """The report without its time, or the error's type and message."""
    try:
        report = run()
    except (LogError, ValueError, TypeError) as exc:
        # ImagesUnreadable is the LogError the whole-log path raises, told apart for the command line.
        return "LogError" if isinstance(exc, ImagesUnreadable) else type(exc).__name__, str(exc)
    return dataclasses.replace(report, elapsed=0.0)


def both(log: StoreLog, checker: Any, batch: int, **options: Any) -> tuple[Any, Any]:
    """(whole-log replay, streamed replay) of ``log`` in batches of ``batch`` records."""
    whole = outcome(lambda: replay(log, checker, **options))
    streamed = outcome(lambda: replay_stream(ListSource(log, batch), checker, **options).report)
    return whole, streamed


EXAMPLES = [
    (lambda: undo_program(4), check_undo),
    (lambda: undo_program(3, valid_fenced=False), check_undo),
    (lambda: torn_program(copy_on_write=False), picky),
    (lambda: flag_program(fence_between=False), check_flag),
    (lambda: undo_program(5), picky_ctx),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("example", range(len(EXAMPLES)))
@pytest.mark.parametrize("batch", [1, 7, 1 << 14])
def test_examples_stream_to_the_same_report(engine: str, example: int, batch: int) -> None:
    program, checker = EXAMPLES[example]
    log = program()
    whole, streamed = both(log, checker, batch, engine=engine, max_failures=3)
    assert streamed == whole


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    store_logs(),
    st.sampled_from(ENGINES),
    st.sampled_from([picky, picky_ctx]),
    st.integers(1, 12),
    st.integers(0, 4),
    st.sampled_from([None, 3]),
)
def test_random_logs_stream_to_the_same_report(
    log: StoreLog, engine: str, checker: Any, batch: int, max_failures: int, max_states: int | None
) -> None:
    whole, streamed = both(
        log, checker, batch, engine=engine, max_failures=max_failures, max_states=max_states, allow_empty=True
    )
    assert streamed == whole


@settings(max_examples=60, deadline=None)
@given(store_logs(), st.integers(1, 9))
def test_streamed_exhaustive_judges_the_oracle_states(log: StoreLog, batch: int) -> None:
    """Every (image, markers) pair of the independent x86 oracle, each once, and nothing else."""
    seen: list[Any] = []

    def check(images: dict[str, memoryview], ctx: Any) -> None:
        seen.append((tuple(bytes(images[k]) for k in log.files), tuple(ctx.markers)))

    checker = CallableChecker(check, all_files=True)
    report = replay_stream(ListSource(log, batch), checker, allow_empty=True).report
    expected = crash_states(log)
    assert set(seen) == expected
    assert len(seen) == len(expected) == report.states_checked


@pytest.mark.parametrize(
    "records",
    [
        [Marker("TX.BEGIN"), Store("f", 0, b"x"), Fence()],  # a section never closed
        [Store("f", 0, b"x"), Flush("f", 0, 8), Fence(), Marker("TX.END")],  # an END without BEGIN
        [Store("f", 0, b"x"), Flush("f", 0, 8), Fence(), Store("f", 120, b"0123456789")],  # outside
        [Store("g", 0, b"x")],  # an unknown file
        [Marker("TX.BEGIN"), Marker("TX.END"), Fence()],  # no store
    ],
)
@pytest.mark.parametrize("batch", [1, 2, 100])
def test_bad_logs_raise_what_the_whole_log_path_raises(records: list[Record], batch: int) -> None:
    log = StoreLog(records, {"f": FileInfo("f", None, 128)})
    calls: list[int] = []

    def check(image: memoryview) -> bool:
        calls.append(1)
        return False  # a checker error after the bad record would not hide it

    whole, streamed = both(log, check, batch)
    assert isinstance(whole, tuple) and streamed == whole


def test_an_unreadable_image_is_raised_after_the_log_is_checked() -> None:
    log = StoreLog(
        [Store("f", 0, b"x"), Flush("f", 0, 8), Fence(), Marker("TX.END")],
        {"f": FileInfo("f", "/nonexistent/pool", 128)},
    )
    whole, streamed = both(log, picky, 1)
    assert streamed == whole and "TX.END" in whole[1]


def pmemcheck_logs(tmp: Path) -> Iterator[Path]:
    """The pmemcheck files of the test data, and exported examples (their pools written pristine)."""
    yield from sorted(DATA.glob("*.log"))
    for i, (program, _) in enumerate(EXAMPLES):
        log = program()
        for key, info in list(log.files.items()):
            pool = tmp / f"pool{i}-{key}"
            pool.write_bytes(info.initial or bytes(info.size))
            log.files[key] = dataclasses.replace(info, path=str(pool), initial=None)
        path = tmp / f"example{i}.log"
        dump_pmemcheck(log, path)
        yield path


def pmemcheck_cases(tmp: Path) -> Iterator[tuple[Path, StoreLog, dict[str, bytes]]]:
    """(path, log read whole, initial images) of each pmemcheck log that reads without --allow-truncated."""
    for path in pmemcheck_logs(tmp):
        try:
            log = read_log(path)
        except LogError:
            continue  # killed.log: only with --allow-truncated, which does not stream
        images = {key: bytes(info.size) for key, info in log.files.items()}
        for key in log.files:
            if Path(key).exists():
                images[key] = Path(key).read_bytes()
        yield path, log, images


def streamed_outcome(path: Path, checker: Any, chunk_size: int = 1 << 20, **options: Any) -> Any:
    """outcome() of the streamed replay of pmemcheck file ``path``; None when it cannot stream."""
    source = PmemcheckStream(path, chunk_size=chunk_size)
    try:
        return outcome(lambda: replay_stream(source, checker, **options).report)
    except (StreamFallback, Restart):
        return None  # the command line replays those whole


@pytest.mark.parametrize("engine", ["Exhaustive", "ReorderAccumulative", "NoReorderDoCheck"])
@pytest.mark.parametrize("checker", [picky, picky_ctx])
def test_pmemcheck_files_stream_to_the_same_report(tmp_path: Path, engine: str, checker: Any) -> None:
    streamed_any = False
    for path, log, images in pmemcheck_cases(tmp_path):
        options = {"engine": engine, "images": images, "allow_empty": True}
        streamed = streamed_outcome(path, checker, **options)
        if streamed is not None:
            streamed_any = True
            assert streamed == outcome(lambda: replay(log, checker, **options)), path  # noqa: B023
    assert streamed_any


@pytest.mark.parametrize("chunk_size", [1, 5, 64, 1 << 20])
def test_pmemcheck_chunks_stream_to_the_same_report(tmp_path: Path, chunk_size: int) -> None:
    for path, log, images in pmemcheck_cases(tmp_path):
        options = {"images": images, "allow_empty": True}
        streamed = streamed_outcome(path, picky_ctx, chunk_size, **options)
        if streamed is not None:
            assert streamed == outcome(lambda: replay(log, picky_ctx, **options)), path  # noqa: B023


def two_file_log(tmp: Path) -> Path:
    """A pmemcheck log that registers a second file after the first epoch was explored."""
    a, b = tmp / "a.pool", tmp / "b.pool"
    a.write_bytes(bytes(4096))
    b.write_bytes(bytes(4096))
    records = ["START", f"REGISTER_FILE;{a};0x10000;0x1000;0x0"]
    for i in range(3):
        records += [f"STORE;{0x10000 + 8 * i:#x};{i + 1:#x};0x8", f"FLUSH;{0x10000 + 8 * i:#x};0x8", "FENCE"]
    records += [
        f"REGISTER_FILE;{b};0x20000;0x1000;0x0",
        "STORE;0x20000;0x7;0x8",
        "FLUSH;0x20000;0x8",
        "FENCE",
    ]
    path = tmp / "two.log"
    path.write_text("|".join([*records, "STOP"]) + "\n")
    return path


def test_a_file_registered_after_exploring_began_restarts(tmp_path: Path) -> None:
    path = two_file_log(tmp_path)

    with pytest.raises(Restart):  # read 16 bytes at a time: the first epochs come before b.pool shows
        replay_stream(PmemcheckStream(path, chunk_size=16), picky)
    # read whole, both files are known before the first epoch: it streams
    streamed = replay_stream(PmemcheckStream(path), picky).report
    log = read_log(path)
    assert dataclasses.replace(streamed, elapsed=0.0) == dataclasses.replace(replay(log, picky), elapsed=0.0)


def test_memory_does_not_grow_with_the_log() -> None:
    """Ten times the records (the same few states again and again): the same peak, give or take."""

    def records(transactions: int) -> Iterator[list[Record]]:
        for t in range(transactions):
            batch: list[Record] = [Marker("TX.BEGIN")] if t == 0 else []
            batch += [Store("f", 8 * (t % 4), struct.pack("<Q", t % 3)), Flush("f", 0, 64), Fence()]
            yield batch
        yield [Marker("TX.END")]

    class Generated:
        """A log made as it is read: no list of its records exists."""

        def __init__(self, transactions: int) -> None:
            self.log = StoreLog([], {"f": FileInfo("f", None, 4096)})
            self.transactions = transactions

        def batches(self) -> Iterator[list[Record]]:
            return records(self.transactions)

    peaks = []
    for transactions in (2_000, 20_000):
        tracemalloc.start()
        report = replay_stream(Generated(transactions), picky, engine="ReorderAccumulative").report
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert report.epochs == transactions + 1
    assert peaks[1] < 1.5 * peaks[0], peaks


# -- the command line ------------------------------------------------------------------------------


#: The logs the command line replayed whole although it was asked to stream.
WHOLE_LOG_RUNS: list[str] = []


def run_cli(argv: list[str], streams: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``pmemsim replay ARGV`` in this process, streaming or not: (exit status, stdout, stderr)."""
    from pmemsim.cli import main
    from pmemsim.cli import replay as cli_replay

    if not streams:
        monkeypatch.setattr(cli_replay, "_streams", lambda args, checker: None)
    else:  # the whole-log path is taken only for logs that need it
        whole = cli_replay._replay

        def counted(*args: Any) -> Any:
            WHOLE_LOG_RUNS.append(argv[0])
            return whole(*args)

        monkeypatch.setattr(cli_replay, "_replay", counted)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["replay", *argv])
    monkeypatch.undo()
    return code, out.getvalue(), err.getvalue()


def normal(text: str) -> str:
    """Output without times (and a JSON document without its elapsed time)."""
    text = re.sub(r'"elapsed": [0-9.e-]+', '"elapsed": 0', text)
    return re.sub(r"in [0-9.]+s", "in Xs", text)


CHECKS = """\
import hashlib

def picky(image):
    return hashlib.blake2b(bytes(image), digest_size=2).digest()[0] % 3 != 0

def markers(image, ctx):
    return len(ctx.markers) % 2 == 0 or image[0] == 0

def boom(image):
    raise SystemExit("not a verdict")
"""


@pytest.fixture
def cli_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The pmemcheck logs, and the examples saved in pmemsim's format (streamed from memory)."""
    (tmp_path / "streamchecks.py").write_text(CHECKS)
    monkeypatch.chdir(tmp_path)
    saved = []
    for i, (program, _) in enumerate(EXAMPLES):
        path = tmp_path / f"saved{i}.json"
        save_log(program(), path)
        saved.append(path)
    return [*pmemcheck_logs(tmp_path), *saved]


@pytest.mark.parametrize(
    "options",
    [
        ["--checker", "streamchecks:picky", "--json"],
        ["--checker", "streamchecks:picky", "--engine", "ReorderAccumulative"],
        [
            "--checker",
            "streamchecks:markers",
            "--engine",
            "ReorderFull",
            "-x",
            "TX=NoReorderDoCheck",
            "--json",
        ],
        ["--checker-prog", "false", "--engine", "NoReorderDoCheck", "--json", "--no-shrink"],
        ["--checker", "streamchecks:boom", "--engine", "NoReorderDoCheck"],
        ["--checker", "streamchecks:picky", "--engine", "NoReorderNoCheck"],
        ["--checker", "streamchecks:picky", "--image", "nosuchfile=x"],
    ],
)
def test_cli_streams_to_the_same_output(
    cli_logs: list[Path], options: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    WHOLE_LOG_RUNS.clear()
    for path in cli_logs:
        argv = [str(path), *options]
        whole = run_cli(argv, False, monkeypatch)
        streamed = run_cli(argv, True, monkeypatch)
        assert streamed[0] == whole[0], (path, whole[2], streamed[2])
        assert normal(streamed[1]) == normal(whole[1]), path
        assert normal(streamed[2]) == normal(whole[2]), path
        if "--json" in options and whole[0] != 2:
            assert json.loads(streamed[1])["states_checked"] > 0
    assert WHOLE_LOG_RUNS == []  # every one of these logs streams


def test_cli_replays_a_late_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log the stream cannot finish (a file registered late) gets the whole-log path's answer."""
    (tmp_path / "streamchecks.py").write_text(CHECKS)
    monkeypatch.chdir(tmp_path)
    path = two_file_log(tmp_path)
    argv = [str(path), "--checker", "streamchecks:picky", "--json"]
    whole = run_cli(argv, False, monkeypatch)
    WHOLE_LOG_RUNS.clear()
    # Read 16 bytes at a time: the first epochs are explored before the second file shows.
    monkeypatch.setattr(pmemcheck, "PmemcheckStream", functools.partial(PmemcheckStream, chunk_size=16))
    streamed = run_cli(argv, True, monkeypatch)
    assert (streamed[0], normal(streamed[1])) == (whole[0], normal(whole[1]))
    assert [str(path)] == WHOLE_LOG_RUNS
