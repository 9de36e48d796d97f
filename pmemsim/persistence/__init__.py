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
  failure to a minimal trace;

Imports run one way: log, checkers → model → image → engines, linearizability → parallel → explore →
shrink (a hygiene test keeps it so).
* :mod:`~pmemsim.persistence.pmemcheck` -- pmemcheck store-log import/export.

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
