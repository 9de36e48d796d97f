"""Project hygiene as tests: the public API is exact, the code is lint- and type-clean, the tour runs."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pmemsim

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_exact_and_importable():
    # Names load lazily from a table: __all__ must list exactly the table, and each
    # name must resolve (to an object of the module the table names).
    assert set(pmemsim.__all__) == set(pmemsim._EXPORTS) | {"__version__"}
    assert len(pmemsim.__all__) == len(set(pmemsim.__all__))
    for name, module in pmemsim._EXPORTS.items():
        value = getattr(pmemsim, name)
        assert value is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = pmemsim.Nope


def test_import_pmemsim_is_cheap():
    # The pytest plugin imports the package in every test run of every user.
    code = "import sys, pmemsim; print(sorted(m for m in sys.modules if m.startswith('pmemsim')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['pmemsim', 'pmemsim._exports']"


def test_public_names_have_docstrings():
    missing = [
        name
        for name in pmemsim.__all__
        if callable(getattr(pmemsim, name)) and not (getattr(pmemsim, name).__doc__ or "").strip()
    ]
    assert missing == []


def test_py_typed_marker_is_shipped():
    assert (ROOT / "pmemsim" / "py.typed").is_file()


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by the [test] extra")
def test_ruff_is_clean():
    result = subprocess.run(
        ["ruff", "check", "--output-format", "concise", "pmemsim", "tests", "benchmarks", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_tour_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tour.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "PMEMSET_E_CANNOT_COALESCE_PARTS" in result.stdout
    assert "in the file: b'hello, pmem'" in result.stdout


#: The persistence package's layers, bottom first: a module imports only from layers below it
#: (log, checkers -> model -> image -> engines, linearizability -> parallel -> explore -> shrink,
#: stream; the readers, writers and reports sit beside the layer they need).
PERSISTENCE_LAYERS = [
    {"log", "programs"},
    {"checkers"},
    {"model"},
    {"image", "results", "pmemcheck", "lazy"},
    {"engines", "saved", "linearizability"},
    {"parallel", "progress"},
    {"explore"},
    {"shrink", "shards", "stream"},
]


def _persistence_imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-local and TYPE_CHECKING imports too
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pmemsim.persistence":
                # A submodule by name, else a name from the package's front door (above every module).
                names.update(
                    a.name if (path.parent / f"{a.name}.py").exists() else "__init__" for a in node.names
                )
            elif node.module.startswith("pmemsim.persistence."):
                names.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            names.update(
                a.name.split(".")[2] for a in node.names if a.name.startswith("pmemsim.persistence.")
            )
    return names


def _layer_violations(package: Path) -> list[str]:
    rank = {name: i for i, layer in enumerate(PERSISTENCE_LAYERS) for name in layer}
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert modules == set(rank), "a persistence module is missing from PERSISTENCE_LAYERS"
    rank["__init__"] = len(PERSISTENCE_LAYERS)
    return [
        f"{module} imports {target}"
        for module in sorted(modules)
        for target in sorted(_persistence_imports(package / f"{module}.py"))
        if target in rank and rank[target] >= rank[module] and target != module
    ]


def test_persistence_imports_run_one_way() -> None:
    assert _layer_violations(ROOT / "pmemsim" / "persistence") == []


def test_an_import_against_the_layers_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "persistence"
    shutil.copytree(ROOT / "pmemsim" / "persistence", copy)
    model = copy / "model.py"
    model.write_text(
        model.read_text() + "\n\ndef _late() -> None:\n    from pmemsim.persistence import replay\n"
    )
    assert _layer_violations(copy) == ["model imports __init__"]
    engines = copy / "engines.py"
    engines.write_text(engines.read_text() + "\nfrom pmemsim.persistence.explore import Explorer\n")
    assert _layer_violations(copy) == ["engines imports explore", "model imports __init__"]


#: The package's layers, bottom first: a module imports only from its own layer or below
#: (function-local and TYPE_CHECKING imports included). Values know nothing; the file layer
#: is the one door to the OS; address spaces and the persistence models sit on it side by
#: side (neither imports the other); the core (sources, the set, its events and config)
#: uses both; the faces are what users hold. docs/architecture.md draws the same picture.
PACKAGE_LAYERS: list[tuple[str, set[str]]] = [
    ("values", {"errors", "enums", "faults", "_callables", "_exports"}),
    ("files", {"_files"}),
    ("spaces", {"addrspace", "persistence"}),
    ("core", {"source", "events", "config", "parts", "pmemset", "_recording"}),
    ("front", {"__init__", "capi"}),
    ("report", {"report"}),
    ("testing", {"testing"}),
    ("scenario", {"scenario"}),
    ("cli", {"cli", "__main__"}),
]

#: Layers that must not import each other although they share a rank.
SIBLINGS = [("addrspace", "persistence")]


def _unit(module: str) -> str:
    """The top-level unit (``addrspace``, ``pmemset``, ``__init__``) of a dotted module name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _package_imports(package: Path, path: Path) -> set[tuple[str, str]]:
    """``(unit, name)`` for each pmemsim import of ``path`` (``name``: what was taken from it)."""
    import ast

    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pmemsim":
                for a in node.names:
                    is_module = (package / a.name).is_dir() or (package / f"{a.name}.py").exists()
                    found.add((a.name, "") if is_module else ("__init__", a.name))
            elif node.module.startswith("pmemsim."):
                unit = _unit(node.module)
                found.update((unit, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            found.update((_unit(a.name), "") for a in node.names if a.name.startswith("pmemsim."))
    return found


def _package_violations(package: Path) -> list[str]:
    rank = {unit: i for i, (_name, units) in enumerate(PACKAGE_LAYERS) for unit in units}
    units = {p.stem for p in package.glob("*.py")} | {p.parent.name for p in package.glob("*/__init__.py")}
    assert units == set(rank), f"a module is missing from PACKAGE_LAYERS: {sorted(units ^ set(rank))}"
    siblings = {frozenset(pair) for pair in SIBLINGS}
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        unit = "__init__" if rel.parts == ("__init__.py",) else rel.parts[0].removesuffix(".py")
        for target, name in sorted(_package_imports(package, path)):
            if target == unit:
                continue
            where = f"pmemsim/{rel.as_posix()} imports {target}"
            if rank[target] > rank[unit]:
                problems.append(
                    f"{where}: {PACKAGE_LAYERS[rank[target]][0]} is above {PACKAGE_LAYERS[rank[unit]][0]}"
                )
            elif frozenset((unit, target)) in siblings:
                problems.append(f"{where}: the two sit side by side, apart")
            elif target == "_files" and name.startswith("_"):
                problems.append(f"{where}.{name}: a private name of the file layer")
    return problems


def test_package_imports_run_one_way() -> None:
    assert _package_violations(ROOT / "pmemsim") == []


def test_an_import_against_the_package_layers_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "pmemsim"
    shutil.copytree(ROOT / "pmemsim", copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = copy / "addrspace" / "base.py"
    base.write_text(base.read_text() + "\n\ndef _late() -> None:\n    from pmemsim.pmemset import PmemSet\n")
    assert _package_violations(copy) == ["pmemsim/addrspace/base.py imports pmemset: core is above spaces"]
    files = copy / "_files.py"
    files.write_text(files.read_text() + "\nif TYPE_CHECKING:\n    from pmemsim.source import Source\n")
    model = copy / "persistence" / "model.py"
    model.write_text(model.read_text() + "\nfrom pmemsim.addrspace.base import Reservation\n")
    source = copy / "source.py"
    source.write_text(source.read_text() + "\nfrom pmemsim._files import _PLAN\n")
    assert _package_violations(copy) == [
        "pmemsim/_files.py imports source: core is above files",
        "pmemsim/addrspace/base.py imports pmemset: core is above spaces",
        "pmemsim/persistence/model.py imports addrspace: the two sit side by side, apart",
        "pmemsim/source.py imports _files._PLAN: a private name of the file layer",
    ]


def test_test_modules_share_helpers_only_through_tests_support():
    # A helper imported from conftest or from another test module ties the two files' fates
    # together (collecting one runs the other's module code); shared helpers live in tests/support.
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top == "conftest" or top.startswith("test_") or name.startswith("tests.test_"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []


def test_the_persistence_front_door_loads_each_name_from_its_module_and_keeps_shrink_a_function() -> None:
    # Names load on first use (`pmemsim replay` imports only what it uses). A public name equal to
    # a submodule's (`shrink`) would be replaced by the module when the submodule is imported:
    # the package keeps the function; every other submodule is an attribute, as it was.
    code = (
        "import importlib, inspect, sys\n"
        "import pmemsim.persistence.shrink as imported\n"
        "from pmemsim.persistence import shrink, ShrinkResult\n"
        "import pmemsim.persistence as front\n"
        "assert inspect.isfunction(shrink) and front.shrink is shrink and imported is shrink, shrink\n"
        "assert sys.modules['pmemsim.persistence.shrink'].ShrinkResult is ShrinkResult\n"
        "assert front.engines is importlib.import_module('pmemsim.persistence.engines')\n"
        "assert set(front.__all__) == set(front._EXPORTS)\n"
        "for name, module in front._EXPORTS.items():\n"
        "    assert getattr(front, name) is getattr(importlib.import_module(module), name), name\n"
        "try:\n"
        "    front.no_such_thing\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
