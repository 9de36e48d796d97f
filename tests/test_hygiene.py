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
    assert result.stdout.strip() == "['pmemsim']"


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
#: (log, checkers -> model -> image -> engines, linearizability -> parallel -> explore -> shrink; the
#: readers, writers and reports sit beside the layer they need).
PERSISTENCE_LAYERS = [
    {"log"},
    {"checkers"},
    {"model"},
    {"image", "results", "pmemcheck", "lazy"},
    {"engines", "saved", "linearizability"},
    {"parallel", "progress"},
    {"explore"},
    {"shrink", "shards"},
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
