"""Command-line flags generated from a config dataclass, checked by the config's own rules.

`nmt-serve` takes every field of ServeConfig as a flag with its default; `nmt-translate` takes every
field of DecodeConfig with no default of its own (absent: the checkpoint's value). Either way the
values go through `typed_yaml.build`, the check a recipe and `Translator.options` go through, and
an error names the flag the user typed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re

from nmt.errors import NmtError
from nmt.typed_yaml import build

KINDS = {"int": int, "float": float, "str": str}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls, with_defaults: bool, title: str) -> None:
    """One flag per field of `cls`, with its help and choices, under `title`. `with_defaults`: absent
    flags take the field's default; otherwise they stay None (the caller's base values apply)."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        text, default = f.metadata["help"], f.default if with_defaults else None
        if f.type == "bool" and f.default and with_defaults:
            # No default of its own: argparse would show "(default: True)" beside --no-X, which reads
            # backwards; absent, the field's default (on) applies in config_from_flags.
            group.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                               default=argparse.SUPPRESS, help=f"turn off (on by default): {text}")
        elif f.type == "bool":
            group.add_argument(flag_name(f.name), action="store_const", const=True, default=default, help=text)
        else:
            group.add_argument(flag_name(f.name), type=KINDS[f.type], default=default,
                               choices=f.metadata["choices"] or None, help=text)


@contextlib.contextmanager
def flags_named(keys):
    """Config errors raised inside name the flags the user typed: `beam_size: ...` reads `--beam-size: ...`."""
    try:
        yield
    except NmtError as err:
        words = re.compile(r"\b(" + "|".join(sorted(keys, key=len, reverse=True)) + r")\b")
        raise NmtError(words.sub(lambda m: flag_name(m.group(1)), str(err)) if keys else str(err)) from None


def config_from_flags(args: argparse.Namespace, cls, base: dict | None = None):
    """A checked `cls` from the flags given in `args` over `base` (a dict of its fields)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    with flags_named(given):
        return build(cls, {**(base or {}), **given}, "")
