"""The core's side of recording: turn a set's memory operations into store-log records.

The set computes which file mappings an operation touches; this adapter names each
file once (its path, or ``<fd N>`` / ``<temporary N>``), registers it with the
recorder together with its content at that moment (the durable image), and emits
records in file offsets, so a log replays onto file images wherever the program had
them mapped. The persistence package is imported only when recording starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmemsim._files import OpenFile, file_contents
from pmemsim.addrspace.base import FileRef, Mapping
from pmemsim.enums import Granularity

if TYPE_CHECKING:
    from pmemsim.persistence.log import Recorder, StoreLog

Piece = tuple[Mapping, int, int]  # (mapping, offset inside it, length)


class SetRecording:
    """One ``with pset.record():`` block: file keys and the recorder they feed."""

    def __init__(self, granularity: Granularity | None, page_size: int) -> None:
        from pmemsim.persistence.log import Recorder, caller_location

        self.recorder: Recorder = Recorder(granularity=granularity, page_size=page_size)
        self._where = caller_location
        self._keys: dict[int, tuple[FileRef, str]] = {}
        self._temporaries = 0

    @property
    def log(self) -> StoreLog:
        """The log recorded so far."""
        return self.recorder.log

    def _key(self, file: FileRef) -> str:
        known = self._keys.get(id(file))
        if known is not None and known[0] is file:
            key = known[1]
        elif file.path is not None:
            key = file.path
        elif isinstance(file, OpenFile) and file.label is not None:
            key = file.label
        else:
            self._temporaries += 1
            key = f"<temporary {self._temporaries}>"
        if known is None or known[0] is not file:
            self._keys[id(file)] = (file, key)
            content = file_contents(file) if isinstance(file, OpenFile) else None
            size = len(content) if content is not None else 0
            self.recorder.register_file(key, file.path, size, content)
        return key

    def track(self, mapping: Mapping) -> None:
        """Register (or re-register, if it grew) the file behind a new mapping."""
        known = self._keys.get(id(mapping.file))
        if known is None or known[0] is not mapping.file:
            self._key(mapping.file)
            return
        info = self.recorder.log.files[known[1]]
        needed = mapping.file_offset + mapping.length
        if needed > info.size:
            self.recorder.register_file(known[1], info.path, needed, None)

    def store(self, pieces: list[Piece], data: bytes, *, nontemporal: bool = False) -> None:
        """Record the stores of ``data`` over ``pieces``."""
        where = self._where()
        pos = 0
        for m, off, n in pieces:
            self.recorder.store(
                self._key(m.file),
                m.file_offset + off,
                data[pos : pos + n],
                addr=m.addr + off,
                location=where,
                nontemporal=nontemporal,
            )
            pos += n

    def flush(self, pieces: list[Piece]) -> None:
        """Record flushes of ``pieces``."""
        for m, off, n in pieces:
            self.recorder.flush(self._key(m.file), m.file_offset + off, n, addr=m.addr + off)

    def fence(self) -> None:
        """Record a fence."""
        self.recorder.fence()

    def mark(self, name: str, data: object = None) -> None:
        """Record a user marker, with the data a checker sees as ``ctx.data``."""
        self.recorder.mark(name, data)
