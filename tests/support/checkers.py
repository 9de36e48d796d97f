"""Deterministic, importable checkers for tests whose checkers travel to other processes (Dask workers).

A checker sent to another process is pickled by reference, so it must be a module-level
function of a module the worker can import: this one (``tests/`` is on the workers'
``sys.path``, inherited from the test process).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any


def picky(image: memoryview) -> bool:
    """Rejects about a third of the images, by their hash (a stand-in for a real consistency check)."""
    return hashlib.blake2b(bytes(image), digest_size=2).digest()[0] % 3 != 0


def picky_with_markers(image: memoryview, ctx: Any) -> bool:
    """Like :func:`picky`, over the image and the markers before the crash point."""
    seed = "|".join(ctx.markers).encode()
    return hashlib.blake2b(bytes(image) + seed, digest_size=2).digest()[0] % 3 != 0


def dies_once(image: memoryview) -> bool:
    """Kills its own process the first time it runs anywhere (``DIES_ONCE_FLAG`` names the flag file)."""
    flag = os.environ["DIES_ONCE_FLAG"]
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return picky(image)
    os.close(fd)
    os._exit(1)


def set_environment(name: str, value: str) -> None:
    """Set an environment variable in the process this runs in (for ``Client.run``)."""
    os.environ[name] = value
