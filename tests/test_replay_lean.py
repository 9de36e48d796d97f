"""What `replay` leaves out when it does not need it: a second plan, rich, multiprocessing.

These are behaviours, not timings: a plan handed to ``replay`` is explored as it is (the
report is the one replay would give by planning itself), a plan of another log or model
is refused, and ``pmemsim replay`` off a terminal imports neither rich nor
multiprocessing, and still prints the same lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.examples import BUGGY, CORRECT

from pmemsim.persistence import PersistencyModel, Recorder, dump_pmemcheck, plan_replay, replay
from pmemsim.persistence.log import paused_gc
from pmemsim.persistence.model import build_epochs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("engine", ["ReorderAccumulative", "NoReorderDoCheck", "Exhaustive"])
def test_a_given_plan_gives_the_report_replay_plans_itself(engine: str) -> None:
    example = next(iter(BUGGY.values()))
    plan = plan_replay(example.log)
    given = replay(example.log, example.check, engine=engine, plan=plan)
    planned = replay(example.log, example.check, engine=engine)
    assert given == planned
    assert given.ok is (engine != "Exhaustive")  # only Exhaustive reaches this bug's state


def test_a_plan_of_another_model_or_log_is_refused() -> None:
    example = CORRECT[0]
    eadr = build_epochs(example.log, PersistencyModel.eadr())
    with pytest.raises(ValueError, match="same log, under the same model"):
        replay(example.log, example.check, plan=eadr)
    rec = Recorder()
    rec.register_file("another", None, 64)
    rec.store("another", 0, b"\x01")
    rec.persist("another", 0, 1)
    with pytest.raises(ValueError, match="same log"):
        replay(example.log, example.check, plan=plan_replay(rec.log))


def test_paused_gc_restores_the_collector_even_on_error() -> None:
    import gc

    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        with paused_gc():  # nested: the outer block still owns the restore
            pass
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()


def _replay_in_a_probe(tmp_path: Path, report: str, options: list[str]) -> tuple[Path, Any, str]:
    """``pmemsim replay`` of a buggy example's pmemcheck log in a fresh interpreter, ``options`` after
    the log; (log path, the JSON the probe wrote last on stderr -- ``report``, an expression of
    ``status`` and ``sys`` -- and stdout)."""
    example = next(iter(BUGGY.values()))
    log = tmp_path / "store.log"
    dump_pmemcheck(example.log, log)
    code = (
        "import sys, json\n"
        "from pmemsim.cli import main\n"
        "status = main(sys.argv[1:])\n"
        f"sys.stderr.write(json.dumps({report}))\n"
    )
    argv = [sys.executable, "-c", code, "replay", str(log), *options]
    for key, info in example.log.files.items():  # the log names files by path: give their content
        image = tmp_path / f"{len(argv)}.img"
        image.write_bytes(info.initial or bytes(info.size))
        argv += ["--image", f"{key}={image}"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False
    )
    return log, json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout


def test_replay_off_a_terminal_needs_neither_rich_nor_multiprocessing(tmp_path: Path) -> None:
    checker = tmp_path / "check.py"
    checker.write_text("import sys\nsys.exit(0)\n")
    log, probe, stdout = _replay_in_a_probe(
        tmp_path,
        "[status, 'rich' in sys.modules, 'multiprocessing' in sys.modules]",
        ["--engine", "NoReorderDoCheck", "--checker-prog", f"{sys.executable} {checker}", "--no-shrink"],
    )
    assert probe == [0, False, False], probe
    # Plain text: the markup of the terminal lines is gone, the values are there as they are.
    assert stdout.startswith(f"{log}: pmemcheck store log, ")
    assert "[bold" not in stdout and "[/]" not in stdout
    assert "consistent: " in stdout


def test_a_replay_imports_only_the_modules_it_uses(tmp_path: Path) -> None:
    # The fixed cost of a small replay is mostly imports: the lazy-image module (it builds a C
    # type), recovery, program runs, shrinking and shards load only when they are used.
    (tmp_path / "freecheck.py").write_text("def check(image):\n    return True\n")
    _, (status, modules), _ = _replay_in_a_probe(
        tmp_path,
        "[status, sorted(m for m in sys.modules if m.startswith('pmemsim'))]",
        ["--engine", "ReorderAccumulative", "--checker", "freecheck:check", "--no-shrink"],
    )
    assert status == 0
    assert "pmemsim.persistence.explore" in modules  # the probe sees what replay loaded
    unused = {f"pmemsim.persistence.{m}" for m in ("lazy", "linearizability", "programs", "shrink", "shards")}
    assert not unused & set(modules), sorted(unused & set(modules))
