"""Scenario files: a test described once in TOML, run on any backend.

:func:`load_scenario` reads and validates a file against the shipped JSON Schema
(``schema.json``) and returns a frozen :class:`Scenario`; :func:`run_scenario` runs it
on one backend and returns a :class:`~pmemsim.report.results.RunResult`. The format is
documented key by key in ``docs/scenarios.md``.
"""

from __future__ import annotations

from pmemsim.scenario.loader import Problem, ScenarioError, discover, load_scenario, loads_scenario, schema
from pmemsim.scenario.runner import BACKENDS, resolve_checker, run_scenario
from pmemsim.scenario.steps import STEP_TYPES, Addr, Scenario, Step

__all__ = [
    "BACKENDS",
    "STEP_TYPES",
    "Addr",
    "Problem",
    "Scenario",
    "ScenarioError",
    "Step",
    "discover",
    "load_scenario",
    "loads_scenario",
    "resolve_checker",
    "run_scenario",
    "schema",
]
