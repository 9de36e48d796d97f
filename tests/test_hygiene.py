"""Project hygiene as tests: the public API is exact, the code is lint- and type-clean, the tour runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pmemsim

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_exact_and_importable():
    public = {name for name in vars(pmemsim) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(pmemsim, name)).__name__ == "module"}
    lazy = {"CrashReport", "Recorder", "StoreLog", "replay", "shrink"}  # loaded on first use
    assert set(pmemsim.__all__) == (public - modules) | lazy | {"__version__"}
    for name in pmemsim.__all__:
        assert hasattr(pmemsim, name), name
    assert len(pmemsim.__all__) == len(set(pmemsim.__all__))


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
