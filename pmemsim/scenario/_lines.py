"""Where each key of a TOML document is written: key path → line number.

``tomllib`` gives values, not positions. This scanner walks a document that
``tomllib`` already accepted and records the line of every key, table header,
array-of-tables element and array item, as the key paths the schema validator
reports (``("steps", 2, "expect")``). It interprets no value: strings, numbers and
dates are only skipped over, so it stays small and cannot disagree with ``tomllib``
about what a value is.

Runtime complexity: O(len(text)).
"""

from __future__ import annotations

from pmemsim.scenario._schema import KeyPath

__all__ = ["key_lines", "line_of"]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.aot: dict[KeyPath, int] = {}  # array-of-tables path -> index of its last element

    # -- characters --------------------------------------------------------------------------

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i < len(self.s):
                if self.s[self.i] == "\n":
                    self.line += 1
                self.i += 1

    def skip_blank(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def record(self, path: KeyPath) -> None:
        self.lines.setdefault(path, self.line)

    # -- keys and strings ------------------------------------------------------------------------

    def string(self) -> str:
        """Consume a string of any of TOML's four kinds; return its text (escapes kept raw)."""
        for quote in ('"""', "'''"):
            if self.s.startswith(quote, self.i):
                self.advance(3)
                start = self.i
                while self.i < len(self.s) and not self.s.startswith(quote, self.i):
                    self.advance(2 if quote == '"""' and self.peek() == "\\" else 1)
                text = self.s[start : self.i]
                self.advance(3)
                while self.peek() == quote[0]:  # up to two quotes may close a multi-line string
                    self.advance()
                return text
        quote = self.peek()
        self.advance()
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in (quote, "\n"):
            self.advance(2 if quote == '"' and self.s[self.i] == "\\" else 1)
        text = self.s[start : self.i]
        self.advance()
        return text

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.i
                while self.i < len(self.s) and self.s[self.i] in _BARE:
                    self.i += 1
                parts.append(self.s[start : self.i])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def resolve(self, keys: tuple[str, ...]) -> KeyPath:
        """A header's key path with the current index of every array of tables on the way."""
        path: KeyPath = ()
        for k in keys:
            path = (*path, k)
            if path in self.aot:
                path = (*path, self.aot[path])
        return path

    # -- values ------------------------------------------------------------------------------------

    def value(self, path: KeyPath) -> None:
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.advance()
            index = 0
            while True:
                self.skip_blank(newlines=True)
                if self.peek() in ("]", ""):
                    self.advance()
                    return
                self.record((*path, index))
                self.value((*path, index))
                self.skip_blank(newlines=True)
                if self.peek() == ",":
                    self.advance()
                    index += 1
        elif c == "{":
            self.advance()
            while True:
                self.skip_blank(newlines=False)
                if self.peek() in ("}", ""):
                    self.advance()
                    return
                self.keyval(path)
                self.skip_blank(newlines=False)
                if self.peek() == ",":
                    self.advance()
        else:
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1

    def keyval(self, table: KeyPath) -> None:
        path = (*table, *self.key())
        self.record(path)
        self.skip_blank(newlines=False)
        if self.peek() == "=":
            self.advance()
        self.skip_blank(newlines=False)
        self.value(path)

    # -- the document --------------------------------------------------------------------------------

    def document(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.i >= len(self.s):
                return self.lines
            if self.peek() == "[":
                array = self.peek(1) == "["
                self.advance(2 if array else 1)
                keys = self.key()
                self.advance(2 if array else 1)
                if array:
                    parent = self.resolve(keys[:-1])
                    base = (*parent, keys[-1])
                    self.aot[base] = self.aot.get(base, -1) + 1
                    self.record(base)
                    table = (*base, self.aot[base])
                else:
                    table = self.resolve(keys)
                self.record(table)
            else:
                self.keyval(table)
            # Anything left on the line is a comment or the end of a value.
            while self.i < len(self.s) and self.s[self.i] != "\n":
                self.i += 1


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every key path of a valid TOML document to the (1-based) line that writes it."""
    return _Scanner(text).document()


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, else of its nearest ancestor that has one, else None."""
    for n in range(len(path), 0, -1):
        found = lines.get(path[:n])
        if found is not None:
            return found
    return None
