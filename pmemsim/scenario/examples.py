"""Consistency checkers used by the shipped crash scenarios (``scenarios/crash_*.toml``).

A checker takes one file image (a read-only ``memoryview``) and returns True/None for a
consistent image or False for an inconsistent one (see
:mod:`pmemsim.persistence.checkers`). Name them in a scenario as
``checker = "pmemsim.scenario.examples:committed_record"``, or run this module as a
program checker: ``python -m pmemsim.scenario.examples IMAGE`` exits 0 when the
image is consistent, 1 when it is not.

The layout they check, a one-record "commit flag" pool:

* bytes ``[0, 8)``: the commit flag, :data:`COMMITTED` once the record is valid (one
  aligned 8-byte store, so it is atomic);
* bytes ``[64, 80)``: the record (two 8-byte words); a committed record has no zero byte (the programs
  write text).

The correct program persists the record, then sets and persists the flag. The buggy
one sets the flag before the record is flushed: a crash can leave the flag without
the record.

:func:`committed_value` is the layout's *recovery* instead of a checker: what a restart
reads (the committed record, or None). Named as ``recover =`` in a scenario, it checks
durable linearizability: no rule about the layout is written, the replay requires each
crash to recover to the value before or after the interrupted operation.
"""

from __future__ import annotations

import sys

__all__ = ["COMMITTED", "RECORD", "committed_record", "committed_value", "main"]

#: The commit flag's value: 8 bytes, stored with one atomic 8-byte store.
COMMITTED = b"COMMITED"
#: Where the record lives in the file.
RECORD = slice(64, 80)


def committed_record(image: memoryview | bytes) -> bool:
    """True unless the commit flag is set while the record is incomplete."""
    if bytes(image[0:8]) != COMMITTED:
        return True  # nothing committed yet: any record content is acceptable
    return 0 not in bytes(image[RECORD])


def committed_value(image: memoryview | bytes) -> bytes | None:
    """What recovery reads: the record when the commit flag is set, else None (nothing committed)."""
    if bytes(image[0:8]) != COMMITTED:
        return None
    return bytes(image[RECORD])


def main(argv: list[str] | None = None) -> int:
    """Program-checker entry point: ``python -m pmemsim.scenario.examples IMAGE``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pmemsim.scenario.examples IMAGE", file=sys.stderr)
        return 2
    with open(args[0], "rb") as f:
        image = f.read()
    if committed_record(image):
        return 0
    print("commit flag set but the record is incomplete", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
