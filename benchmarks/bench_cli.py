"""Wall-clock time of the ``pmemsim`` command: a full scenario run and ``--help`` start-up.

Measures, each as a fresh subprocess (what a user or CI waits for):

* ``python -m pmemsim run scenarios/`` — every shipped scenario on its backends.
  Target: under 10 s on the project's 2-core machine.
* ``python -m pmemsim --help`` — start-up. Target: under 0.3 s. The bare interpreter
  (``python -c pass``) and ``import pmemsim`` are timed beside it, so the share that
  is pmemsim's own shows even on a busy machine.

Each command runs ``--repeat`` times (default 5) and the minimum and median are
printed; the targets are judged on the minimum (the least disturbed run).

Run: ``python benchmarks/bench_cli.py [--repeat N] [--scenarios DIR]``.
Exit status 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_TARGET = 10.0
HELP_TARGET = 0.3


def timed(argv: list[str], repeat: int, *, expect: int = 0) -> list[float]:
    """Seconds each of ``repeat`` runs of ``argv`` took (in the repository root)."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if proc.returncode != expect:
            sys.exit(
                f"{' '.join(argv)} exited {proc.returncode}, expected {expect}:\n{proc.stdout}{proc.stderr}"
            )
    return out


def line(label: str, times: list[float], target: float | None = None) -> bool:
    best, median = min(times), statistics.median(times)
    verdict = ""
    ok = True
    if target is not None:
        ok = best < target
        verdict = f"  target < {target:g} s: {'ok' if ok else 'MISSED'}"
    print(f"{label:<42} min {best:7.3f} s   median {median:7.3f} s{verdict}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument(
        "--scenarios", default="scenarios/", help="what `pmemsim run` runs (default scenarios/)"
    )
    args = parser.parse_args()
    py = sys.executable
    n = len(list((REPO / args.scenarios).rglob("*.toml")))
    print(f"python {sys.version.split()[0]}, {args.repeat} runs each, {n} scenario files in {args.scenarios}")

    ok = line(
        f"pmemsim run {args.scenarios}",
        timed([py, "-m", "pmemsim", "run", "-q", args.scenarios], args.repeat),
        RUN_TARGET,
    )
    base = timed([py, "-c", "pass"], args.repeat)
    line("python -c pass (interpreter alone)", base)
    imp = timed([py, "-c", "import pmemsim"], args.repeat)
    line("python -c 'import pmemsim'", imp)
    helped = timed([py, "-m", "pmemsim", "--help"], args.repeat)
    ok &= line("pmemsim --help", helped, HELP_TARGET)
    print(f"{'  of which pmemsim (help - interpreter)':<42} min {min(helped) - min(base):7.3f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
