"""One way to turn a ``module:function`` string into the callable it names.

Checkers (``pmemsim replay --checker``, a scenario's ``[crash] checker``) and recovery
functions are named this way. The module is imported with a directory of the caller's
choosing first on ``sys.path`` (the current directory for the command line, the
scenario's own directory for a scenario), without writing ``__pycache__`` there: a
checker next to the user's pool must not leave files behind.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable

__all__ = ["CallableNotFound", "load_callable"]


class CallableNotFound(ValueError):
    """``module:function`` names nothing callable; the message says which part is wrong."""


def load_callable(spec: str, *, search: str | os.PathLike[str] | None = None) -> Callable[..., object]:
    """The callable ``spec`` (``"module:function"``, ``"module:Class.method"``) names.

    ``search`` is put first on ``sys.path`` while the module is imported (and removed
    after). Raises :class:`CallableNotFound` for a malformed ``spec``, a module that
    cannot be imported (whatever it raised: ImportError, its own SyntaxError, ...), a
    missing attribute or one that is not callable.
    """
    module_name, sep, attr = spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise CallableNotFound("expected MODULE:FUNCTION, e.g. mychecks:pool_ok")
    path = os.fspath(search) if search is not None else None
    if path is not None:
        sys.path.insert(0, path)
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own SyntaxError/NameError/...
        raise CallableNotFound(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.dont_write_bytecode = bytecode
        if path is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)
    found: object = module
    for part in attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise CallableNotFound(f"module {module_name!r} has no {attr!r}")
    if not callable(found):
        raise CallableNotFound(f"{attr!r} in module {module_name!r} is not callable")
    function: Callable[..., object] = found
    return function
