"""Fault sweeps over a user's own test, run the way users meet them: test files through pytester.

The structure under test is a small persistent log written here as a user would, with
bugs planted on purpose: an error path left unhandled, a descriptor and a reservation
leaked on an error path, a flush failure ignored. Every expected (site, hit) comes from
the test's own count of the hits (``fault_plan.hits`` written by its counting run), or
from where the planted line is in the source, never from the sweep's output.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

from pmemsim.faults import FaultPoint
from pmemsim.report.results import FaultOutcome, Outcome, load_results
from pmemsim.testing.fault_sweep import Expect, judge, leaked_fds, open_fds, points_of

pytest_plugins = ["pytester"]

on_linux = pytest.mark.skipif(
    sys.platform != "linux", reason="the mmap backend and /proc/self/fd are Linux's"
)

# A small persistent structure: a log of records in one pool file. `append` stores the
# record, then publishes the new length; a failure before publishing leaves the log as it
# was. Variants plant one bug each.
LOG = '''
import errno, json, os
import pytest
from pmemsim import Config, Granularity, PmemSet, PmemsetError, Source

class Log:
    def __init__(self, pset, path):
        with Source.from_file(path) as src:
            d = pset.part_map(pset.part_new(src, 0, 0))
        self.pset, self.addr, self.used = pset, d.addr, 0

    def append(self, data):
        """Store, then publish; a failure leaves the log as it was (and says so)."""
        try:
            self.pset.memcpy(self.addr + 64 + self.used, data)
        except PmemsetError:
            return False
        try:
            self.pset.memcpy(self.addr, (self.used + len(data)).to_bytes(8, "little"))
        except PmemsetError:
            return False
        self.used += len(data)
        return True

    def records(self):
        return self.pset.read(self.addr + 64, self.used)

def save_hits(fault_sweep, fault_plan, path):
    """In the counting run, write down the hits of every site (what the sweep must drive)."""
    if fault_sweep.active and fault_sweep.point is None:
        with open(path, "w") as f:
            json.dump({str(site): n for site, n in fault_plan.hits.items()}, f)
'''


@pytest.fixture
def run(pytester: pytest.Pytester):
    """``run(source, *args)``: the log above plus ``source`` as a test module, run in-process."""
    pytester.makeini(
        """
        [pytest]
        addopts = --strict-markers -p no:cacheprovider -p no:randomly
        filterwarnings = error
        """
    )

    def go(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_user=LOG + textwrap.dedent(source))
        return pytester.runpytest(*args)

    return go


def _line_of(pytester: pytest.Pytester, marker: str) -> int:
    """The line number of the source line holding ``marker`` in test_user.py."""
    lines = (pytester.path / "test_user.py").read_text().splitlines()
    (number,) = [i for i, text in enumerate(lines, 1) if marker in text]
    return number


def _misbehaving(result: pytest.RunResult) -> list[str]:
    """The one-line reports of misbehaving (site, hit) pairs (in the report, not its summary).

    Under ``CI=true`` pytest repeats each failure's whole message in the short test summary.
    """
    lines = result.outlines
    summary = next((i for i, line in enumerate(lines) if "short test summary info" in line), len(lines))
    return [line.strip() for line in lines[:summary] if re.match(r"\s+[a-z_.]+@\d+[ :]", line)]


def _expected_points(pytester: pytest.Pytester) -> set[str]:
    hits = json.loads((pytester.path / "hits.json").read_text())
    return {f"{site}@{k}" for site, n in hits.items() for k in range(1, n + 1)}


# -- a correct structure passes; every (site, hit) is driven once ---------------------------------


def test_a_correct_structure_passes_and_every_hit_is_driven(run, pytester):
    result = run(
        """
        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmemset, pmem_file, fault_plan, fault_sweep):
            try:
                try:
                    log = Log(pmemset, pmem_file)
                except PmemsetError:
                    return  # opening failed cleanly: nothing to check
                ok = [log.append(w) for w in (b"one", b"two")]
                assert log.records() == b"".join(w for w, k in zip((b"one", b"two"), ok) if k)
            finally:
                save_hits(fault_sweep, fault_plan, os.path.join(os.path.dirname(__file__), "hits.json"))
        """,
        "--pmemsim-report=report.json",
    )
    assert result.ret == 0, result.stdout.str()
    expected = _expected_points(pytester)
    assert "map.file@1" in expected and "alloc.source@1" in expected  # the sweep had work to do
    runs = load_results(pytester.path / "report.json").runs
    swept = [r for r in runs if r.fault is not None]
    assert sorted(r.fault.point for r in swept) == sorted(expected)  # each pair exactly once
    assert all(r.fault.outcome in (FaultOutcome.HANDLED, FaultOutcome.RAISED) for r in swept)
    assert {r.outcome for r in swept} == {Outcome.PASSED}
    # The test returns early when opening fails: those faults were handled, not raised.
    assert {r.fault.outcome for r in swept if r.fault.site == "map.file"} == {FaultOutcome.HANDLED}


def test_the_default_policy_accepts_the_error_escaping(run):
    result = run(
        """
        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmemset, pmem_file):
            Log(pmemset, pmem_file)          # any failure escapes: allowed by default
        """
    )
    assert result.ret == 0, result.stdout.str()


# -- a planted unhandled error path is reported with its stack ---------------------------------------


@on_linux
def test_an_unhandled_error_path_is_reported_with_its_stack(run, pytester):
    result = run(
        """
        class CarelessLog(Log):
            def append(self, data):
                try:
                    self.pset.memcpy(self.addr + 64 + self.used, data)
                except PmemsetError:
                    return False
                self.pset.memcpy(self.addr, b"published")  # PLANTED: unhandled

        @pytest.mark.pmemsim(fault_sweep=True, device="dax", granularity="cache_line")
        def test_log(pmemset, pmem_file, fault_sweep):
            fault_sweep.expect_handled("flush.deep", "os.msync")
            log = CarelessLog(pmemset, pmem_file)
            log.append(b"x")  # CALLER
        """,
        "--pmemsim-backend=mmap",
    )
    assert result.ret == 1
    lines = _misbehaving(result)
    planted, caller = _line_of(pytester, "# PLANTED"), _line_of(pytester, "# CALLER")
    # The 1st msync is the record's (handled); the 2nd is the planted one.
    assert lines == [
        f"os.msync@2 (EIO): unhandled: {lines[0].split(': ', 2)[2].split(' escaped')[0]} escaped the test, "
        f"which expects it handled | at test_user.py:{planted} in append < test_user.py:{caller} in test_log"
    ]
    assert lines[0].split(": ", 2)[2].startswith("EIO: flush of ")  # msync's default errno
    out = result.stdout.str()
    assert "whole sweep: pytest test_user.py::test_log --pmemsim-fault-sweep --pmemsim-backend=mmap" in out
    assert "one (site, hit): pytest test_user.py::test_log --pmemsim-fault=os.msync@2" in out


@on_linux
def test_disk_full_at_the_third_msync_is_one_line(run, pytester):
    result = run(
        """
        import errno

        class ForgetfulLog(Log):
            def append(self, data):
                if not super().append(data):
                    return False
                self.pset.persist(self.addr, 8)  # PLANTED: a third msync, unhandled

        @pytest.mark.pmemsim(fault_sweep=True, backend="mmap")
        def test_log(pmemset, pmem_file, fault_sweep):
            fault_sweep.fail_with("os.msync", errno.ENOSPC)
            fault_sweep.expect_handled("os.msync")
            ForgetfulLog(pmemset, pmem_file).append(b"x")
        """
    )
    assert result.ret == 1
    lines = _misbehaving(result)
    assert len(lines) == 1, result.stdout.str()
    assert lines[0].startswith("os.msync@3 (ENOSPC): unhandled: ENOSPC: ")
    assert f"at test_user.py:{_line_of(pytester, '# PLANTED')} in append <" in lines[0]


def test_one_pair_reruns_as_a_plain_failure(run, pytester):
    source = """
        class CarelessLog(Log):
            def append(self, data):
                self.pset.memcpy(self.addr + 64, data)  # PLANTED

        @pytest.mark.pmemsim(fault_sweep=True, device="dax", granularity="cache_line")
        def test_log(pmemset, pmem_file, fault_sweep):
            fault_sweep.expect_handled()
            log = CarelessLog(pmemset, pmem_file)
            log.append(b"x")
        """
    result = run(source, "--pmemsim-fault=map.file@1")
    assert result.ret == 1
    out = result.stdout.str()
    # The real traceback (it stops in the code, and --pdb would), with the verdict as a note.
    assert "PmemsetError: PMEMSET_E_INVALID_PMEM2_MAP" in out
    assert "pmemsim fault sweep: map.file@1: unhandled:" in out
    assert "1 failed" in out
    # A hit the test never reaches is no silent pass.
    result = run(source, "--pmemsim-fault=map.file@7")
    assert result.ret == 1
    assert "map.file@7: unreached: the test reaches map.file 1 time(s)" in result.stdout.str()


def test_an_error_swallowed_where_it_must_escape(run):
    result = run(
        """
        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmemset, pmem_file, fault_sweep):
            fault_sweep.expect_raised("map.file")
            try:
                Log(pmemset, pmem_file)
            except PmemsetError:
                pass
        """
    )
    assert result.ret == 1
    lines = _misbehaving(result)
    assert [line.split(":")[0] for line in lines] == ["map.file@1"]
    assert "swallowed: the test passed: PMEMSET_E_INVALID_PMEM2_MAP did not escape" in lines[0]


def test_a_failing_assertion_after_a_fault_is_reported(run):
    result = run(
        """
        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmemset, pmem_file):
            try:
                log = Log(pmemset, pmem_file)
            except PmemsetError:
                log = None
            assert log is not None, "the log must open"
        """
    )
    assert result.ret == 1
    lines = _misbehaving(result)
    assert lines and all(": failed: AssertionError: the log must open" in line for line in lines)


# -- leaks ------------------------------------------------------------------------------------------


@on_linux
def test_a_descriptor_leaked_on_an_error_path_is_caught(run):
    result = run(
        """
        KEPT = []

        class LeakyLog(Log):
            def __init__(self, pset, path):
                src = Source.from_file(path)
                KEPT.append(src)             # PLANTED: still held when part_map fails
                d = pset.part_map(pset.part_new(src, 0, 0))
                KEPT.remove(src)
                src.delete()
                self.pset, self.addr, self.used = pset, d.addr, 0

        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmemset, pmem_file):
            LeakyLog(pmemset, pmem_file)
        """
    )
    assert result.ret == 1
    lines = _misbehaving(result)
    map_file = [line for line in lines if line.startswith("map.file@1:")]
    assert len(map_file) == 1
    assert re.search(r"map\.file@1: leaked: leaked fd \d+ \(the file \S+/pmem1\.pool\)", map_file[0])
    # Faults before the source is open leak nothing.
    assert not any(line.startswith(("alloc.source@", "os.open@")) for line in lines)


def test_a_reservation_leaked_on_an_error_path_is_caught(run):
    result = run(
        """
        class ReservingLog(Log):
            def __init__(self, space, path):
                rsv = space.reserve(1 << 20)   # PLANTED: not released when the set fails
                self.pset = PmemSet(Config(Granularity.PAGE, reservation=rsv, address_space=space,
                                           fault_plan=self.plan))
                with Source.from_file(path) as src:
                    d = self.pset.part_map(self.pset.part_new(src, 0, 0))
                self.addr, self.used = d.addr, 0
                self.rsv = rsv

            def close(self):
                self.pset.close()
                self.pset.address_space.release(self.rsv)

        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmem_space, pmem_file, fault_plan):
            ReservingLog.plan = fault_plan
            ReservingLog(pmem_space, pmem_file).close()
        """
    )
    assert result.ret == 1
    lines = _misbehaving(result)
    leaked = [line for line in lines if "leaked the reservation [low+0x0, +0x100000)" in line]
    assert any(line.startswith("map.file@1: leaked: ") for line in leaked), lines


def test_a_test_that_leaks_without_any_fault_is_not_swept(run):
    result = run(
        """
        KEPT = []

        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(pmemset, pmem_file):
            KEPT.append(Source.from_file(pmem_file))
        """
    )
    assert result.ret == 1
    out = result.stdout.str()
    assert "without any injected fault, the test leaked fd" in out
    assert not _misbehaving(result)


# -- options and marker ------------------------------------------------------------------------------


def test_the_option_sweeps_every_test_using_fault_plan_and_the_marker_opts_out(run, pytester):
    result = run(
        """
        def test_plain():
            pass

        def test_swept(pmemset, pmem_file):
            Log(pmemset, pmem_file).append(b"x")
            raise_on_fault()

        def raise_on_fault():
            pass

        @pytest.mark.pmemsim(fault_sweep=False)
        def test_opted_out(pmemset, pmem_file):
            Log(pmemset, pmem_file)
            assert not pmemset.fault_plan.fired

        def test_careless(pmemset, pmem_file, fault_sweep):
            fault_sweep.expect_handled()
            Log(pmemset, pmem_file)
        """,
        "--pmemsim-fault-sweep",
        "--pmemsim-report=report.json",
    )
    assert result.ret == 1
    runs = load_results(pytester.path / "report.json").runs
    swept = {r.name.split("::")[1] for r in runs if r.fault is not None}
    assert swept == {"test_swept", "test_careless"}
    outcome = {r.name.split("::")[1]: r.outcome for r in runs if r.fault is None}
    assert outcome == {
        "test_plain": Outcome.PASSED,
        "test_swept": Outcome.PASSED,
        "test_opted_out": Outcome.PASSED,
        "test_careless": Outcome.FAILED,
    }


@pytest.mark.parametrize(
    ("args", "marker", "message"),
    [
        ((), "fault_sweep='yes'", "fault_sweep='yes' must be True or False"),
        (("--pmemsim-fault=os.msync",), "", "--pmemsim-fault: fault point 'os.msync' is not SITE@HIT"),
        (("--pmemsim-fault=disk.full@1",), "", "unknown fault site 'disk.full'"),
        (("--pmemsim-fault=os.msync@1", "--pmemsim-fault-sweep"), "", "cannot go with --pmemsim-fault-sweep"),
    ],
)
def test_bad_sweep_options_are_usage_errors(run, args, marker, message):
    decorator = f"@pytest.mark.pmemsim({marker})" if marker else ""
    result = run(f"{decorator}\ndef test_it(pmemset):\n    pass\n", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_swept_test_must_use_the_fault_plan(run):
    result = run(
        """
        @pytest.mark.pmemsim(fault_sweep=True)
        def test_it(tmp_path):
            pass
        """
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "fault_sweep=True) needs the fault_plan fixture" in result.stderr.str()


def test_a_fault_in_a_fixture_set_up_counts_as_raised(run):
    result = run(
        """
        @pytest.fixture
        def log(pmemset, pmem_file):
            return Log(pmemset, pmem_file)

        @pytest.mark.pmemsim(fault_sweep=True)
        def test_log(log):
            assert log.append(b"x") in (True, False)
        """,
        "-rs",
    )
    assert result.ret == 0, result.stdout.str()


# -- the pieces ---------------------------------------------------------------------------------------


def test_points_are_every_hit_of_every_site_in_site_order():
    from pmemsim.faults import FaultSite, OsCall

    points = points_of({OsCall.MSYNC: 2, FaultSite.MAP_FILE: 1})
    assert [str(p) for p in points] == ["map.file@1", "os.msync@1", "os.msync@2"]


def test_fault_points_parse_and_print():
    assert str(FaultPoint.parse(" os.msync@3 ")) == "os.msync@3"
    for text in ("os.msync", "os.msync@0", "os.msync@-1", "@2", "os.msync@x", "nope@1", "os.msync@1e3"):
        with pytest.raises(ValueError, match=re.escape(repr(text.strip()))):
            FaultPoint.parse(text)


def test_judge_table():
    from pmemsim.errors import ErrorCode, PmemsetError
    from pmemsim.faults import FiredFault, OsCall

    fired = FiredFault(OsCall.MSYNC, 1, 5)
    err = PmemsetError(-5, "flush failed")
    assert judge(Expect.EITHER, fired, ("EIO", -5), None)[0] is FaultOutcome.HANDLED
    assert judge(Expect.RAISED, fired, ("EIO", -5), None)[0] is FaultOutcome.SWALLOWED
    assert judge(Expect.EITHER, fired, ("EIO", -5), err)[0] is FaultOutcome.RAISED
    assert judge(Expect.HANDLED, fired, ("EIO", -5), err)[0] is FaultOutcome.UNHANDLED
    other = PmemsetError(ErrorCode.PART_NOT_FOUND, "x")
    assert judge(Expect.EITHER, fired, ("EIO", -5), other)[0] is FaultOutcome.FAILED
    assert judge(Expect.EITHER, fired, ("EIO", -5), KeyError("k"))[0] is FaultOutcome.FAILED
    assert judge(Expect.EITHER, None, None, None)[0] is FaultOutcome.UNREACHED
    assert judge(Expect.EITHER, None, None, err)[0] is FaultOutcome.FAILED


@on_linux
def test_leaked_fds_names_new_descriptors(tmp_path):
    before = open_fds()
    path = tmp_path / "f"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        after = open_fds()
        assert leaked_fds(before, after) == [f"fd {f.fileno()} (the file {path})"]
    assert leaked_fds(before, open_fds()) == []
