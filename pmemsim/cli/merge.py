"""``pmemsim merge``: the shard results of ``pmemsim replay --shard K/N`` as the one report a replay gives."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pmemsim.cli._common import EXIT_BAD_INPUT, Command
from pmemsim.cli.replay import replay_command

__all__ = ["MAX_SHARD_BYTES", "MERGE"]

_MERGE_DESCRIPTION = """\
Merge the shard results of `pmemsim replay LOG --shard K/N` (one per CI job) into the
report one replay would have given: the same states, images, failures and minimal
trace, printed (or --json) exactly as `pmemsim replay` prints it, with its exit status.
The log, the checker and the options come from the shards (they must all agree) and
the log must still be at the path the shards name, unchanged (its digest is checked).
Missing, duplicated or foreign shards are bad input (exit 2).
"""

_MERGE_EPILOG = """\
examples:
  for k in 1 2 3 4; do pmemsim replay store.log --checker mychecks:pool_ok --shard $k/4 > shard$k.json; done
  pmemsim merge shard1.json shard2.json shard3.json shard4.json
  pmemsim merge shard*.json --json > verdict.json
"""

#: The most a shard file may hold (a shard lists the keys of the states it judged: 33 bytes each).
MAX_SHARD_BYTES = 1 << 30


#: The params naming how states are judged; a shard names exactly one.
_JUDGES = ("checker", "checker_prog", "recover", "recover_prog")


def _configure_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "shards", nargs="+", metavar="SHARD.json", help="shard results of `pmemsim replay --shard K/N`"
    )
    p.add_argument("--no-shrink", action="store_true", help="do not compute the minimal failing trace")
    p.add_argument("--json", action="store_true", help="print the merged report as one JSON object on stdout")


def _cmd_merge(args: argparse.Namespace) -> int:
    import json

    from pmemsim._files import InputFileError, read_regular_file

    def bad(message: str) -> int:
        print(f"pmemsim merge: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    docs: list[Any] = []
    for path in args.shards:
        try:
            text = read_regular_file(path, MAX_SHARD_BYTES, "a shard result")
        except InputFileError as exc:
            return bad(str(exc))
        except OSError as exc:
            return bad(f"cannot read {path}: {exc.strerror or exc}")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return bad(f"{path}: not JSON ({type(exc).__name__}: {exc})")
        if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
            return bad(f"{path}: not a shard result of `pmemsim replay --shard` (no params)")
        docs.append(doc)
    params = docs[0]["params"]
    for path, doc in zip(args.shards, docs, strict=True):
        if doc["params"] != params:
            return bad(f"{path}: run with other options than {args.shards[0]}: the shards must agree")
    expected = {
        "log": (str,),
        "checker": (str, type(None)),
        "checker_prog": (str, type(None)),
        "recover": (str, type(None)),
        "recover_prog": (str, type(None)),
        "engine": (str,),
        "markers": (list,),
        "seed": (int, type(None)),
        "timeout": (int, float),
        "max_states": (int, type(None)),
        "image": (list,),
        "allow_truncated": (bool,),
        "allow_empty": (bool,),
    }
    for key, kinds in expected.items():
        value = params.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return bad(f"{args.shards[0]}: params.{key} is {value!r:.60}: not a value `pmemsim replay` takes")
    if not all(isinstance(v, str) for v in params["markers"] + params["image"]):
        return bad(f"{args.shards[0]}: params.markers and params.image must be lists of strings")
    try:
        replay_args = argparse.Namespace(
            log=str(params["log"]),
            checker=params["checker"],
            checker_prog=params["checker_prog"],
            recover=params.get("recover"),
            recover_prog=params.get("recover_prog"),
            engine=str(params["engine"]),
            markers=list(params["markers"]),
            seed=params["seed"],
            timeout=float(params["timeout"]),
            max_states=params["max_states"],
            image=list(params["image"]),
            allow_truncated=bool(params["allow_truncated"]),
            allow_empty=bool(params["allow_empty"]),
            workers=1,
            dask=None,
            shard=None,
            no_shrink=args.no_shrink,
            json=args.json,
            merge_docs=docs,
            merge_names=list(args.shards),
        )
    except (KeyError, TypeError, ValueError) as exc:
        return bad(f"{args.shards[0]}: malformed params ({type(exc).__name__}: {exc})")
    # One judge: a checker, a checker program, a recovery or a recovery program.
    judges = [f"params.{key}" for key in _JUDGES if params.get(key) is not None]
    if len(judges) != 1:
        named = " and ".join(judges) if judges else "none"
        return bad(f"{args.shards[0]}: the params must name exactly one of {', '.join(_JUDGES)}, not {named}")
    return replay_command(replay_args)


MERGE = Command(
    name="merge",
    help="merge the shard results of `pmemsim replay --shard K/N` into one report",
    description=_MERGE_DESCRIPTION,
    epilog=_MERGE_EPILOG,
    configure=_configure_merge,
    run=_cmd_merge,
)
