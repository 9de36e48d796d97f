"""Recovery program for crash_commit_recover_program.toml: ``python recover_committed.py IMAGE``.

Prints what a restart reads from the one-record commit pool: the record as text when
the commit flag is set, ``none`` otherwise. It judges nothing: the replay compares its
output for every crash image with its output before and after the operation (durable
linearizability). Standalone (no pmemsim import) so each call starts fast; the same
recovery as ``pmemsim.scenario.examples.committed_value``.
"""

import sys

with open(sys.argv[1], "rb") as f:
    image = f.read()
print(image[64:80].hex() if image[0:8] == b"COMMITED" else "none")
