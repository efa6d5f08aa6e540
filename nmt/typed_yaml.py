"""Strict loading of typed dataclass trees from YAML, for nmt/config.py.

A tree is built only from keys its dataclasses declare, each value checked against the field's
annotation and its `option` metadata (choices, minimum, maximum); every error names the key's full path.
YAML is read with 1.2's booleans; `a.b=c` overrides are read as YAML too.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import field
from pathlib import Path

import yaml

from nmt.errors import NmtError


class _Loader(yaml.SafeLoader):
    """YAML 1.2's booleans: only true/false. YAML 1.1 also reads yes/no/on/off as booleans, which
    would turn `mixed_precision: no` into False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def read_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def option(default, help: str, choices: tuple = (), min: float | None = None, max: float | None = None,
           architecture: bool = True):
    """A config field with its help text and the values it may take. `architecture=False`: a model
    field that shapes training only (dropout, initialisation), not what the trained weights are."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "architecture": architecture}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def coerce(value, kind, key: str):
    """Check `value` against the annotated type; the only conversions are int->float and '5e-4'->float."""
    if typing.get_origin(kind) is list:
        if not isinstance(value, list):
            raise NmtError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise NmtError(f"{key}: expected {kind.__name__}, got {value!r}")


def build(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise NmtError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(names)}"
            raise NmtError(f"{path}: unknown key{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = build(kind, value or {}, f"{path}.")
        else:
            kwargs[key] = coerce(value, kind, path)
    obj = cls(**kwargs)
    check_values(obj, prefix)
    return obj


def check_values(obj, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        for item in value if isinstance(value, list) else [value]:  # a list: each of its items
            if meta.get("choices") and item not in meta["choices"]:
                raise NmtError(f"{prefix}{f.name}: {item!r} is not one of {', '.join(meta['choices'])}")
        if meta.get("min") is not None and value < meta["min"]:
            raise NmtError(f"{prefix}{f.name}: {value!r} is below the minimum {meta['min']}")
        if meta.get("max") is not None and value > meta["max"]:
            raise NmtError(f"{prefix}{f.name}: {value!r} is above the maximum {meta['max']}")


def parse_override(text: str) -> tuple[list[str], object]:
    """'train.lr=5e-4' -> (['train', 'lr'], 0.0005): the value is read as YAML."""
    if "=" not in text:
        raise NmtError(f"--set {text}: expected KEY=VALUE, e.g. --set model.cell=lstm")
    key, raw = text.split("=", 1)
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """`values` with each 'a.b=c' of `overrides` set in it (sections made as needed)."""
    values = dict(values or {})
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise NmtError(f"--set {text}: {part} is not a section")
        node[path[-1]] = value
    return values


def read_yaml_file(path: Path) -> dict:
    try:
        values = read_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NmtError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NmtError(f"{path}: cannot read config ({err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise NmtError(f"{path}: invalid YAML{where}") from None
    if values is not None and not isinstance(values, dict):
        raise NmtError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    return values or {}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both_maps else value
    return out
