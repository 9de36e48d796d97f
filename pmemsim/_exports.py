"""Package front doors that load each public name's module on first use (PEP 562).

``import pmemsim`` (what every pytest run pays once the plugin is installed) and
``pmemsim replay`` import only the modules they use; a package lists where each of its
names lives in one table and gets its ``__getattr__`` and ``__dir__`` from :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, table: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public names live in the modules ``table`` gives.

    A name, once loaded, is stored in ``namespace`` (the package's globals), so later
    lookups do not come back here. Any other name that is a submodule's is that submodule,
    imported (as it would be if the package had imported all of them).
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            # A submodule, as a package that imported all of them would have it bound.
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
