"""Error codes of libpmemset, with PMDK's numeric values, and the exception that carries them.

Exception tree::

    Exception
     └── PmemsetError          a documented libpmemset failure; ``.code`` is an ErrorCode
                               value or ``-errno`` for an OS failure
    TypeError / ValueError     raised directly for misuse that C would not survive
                               (wrong types, deleted or foreign objects)

The Python API raises :class:`PmemsetError`; :mod:`pmemsim.capi` returns its ``.code``.
The message of the last failure in this thread is kept for ``pmemset_errormsg()``.

Error paths are counted where an error leaves the library, not where it is made: every
public entry point (the set's calls, the source constructors, the config, each capi
function) passes an escaping error to :func:`surfaced`, which tells the observers once
per exception. An error the library makes and handles itself (an undo that fails and
is suppressed) is no error path a user reached.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

__all__ = [
    "ErrorCode",
    "PmemsetError",
    "add_error_observer",
    "err_to_errno",
    "last_error_message",
    "remove_error_observer",
    "surfaced",
    "surfaces",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

# PMDK numbers libpmemset's own errors downward from this base (libpmemset/errormsg.h).
_PMEMSET_E_BASE = -200000


class ErrorCode(IntEnum):
    """Every libpmemset error code with PMDK's value (``PMEMSET_E_`` prefix dropped)."""

    UNKNOWN = _PMEMSET_E_BASE
    NOSUPP = _PMEMSET_E_BASE - 1
    INVALID_PMEM2_SOURCE = _PMEMSET_E_BASE - 2
    INVALID_SOURCE_PATH = _PMEMSET_E_BASE - 3
    INVALID_SOURCE_TYPE = _PMEMSET_E_BASE - 4
    CANNOT_ALLOCATE_INTERNAL_STRUCTURE = _PMEMSET_E_BASE - 5
    INVALID_OFFSET_VALUE = _PMEMSET_E_BASE - 6
    GRANULARITY_NOT_SUPPORTED = _PMEMSET_E_BASE - 7
    INVALID_PMEM2_MAP = _PMEMSET_E_BASE - 8
    PART_EXISTS = _PMEMSET_E_BASE - 9
    GRANULARITY_NOT_SET = _PMEMSET_E_BASE - 10
    GRANULARITY_MISMATCH = _PMEMSET_E_BASE - 11
    NO_PART_MAPPED = _PMEMSET_E_BASE - 12
    CANNOT_FIND_PART_MAP = _PMEMSET_E_BASE - 13
    CANNOT_COALESCE_PARTS = _PMEMSET_E_BASE - 14
    LENGTH_UNALIGNED = _PMEMSET_E_BASE - 15
    PART_NOT_FOUND = _PMEMSET_E_BASE - 16
    INVALID_COALESCING_VALUE = _PMEMSET_E_BASE - 17
    DEEP_FLUSH_FAIL = _PMEMSET_E_BASE - 18
    INVALID_SOURCE_FILE_CREATE_FLAGS = _PMEMSET_E_BASE - 19
    CANNOT_CREATE_TEMP_FILE = _PMEMSET_E_BASE - 20
    CANNOT_TRUNCATE_SOURCE_FILE = _PMEMSET_E_BASE - 21
    PART_MAP_POSSIBLE_USE_AFTER_DROP = _PMEMSET_E_BASE - 22
    CANNOT_FIT_PART_MAP = _PMEMSET_E_BASE - 23
    ENOMEM = -_errno.ENOMEM

    @property
    def c_name(self) -> str:
        """The C spelling: ``PMEMSET_E_<NAME>``, or ``ENOMEM`` for the errno-valued member."""
        return self.name if self.value > _PMEMSET_E_BASE else f"PMEMSET_E_{self.name}"


def code_name(code: int) -> str:
    """The C name of a code: ``PMEMSET_E_...`` for libpmemset codes, ``ENOENT`` etc. for ``-errno``."""
    try:
        return ErrorCode(code).c_name
    except ValueError:
        if code < 0 and -code in _errno.errorcode:
            return _errno.errorcode[-code]
        return f"error {code}"


def err_to_errno(code: int) -> int:
    """Map a libpmemset return code to an errno value, as ``pmemset_err_to_errno`` does.

    libpmemset's own codes become ``EINVAL`` (PMDK has no closer errno for them); a
    ``-errno`` code becomes that errno. Raises ValueError for a non-negative code.
    """
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"error code must be an int, not {type(code).__name__}")
    if code >= 0:
        raise ValueError(f"error codes are negative; got {code}")
    if code <= _PMEMSET_E_BASE:
        return _errno.EINVAL
    return -code


_last = threading.local()

# Who wants to hear about every PmemsetError raised (the scenario runner and the pytest
# plugin count error paths reached for the coverage matrix).
_observers: list[Callable[[PmemsetError], None]] = []


def add_error_observer(observer: Callable[[PmemsetError], None]) -> None:
    """Call ``observer(exc)`` whenever a PmemsetError leaves the library (to count error paths reached)."""
    if not callable(observer):
        raise TypeError(f"observer must be callable, not {type(observer).__name__}")
    _observers.append(observer)


def remove_error_observer(observer: Callable[[PmemsetError], None]) -> None:
    """Stop calling ``observer`` (ValueError if it was not added)."""
    _observers.remove(observer)


def surfaced(exc: PmemsetError) -> PmemsetError:
    """Tell the observers that ``exc`` leaves the library (once per exception); returns it.

    Entry points call it when an error escapes them; an entry point called by another
    one (``from_file`` runs ``xfrom_file``) passes the same exception, counted once.
    """
    if not exc.surfaced:
        exc.surfaced = True
        for observer in tuple(_observers):
            observer(exc)
    return exc


def surfaces(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a public entry point: a PmemsetError escaping it is :func:`surfaced`."""

    @functools.wraps(fn)
    def entry(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except PmemsetError as exc:
            surfaced(exc)
            raise

    return entry


def last_error_message() -> str:
    """The message of the most recent PmemsetError raised in this thread ('' if none)."""
    return getattr(_last, "message", "")


class PmemsetError(Exception):
    """A documented libpmemset failure.

    Attributes: ``code`` (an :class:`ErrorCode` value or ``-errno``), ``name`` (the C
    name, e.g. ``"PMEMSET_E_CANNOT_COALESCE_PARTS"`` or ``"ENOMEM"``), ``errno`` (the
    OS errno behind the failure when there was one, else ``err_to_errno(code)``) and
    ``message``.
    """

    def __init__(self, code: int, message: str, *, os_errno: int | None = None) -> None:
        self.code: int = int(code)
        self.name: str = code_name(self.code)
        self.errno: int = os_errno if os_errno is not None else err_to_errno(self.code)
        if os_errno is not None:
            message = f"{message} ({_errno.errorcode.get(os_errno, os_errno)}: {os.strerror(os_errno)})"
        self.message: str = message
        #: True once :func:`surfaced` told the observers about it.
        self.surfaced = False
        _last.message = f"{self.name}: {message}"
        super().__init__(f"{self.name}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_error, (self.code, self.message, self.errno))


def _rebuild_error(code: int, message: str, err: int) -> PmemsetError:
    exc = PmemsetError.__new__(PmemsetError)
    Exception.__init__(exc, f"{code_name(code)}: {message}")
    exc.code, exc.name, exc.errno, exc.message = code, code_name(code), err, message
    exc.surfaced = True  # it left the library in the process that raised it
    return exc
