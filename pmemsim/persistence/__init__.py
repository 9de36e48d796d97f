"""Crash-consistency checking: record stores, flushes and fences; replay every crash state.

* :mod:`~pmemsim.persistence.log` -- the store log (:class:`Store`, :class:`Flush`,
  :class:`Fence`, :class:`Marker`) and the :class:`Recorder` that builds it;
* :mod:`~pmemsim.persistence.checkers` -- Python or program consistency checkers and
  the :class:`CrashContext` they may take;
* :mod:`~pmemsim.persistence.model` -- the x86 ADR/eADR persistency model cutting a log
  into fence epochs of in-flight 8-byte atoms, ordered per 64-byte cache line;
* :mod:`~pmemsim.persistence.image` -- the image being explored and its hash;
* :mod:`~pmemsim.persistence.engines` -- pmreorder's engines plus :class:`Exhaustive`
  and :class:`Random`;
* :mod:`~pmemsim.persistence.parallel` -- forked worker processes;
* :mod:`~pmemsim.persistence.linearizability` -- :class:`RecoveryChecker`, the
  durable-linearizability check built from the program's own ``recover(image)``;
* :func:`replay` (:mod:`~pmemsim.persistence.explore`) -- explore the crash states
  (optionally in parallel) into a :class:`CrashReport`; :func:`shrink` -- reduce a
  failure to a minimal trace (:mod:`~pmemsim.persistence.shrink`);
* :mod:`~pmemsim.persistence.pmemcheck` -- pmemcheck store-log import/export;
* :mod:`~pmemsim.persistence.programs` -- how checker and recovery programs run.

Imports run one way: log, programs → checkers → model → image → engines, linearizability →
parallel → explore → shrink (a hygiene test keeps it so). The names below load their
module on first use.

Typical use::

    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, payload); rec.persist("pool", 0, len(payload))
    rec.store("pool", 64, b"\\x01"); rec.persist("pool", 64, 1)
    report = replay(rec.log, check, engine="Exhaustive")
    if not report.ok:
        print(shrink(rec.log, report.failures[0], check))
"""

from __future__ import annotations

import sys as _sys
import types as _types
import typing as _typing

from pmemsim._exports import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pmemsim.persistence.checkers import (
        CallableChecker,
        Checker,
        CheckerError,
        CheckOutcome,
        CrashContext,
        ProgramChecker,
        Verdict,
        as_checker,
    )
    from pmemsim.persistence.engines import (
        ENGINES,
        Engine,
        Exhaustive,
        NoReorderDoCheck,
        NoReorderNoCheck,
        Random,
        ReorderAccumulative,
        ReorderFull,
        ReorderPartial,
        ReorderReverseAccumulative,
        engine_for,
        engine_from_name,
    )
    from pmemsim.persistence.explore import CheckerCrashed, NothingToCheck, plan_replay, replay
    from pmemsim.persistence.image import initial_images
    from pmemsim.persistence.linearizability import RecoveryChecker
    from pmemsim.persistence.log import (
        Fence,
        FileInfo,
        Flush,
        LogError,
        Marker,
        Record,
        Recorder,
        Store,
        StoreLog,
        caller_location,
    )
    from pmemsim.persistence.model import (
        Atom,
        CrashPoint,
        Epoch,
        EpochPlan,
        MarkerError,
        PersistencyModel,
        Platform,
        build_epochs,
    )
    from pmemsim.persistence.pmemcheck import (
        PmemcheckFormatError,
        dump_pmemcheck,
        dumps_pmemcheck,
        load_pmemcheck,
        loads_pmemcheck,
    )
    from pmemsim.persistence.progress import CountingChecker, estimate_states, stale_files
    from pmemsim.persistence.results import CrashReport, Failure
    from pmemsim.persistence.saved import dumps_log, load_log, loads_log, read_log, save_log
    from pmemsim.persistence.shrink import ShrinkError, ShrinkResult, shrink

# Every public name loads its module on first use: `pmemsim replay` and the pytest plugin
# import only the modules they use (a whole-package import costs more than a small replay).
# The table is the one place that says where a name lives.
_EXPORTS: dict[str, str] = {
    "as_checker": "pmemsim.persistence.checkers",
    "Atom": "pmemsim.persistence.model",
    "build_epochs": "pmemsim.persistence.model",
    "CallableChecker": "pmemsim.persistence.checkers",
    "caller_location": "pmemsim.persistence.log",
    "Checker": "pmemsim.persistence.checkers",
    "CheckerCrashed": "pmemsim.persistence.explore",
    "CheckerError": "pmemsim.persistence.checkers",
    "CheckOutcome": "pmemsim.persistence.checkers",
    "CountingChecker": "pmemsim.persistence.progress",
    "CrashContext": "pmemsim.persistence.checkers",
    "CrashPoint": "pmemsim.persistence.model",
    "CrashReport": "pmemsim.persistence.results",
    "dump_pmemcheck": "pmemsim.persistence.pmemcheck",
    "dumps_log": "pmemsim.persistence.saved",
    "dumps_pmemcheck": "pmemsim.persistence.pmemcheck",
    "Engine": "pmemsim.persistence.engines",
    "engine_for": "pmemsim.persistence.engines",
    "engine_from_name": "pmemsim.persistence.engines",
    "ENGINES": "pmemsim.persistence.engines",
    "Epoch": "pmemsim.persistence.model",
    "EpochPlan": "pmemsim.persistence.model",
    "estimate_states": "pmemsim.persistence.progress",
    "Exhaustive": "pmemsim.persistence.engines",
    "Failure": "pmemsim.persistence.results",
    "Fence": "pmemsim.persistence.log",
    "FileInfo": "pmemsim.persistence.log",
    "Flush": "pmemsim.persistence.log",
    "initial_images": "pmemsim.persistence.image",
    "load_log": "pmemsim.persistence.saved",
    "load_pmemcheck": "pmemsim.persistence.pmemcheck",
    "loads_log": "pmemsim.persistence.saved",
    "loads_pmemcheck": "pmemsim.persistence.pmemcheck",
    "LogError": "pmemsim.persistence.log",
    "Marker": "pmemsim.persistence.log",
    "MarkerError": "pmemsim.persistence.model",
    "NoReorderDoCheck": "pmemsim.persistence.engines",
    "NoReorderNoCheck": "pmemsim.persistence.engines",
    "NothingToCheck": "pmemsim.persistence.explore",
    "PersistencyModel": "pmemsim.persistence.model",
    "plan_replay": "pmemsim.persistence.explore",
    "Platform": "pmemsim.persistence.model",
    "PmemcheckFormatError": "pmemsim.persistence.pmemcheck",
    "ProgramChecker": "pmemsim.persistence.checkers",
    "Random": "pmemsim.persistence.engines",
    "read_log": "pmemsim.persistence.saved",
    "Record": "pmemsim.persistence.log",
    "Recorder": "pmemsim.persistence.log",
    "RecoveryChecker": "pmemsim.persistence.linearizability",
    "ReorderAccumulative": "pmemsim.persistence.engines",
    "ReorderFull": "pmemsim.persistence.engines",
    "ReorderPartial": "pmemsim.persistence.engines",
    "ReorderReverseAccumulative": "pmemsim.persistence.engines",
    "replay": "pmemsim.persistence.explore",
    "save_log": "pmemsim.persistence.saved",
    "shrink": "pmemsim.persistence.shrink",
    "ShrinkError": "pmemsim.persistence.shrink",
    "ShrinkResult": "pmemsim.persistence.shrink",
    "stale_files": "pmemsim.persistence.progress",
    "Store": "pmemsim.persistence.log",
    "StoreLog": "pmemsim.persistence.log",
    "Verdict": "pmemsim.persistence.checkers",
}

__all__ = [
    "ENGINES",
    "Atom",
    "CallableChecker",
    "CheckOutcome",
    "Checker",
    "CheckerCrashed",
    "CheckerError",
    "CountingChecker",
    "CrashContext",
    "CrashPoint",
    "CrashReport",
    "Engine",
    "Epoch",
    "EpochPlan",
    "Exhaustive",
    "Failure",
    "Fence",
    "FileInfo",
    "Flush",
    "LogError",
    "Marker",
    "MarkerError",
    "NoReorderDoCheck",
    "NoReorderNoCheck",
    "NothingToCheck",
    "PersistencyModel",
    "Platform",
    "PmemcheckFormatError",
    "ProgramChecker",
    "Random",
    "Record",
    "Recorder",
    "RecoveryChecker",
    "ReorderAccumulative",
    "ReorderFull",
    "ReorderPartial",
    "ReorderReverseAccumulative",
    "ShrinkError",
    "ShrinkResult",
    "Store",
    "StoreLog",
    "Verdict",
    "as_checker",
    "build_epochs",
    "caller_location",
    "dump_pmemcheck",
    "dumps_log",
    "dumps_pmemcheck",
    "engine_for",
    "engine_from_name",
    "estimate_states",
    "initial_images",
    "load_log",
    "load_pmemcheck",
    "loads_log",
    "loads_pmemcheck",
    "plan_replay",
    "read_log",
    "replay",
    "save_log",
    "shrink",
    "stale_files",
]


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals())


class _Package(_types.ModuleType):
    """This package's module type: the submodule ``shrink`` shares its name with the function it
    defines, and importing it (which binds each submodule on its package) must not replace the
    function here."""

    def __setattr__(self, name: str, value: _typing.Any) -> None:
        if name == "shrink" and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
