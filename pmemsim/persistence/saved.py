"""pmemsim's own store-log file: a JSON document that keeps what the pmemcheck format loses.

A pmemcheck log (:mod:`~pmemsim.persistence.pmemcheck`) names files by path only, so a
replay reads each file's *current* content as the image before the first store -- right
when the file was restored to a pristine copy, wrong after the program ran. A saved log
keeps every file's content as it was when recording started (``FileInfo.initial``),
the store granularity that picks the persistency model, and every record exactly::

    {"format": "pmemsim-store-log", "version": 1, "granularity": "CACHE_LINE", "page_size": 4096,
     "files": [{"key": "/pool", "path": "/pool", "size": 4096, "base": null, "initial": "<base64>"}],
     "records": [{"op": "store", "file": "/pool", "offset": 64, "data": "7265636f7264",
                  "addr": 139637976727616, "location": "app.py:12", "nontemporal": false},
                 {"op": "flush", "file": "/pool", "offset": 64, "length": 64},
                 {"op": "fence"}, {"op": "marker", "name": "TX.BEGIN"}]}

:func:`save_log` writes it, :func:`load_log` reads it back (an equal :class:`StoreLog`)
and :func:`read_log` reads either format, telling them apart by the first character
(``{``).

Reading is defensive, since a log may come from anywhere: only regular files are read
(a FIFO or ``/dev/zero`` is refused before reading) and at most ``max_bytes`` of them;
JSON nested deeper than Python can parse, numbers of thousands of digits and text that
is not UTF-8 are refused; every value is type- and range-checked before anything is
built from it (sizes and offsets up to :data:`~pmemsim.persistence.pmemcheck.MAX_FILE_SIZE`,
addresses below 2^64, ``page_size`` a power of two up to 1 GiB). Every problem raises
:class:`~pmemsim.persistence.log.LogError` with one line naming the file, the record
and the key; values are quoted shortened.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
from typing import Any

from pmemsim.enums import Granularity
from pmemsim.persistence.log import Fence, FileInfo, Flush, LogError, Marker, Record, Store, StoreLog
from pmemsim.persistence.pmemcheck import (
    MAX_FILE_SIZE,
    MAX_LOG_BYTES,
    _read_regular_file,
    _stream_bytes,
    read_pmemcheck_file,
)

__all__ = ["FORMAT", "VERSION", "dumps_log", "load_log", "loads_log", "read_log", "save_log"]

FORMAT = "pmemsim-store-log"
VERSION = 1

_ADDRESS_LIMIT = 1 << 64
_MAX_PAGE_SIZE = 1 << 30


def _clip(text: str, limit: int = 300) -> str:
    """``text`` on one line, its middle cut to keep ``limit`` characters (quoted values may be huge)."""
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[: limit * 2 // 3] + " ... " + text[-(limit // 3) :]


def _show(value: object) -> str:
    """A short, one-line description of a JSON value for an error message."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        text = str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
        return text
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    return type(value).__name__


def _record_json(rec: Record) -> dict[str, Any]:
    if isinstance(rec, Store):
        out: dict[str, Any] = {"op": "store", "file": rec.file, "offset": rec.offset, "data": rec.data.hex()}
        if rec.addr is not None:
            out["addr"] = rec.addr
        if rec.location is not None:
            out["location"] = rec.location
        if rec.nontemporal:
            out["nontemporal"] = True
        if rec.frames:
            out["frames"] = list(rec.frames)
        return out
    if isinstance(rec, Flush):
        out = {"op": "flush", "file": rec.file, "offset": rec.offset, "length": rec.length}
        if rec.addr is not None:
            out["addr"] = rec.addr
        return out
    if isinstance(rec, Fence):
        return {"op": "fence"}
    if rec.data is None:
        return {"op": "marker", "name": rec.name}
    return {"op": "marker", "name": rec.name, "data": rec.data}


def dumps_log(log: StoreLog) -> str:
    """``log`` as saved-log JSON text.

    Raises LogError for records outside their files, or marker data that is not plain JSON.
    """
    log.validate()
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "granularity": log.granularity.name if log.granularity is not None else None,
        "page_size": log.page_size,
        "files": [
            {
                "key": info.key,
                "path": info.path,
                "size": info.size,
                "base": info.base,
                "initial": base64.b64encode(info.initial).decode("ascii")
                if info.initial is not None
                else None,
            }
            for info in log.files.values()
        ],
        "records": [_record_json(rec) for rec in log.records],
    }
    try:
        return json.dumps(doc, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise LogError(f"cannot save the log: a marker's data is not plain JSON ({exc})") from None


def save_log(log: StoreLog, path: str | os.PathLike[str]) -> None:
    """Write ``log`` to ``path`` in the saved-log format (see the module docstring)."""
    text = dumps_log(log)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class _Reader:
    """Typed access to one JSON object, with errors naming where it is."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise LogError(f"{where}: expected an object, got {type(data).__name__}")
        self.data = data
        self.where = where

    def _get(self, key: str, types: type | tuple[type, ...], what: str, default: object = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise LogError(f"{self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise LogError(f"{self.where}.{key}: expected {what}, got {_show(value)}")
        return value

    def integer(self, key: str, default: object = ..., limit: int = MAX_FILE_SIZE) -> Any:
        """An int in ``[0, limit]`` (``default`` when missing; None allowed when the default is None)."""
        value = self._get(
            key, (int, type(None)) if default is None else int, "a non-negative integer", default
        )
        if value is not None and not 0 <= value <= limit:
            raise LogError(f"{self.where}.{key}: expected an integer in [0, {limit:#x}], got {_show(value)}")
        return value

    def address(self, key: str) -> Any:
        """An optional process address (below 2^64)."""
        return self.integer(key, None, _ADDRESS_LIMIT - 1)

    def text(self, key: str, default: object = ...) -> Any:
        return self._get(key, (str, type(None)) if default is None else str, "a string", default)

    def flag(self, key: str) -> bool:
        return bool(self._get(key, bool, "true or false", False))


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _hex_bytes(r: _Reader, key: str) -> bytes:
    text = r.text(key)
    if len(text) > 2 * MAX_FILE_SIZE:
        raise LogError(f"{r.where}.{key}: more than {MAX_FILE_SIZE:#x} bytes of data")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise LogError(f"{r.where}.{key}: expected hexadecimal bytes, got {_show(text)}") from None


def _path(r: _Reader, key: str) -> Any:
    path = r.text(key, None)
    if path is not None:
        if "\0" in path:
            raise LogError(f"{r.where}.{key}: a path cannot contain a NUL character")
        try:
            os.fsencode(path)
        except UnicodeEncodeError:
            raise LogError(f"{r.where}.{key}: {_show(path)} cannot be a file name on this system") from None
    return path


def _parse_record(data: object, where: str) -> Record:
    r = _Reader(data, where)
    op = r.text("op")
    try:
        if op == "store":
            frames = r._get("frames", list, "a list of strings", [])
            if not all(isinstance(f, str) for f in frames):
                raise LogError(f"{where}.frames: expected a list of strings")
            return Store(
                r.text("file"),
                r.integer("offset"),
                _hex_bytes(r, "data"),
                r.address("addr"),
                r.text("location", None),
                r.flag("nontemporal"),
                tuple(frames),
            )
        if op == "flush":
            return Flush(r.text("file"), r.integer("offset"), r.integer("length"), r.address("addr"))
        if op == "fence":
            return Fence()
        if op == "marker":
            return Marker(r.text("name"), data.get("data") if isinstance(data, dict) else None)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, LogError):
            raise
        raise LogError(f"{where}: {_clip(str(exc))}") from None
    raise LogError(f"{where}.op: unknown record type {_show(op)} (expected store, flush, fence or marker)")


def _parse_file(data: object, where: str) -> FileInfo:
    r = _Reader(data, where)
    key, path, size, base = r.text("key"), _path(r, "path"), r.integer("size"), r.address("base")
    initial_text = r.text("initial", None)
    initial = None
    if initial_text is not None:
        # Checked before decoding: the image must be exactly ``size`` bytes.
        if len(initial_text) != 4 * -(-size // 3):
            raise LogError(f"{where}.initial: {len(initial_text)} base64 characters cannot hold {size} bytes")
        try:
            initial = base64.b64decode(initial_text, validate=True)
        except (binascii.Error, ValueError):
            raise LogError(f"{where}.initial: not valid base64") from None
    try:
        return FileInfo(key, path, size, initial, base)
    except (TypeError, ValueError) as exc:
        raise LogError(f"{where}: {_clip(str(exc))}") from None


def loads_log(text: str, name: str = "<saved log>") -> StoreLog:
    """Parse saved-log JSON text; LogError naming ``name``, the record and the key on any problem.

    Runtime: linear in the length of ``text``.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LogError(f"{name}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        # The C decoder recurses per nesting level; a saved log nests four levels deep.
        raise LogError(f"{name}: not a pmemsim store log (JSON nested too deeply to parse)") from None
    except ValueError as exc:  # an integer of more digits than Python converts, bad bytes
        problem = "a JSON number has thousands of digits" if "digits" in str(exc) else _clip(str(exc), 120)
        raise LogError(f"{name}: not a pmemsim store log ({problem})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LogError(f'{name}: not a pmemsim store log (missing "format": {FORMAT!r})')
    if data.get("version") != VERSION:
        raise LogError(
            f"{name}: store-log version {_show(data.get('version'))} is not supported (expected {VERSION})"
        )
    top = _Reader(data, name)
    gran_name = top.text("granularity", None)
    granularity = None
    if gran_name is not None:
        try:
            granularity = Granularity[gran_name]
        except KeyError:
            known = ", ".join(g.name for g in Granularity)
            raise LogError(
                f"{name}.granularity: unknown granularity {_show(gran_name)} (one of {known})"
            ) from None
    page_size = top.integer("page_size", 4096, _MAX_PAGE_SIZE)
    if page_size < 1 or page_size & (page_size - 1):
        raise LogError(f"{name}.page_size: expected a power of two <= {_MAX_PAGE_SIZE:#x}, got {page_size}")
    files = top._get("files", list, "a list of files")
    records = top._get("records", list, "a list of records")
    log = StoreLog(granularity=granularity, page_size=page_size)
    for i, f in enumerate(files):
        info = _parse_file(f, f"{name}: files[{i}]")
        if info.key in log.files:
            raise LogError(f"{name}: files[{i}]: file key {info.key!r} appears twice")
        log.add_file(info)
    log.records = [_parse_record(rec, f"{name}: records[{i}]") for i, rec in enumerate(records)]
    try:
        log.validate()
    except LogError as exc:
        raise LogError(f"{name}: {_clip(str(exc))}") from None
    return log


def load_log(path: str | os.PathLike[str], *, max_bytes: int = MAX_LOG_BYTES) -> StoreLog:
    """:func:`loads_log` on the content of ``path``.

    Raises OSError if it cannot be opened or read; LogError if it is not a regular file,
    has more than ``max_bytes`` bytes, is not UTF-8 or is malformed.
    """
    return _loads_saved_bytes(_read_regular_file(path, max_bytes), os.fspath(path))


def _loads_saved_bytes(data: bytes, name: str) -> StoreLog:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LogError(f"{name}: not UTF-8 text (byte {exc.start}): not a pmemsim store log") from None
    return loads_log(text, name)


def read_log(
    path: str | os.PathLike[str], *, allow_truncated: bool = False, max_bytes: int = MAX_LOG_BYTES
) -> StoreLog:
    """A store log from ``path``: a saved log (JSON, starting with ``{``) or a pmemcheck log.

    ``allow_truncated`` applies to pmemcheck logs without STOP. A pmemcheck log is parsed
    as it is read (memory for the log, not for its text). Raises OSError when the file
    cannot be opened or read, LogError when it is not a regular file or has more than
    ``max_bytes`` bytes, LogError (PmemcheckFormatError for pmemcheck logs) when it is
    malformed; may warn with :class:`~pmemsim.persistence.pmemcheck.LogWarning`.
    """
    chunks = _stream_bytes(path, max_bytes)
    head: list[bytes] = []
    for chunk in chunks:  # up to the first byte that is not white space: '{' is a saved log
        head.append(chunk)
        if chunk.strip():
            break
    if b"".join(head).lstrip().startswith(b"{"):
        head.extend(chunks)
        return _loads_saved_bytes(b"".join(head), os.fspath(path))
    # pmemcheck logs name files by path, and paths may hold any bytes: keep them all.
    return read_pmemcheck_file(path, allow_truncated=allow_truncated, chunks=itertools.chain(head, chunks))
