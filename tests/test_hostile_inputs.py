"""Input built to hurt: scenario files and results files end in one line and exit 2, never worse.

Each case of the hostile-input report is a test: nesting deep enough to overflow the
parser's recursion, a ``repeat`` that would allocate gigabytes, numbers of thousands of
digits, NaN where a number is expected, ``/dev/zero`` and a FIFO given as files, files a
scenario names outside its folder, and a results file with the wrong types. Then
hypothesis fuzzers over both readers: mutations of the shipped scenarios and of a valid
results file, and random text, raise nothing but the readers' documented errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmemsim.report.results import load_results
from pmemsim.scenario import ScenarioError, load_scenario, loads_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))
HEAD = """\
[[sources]]
name = "pool"
file = "pool.pmem"
size = 65536
"""


def problems(text: str, tmp_path: Path, name: str = "s.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return "\n".join(str(p) for p in info.value.problems)


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_toml_nested_hundreds_deep(tmp_path: Path) -> None:
    text = HEAD + '[[steps]]\nop = "drain"\nx = ' + "[" * 600 + "]" * 600 + "\n"
    assert "nested" in problems(text, tmp_path)
    proc = run_cli(tmp_path, "run", "s.toml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout


def test_a_repeat_that_would_allocate_gigabytes_is_refused_at_load(tmp_path: Path) -> None:
    text = HEAD + '[[steps]]\nop = "write"\naddr = 0\ndata = "' + "x" * 64 + '"\nrepeat = 16000000\n'
    assert "repeat" in problems(text, tmp_path)
    text = HEAD + '[[steps]]\nop = "write"\naddr = 0\ndata = "0123456789abcdef"\nrepeat = 50000000\n'
    assert "800000000 bytes of data, over 67108864" in problems(text, tmp_path)


def test_numbers_of_thousands_of_digits_and_nan(tmp_path: Path) -> None:
    huge = "9" * 5000
    assert "integer" in problems(HEAD + f'[[steps]]\nop = "drain"\n[space]\nsize = {huge}\n', tmp_path)
    assert "beyond 64 bits" in problems(
        HEAD + f'[[steps]]\nop = "drain"\n[space]\nsize = {"9" * 40}\n', tmp_path
    )
    nan = HEAD + (
        '[crash]\nchecker = "pmemsim.scenario.examples:committed_record"\nexpect = "consistent"\n'
        'timeout = nan\n[[steps]]\nop = "record"\n'
    )
    assert "expected a finite number, got nan" in problems(nan, tmp_path)


def test_dev_zero_and_a_fifo_are_refused_before_they_are_read(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not a regular file"):
        load_scenario("/dev/zero")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    done: list[BaseException] = []

    def load() -> None:
        try:
            load_scenario(fifo)
        except BaseException as exc:
            done.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "loading a FIFO hangs"
    assert isinstance(done[0], ScenarioError) and "not a regular file" in str(done[0].problems[0])
    with pytest.raises(ValueError, match="not a regular file"):
        load_results("/dev/zero")


def test_files_a_scenario_names_stay_in_its_folder(tmp_path: Path) -> None:
    (tmp_path / "outside.img").write_bytes(bytes(4096))
    inner = tmp_path / "inner"
    inner.mkdir()
    text = (
        '[[sources]]\nname = "pool"\nfile = "pool.pmem"\nimage = "../outside.img"\n[[steps]]\nop = "drain"\n'
    )
    assert "relative to the scenario's folder" in problems(text, inner)
    text = text.replace("../outside.img", str(tmp_path / "outside.img"))
    assert "relative to the scenario's folder" in problems(text, inner)
    os.mkfifo(inner / "fifo.img")
    assert "not found" in problems(text.replace(str(tmp_path / "outside.img"), "fifo.img"), inner)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"duration": []}, "'duration' must be a number of seconds, got []"),
        ({"duration": float("nan")}, "'duration' must be a number of seconds"),
        ({"name": {"a": 1}}, "'name' must be a string"),
        ({"errors": {"UNKNOWN": True}}, "'errors' must map error names to counts"),
        ({"outcome": "sort of"}, "'sort of' is not a valid Outcome"),
    ],
)
def test_results_with_wrong_types_are_one_line(tmp_path: Path, run: dict[str, object], message: str) -> None:
    good = {
        "name": "s",
        "kind": "scenario",
        "backend": "sim",
        "outcome": "passed",
        "errors": {},
        "duration": 0.1,
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"format": "pmemsim-results", "version": 1, "runs": [good | run]}))
    with pytest.raises(ValueError) as info:
        load_results(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    proc = run_cli(tmp_path, "report", "results.json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_results_nested_100000_deep(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a results file"):
        load_results(tmp_path / "results.json")
    proc = run_cli(tmp_path, "report", "results.json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# -- fuzzers -------------------------------------------------------------------------------------

_TEXTS = [p.read_text() for p in SCENARIOS]


@st.composite
def mutated(draw: st.DrawFn, texts: list[str]) -> str:
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "digits", "nest"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(st.text(max_size=20)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == "replace":
            text = (
                text[:at]
                + draw(st.sampled_from(["nan", "inf", "-1", "1e400", "[]", "{}", '""']))
                + text[at + 1 :]
            )
        elif kind == "digits":
            text = text[:at] + "9" * draw(st.integers(1, 6000)) + text[at:]
        else:
            depth = draw(st.integers(1, 800))
            text = text[:at] + "[" * depth + "]" * depth + text[at:]
    return text


def _load_any(text: str, where: Path) -> None:
    with contextlib.suppress(ScenarioError):
        loads_scenario(text, where)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(mutated(_TEXTS), st.text(max_size=300)))
def test_fuzz_the_scenario_loader(text: str, tmp_path: Path) -> None:
    _load_any(text, tmp_path / "fuzz.toml")  # anything but ScenarioError fails the test


_RESULTS = json.dumps(
    {
        "format": "pmemsim-results",
        "version": 1,
        "runs": [{"name": "s", "kind": "scenario", "backend": "sim", "outcome": "passed", "errors": {}}],
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(mutated([_RESULTS]), st.text(max_size=300)))
def test_fuzz_the_results_reader(text: str, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates are bytes a file can hold
    try:
        load_results(path)
    except ValueError as exc:
        assert "\n" not in str(exc)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(mutated(_TEXTS), mutated([_RESULTS]), st.text(max_size=2000)))
def test_fuzz_both_readers_long(text: str, tmp_path: Path) -> None:
    _load_any(text, tmp_path / "fuzz.toml")
    path = tmp_path / "r.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates are bytes a file can hold
    with contextlib.suppress(ValueError):
        load_results(path)


def test_an_address_with_a_leading_zero_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    # Found by the long fuzzer: the schema's pattern lets "a+096" through, int("096", 0) does not.
    mapped = '[[steps]]\nop = "part_map"\nsource = "pool"\nname = "a"\n'
    text = HEAD + mapped + '[[steps]]\nop = "read"\naddr = "a+096"\nlength = 1\n'
    assert "not an address: 'a+096'" in problems(text, tmp_path)
