"""Reading YAML files strictly, and the checks every file format here shares.

:func:`read_yaml` reads a file into plain data, rejecting duplicate keys, and turns every
problem (missing file, not UTF-8, invalid YAML with its line) into a :class:`ConfigError`
that names the file. :class:`Checker` holds the scalar and mapping checks whose messages name
the file and the key path; each schema (search space, nightly job) extends it with its sections.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mnist_sweep.errors import ConfigError

STUDY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_SEED = 2**32 - 1
_PLAIN_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable: the base class reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike[str]) -> tuple[str, str, Any]:
    """``(source, text, data)`` of the YAML file at ``path``; ConfigError naming the file otherwise."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    return source, text, parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as YAML data; ConfigError with the line and column of a syntax error."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "cannot be parsed"
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", source=source) from None


def join_key(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top level: the key path error messages name."""
    return f"{path}.{key}" if path else key


def show(value: Any) -> str:
    """``value`` as an error message quotes it, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def kind_of(value: Any) -> str:
    """What ``value`` is, in words: ``null``, ``a mapping``, ``the string 'x'``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"the string {show(value)}"
    return f"{type(value).__name__} {show(value)}"


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``did you mean 'x'? `` for the closest of ``options``, or nothing."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class Checker:
    """Validation with error messages that name ``source`` and the key path."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise ConfigError(message, source=self.source, key=path or None)

    def top_level(self, data: Any, *, allowed: Sequence[str], required: Sequence[str]) -> Mapping[str, Any]:
        """The file's top-level mapping, with only ``allowed`` keys and every ``required`` one."""
        if data is None:
            self.fail("", f"the file is empty; expected a mapping with at least {', '.join(required)}")
        if not isinstance(data, Mapping):
            self.fail("", f"the top level must be a mapping of keys to values, got {kind_of(data)}")
        return self.mapping(data, "", allowed=allowed, required=required)

    def integer(self, value: Any, path: str, *, minimum: float | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {kind_of(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be >= {minimum:g}, got {value}")
        return value

    def number(self, value: Any, path: str) -> float:
        """A finite float; a plain numeric string (PyYAML's ``1e-5``) is accepted."""
        if isinstance(value, bool):
            self.fail(path, f"must be a number, got {kind_of(value)}")
        if isinstance(value, str):
            if not _PLAIN_FLOAT.match(value.strip()):
                self.fail(path, f"must be a number, got {kind_of(value)}")
            value = value.strip()
        elif not isinstance(value, int | float):
            self.fail(path, f"must be a number, got {kind_of(value)}")
        try:
            result = float(value)
        except OverflowError:
            self.fail(path, f"must be a finite number, got {show(value)}")
        if not math.isfinite(result):
            self.fail(path, f"must be a finite number, got {show(value)}")
        return result

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {kind_of(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {kind_of(value)}")
        return value

    def mapping(
        self, value: Any, path: str, *, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {kind_of(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {kind_of(key)}")
            if key not in allowed:
                self.fail(
                    join_key(path, key),
                    f"unknown key {key!r}; {did_you_mean(key, allowed)}allowed: {', '.join(allowed)}",
                )
        for key in required:
            if key not in value:
                self.fail(join_key(path, key), "required key is missing")
        return value

    def positive_seconds(self, value: Any, path: str) -> float:
        seconds = self.number(value, path)
        if seconds <= 0:
            self.fail(path, f"must be > 0 seconds, got {show(value)}")
        return seconds

    def seed(self, value: Any, path: str) -> int:
        seed = self.integer(value, path, minimum=0)
        if seed > MAX_SEED:
            self.fail(path, f"must be <= {MAX_SEED} (2**32 - 1), got {seed}")
        return seed

    def study_name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not STUDY_NAME.match(value):
            hint = " (quote it in YAML)" if isinstance(value, int | float) and not isinstance(value, bool) else ""
            self.fail(
                path,
                f"must be 1-128 letters, digits, '_', '.' or '-', got {kind_of(value)}{hint}",
            )
        return value
