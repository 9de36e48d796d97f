"""Fault injection at named sites, counted per site.

The core asks ``plan.hit(site)`` just before the operation a site stands for; a hit
that is planned to fail returns a :class:`FiredFault` and the core turns it into the
site's documented error (the table ``SITE_ERRORS``). A plan is independent of the
backend: the same plan fails the same call on the simulator and on real mmap.

Besides the API-level sites (:class:`FaultSite`) a plan can fail the k-th system
call of a kind (:class:`OsCall`: ``os.open``, ``os.fstat``, ``os.ftruncate``,
``os.fallocate``, ``os.mmap``, ``os.munmap``, ``os.msync``, ``os.close``). Every OS
file call of the package goes through :mod:`pmemsim._files`, which asks the plan that
is active in the current thread (a set activates its own plan for the duration of
each of its calls; a source constructor activates the ``fault_plan`` it was given)
and raises the ``OSError`` the real call would have raised, with the planned errno
(default: the errno the table ``OS_CALL_ERRNOS`` gives). OS calls are hit-counted in
``plan.hits`` like the other sites, so "disk full at the 3rd msync" is
``FaultPlan().fail("os.msync", at=3, errno=errno.ENOSPC)``. The mmap backend makes all
eight kinds of call; the simulator makes the file calls only (no mmap, munmap or msync).

Fault sweeps (:mod:`pmemsim.testing.fault_sweep`, ``pmemsim run --fault-sweep``) name one
hit of one site as a :class:`FaultPoint` (``os.msync@3``) and fail each in turn, the way
SQLite's test suite drives every I/O failure. A plan with ``record_stacks`` set keeps,
with each fault it fires, the call stack outside pmemsim at that moment
(:attr:`FiredFault.stack`): where in the user's code the failing call was made.
"""

from __future__ import annotations

import errno as _errno
import os
import sys
from dataclasses import dataclass, field
from enum import StrEnum

from pmemsim.errors import ErrorCode

__all__ = [
    "ALL_SITES",
    "OS_CALL_ERRNOS",
    "SITE_ERRORS",
    "FaultPlan",
    "FaultPoint",
    "FaultSite",
    "FiredFault",
    "OsCall",
    "StackFrame",
    "as_site",
]


class FaultSite(StrEnum):
    """The named places where a :class:`FaultPlan` can make an operation fail."""

    ALLOC_CONFIG = "alloc.config"
    CONFIG_GRANULARITY = "config.granularity"
    ALLOC_PART_MAP = "alloc.part_map"
    ALLOC_PART = "alloc.part"
    ALLOC_SOURCE = "alloc.source"
    FILE_TRUNCATE = "file.truncate"
    VM_RESERVE = "vm.reserve"
    MAP_FILE = "map.file"
    FLUSH_DEEP = "flush.deep"


class OsCall(StrEnum):
    """The kinds of system call a :class:`FaultPlan` can make fail (the k-th of a kind)."""

    OPEN = "os.open"
    FSTAT = "os.fstat"
    FTRUNCATE = "os.ftruncate"
    FALLOCATE = "os.fallocate"
    MMAP = "os.mmap"
    MUNMAP = "os.munmap"
    MSYNC = "os.msync"
    CLOSE = "os.close"


#: The errno an injected system-call failure carries when the plan names none.
OS_CALL_ERRNOS: dict[OsCall, int] = {
    OsCall.OPEN: _errno.EMFILE,
    OsCall.FSTAT: _errno.EIO,
    OsCall.FTRUNCATE: _errno.ENOSPC,
    OsCall.FALLOCATE: _errno.ENOSPC,
    OsCall.MMAP: _errno.ENOMEM,
    OsCall.MUNMAP: _errno.ENOMEM,
    OsCall.MSYNC: _errno.EIO,
    OsCall.CLOSE: _errno.EIO,
}

#: What each site's failure becomes at the API (docs/design.md, fault sites).
SITE_ERRORS: dict[FaultSite, ErrorCode] = {
    FaultSite.ALLOC_CONFIG: ErrorCode.CANNOT_ALLOCATE_INTERNAL_STRUCTURE,
    FaultSite.CONFIG_GRANULARITY: ErrorCode.GRANULARITY_NOT_SUPPORTED,
    FaultSite.ALLOC_PART_MAP: ErrorCode.ENOMEM,
    FaultSite.ALLOC_PART: ErrorCode.ENOMEM,
    FaultSite.ALLOC_SOURCE: ErrorCode.ENOMEM,
    FaultSite.FILE_TRUNCATE: ErrorCode.CANNOT_TRUNCATE_SOURCE_FILE,
    FaultSite.VM_RESERVE: ErrorCode.ENOMEM,
    FaultSite.MAP_FILE: ErrorCode.INVALID_PMEM2_MAP,
    FaultSite.FLUSH_DEEP: ErrorCode.DEEP_FLUSH_FAIL,
}

#: Every site a plan can fail: the API-level sites, then the system calls.
ALL_SITES: tuple[FaultSite | OsCall, ...] = (*FaultSite, *OsCall)

# The OS error a site reports when the plan names none.
_DEFAULT_ERRNO: dict[FaultSite, int] = {
    FaultSite.FILE_TRUNCATE: _errno.ENOSPC,
    FaultSite.VM_RESERVE: _errno.ENOMEM,
    FaultSite.ALLOC_PART_MAP: _errno.ENOMEM,
    FaultSite.ALLOC_PART: _errno.ENOMEM,
    FaultSite.ALLOC_SOURCE: _errno.ENOMEM,
    FaultSite.MAP_FILE: _errno.EINVAL,
    FaultSite.FLUSH_DEEP: _errno.EIO,
}


# errno values are C ints (and os.strerror refuses anything larger).
_MAX_ERRNO = 1 << 31


@dataclass(frozen=True)
class StackFrame:
    """One frame of the code that reached a fault site: file, line and function."""

    filename: str
    lineno: int
    name: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.name}"


# Frames in this package are pmemsim's own; a stack recorded for the user leaves them out.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_stack() -> tuple[StackFrame, ...]:
    """The caller's stack, innermost first, without pmemsim's frames (cheap: no source lines read)."""
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(_PACKAGE_DIR):
            frames.append(StackFrame(code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back  # type: ignore[assignment]
    return tuple(frames)


@dataclass(frozen=True)
class FiredFault:
    """One injected failure: which site, which hit of it (1-based), and the OS errno.

    ``stack`` is the call stack outside pmemsim when it fired, innermost frame first
    (empty unless the plan's ``record_stacks`` is set); it takes no part in comparisons.
    """

    site: FaultSite | OsCall
    hit: int
    errno: int | None
    stack: tuple[StackFrame, ...] = field(default=(), compare=False, repr=False)

    @property
    def point(self) -> FaultPoint:
        """The (site, hit) this fault failed."""
        return FaultPoint(self.site, self.hit)

    @property
    def code(self) -> int:
        """The error code the API reports for this failure (``-errno`` for a system call)."""
        if isinstance(self.site, OsCall):
            return -(self.errno or OS_CALL_ERRNOS[self.site])
        return SITE_ERRORS[self.site]


@dataclass
class _Rule:
    at: int | None
    every: bool
    errno: int | None


def as_site(site: FaultSite | OsCall | str) -> FaultSite | OsCall:
    """``site`` as a FaultSite or OsCall; ValueError naming the known sites for an unknown name."""
    if isinstance(site, FaultSite | OsCall):
        return site
    if not isinstance(site, str):
        raise TypeError(f"fault site must be a FaultSite, an OsCall or a str, not {type(site).__name__}")
    try:
        return FaultSite(site)
    except ValueError:
        pass
    try:
        return OsCall(site)
    except ValueError:
        known = ", ".join([s.value for s in FaultSite] + [c.value for c in OsCall])
        raise ValueError(f"unknown fault site {site!r}; known sites: {known}") from None


@dataclass(frozen=True)
class FaultPoint:
    """One hit of one site: ``FaultPoint("os.msync", 3)``, written ``os.msync@3``."""

    site: FaultSite | OsCall
    hit: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", as_site(self.site))
        if not isinstance(self.hit, int) or isinstance(self.hit, bool) or self.hit < 1:
            raise ValueError(f"a fault point's hit must be a positive int (1 = first hit), got {self.hit!r}")

    def __str__(self) -> str:
        return f"{self.site.value}@{self.hit}"

    @property
    def sort_key(self) -> tuple[int, int]:
        """Sites in :data:`ALL_SITES` order, then hits in order: the order a sweep drives them."""
        return (ALL_SITES.index(self.site), self.hit)

    @classmethod
    def parse(cls, text: str) -> FaultPoint:
        """``"os.msync@3"`` -> ``FaultPoint(OsCall.MSYNC, 3)``.

        Raises ValueError naming the text for anything else (no ``@``, an unknown site,
        a hit that is not a positive decimal number).
        """
        if not isinstance(text, str):
            raise TypeError(f"a fault point is a string SITE@HIT, not {type(text).__name__}")
        site, sep, hit = text.strip().rpartition("@")
        if not sep or not site:
            raise ValueError(f"fault point {text!r} is not SITE@HIT (e.g. os.msync@3)")
        if not hit.isascii() or not hit.isdigit() or len(hit) > 9 or int(hit) < 1:
            raise ValueError(f"fault point {text!r}: the hit must be a positive number (1 = first hit)")
        try:
            return cls(as_site(site), int(hit))
        except ValueError as exc:
            raise ValueError(f"fault point {text!r}: {exc}") from None


@dataclass
class FaultPlan:
    """Which hits of which sites fail.

    >>> plan = FaultPlan().fail("map.file", at=2)   # the 2nd mapping fails, others succeed
    >>> plan.fail("file.truncate", every=True, errno=errno.ENOSPC)

    ``fired`` lists every failure injected so far, in order; ``hits`` counts how often
    each site was reached (failed or not). With ``record_stacks`` each fired fault
    carries the call stack outside pmemsim (:attr:`FiredFault.stack`).
    """

    _rules: dict[FaultSite | OsCall, list[_Rule]] = field(default_factory=dict)
    hits: dict[FaultSite | OsCall, int] = field(default_factory=dict)
    fired: list[FiredFault] = field(default_factory=list)
    record_stacks: bool = field(default=False, compare=False)

    def fail(
        self,
        site: FaultSite | OsCall | str,
        *,
        at: int | None = None,
        every: bool = False,
        errno: int | None = None,
    ) -> FaultPlan:
        """Plan a failure of ``site``: its ``at``-th hit (default 1st), or every hit.

        Returns the plan so calls chain. Raises ValueError for an unknown site, an
        ``at`` below 1, or both ``at`` and ``every``.
        """
        s = as_site(site)
        if every and at is not None:
            raise ValueError("give either at=k or every=True, not both")
        if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 1):
            raise ValueError(f"at must be a positive int (1 = first hit), got {at!r}")
        if errno is not None and (
            not isinstance(errno, int) or isinstance(errno, bool) or not 0 < errno < _MAX_ERRNO
        ):
            raise ValueError(f"errno must be a positive errno value below {_MAX_ERRNO}, got {errno!r}")
        self._rules.setdefault(s, []).append(
            _Rule(at=None if every else (at if at is not None else 1), every=every, errno=errno)
        )
        return self

    def fail_next(self, site: FaultSite | OsCall | str, *, errno: int | None = None) -> FaultPlan:
        """Plan a failure of the next hit of ``site`` (``at`` counts from the plan's creation)."""
        s = as_site(site)
        return self.fail(s, at=self.hits.get(s, 0) + 1, errno=errno)

    def hit(self, site: FaultSite | OsCall | str) -> FiredFault | None:
        """Count one arrival at ``site``; return the fault if this hit is planned to fail."""
        s = as_site(site)
        n = self.hits.get(s, 0) + 1
        self.hits[s] = n
        for rule in self._rules.get(s, ()):
            if rule.every or rule.at == n:
                if rule.errno is not None:
                    err: int | None = rule.errno
                elif isinstance(s, OsCall):
                    err = OS_CALL_ERRNOS[s]
                else:
                    err = _DEFAULT_ERRNO.get(s)
                stack = _user_stack() if self.record_stacks else ()
                fault = FiredFault(site=s, hit=n, errno=err, stack=stack)
                self.fired.append(fault)
                return fault
        return None

    def fired_sites(self) -> list[FaultSite | OsCall]:
        """The sites of ``fired``, in order."""
        return [f.site for f in self.fired]

    def reset(self) -> None:
        """Forget the counts and what fired; keep the planned failures."""
        self.hits.clear()
        self.fired.clear()
