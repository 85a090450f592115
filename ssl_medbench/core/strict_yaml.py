"""Strict YAML for grid files and ``--set`` values: plain data only, every surprise refused with its line.

PyYAML's safe loader never builds Python objects, but it silently keeps the last of two duplicate
keys, expands aliases (so a recursive or exponentially growing "billion laughs" document can hang or
exhaust memory), reads ``2024-01-01`` as a date and accepts tags such as ``!!binary`` or ``!!set``.
This loader refuses all of these where they appear, before anything is expanded or constructed:
anchors and aliases, merge keys (``<<``), explicit tags other than the core schema's plain ones,
duplicate and non-string mapping keys, and nesting deeper than :data:`MAX_DEPTH`. Files must be
UTF-8 text of at most :data:`MAX_BYTES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ssl_medbench.core.errors import ConfigError

#: Largest grid file read, in bytes (a grid is a few kB).
MAX_BYTES = 256 * 1024
#: Deepest nesting of lists and mappings accepted.
MAX_DEPTH = 32
#: Explicit tags allowed: the plain scalars, lists and mappings of the YAML core schema.
PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))
_MERGE = "tag:yaml.org,2002:merge"
#: Implicit resolvers dropped: dates stay strings, "=" stays a string (PyYAML's "value" tag has no constructor).
_DROPPED = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}


class _Refused(yaml.MarkedYAMLError):
    """A construct the strict loader does not accept, with where it starts."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem=problem, problem_mark=mark)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, anchors, merge keys, unusual tags, duplicate or non-string keys, or deep nesting."""

    yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                f"alias *{event.anchor}: anchors and aliases are not supported, write the value out", event.start_mark
            )
        if event.anchor is not None:
            raise _Refused(
                f"anchor &{event.anchor}: anchors and aliases are not supported, write the value out", event.start_mark
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in PLAIN_TAGS:
            raise _Refused(
                f"tag {tag}: only plain strings, numbers, booleans, null, lists and mappings", event.start_mark
            )
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                raise _Refused("merge key <<: not supported, write the keys out", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _Refused(f"key {key!r} is not a string", key_node.start_mark)
            if key in first_line:
                raise _Refused(f"duplicate key {key!r} (first on line {first_line[key]})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def describe_yaml_error(error: Exception) -> str:
    """One line: ``line L, column C: problem`` for PyYAML's marked errors, else the message with whitespace collapsed."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = " ".join(f"{error.context or ''} {error.problem or ''}".split())
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(error).split())


def load_strict(text: str, source: str) -> Any:
    """The plain data of one YAML document; ConfigError ``<source>: line L, column C: problem`` otherwise."""
    try:
        loader = StrictLoader(text)  # the reader refuses control characters here
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer too long to convert
        raise ConfigError(f"{source}: not valid grid YAML: {describe_yaml_error(error)}") from None


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a small regular file; ConfigError naming ``path`` if it is missing, too big or not text."""
    if not path.exists():
        raise ConfigError(f"{path}: {what} does not exist")
    if not path.is_file():
        raise ConfigError(f"{path}: {what} is not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {what} is {size} bytes; expected a YAML file of at most {MAX_BYTES} bytes")
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what}: {error.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: {what} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None
