"""Lazy exploration: choose a cache line's content when the checker first reads it.

Theory of operation
-------------------
Within one crash point the images a crash can leave are the product of each 64-byte
line's own reachable contents: every ordering constraint of the model
(:func:`~pmemsim.persistence.model.predecessors`) links an atom to an earlier atom of
the *same* line -- the previous cached atom of the line, or an earlier writer of one of
its bytes, which lies in the same aligned 8-byte word. Eager exploration visits the
whole product, which is exponential in the lines written in one step (a 4 KiB ``memcpy``
is 64 lines of 9 contents each). A checker that reads a header and one entry cannot
tell apart images that differ only in lines it never reads, so only the lines it reads
need to branch. This is Jaaru's insight (Gorjiara, Xu, Demsky, *Jaaru: Efficiently
Model Checking Persistent Memory Programs*, ASPLOS 2021): the number of executions
follows the values recovery reads, not the stores in flight.

The checker gets :class:`LazyImage` objects instead of memoryviews. The first read of
a line that the crash point can change *chooses* its content: the next value of a
forced prefix of choices when there is one, else the line's first content (its
durable base). The walk is depth first over those choices: after each run the deepest
choice with an untried content is advanced, the choices after it are dropped, and the
checker runs again with that prefix forced -- so a run is one leaf of the tree of the
choices it made, and a leaf stands for every full image agreeing with it on the lines
read (the set of images is partitioned by the leaves, and no image is judged twice).
Only distinct contents branch (the engine's per-line values are already deduplicated).
The leaf's *representative* is the image with the lines read at their chosen contents
and every other line at its durable base; it is what a failure reports, and it is a
member of the leaf, so a failure always names a concrete image the model allows.

This relies on the checker being a function of the bytes it reads. A checker whose reads
do not repeat under the same forced choices (it reads randomly, or depends on state kept
across calls) is caught when its reads diverge from the forced prefix, and the crash
point is then explored eagerly. So is every use that this module cannot follow byte by
byte: the whole file through the buffer protocol (``struct.unpack_from(fmt, image,
...)``, ``memoryview(image)``, ``hashlib``), ``bytes(image)``, iteration, ``image.obj``,
an attribute a memoryview does not have, a view kept from an earlier call, a writable
buffer request (a memoryview refuses it, and what the caller then does cannot be told:
``numpy.frombuffer`` asks again read-only, ``ctypes``' ``from_buffer`` raises), a read
from another thread or from a process forked during the call (the walk cannot see those
reads). ``isinstance(image, memoryview)`` holds, as it does for the memoryviews eager
exploration hands out, so a checker takes the same path either way (``type(image)``
cannot be hooked and names :class:`LazyImage`). Pure Python cannot hook the buffer
protocol before Python 3.12, so :class:`LazyImage` derives from a tiny type built at
import time with ``PyType_FromSpec`` whose only slot is ``bf_getbuffer``: every C
function that asks for the image's bytes goes through :meth:`LazyImage._buffer_request`,
which records the read (a bounded slice) or the escape (the whole file). Where that type
cannot be built, :data:`AVAILABLE` is False and engines explore eagerly.

A walk also gives up when it would not pay: when the lines one run reads admit more
combinations than the budget of the crash point. Giving up discards the walk's leaves
(their checker calls are still counted as calls) and the caller explores the crash
point eagerly, which is always correct.
"""

from __future__ import annotations

import bisect
import ctypes
import operator
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, SupportsIndex

from pmemsim.persistence.checkers import CheckOutcome
from pmemsim.persistence.model import ORDER_UNIT

__all__ = ["AVAILABLE", "Escaped", "LazyImage", "Leaf", "LineChoices", "walk"]

_PyBUF_WRITABLE = 0x0001


class Escaped(BaseException):
    """The checker used a lazy image in a way its reads cannot be followed (raised inside the checker).

    A BaseException, so that a checker's ``except Exception`` does not swallow it; the
    walk is abandoned either way (the escape is also remembered, for checkers that catch
    everything).
    """


class LineChoices(Protocol):
    """The lines a crash point can change, as the engine enumerates them (``engines._Lines``)."""

    fidx: list[int]
    start: list[int]
    values: list[list[bytes]]
    radix: list[int]
    digits: list[int]

    def set(self, image: Any, j: int, v: int) -> None:
        """Put content ``v`` into line ``j`` of the image."""
        ...


@dataclass(frozen=True, slots=True)
class Leaf:
    """One checker run of a walk: the (line, content) choices it read, in read order, and its verdict."""

    path: tuple[tuple[int, int], ...]
    outcome: CheckOutcome | None


def _make_base() -> type | None:
    """A base type whose buffer protocol calls ``self._buffer_request(flags)`` (None if it cannot be built).

    The slot calls back into Python through ctypes and fills the caller's ``Py_buffer``
    from the bytes object the method returns, so the buffer's owner is that object and
    no release slot is needed. The callback never raises: a failing request is served an
    empty buffer (and the request already marked the run as escaped).
    """
    try:
        api = ctypes.pythonapi
        # Private prototypes, not ``api.PyObject_GetBuffer``: that object is shared by every user
        # of ctypes.pythonapi, and code typing its arguments its own way would break the hook.
        get_buffer = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_void_p, ctypes.c_int)(
            ("PyObject_GetBuffer", api)
        )
        from_spec = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p)(("PyType_FromSpec", api))

        class Slot(ctypes.Structure):
            _fields_ = [("slot", ctypes.c_int), ("pfunc", ctypes.c_void_p)]

        class Spec(ctypes.Structure):
            _fields_ = [
                ("name", ctypes.c_char_p),
                ("basicsize", ctypes.c_int),
                ("itemsize", ctypes.c_int),
                ("flags", ctypes.c_uint),
                ("slots", ctypes.POINTER(Slot)),
            ]

        def getbuffer(obj: Any, view: int, flags: int) -> int:
            try:
                backing = obj._buffer_request(flags)
            except BaseException as exc:  # never let an exception reach C: serve nothing
                backing = bytearray() if flags & _PyBUF_WRITABLE else b""
                # Anything but an escape (a timeout, Ctrl-C) arrived mid-read: the run saw an empty
                # buffer, so it gives no verdict; Ctrl-C is raised again once the run is over.
                walk = _current.walk
                if walk is not None:
                    walk.escape("a read was interrupted")
                    if isinstance(exc, KeyboardInterrupt):
                        walk.interrupt = exc
            result: int = get_buffer(backing, view, flags)
            return result

        callback = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_void_p, ctypes.c_int)(getbuffer)
        py_bf_getbuffer = 1  # Include/typeslots.h
        slots = (Slot * 2)(Slot(py_bf_getbuffer, ctypes.cast(callback, ctypes.c_void_p)), Slot(0, None))
        name = ctypes.create_string_buffer(b"pmemsim.persistence.lazy.BufferHook")
        size = object.__basicsize__  # sizeof(PyObject) of this build (larger in free-threaded builds)
        py_tpflags_basetype, py_tpflags_have_version_tag = 1 << 10, 1 << 18
        spec = Spec(name.value, size, 0, py_tpflags_basetype | py_tpflags_have_version_tag, slots)
        spec.name = ctypes.cast(name, ctypes.c_char_p)
        base: type = from_spec(ctypes.byref(spec))
        # The type points into these: they live as long as the module.
        base._keep = (callback, slots, name, spec)  # type: ignore[attr-defined]
        return base
    except Exception:  # pragma: no cover - not CPython, or a ctypes without pythonapi
        return None


_HOOK = _make_base()
#: Whether lazy images can follow the buffer protocol here (else engines explore eagerly).
AVAILABLE = _HOOK is not None
if TYPE_CHECKING:
    _Base = object
else:
    _Base = object if _HOOK is None else _HOOK


class _Walk:
    """The choices of one crash point's walk and the bookkeeping of the current run."""

    def __init__(self, lines: LineChoices, image: Any, budget: int) -> None:
        self.lines = lines
        self.image = image
        self.bufs = image.bufs
        self.sizes = image.sizes
        self.budget = budget
        starts: dict[int, list[tuple[int, int]]] = {}
        for j, (fidx, l0) in enumerate(zip(lines.fidx, lines.start, strict=True)):
            starts.setdefault(fidx, []).append((l0, j))
        self.starts = {f: [l0 for l0, _ in sorted(v)] for f, v in starts.items()}
        self.js = {f: [j for _, j in sorted(v)] for f, v in starts.items()}
        self.stamp = [0] * len(lines.radix)
        self.run = 0
        self.path: list[list[int]] = []  # [line, content] in read order
        self.forced = 0  # how many choices of path the current run must repeat
        self.depth = 0  # choices made so far in the current run
        self.product = 1  # combinations of the lines read in the current run
        self.escaped: str | None = None
        #: A line change in progress: still set after a run, it was cut short (a timeout raised
        #: inside the read), and the line's content and digit may disagree.
        self.changing = False
        #: Ctrl-C caught where it could not be raised (inside the buffer hook), raised after the run.
        self.interrupt: KeyboardInterrupt | None = None

    def escape(self, why: str) -> Escaped:
        """Remember the first reason the walk cannot go on, and the exception that stops the checker."""
        if self.escaped is None:
            self.escaped = why
        return Escaped(why)

    def touch(self, fidx: int, lo: int, hi: int) -> None:
        """Choose every line of file ``fidx`` overlapping ``[lo, hi)`` not chosen yet in this run."""
        starts = self.starts.get(fidx)
        if not starts or hi <= lo:
            return
        i = bisect.bisect_left(starts, lo - lo % ORDER_UNIT)
        js, stamp, run = self.js[fidx], self.stamp, self.run
        while i < len(starts) and starts[i] < hi:
            j = js[i]
            if stamp[j] != run:
                self._choose(j)
            i += 1

    def _choose(self, j: int) -> None:
        lines = self.lines
        self.stamp[j] = self.run
        d = self.depth
        self.depth = d + 1
        if d < self.forced:
            if self.path[d][0] != j:
                raise self.escape("the checker's reads differ between runs with the same choices")
            value = self.path[d][1]
        else:
            self.path.append([j, 0])
            value = 0
        self.product *= lines.radix[j]
        if self.product > self.budget:
            raise self.escape("the lines one run reads admit more images than the budget")
        if lines.digits[j] != value:
            self.changing = True
            lines.set(self.image, j, value)
            self.changing = False

    def read(self, fidx: int, lo: int, hi: int) -> bytes:
        """The bytes ``[lo, hi)`` of file ``fidx``, choosing the lines they lie in."""
        self.touch(fidx, lo, hi)
        return bytes(self.bufs[fidx][lo:hi])

    def advance(self) -> bool:
        """Move to the next leaf: advance the deepest choice with an untried content; False when none."""
        path, radix, lines = self.path, self.lines.radix, self.lines
        d = len(path) - 1
        while d >= 0 and path[d][1] + 1 >= radix[path[d][0]]:
            d -= 1
        for j, _ in path[d + 1 :]:
            if lines.digits[j]:
                lines.set(self.image, j, 0)
        if d < 0:
            return False
        del path[d + 1 :]
        path[d][1] += 1
        self.forced = d + 1
        return True


class _Current(threading.local):
    """Per thread: the walk whose run is in progress (a lazy image of any other run or walk is stale).

    Per thread, because executors explore slices in threads side by side: another thread's
    walk must neither make this one's images stale nor hide this one's reads.
    """

    walk: _Walk | None = None


_current = _Current()
#: The walks whose run is in progress, by ``id`` of their engine image. A read of a lazy image
#: of that image by a thread with no walk of its own (a checker that hands its image to a helper
#: thread) cannot be followed: that thread's reads would bypass the choices, and it would read
#: lines mid-walk. The walk then escapes (eager exploration gives such checkers real memory).
_live: dict[int, _Walk] = {}


def _forking() -> None:
    # A checker that forks during a run: the child's reads happen in another process, where the
    # walk cannot see them. Every walk in progress gives up (explored eagerly instead).
    for w in list(_live.values()):
        w.escape("the checker forked a process during its call")


def _forked_child() -> None:
    # In the child the walk is a copy nobody will read: lazy images read its memory as it is.
    _live.clear()
    _current.walk = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_forking, after_in_child=_forked_child)


def _stray(image: Any) -> None:
    """A lazy image of ``image`` is read outside every run of this thread: a walk in progress escapes.

    Nothing is raised in that thread (it may be one the checker does not watch): the read
    returns the memory as it is, and the walk, remembering the escape, is discarded.
    """
    w = _live.get(id(image))
    if w is not None:
        w.escape("the checker read its image from another thread")


class LazyImage(_Base):
    """A read-only, memoryview-like image of one file that chooses line contents as they are read.

    Supports what a checker does with a memoryview byte by byte: ``len``, ``image[i]``,
    ``image[a:b]`` (a lazy image of the range; the buffer protocol, ``bytes()``,
    ``int.from_bytes``, ``==``, ``tobytes()`` and ``cast()`` on a range read just that
    range), and the memoryview attributes that do not reveal content;
    ``isinstance(image, memoryview)`` holds. Reading the whole
    file at once (``bytes(image)``, the buffer protocol of the whole image, iteration),
    ``image.obj``, any other attribute, or an image kept from an earlier call makes the
    walk fall back to eager exploration, and so does a writable buffer request (numpy makes
    one first). Valid only during the call it was given to.
    """

    __slots__ = ("_fidx", "_hi", "_lo", "_run", "_walk", "_whole")

    def __init__(self, walk: _Walk, fidx: int, lo: int, hi: int, whole: bool, run: int | None = None) -> None:
        self._walk, self._run, self._fidx = walk, walk.run if run is None else run, fidx
        self._lo, self._hi, self._whole = lo, hi, whole

    # -- reads -------------------------------------------------------------------------------
    def _live(self) -> _Walk | None:
        """The walk whose run this image belongs to; None outside every walk (an image a checker kept
        then reads the current state, as a kept memoryview would). Inside another run: an escape."""
        walk = _current.walk
        if walk is None:
            _stray(self._walk.image)
            return None
        if walk is not self._walk or walk.run != self._run:
            raise walk.escape("the checker read an image kept from another call")
        return walk

    def _read(self, lo: int, hi: int) -> bytes:
        walk = _current.walk  # _live(), inlined: this is every read's path
        if walk is None:
            _stray(self._walk.image)
            return bytes(self._walk.bufs[self._fidx][lo:hi])
        if walk is not self._walk or walk.run != self._run:
            raise walk.escape("the checker read an image kept from another call")
        return walk.read(self._fidx, lo, hi)

    def _content(self) -> bytes:
        walk = self._live()
        if walk is not None and self._whole:
            raise walk.escape("the checker read the whole image")
        return self._read(self._lo, self._hi)

    def _buffer_request(self, flags: int) -> bytes | bytearray:
        walk = self._live()
        if walk is not None and self._whole:
            walk.escape("the checker used the buffer protocol of the whole image")
        data = self._read(self._lo, self._hi)
        if flags & _PyBUF_WRITABLE:
            # A memoryview refuses it, and what the caller does then (numpy asks again read-only,
            # ctypes' from_buffer raises) cannot be told from here: an escape. The callback cannot
            # refuse with the right exception, so the run gets a private copy, and is discarded.
            if walk is not None:
                walk.escape("the checker asked for a writable buffer of the image")
            return bytearray(data)
        return data

    def __len__(self) -> int:
        return self._hi - self._lo

    def __getitem__(self, key: Any) -> Any:
        n = self._hi - self._lo
        if type(key) is slice:
            start, stop, step = key.indices(n)
            if step == 1:
                self._live()  # a range of a stale image is stale too (and an escape inside a run)
                lo = self._lo + start
                return LazyImage(self._walk, self._fidx, lo, max(lo, self._lo + stop), False, self._run)
            idx = range(start, stop, step)
            if not idx:
                return memoryview(b"")
            first = min(idx)
            data = self._read(self._lo + first, self._lo + max(idx) + 1)
            return memoryview(bytes(data[i - first] for i in idx))
        if key is Ellipsis:
            return self
        if isinstance(key, tuple):
            raise TypeError("memoryview: invalid slice key")
        try:
            i = operator.index(key)
        except TypeError:
            raise TypeError("memoryview: invalid slice key") from None
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("index out of bounds on dimension 1")
        return self._read(self._lo + i, self._lo + i + 1)[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("cannot modify read-only memory")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("cannot delete memory")

    def __bytes__(self) -> bytes:
        return self._content()

    def tobytes(self, order: str | None = None) -> bytes:
        """The bytes of the range (the whole image: an escape)."""
        return self._content()

    def hex(self, *args: Any) -> str:
        """Like ``memoryview.hex``."""
        return self._content().hex(*args)

    def tolist(self) -> list[int]:
        """The bytes of the range as ints."""
        return list(self._content())

    def cast(self, fmt: str, *shape: Any) -> Any:
        """A memoryview of a copy of the range, cast like ``memoryview.cast``."""
        view: Any = memoryview(self._content())
        return view.cast(fmt, *shape)

    def __iter__(self) -> Iterator[int]:
        return iter(self._content())

    def __reversed__(self) -> Iterator[int]:
        return reversed(self._content())

    def __contains__(self, item: object) -> bool:
        return item in list(self._content())

    def __eq__(self, other: object) -> bool:
        content = self._content()
        if isinstance(other, LazyImage):
            return content == other._content()
        try:
            return content == memoryview(other)  # type: ignore[arg-type]
        except TypeError:
            return False

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self._content())

    # -- what does not depend on the content -------------------------------------------------
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        """``memoryview``, so that ``isinstance(image, memoryview)`` holds as it does without lazy reads."""
        return memoryview

    def __repr__(self) -> str:
        return f"<lazy crash image of file {self._fidx} [{self._lo:#x}:{self._hi:#x}]>"

    @property
    def nbytes(self) -> int:
        """The length in bytes."""
        return self._hi - self._lo

    @property
    def readonly(self) -> bool:
        """Always True."""
        return True

    @property
    def format(self) -> str:
        """``"B"``: unsigned bytes."""
        return "B"

    @property
    def itemsize(self) -> int:
        """1."""
        return 1

    @property
    def ndim(self) -> int:
        """1."""
        return 1

    @property
    def shape(self) -> tuple[int]:
        """``(len,)``."""
        return (self._hi - self._lo,)

    @property
    def strides(self) -> tuple[int]:
        """``(1,)``."""
        return (1,)

    @property
    def suboffsets(self) -> tuple[()]:
        """``()``."""
        return ()

    @property
    def c_contiguous(self) -> bool:
        """True."""
        return True

    @property
    def f_contiguous(self) -> bool:
        """True."""
        return True

    @property
    def contiguous(self) -> bool:
        """True."""
        return True

    def toreadonly(self) -> LazyImage:
        """Itself (already read-only)."""
        return self

    def release(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def obj(self) -> Any:
        """Escapes: the underlying object would show every line."""
        walk = self._live()
        if walk is None:
            raise AttributeError("a lazy image outside its call has no obj")
        raise walk.escape("the checker took image.obj")

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not defined above. A protocol probe (numpy asks for
        # __array_interface__ before the buffer protocol) finds nothing, as on a memoryview;
        # any other name is something this module cannot follow.
        walk = _current.walk
        if walk is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(f"a lazy image has no attribute {name!r}")
        raise walk.escape(f"the checker used image.{name}")

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        walk = _current.walk
        if walk is None:
            raise TypeError("a lazy image cannot be copied or pickled")
        raise walk.escape("the checker copied or pickled the image")


Judge = Callable[[Sequence[LazyImage]], "CheckOutcome | None"]


def walk(lines: LineChoices, image: Any, judge: Judge, budget: int) -> list[Leaf] | str:
    """Run the checker (``judge``) depth first over the contents of the lines it reads.

    ``lines`` are the crash point's changeable lines, all at their base content (digit 0)
    on entry; ``image`` the engine's image at the durable base. Returns the leaves in
    walk order, or the reason to explore the crash point eagerly instead (an escape,
    nondeterministic reads, or more than ``budget`` leaves). On return every line is
    back at its base content. Runtime: one checker run per leaf plus O(lines read) each.
    """
    if not AVAILABLE:  # pragma: no cover - see _make_base
        return "lazy images are not available on this Python"
    w = _Walk(lines, image, budget)
    base_hash = image.h
    leaves: list[Leaf] = []
    count = len(image.sizes)
    try:
        while True:
            w.run += 1
            w.depth, w.product = 0, 1
            views = [LazyImage(w, f, 0, image.sizes[f], True) for f in range(count)]
            previous, _current.walk = _current.walk, w
            outer = _live.get(id(image))
            _live[id(image)] = w
            try:
                outcome = judge(views)
            except Escaped:
                outcome = None
                w.escape("the checker could not be followed")
            finally:
                _current.walk = previous
                if outer is None:
                    _live.pop(id(image), None)
                else:
                    _live[id(image)] = outer
            if w.interrupt is not None:
                raise w.interrupt
            if w.escaped is None and w.depth < w.forced:
                w.escape("the checker's reads differ between runs with the same choices")
            if w.changing:  # the next runs would read a line whose content is not its digit's
                w.escape("a line change was cut short inside the checker's call (a timeout)")
            if w.escaped is not None:
                return w.escaped
            leaves.append(Leaf(tuple((j, v) for j, v in w.path), outcome))
            if not w.advance():
                return leaves
            if len(leaves) >= budget:
                return f"more than {budget} lazy states"
    finally:
        # Every line back to its base content by writing it, not by undoing digits: a timeout
        # raised inside the checker may have cut a line change short (digits out of step).
        for j, values in enumerate(lines.values):
            image.set_line(lines.fidx[j], lines.start[j], values[0], 0)
            lines.digits[j] = 0
        image.h = base_hash
