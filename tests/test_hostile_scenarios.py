"""Input built to hurt (issue 14): scenario files and results files that used to end in a
traceback, a hang or unbounded memory now end in one problem line naming the file, the
line where it is known, and the field; on the command line that is exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from pmemsim.report.results import MAX_RESULTS_BYTES, ResultsError, load_results
from pmemsim.scenario import ScenarioError, load_scenario, loads_scenario
from pmemsim.scenario.loader import MAX_DATA, MAX_ITEMS, MAX_SCENARIO_BYTES

ROOT = Path(__file__).resolve().parent.parent

DRAIN = '[[steps]]\nop = "drain"\n'


def only_problem(text: str, path: Path | str = "s.toml") -> str:
    """The single problem line of scenario ``text``."""
    with pytest.raises(ScenarioError) as info:
        loads_scenario(text, path)
    assert len(info.value.problems) == 1, str(info.value)
    return str(info.value.problems[0])


def file_problem(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert len(info.value.problems) == 1, str(info.value)
    return str(info.value.problems[0])


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


# -- nesting, sizes and numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 600 + "]" * 600,
        "x = " + "{a = " * 600 + "1" + "}" * 600,
    ],
    ids=["arrays", "inline-tables"],
)
def test_toml_nested_hundreds_deep_is_a_problem_not_a_recursion_error(text: str) -> None:
    assert only_problem(text) == "s.toml:1: (syntax): nested more than 16 levels deep"


def test_table_headers_nested_deep_name_the_key() -> None:
    header = ".".join(["a"] * 40)
    problem = only_problem(f"[{header}]\nx = 1\n" + DRAIN)
    assert problem.startswith("s.toml:1: " + ".".join(["a"] * 16) + ": nested more than 16 levels deep")


def test_array_longer_than_the_limit_is_refused_before_validation() -> None:
    text = "backends = [" + ", ".join(['"sim"'] * (MAX_ITEMS + 1)) + "]\n" + DRAIN
    assert (
        only_problem(text) == f"s.toml:1: backends: {MAX_ITEMS + 1} items, more than the {MAX_ITEMS} allowed"
    )


def test_repeat_bomb_is_refused_without_allocating() -> None:
    # 213 bytes that used to build 1 GiB of data in the loader.
    text = textwrap.dedent(
        """\
        [[sources]]
        name = "p"
        file = "p"
        size = 4096
        [[steps]]
        op = "part_map"
        source = "p"
        name = "a"
        [[steps]]
        op = "write"
        addr = "a"
        data = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        repeat = 16777216
        """
    )
    tracemalloc.start()
    try:
        problem = only_problem(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (
        problem
        == f"s.toml:13: steps[1].repeat: data of {1 << 30} bytes, more than the {MAX_DATA} one step may carry"
    )
    assert peak < 8 << 20


def test_repeat_above_the_schema_maximum() -> None:
    text = '[[steps]]\nop = "write"\naddr = 0\ndata = "x"\nrepeat = 17179869184\n'
    assert only_problem(text).startswith(
        "s.toml:5: steps[0].repeat: expected an integer >= 1 and <= 16777216"
    )


def test_five_thousand_digit_address() -> None:
    text = '[[steps]]\nop = "free"\naddr = ' + "9" * 5000 + "\n"
    assert only_problem(text) == "s.toml:3: (syntax): a number with thousands of digits"


def test_five_thousand_digit_relative_offset() -> None:
    text = '[[steps]]\nop = "free"\naddr = "a+0x' + "f" * 5000 + '"\n'
    assert only_problem(text).startswith("s.toml:3: steps[0].addr: expected a string of the form NAME")


def test_relative_offset_beyond_the_address_range() -> None:
    text = '[[steps]]\nop = "part_map_by_address"\naddr = "a+0xffffffffffffffff"\n'
    assert only_problem(text) == (
        "s.toml:3: steps[0].addr: the offset in 'a+0xffffffffffffffff' is larger than 0x400000000000"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e9"])
def test_timeout_must_be_a_finite_number_of_seconds(value: str) -> None:
    text = (
        f'[crash]\nexpect = "consistent"\nchecker = "m:f"\ntimeout = {value}\n' + '[[steps]]\nop = "record"\n'
    )
    assert only_problem(text).startswith("s.toml:4: crash.timeout: expected ")


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("[space]\npage_size = 1099511627776\n" + DRAIN, 2, "space.page_size"),
        ("[space]\nsize = 18446744073709551616\n" + DRAIN, 2, "space.size"),
        ('[[sources]]\nname = "p"\nfile = "p"\nsize = 1099511627776\n' + DRAIN, 4, "sources[0].size"),
        ('[[steps]]\nop = "read"\naddr = 0\nlength = 4294967296\n', 4, "steps[0].length"),
        ('[[steps]]\nop = "memset"\naddr = 0\nvalue = 0\nlength = 4294967296\n', 5, "steps[0].length"),
        ('[[faults]]\nsite = "map.file"\nat = 4294967296\n' + DRAIN, 3, "faults[0].at"),
        ('[[steps]]\nop = "check"\nexpect_part_maps = 4294967296\n', 3, "steps[0].expect_part_maps"),
    ],
    ids=["page_size", "space", "source", "read", "memset", "fault-at", "part-maps"],
)
def test_out_of_range_values_fail_at_load_time(text: str, line: int, field: str) -> None:
    assert only_problem(text).startswith(f"s.toml:{line}: {field}: expected an integer >= ")


def test_mmap_page_size_is_checked_at_load_time() -> None:
    text = "[space]\npage_size = 1024\n" + DRAIN
    assert "not a multiple of this system's page size" in only_problem(text)
    assert loads_scenario('backends = ["sim"]\n' + text).space.page_size == 1024


def test_occupied_range_and_reservation_must_fit_the_space() -> None:
    occupied = "[space]\nsize = 65536\n[[space.occupied]]\nat = 61440\nsize = 8192\n" + DRAIN
    assert only_problem(occupied).startswith("s.toml:3: space.occupied[0]: [0xf000, 0x11000) ends past")
    rsv = "[space]\nsize = 65536\n[config]\nreservation = 65536\nreservation_at = 4096\n" + DRAIN
    assert only_problem(rsv).startswith(
        "s.toml:4: config.reservation: a reservation of 0x10000 bytes at 0x1000"
    )


# -- files that are not files --------------------------------------------------------------------


def test_dev_zero_as_a_scenario() -> None:
    assert file_problem(Path("/dev/zero")) == (
        "/dev/zero: (file): cannot read the scenario: a character device, not a regular file"
    )


def test_fifo_as_a_scenario_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "s.toml"
    os.mkfifo(fifo)
    # In a child with a timeout: before the fix, this waited forever for a writer.
    proc = cli("run", str(fifo), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert (
        f"{fifo}: (file): cannot read the scenario: a FIFO, not a regular file" in proc.stdout + proc.stderr
    )


def test_oversized_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * MAX_SCENARIO_BYTES + "\n" + DRAIN)
    size = path.stat().st_size
    assert file_problem(path) == (
        f"{path}: (file): cannot read the scenario: {size} bytes, more than the {MAX_SCENARIO_BYTES} allowed"
    )


def source_with(key: str, value: str) -> str:
    return f'[[sources]]\nname = "p"\n{key} = {json.dumps(value)}\n' + DRAIN


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("/etc/passwd", "is absolute"),
        ("../outside.img", "contains '..'"),
        ("sub/../../x", "contains '..'"),
        ("nul\x00byte", "contains a NUL character"),
        ("sub/", "names a directory, not a file"),
        ("x" * 300, "has a name longer than 255 bytes"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "nul", "directory", "long"],
)
@pytest.mark.parametrize("key", ["file", "image"])
def test_one_path_policy_for_file_and_image(tmp_path: Path, key: str, value: str, why: str) -> None:
    text = (
        source_with(key, value)
        if key == "file"
        else source_with(key, value).replace("[[steps]]", 'temporary = false\nfile = "f"\n[[steps]]')
    )
    problem = only_problem(text, tmp_path / "s.toml")
    assert problem.startswith(f"{tmp_path / 's.toml'}:3: sources[0].{key}: expected a ")
    assert f"which {why}" in problem


def image_problem(tmp_path: Path, image: str) -> str:
    text = f'[[sources]]\nname = "p"\nfile = "f"\nimage = "{image}"\n' + DRAIN
    return only_problem(text, tmp_path / "s.toml")


def test_image_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "scn").mkdir()
    (tmp_path / "secret.img").write_bytes(b"x" * 4096)
    (tmp_path / "scn" / "img").symlink_to(tmp_path / "secret.img")
    problem = image_problem(tmp_path / "scn", "img")
    assert problem.startswith(
        f"{tmp_path / 'scn' / 's.toml'}:4: sources[0].image: image file 'img' is outside"
    )


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_image_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    img = tmp_path / "img"
    if kind == "fifo":
        os.mkfifo(img)
    elif kind == "directory":
        img.mkdir()
    else:
        img.symlink_to("/dev/zero")
        # A symlink out of the folder is refused first; a device inside it cannot be made
        # without privileges, so check the device refusal through the helper directly.
        from pmemsim._files import InputFileError, check_regular_file

        with pytest.raises(InputFileError, match="a character device, not a regular file"):
            check_regular_file("/dev/zero", 1 << 20, "an image")
        return
    word = {"fifo": "a FIFO", "directory": "a directory"}[kind]
    where = f"{tmp_path / 's.toml'}:4: sources[0].image"
    expected = f"{where}: image file 'img' cannot be used: {word}, not a regular file"
    assert image_problem(tmp_path, "img") == expected


def test_nul_in_program_checker() -> None:
    text = '[crash]\nexpect = "consistent"\nprogram = ["ok", "a\\u0000b"]\n[[steps]]\nop = "record"\n'
    assert only_problem(text) == "s.toml:3: crash.program: the command contains a NUL character"


# -- results files --------------------------------------------------------------------------------

RUN = {
    "name": "a.toml",
    "kind": "scenario",
    "backend": "sim",
    "outcome": "passed",
    "duration": 0.5,
    "errors": {},
}


def results_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "results.json"
    path.write_text(text)
    return path


def doc(**run: object) -> str:
    return json.dumps({"format": "pmemsim-results", "version": 1, "runs": [{**RUN, **run}]})


def results_problem(path: Path) -> str:
    with pytest.raises(ResultsError) as info:
        load_results(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def read_line(path: Path, field: str) -> int:
    """The line of ``path`` holding the value of ``field`` (``runs[0].errors.E``), found by hand."""
    key = field.replace("]", "").replace("[", ".").split(".")[-1]
    text = path.read_text()
    if key.isdigit():  # an array element: the line of the array's key
        key = field.split("[")[0].split(".")[-1]
    at = text.index(f'"{key}"')
    return text[:at].count("\n") + 1


def test_valid_results_file_still_reads(tmp_path: Path) -> None:
    [run] = load_results(results_with(tmp_path, doc(errors={"ENOMEM": 2}))).runs
    assert run.errors == {"ENOMEM": 2} and run.duration == 0.5


@pytest.mark.parametrize(
    ("run", "field", "reason"),
    [
        ({"duration": []}, "runs[0].duration", "expected a number of seconds from 0 to 1e+09, got an array"),
        (
            {"duration": -1},
            "runs[0].duration",
            "expected a number of seconds from 0 to 1e+09, got a number -1",
        ),
        (
            {"duration": 1e300},
            "runs[0].duration",
            "expected a number of seconds from 0 to 1e+09, got a number 1e+300",
        ),
        ({"name": 5}, "runs[0].name", "expected a string, got a number 5"),
        ({"message": {}}, "runs[0].message", "expected a string, got an object"),
        ({"kind": "bogus"}, "runs[0].kind", "expected one of 'scenario', 'test', got a string 'bogus'"),
        ({"errors": []}, "runs[0].errors", "expected an object mapping error names to counts, got an array"),
        (
            {"errors": {"E": True}},
            "runs[0].errors.E",
            f"expected a count from 0 to {(1 << 63) - 1}, got a boolean True",
        ),
        ({"errors": {"E": 1 << 70}}, "runs[0].errors.E", "expected a count from 0 to"),
    ],
    ids=[
        "duration-list",
        "duration-negative",
        "duration-huge",
        "name",
        "message",
        "kind",
        "errors",
        "bool",
        "big",
    ],
)
def test_wrong_types_and_ranges_in_a_run(
    tmp_path: Path, run: dict[str, object], field: str, reason: str
) -> None:
    path = results_with(tmp_path, doc(**run))
    problem = results_problem(path)
    line = read_line(path, field)
    assert problem.startswith(f"{path}:{line}: {field}: {reason}"), problem


def test_results_nested_100000_deep(tmp_path: Path) -> None:
    path = results_with(tmp_path, "[" * 100_000 + "]" * 100_000)
    assert results_problem(path) == f"{path}: (syntax): JSON nested more than 8 levels deep"


def test_results_nested_a_little_too_deep_names_the_field(tmp_path: Path) -> None:
    path = results_with(tmp_path, doc(name=[[[[[[[[]]]]]]]]))
    assert results_problem(path) == f"{path}: runs[0].name[0][0][0][0][0]: nested more than 8 levels deep"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (doc().replace('"duration": 0.5', '"duration": NaN'), "(syntax): NaN is not a number JSON allows"),
        (
            doc().replace('"duration": 0.5', '"duration": ' + "9" * 5000),
            "(syntax): a number with thousands of digits",
        ),
        (doc().replace('"version": 1', '"version": true'), "version: results version a boolean True is not"),
        (
            '{"format": "pmemsim-results", "version": 1, "runs": {}}',
            "runs: expected an array of runs, got an object",
        ),
        ('{"format": "pmemsim-results",\n "version": 1,\n "runs": [\n', "(syntax): not valid JSON"),
    ],
    ids=["nan", "digits", "version", "runs", "syntax"],
)
def test_hostile_results_documents(tmp_path: Path, text: str, reason: str) -> None:
    path = results_with(tmp_path, text)
    problem = results_problem(path)
    if "not valid JSON" in reason:
        where = f"{path}:4"
    elif reason.startswith(("version", "runs")):  # a field: its line
        where = f"{path}:{read_line(path, reason.split(':')[0])}"
    else:
        where = str(path)
    assert problem.startswith(f"{where}: {reason}"), problem


def test_results_fifo_dev_zero_and_oversized(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert results_problem(fifo) == f"{fifo}: (file): cannot read results: a FIFO, not a regular file"
    assert results_problem(Path("/dev/zero")) == (
        "/dev/zero: (file): cannot read results: a character device, not a regular file"
    )
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_RESULTS_BYTES + 1)  # sparse: costs no disk
    assert results_problem(big).startswith(
        f"{big}: (file): cannot read results: {MAX_RESULTS_BYTES + 1} bytes"
    )


def test_report_cli_exit_2_for_hostile_results(tmp_path: Path) -> None:
    path = results_with(tmp_path, doc(duration=[]))
    proc = cli("report", "--from", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:{read_line(path, 'runs[0].duration')}: runs[0].duration: expected a number" in proc.stderr


def test_run_cli_exit_2_for_a_deep_scenario(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    proc = cli("run", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{path}:1: (syntax): nested more than 16 levels deep" in proc.stdout + proc.stderr


def test_a_quoted_key_with_a_newline_stays_one_line() -> None:
    problem = only_problem('"a\\nb" = 1\n' + DRAIN)
    assert "\n" not in problem
    # (No line: the line finder keeps escapes as written, so it does not know this key.)
    assert problem.startswith("s.toml: a\\nb: unknown key 'a\\nb'")


def test_a_field_error_in_a_results_file_names_its_line(tmp_path: Path) -> None:
    from pmemsim.report.results import load_results

    path = tmp_path / "results.json"
    path.write_text(
        '{\n "format": "pmemsim-results",\n "version": 1,\n "runs": [\n'
        '  {"name": "a", "kind": "scenario", "backend": "sim", "outcome": "passed"},\n'
        '  {\n   "name": "b",\n   "kind": "scenario",\n   "backend": "sim",\n'
        '   "outcome": "passed",\n   "duration": []\n  }\n ]\n}\n'
    )
    with pytest.raises(ValueError) as info:
        load_results(path)
    assert str(info.value).startswith(f"{path}:11: runs[1].duration: ")
    path.write_text('{"format": "pmemsim-results",\n"version": 7, "runs": []}')
    with pytest.raises(ValueError, match=r":2: version: results version a number 7 is not supported"):
        load_results(path)
