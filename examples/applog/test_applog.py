"""Tests of applog with pmemsim's pytest plugin: fixtures, the marker, faults, crash checks, a machine.

Run with ``pytest examples/applog`` (the plugin loads itself once pmemsim is installed).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from applog import AppLog, BuggyAppLog, LazyAppLog, LogFull, check, parse
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import pmemsim
from pmemsim import Config, ErrorCode, Granularity, PmemSet, PmemsetError

# -- fixtures -------------------------------------------------------------------------------------


def test_append_and_read_back(pmemset, pmem_file):
    log = AppLog.open(pmemset, pmem_file)
    log.append(b"hello")
    log.append(b"persistent world")
    assert log.entries() == [b"hello", b"persistent world"]


def test_entries_are_in_the_file_after_the_set_is_gone(pmem_space, pmem_file):
    with PmemSet(Config(Granularity.PAGE, address_space=pmem_space)) as pset:
        AppLog.open(pset, pmem_file).append(b"kept")
    with PmemSet(Config(Granularity.PAGE, address_space=pmem_space)) as pset:
        assert AppLog.open(pset, pmem_file).entries() == [b"kept"]


def test_a_full_log_refuses_and_keeps_its_entries(pmemset, make_pmem_file):
    log = AppLog.open(pmemset, make_pmem_file(4096))
    log.append(b"x" * 3000)
    with pytest.raises(LogFull):
        log.append(b"y" * 1100)
    assert log.entries() == [b"x" * 3000]


def test_open_reports_a_mapping_failure(pmemset, pmem_file, fault_plan):
    fault_plan.fail_next("map.file")
    with pytest.raises(PmemsetError) as info:
        AppLog.open(pmemset, pmem_file)
    assert info.value.code == ErrorCode.INVALID_PMEM2_MAP
    assert AppLog.open(pmemset, pmem_file).entries() == []  # nothing was left half-done


@pytest.mark.pmemsim(page_size=16384, file_size=65536)
def test_marker_sets_page_size_and_file_size(pmemset, pmem_file):
    assert pmemset.address_space.page_size == 16384
    assert os.path.getsize(pmem_file) == 65536
    AppLog.open(pmemset, pmem_file).append(b"big pages")


def test_on_a_fake_file_system(fs, pmemset, pmem_file):
    # With pyfakefs' `fs`, pmem_file lives in the fake file system (simulator backend only).
    log = AppLog.open(pmemset, pmem_file)
    log.append(b"in memory only")
    assert log.entries() == [b"in memory only"]


# -- crash consistency -------------------------------------------------------------------------------


def test_append_is_crash_consistent(pmemset, pmem_file, crash_check):
    log = AppLog.open(pmemset, pmem_file)
    log.append(b"before recording")
    with crash_check(check):
        log.append(b"first")
        log.append(b"second, longer than a cache line " * 3)


@pytest.mark.pmemsim(device="dax")
def test_append_is_crash_consistent_on_persistent_memory(pmemset, pmem_file, crash_check):
    """On a DAX device a flush persists only its cache lines: the check a missing flush cannot pass."""
    log = AppLog.open(pmemset, pmem_file)
    with crash_check(check):
        log.append(b"second, longer than a cache line " * 3)
    assert pmemset.effective_granularity == Granularity.CACHE_LINE


def test_crash_check_catches_the_buggy_append(pmemset, pmem_file, crash_check):
    log = BuggyAppLog.open(pmemset, pmem_file)
    # Without pytest.raises this test would fail, showing the minimal trace (see docs/testing.md).
    with pytest.raises(pytest.fail.Exception, match="Minimal crash") as info, crash_check(check):
        log.append(b"published too early")
    assert "LOST" in str(info.value) and "PERSISTED" in str(info.value)


# -- durable linearizability: recover=, no checker written -------------------------------------------


@pytest.mark.pmemsim(device="dax")
def test_append_is_durably_linearizable(pmemset, pmem_file, crash_check):
    # parse() is the log's recovery: every crash must leave the entries before or after each append.
    log = AppLog.open(pmemset, pmem_file)
    log.append(b"before recording")
    with crash_check(recover=parse):
        log.append(b"first")
        log.append(b"second, longer than a cache line " * 3)


def test_recovery_catches_the_buggy_append(pmemset, pmem_file, crash_check):
    log = BuggyAppLog.open(pmemset, pmem_file)
    with pytest.raises(pytest.fail.Exception, match="Minimal crash") as info, crash_check(recover=parse):
        log.append(b"published too early")
    assert "recover raised ValueError" in str(info.value)
    assert "allowed: [] (before it) or [b'published too early'] (after it)" in str(info.value)


def test_only_recovery_catches_an_append_that_returns_before_it_is_durable(pmemset, pmem_file, crash_check):
    log = LazyAppLog.open(pmemset, pmem_file)
    with crash_check(check):  # every crash image is a consistent log: the checker has nothing to say
        log.append(b"not durable on return")
    with pytest.raises(pytest.fail.Exception, match="Minimal crash") as info, crash_check(recover=parse):
        log.append(b"lost after append returned")
    # A crash after the append returned (outside any operation) recovers to the log without it.
    assert "outside any operation" in str(info.value)
    assert "allowed: [b'not durable on return', b'lost after append returned'] (the current value)" in str(
        info.value
    )


# -- a stateful test -----------------------------------------------------------------------------------


class AppLogMachine(RuleBasedStateMachine):
    """Appends, reopens and failed opens, compared with a plain list of the entries."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "pool")
        with open(self.path, "wb") as f:
            f.truncate(4 * 4096)
        self.space = pmemsim.SimulatedAddressSpace()
        self.plan = pmemsim.FaultPlan()
        self.pset = PmemSet(Config(Granularity.PAGE, address_space=self.space, fault_plan=self.plan))
        self.log: AppLog | None = AppLog.open(self.pset, self.path)
        self.model: list[bytes] = []

    @precondition(lambda self: self.log is not None)
    @rule(payload=st.binary(max_size=300))
    def append(self, payload: bytes) -> None:
        assert self.log is not None
        try:
            self.log.append(payload)
        except LogFull:
            assert 64 + self.log.used + 8 + len(payload) > self.log.size
        else:
            self.model.append(payload)

    @rule(fail=st.booleans())
    def reopen(self, fail: bool) -> None:
        self.pset.close()
        self.pset = PmemSet(Config(Granularity.PAGE, address_space=self.space, fault_plan=self.plan))
        if fail:
            self.plan.fail_next("map.file")
            with pytest.raises(PmemsetError):
                AppLog.open(self.pset, self.path)
            self.log = None
        else:
            self.log = AppLog.open(self.pset, self.path)

    @invariant()
    def entries_match(self) -> None:
        if self.log is not None:
            assert self.log.entries() == self.model

    def teardown(self) -> None:
        self.pset.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestAppLogMachine = AppLogMachine.TestCase
TestAppLogMachine.settings = settings(
    max_examples=50, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_a_returned_append_is_durable(pmemset, pmem_file, crash_check):
    # The example of docs/testing.md, "What the checker knows": check(image, ctx).
    log = AppLog.open(pmemset, pmem_file)
    judged_after = []

    def check(image, ctx):
        entries = parse(image)  # recovery: what a restart would see
        if ctx.markers[-1:] == ("OP.END",):  # the append had returned
            judged_after.append(entries)
            return entries[-1:] == [bytes.fromhex(ctx.data["payload"])]
        return True  # during the append: old or new

    with crash_check(check):
        pmemset.mark("OP.BEGIN", data={"payload": b"first".hex()})
        log.append(b"first")  # marks APPEND.BEGIN/END itself: sections nest
        pmemset.mark("OP.END")
    assert judged_after == [[b"first"]]
