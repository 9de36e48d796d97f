"""The crash image under exploration: one buffer per file, changed in place, with an incremental hash.

Theory of operation
-------------------
An :class:`Image` holds the content of every file of a log, positioned at some durable
base. Engines change it one atom (``push``/``pop``) or one 64-byte line (``set_line``)
at a time, so building a crash state costs O(bytes changed), never a copy of a file.

The image carries a 128-bit hash, maintained incrementally: the sum over 64-byte lines
of blake2b(file, line, content), minus the same sum for the initial image (so the
initial image hashes to 0). It identifies images across epochs and processes
(deduplication, verdict caching) without ever hashing a whole file; the line is the
unit because it is the model's unit of order (:data:`~pmemsim.persistence.model.ORDER_UNIT`).

Checkers read the image through :attr:`Image.views`: read-only views of a second,
read-only mapping of the same memory (a ``memfd``), so nothing a checker does with its
argument (``image.obj`` included) can write into the states explored after it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterable, Mapping, Sequence

try:  # CPython's own blake2b: hashlib would first load OpenSSL (milliseconds per replay)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b

from pmemsim._files import InputFileError, read_regular_file
from pmemsim.persistence.log import LogError, Store, StoreLog
from pmemsim.persistence.model import ORDER_UNIT, Atom

__all__ = ["Image", "initial_images", "line_hash"]

_MASK = (1 << 128) - 1
_KEY = struct.Struct("<IQ").pack
_UNIT = ORDER_UNIT
#: Line hashes an Image remembers before starting over (a few hundred bytes each).
_HASH_CACHE = 1 << 14


def line_hash(fidx: int, l0: int, value: bytes) -> int:
    """The hash contribution of ``value`` in the line starting at ``l0`` of file ``fidx``."""
    return int.from_bytes(blake2b(_KEY(fidx, l0) + value, digest_size=16).digest(), "little")


class _Buffer:
    """One file's bytes: a writable mapping of a memfd and a read-only mapping of the same pages.

    Where no memfd can be had (a file system faked by pyfakefs patches ``os.ftruncate``), the
    bytes live in a ``bytearray`` and checkers get a read-only view of it.
    """

    def __init__(self, content: bytes) -> None:
        self.fd = -1
        self.rw: mmap.mmap | bytearray
        self.ro: mmap.mmap | None = None
        if content:
            try:
                self.fd = os.memfd_create("pmemsim-image", os.MFD_CLOEXEC)
                os.ftruncate(self.fd, len(content))
                self.rw = mmap.mmap(self.fd, len(content), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                self.ro = mmap.mmap(self.fd, len(content), mmap.MAP_SHARED, mmap.PROT_READ)
            except (AttributeError, OSError):
                if self.fd >= 0:
                    os.close(self.fd)
                self.fd = -1
        if self.ro is None:
            self.rw = bytearray(content)
            self.view = memoryview(self.rw).toreadonly()
        else:
            self.rw[:] = content
            self.view = memoryview(self.ro)

    def close(self) -> None:
        """Unmap and close (views a checker kept stay valid until they are released)."""
        self.view.release()
        if self.ro is not None:
            with contextlib.suppress(BufferError):  # a checker kept a view: the mapping goes with it
                self.ro.close()
            assert isinstance(self.rw, mmap.mmap)
            self.rw.close()
            os.close(self.fd)
            self.ro, self.fd = None, -1


class Image:
    """File images at a durable base, with undoable changes and an incremental hash.

    Runtime: O(atom size) per push/pop, O(line) per set_line, O(changed lines) per
    :meth:`make_durable`; :meth:`_check` is O(file sizes).
    """

    def __init__(self, sizes: Sequence[int], initial: Sequence[bytes]) -> None:
        self.sizes = tuple(sizes)
        self.initial = tuple(initial)
        self._buffers = [_Buffer(bytes(img)) for img in initial]
        self.bufs = [b.rw for b in self._buffers]
        #: Read-only views of the current content, one per file (what checkers get).
        self.views = [b.view for b in self._buffers]
        self.h = 0
        # Line hashes by (file, line, content): a line's old content was almost always hashed
        # when it was written, so a push mostly costs one blake2b or none.
        self.hashes: dict[tuple[int, int, bytes], int] = {}
        self.stack: list[tuple[Atom, int, bytes, int]] = []

    def close(self) -> None:
        """Release the memory (the image cannot be used afterwards)."""
        for b in self._buffers:
            b.close()

    # -- lines -------------------------------------------------------------------------------
    def read(self, fidx: int, lo: int, hi: int) -> bytes:
        """The current bytes ``[lo, hi)`` of file ``fidx``."""
        return bytes(self.bufs[fidx][lo:hi])

    def line_hash(self, fidx: int, l0: int, value: bytes) -> int:
        """The (cached) hash contribution of ``value`` in the line at ``l0`` of file ``fidx``."""
        key = (fidx, l0, value)
        h = self.hashes.get(key)
        if h is None:
            if len(self.hashes) >= _HASH_CACHE:
                self.hashes.clear()
            h = self.hashes[key] = line_hash(fidx, l0, value)
        return h

    def set_line(self, fidx: int, l0: int, value: bytes, delta: int) -> None:
        """Overwrite the line at ``l0`` with ``value``; ``delta`` is its hash change (new minus old)."""
        self.bufs[fidx][l0 : l0 + len(value)] = value
        self.h = (self.h + delta) & _MASK

    # -- atoms -------------------------------------------------------------------------------
    def push(self, atom: Atom) -> None:
        """Apply ``atom`` on top of the current state (undone by :meth:`pop`)."""
        h = self.h
        fidx, off = atom.fidx, atom.offset
        buf = self.bufs[fidx]
        l0 = off - off % _UNIT
        l1 = min(l0 + _UNIT, self.sizes[fidx])
        old = bytes(buf[l0:l1])
        buf[off : off + len(atom.data)] = atom.data
        new = bytes(buf[l0:l1])
        if new != old:
            hashes = self.hashes
            h_new = hashes.get((fidx, l0, new))
            if h_new is None:
                h_new = self.line_hash(fidx, l0, new)
            h_old = hashes.get((fidx, l0, old))
            if h_old is None:
                h_old = self.line_hash(fidx, l0, old)
            self.h = (h + h_new - h_old) & _MASK
        self.stack.append((atom, l0, old, h))

    def pop(self) -> None:
        """Undo the last :meth:`push`."""
        atom, l0, old, h = self.stack.pop()
        self.bufs[atom.fidx][l0 : l0 + len(old)] = old
        self.h = h

    def unwind(self, depth: int = 0) -> None:
        """Undo pushes until ``depth`` remain."""
        while len(self.stack) > depth:
            self.pop()

    # -- the durable base --------------------------------------------------------------------
    def make_durable(self, atoms: Iterable[Atom]) -> None:
        """Write ``atoms`` (in program order) into the base: no undo, each touched line hashed once."""
        bufs, sizes = self.bufs, self.sizes
        before: dict[tuple[int, int], bytes] = {}
        for atom in atoms:
            fidx, off, data = atom.fidx, atom.offset, atom.data
            buf = bufs[fidx]
            key = (fidx, off - off % _UNIT)
            if key not in before:
                l0 = key[1]
                before[key] = bytes(buf[l0 : min(l0 + _UNIT, sizes[fidx])])
            buf[off : off + len(data)] = data
        self._rehash(before)

    def apply_stores(self, log: StoreLog, lo: int, hi: int) -> None:
        """Write the stores of records ``lo .. hi-1`` into the base (all durable: a quiescent point)."""
        bufs, sizes, fidx_of = self.bufs, self.sizes, {k: i for i, k in enumerate(log.files)}
        before: dict[tuple[int, int], bytes] = {}
        for rec in log.records[lo:hi]:
            if isinstance(rec, Store):
                fidx, off, data = fidx_of[rec.file], rec.offset, rec.data
                buf = bufs[fidx]
                for l0 in range(off - off % _UNIT, off + len(data), _UNIT):
                    if (fidx, l0) not in before:
                        before[fidx, l0] = bytes(buf[l0 : min(l0 + _UNIT, sizes[fidx])])
                buf[off : off + len(data)] = data
        self._rehash(before)

    def _rehash(self, before: dict[tuple[int, int], bytes]) -> None:
        h = self.h
        for (fidx, l0), old in before.items():
            new = bytes(self.bufs[fidx][l0 : l0 + len(old)])
            if new != old:
                h += self.line_hash(fidx, l0, new) - self.line_hash(fidx, l0, old)
        self.h = h & _MASK

    def _check(self) -> None:
        """Assert that the incremental hash matches the image (tests call this). Runtime: O(file sizes)."""
        total = 0
        for fidx, (buf, init) in enumerate(zip(self.bufs, self.initial, strict=True)):
            for l0 in range(0, len(buf), _UNIT):
                cur, old = bytes(buf[l0 : l0 + _UNIT]), init[l0 : l0 + _UNIT]
                if cur != old:
                    total += line_hash(fidx, l0, cur) - line_hash(fidx, l0, old)
        assert total & _MASK == self.h, "image hash out of sync with the image"


def _read_image(key: str, source: bytes | str | os.PathLike[str], size: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            data = read_regular_file(source, size, f"the initial image of file {key!r}", prefix=True)
        except InputFileError as exc:
            raise LogError(str(exc)) from None
        except OSError as exc:
            raise LogError(
                f"cannot read the initial image of file {key!r} from {os.fspath(source)!r}: "
                f"{exc.strerror or exc}"
            ) from exc
    if len(data) < size:
        raise LogError(f"initial image of file {key!r} is {len(data)} bytes, the log needs {size}")
    return data[:size]


def initial_images(
    log: StoreLog, images: Mapping[str, bytes | str | os.PathLike[str]] | None = None
) -> tuple[bytes, ...]:
    """The durable content of every file of ``log`` when recording started, in ``log.files`` order.

    ``images`` overrides by key (bytes or a path); otherwise ``FileInfo.initial``, else the
    file at ``FileInfo.path``, else zeros when the file has no path. Raises LogError for an
    unreadable, non-regular or too short image, or an override for an unknown key.
    """
    images = dict(images or {})
    unknown = set(images) - set(log.files)
    if unknown:
        raise LogError(f"images given for files the log does not register: {sorted(unknown)}")
    out = []
    for key, info in log.files.items():
        if key in images:
            out.append(_read_image(key, images[key], info.size))
        elif info.initial is not None:
            out.append(info.initial)
        elif info.path is not None:
            out.append(_read_image(key, info.path, info.size))
        else:
            out.append(bytes(info.size))
    return tuple(out)
