"""The config system: YAML files validated by strict pydantic models, with `key=value` overrides.

Ground floor: imports nothing of tunesmith but its errors. Every command loads its config through `load_config`
and saves the resolved result with its output via `dump_config`. YAML is read with bounds (file size, aliases,
values after alias expansion), and every message that quotes input quotes a bounded preview of it.
"""

from __future__ import annotations

import difflib
import os
import reprlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tunesmith.errors import UsageError

M = TypeVar("M", bound=BaseModel)

# A real config is a page of YAML; these bounds are orders of magnitude above any, and far below what hurts.
MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_ALIASES = 10_000
MAX_YAML_VALUES = 1_000_000  # values (scalars, lists, mappings) the document holds once every alias is expanded
MAX_ERRORS_LISTED = 20
PREVIEW_CHARS = 80
_PREVIEW = reprlib.Repr()  # walks at most 3 levels and 6 items per container, so its cost is bounded
_PREVIEW.maxlevel, _PREVIEW.maxlong = 3, 40
_PREVIEW.maxlist = _PREVIEW.maxtuple = _PREVIEW.maxdict = _PREVIEW.maxset = 6
_PREVIEW.maxstring = _PREVIEW.maxother = PREVIEW_CHARS


def home_path(value: str | None) -> str | None:
    """A path setting with `~` expanded to the home folder, as model paths are: a shell expands `~` only at the start
    of a word, so `output_dir=~/x` on a command line (or in a YAML file) reaches tunesmith unexpanded."""
    return os.path.expanduser(value) if value and value.startswith("~") else value


class StrictModel(BaseModel):
    """Base of every config and artifact: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(UsageError):
    """A config problem a person can fix; the message names the file and the key."""


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """repr of a value for a one-line message, built from a bounded walk (a huge input is never formatted whole)."""
    text = _PREVIEW.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def readable(number: float | int | None) -> str:
    """A number as a person reads it: 1000000000 -> 1,000,000,000; 12345.67 -> 12,345.7; 0.05 -> 0.05."""
    if number is None:
        return "-"
    if isinstance(number, bool):
        return str(number)
    if isinstance(number, int) or (float(number).is_integer() and abs(number) < 1e18):
        return f"{int(number):,}"
    return f"{number:,.1f}" if abs(number) >= 1000 else f"{number:.4g}"


class _Unbounded(Exception):
    """A YAML document past one of the bounds; the message says which (the caller adds the file)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts alias resolutions while composing, before any Python object is built."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Unbounded(f"more than {readable(MAX_YAML_ALIASES)} aliases (`*name`); alias expansion "
                                 "exceeds what a config needs (is this a YAML alias bomb?)")
        return super().compose_node(parent, index)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Count the values the document would hold with every alias expanded, over the shared node graph (linear)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_YAML_VALUES:
                raise _Unbounded(f"alias expansion exceeds {readable(MAX_YAML_VALUES)} values (is this a YAML "
                                 "alias bomb?); write the values out, or use fewer nested aliases")
        elif key in on_path:
            raise _Unbounded("an alias refers to a value that contains it, so its expansion never ends")
        elif key not in sizes:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def safe_yaml(text: str) -> Any:
    """yaml.safe_load with bounded alias expansion; raises yaml.YAMLError or _Unbounded."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {preview(text)} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {preview(text)} has an empty key")
    try:
        value = safe_yaml(raw) if raw.strip() else ""
    except _Unbounded as err:
        raise ConfigError(f"override {preview(key.strip())}: {err}") from None
    except (yaml.YAMLError, RecursionError, ValueError):  # not YAML: the text itself is the value
        value = raw
    return key.strip().split("."), value


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, path)]
    if part not in node or not isinstance(node[part], (dict, list)):
        node[part] = {}
    return node[part]


def _list_index(items: list, part: str, path: str) -> int:
    """A list element is addressed by number or, for lists of `{stage: name}` entries, by that name."""
    if part.lstrip("-").isdigit():
        if len(part) < 19:  # int() of thousands of digits is itself refused
            index = int(part)
            if -len(items) <= index < len(items):
                return index
        shown = part if len(part) < 19 else part[:16] + "..."
        raise ConfigError(f"override {preview(path)}: index {shown} is out of range "
                          f"(the list has {readable(len(items))} items)")
    named = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("stage") == part]
    if len(named) == 1:
        return named[0]
    names = [item.get("stage") for item in items if isinstance(item, dict)]
    raise ConfigError(f"override {preview(path)}: no single list entry named {preview(part)} "
                      f"(entries: {preview(names, 200)})")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply dotted `key=value` overrides to a nested dict (in place) and return it."""
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for part in parts[:-1]:
            node = _child(node, part, text)
        if isinstance(node, list):
            node[_list_index(node, parts[-1], text)] = value
        else:
            node[parts[-1]] = value
    return data


def read_yaml(path: Path) -> dict:
    """A config file as a mapping; too large, an alias bomb, not UTF-8 or not YAML is a ConfigError naming it."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the YAML config file inside it") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {readable(MAX_CONFIG_BYTES)} bytes; a config is a short YAML file "
                          "(keep data in the files it names)")
    try:
        data = safe_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the config as UTF-8") from None
    except _Unbounded as err:
        raise ConfigError(f"{path}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err)[:600]}") from None  # an alias name may be huge
    except ValueError as err:  # a scalar YAML reads but Python refuses, e.g. an integer of 5,000 digits
        raise ConfigError(f"{path}: a value cannot be read: {preview(str(err), 120)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data


def load_config(cls: type[M], path: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> M:
    """Read YAML (optional), apply overrides and validate into `cls`, raising ConfigError on any problem."""
    data = read_yaml(path) if path else {}
    for text in overrides:  # an override into a list left at its default edits the default list
        top = text.split("=", 1)[0].split(".", 1)[0]
        field = cls.model_fields.get(top)
        if field is not None and top not in data and "." in text.split("=", 1)[0]:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, list):
                data[top] = default
    apply_overrides(data, list(overrides))
    return validate_config(cls, data, str(path) if path else "<command line>")


def validate_config(cls: type[M], data: dict, where: str) -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(cls, err, where)) from None


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Valid field names of the model reached by following `loc` from `cls` (best effort)."""
    model: Any = cls
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            break
        model = _model_in(field.annotation)
    return list(getattr(model, "model_fields", {})) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def format_validation_error(cls: type[BaseModel], err: ValidationError, where: str) -> str:
    """One line per problem (at most MAX_ERRORS_LISTED), each quoting a bounded preview of the bad value."""
    problems = err.errors(include_url=False)
    lines = [f"{where}: invalid configuration"]
    for item in problems[:MAX_ERRORS_LISTED]:
        loc = tuple(item.get("loc", ()))
        key = ".".join(str(p) if len(str(p)) <= 60 else str(p)[:57] + "..." for p in loc) or "(top level)"
        if item.get("type") == "extra_forbidden":
            valid = _fields_at(cls, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1])[:100], valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"  {key}: unknown key{hint} (valid keys: {', '.join(valid)})")
        else:
            # our own validators' messages already say what was wrong, and their input may be a whole section
            got = "" if item.get("type") == "value_error" else f" (got {preview(item.get('input'))})"
            lines.append(f"  {key}: {problem_text(item)}{got}")
    if len(problems) > MAX_ERRORS_LISTED:
        lines.append(f"  ... and {readable(len(problems) - MAX_ERRORS_LISTED)} more problems")
    return "\n".join(lines)


_BOUNDS = {"less_than_equal": "le", "less_than": "lt", "greater_than_equal": "ge", "greater_than": "gt"}


def problem_text(item: dict) -> str:
    """pydantic's message for one error, with a numeric bound written readably (`... equal to 100,000`)."""
    message = str(item.get("msg", "")).removeprefix("Value error, ")
    limit = (item.get("ctx") or {}).get(_BOUNDS.get(item.get("type", ""), ""))
    if isinstance(limit, (int, float)) and message.endswith(str(limit)):
        message = message[: -len(str(limit))] + readable(limit)
    return message


def dump_config(config: BaseModel, path: Path) -> None:
    """Write the resolved config as YAML next to an output, so the output says what produced it."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    Path(path).write_text(text, encoding="utf-8")
