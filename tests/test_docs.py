"""The documentation stands alone: the API reference builds, links resolve, no file users lack is cited."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Shipped text files: the package, the docs, the top-level documents, and what the sdist
#: carries besides (tests, examples, benchmarks, scenarios). This file names what it looks for.
SHIPPED = [
    *sorted((ROOT / "pmemsim").rglob("*.py")),
    *sorted(p for p in (ROOT / "tests").glob("*.py") if p.name != "test_docs.py"),
    *sorted((ROOT / "examples").rglob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
    *sorted(p for p in (ROOT / "scenarios").iterdir() if p.is_file() and p.suffix in {".toml", ".py"}),
    *sorted((ROOT / "docs").glob("*.md")),
    README,
    ROOT / "CHANGELOG.md",
    ROOT / "reports" / "README.md",
]


def _pdoc_command() -> list[str]:
    """The README's API-reference command, as argv."""
    lines = [line for line in README.read_text(encoding="utf-8").splitlines() if "-m pdoc" in line]
    assert len(lines) == 1, "the README gives one pdoc command"
    return shlex.split(lines[0])


def test_the_api_reference_builds_without_a_warning(tmp_path: Path):
    if importlib.util.find_spec("pdoc") is None:
        pytest.skip("pdoc is missing (pip install -e '.[test]')")
    argv = _pdoc_command()
    assert argv[:3] == ["python", "-m", "pdoc"] and argv[3] == "-o"
    modules = argv[5:]
    result = subprocess.run(
        [sys.executable, "-m", "pdoc", "-o", str(tmp_path), *modules],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warn" not in result.stderr and "Error" not in result.stderr, result.stderr
    for module in modules:
        page = tmp_path.joinpath(*module.split(".")).with_suffix(".html")
        assert page.is_file(), f"no page for {module}"
    capi = tmp_path.joinpath("pmemsim", "capi.html").read_text(encoding="utf-8")
    assert "pmemset_read" in capi and "pmemset_part_map" in capi


def test_every_public_module_is_in_the_reference():
    modules = set(_pdoc_command()[5:])
    for needed in ("pmemsim", "pmemsim.capi", "pmemsim.testing.plugin", "pmemsim.persistence"):
        assert needed in modules


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shipped_file_cites_a_design_file_users_do_not_have(path: Path):
    text = path.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text and "DESIGN §" not in text


DOC_PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "reports" / "README.md"]


@pytest.mark.parametrize("path", DOC_PAGES,
                         ids=lambda p: str(p.relative_to(ROOT)))  # fmt: skip
def test_relative_links_resolve(path: Path):
    text = path.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    assert missing == []


def test_changelog_names_this_version():
    import pmemsim

    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {pmemsim.__version__}" in text
