"""Shards: one deterministic share of a replay per job, and the merge into the report one run gives.

Theory of operation
-------------------
A replay of a log is cut into up to :data:`~pmemsim.persistence.explore.DEFAULT_SLICES`
slices at quiescent fences (points after which nothing is in flight), and each slice
can be explored on its own from the initial image. Shard K of N explores the slices
``s`` with ``s % N == K - 1`` (round robin, so every shard gets early and late parts of
the log) and writes, per slice, what the merge needs: the keys of the states it judged
first, the count of non-deduplicating states, its failures with their keys and details
(the merge never judges a state again: a failure's message and details are the
shard's), and its limits. The merge orders the slices, checks that every one is there
exactly once, and runs the same merge as :func:`~pmemsim.persistence.replay` -- dropping deduplicated
states an earlier slice judged, locating the kept failures -- so the merged report is
the one a single run would give. Nothing is trusted blindly: shards of another log
(its digest), other parameters, a missing or a duplicated shard are bad input.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pmemsim.enums import Granularity
from pmemsim.persistence.checkers import Checker, CheckOutcome, Verdict
from pmemsim.persistence.engines import Engine
from pmemsim.persistence.explore import (
    DEFAULT_SLICES,
    ChunkResult,
    SliceWork,
    build_report,
    explore_slice,
    prepare_replay,
    release_carried,
)
from pmemsim.persistence.log import Fence, Flush, LogError, Marker, Store, StoreLog
from pmemsim.persistence.model import CrashPoint, LogScan, PersistencyModel
from pmemsim.persistence.results import CrashReport

__all__ = ["SHARD_FORMAT", "SHARD_VERSION", "ShardError", "explore_shard", "log_digest", "merge_shards"]

SHARD_FORMAT = "pmemsim-crash-shard"
#: 2: each failure carries its details (a recovery check's allowed and recovered values).
SHARD_VERSION = 2


class ShardError(LogError):
    """Shards that do not make one replay: missing, duplicated, of another log or other parameters."""


def log_digest(log: StoreLog, images: Sequence[bytes]) -> str:
    """A SHA-256 over the records, the files and their initial images: the identity shards must share."""
    h = hashlib.sha256()
    for info, image in zip(log.files.values(), images, strict=True):
        h.update(f"F|{info.key}|{info.size}|".encode())
        h.update(hashlib.sha256(image).digest())
    for rec in log.records:
        if isinstance(rec, Store):
            h.update(f"S|{rec.file}|{rec.offset}|{int(rec.nontemporal)}|".encode() + rec.data)
        elif isinstance(rec, Flush):
            h.update(f"L|{rec.file}|{rec.offset}|{rec.length}".encode())
        elif isinstance(rec, Fence):
            h.update(b"F")
        elif isinstance(rec, Marker):
            h.update(f"M|{rec.name}|{rec.data!r}".encode())
    return h.hexdigest()


def _chunk_json(s: int, count: int, r: ChunkResult) -> dict[str, Any]:
    return {
        "slice": s,
        "epochs": count,
        "first_keys": [f"{k:032x}" for k in r.first_keys],
        "first_dedup": "".join("1" if d else "0" for d in r.first_dedup),
        "images": sorted(f"{h:032x}" for h in r.images),
        "nondedup": r.nondedup,
        "failures": [
            [
                epoch,
                seq,
                f"{key:032x}",
                dedup,
                o.verdict.value,
                o.file,
                o.message,
                [list(d) for d in o.details],
            ]
            for epoch, seq, key, dedup, o in r.failures
        ],
        "warnings": list(r.warnings),
        "limits": list(r.limits),
        "calls": r.calls,
        # Failures of lazily explored epochs, located where they were judged.
        "located": [
            [epoch, seq, list(ids), [p.record, p.atoms, p.markers]]
            for (epoch, seq), (ids, p) in r.located.items()
        ],
    }


def _index(value: Any) -> int:
    """A non-negative int from a shard document (ValueError otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 62:
        raise ValueError(f"expected a non-negative int, got {value!r}")
    return value


def _details(value: Any) -> tuple[tuple[str, str], ...]:
    """A failure's details from a shard document: [name, text] pairs (ValueError otherwise)."""
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in value
    ):
        raise ValueError(f"details must be a list of [name, text] pairs, got {value!r:.60}")
    return tuple((name, text) for name, text in value)


def _chunk_from_json(d: Any, where: str) -> tuple[int, int, ChunkResult]:
    try:
        keys = [int(k, 16) for k in d["first_keys"]]
        dedup = bytes(c == "1" for c in d["first_dedup"])
        if len(dedup) != len(keys) or set(d["first_dedup"]) - {"0", "1"}:
            raise ValueError("first_dedup does not match first_keys")
        failures = [
            (int(e), int(q), int(k, 16), bool(dd), CheckOutcome(Verdict(v), str(f), str(m), _details(ds)))
            for e, q, k, dd, v, f, m, ds in d["failures"]
        ]
        chunk = ChunkResult(
            keys,
            {int(h, 16) for h in d["images"]},
            dedup,
            int(d["nondedup"]),
            failures,
            [str(w) for w in d["warnings"]],
            [str(w) for w in d["limits"]],
            int(d["calls"]),
            located={
                (int(e), int(q)): (tuple(_index(i) for i in ids), CrashPoint(*(_index(x) for x in where)))
                for e, q, ids, (*where,) in d.get("located", [])
            },
        )
        return int(d["slice"]), int(d["epochs"]), chunk
    except (KeyError, TypeError, ValueError) as exc:
        raise ShardError(f"{where}: malformed slice result ({type(exc).__name__}: {exc})") from None


def _sliced(
    log: StoreLog,
    checker: Checker | Callable[..., object] | str | Sequence[str],
    slices: int,
    options: dict[str, Any],
) -> tuple[Any, list[str], LogScan]:
    """The replay of ``log`` prepared as slices, the same way for every shard and for the merge."""
    job, notes, _, _, scan = prepare_replay(
        log, checker, workers=1, allow_empty=True, slices=slices, **options
    )
    assert scan is not None
    return job, notes, scan


def explore_shard(
    log: StoreLog,
    checker: Checker | Callable[..., object] | str | Sequence[str],
    shard: int,
    shards: int,
    *,
    engine: Engine | str = "Exhaustive",
    markers: Mapping[str, Engine | str] | None = None,
    seed: int | None = None,
    model: PersistencyModel | Granularity | None = None,
    images: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    timeout: float | None = 60.0,
    max_states: int | None = None,
    allow_open_markers: bool = False,
    allow_empty: bool = False,
    slices: int = DEFAULT_SLICES,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Explore shard ``shard`` (1-based) of ``shards`` of the replay of ``log``; a JSON-ready dict.

    Arguments are those of :func:`~pmemsim.persistence.replay`; ``params`` (JSON-ready)
    is stored for the merge to compare (every shard must have been run the same way).
    Raises what replay raises, and ValueError for a bad shard number.
    """
    if not (isinstance(shards, int) and isinstance(shard, int) and 1 <= shard <= shards <= 1 << 16):
        raise ValueError(f"shard must be K/N with 1 <= K <= N <= 65536, got {shard}/{shards}")
    # An empty share is fine: the merge decides about the whole.
    options: dict[str, Any] = {"engine": engine, "markers": markers, "seed": seed, "model": model}
    options["images"] = images
    options |= {"timeout": timeout, "max_states": max_states, "allow_open_markers": allow_open_markers}
    job, notes, scan = _sliced(log, checker, slices, options)
    work = SliceWork(job, scan.markers, scan.points, allow_open_markers)
    taken = range(shard - 1, len(scan.points), shards)
    return {
        "format": SHARD_FORMAT,
        "version": SHARD_VERSION,
        "shard": shard,
        "shards": shards,
        "slices": len(scan.points),
        "log": log_digest(log, job.images),
        "params": dict(params or {}),
        "notes": notes,
        "allow_empty": allow_empty,
        "results": _explore_taken(work, taken),
    }


def _explore_taken(work: SliceWork, taken: range) -> list[dict[str, Any]]:
    try:
        return [_chunk_json(*explore_slice(work, s, carry=True)) for s in taken]
    finally:
        release_carried()


def merge_shards(
    log: StoreLog,
    checker: Checker | Callable[..., object] | str | Sequence[str],
    docs: Sequence[Mapping[str, Any]],
    *,
    names: Sequence[str] | None = None,
    engine: Engine | str = "Exhaustive",
    markers: Mapping[str, Engine | str] | None = None,
    seed: int | None = None,
    model: PersistencyModel | Granularity | None = None,
    images: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    timeout: float | None = 60.0,
    max_states: int | None = None,
    max_failures: int = 100,
    allow_open_markers: bool = False,
    allow_empty: bool = False,
    slices: int = DEFAULT_SLICES,
) -> CrashReport:
    """The report of a single replay from the shard results ``docs`` (as :func:`explore_shard` made them).

    ``log`` and the arguments must be those the shards ran with (the log's digest is
    checked); ``names`` label the documents in errors. Raises ShardError for a missing,
    duplicated or foreign shard and for malformed documents, and what replay raises.
    """
    labels = list(names) if names is not None else [f"shard document {i + 1}" for i in range(len(docs))]
    if not docs:
        raise ShardError("no shard results to merge")
    first = docs[0]
    for label, doc in zip(labels, docs, strict=True):
        if not isinstance(doc, Mapping) or doc.get("format") != SHARD_FORMAT:
            raise ShardError(f"{label}: not a pmemsim shard result (format {SHARD_FORMAT!r})")
        if doc.get("version") != SHARD_VERSION:
            raise ShardError(
                f"{label}: shard format version {doc.get('version')!r}, expected {SHARD_VERSION}"
            )
        for key in ("shards", "slices", "log", "params"):
            if doc.get(key) != first.get(key):
                raise ShardError(
                    f"{label}: {key} {doc.get(key)!r} differs from {labels[0]}'s {first.get(key)!r}: "
                    "shards of one replay must come from the same log and options"
                )
    shards = first.get("shards")
    numbers = [doc.get("shard") for doc in docs]
    if not isinstance(shards, int) or sorted(n for n in numbers if isinstance(n, int)) != list(
        range(1, shards + 1)
    ):
        have = sorted(n for n in numbers if isinstance(n, int))
        missing = sorted(set(range(1, shards + 1)) - set(have)) if isinstance(shards, int) else []
        duplicated = sorted({n for n in have if have.count(n) > 1})
        raise ShardError(
            f"shards must be 1..{shards} exactly once: missing {missing or 'none'}, "
            f"duplicated {duplicated or 'none'}"
        )
    options: dict[str, Any] = {"engine": engine, "markers": markers, "seed": seed, "model": model}
    options["images"] = images
    options |= {"timeout": timeout, "max_states": max_states, "allow_open_markers": allow_open_markers}
    job, notes, scan = _sliced(log, checker, slices, options)
    if first["log"] != log_digest(log, job.images) or first["slices"] != len(scan.points):
        raise ShardError("the shards were made from another log (or other initial images) than this one")
    results = sorted(
        (_chunk_from_json(r, label) for label, doc in zip(labels, docs, strict=True) for r in doc["results"]),
        key=lambda item: item[0],
    )
    if [s for s, _, _ in results] != list(range(len(scan.points))):
        raise ShardError("the shard results do not hold every slice exactly once")
    return build_report(
        job,
        [chunk for _, _, chunk in results],
        None,
        sum(count for _, count, _ in results),
        max_failures=max_failures,
        allow_empty=allow_empty,
        allow_open_markers=allow_open_markers,
        # The shards prepared the same replay: their notes are these, said once.
        notes=[*notes, *(n for n in first.get("notes", []) if n not in notes)],
    )
