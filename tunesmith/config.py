"""The config system: YAML files validated by strict pydantic models, with `key=value` overrides.

Ground floor: imports nothing of tunesmith. Every command loads its config through `load_config` and
saves the resolved result with its output via `dump_config`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config and artifact: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config problem a person can fix; the message names the file and the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
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
        index = int(part)
        if -len(items) <= index < len(items):
            return index
        raise ConfigError(f"override {path!r}: index {index} is out of range (the list has {len(items)} items)")
    named = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("stage") == part]
    if len(named) == 1:
        return named[0]
    names = [item.get("stage") for item in items if isinstance(item, dict)]
    raise ConfigError(f"override {path!r}: no single list entry named {part!r} (entries: {names})")


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
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the YAML config file inside it") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the config as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
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
    lines = [f"{where}: invalid configuration"]
    for item in err.errors():
        loc = tuple(item.get("loc", ()))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item.get("type") == "extra_forbidden":
            valid = _fields_at(cls, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"  {key}: unknown key{hint} (valid keys: {', '.join(valid)})")
        else:
            got = repr(item.get("input"))
            lines.append(f"  {key}: {item.get('msg')}" + (f" (got {got})" if len(got) <= 80 else ""))
    return "\n".join(lines)


def dump_config(config: BaseModel, path: Path) -> None:
    """Write the resolved config as YAML next to an output, so the output says what produced it."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    Path(path).write_text(text, encoding="utf-8")
