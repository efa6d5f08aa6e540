#!/usr/bin/env python3
"""Write docs/config.md, the reference of every recipe key, from the dataclasses in nmt/config.py.

    scripts/config_reference.py            # rewrite docs/config.md
    scripts/config_reference.py --check    # exit 1 if docs/config.md is not what this writes now

Each key's type, default and meaning come from its field: the annotation, the default and the
`option(...)` metadata (help, choices, minimum, maximum, architecture). tests/test_config.py checks
that the committed file is current.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from nmt.config import Config

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "docs" / "config.md"

SECTIONS = {
    "data": "Where the corpus is and how it is read and filtered ([data.md](data.md)).",
    "tokenizer": "The SentencePiece model(s) and vocabularies ([data.md](data.md#the-tokenizer)).",
    "model": "The network. The keys marked *training only* may differ between checkpoints of one model; "
             "the others are its architecture (`nmt.config.architecture_keys`).",
    "train": "The training loop ([training.md](training.md)).",
    "decode": "Search and sampling: the checkpoint's defaults for nmt-translate, nmt-evaluate and nmt-serve, "
              "each a flag of nmt-translate ([translating.md](translating.md)).",
    "eval": "Scoring with sacreBLEU ([translating.md](translating.md#evaluating)).",
}

HEADER = """# Configuration reference

Every key a recipe may set, with its type, default and meaning. This file is generated from the
dataclasses of [`nmt/config.py`](../nmt/config.py) by `scripts/config_reference.py` (a test checks
that it is current); the fields are the only place a default lives.

A recipe lists only what differs from these defaults. Several files merge left to right, `--set
section.key=value` overrides after them (the value read as YAML), and loading stops at an unknown
key, a wrong type or a value outside its range, naming the key. To see what a run would use:

    nmt-train RECIPE.yaml [MORE.yaml ...] [--set key=value ...] --print-config   # the resolved config
    nmt-train --print-config                                                     # the defaults

The output is what the run's `config.yaml` would hold, and loads as a recipe.
"""


def cell(text: str) -> str:
    """Text for a Markdown table cell: a `|` would end the cell, and `<unk>` would read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "\\<")


def default_of(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def meaning(f: dataclasses.Field, section: str) -> str:
    meta = f.metadata
    words = [meta["help"]]
    if meta["choices"]:
        words.append(("each one of " if f.type.startswith("list") else "one of ") +
                     ", ".join(f"`{c}`" for c in meta["choices"]))
    if meta["min"] is not None:
        words.append(f"at least {meta['min']:g}")
    if meta["max"] is not None:
        words.append(f"at most {meta['max']:g}")
    if section == "model" and not meta["architecture"]:
        words.append("*training only*: `--resume`, fine-tuning and averaging let it differ")
    return cell("; ".join(words) + ".")


def reference() -> str:
    """The text of docs/config.md."""
    parts = [HEADER]
    for section in dataclasses.fields(Config):
        cls = section.default_factory
        parts.append(f"\n## `{section.name}`\n\n{SECTIONS[section.name]}\n\n"
                     "| key | type | default | meaning |\n|---|---|---|---|\n")
        parts.extend(rows(section.name, cls, section.name))
    return "".join(parts)


def rows(prefix: str, cls, section: str):
    """A table row per key of `cls`; a nested dataclass (tokenizer.sampling) gives a row per key of its own."""
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            yield from rows(f"{prefix}.{f.name}", f.default_factory, section)
        else:
            yield f"| `{prefix}.{f.name}` | `{f.type}` | {default_of(f)} | {meaning(f, section)} |\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 if docs/config.md is stale")
    args = parser.parse_args(argv)
    text = reference()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
