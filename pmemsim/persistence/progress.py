"""Progress of a crash replay, for a progress bar: states judged so far and an estimated total.

Also :func:`stale_files`, the check that an image given for a log is not already the
state after the run (the usual mistake with pmemcheck logs).

:func:`~pmemsim.persistence.replay` has no progress callback, and with ``workers`` > 1
the checker runs in forked processes. :class:`CountingChecker` wraps the checker and
counts its calls in a shared-memory counter created before the fork, so the parent
(typically a thread refreshing a progress bar) sees the work of every worker::

    counting = CountingChecker(as_checker(check))
    total = estimate_states(plan_replay(log), engine)
    report = replay(log, counting, engine=engine, workers=4)   # meanwhile: counting.count

Each process adds its calls to the counter in batches (see ``_BATCH``) and when it closes
its checker, so the count lags by at most a batch per process. A checker call judges one
crash state; states whose image was judged before in the same
process reuse the verdict without a call, so the count can stay below
``CrashReport.states_checked``. The total is the engines' own estimate (an upper bound
for Exhaustive, which skips duplicate images). Both are for display only.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pmemsim.persistence.checkers import Checker, CheckOutcome, CrashContext
from pmemsim.persistence.engines import Engine, engine_for, engine_from_name
from pmemsim.persistence.log import Store, StoreLog
from pmemsim.persistence.model import EpochPlan

__all__ = ["CountingChecker", "estimate_states", "stale_files"]


def estimate_states(
    plan: EpochPlan, engine: Engine | str = "Exhaustive", markers: Mapping[str, Engine | str] | None = None
) -> int:
    """About how many crash states :func:`~pmemsim.persistence.replay` visits for ``plan``.

    The sum of each epoch engine's ``estimate`` over the epochs it explores. Runtime: O(atoms).
    """
    default = engine_from_name(engine)
    sections = {name: engine_from_name(spec) for name, spec in (markers or {}).items()}
    total = 0
    for epoch in plan.epochs:
        chosen = engine_for(epoch.sections, default, sections)
        if chosen.wants(epoch):
            total += chosen.estimate(epoch)
    return total


#: Calls a process counts before adding them to the shared counter (a bar drawn 10 times a
#: second cannot show finer steps; the calls of a process are all added when it closes).
_BATCH = 64


class _LocalCounter:
    """The part of multiprocessing.Value's interface used here, for one process."""

    def __init__(self) -> None:
        self.value = 0

    def get_lock(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class CountingChecker(Checker):
    """A checker that forwards to ``inner`` and counts calls across forked worker processes."""

    def __init__(self, inner: Checker) -> None:
        self.inner = inner
        self.sees_markers = inner.sees_markers
        self.notes = inner.notes
        self.lazy_reads = inner.lazy_reads
        # Shared memory inherited by forked workers; the lock keeps concurrent increments exact.
        self._counter: Any
        import multiprocessing  # here: only a progress display needs it

        try:
            self._counter = multiprocessing.get_context("fork").Value("q", 0)
        except (OSError, ValueError):  # no shared memory or no fork here: count this process only
            self._counter = _LocalCounter()
        self._unpublished = 0  # calls of this process not yet added to the shared counter

    def __repr__(self) -> str:
        return f"CountingChecker({self.inner!r})"

    def __copy__(self) -> CountingChecker:
        # Each copy (one per slice task) counts into the same shared counter through its own
        # copy of the wrapped checker, which it opens and closes by itself.
        other = CountingChecker.__new__(CountingChecker)
        other.__dict__.update(self.__dict__)
        other.inner = copy.copy(self.inner)
        other._unpublished = 0
        return other

    @property
    def count(self) -> int:
        """Checker calls so far, in this process and in every worker."""
        return int(self._counter.value)

    def open(self, keys: Sequence[str], sizes: Sequence[int]) -> None:
        """Forward to the wrapped checker (each process counts from here: a fork copied the parent's)."""
        self._unpublished = 0
        self.inner.open(keys, sizes)

    def check(self, views: Sequence[memoryview], ctx: CrashContext) -> CheckOutcome | None:
        """Count (published to the shared counter every few calls), then forward to the wrapped checker."""
        self._unpublished += 1
        if self._unpublished >= _BATCH:
            self._publish()
        return self.inner.check(views, ctx)

    def _publish(self) -> None:
        # The shared counter takes a lock shared by every process: once per batch of calls, not per call.
        with self._counter.get_lock():
            self._counter.value += self._unpublished
        self._unpublished = 0

    def close(self) -> None:
        """Publish the last calls, then forward to the wrapped checker."""
        if self._unpublished:
            self._publish()
        self.inner.close()

    def region(self, markers: int) -> int:
        """Forward to the wrapped checker."""
        return self.inner.region(markers)


def stale_files(log: StoreLog, images: Sequence[bytes]) -> list[str]:
    """Keys of the files ``log`` stores to whose image (in ``log.files`` order) already holds every store.

    Such an image is most likely the file as the program left it, not as it was before
    the first store, so every crash state of it looks the same. Runtime: O(bytes stored
    + file sizes).
    """
    after = {key: bytearray(img) for key, img in zip(log.files, images, strict=True)}
    touched: set[str] = set()
    for rec in log.records:
        if type(rec) is Store or isinstance(rec, Store):
            data, offset = rec.data, rec.offset
            after[rec.file][offset : offset + len(data)] = data
            touched.add(rec.file)
    return [key for key, img in zip(log.files, images, strict=True) if key in touched and after[key] == img]
