"""Several language pairs in one server: `nmt-serve de-en=runs/de-en en-de=runs/en-de fr-en=a,b`.

Each pair is a model (a comma joins an ensemble) with its own batcher, so that a batch never mixes
two models and a busy pair does not hold up the others. Its codes come from the run's recipe
(data.src_lang, data.tgt_lang); a name that says otherwise is refused at start-up, not guessed at.
A request names its pair by `source` and `target` (both optional while one pair is served).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nmt.errors import NmtError
from nmt.serve.refusal import MALFORMED, RequestError


@dataclass(frozen=True)
class ModelSpec:
    """One model of the command line: `name` as given (None: plain RUN_DIRs) and its run directories."""

    name: str | None
    paths: list[str]


def model_specs(arguments: list[str]) -> list[ModelSpec]:
    """`RUN [RUN ...]` (one model, several: an ensemble) or `PAIR=RUN[,RUN] ...` (one model per pair)."""
    named = [arg for arg in arguments if "=" in arg]
    if not named:
        return [ModelSpec(None, list(arguments))]
    if len(named) != len(arguments):
        plain = next(arg for arg in arguments if "=" not in arg)
        raise NmtError(f"{plain}: give every model as PAIR=RUN[,RUN] once one is (as {named[0]}), or only "
                       "RUN_DIRs (one model or an ensemble)")
    specs = []
    for arg in arguments:
        name, _, runs = arg.partition("=")
        paths = runs.split(",")
        if not name or not all(paths):
            raise NmtError(f"{arg}: expected PAIR=RUN[,RUN], e.g. de-en=runs/de-en")
        if any(spec.name == name for spec in specs):
            raise NmtError(f"{name}: given twice; one model (or one ensemble, joined by commas) per pair")
        specs.append(ModelSpec(name, paths))
    return specs


def check_codes(spec: ModelSpec, source: str, target: str) -> None:
    """The recipe's codes must be the pair's name: a request routed by name must reach that model."""
    if spec.name is not None and spec.name != f"{source}-{target}":
        raise NmtError(f"{spec.name}={','.join(spec.paths)}: that run translates {source} to {target} "
                       f"(data.src_lang, data.tgt_lang of its recipe); name it {source}-{target}")


@dataclass
class Pair:
    """A served model: its languages, its Translator, what /info says of it, and its own batcher."""

    source: str
    target: str
    translator: Any
    info: dict
    batcher: Any = None  # set by create_app, which owns the event loop's objects

    @property
    def name(self) -> str:
        return f"{self.source}-{self.target}"


class Pairs:
    """The served pairs in command-line order (the first one is /info's top level)."""

    def __init__(self, pairs: list[Pair]):
        names = [pair.name for pair in pairs]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise NmtError(f"{duplicate}: two models translate this pair; serve one (or one ensemble)")
        self.all = pairs

    def __iter__(self):
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    @property
    def first(self) -> Pair:
        return self.all[0]

    def languages(self) -> list[str]:
        """Every code served, as a source or a target, in order of first appearance."""
        return list(dict.fromkeys(code for pair in self.all for code in (pair.source, pair.target)))

    def sources(self) -> list[str]:
        """Every code served as a source, in order of first appearance: what /detect tells apart."""
        return list(dict.fromkeys(pair.source for pair in self.all))

    def targets(self, source: str) -> list[str]:
        return sorted(pair.target for pair in self.all if pair.source == source)

    def sources_into(self, target: str | None) -> list[str]:
        """The sources a detected language may be: those with a model into `target` (None: any)."""
        return [pair.source for pair in self.all if target is None or pair.target == target]

    def find(self, source: str | None, target: str | None) -> Pair:
        """The pair a request names; RequestError MALFORMED (400) for one not served, or a missing code
        while several pairs are served (the document states both)."""
        if len(self.all) == 1 and source in (None, self.first.source) and target in (None, self.first.target):
            return self.first
        served = ", ".join(pair.name for pair in self.all)
        if source is None or target is None:
            name = "source" if source is None else "target"
            raise RequestError(MALFORMED, f"{name}: required, as this server translates several pairs ({served})")
        found = next((pair for pair in self.all if (pair.source, pair.target) == (source, target)), None)
        if found is None:
            raise RequestError(MALFORMED, f"{source} to {target} is not supported; this server translates {served}")
        return found

    def schema(self, required: bool = True) -> dict:
        """The JSON Schema of `source` and `target`: one served pair's codes or the other's (with one
        pair, each optional); merged into a request's schema."""
        rule: dict = {"anyOf": [{"properties": {"source": {"const": pair.source}, "target": {"const": pair.target}}}
                                for pair in self.all]}
        if len(self.all) > 1 and required:
            rule["required"] = ["source", "target"]
        return rule
