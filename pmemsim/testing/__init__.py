"""Test pmemsim-based code: a pytest plugin, hypothesis strategies and a state machine.

* :mod:`pmemsim.testing.plugin` -- the pytest plugin (fixtures ``pmem_space``, ``pmemset``,
  ``fault_plan``, ``pmem_file``, ``make_pmem_file``, ``crash_check``, ``fault_sweep``; the
  ``pmemsim`` marker; ``--pmemsim-backend``, ``--pmemsim-report``,
  ``--pmemsim-fault-sweep``). Loaded automatically once pmemsim is installed (the
  ``pytest11`` entry point).
* :mod:`pmemsim.testing.strategies` -- hypothesis strategies.
* :class:`PmemsetStateMachine` -- a rule-based machine over the whole API, to run as is
  or subclass.
* :mod:`pmemsim.testing.crash` -- record a block of code and replay its crash states
  (what the ``crash_check`` fixture uses; usable without pytest).
* :mod:`pmemsim.testing.ops` -- operation values, a runner, state snapshots.
* :mod:`pmemsim.testing.fault_sweep` -- fault sweeps: every hit of every fault site a
  test reaches, failed one per run (the ``fault_sweep`` marker key, fixture and options).

Importing this package is cheap: hypothesis is imported only when
:class:`PmemsetStateMachine` is first used, so the plugin works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pmemsim.testing.machine import PmemsetStateMachine

__all__ = ["PmemsetStateMachine"]


def __getattr__(name: str) -> Any:
    # PEP 562 lazy export: the pytest plugin imports this package in every test run,
    # and hypothesis (which the machine needs) is only a test extra.
    if name == "PmemsetStateMachine":
        from pmemsim.testing.machine import PmemsetStateMachine

        return PmemsetStateMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
