"""Crash exploration beyond one machine: executors, Dask ``distributed`` and shards give one report.

For every engine, the report of a replay with one process, with forked workers, on a
two-worker Dask ``LocalCluster`` (through ``Client.get_executor()``), on a process pool,
and merged from shards (through their JSON) is the same: states, distinct images,
failures with their atoms and crash points, limits. Then the command line: ``--dask
local:2``, ``--shard K/N`` and ``pmemsim merge`` (bad shards are bad input), and a worker
lost mid-run whose slice the scheduler retries.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.checkers import dies_once, picky, picky_with_markers, set_environment
from support.logs import store_logs

from pmemsim.persistence import (
    CrashReport,
    Engine,
    Exhaustive,
    Random,
    Recorder,
    ReorderAccumulative,
    ReorderFull,
    ReorderPartial,
    StoreLog,
    replay,
    save_log,
)
from pmemsim.persistence.shards import ShardError, explore_shard, merge_shards

distributed = pytest.importorskip("distributed", reason="Dask distributed comes with pmemsim[dask]")

REPO = Path(__file__).resolve().parent.parent
ENGINES: list[Engine] = [
    Exhaustive(max_states_per_epoch=64),
    ReorderAccumulative(),
    ReorderPartial(max_seq=4),
    Random(n=5),
    ReorderFull(max_states_per_epoch=40),
]


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[concurrent.futures.Executor]:
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        yield client.get_executor()


def comparable(report: CrashReport) -> dict[str, Any]:
    d = report.to_dict()
    for how_it_ran in ("checker_calls", "elapsed", "workers", "warnings"):
        d.pop(how_it_ran)
    return d


def merged(log: StoreLog, checker: Any, shards: int, **kwargs: Any) -> CrashReport:
    docs = [
        json.loads(json.dumps(explore_shard(log, checker, k, shards, **kwargs))) for k in range(1, shards + 1)
    ]
    return merge_shards(log, checker, docs, allow_empty=True, **kwargs)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=store_logs(max_records=40, max_in_flight=10), markers=st.booleans(), shards=st.integers(1, 4))
def test_every_way_of_running_gives_the_same_report(
    dask_executor: concurrent.futures.Executor, engine: Engine, log: StoreLog, markers: bool, shards: int
) -> None:
    checker = picky_with_markers if markers else picky
    one = replay(log, checker, engine=engine, allow_empty=True)
    others = {
        "workers=2": replay(log, checker, engine=engine, workers=2, allow_empty=True),
        "dask LocalCluster(2)": replay(log, checker, engine=engine, executor=dask_executor, allow_empty=True),
        f"{shards} merged shards": merged(log, checker, shards, engine=engine),
    }
    for how, report in others.items():
        assert comparable(report) == comparable(one), how
        assert report == one, how


def test_a_process_pool_is_an_executor_too() -> None:
    log = _workload()
    one = replay(log, picky)
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        assert replay(log, picky, executor=pool) == one


def test_a_lost_worker_is_retried_and_the_result_is_the_same(
    dask_executor: concurrent.futures.Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "died"
    log = _workload()
    monkeypatch.setenv("DIES_ONCE_FLAG", str(flag))
    flag.touch()  # the local run must not die
    one = replay(log, dies_once)
    flag.unlink()
    # The workers read the variable from their own environment: set it there too.
    client = dask_executor._client  # type: ignore[attr-defined]
    client.run(set_environment, "DIES_ONCE_FLAG", str(flag))
    again = replay(log, dies_once, executor=dask_executor)
    assert flag.exists()  # a worker did die
    assert again == one


def test_shards_of_another_log_or_missing_shards_are_refused() -> None:
    log = _workload()
    docs = [explore_shard(log, picky, k, 3) for k in (1, 2, 3)]
    with pytest.raises(ShardError, match=r"missing \[2\]"):
        merge_shards(log, picky, [docs[0], docs[2]])
    with pytest.raises(ShardError, match=r"duplicated \[1\]"):
        merge_shards(log, picky, [docs[0], docs[0], docs[1], docs[2]])
    other = _workload(extra=True)
    with pytest.raises(ShardError, match="made from another log"):
        merge_shards(other, picky, docs)
    with pytest.raises(ShardError, match="not a pmemsim shard result"):
        merge_shards(log, picky, [{"format": "something else"}])


def _workload(extra: bool = False) -> StoreLog:
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    for i in range(12):
        rec.mark("TX.BEGIN")
        rec.store("pool", 64 * (i % 5), bytes([i + 1]) * 16)
        rec.store("pool", 512 + 8 * (i % 3), bytes([i]) * 8)
        rec.persist("pool", 0, 1024)
        rec.mark("TX.END")
    if extra:
        rec.store("pool", 0, b"x")
    return rec.log


# -- the command line ----------------------------------------------------------------------------


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _without_timing(doc: dict[str, Any]) -> dict[str, Any]:
    for key in ("checker_calls", "elapsed", "workers", "warnings"):
        doc.pop(key)
    return doc


def test_cli_shards_merge_into_the_single_run(tmp_path: Path) -> None:
    save_log(_workload(), tmp_path / "log.json")
    check = ("--checker", "support.checkers:picky")
    single = _run(tmp_path, "replay", "log.json", *check, "--json")
    assert single.returncode == 1, single.stderr
    for k in (1, 2, 3):
        shard = _run(tmp_path, "replay", "log.json", *check, "--shard", f"{k}/3")
        assert shard.returncode == 0, shard.stderr
        (tmp_path / f"shard{k}.json").write_text(shard.stdout)
        assert json.loads(shard.stdout)["format"] == "pmemsim-crash-shard"
    merge = _run(tmp_path, "merge", "shard1.json", "shard2.json", "shard3.json", "--json")
    assert merge.returncode == 1, merge.stderr
    assert _without_timing(json.loads(merge.stdout)) == _without_timing(json.loads(single.stdout))
    missing = _run(tmp_path, "merge", "shard1.json", "shard3.json")
    assert missing.returncode == 2 and "missing [2]" in missing.stderr
    twice = _run(tmp_path, "merge", "shard1.json", "shard1.json", "shard2.json", "shard3.json")
    assert twice.returncode == 2 and "duplicated [1]" in twice.stderr
    (tmp_path / "junk.json").write_text("[1, 2")
    junk = _run(tmp_path, "merge", "junk.json")
    assert junk.returncode == 2 and "junk.json: not JSON" in junk.stderr
    for name in (
        "shard1.json",
        "shard2.json",
        "shard3.json",
    ):  # hand-edited params: bad input, not a traceback
        doc = json.loads((tmp_path / name).read_text())
        doc["params"]["max_states"] = "5"
        (tmp_path / f"edited-{name}").write_text(json.dumps(doc))
    edited = _run(tmp_path, "merge", "edited-shard1.json", "edited-shard2.json", "edited-shard3.json")
    assert edited.returncode == 2 and "params.max_states is '5'" in edited.stderr, edited.stderr
    bad = _run(tmp_path, "replay", "log.json", *check, "--shard", "4/3")
    assert bad.returncode == 2 and "expected K/N with 1 <= K <= N" in bad.stderr


def test_cli_dask_local_cluster_gives_the_single_run(tmp_path: Path) -> None:
    save_log(_workload(), tmp_path / "log.json")
    check = ("--checker", "support.checkers:picky", "--json")
    single = _run(tmp_path, "replay", "log.json", *check)
    with contextlib.ExitStack() as stack:
        # Dask's default HTTP port taken (another cluster, another test run): no matter.
        sock = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken by someone else: the same condition
            sock.bind(("", 8787))
            sock.listen()
        dask = _run(tmp_path, "replay", "log.json", *check, "--dask", "local:2")
    assert dask.returncode == single.returncode == 1, dask.stderr
    assert "8787" not in dask.stderr
    assert _without_timing(json.loads(dask.stdout)) == _without_timing(json.loads(single.stdout))
    missing = _run(
        tmp_path, "replay", "log.json", "--checker-prog", "no-such-checker-anywhere", "--dask", "local:1"
    )
    assert missing.returncode == 2 and "not found" in missing.stderr
    bad = _run(tmp_path, "replay", "log.json", *check, "--dask", "local:zero")
    assert bad.returncode == 2 and "expected local:N" in bad.stderr


def test_program_checkers_missing_on_a_worker_are_refused_up_front() -> None:
    import argparse

    from pmemsim.cli.replay import _check_workers_can_run
    from pmemsim.persistence import ProgramChecker

    class Workers:
        def run(self, fn: Any, *args: Any) -> dict[str, Any]:
            return {"tcp://10.0.0.1:1": "/usr/bin/true", "tcp://10.0.0.2:1": None}

    with pytest.raises(ValueError, match=r"'true' is not found on worker\(s\) tcp://10.0.0.2:1"):
        _check_workers_can_run(
            Workers(), ProgramChecker("true"), argparse.Namespace(checker=None), ProgramChecker
        )
