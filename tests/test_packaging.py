"""What users install and what the source distribution ships.

The sdist is built the way a release would build it (``python -m build --sdist``, without
build isolation so that no network is needed: the ``[test]`` extra installs ``build`` and a
PEP 639-capable setuptools), unpacked into a temporary directory and checked:

* its file list holds everything the test suite, the docs and the README's commands need;
* its metadata carries the license expression, the license file, the classifiers plugin
  indexes look for, and the version from ``pmemsim.__version__``;
* a small subset of its own tests passes inside it (the conftest fixtures, the hygiene
  checks of the README tour, the shipped example's tests) and ``pmemsim run scenarios/``
  is green there. That subset is what depends on files outside the package, so it is what
  an incomplete sdist breaks; the whole suite of the unpacked sdist runs under ``slow``
  (about as long as the normal suite itself, too much to run twice in CI).

The dependency check reads the imports of every shipped module, so a feature that starts
importing a new package fails here until ``pyproject.toml`` declares it.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

import pmemsim

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

#: Import name -> distribution name, where they differ.
DISTRIBUTION = {"sortedcontainers": "sortedcontainers", "yaml": "PyYAML", "_pytest": "pytest"}

#: Folders the sdist must carry whole: the suite, its inputs, the docs and the examples.
SHIPPED_TREES = ("tests", "scenarios", "docs", "examples", "benchmarks")
#: Single files the sdist must carry.
SHIPPED_FILES = ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "reports/README.md")


def _requirement_name(req: str) -> str:
    """``"rich>=13"`` -> ``"rich"``; ``"pmemsim[test]"`` -> ``"pmemsim"``."""
    for i, ch in enumerate(req):
        if not (ch.isalnum() or ch in "-_."):
            return req[:i].strip().lower()
    return req.strip().lower()


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by shipped code (any depth), mapped to the files importing them."""
    found: dict[str, set[str]] = {}
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((ROOT / "pmemsim").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top not in {"pmemsim", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_of_shipped_code_is_a_declared_dependency():
    """A plain install gets what the advertised features import (pytest, hypothesis, pyfakefs...)."""
    declared = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    # A feature extra (pmemsim[dask], pmemsim[coverage]) may bring what only its feature
    # imports, when the feature says so at the point of use; test and dev are not features.
    extras = PYPROJECT["project"]["optional-dependencies"]
    declared |= {
        _requirement_name(r) for name, reqs in extras.items() if name not in ("test", "dev") for r in reqs
    }
    imports = _third_party_imports()
    # The features users are promised, each with the package it needs.
    for needed in ("pytest", "hypothesis", "pyfakefs", "sortedcontainers", "rich"):
        assert needed in imports, f"no shipped module imports {needed}: update this test"
    missing = {
        name: sorted(files)
        for name, files in imports.items()
        if DISTRIBUTION.get(name, name).lower() not in declared
    }
    assert missing == {}, f"imported by shipped code but not in [project].dependencies: {missing}"


def test_linters_are_a_development_extra_not_a_user_dependency():
    project = PYPROJECT["project"]
    runtime = {_requirement_name(r) for r in project["dependencies"]}
    extras = {
        name: {_requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()
    }
    for tool in ("ruff", "mypy", "coverage", "pdoc", "build"):
        assert tool not in runtime, f"{tool} would land in every user's environment"
    assert {"ruff", "mypy"} <= extras["dev"]
    assert "pmemsim" in extras["dev"], "dev must include the test set-up"
    assert {"pytest-timeout", "pdoc", "build", "setuptools"} <= extras["test"]
    assert {"ruff", "mypy"}.isdisjoint(extras["test"])


def test_the_ci_script_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = "pip install -e '.[dev]'"
    assert f"{install} && pmemsim run scenarios/" in readme
    assert f"\n{install}\n" in ci
    assert "\npytest\n" in readme and ci.rstrip().endswith("\npytest")


def test_the_version_has_one_source():
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pmemsim.__version__"}


# -- the sdist -------------------------------------------------------------------------------------


def _build_requirements_missing() -> str | None:
    """Why the sdist cannot be built offline here, or None."""
    if importlib.util.find_spec("build") is None:
        return "the `build` package is missing (pip install -e '.[test]')"
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        major = 0
    if major < 77:
        return "setuptools >= 77 (PEP 639 metadata) is missing (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of this tree, built and unpacked; returns the unpacked project directory."""
    reason = _build_requirements_missing()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("sdist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (archive,) = out.glob("pmemsim-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    (unpacked,) = (p for p in out.iterdir() if p.is_dir())
    return unpacked


def _shipped(root: Path) -> set[str]:
    """The files of ``root`` the sdist must carry (caches and generated reports left out)."""
    files = {name for name in SHIPPED_FILES if (root / name).exists()}
    for tree in SHIPPED_TREES:
        for path in (root / tree).rglob("*"):
            parts = set(path.relative_to(root).parts)
            cache = parts & {"__pycache__", ".hypothesis", ".pytest_cache"} or path.suffix in {".pyc", ".pyo"}
            if path.is_file() and not cache:
                files.add(path.relative_to(root).as_posix())
    return files


def test_sdist_carries_the_suite_docs_examples_and_license(sdist: Path):
    expected = _shipped(ROOT)
    assert set(SHIPPED_FILES) <= expected, "this tree itself lacks a promised file"
    assert "tests/conftest.py" in expected
    missing = sorted(expected - _shipped(sdist))
    assert missing == [], f"the sdist lacks: {missing}"
    assert (sdist / "LICENSE").read_text(encoding="utf-8").startswith("BSD 3-Clause License")
    # Generated output never ships, even when the working tree has some.
    assert sorted(p.name for p in (sdist / "reports").iterdir()) == ["README.md"]


def test_sdist_metadata(sdist: Path):
    meta = email.parser.Parser().parsestr((sdist / "PKG-INFO").read_text(encoding="utf-8"))
    assert meta["Version"] == pmemsim.__version__
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None, "the deprecated License field next to a license expression"
    classifiers = set(meta.get_all("Classifier") or [])
    for wanted in ("Framework :: Pytest", "Typing :: Typed", "Operating System :: POSIX :: Linux"):
        assert wanted in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.1") for c in classifiers)
    assert not any(c.startswith("License ::") for c in classifiers), "PEP 639: the expression replaces them"
    requires = {_requirement_name(r) for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r}
    assert {"pytest", "hypothesis", "pyfakefs", "sortedcontainers", "rich"} <= requires


def _in_sdist(sdist: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python args`` inside the unpacked sdist, importing its pmemsim, not this tree's."""
    env = {**os.environ, "PYTHONPATH": str(sdist)}
    return subprocess.run(
        [sys.executable, *args], cwd=sdist, env=env, capture_output=True, text=True, timeout=600
    )


def test_sdist_runs_its_scenarios_and_tests_that_need_its_files(sdist: Path):
    run = _in_sdist(sdist, "-m", "pmemsim", "run", "scenarios/")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "0 failed" in run.stdout
    tests = _in_sdist(
        sdist,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_smoke.py",
        "tests/test_hygiene.py",
        "examples/applog",
        "-k",
        "not mypy",  # a cold mypy run of the whole package: the slow test below covers it
    )
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-3000:]
    assert " passed" in tests.stdout and "error" not in tests.stdout.splitlines()[-1]


@pytest.mark.slow
def test_sdist_passes_its_whole_suite(sdist: Path):
    tests = _in_sdist(sdist, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-3000:]
