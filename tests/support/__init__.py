"""Test-only helpers shared by several test modules.

* :mod:`support.x86_oracle` -- a brute-force reference of the x86 crash model;
* :mod:`support.logs` -- a hypothesis strategy for random store logs.

``tests/`` has no ``__init__.py``: pytest puts it on ``sys.path`` (the rootdir conftest,
``prepend`` import mode), so test modules import these as ``support.x86_oracle``.
"""
