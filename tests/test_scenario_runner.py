"""Running scenarios: every expectation is checked, and a scenario that is wrong fails.

Each test edits a known-good scenario so that one expectation no longer holds and checks
that the run fails with a message naming the step and its line — a runner that passed
everything would fail these tests.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from pmemsim import PmemSet, PmemsetError
from pmemsim.addrspace import BACKENDS
from pmemsim.errors import ErrorCode
from pmemsim.report.results import Outcome, RunKind
from pmemsim.scenario import load_scenario, loads_scenario, run_scenario
from pmemsim.scenario import runner as runner_module

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def edited(name: str, old: str, new: str) -> str:
    """The text of a shipped scenario with one edit (which must apply)."""
    text = (SCENARIOS / name).read_text()
    assert old in text, f"{old!r} not in {name}"
    return text.replace(old, new, 1)


def run_text(text: str, backend: str = "sim", **kwargs: object) -> tuple[Outcome, str]:
    result = run_scenario(loads_scenario(text, SCENARIOS / "edited.toml"), backend, **kwargs)  # type: ignore[arg-type]
    return result.outcome, result.message


@pytest.mark.parametrize("backend", BACKENDS)
def test_shipped_error_scenario_passes_and_counts_its_error(backend: str) -> None:
    scenario = load_scenario(SCENARIOS / "error_cannot_coalesce_parts.toml")
    result = run_scenario(scenario, backend, name="x.toml")
    assert result.outcome is Outcome.PASSED, result.message
    assert result.kind is RunKind.SCENARIO and result.backend == backend and result.name == "x.toml"
    assert result.errors == {"PMEMSET_E_CANNOT_COALESCE_PARTS": 1}
    assert result.duration > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_address_expectation_fails(backend: str) -> None:
    text = edited("coalesce_opportunistic_before_mapping.toml", '"grown.end+4096"', '"grown.end"')
    outcome, message = run_text(text, backend)
    assert outcome is Outcome.FAILED
    assert message == (
        "step 5 (part_map, line 37): expected the address grown.end (low+0x4000), got low+0x5000"
    )


def test_wrong_size_and_part_map_count_fail() -> None:
    text = edited("coalesce_full_before_mapping.toml", "expect_size = 49152", "expect_size = 4096")
    assert run_text(text)[1].endswith("expected size 0x1000, got 0xc000")
    text = edited("coalesce_none_before_mapping.toml", "expect_part_maps = 2", "expect_part_maps = 1")
    assert (
        "expected 1 part map(s), found 2 (low-relative: [0x0, +0x4000), [0x4000, +0x4000))"
        in run_text(text)[1]
    )


def test_expected_error_that_does_not_happen_fails() -> None:
    text = edited("error_enomem.toml", "limit = 32768", "limit = 65536")
    outcome, message = run_text(text, "mmap")
    assert outcome is Outcome.FAILED
    assert message == "step 3 (part_map, line 33): expected ENOMEM, but the call succeeded"


def test_a_different_error_than_expected_fails() -> None:
    text = edited("error_length_unaligned.toml", 'expect = "LENGTH_UNALIGNED"', 'expect = "ENOMEM"')
    outcome, message = run_text(text)
    assert outcome is Outcome.FAILED
    assert message == (
        "step 1 (part_map, line 11): expected ENOMEM, got PMEMSET_E_LENGTH_UNALIGNED: "
        "length 6000 is not a multiple of the page size 4096"
    )


def test_unexpected_library_error_fails_and_is_counted() -> None:
    text = edited("error_length_unaligned.toml", 'expect = "LENGTH_UNALIGNED"\n', "")
    result = run_scenario(loads_scenario(text, "x.toml"), "sim")
    assert result.outcome is Outcome.FAILED
    assert "expected success, got PMEMSET_E_LENGTH_UNALIGNED" in result.message
    assert result.errors == {"PMEMSET_E_LENGTH_UNALIGNED": 1}


def test_read_compares_data() -> None:
    text = edited("truncate_if_needed.toml", 'expect_data = "tail!"', 'expect_data = "tails"')
    assert run_text(text)[1] == "step 5 (read, line 42): expected b'tails', read b'tail!'"


def test_failed_call_that_changes_state_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A (simulated) core bug: part_map fails but leaves a foreign mapping behind."""
    real = PmemSet.part_map

    def leaky(self: PmemSet, part: object) -> object:
        if part.length == 6000:  # type: ignore[attr-defined]
            self.address_space.occupy(self.address_space.low + (1 << 20), 4096)  # type: ignore[attr-defined]
            raise PmemsetError(ErrorCode.LENGTH_UNALIGNED, "leaky")
        return real(self, part)  # type: ignore[arg-type]

    monkeypatch.setattr(PmemSet, "part_map", leaky)
    outcome, message = run_text((SCENARIOS / "error_length_unaligned.toml").read_text())
    assert outcome is Outcome.FAILED
    assert "failed as expected with PMEMSET_E_LENGTH_UNALIGNED but changed the state" in message


def test_python_exception_in_a_step_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: PmemSet, *args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(PmemSet, "set_contiguous_part_coalescing", broken)
    outcome, message = run_text((SCENARIOS / "coalesce_full_before_mapping.toml").read_text())
    assert outcome is Outcome.ERROR
    assert message == "step 1 (set_coalescing, line 16): RuntimeError: boom"


def test_setup_failure_is_an_error() -> None:
    # The loader refuses a page size mmap cannot have; a scenario built past the loader
    # (as a program may) still fails at set-up as an error, not a crash.
    import dataclasses

    good = loads_scenario('[space]\npage_size = 4096\n[[steps]]\nop = "check"\n', SCENARIOS / "edited.toml")
    assert run_scenario(good, "sim").outcome is Outcome.PASSED
    odd = dataclasses.replace(good, space=dataclasses.replace(good.space, page_size=1024))
    result = run_scenario(odd, "mmap")
    assert result.outcome is Outcome.ERROR
    assert result.message.startswith("cannot create the mmap address space: page_size must be")


def test_fake_fs_scenario_is_skipped_on_mmap_and_passes_on_sim() -> None:
    scenario = load_scenario(SCENARIOS / "fake_filesystem.toml")
    assert run_scenario(scenario, "sim").outcome is Outcome.PASSED
    skipped = run_scenario(scenario, "mmap")
    assert skipped.outcome is Outcome.SKIPPED and "sim backend only" in skipped.message


def test_fake_fs_files_never_reach_the_disk() -> None:
    scenario = load_scenario(SCENARIOS / "fake_filesystem.toml")
    assert run_scenario(scenario, "sim").outcome is Outcome.PASSED
    assert not os.path.exists(runner_module._FAKE_ROOT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_crash_verdicts(backend: str) -> None:
    for name in ("crash_commit_correct.toml", "crash_commit_buggy.toml"):
        result = run_scenario(load_scenario(SCENARIOS / name), backend)
        assert result.outcome is Outcome.PASSED, result.message
        assert result.message.startswith("crash (ReorderFull): ")
    # Expecting the opposite verdict must fail, in both directions.
    wrong = edited("crash_commit_buggy.toml", 'expect = "inconsistent"', 'expect = "consistent"')
    outcome, message = run_text(wrong, backend)
    assert outcome is Outcome.FAILED
    assert message.startswith("[crash] (line 16): expected consistent, got inconsistent: ")
    # The first failing state, shrunk to the minimal trace pytest's crash_check prints, its stores
    # attributed to the scenario's steps.
    assert "Minimal crash before FENCE" in message
    assert "PERSISTED" in message and "LOST" in message
    assert "edited.toml:" in message
    wrong = edited("crash_commit_correct.toml", 'expect = "consistent"', 'expect = "inconsistent"')
    assert run_text(wrong, backend)[0] is Outcome.FAILED


def test_program_checker_and_markers() -> None:
    result = run_scenario(load_scenario(SCENARIOS / "crash_commit_program_checker.toml"), "sim")
    assert result.outcome is Outcome.PASSED, result.message
    assert "INCONSISTENT" in result.message


def test_seed_reaches_the_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    import pmemsim.persistence as persistence

    seen: list[object] = []
    real = persistence.replay

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs["seed"])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(persistence, "replay", spy)
    scenario = load_scenario(SCENARIOS / "crash_commit_random.toml")
    assert run_scenario(scenario, "sim").outcome is Outcome.PASSED
    assert run_scenario(scenario, "sim", seed=99).outcome is Outcome.PASSED
    assert seen == [7, 99]


def test_runs_leave_no_files_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    for name in ("truncate_if_needed.toml", "temporary_source.toml", "crash_commit_program_checker.toml"):
        assert run_scenario(load_scenario(SCENARIOS / name), "mmap").outcome is Outcome.PASSED
    assert list(tmp_path.iterdir()) == []


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backend 'pmem'"):
        run_scenario(load_scenario(SCENARIOS / "error_enomem.toml"), "pmem")


def test_image_source_is_copied_never_written(tmp_path: Path) -> None:
    image = tmp_path / "data" / "prepared.img"
    image.parent.mkdir()
    image.write_bytes(b"PREPARED" + bytes(4096 - 8))
    scenario = tmp_path / "image.toml"
    scenario.write_text(
        textwrap.dedent(
            """\
            [[sources]]
            name = "img"
            file = "copy.pmem"
            image = "data/prepared.img"
            [[steps]]
            op = "part_map"
            source = "img"
            name = "a"
            expect_size = 4096
            [[steps]]
            op = "read"
            addr = "a"
            length = 8
            expect_data = "PREPARED"
            [[steps]]
            op = "memcpy"
            addr = "a"
            data = "CHANGED!"
            """
        )
    )
    for backend in BACKENDS:
        result = run_scenario(load_scenario(scenario), backend)
        assert result.outcome is Outcome.PASSED, result.message
    assert image.read_bytes()[:8] == b"PREPARED"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "image.toml", "prepared.img"]
