"""Known-correct and known-buggy persistent-memory programs, and which engine finds which bug.

Every program is a store log built with :class:`Recorder` (no PmemSet needed) plus a
checker. ``FINDS`` is the contract ``test_persistence_examples`` checks: each engine
reports exactly the bugs its definition lets it see, and nothing on the correct versions.
Several suites (replay, shrinking, checkers, pmemcheck export, pmreorder agreement) reuse
the programs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from pmemsim.persistence import (
    Recorder,
    StoreLog,
)

Q = struct.Struct("<Q")
PAYLOAD = bytes(range(1, 33))  # 32 bytes: four atoms (keeps ReorderFull at 326 states per epoch)
FLAG = 0
DATA = 64


@dataclass(frozen=True)
class Example:
    """A program (its log) and the checker that defines its consistency."""

    name: str
    log: StoreLog
    check: Callable[[memoryview], bool]


def check_flag(image: memoryview) -> bool:
    """The flag may be set only when the whole payload is there."""
    flag = Q.unpack_from(image, FLAG)[0]
    if flag not in (0, 1):
        return False
    return flag == 0 or bytes(image[DATA : DATA + len(PAYLOAD)]) == PAYLOAD


def flag_program(*, fence_between: bool, flush_payload: bool = True) -> StoreLog:
    """Write a payload, then a flag saying it is valid."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.mark("publish.BEGIN")
    rec.store("pool", DATA, PAYLOAD, location="prog.py:10")
    if flush_payload:
        rec.flush("pool", DATA, len(PAYLOAD))
    if fence_between:
        rec.fence()
    rec.store("pool", FLAG, Q.pack(1), location="prog.py:12")
    rec.persist("pool", FLAG, 8)
    rec.mark("publish.END")
    return rec.log


def check_pair(image: memoryview) -> bool:
    """The 16-byte pair selected by the pointer at 0 must hold (v, ~v)."""
    ptr = Q.unpack_from(image, 0)[0]
    if ptr not in (64, 128):
        return False
    a, b = struct.unpack_from("<QQ", image, ptr)
    return bool(b == a ^ 0xFFFF_FFFF_FFFF_FFFF)


def pair_initial() -> bytes:
    img = bytearray(4096)
    img[0:8] = Q.pack(64)
    img[64:80] = struct.pack("<QQ", 0, 0xFFFF_FFFF_FFFF_FFFF)
    return bytes(img)


def torn_program(*, copy_on_write: bool) -> StoreLog:
    """Update a 16-byte (v, ~v) pair in place (tears) or by copy-on-write plus an 8-byte pointer flip."""
    rec = Recorder()
    rec.register_file("pool", None, 4096, pair_initial())
    new = struct.pack("<QQ", 7, 7 ^ 0xFFFF_FFFF_FFFF_FFFF)
    if copy_on_write:
        rec.store("pool", 128, new, location="pair.py:20")
        rec.persist("pool", 128, 16)
        rec.store("pool", 0, Q.pack(128), location="pair.py:22")
        rec.persist("pool", 0, 8)
    else:
        rec.store("pool", 64, new, location="pair.py:30")
        rec.persist("pool", 64, 16)
    return rec.log


# The undo-logged record update of benchmarks/bench_crash.py, with 32-byte records.
RECORDS, VALID, INDEX, UNDO, TABLE, SIZE = 4, 0x00, 0x08, 0x40, 0x100, 32
MAGIC = 0x5EED_F00D_CAFE_BEEF
REC = struct.Struct("<4Q")


def record(version: int, index: int) -> bytes:
    """Three value words and their checksum."""
    words = [version * 64 + index * 8 + k for k in range(3)]
    check = MAGIC
    for w in words:
        check ^= w
    return REC.pack(*words, check)


def undo_initial() -> bytes:
    pool = bytearray(1024)
    for i in range(RECORDS):
        pool[TABLE + SIZE * i : TABLE + SIZE * (i + 1)] = record(0, i)
    return bytes(pool)


def undo_program(transactions: int = 3, *, valid_fenced: bool = True) -> StoreLog:
    """Undo-logged updates; with ``valid_fenced=False`` the valid flag shares the undo data's epoch."""
    rec = Recorder()
    rec.register_file("pool", None, 1024, undo_initial())
    versions = [0] * RECORDS
    for t in range(transactions):
        i = t % RECORDS
        rec.mark("tx.BEGIN")
        rec.store("pool", INDEX, Q.pack(i), location="undo.py:40")
        rec.store("pool", UNDO, record(versions[i], i), location="undo.py:41")
        rec.flush("pool", INDEX, 8)
        rec.flush("pool", UNDO, SIZE)
        if valid_fenced:
            rec.fence()
        rec.store("pool", VALID, Q.pack(1), location="undo.py:44")
        rec.persist("pool", VALID, 8)
        versions[i] += 1
        rec.store("pool", TABLE + SIZE * i, record(versions[i], i), location="undo.py:47")
        rec.persist("pool", TABLE + SIZE * i, SIZE)
        rec.store("pool", VALID, Q.pack(0), location="undo.py:49")
        rec.persist("pool", VALID, 8)
        rec.mark("tx.END")
    return rec.log


def check_undo(image: memoryview) -> bool:
    """Roll back (virtually) from the undo log; every record must pass its checksum."""
    valid, index = struct.unpack_from("<QQ", image, VALID)
    if valid not in (0, 1) or index >= RECORDS:
        return False
    for i in range(RECORDS):
        *words, check = REC.unpack_from(image, UNDO if valid and i == index else TABLE + SIZE * i)
        for w in words:
            check ^= w
        if check != MAGIC:
            return False
    return True


CORRECT = [
    Example("flag after fenced payload", flag_program(fence_between=True), check_flag),
    Example("copy-on-write pair", torn_program(copy_on_write=True), check_pair),
    Example("undo log done right", undo_program(), check_undo),
]

BUGGY = {
    "flag before payload is fenced": Example("flag", flag_program(fence_between=False), check_flag),
    "torn 16-byte update": Example("torn", torn_program(copy_on_write=False), check_pair),
    "missing flush": Example("noflush", flag_program(fence_between=True, flush_payload=False), check_flag),
    "undo valid flag not fenced": Example("undo", undo_program(valid_fenced=False), check_undo),
}

# Which deterministic engine finds which bug: pmreorder's engines permute flushed stores
# only (so a never-flushed payload is always missing for them), Exhaustive/Random explore
# the whole model.
FINDS = {
    "NoReorderNoCheck": set(),
    "NoReorderDoCheck": {"missing flush"},
    "ReorderAccumulative": {"torn 16-byte update", "missing flush"},
    "ReorderReverseAccumulative": set(BUGGY),
    "ReorderFull": set(BUGGY),
    "Exhaustive": set(BUGGY),
    "Random": set(BUGGY),
}
