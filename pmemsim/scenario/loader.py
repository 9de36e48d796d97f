"""Read a scenario file: TOML → schema validation → frozen steps → cross-reference checks.

Every problem of a file is collected into one :class:`ScenarioError` (a ValueError):
each names the file, the line (found by scanning the TOML text for the key), the key
path and what was expected. The schema (``schema.json``, shipped in the package) says
which keys exist, their types and allowed values; this module adds only what a schema
cannot say: names used before they are defined, keys that exclude each other, files
that must exist.

Input built to hurt is refused before it costs anything: the file is opened without
blocking and refused unless it is a regular file of at most :data:`MAX_SCENARIO_BYTES`;
nesting deeper than :data:`MAX_DEPTH`, arrays or tables longer than :data:`MAX_ITEMS`
and numbers too long for Python are reported before validation; every size, count
and repeat has a maximum in the schema, and data built from ``repeat`` is measured
before it is built (:data:`MAX_DATA`). Every file a scenario names (a source's
``file``, an ``image``) follows one path policy: relative, no ``..``, inside the
scenario's folder after symlinks are resolved; an image must be a regular file.
"""

from __future__ import annotations

import errno as _errno
import functools
import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pmemsim._files import InputFileError, check_regular_file, read_regular_file, why_refused
from pmemsim.addrspace.backends import BACKENDS, DEFAULT_BACKENDS, backend
from pmemsim.addrspace.base import Placement
from pmemsim.enums import Coalescing, Granularity, MemFlags, SourceFlags
from pmemsim.errors import ErrorCode
from pmemsim.scenario._lines import key_lines, line_of
from pmemsim.scenario._schema import KeyPath, SchemaValidator, format_path
from pmemsim.scenario.steps import (
    MAX_OFFSET,
    STEP_TYPES,
    Addr,
    ConfigSpec,
    CrashSpec,
    FaultSpec,
    FirstPartMap,
    NextPartMap,
    PartMapByAddress,
    PartMapStep,
    PartNew,
    Record,
    Scenario,
    SourceSpec,
    SpaceSpec,
    Step,
    StopRecording,
)

__all__ = [
    "MAX_DATA",
    "MAX_DEPTH",
    "MAX_IMAGE_BYTES",
    "MAX_ITEMS",
    "MAX_OFFSET",
    "MAX_SCENARIO_BYTES",
    "SCENARIO_SUFFIX",
    "Problem",
    "ScenarioError",
    "discover",
    "load_scenario",
    "loads_scenario",
    "schema",
]

SCENARIO_SUFFIX = ".toml"

#: Largest scenario file read (a scenario is a page or two of TOML).
MAX_SCENARIO_BYTES = 1 << 20
#: Largest image file a source may be copied from (the runner reads it into memory).
MAX_IMAGE_BYTES = 64 << 20
#: Deepest nesting of tables and arrays (the format itself needs 4).
MAX_DEPTH = 16
#: Most items in one array and keys in one table (steps, sources, faults...).
MAX_ITEMS = 10_000
#: Most bytes of data one step carries (``data`` times ``repeat``, ``expect_data``).
MAX_DATA = 16 << 20
# The longest file name component most file systems allow.
_NAME_MAX = 255


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        # One line per problem, whatever a quoted key or a quoted value holds.
        text = f"{where}: {self.key}: {self.message}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; ``problems`` lists everything wrong with it."""

    def __init__(self, file: str, problems: Iterable[Problem]) -> None:
        self.file = file
        # In file order; problems without a line (the file as a whole) first.
        self.problems = tuple(sorted(problems, key=lambda p: -1 if p.line is None else p.line))
        n = len(self.problems)
        head = f"{file}: {n} problem{'s' if n != 1 else ''}"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


@functools.cache
def schema() -> dict[str, Any]:
    """The scenario JSON Schema shipped with the package."""
    text = resources.files("pmemsim.scenario").joinpath("schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def _validator() -> SchemaValidator:
    return SchemaValidator(schema())


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file. Raises ScenarioError listing every problem."""
    p = Path(path)
    shown = os.fspath(path)
    try:
        raw = read_regular_file(p, MAX_SCENARIO_BYTES, "a scenario")
    except (OSError, InputFileError) as exc:
        raise ScenarioError(
            shown, [Problem(shown, None, "(file)", f"cannot read the scenario: {why_refused(exc)}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(
            shown, [Problem(shown, line, "(file)", "not UTF-8 text: TOML files are UTF-8")]
        ) from None
    return loads_scenario(text, p, shown=shown)


def loads_scenario(
    text: str, path: str | os.PathLike[str] = "<string>", *, shown: str | None = None
) -> Scenario:
    """Validate scenario ``text``; ``path`` names it and anchors relative paths (images, checkers)."""
    p = Path(path)
    name = os.fspath(path) if shown is None else shown
    if len(text) > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            name,
            [Problem(name, None, "(file)", f"{len(text)} characters, more than {MAX_SCENARIO_BYTES}")],
        )
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS.search(msg)
        line = int(m.group(1)) if m else None
        if m:
            msg = f"{msg[: m.start()]} (column {m.group(2)})"
        raise ScenarioError(name, [Problem(name, line, "(syntax)", f"invalid TOML: {msg}")]) from None
    except RecursionError:
        raise ScenarioError(
            name,
            [Problem(name, _line_too_deep(text), "(syntax)", f"nested more than {MAX_DEPTH} levels deep")],
        ) from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        m = _LONG_NUMBER.search(text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        problem = Problem(name, line, "(syntax)", "a number with thousands of digits")
        raise ScenarioError(name, [problem]) from None
    try:
        lines = key_lines(text)
    except RecursionError:  # cannot happen for what tomllib accepted; lines are only a courtesy
        lines = {}
    problems = [
        Problem(name, _line_within(lines, path_), format_path(path_), message)
        for path_, message in _oversized(doc)
    ]
    if problems:
        raise ScenarioError(name, problems)
    problems = [
        Problem(name, line_of(lines, issue.path), format_path(issue.path), issue.message)
        for issue in _validator().issues(doc)
    ]
    if problems:
        raise ScenarioError(name, problems)
    builder = _Builder(p, name, lines)
    scenario = builder.build(doc)
    if builder.problems:
        raise ScenarioError(name, builder.problems)
    return scenario


_LONG_NUMBER = re.compile(r"(?:[0-9]_?){4000,}")


def _line_too_deep(text: str) -> int | None:
    """The line where brackets first nest deeper than MAX_DEPTH (a guess: strings are not skipped)."""
    depth = 0
    line = 1
    for c in text:
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "\n":
            line += 1
    return None


def _line_within(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path`` or an ancestor, else the first line of a key below it (a dotted header)."""
    found = line_of(lines, path)
    if found is not None:
        return found
    below = [n for p, n in lines.items() if p[: len(path)] == path]
    return min(below) if below else None


def _oversized(doc: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """Nesting deeper than MAX_DEPTH, arrays and tables longer than MAX_ITEMS (iteratively)."""
    found: list[tuple[KeyPath, str]] = []
    stack: list[tuple[object, KeyPath]] = [(doc, ())]
    while stack and len(found) < 10:
        value, path = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            found.append((path, f"nested more than {MAX_DEPTH} levels deep"))
            continue
        if len(value) > MAX_ITEMS:
            what = "keys" if isinstance(value, dict) else "items"
            found.append((path, f"{len(value)} {what}, more than the {MAX_ITEMS} allowed"))
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((v, (*path, k)) for k, v in items)
    return found


def _path_problem(value: str) -> str | None:
    """Why ``value`` breaks the path policy for files a scenario names, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if os.path.isabs(value) or value.startswith("~"):
        return "is absolute"
    parts = value.split("/")
    if ".." in parts:
        return "contains '..'"
    if not parts[-1] or parts[-1] == ".":
        return "names a directory, not a file"
    if any(len(part.encode("utf-8", "surrogatepass")) > _NAME_MAX for part in parts):
        return f"has a name longer than {_NAME_MAX} bytes"
    return None


def discover(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, Path | None, str | None]]:
    """``(shown path, path, problem)`` for every scenario file named or found in a directory.

    Directories are searched recursively for ``*.toml``, in sorted order; ``problem`` is a
    message (and ``path`` None) for a path that does not exist or a directory without
    scenarios.
    """
    for given in paths:
        p = Path(given)
        shown = os.fspath(given)
        if p.is_dir():
            found = sorted(q for q in p.rglob(f"*{SCENARIO_SUFFIX}") if q.is_file())
            if not found:
                yield shown, None, f"{shown}: no *{SCENARIO_SUFFIX} scenario files in this directory"
            for q in found:
                yield os.path.join(shown, os.fspath(q.relative_to(p))), q, None
        elif p.exists():
            yield shown, p, None
        else:
            yield shown, None, f"{shown}: no such file or directory"


# -- building a scenario from a validated document ---------------------------------------------


def _flags(names: list[str], enum: type[MemFlags] | type[SourceFlags]) -> Any:
    value = enum(0)
    for n in names:
        value |= enum[n]
    return value


def _data_size(d: Mapping[str, Any], key: str) -> int:
    """How many bytes ``_data`` would build, computed without building them."""
    n = len(str(d[key]).encode("utf-8", "surrogatepass")) if key in d else len(d[f"{key}_hex"]) // 2
    return n * int(d.get("repeat", 1)) if key == "data" else n


def _data(d: Mapping[str, Any], key: str) -> bytes | None:
    if key in d:
        raw = str(d[key]).encode("utf-8", "surrogatepass")
    elif f"{key}_hex" in d:
        raw = bytes.fromhex(d[f"{key}_hex"])
    else:
        return None
    return raw * int(d.get("repeat", 1)) if key == "data" else raw


# How a key of a step becomes a field of its dataclass (keys not listed pass through).
_STEP_KEYS: dict[str, Any] = {
    "expect": lambda v: None if v == "ok" else ErrorCode[v],
    "addr": Addr.parse,
    "expect_addr_relative": Addr.parse,
    "mode": lambda v: Coalescing[v],
    "flags": lambda v: _flags(v, MemFlags),
}
_DATA_KEYS = frozenset({"data", "data_hex", "repeat", "expect_data", "expect_data_hex"})

# Step kinds whose ``name`` is a descriptor (usable in addresses); the rest name other things.
_DESCRIBING = (PartMapStep, FirstPartMap, NextPartMap, PartMapByAddress)


class _Builder:
    def __init__(self, path: Path, shown: str, lines: dict[KeyPath, int]) -> None:
        self.path = path
        self.shown = shown
        self.lines = lines
        self.problems: list[Problem] = []
        self.backends: tuple[str, ...] = DEFAULT_BACKENDS
        self.space_size = min(backend(b).default_size for b in DEFAULT_BACKENDS)

    def problem(self, key: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.shown, line_of(self.lines, key), format_path(key), message))

    def line(self, key: KeyPath) -> int | None:
        return line_of(self.lines, key)

    def build(self, doc: dict[str, Any]) -> Scenario:
        backends = tuple(doc.get("backends", DEFAULT_BACKENDS))
        self.backends = backends
        fake_fs = bool(doc.get("fake_fs", False))
        real_files_only = [b for b in backends if not backend(b).fake_files]
        if fake_fs and real_files_only:
            # Suggest the default backends that can (a debugging backend need not be mentioned).
            fakes = [b for b in DEFAULT_BACKENDS if backend(b).fake_files]
            self.problem(
                ("backends",) if "backends" in doc else ("fake_fs",),
                f"fake_fs = true works on the {' and '.join(fakes)} backend only "
                f"(the {' and '.join(real_files_only)} backend cannot map a fake file); "
                f"set backends = {json.dumps(fakes)}",
            )
        space = self.space(doc.get("space", {}))
        sources = tuple(self.source(i, s) for i, s in enumerate(doc.get("sources", [])))
        config = self.config(doc.get("config", {}), space)
        faults = tuple(self.fault(i, f) for i, f in enumerate(doc.get("faults", [])))
        steps = tuple(self.step(i, s) for i, s in enumerate(doc["steps"]))
        crash = self.crash(doc["crash"]) if "crash" in doc else None
        self.cross_check(sources, steps, crash)
        return Scenario(
            path=self.path,
            name=self.path.stem,
            steps=steps,
            description=doc.get("description", ""),
            backends=backends,
            fake_fs=fake_fs,
            space=space,
            sources=sources,
            config=config,
            faults=faults,
            crash=crash,
        )

    def space(self, d: dict[str, Any]) -> SpaceSpec:
        page = int(d.get("page_size", 4096))
        if page & (page - 1):
            self.problem(("space", "page_size"), f"expected a power of two, got {page}")
            page = 4096
        elif strict := [b for b in self.backends if page % backend(b).page_multiple]:
            others = [b for b in BACKENDS if b not in strict]
            self.problem(
                ("space", "page_size"),
                f"{page} is not a multiple of this system's page size {backend(strict[0]).page_multiple}, "
                f"which the {' and '.join(strict)} backend needs; use a multiple or set "
                f"backends = {json.dumps(others)}",
            )
        size = d.get("size")
        if size is not None and size % page:
            self.problem(("space", "size"), f"{size} is not a multiple of the page size {page}")
        self.space_size = size if size is not None else min(backend(b).default_size for b in self.backends)
        occupied = []
        for i, o in enumerate(d.get("occupied", [])):
            for k in ("at", "size"):
                if o[k] % page:
                    self.problem(
                        ("space", "occupied", i, k), f"{o[k]} is not a multiple of the page size {page}"
                    )
            if o["at"] + o["size"] > self.space_size:
                self.problem(
                    ("space", "occupied", i),
                    f"[{o['at']:#x}, {o['at'] + o['size']:#x}) ends past the address space "
                    f"({self.space_size:#x} bytes)",
                )
            occupied.append((int(o["at"]), int(o["size"])))
        grans = d.get("granularities")
        return SpaceSpec(
            page_size=page,
            size=size,
            limit=d.get("limit"),
            placement=Placement(d.get("placement", "bottom-up")),
            granularities=None if grans is None else frozenset(Granularity[g] for g in grans),
            occupied=tuple(occupied),
        )

    def source(self, i: int, d: dict[str, Any]) -> SourceSpec:
        key: KeyPath = ("sources", i)
        temporary = bool(d.get("temporary", False))
        file = d.get("file")
        if temporary == (file is not None):
            self.problem(key, "give exactly one of 'file' (a file name) or 'temporary = true'")
        if temporary:
            for k in ("size", "image", "flags", "device_granularity"):
                if k in d:
                    self.problem((*key, k), f"'{k}' applies to a 'file' source, not a temporary one")
        if file is not None:
            why = _path_problem(file)
            if why is not None:
                self.problem(
                    (*key, "file"),
                    f"expected a relative file name without '..', got {file!r}, which {why}: source "
                    "files are created in a private directory for each run, never in yours",
                )
        image = None
        if "image" in d:
            if "size" in d:
                self.problem((*key, "image"), "give 'size' (a zero-filled file) or 'image', not both")
            image = self.image((*key, "image"), d["image"])
        return SourceSpec(
            name=d["name"],
            line=self.line(key),
            file=file,
            temporary=temporary,
            size=d.get("size"),
            image=image,
            flags=_flags(d.get("flags", []), SourceFlags),
            device_granularity=Granularity[d["device_granularity"]] if "device_granularity" in d else None,
        )

    def image(self, key: KeyPath, given: str) -> Path | None:
        """The image file ``given`` names, after the path policy and a look at what it is."""
        why = _path_problem(given)
        if why is not None:
            self.problem(
                key,
                f"expected a file name relative to the scenario's folder without '..', got {given!r}, "
                f"which {why}",
            )
            return None
        try:
            folder = self.path.parent.resolve()
            image = (folder / given).resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            self.problem(key, f"cannot resolve image file {given!r}: {exc}")
            return None
        if not image.is_relative_to(folder):
            self.problem(key, f"image file {given!r} is outside the scenario's folder (resolves to {image})")
            return None
        if not image.exists():
            self.problem(key, f"image file {given!r} not found (looked for {image})")
            return None
        try:
            check_regular_file(image, MAX_IMAGE_BYTES, "an image")
        except (OSError, InputFileError) as exc:
            self.problem(key, f"image file {given!r} cannot be used: {why_refused(exc)}")
            return None
        return image

    def config(self, d: dict[str, Any], space: SpaceSpec) -> ConfigSpec:
        rsv = d.get("reservation")
        at = d.get("reservation_at")
        if rsv is not None and rsv % space.page_size:
            self.problem(
                ("config", "reservation"), f"{rsv} is not a multiple of the page size {space.page_size}"
            )
        if at is not None and rsv is None:
            self.problem(("config", "reservation_at"), "'reservation_at' needs 'reservation' (its size)")
        elif at is not None and at % space.page_size:
            self.problem(
                ("config", "reservation_at"), f"{at} is not a multiple of the page size {space.page_size}"
            )
        if rsv is not None and (at or 0) + rsv > self.space_size:
            self.problem(
                ("config", "reservation"),
                f"a reservation of {rsv:#x} bytes{'' if at is None else f' at {at:#x}'} does not fit in "
                f"the address space ({self.space_size:#x} bytes)",
            )
        return ConfigSpec(
            granularity=Granularity[d.get("granularity", "PAGE")], reservation=rsv, reservation_at=at
        )

    def fault(self, i: int, d: dict[str, Any]) -> FaultSpec:
        key: KeyPath = ("faults", i)
        if "at" in d and d.get("every"):
            self.problem(key, "give 'at = N' or 'every = true', not both")
        err = None
        if "errno" in d:
            err = getattr(_errno, d["errno"], None)
            if not isinstance(err, int):
                import difflib

                close = difflib.get_close_matches(d["errno"], list(_errno.errorcode.values()), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem((*key, "errno"), f"unknown errno name {d['errno']!r}{hint}")
                err = None
        return FaultSpec(site=d["site"], at=d.get("at"), every=bool(d.get("every", False)), errno=err)

    def step(self, i: int, d: dict[str, Any]) -> Step:
        key: KeyPath = ("steps", i)
        cls = STEP_TYPES[d["op"]]
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            if k == "op" or k in _DATA_KEYS:
                continue
            conv = _STEP_KEYS.get(k)
            try:
                kwargs[k] = conv(v) if conv is not None else v
            except ValueError as exc:
                self.problem((*key, k), str(exc))
                kwargs[k] = v if k != "addr" else Addr()
        for data_key in ("data", "expect_data"):
            has_text, has_hex = data_key in d, f"{data_key}_hex" in d
            if has_text and has_hex:
                self.problem(key, f"give '{data_key}' or '{data_key}_hex', not both")
            if has_text or has_hex:
                n = _data_size(d, data_key)
                if n > MAX_DATA:
                    self.problem(
                        (*key, "repeat" if data_key == "data" and "repeat" in d else data_key),
                        f"{data_key} of {n} bytes, more than the {MAX_DATA} one step may carry",
                    )
                    kwargs[data_key] = b""
                else:
                    kwargs[data_key] = _data(d, data_key)
        if d["op"] in ("memcpy", "write") and "data" not in kwargs:
            self.problem(key, f"{d['op']} needs 'data' (text) or 'data_hex' (bytes in hex)")
        if "repeat" in d and "data" not in kwargs:
            self.problem((*key, "repeat"), "'repeat' repeats 'data' or 'data_hex'; give one of them")
        if d.get("expect", "ok") != "ok":
            for k in ("expect_size", "expect_addr_relative", "expect_data", "expect_data_hex"):
                if k in d:
                    self.problem(
                        (*key, k), f"'{k}' cannot hold when the step expects the error {d['expect']}"
                    )
        if d["op"] == "part_map":
            if ("part" in d) == ("source" in d):
                self.problem(
                    key, "part_map needs 'part' (a part made by part_new) or 'source' (a part made here)"
                )
            if "part" in d:
                for k in ("offset", "length"):
                    if k in d:
                        self.problem((*key, k), f"'{k}' belongs to the part_new step of part {d['part']!r}")
        return cls(line=self.line(key), index=i, **kwargs)

    def crash(self, d: dict[str, Any]) -> CrashSpec:
        judges = [k for k in ("checker", "program", "recover", "recover_program") if k in d]
        if len(judges) != 1:
            self.problem(
                ("crash",),
                "give exactly one of 'checker' (module:function), 'program' (a command), "
                "'recover' (module:function) or 'recover_program' (a command)",
            )
        program = self.command(d, "program")
        recover_program = self.command(d, "recover_program")
        judge = judges[0] if judges else "checker"
        return CrashSpec(
            expect=d["expect"],
            line=self.line(("crash",)),
            engine=d.get("engine", "Exhaustive"),
            markers=tuple(d.get("markers", {}).items()),
            checker=d.get("checker"),
            program=tuple(program) if program else None,
            seed=d.get("seed"),
            timeout=d.get("timeout"),
            checker_line=self.line(("crash", judge)),
            recover=d.get("recover"),
            recover_program=tuple(recover_program) if recover_program else None,
        )

    def command(self, d: dict[str, Any], key: str) -> list[str] | None:
        """The [crash] command under ``key`` as an argument list (None when absent or bad)."""
        program = d.get(key)
        words = [program] if isinstance(program, str) else program or []
        if any("\x00" in w for w in words):
            self.problem(("crash", key), "the command contains a NUL character")
            return None
        if isinstance(program, str):
            import shlex

            try:
                return shlex.split(program)
            except ValueError as exc:
                self.problem(("crash", key), f"cannot split the command: {exc}")
                return None
        return list(program) if program else None

    def cross_check(
        self, sources: tuple[SourceSpec, ...], steps: tuple[Step, ...], crash: CrashSpec | None
    ) -> None:
        """Names defined before use, recording brackets, [crash] ↔ record step."""
        source_names: set[str] = set()
        for i, s in enumerate(sources):
            if s.name in source_names:
                self.problem(("sources", i, "name"), f"source name {s.name!r} is used twice")
            source_names.add(s.name)
        parts: set[str] = set()
        descriptors: set[str] = set()
        maps: set[str] = set()
        recording = False
        recorded = False
        for i, step in enumerate(steps):
            key: KeyPath = ("steps", i)

            def need(kind: str, name: str, known: set[str], field: str, key: KeyPath = key) -> None:
                if name not in known:
                    defined = ", ".join(sorted(known)) or "none yet"
                    self.problem(
                        (*key, field), f"unknown {kind} {name!r} (defined before this step: {defined})"
                    )

            source = getattr(step, "source", None)
            if source is not None:
                need("source", source, source_names, "source")
            part = getattr(step, "part", None)
            if part is not None:
                need("part", part, parts, "part")
            ref = getattr(step, "map", None)
            if ref is not None:
                need("part-map reference", ref, maps, "map")
            for field in ("addr", "expect_addr_relative"):
                addr = getattr(step, field, None)
                if isinstance(addr, Addr) and addr.base is not None:
                    need("descriptor", addr.base, descriptors, field)
            ok = step.expect is None
            name = getattr(step, "name", None)
            if isinstance(step, PartNew) and ok:
                parts.add(step.name)
            elif isinstance(step, _DESCRIBING) and ok and name is not None:
                descriptors.add(name)
                if isinstance(step, FirstPartMap | NextPartMap | PartMapByAddress):
                    (maps.discard if step.drop else maps.add)(name)
            if isinstance(step, Record):
                if recording or recorded:
                    self.problem(key, "recording starts once per scenario (one 'record' step)")
                recording = recorded = True
                if crash is None:
                    self.problem(key, "a 'record' step records for the [crash] check; add a [crash] section")
            elif isinstance(step, StopRecording):
                if not recording:
                    self.problem(key, "'stop_recording' without a 'record' step before it")
                recording = False
        if crash is not None and not recorded:
            self.problem(
                ("crash",),
                '[crash] checks what was recorded: add a step with op = "record" before the stores',
            )
