"""The pytest plugin, exercised the way users meet it: small test files run through pytester."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pmemsim.report.results import Outcome, load_results

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# Once the pytest11 entry point is installed the plugin loads itself; naming it again with
# -p would register it twice.
_REGISTERED = any(ep.name == "pmemsim" for ep in importlib.metadata.entry_points(group="pytest11"))
PLUGIN = [] if _REGISTERED else ["-p", "pmemsim.testing.plugin"]

on_linux = pytest.mark.skipif(sys.platform != "linux", reason="the mmap backend is Linux-only")


@pytest.fixture
def run(pytester: pytest.Pytester):
    """``run(source, *args)``: write ``source`` as a test module and run pytest on it in-process."""
    pytester.makeini(
        """
        [pytest]
        addopts = --strict-markers -p no:cacheprovider -p no:randomly
        filterwarnings = error
        xfail_strict = true
        """
    )

    def go(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_user=textwrap.dedent(source))
        return pytester.runpytest(*PLUGIN, *args)

    return go


# -- fixtures ----------------------------------------------------------------------------------------


def test_fixtures_are_listed(run):
    result = run("def test_nothing(): pass", "--fixtures")
    out = result.stdout.str()
    for name in ("pmem_space", "pmemset", "fault_plan", "pmem_file", "make_pmem_file", "crash_check"):
        assert name in out, name


def test_fixtures_work_together(run):
    result = run(
        """
        import os
        import pmemsim
        from pmemsim import Source

        def test_map_write_read(pmem_space, pmemset, pmem_file, fault_plan):
            assert isinstance(pmem_space, pmemsim.SimulatedAddressSpace)
            assert pmemset.address_space is pmem_space and pmemset.fault_plan is fault_plan
            assert pmemset.required_granularity == pmemsim.Granularity.PAGE
            assert os.path.getsize(pmem_file) == 64 * 4096
            with Source.from_file(pmem_file) as src:
                d = pmemset.part_map(pmemset.part_new(src, 0, 4096))
            pmemset.memcpy(d.addr, b"hi")
            assert pmemset.read(d.addr, 2) == b"hi"

        def test_fault_plan_reaches_the_set(pmemset, pmem_file, fault_plan):
            fault_plan.fail_next("alloc.part")
            with Source.from_file(pmem_file) as src:
                try:
                    pmemset.part_new(src)
                except pmemsim.PmemsetError as exc:
                    assert exc.code == pmemsim.ErrorCode.ENOMEM
                else:
                    raise AssertionError("no fault")

        def test_make_pmem_file(make_pmem_file):
            path = make_pmem_file(100, name="x.pool", fill=b"ab")
            with open(path, "rb") as f:
                assert f.read() == b"ab" * 50
        """
    )
    result.assert_outcomes(passed=3)


def test_pmemset_is_closed_and_checked_at_teardown(run):
    result = run(
        """
        import pytest
        from pmemsim import Source

        kept = []

        def test_leave_it_mapped(pmemset, pmem_file):
            with Source.from_file(pmem_file) as src:
                pmemset.part_map(pmemset.part_new(src, 0, 4096))
            kept.append(pmemset)

        def test_it_was_closed():
            assert kept[0].closed

        def test_closing_it_yourself_is_fine(pmemset):
            pmemset.close()

        def test_a_leak_is_reported(pmemset, pmem_file):
            with Source.from_file(pmem_file) as src:
                pmemset.part_map(pmemset.part_new(src, 0, 4096))
            pmemset.close = lambda: None  # a close that releases nothing
        """
    )
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*pmemset fixture at teardown:*leaked reservation*"])


def test_pmem_file_on_pyfakefs(run):
    result = run(
        """
        import os, tempfile

        def test_fake(fs, pmem_file, pmemset):
            assert fs.exists(pmem_file)
            assert pmem_file.startswith(tempfile.gettempdir())
            from pmemsim import Source
            with Source.from_file(pmem_file) as src:
                d = pmemset.part_map(pmemset.part_new(src, 0, 0))
            pmemset.memcpy(d.addr, b"fake")
            with open(pmem_file, "rb") as f:
                assert f.read(4) == b"fake"
            globals()["fake_path"] = pmem_file

        def test_it_was_never_on_disk():
            assert not os.path.exists(globals()["fake_path"])
        """
    )
    result.assert_outcomes(passed=2)


# -- the marker ------------------------------------------------------------------------------------------


def test_marker_configures_the_fixtures(run):
    result = run(
        """
        import os
        import pytest
        import pmemsim

        @pytest.mark.pmemsim(page_size=16384, coalescing="full", granularity="page", file_size=65536)
        def test_configured(pmem_space, pmemset, pmem_file):
            assert pmem_space.page_size == 16384
            assert pmemset.coalescing == pmemsim.Coalescing.FULL
            assert os.path.getsize(pmem_file) == 65536

        pytestmark = pytest.mark.pmemsim(coalescing=1)

        def test_module_marker(pmemset):
            assert pmemset.coalescing == pmemsim.Coalescing.OPPORTUNISTIC

        @pytest.mark.pmemsim(coalescing="none")
        def test_closest_marker_wins(pmemset):
            assert pmemset.coalescing == pmemsim.Coalescing.NONE
        """
    )
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("pagesize=4096", "*unknown key(s) pagesize; known keys: backend, page_size, coalescing*"),
        ("backend='real'", "*backend='real' is not one of sim, mmap*both*"),
        ("page_size=1000", "*page_size=1000 must be a power of two*"),
        ("coalescing='sometimes'", "*coalescing='sometimes' is not one of none, opportunistic, full*"),
        ("granularity=7", "*granularity=7 is not one of byte, cache_line, page*"),
        ("file_size=-1", "*file_size=-1 must be a positive int*"),
        ("device='nvme'", "*device='nvme' is not one of file, dax, dax_eadr*"),
        ("allow_unfired_faults='yes'", "*allow_unfired_faults='yes' must be True or False*"),
    ],
)
def test_bad_marker_is_a_usage_error(run, marker, message):
    result = run(
        f"""
        import pytest

        @pytest.mark.pmemsim({marker})
        def test_it(pmemset):
            pass
        """
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: test_user.py::test_it: @pytest.mark.pmemsim:" + message])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


# -- fault plans that reach the code under test, and cannot go unnoticed ------------------------------


def test_fault_plan_reaches_sources_the_test_opens(run):
    """``alloc.source`` armed on the fixture fails ``Source.from_file`` called by the code under test."""
    result = run(
        """
        import os
        import pytest
        from pmemsim import ErrorCode, FaultPlan, PmemsetError, Source

        def open_pool(path):            # the code under test opens its own source
            return Source.from_file(path)

        def test_alloc_source(pmemset, pmem_file, fault_plan):
            fault_plan.fail_next("alloc.source")
            with pytest.raises(PmemsetError) as info:
                open_pool(pmem_file)
            assert info.value.code == ErrorCode.ENOMEM
            assert [f.site.value for f in fault_plan.fired] == ["alloc.source"]
            open_pool(pmem_file).delete()     # only the next one failed

        def test_temporary_and_fd_sources_too(fault_plan, tmp_path, pmem_file):
            fault_plan.fail("alloc.source", every=True)
            with pytest.raises(PmemsetError):
                Source.from_temporary(str(tmp_path))
            fd = os.open(pmem_file, os.O_RDWR)
            try:
                with pytest.raises(PmemsetError):
                    Source.from_fd(fd)
            finally:
                os.close(fd)

        def test_an_explicit_plan_wins(fault_plan, pmem_file):
            fault_plan.fail("alloc.source", every=True, errno=5)
            own = FaultPlan()
            Source.from_file(pmem_file, fault_plan=own).delete()
            assert own.hits and not own.fired
            with pytest.raises(PmemsetError):
                Source.from_file(pmem_file)

        def test_without_the_fixture_sources_are_untouched(pmem_file):
            Source.from_file(pmem_file).delete()
        """
    )
    result.assert_outcomes(passed=4)


def test_a_planned_fault_that_never_fired_fails_the_test(run):
    result = run(
        """
        import pytest
        from pmemsim import Source

        def test_vacuous(pmemset, pmem_file, fault_plan):
            fault_plan.fail_next("map.file")
            fault_plan.fail("file.truncate", every=True)
            Source.from_file(pmem_file).delete()     # never maps, never truncates

        def test_fired(pmemset, pmem_file, fault_plan):
            fault_plan.fail_next("alloc.part")
            with Source.from_file(pmem_file) as src, pytest.raises(Exception):
                pmemset.part_new(src)

        def test_fired_then_reset(pmemset, pmem_file, fault_plan):
            fault_plan.fail_next("alloc.part")
            with Source.from_file(pmem_file) as src, pytest.raises(Exception):
                pmemset.part_new(src)
            fault_plan.reset()

        @pytest.mark.pmemsim(allow_unfired_faults=True)
        def test_opted_out(pmemset, fault_plan):
            fault_plan.fail_next("map.file")

        def test_failing_anyway(fault_plan):
            fault_plan.fail_next("map.file")
            assert False, "the test's own failure"
        """,
        "-rA",
    )
    result.assert_outcomes(passed=4, failed=1, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_vacuous*",
            "*fault_plan: planned failure(s) never fired: map.file at hit 1 (reached 0 time(s)), "
            "file.truncate (every hit; reached 0 time(s)). The test never reached the error path it arms;"
            " @pytest.mark.pmemsim(allow_unfired_faults=True) allows it*",
        ]
    )
    assert "ERROR at teardown of test_failing_anyway" not in out  # one failure, not two
    assert "Traceback" not in out


# -- the device behind pmem_file ------------------------------------------------------------------------


#: A missing-flush bug: the data at +64 is flushed with the wrong range (its neighbour line), then
#: a commit flag at +128 is persisted. On a regular file a flush makes the whole page durable, so
#: the bug is invisible; on a DAX device only the flushed cache line is.
MISSING_FLUSH = """
    import pytest
    from pmemsim import Granularity, Source

    def committed_implies_data(image):
        return image[128] != 0x01 or image[64] == 0x42

    def run_buggy(pmemset, pmem_file, crash_check):
        with Source.from_file(pmem_file) as src:
            d = pmemset.part_map(pmemset.part_new(src, 0, 4096))
        with crash_check(committed_implies_data):
            pmemset.write(d.addr + 64, b"\x42")
            pmemset.flush(d.addr, 64)            # the wrong line: the bug
            pmemset.drain()
            pmemset.write(d.addr + 128, b"\x01")
            pmemset.persist(d.addr + 128, 1)
        return d
"""


def test_dax_device_catches_a_missing_flush_the_file_default_hides(run):
    result = run(
        MISSING_FLUSH
        + """
    def test_regular_file(pmemset, pmem_file, crash_check):
        run_buggy(pmemset, pmem_file, crash_check)
        assert pmemset.effective_granularity == Granularity.PAGE

    @pytest.mark.pmemsim(device="dax")
    def test_dax(pmemset, pmem_file, crash_check):
        assert pmemset.required_granularity == Granularity.CACHE_LINE
        run_buggy(pmemset, pmem_file, crash_check)
    """
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_dax*", "*crash consistency check failed*", "*Minimal crash*"])


@pytest.mark.parametrize(
    ("marker", "required", "effective"),
    [
        ("", "PAGE", "PAGE"),
        ("device='file'", "PAGE", "PAGE"),
        ("device='dax'", "CACHE_LINE", "CACHE_LINE"),
        ("device='DAX-eADR'", "BYTE", "BYTE"),
        ("granularity='cache_line'", "CACHE_LINE", "CACHE_LINE"),  # pmem_file follows: still mappable
        ("granularity='page', device='dax'", "PAGE", "CACHE_LINE"),  # a page set on a DAX device
    ],
)
def test_device_marker_sets_what_pmem_file_sits_on(run, marker, required, effective):
    result = run(
        f"""
        import pytest
        from pmemsim import Granularity, Source

        @pytest.mark.pmemsim({marker})
        def test_it(pmemset, pmem_file, make_pmem_file):
            assert pmemset.required_granularity == Granularity.{required}
            for path in (pmem_file, make_pmem_file(8192)):
                with Source.from_file(path) as src:
                    pmemset.part_map(pmemset.part_new(src, 0, 4096))
            assert pmemset.effective_granularity == Granularity.{effective}
        """
    )
    result.assert_outcomes(passed=1)


def test_a_device_too_coarse_for_the_set_is_still_an_error(run):
    """An explicit regular-file device under a cache-line set: the documented mapping failure."""
    result = run(
        """
        import pytest
        from pmemsim import ErrorCode, PmemsetError, Source

        @pytest.mark.pmemsim(granularity="cache_line", device="file")
        def test_it(pmemset, pmem_file):
            with Source.from_file(pmem_file) as src, pytest.raises(PmemsetError) as info:
                pmemset.part_map(pmemset.part_new(src, 0, 4096))
            assert info.value.code == ErrorCode.INVALID_PMEM2_MAP
        """
    )
    result.assert_outcomes(passed=1)


def test_positional_marker_arguments_are_a_usage_error(run):
    result = run(
        """
        import pytest

        @pytest.mark.pmemsim("mmap")
        def test_it():
            pass
        """
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*takes keyword arguments only*"])


# -- --pmemsim-backend -------------------------------------------------------------------------------------

_BACKEND_PROBE = """
import pytest

def test_space(pmem_space):
    print("BACKEND", type(pmem_space).__name__)

def test_no_space():
    pass

@pytest.mark.pmemsim(backend="sim")
def test_sim_only(pmem_space):
    assert type(pmem_space).__name__ == "SimulatedAddressSpace"
"""


def test_backend_default_is_the_simulator(run):
    result = run(_BACKEND_PROBE, "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*BACKEND SimulatedAddressSpace*"])
    assert "MmapAddressSpace" not in result.stdout.str()


@on_linux
def test_backend_both_parametrises(run):
    result = run(_BACKEND_PROBE, "--pmemsim-backend=both", "--collect-only", "-q")
    # Tests without pmem_space are not duplicated; the marker wins over the option.
    assert result.outlines[:4] == [
        "test_user.py::test_space[sim]",
        "test_user.py::test_space[mmap]",
        "test_user.py::test_no_space",
        "test_user.py::test_sim_only",
    ]
    result = run(_BACKEND_PROBE, "-s", "--pmemsim-backend=both")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*BACKEND SimulatedAddressSpace*", "*BACKEND MmapAddressSpace*"])


@on_linux
def test_backend_mmap(run):
    result = run(_BACKEND_PROBE, "-s", "--pmemsim-backend=mmap")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*BACKEND MmapAddressSpace*"])


def test_bad_backend_is_a_usage_error(run):
    result = run(_BACKEND_PROBE, "--pmemsim-backend=qemu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pmemsim-backend: invalid choice: 'qemu' (choose from*sim*mmap*both*"])


def test_bad_engine_is_a_usage_error(run):
    result = run("def test_it(): pass", "--pmemsim-engine=Sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pmemsim-engine: unknown engine 'Sometimes'; known engines:*"])


# -- crash_check -----------------------------------------------------------------------------------------

_LOG = """
import struct, zlib
from pmemsim import MemFlags, Source

def checker(image):
    (used,) = struct.unpack_from("<Q", image, 0)
    pos = 64
    while pos < 64 + used:
        n, crc = struct.unpack_from("<II", image, pos)
        if zlib.crc32(bytes(image[pos + 8 : pos + 8 + n])) != crc:
            raise AssertionError(f"entry at {pos} is torn")
        pos += 8 + n
    return True

def append(pset, base, payload, fence):
    (used,) = struct.unpack("<Q", pset.read(base, 8))
    entry = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    pset.memcpy(base + 64 + used, entry, flags=0 if fence else MemFlags.NODRAIN)
    pset.memcpy(base, struct.pack("<Q", used + len(entry)))

def mapped(pset, path):
    with Source.from_file(path) as src:
        return pset.part_map(pset.part_new(src, 0, 0)).addr
"""


def test_crash_check_passes_a_correct_program(run):
    result = run(
        _LOG
        + """
def test_correct(pmemset, pmem_file, crash_check):
    base = mapped(pmemset, pmem_file)
    with crash_check(checker, engine="ReorderAccumulative") as check:
        append(pmemset, base, b"hello", fence=True)
        append(pmemset, base, b"world", fence=True)
    assert check.result.ok and check.result.report.states_checked > 0
"""
    )
    result.assert_outcomes(passed=1)


def test_crash_check_fails_a_buggy_program_with_the_minimal_trace(run):
    result = run(
        _LOG
        + """
def test_buggy(pmemset, pmem_file, crash_check):
    base = mapped(pmemset, pmem_file)
    with crash_check(checker):
        append(pmemset, base, b"hello", fence=False)
"""
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "crash consistency check failed: * INCONSISTENT: * states checked * with Exhaustive",
            "Minimal crash before FENCE record 4, epoch 0: 2 store(s) persisted, 1 lost",
            # The entry's two pieces share a cache line: only its first piece can be on media alone.
            "checker [[]*pmem1.pool[]]: checker raised AssertionError: entry at 64 is torn",
            "*STORE *pmem1.pool+0x40..0x48 (8 B) (piece 0 of a 13-byte store) at *test_user.py:17, "
            "flushed -> PERSISTED",
            "*STORE *pmem1.pool+0x48..0x4d (5 B) (piece 1 of a 13-byte store) at *test_user.py:17, "
            "flushed -> LOST",
            "*STORE *pmem1.pool+0x0..0x8 (8 B) at *test_user.py:18, flushed -> PERSISTED",
            "*FENCE  <- crash before this fence*",
        ]
    )
    # Which piece of the torn entry is lost depends on the crash model's write-back order;
    # that exactly one of them is, does not.
    # (Under CI=true pytest repeats the whole message in its short summary: count each line once.)
    pieces = list(dict.fromkeys(line for line in result.stdout.lines if "of a 13-byte store" in line))
    assert sorted(line.rsplit("-> ", 1)[1] for line in pieces) == ["LOST", "PERSISTED"]
    # The message is the whole report: no traceback through the plugin or pmemsim.
    out = result.stdout.str()
    assert "pmemsim/testing" not in out and "Traceback" not in out


def test_crash_check_engine_option_is_the_default(run):
    result = run(
        _LOG
        + """
def test_buggy(pmemset, pmem_file, crash_check):
    base = mapped(pmemset, pmem_file)
    with crash_check(checker):
        append(pmemset, base, b"hello", fence=False)
""",
        "--pmemsim-engine=ReorderFull",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*INCONSISTENT*with ReorderFull*"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            "crash_check(42)",
            "crash_check: checker must be a callable check(image) -> bool | None*not int (42)",
        ),
        ("crash_check(checker, engine='Psychic')", "crash_check: unknown engine 'Psychic'; known engines:*"),
        (
            "crash_check('no-such-checker-program')",
            "crash_check: checker program 'no-such-checker-program' not found*",
        ),
    ],
)
def test_crash_check_bad_arguments_fail_cleanly(run, call, message):
    result = run(
        _LOG
        + f"""
def test_it(pmemset, crash_check):
    with {call}:
        pass
"""
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str()


def test_crash_check_does_not_replay_when_the_block_raises(run):
    result = run(
        _LOG
        + """
import pytest

def test_it(pmemset, crash_check):
    with pytest.raises(KeyError):
        with crash_check(checker) as check:
            raise KeyError("boom")
    assert check.result is None and not pmemset.recording
"""
    )
    result.assert_outcomes(passed=1)


# -- --pmemsim-report ---------------------------------------------------------------------------------------


def test_report_file_is_written_and_loads(run, tmp_path):
    report = tmp_path / "out" / "results.json"
    result = run(
        """
        import pytest
        import pmemsim
        from pmemsim import Source

        def test_passes(pmemset, pmem_file, pmem_space):
            pmem_space.occupy(pmem_space.low, 4096)  # the first reservation must go elsewhere
            pmemset.set_contiguous_part_coalescing(pmemsim.Coalescing.FULL)
            with Source.from_file(pmem_file) as src:
                d = pmemset.part_map(pmemset.part_new(src, 0, 4096))
                pmem_space.occupy(d.end, 4096)
                with pytest.raises(pmemsim.PmemsetError):
                    pmemset.part_map(pmemset.part_new(src, 0, 4096))

        def test_fails(pmemset):
            with pytest.raises(pmemsim.PmemsetError):
                pmemset.get_store_granularity()
            assert False, "on purpose"

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass

        @pytest.fixture
        def broken():
            raise RuntimeError("setup broke")

        def test_error(broken):
            pass
        """,
        f"--pmemsim-report={report}",
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines([f"pmemsim: 4 test result(s) written to {report}"])
    runs = {r.name: r for r in load_results(report).runs}
    assert set(runs) == {
        f"test_user.py::{n}" for n in ("test_passes", "test_fails", "test_skipped", "test_error")
    }
    passes = runs["test_user.py::test_passes"]
    assert passes.outcome is Outcome.PASSED and passes.backend == "sim" and passes.kind == "test"
    assert passes.errors == {"PMEMSET_E_CANNOT_COALESCE_PARTS": 1}
    fails = runs["test_user.py::test_fails"]
    assert fails.outcome is Outcome.FAILED and "on purpose" in fails.message
    assert fails.errors == {"PMEMSET_E_NO_PART_MAPPED": 1}
    assert runs["test_user.py::test_skipped"].outcome is Outcome.SKIPPED
    assert runs["test_user.py::test_skipped"].message == "not today"
    assert runs["test_user.py::test_error"].outcome is Outcome.ERROR
    assert json.loads(report.read_text())["format"] == "pmemsim-results"


def test_report_attributes_survive_serialisation():
    # pytest-xdist ships reports from workers as JSON: the counts must travel with them.
    from _pytest.reports import TestReport

    report = TestReport("t.py::t", ("t.py", 1, "t"), {}, "passed", None, "call")
    report.pmemsim_errors = {"ENOMEM": 2}
    report.pmemsim_backend = "mmap"
    back = TestReport._from_json(report._to_json())
    assert back.pmemsim_errors == {"ENOMEM": 2} and back.pmemsim_backend == "mmap"


def test_report_to_a_directory_is_a_usage_error(run, tmp_path):
    result = run("def test_it(): pass", f"--pmemsim-report={tmp_path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --pmemsim-report needs a file name*"])


# -- cost and the shipped example ---------------------------------------------------------------------------


def test_plugin_import_is_cheap():
    code = (
        "import sys, pmemsim.testing.plugin\n"
        "heavy = [m for m in ('hypothesis', 'pmemsim.persistence', 'pmemsim.testing.machine',"
        " 'pmemsim.report') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_applog_example_passes():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "examples/applog", *PLUGIN, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 passed" in result.stdout


def test_an_empty_crash_check_fails_the_test(run):
    result = run(
        _LOG
        + """
def test_empty(pmemset, pmem_file, crash_check):
    mapped(pmemset, pmem_file)
    with crash_check(checker):
        pass  # the code under test wrote nothing (or to another set)
"""
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*crash check of nothing: the log holds no store*"])


def test_a_sampled_crash_check_warns_and_fails_under_the_strict_option(run):
    source = (
        _LOG
        + """
import warnings
from pmemsim.testing.crash import NotExhaustiveWarning

def test_sampled(pmemset, pmem_file, crash_check):
    base = mapped(pmemset, pmem_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with crash_check(checker, engine="Random:1:3"):
            append(pmemset, base, b"hello", fence=True)
    assert [type(w.message) for w in caught] == [NotExhaustiveWarning]
"""
    )
    run(source).assert_outcomes(passed=1)
    strict = run(source, "--pmemsim-strict-crash")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*crash consistency check was not exhaustive (strict): *NOT EXHAUSTIVE*"])
