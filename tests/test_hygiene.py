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
