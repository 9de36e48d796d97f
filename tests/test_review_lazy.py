"""Lazy Exhaustive with checkers written the way users write them, against eager Exhaustive and the oracle.

Every test here runs the same checker with lazy exploration at every crash point
(``Exhaustive(lazy_above=0)``) and with eager exploration (``lazy_above=None``) and
requires the same verdict; the property test also requires the verdict the brute-force
oracle (``support.x86_oracle``) gives when the checker is handed each crash image as
plain bytes. The checkers read data-dependently (a pointer read from one line leads to
another), read the same line twice, read through many memoryview idioms, catch
BaseException, hand their image to a helper thread or a forked child, or look at its
type -- each a way a lazy walk could miss a read and judge one image for many it never
looked at.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import os
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.logs import store_logs
from support.x86_oracle import crash_images

from pmemsim.persistence import CallableChecker, CrashReport, Exhaustive, Recorder, StoreLog, replay

LAZY = Exhaustive(lazy_above=0)
EAGER = Exhaustive(lazy_above=None)


def both(log: StoreLog, checker: Any) -> tuple[CrashReport, CrashReport]:
    lazy = replay(log, checker, engine=LAZY, allow_empty=True, max_failures=10_000)
    eager = replay(log, checker, engine=EAGER, allow_empty=True, max_failures=10_000)
    return lazy, eager


def assert_same_verdict(lazy: CrashReport, eager: CrashReport) -> None:
    assert lazy.complete and eager.complete
    assert lazy.ok == eager.ok, (lazy.summary(), eager.summary())
    assert (lazy.inconsistent > 0) == (eager.inconsistent > 0), (lazy.summary(), eager.summary())
    assert (lazy.errors > 0) == (eager.errors > 0), (lazy.summary(), eager.summary())


def two_lines() -> StoreLog:
    """Two lines written in one flush-and-fence step: four images, two of them torn."""
    rec = Recorder()
    rec.register_file("pool", None, 4096)
    rec.store("pool", 0, b"A" * 8)
    rec.store("pool", 64, b"A" * 8)
    rec.persist("pool", 0, 128)
    return rec.log


def untorn(image: Any) -> bool:
    return bytes(image[0:8]) == bytes(image[64:72])


# -- reads the walk cannot see --------------------------------------------------------------------


def test_a_checker_reading_its_image_in_a_helper_thread_gets_the_eager_verdict() -> None:
    def threaded(image: Any) -> bool:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(untorn, image).result()

    def raw_thread(image: Any) -> bool:  # a plain thread; its exception never reaches the caller
        out: list[bool] = []
        worker = threading.Thread(target=lambda: out.append(untorn(image)))
        worker.start()
        worker.join()
        return bool(out) and out[0]

    for check in (threaded, raw_thread):
        lazy, eager = both(two_lines(), check)
        assert not eager.ok
        assert_same_verdict(lazy, eager)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_checker_reading_its_image_in_a_forked_child_gets_the_eager_verdict() -> None:
    def forked(image: Any) -> bool:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0 if untorn(image) else 1)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0

    lazy, eager = both(two_lines(), forked)
    assert not eager.ok
    assert_same_verdict(lazy, eager)


def test_a_checker_that_treats_memoryviews_apart_gets_the_eager_verdict() -> None:
    def normalising(image: Any) -> bool:
        if isinstance(image, memoryview):  # as parsers do: work on bytes
            image = image.tobytes()
        head = image[0:8] + image[64:72]  # bytes + bytes (a memoryview has no +)
        return len(head) == 16

    lazy, eager = both(two_lines(), normalising)
    assert eager.ok
    assert_same_verdict(lazy, eager)


class PyBuffer(ctypes.Structure):
    """``Py_buffer``, as ctypes code that takes raw pointers to buffers declares it."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.py_object),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def test_the_buffer_hook_survives_other_code_typing_the_c_api_its_own_way() -> None:
    """ctypes.pythonapi's functions are shared objects: a user's module may set their argtypes."""
    shared = ctypes.pythonapi.PyObject_GetBuffer
    saved = shared.argtypes, shared.restype
    shared.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
    shared.restype = ctypes.c_int

    def same_digests(image: Any) -> bool:  # hashlib reads its argument through the buffer protocol
        return hashlib.sha256(image[0:8]).digest() == hashlib.sha256(image[64:72]).digest()

    try:
        lazy, eager = both(two_lines(), same_digests)
    finally:
        shared.argtypes, shared.restype = saved
    assert not eager.ok  # the torn images
    assert_same_verdict(lazy, eager)
    assert lazy.inconsistent == eager.inconsistent == 2  # here every leaf is one image


def test_the_buffer_hook_type_has_the_size_of_an_object_of_this_build() -> None:
    """Instances of the hook's subclasses are allocated from its basic size: never below an object's."""
    from pmemsim.persistence import lazy as lazy_module

    assert lazy_module._HOOK is not None
    assert lazy_module._HOOK.__basicsize__ == object.__basicsize__


def test_a_timeout_cutting_a_line_change_short_does_not_corrupt_the_rest_of_the_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watchdog's exception can land anywhere in the checker's call, inside a lazy read too:
    here, between writing a line's new content and recording it (as it lands, at a bytecode)."""
    from pmemsim.persistence import lazy as lazy_module
    from pmemsim.persistence.checkers import _CheckerTimeout
    from pmemsim.persistence.image import Image

    real = Image.set_line
    fired = [False]

    def set_line(self: Image, fidx: int, l0: int, value: bytes, delta: int) -> None:
        if lazy_module._current.walk is not None and not fired[0]:
            fired[0] = True
            self.bufs[fidx][l0 : l0 + len(value)] = value
            raise _CheckerTimeout
        real(self, fidx, l0, value, delta)

    monkeypatch.setattr(Image, "set_line", set_line)
    lazy = replay(two_lines(), CallableChecker(untorn), engine=LAZY, max_failures=100)
    assert fired[0]
    monkeypatch.setattr(Image, "set_line", real)
    eager = replay(two_lines(), untorn, engine=EAGER, max_failures=100)
    assert eager.inconsistent == 2  # both torn images
    # Every torn image the interrupted call did not cover is still found.
    assert lazy.inconsistent + lazy.errors >= 2, lazy.summary()


def test_ctrl_c_during_a_read_through_the_buffer_hook_stops_the_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KeyboardInterrupt arriving inside the hook (where C called it) cannot propagate there: the run
    it cut short (the checker saw an empty buffer) gives no verdict, and the interrupt is raised after it."""
    from pmemsim.persistence import lazy as lazy_module

    real = lazy_module.LazyImage._buffer_request
    fired = [False]

    def interrupted(self: Any, flags: int) -> bytes | bytearray:
        if lazy_module._current.walk is not None and not fired[0]:
            fired[0] = True
            raise KeyboardInterrupt
        return real(self, flags)

    def same_digests(image: Any) -> bool:
        return hashlib.sha256(image[0:8]).digest() == hashlib.sha256(image[64:72]).digest()

    monkeypatch.setattr(lazy_module.LazyImage, "_buffer_request", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay(two_lines(), same_digests, engine=LAZY)
    assert fired[0] and lazy_module._current.walk is None and not lazy_module._live
    lazy, eager = both(two_lines(), same_digests)  # nothing left behind
    assert_same_verdict(lazy, eager)
    assert lazy.inconsistent == eager.inconsistent == 2


# -- random data-dependent checkers against eager and the oracle -----------------------------------

#: Ways to read bytes [lo, hi) of an image; each gives back exactly those bytes.
READS: dict[str, Callable[[Any, int, int], bytes]] = {
    "bytes": lambda img, lo, hi: bytes(img[lo:hi]),
    "unpack_from": lambda img, lo, hi: struct.unpack_from(f"<{hi - lo}s", img[lo:hi], 0)[0],
    "view_of_slice": lambda img, lo, hi: memoryview(img[lo:hi])[0:].tobytes(),
    "from_bytes": lambda img, lo, hi: int.from_bytes(img[lo:hi], "big").to_bytes(hi - lo, "big"),
    "items": lambda img, lo, hi: bytes([img[i] for i in range(lo, hi)]),
    "iterate": lambda img, lo, hi: bytes(iter(img[lo:hi])),
    "slice_of_slice": lambda img, lo, hi: bytes(img[lo:][0 : hi - lo]),
    "bytearray": lambda img, lo, hi: bytes(bytearray(img[lo:hi])),
}


@dataclass(frozen=True)
class Chase:
    """Read a byte at ``head``, follow it as a pointer (mod the file size) to a read of ``width``
    bytes there, read ``head`` again; maybe also check a byte for membership and compare two
    ranges. Inconsistent when a hash of everything read is 0 mod ``modulus``. ``guard`` wraps
    the whole in ``except BaseException`` (a checker that catches everything)."""

    fidx: int
    head: int
    width: int
    how: tuple[str, str]
    modulus: int
    compare: tuple[int, int] | None
    guard: bool

    def judge(self, images: Sequence[Any]) -> bool:
        img = images[self.fidx]
        size = len(img)
        h = hashlib.blake2b(digest_size=8)
        pointer = READS[self.how[0]](img, self.head, self.head + 1)[0]
        lo = (pointer * 7) % size
        hi = min(size, lo + self.width)
        h.update(READS[self.how[1]](img, lo, hi))
        h.update(bytes(img[self.head : self.head + 1]))  # the same line again
        if pointer in img[lo:hi]:
            h.update(b"in")
        if self.compare is not None:
            a, b = self.compare
            h.update(b"eq" if img[a : a + 8] == img[b : b + 8] else b"ne")
        h.update(hashlib.sha256(img[lo:hi]).digest())
        return int.from_bytes(h.digest(), "little") % self.modulus != 0

    def checker(self, keys: Sequence[str]) -> CallableChecker:
        def check(images: dict[str, Any]) -> bool:
            views = [images[k] for k in keys]
            if not self.guard:
                return self.judge(views)
            try:
                return self.judge(views)
            except BaseException:  # the point: a checker that swallows everything
                return False

        return CallableChecker(check, all_files=True)


@st.composite
def chases(draw: st.DrawFn, log: StoreLog) -> Chase:
    sizes = [info.size for info in log.files.values()]
    fidx = draw(st.integers(0, len(sizes) - 1))
    compare = None
    if draw(st.booleans()):
        compare = (draw(st.integers(0, sizes[fidx] - 8)), draw(st.integers(0, sizes[fidx] - 8)))
    return Chase(
        fidx,
        draw(st.integers(0, min(sizes[fidx], 128) - 1)),
        draw(st.integers(1, 24)),
        (draw(st.sampled_from(sorted(READS))), draw(st.sampled_from(sorted(READS)))),
        draw(st.sampled_from([2, 3, 5])),
        compare,
        draw(st.booleans()),
    )


@settings(max_examples=50)
@given(data=st.data())
def test_pointer_chasing_checkers_get_the_eager_and_the_oracle_verdict(data: st.DataObject) -> None:
    log = data.draw(store_logs(max_files=2, max_in_flight=7))
    chase = data.draw(chases(log))
    keys = list(log.files)
    lazy, eager = both(log, chase.checker(keys))
    assert_same_verdict(lazy, eager)
    rejected = [img for img in crash_images(log) if not chase.judge([memoryview(b) for b in img])]
    assert lazy.ok == (not rejected)
