"""The report page in a real browser: it fits 1000 px, meets WCAG AA contrast, shows who reached what.

Headless Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it) loads the page
that ``pmemsim report --html`` wrote, with a measuring script appended, at a 1000 px wide
window. The script computes, from the browser's own layout and computed styles, the
document's scroll width against the window, and for every element with text of its own
the contrast ratio of its colour on its effective background (WCAG 2.x: 4.5:1, 3:1 for
large text); it stores what it found on ``<body data-check=...>``, which ``--dump-dom``
prints. The page itself carries no script: the check is added to a copy.

Skipped, saying so, where no Chromium is installed.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium): the report page's browser check needs it",
)

#: Flags for a quiet, isolated headless run (the user data directory is added per run).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

MEASURE = r"""
(function () {
  function rgba(c) {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(',').map(parseFloat);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  }
  function luminance(c) {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  }
  function background(el) {
    for (; el; el = el.parentElement) {
      const c = rgba(getComputedStyle(el).backgroundColor);
      if (c && c.a > 0) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  }
  const low = [];
  let checked = 0;
  for (const el of document.body.querySelectorAll('*')) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const st = getComputedStyle(el);
    if (st.display === 'none' || st.visibility === 'hidden') continue;
    const a = luminance(rgba(st.color)), b = luminance(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    const needed = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    checked++;
    if (ratio < needed) {
      low.push({tag: el.tagName, cls: String(el.className), text: el.textContent.trim().slice(0, 40),
                ratio: Math.round(ratio * 100) / 100, needed: needed});
    }
  }
  const d = document.documentElement;
  document.body.setAttribute('data-check', JSON.stringify({
    scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, checked: checked, lowContrast: low,
    text: document.body.innerText}));
})();
"""


def _in_browser(page: Path, tmp_path: Path, width: int) -> dict[str, Any]:
    """Load ``page`` with the measuring script in headless Chromium; what the script found."""
    checked = tmp_path / "checked.html"
    checked.write_text(
        page.read_text(encoding="utf-8").replace("</body>", f"<script>{MEASURE}</script></body>"),
        encoding="utf-8",
    )
    profile = tmp_path / "chromium-profile"
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},800", "--dump-dom",
         checked.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert found, "the measuring script did not run: " + proc.stdout[:500]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _pmemsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pmemsim", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env=_env(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report as wide as they come: every shipped scenario, tests on sim and in their own
    space, a failed run with a long name and message, and coverage of pmemsim's files beside it."""
    out = tmp_path_factory.mktemp("browser")
    ran = _pmemsim("run", str(SCENARIOS), "-q", "--results", "scenarios.json", cwd=out)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    tests = [
        {"name": "tests/test_pool.py::test_reopen_after_a_failed_map[sim-16384-opportunistic]",
         "kind": "test", "backend": "sim", "outcome": "passed", "errors": {"PMEMSET_E_INVALID_PMEM2_MAP": 2}},
        {"name": "tests/test_pool.py::test_open_in_my_own_address_space_with_a_long_descriptive_name",
         "kind": "test", "backend": "own", "outcome": "failed",
         "errors": {"PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE": 1},
         "message": "AssertionError: expected PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE, got success"},
    ]  # fmt: skip
    (out / "tests.json").write_text(json.dumps({"format": "pmemsim-results", "version": 1, "runs": tests}))
    args = ["--from", "scenarios.json", "--from", "tests.json", "--html", "index.html"]
    if _has_coverage():  # the [test] extra installs it
        measured = subprocess.run(
            [sys.executable, "-m", "coverage", "run", "--branch", "--data-file=.coverage", "-m", "pmemsim",
             "run", str(SCENARIOS / "error_enomem.toml"), "-q"],
            cwd=out, capture_output=True, text=True, timeout=300, env=_env(),
        )  # fmt: skip
        assert measured.returncode == 0, measured.stderr
        args += ["--coverage", ".coverage", "--coverage-source", "pmemsim"]
    rep = _pmemsim("report", *args, cwd=out)
    assert rep.returncode == 1, rep.stdout + rep.stderr  # the failed test run
    return out / "index.html"


def _has_coverage() -> bool:
    import importlib.util

    return importlib.util.find_spec("coverage") is not None


@pytest.fixture(scope="module")
def seen(page: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the browser measured on the page at 1000 px (one browser run for the module)."""
    return _in_browser(page, tmp_path_factory.mktemp("chromium"), width=1000)


def test_the_page_fits_a_1000_px_window(seen: dict[str, Any]):
    assert seen["scrollWidth"] <= seen["clientWidth"], seen["scrollWidth"]


def test_every_text_meets_wcag_aa_contrast(seen: dict[str, Any]):
    assert seen["checked"] > 100  # the script saw the page's text, not an empty document
    assert seen["lowContrast"] == []


def test_who_reached_each_error_and_what_failed_are_visible(seen: dict[str, Any]):
    text = seen["text"]
    assert "Which runs reached each error" in text
    # A scenario that reaches ENOMEM and a test that reached INVALID_PMEM2_MAP, in the page's text.
    assert "scenarios/error_enomem.toml" in text or "error_enomem.toml" in text
    assert "test_reopen_after_a_failed_map[sim-16384-opportunistic]" in text
    assert "1 failed run(s)" in text
    assert "expected PMEMSET_E_CANNOT_ALLOCATE_INTERNAL_STRUCTURE, got success" in text
    assert "own: tests that did not use the pmem_space fixture" in text
    if _has_coverage():
        assert "Line and branch coverage of pmemsim" in text and "pmemsim/pmemset.py" in text
