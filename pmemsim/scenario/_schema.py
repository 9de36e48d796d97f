"""A validator for the subset of JSON Schema (2020-12) that ``schema.json`` uses.

``jsonschema`` is not a dependency, and its messages would not speak TOML anyway. The
schema file stays the single source of truth: keys, types, enums and patterns come
from it, and this module refuses a schema keyword it does not implement (so the file
cannot silently mean more than is checked).

Supported: ``type``, ``properties``, ``required``, ``additionalProperties`` (bool or
schema), ``propertyNames``, ``items``, ``minItems``, ``uniqueItems``, ``enum``,
``const``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``minLength``, ``maxLength``,
``pattern``,
``anyOf``, ``oneOf`` and local ``$ref`` (``#/$defs/NAME``). A ``oneOf`` whose branches
all pin ``properties.op.const`` is validated as a tagged union: the branch named by
``op`` is the only one tried, so its messages are precise.

Runtime complexity: linear in the size of the document times the schema's depth.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Issue", "KeyPath", "SchemaValidator", "format_path"]

KeyPath = tuple[str | int, ...]

# Keywords that only annotate.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default", "examples"})
_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "items",
        "minItems",
        "uniqueItems",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "minLength",
        "maxLength",
        "pattern",
        "anyOf",
        "oneOf",
        "$ref",
        "$defs",
    }
)

# What each JSON type is called in a TOML file.
_TYPE_WORDS = {
    "object": "a table",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
}


@dataclass(frozen=True)
class Issue:
    """One problem: where (a key path into the document) and what was expected."""

    path: KeyPath
    message: str


def format_path(path: KeyPath) -> str:
    """``("steps", 2, "expect")`` → ``"steps[2].expect"`` (``"(top level)"`` for ``()``)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _type_of(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # TOML dates and times


def _shown(value: object) -> str:
    kind = _type_of(value)
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_TYPE_WORDS.get(kind, kind).split(' (')[0]} {text}"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choices(values: list[Any]) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


class SchemaValidator:
    """Validate documents against one schema: ``list(validator.issues(doc))``.

    Raises ValueError at construction for a schema that uses an unsupported keyword or
    a ``$ref`` that does not resolve.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._check_schema(schema, "#")

    # -- the schema itself ----------------------------------------------------------------

    def _check_schema(self, node: object, where: str) -> None:
        if not isinstance(node, Mapping):
            raise ValueError(f"schema {where}: expected an object, got {type(node).__name__}")
        for key, sub in node.items():
            if key in _ANNOTATIONS or key.startswith("x-"):
                continue
            if key not in _KEYWORDS:
                raise ValueError(f"schema {where}: keyword {key!r} is not supported by this validator")
            if key in ("properties", "$defs"):
                for name, s in sub.items():
                    self._check_schema(s, f"{where}/{key}/{name}")
            elif key in ("items", "propertyNames") or (
                key == "additionalProperties" and isinstance(sub, dict)
            ):
                self._check_schema(sub, f"{where}/{key}")
            elif key in ("anyOf", "oneOf"):
                for i, s in enumerate(sub):
                    self._check_schema(s, f"{where}/{key}/{i}")
            elif key == "$ref":
                self._resolve(sub)
            elif key == "pattern":
                re.compile(sub)

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix):
            raise ValueError(f"schema: only local '#/$defs/NAME' references are supported, got {ref!r}")
        defs = self.schema.get("$defs", {})
        name = ref[len(prefix) :]
        if name not in defs:
            raise ValueError(f"schema: $ref {ref!r} does not resolve")
        node: Mapping[str, Any] = defs[name]
        return node

    # -- describing what a schema expects -------------------------------------------------

    def describe(self, node: Mapping[str, Any]) -> str:
        """What a value must look like, in words (for 'expected ...' messages)."""
        if "$ref" in node:
            return self.describe(self._resolve(node["$ref"]))
        if "const" in node:
            return repr(node["const"])
        if "enum" in node:
            return "one of " + _choices(node["enum"])
        for key in ("anyOf", "oneOf"):
            if key in node:
                return " or ".join(self.describe(s) for s in node[key])
        kind = node.get("type")
        if kind is None:
            return "a value"
        text = _TYPE_WORDS.get(str(kind), str(kind))
        if "pattern" in node:
            text += " of the form " + node.get("description", node["pattern"])
        bounds = []
        if "minimum" in node:
            bounds.append(f">= {node['minimum']}")
        if "exclusiveMinimum" in node:
            bounds.append(f"> {node['exclusiveMinimum']}")
        if "maximum" in node:
            bounds.append(f"<= {node['maximum']}")
        if bounds:
            text += " " + " and ".join(bounds)
        return text

    # -- validation ---------------------------------------------------------------------------

    def issues(
        self, doc: object, node: Mapping[str, Any] | None = None, path: KeyPath = ()
    ) -> Iterator[Issue]:
        """Every problem of ``doc`` against the schema (or the sub-schema ``node``), in document order."""
        yield from self._check(doc, self.schema if node is None else node, path)

    def _check(self, value: object, node: Mapping[str, Any], path: KeyPath) -> Iterator[Issue]:
        if "$ref" in node:
            yield from self._check(value, self._resolve(node["$ref"]), path)
            return
        if "const" in node and value != node["const"]:
            yield Issue(path, f"expected {node['const']!r}, got {_shown(value)}")
            return
        if "enum" in node:
            yield from self._check_enum(value, node["enum"], path)
            return
        kind = node.get("type")
        if kind is not None and not self._type_ok(value, kind):
            yield Issue(path, f"expected {self.describe(node)}, got {_shown(value)}")
            return
        if "anyOf" in node:
            yield from self._check_any(value, node, node["anyOf"], path)
            return
        if "oneOf" in node:
            yield from self._check_one(value, node, node["oneOf"], path)
            return
        if isinstance(value, dict):
            yield from self._check_object(value, node, path)
        elif isinstance(value, list):
            yield from self._check_array(value, node, path)
        elif isinstance(value, str):
            if len(value) < node.get("minLength", 0):
                yield Issue(
                    path,
                    "expected a non-empty string"
                    if node["minLength"] == 1
                    else f"expected a string of at least {node['minLength']} characters",
                )
            elif len(value) > node.get("maxLength", len(value)):
                yield Issue(
                    path, f"expected a string of at most {node['maxLength']} characters, got {len(value)}"
                )
            elif "pattern" in node and not re.search(node["pattern"], value):
                yield Issue(path, f"expected {self.describe(node)}, got {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            # TOML has inf and nan; no size, count or time of a scenario means either.
            yield Issue(path, f"expected a finite number, got {value}")
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and self._out_of_bounds(value, node)
        ):
            yield Issue(path, f"expected {self.describe(node)}, got {value}")

    @staticmethod
    def _out_of_bounds(value: float, node: Mapping[str, Any]) -> bool:
        return bool(
            ("minimum" in node and value < node["minimum"])
            or ("maximum" in node and value > node["maximum"])
            or ("exclusiveMinimum" in node and value <= node["exclusiveMinimum"])
        )

    @staticmethod
    def _type_ok(value: object, kind: str) -> bool:
        actual = _type_of(value)
        return actual == kind or (kind == "number" and actual == "integer")

    def _check_enum(self, value: object, choices: list[Any], path: KeyPath) -> Iterator[Issue]:
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return
        if isinstance(value, str) and all(isinstance(c, str) for c in choices):
            yield Issue(
                path,
                f"unknown value {value!r}; expected one of: {_choices(choices)}"
                + _suggest(value, [str(c) for c in choices]),
            )
        else:
            yield Issue(path, f"expected one of: {_choices(choices)}; got {_shown(value)}")

    def _check_any(
        self, value: object, node: Mapping[str, Any], branches: list[Mapping[str, Any]], path: KeyPath
    ) -> Iterator[Issue]:
        results = [list(self._check(value, b, path)) for b in branches]
        if any(not r for r in results):
            return
        # A single branch of the right type explains the problem best.
        typed = [r for b, r in zip(branches, results, strict=True) if self._branch_accepts_type(value, b)]
        if len(typed) == 1:
            yield from typed[0]
            return
        what = node.get("description") or self.describe({"anyOf": branches})
        suggestion = ""
        if isinstance(value, str):
            words = [c for b in branches for c in self._resolved(b).get("enum", []) if isinstance(c, str)]
            suggestion = _suggest(value, words)
        yield Issue(path, f"expected {what}; got {_shown(value)}{suggestion}")

    def _resolved(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            node = self._resolve(node["$ref"])
        return node

    def _branch_accepts_type(self, value: object, branch: Mapping[str, Any]) -> bool:
        b = self._resolved(branch)
        if "type" in b:
            return self._type_ok(value, b["type"])
        if "enum" in b:
            return any(_type_of(c) == _type_of(value) for c in b["enum"])
        return False

    def _check_one(
        self, value: object, node: Mapping[str, Any], branches: list[Mapping[str, Any]], path: KeyPath
    ) -> Iterator[Issue]:
        tags = [self._resolved(b).get("properties", {}).get("op", {}).get("const") for b in branches]
        if all(isinstance(t, str) for t in tags) and isinstance(value, dict):
            # A tagged union on "op": validate against the branch it names.
            ops = [str(t) for t in tags]
            if "op" not in value:
                yield Issue(path, f"missing required key 'op'; expected one of: {_choices(ops)}")
                return
            op = value["op"]
            if op not in ops:
                yield Issue(
                    (*path, "op"),
                    f"unknown op {op!r}; expected one of: {_choices(ops)}"
                    + (_suggest(op, ops) if isinstance(op, str) else ""),
                )
                return
            yield from self._check(value, branches[ops.index(op)], path)
            return
        results = [list(self._check(value, b, path)) for b in branches]
        passing = sum(1 for r in results if not r)
        if passing == 1:
            return
        if passing == 0:
            yield Issue(path, f"expected {node.get('description') or self.describe({'oneOf': branches})}")
        else:
            yield Issue(path, "matches more than one alternative of the schema")

    def _check_object(self, value: dict[str, Any], node: Mapping[str, Any], path: KeyPath) -> Iterator[Issue]:
        props: Mapping[str, Any] = node.get("properties", {})
        for key in node.get("required", []):
            if key not in value:
                yield Issue(path, f"missing required key {key!r}")
        extra = node.get("additionalProperties", True)
        names = node.get("propertyNames")
        for key, sub in value.items():
            if names is not None:
                for issue in self._check(key, names, (*path, key)):
                    yield Issue(issue.path, f"key {key!r}: " + issue.message)
            if key in props:
                yield from self._check(sub, props[key], (*path, key))
            elif extra is False:
                where = f" in {format_path(path)}" if path else ""
                known = sorted(props)
                yield Issue(
                    (*path, key),
                    f"unknown key {key!r}{where}; expected one of: {', '.join(known)}" + _suggest(key, known),
                )
            elif isinstance(extra, Mapping):
                yield from self._check(sub, extra, (*path, key))

    def _check_array(self, value: list[Any], node: Mapping[str, Any], path: KeyPath) -> Iterator[Issue]:
        if len(value) < node.get("minItems", 0):
            yield Issue(path, f"expected at least {node['minItems']} item(s), got {len(value)}")
        if node.get("uniqueItems"):
            # By type and text, not ==: a set keeps this linear on a long hostile array, and
            # TOML's 1, 1.0 and true are different values.
            seen: set[tuple[str, str]] = set()
            for i, item in enumerate(value):
                ident = (_type_of(item), repr(item))
                if ident in seen:
                    yield Issue((*path, i), f"duplicate item {_shown(item)}")
                seen.add(ident)
        items = node.get("items")
        if items is not None:
            for i, item in enumerate(value):
                yield from self._check(item, items, (*path, i))
