"""Test-only helpers shared by several test modules.

* :mod:`support.x86_oracle` -- a brute-force reference of the x86 crash model;
* :mod:`support.logs` -- a hypothesis strategy for random store logs;
* :mod:`support.examples` -- known-correct and known-buggy persistent-memory programs;
* :mod:`support.sets` -- the page size, address spaces by backend name, state snapshots;
* :mod:`support.checkers`, :mod:`support.pmreorder` -- checkers and pmreorder harnesses.

No test module imports from ``conftest`` or from another test module: shared helpers
live here, fixtures in ``conftest.py``.

``tests/`` has no ``__init__.py``: pytest puts it on ``sys.path`` (the rootdir conftest,
``prepend`` import mode), so test modules import these as ``support.x86_oracle``.
"""
