"""``python -m pmemsim``: the ``pmemsim`` command."""

from __future__ import annotations

import sys

from pmemsim.cli import main

if __name__ == "__main__":
    sys.exit(main())
