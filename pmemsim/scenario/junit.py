"""JUnit XML for CI: one ``<testcase>`` per scenario run (scenario and backend).

The layout Jenkins, GitLab and GitHub reporters read: ``<testsuites>`` holding one
``<testsuite>``, each case named ``STEM[BACKEND]`` with the scenario's path (suffix
dropped, ``/`` → ``.``) as its class name; ``<failure>``, ``<error>`` or ``<skipped>``
carry the message (for a crash check, its summary and the minimal trace, as pytest
prints it); ``<system-out>`` holds a passing run's note (a crash check's summary) and the
error paths the run reached. A scenario file that could not be loaded is one case
``STEM[load]`` with an ``<error>``. A run of a fault sweep is ``STEM[BACKEND] SITE@HIT``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import PurePath

from pmemsim.report.results import Outcome, RunResult

__all__ = ["junit_xml", "write_junit"]

# What each outcome becomes inside a <testcase>.
_CHILD = {Outcome.FAILED: "failure", Outcome.ERROR: "error", Outcome.SKIPPED: "skipped"}


def _classname(name: str) -> str:
    p = PurePath(name)
    parts = [x for x in p.with_suffix("").parts if x not in ("/", ".")]
    return ".".join(parts) or name


def _case_name(name: str, backend: str) -> str:
    return f"{PurePath(name).stem}[{backend if backend != '-' else 'load'}]"


def junit_xml(runs: Sequence[RunResult], suite: str = "pmemsim scenarios") -> bytes:
    """The JUnit XML document (UTF-8 bytes, with an XML declaration) for ``runs``."""
    counts = {o: sum(1 for r in runs if r.outcome is o) for o in Outcome}
    total = sum(r.duration for r in runs)
    attrs = {
        "name": suite,
        "tests": str(len(runs)),
        "failures": str(counts[Outcome.FAILED]),
        "errors": str(counts[Outcome.ERROR]),
        "skipped": str(counts[Outcome.SKIPPED]),
        "time": f"{total:.3f}",
    }
    root = ET.Element("testsuites", attrs)
    ts = ET.SubElement(root, "testsuite", attrs)
    for r in runs:
        case = ET.SubElement(
            ts,
            "testcase",
            {
                "classname": _classname(r.name),
                "name": _case_name(r.name, r.backend) + (f" {r.fault.point}" if r.fault else ""),
                "file": r.name,
                "time": f"{r.duration:.3f}",
            },
        )
        tag = _CHILD.get(r.outcome)
        if tag is not None:
            first = r.message.splitlines()[0] if r.message else r.outcome.value
            child = ET.SubElement(case, tag, {"message": first, "type": r.outcome.value})
            if tag != "skipped":
                child.text = r.message
        lines = [r.message] if r.message and r.outcome is Outcome.PASSED else []
        if r.errors:
            lines.append("error paths reached: " + ", ".join(f"{k}={v}" for k, v in sorted(r.errors.items())))
        if lines:
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def write_junit(path: str | os.PathLike[str], runs: Sequence[RunResult]) -> None:
    """Write :func:`junit_xml` to ``path`` (creating its parent directories)."""
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        f.write(junit_xml(runs))
