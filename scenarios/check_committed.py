"""Program checker for crash_commit_program_checker.toml: ``python check_committed.py IMAGE``.

Exits 0 when the image is consistent (commit flag unset, or set over a record with no
zero byte), 1 otherwise. Standalone (no pmemsim import) so each call starts fast; the
same rule as ``pmemsim.scenario.examples.committed_record``.
"""

import sys

with open(sys.argv[1], "rb") as f:
    image = f.read()
if image[0:8] == b"COMMITED" and 0 in image[64:80]:
    print("commit flag set over an incomplete record")
    sys.exit(1)
