"""Scenario files: the schema, the validator's messages, the line finder, the loader's checks.

Bad input must be reported with the file, the line, the key path and what was expected
(issue 6), every problem of a file at once. The schema is the single source of truth for
keys, types and enums: tests below keep it equal to the code's tables.
"""

from __future__ import annotations

import dataclasses
import errno
import textwrap
import tomllib
from pathlib import Path

import pytest

from pmemsim import Coalescing, ErrorCode, Granularity, MemFlags, SourceFlags
from pmemsim.addrspace import BACKENDS
from pmemsim.faults import FaultSite
from pmemsim.persistence import ENGINES
from pmemsim.scenario import (
    STEP_TYPES,
    Addr,
    ScenarioError,
    load_scenario,
    loads_scenario,
    resolve_checker,
    schema,
)
from pmemsim.scenario._lines import key_lines, line_of
from pmemsim.scenario._schema import SchemaValidator, format_path
from pmemsim.scenario.steps import Memcpy, PartMapStep, Read, SourceSpec

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

GOOD_HEAD = """\
[[sources]]
name = "pool"
file = "pool.pmem"
size = 65536
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return [str(p) for p in info.value.problems]


# -- the shipped scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.steps
    assert scenario.description, "shipped scenarios say what they show"
    if scenario.crash is not None:
        assert resolve_checker(scenario)


def test_one_shipped_scenario_per_documented_part_map_error() -> None:
    documented = {
        "CANNOT_ALLOCATE_INTERNAL_STRUCTURE",
        "INVALID_OFFSET_VALUE",
        "GRANULARITY_NOT_SUPPORTED",
        "INVALID_PMEM2_MAP",
        "LENGTH_UNALIGNED",
        "CANNOT_COALESCE_PARTS",
        "CANNOT_TRUNCATE_SOURCE_FILE",
        "ENOMEM",
        "CANNOT_FIT_PART_MAP",
    }
    for name in documented:
        scenario = load_scenario(SCENARIOS / f"error_{name.lower()}.toml")
        expected = {s.expect for s in scenario.steps if isinstance(s, PartMapStep)}
        assert ErrorCode[name] in expected, name


def test_crash_scenarios_expect_both_verdicts() -> None:
    verdicts = {}
    for path in SCENARIOS.glob("crash_*.toml"):
        crash = load_scenario(path).crash
        assert crash is not None
        verdicts[path.stem] = crash.expect
    assert verdicts["crash_commit_correct"] == "consistent"
    assert verdicts["crash_commit_buggy"] == "inconsistent"


# -- the schema is the single source of truth -------------------------------------------------------


def _step_branches() -> dict[str, dict[str, object]]:
    branches = schema()["$defs"]["step"]["oneOf"]
    return {b["properties"]["op"]["const"]: b for b in branches}


def test_schema_ops_are_the_step_types() -> None:
    assert set(_step_branches()) == set(STEP_TYPES)


def test_schema_step_keys_are_the_dataclass_fields() -> None:
    data_keys = {"data_hex": "data", "repeat": "data", "expect_data_hex": "expect_data"}
    for op, branch in _step_branches().items():
        props = branch["properties"]
        assert isinstance(props, dict)
        keys = {data_keys.get(k, k) for k in props}
        fields = {f.name for f in dataclasses.fields(STEP_TYPES[op])} - {"line", "index"}
        if op == "check":
            fields.discard("expect")  # a check makes no call that could fail
        assert keys == fields, op


def test_schema_enums_match_the_code() -> None:
    defs = schema()["$defs"]
    props = schema()["properties"]
    assert defs["expect"]["enum"] == ["ok", *(e.name for e in ErrorCode)]
    assert defs["granularity"]["enum"] == [g.name for g in Granularity]
    assert defs["coalescing"]["enum"] == [c.name for c in Coalescing]
    assert defs["mem_flags"]["items"]["enum"] == [f.name for f in MemFlags]
    assert defs["engine"]["anyOf"][0]["enum"] == list(ENGINES)
    assert props["faults"]["items"]["properties"]["site"]["enum"] == [s.value for s in FaultSite]
    assert props["backends"]["items"]["enum"] == list(BACKENDS)
    flags = props["sources"]["items"]["properties"]["flags"]["items"]["enum"]
    assert flags == [f.name for f in SourceFlags]
    source_keys = set(props["sources"]["items"]["properties"])
    assert source_keys - {"image"} | {"line"} <= {f.name for f in dataclasses.fields(SourceSpec)}


def test_docs_mention_every_key_of_the_schema() -> None:
    docs = (SCENARIOS.parent / "docs" / "scenarios.md").read_text()
    keys: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.get("properties", {}).items():
                keys.add(k)
                walk(v)
            for k in ("items", "additionalProperties"):
                walk(node.get(k))
            for k in ("oneOf", "anyOf"):
                for b in node.get(k, []):
                    walk(b)

    walk(schema())
    for d in schema()["$defs"].values():
        walk(d)
    missing = sorted(k for k in keys if not any(f"`{w}`" in docs for w in (k, f"[{k}]", f"[[{k}]]")))
    assert not missing
    for op in STEP_TYPES:
        assert f"| `{op}` |" in docs, op


def test_validator_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="'if' is not supported"):
        SchemaValidator({"type": "object", "if": {}})
    with pytest.raises(ValueError, match="does not resolve"):
        SchemaValidator({"$ref": "#/$defs/nowhere"})


# -- bad input: file, line, key, what was expected ----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path / "nope.toml")
    assert "nope.toml" in problem
    assert "cannot read the scenario" in problem


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_HEAD + '\n[[steps]]\nop = "part_map"\nexpect = CANNOT\n')
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:8: (syntax): invalid TOML")


def test_unknown_key_names_line_key_choices_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        [[steps]]
        op = "part_map"
        source = "pool"
        expekt = "ok"
        """,
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:9: steps[0].expekt: unknown key 'expekt'")
    assert "expected one of:" in problem and "expect_size" in problem
    assert "did you mean 'expect'?" in problem


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[space]\npage_size = "4096"\n\n[[steps]]\nop = "drain"\n')
    [problem] = problems_of(path)
    expected = "expected an integer >= 1 and <= 1073741824, got a string '4096'"
    assert problem == f"{path}:2: space.page_size: {expected}"


def test_unknown_error_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD + '\n[[steps]]\nop = "part_map"\nsource = "pool"\nexpect = "CANNOT_COALESE_PARTS"\n',
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:9: steps[0].expect: unknown value 'CANNOT_COALESE_PARTS'")
    assert "'CANNOT_FIT_PART_MAP'" in problem  # the expected values are listed
    assert "did you mean 'CANNOT_COALESCE_PARTS'?" in problem


def test_unknown_engine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        [crash]
        engine = "ReorderFul"
        checker = "pmemsim.scenario.examples:committed_record"
        expect = "consistent"

        [[steps]]
        op = "record"
        """,
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:7: crash.engine: expected one of 'NoReorderNoCheck'")
    assert "Random:SEED:N" in problem
    assert "did you mean 'ReorderFull'?" in problem


def test_unknown_op(tmp_path: Path) -> None:
    path = write(tmp_path, '[[steps]]\nop = "part_mapp"\n')
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: steps[0].op: unknown op 'part_mapp'")
    assert "did you mean 'part_map'?" in problem


def test_missing_required_key_points_at_its_table(tmp_path: Path) -> None:
    path = write(tmp_path, '\n\n[[steps]]\nop = "remove_range"\naddr = 0\n')
    [problem] = problems_of(path)
    assert problem == f"{path}:3: steps[0]: missing required key 'length'"


def test_every_problem_of_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        backends = ["sim", "mmapp"]
        [space]
        pagesize = 4096
        [[faults]]
        site = "map.files"
        [[steps]]
        op = "drain"
        expect_part_maps = -1
        """,
    )
    problems = problems_of(path)
    assert [p.split(": ")[0] for p in problems] == [f"{path}:{n}" for n in (1, 3, 5, 8)]
    assert "did you mean 'mmap'?" in problems[0]
    assert "did you mean 'page_size'?" in problems[1]
    assert "did you mean 'map.file'?" in problems[2]
    assert "expected an integer >= 0 and <= 10000, got -1" in problems[3]
    with pytest.raises(ValueError, match="4 problems"):
        load_scenario(path)


def test_cross_reference_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [[sources]]
        name = "pool"
        file = "pool.pmem"
        size = 4096
        [[sources]]
        name = "pool"
        temporary = true
        [[faults]]
        site = "map.file"
        at = 1
        every = true
        errno = "ENOSPACE"
        [[steps]]
        op = "part_map"
        part = "p"
        [[steps]]
        op = "memcpy"
        addr = "ghost.end+8"
        data = "x"
        [[steps]]
        op = "record"
        """,
    )
    text = "\n".join(problems_of(path))
    assert f"{path}:6: sources[1].name: source name 'pool' is used twice" in text
    assert f"{path}:8: faults[0]: give 'at = N' or 'every = true', not both" in text
    assert f"{path}:12: faults[0].errno: unknown errno name 'ENOSPACE' (did you mean 'ENOSPC'?)" in text
    assert f"{path}:15: steps[0].part: unknown part 'p'" in text
    assert f"{path}:18: steps[1].addr: unknown descriptor 'ghost'" in text
    assert f"{path}:20: steps[2]: a 'record' step records for the [crash] check" in text


def test_crash_without_record_and_with_two_checkers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        [crash]
        checker = "m:f"
        program = "true"
        expect = "consistent"
        [[steps]]
        op = "drain"
        """,
    )
    text = "\n".join(problems_of(path))
    assert "give exactly one of 'checker' (module:function), 'program' (a command), 'recover'" in text
    assert 'add a step with op = "record"' in text


def test_missing_image_file_and_unsafe_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [[sources]]
        name = "a"
        file = "a.pmem"
        image = "data/missing.img"
        [[sources]]
        name = "b"
        file = "../outside.pmem"
        size = 4096
        [[steps]]
        op = "drain"
        """,
    )
    text = "\n".join(problems_of(path))
    assert f"{path}:4: sources[0].image: image file 'data/missing.img' not found" in text
    assert f"{path}:7: sources[1].file: expected a relative file name without '..'" in text


def test_fake_fs_cannot_ask_for_mmap(tmp_path: Path) -> None:
    path = write(tmp_path, 'fake_fs = true\n[[steps]]\nop = "drain"\n')
    [problem] = problems_of(path)
    assert "fake_fs = true works on the sim backend only" in problem


def test_unknown_checker_module_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        [crash]
        checker = "no_such_checker_module:check"
        expect = "consistent"
        [[steps]]
        op = "record"
        """,
    )
    scenario = load_scenario(path)
    with pytest.raises(ScenarioError) as info:
        resolve_checker(scenario)
    [problem] = info.value.problems
    expected = "crash.checker: checker 'no_such_checker_module:check': cannot import module"
    assert str(problem).startswith(f"{path}:7: {expected}")


def test_missing_checker_program(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD + '\n[crash]\nprogram = "./no-such-checker --x"\nexpect = "consistent"\n'
        '[[steps]]\nop = "record"\n',
    )
    with pytest.raises(ScenarioError, match=r":7: crash.program: checker program './no-such-checker'"):
        resolve_checker(load_scenario(path))


def test_checker_module_next_to_the_scenario_is_imported_without_writing_bytecode(tmp_path: Path) -> None:
    (tmp_path / "my_checker_for_loader_test.py").write_text("def check(image):\n    return True\n")
    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        [crash]
        checker = "my_checker_for_loader_test:check"
        expect = "consistent"
        [[steps]]
        op = "record"
        """,
    )
    fn = resolve_checker(load_scenario(path))
    assert callable(fn) and fn(b"") is True
    assert not (tmp_path / "__pycache__").exists()


# -- what a valid file becomes ------------------------------------------------------------------------


def test_values_are_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        flags = ["CREATE_IF_NEEDED", "TRUNCATE_IF_NEEDED"]
        [[faults]]
        site = "file.truncate"
        errno = "ENOSPC"
        [[steps]]
        op = "part_map"
        source = "pool"
        name = "a"
        [[steps]]
        op = "memcpy"
        addr = "a.end-0x10"
        data = "ab"
        repeat = 3
        flags = ["NODRAIN", "NONTEMPORAL"]
        [[steps]]
        op = "read"
        addr = 64
        length = 2
        expect_data_hex = "00ff"
        expect = "CANNOT_FIND_PART_MAP"
        """,
    )
    with pytest.raises(ScenarioError, match="'expect_data_hex' cannot hold when the step expects"):
        load_scenario(path)
    path.write_text(path.read_text().replace('expect = "CANNOT_FIND_PART_MAP"\n', ""))
    s = load_scenario(path)
    assert s.sources[0].flags == SourceFlags.CREATE_IF_NEEDED | SourceFlags.TRUNCATE_IF_NEEDED
    assert s.faults[0].errno == errno.ENOSPC
    memcpy = s.steps[1]
    assert isinstance(memcpy, Memcpy)
    assert memcpy.addr == Addr(offset=-16, base="a", end=True)
    assert memcpy.data == b"ababab"
    assert memcpy.flags == MemFlags.NODRAIN | MemFlags.NONTEMPORAL
    assert memcpy.line == 14 and memcpy.where() == "step 2 (memcpy, line 14)"  # its [[steps]] line
    read = s.steps[2]
    assert isinstance(read, Read) and read.expect_data == b"\x00\xff" and read.addr == Addr(64)


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        (0, Addr(0)),
        ("a", Addr(0, "a")),
        ("a.end", Addr(0, "a", True)),
        ("p-1+0x10", None),
        ("a-b", None),
        ("a-8", Addr(-8, "a")),
        ("b_2 + 0x1000", Addr(4096, "b_2")),
        ("c.end-8", Addr(-8, "c", True)),
    ],
)
def test_addr_parse(text: int | str, addr: Addr | None) -> None:
    if addr is None:
        with pytest.raises(ValueError):
            Addr.parse(text)
    else:
        assert Addr.parse(text) == addr


def test_string_scenarios_need_no_file() -> None:
    s = loads_scenario('[[steps]]\nop = "check"\nexpect_part_maps = 0\n', "inline.toml")
    assert s.name == "inline" and s.backends == ("sim", "mmap")
    with pytest.raises(ScenarioError, match=r"inline.toml:3: steps\[0\].expect: unknown key"):
        loads_scenario('[[steps]]\nop = "check"\nexpect = "ok"\n', "inline.toml")


# -- the line finder ---------------------------------------------------------------------------------


def test_key_lines_follow_tables_arrays_and_strings() -> None:
    text = textwrap.dedent(
        '''\
        # comment [not = a table]
        description = """
        [fake] = "inside a string"
        """
        backends = ["sim",
          "mmap"]  # trailing comment
        [space]
        occupied = [
          { at = 0, size = 4096 },
          {at=8192, size=1},
        ]
        "quoted.key".x = 'lit'
        [[steps]]
        op = "a"

        [[steps]]
        op = 'b' # c
        expect = "ok"
        [crash.markers]
        TX = "ReorderFull"
        '''
    )
    tomllib.loads(text)  # the scanner only reads documents tomllib accepts
    lines = key_lines(text)
    assert lines[("description",)] == 2
    assert ("fake",) not in lines
    assert lines[("backends", 1)] == 6
    assert lines[("space", "occupied", 1, "size")] == 10
    assert lines[("space", "quoted.key", "x")] == 12
    assert lines[("steps", 0, "op")] == 14
    assert lines[("steps", 1)] == 16
    assert lines[("steps", 1, "expect")] == 18
    assert lines[("crash", "markers", "TX")] == 20
    assert line_of(lines, ("steps", 1, "nope", 3)) == 16
    assert line_of(lines, ("nowhere",)) is None
    assert format_path(("steps", 1, "expect")) == "steps[1].expect"
    assert format_path(()) == "(top level)"


def test_crash_checks_default_to_the_engine_of_crash_check_and_replay(tmp_path: Path) -> None:
    from pmemsim.testing.crash import DEFAULT_ENGINE

    path = write(
        tmp_path,
        GOOD_HEAD
        + """
        [crash]
        checker = "pmemsim.scenario.examples:committed_record"
        expect = "consistent"
        [[steps]]
        op = "record"
        """,
    )
    crash = load_scenario(path).crash
    assert crash is not None and crash.engine == DEFAULT_ENGINE == "Exhaustive"
