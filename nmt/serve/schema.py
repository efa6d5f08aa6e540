"""The /translate request and answer: their schema, and validation with one-line messages."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from typing import Annotated, Callable, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from nmt.config import DecodeConfig, decode_options
from nmt.errors import NmtError
from nmt.serve.config import ServeConfig
from nmt.serve.refusal import CONFLICTING, MALFORMED, RequestError
from nmt.serve.sizes import check_sizes

def _decode_min(name: str) -> float:
    """DecodeConfig's lower bound of `name`: the request is checked, and documented, by the rule that
    decode_options applies, stated once."""
    return next(f for f in dataclasses.fields(DecodeConfig) if f.name == name).metadata["min"]


def _integral(value):
    """9.0 as 9: JSON Schema's integer is any number without a fraction, so the document allows 9.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _integer(minimum: int):
    """An integer of at least `minimum` (strict but for 9.0: "5", 9.5 and true are refused)."""
    return Annotated[int, Field(ge=minimum), BeforeValidator(_integral)]


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str] = Field(description="a sentence, or a list of sentences answered in the same order")
    beam_size: _integer(_decode_min("beam_size")) | None = Field(
        None, description="beam size, 1 = greedy (default: the model's decode.beam_size, raised to nbest)")
    nbest: _integer(1) = Field(1, description="hypotheses per sentence, best first (needs beam_size >= nbest, "
                                              "else 422)")
    length_penalty: float | None = Field(None, ge=_decode_min("length_penalty"), description="GNMT length "
                                         "penalty alpha, 0 = none (default: the model's decode.length_penalty)")
    attention: bool = Field(False, description="include the attention weights of each hypothesis")
    alignments: bool = Field(False, description="include each hypothesis's word alignment (Pharaoh 'i-j' pairs, "
                             "source word i to target word j, from the attention; the weights are not sent)")
    prefix: str | list[str] | None = Field(None, description="target-side text each translation must start with: "
                                           "a string for a string text, a list of as many for a list (\"\": none; "
                                           "another count, or a word the model cannot spell: 422)")
    source: str | None = Field(None, description="the source language's code (GET /languages; optional while "
                               "this server translates one pair)")
    target: str | None = Field(None, description="the target language's code (as source)")


class Hypothesis(BaseModel):
    text: str = Field(description="detokenized translation")
    score: float | None = Field(description="sum of token log-probabilities (beam: divided by the length "
                                "penalty); null where not finite (the model gave no finite probability)")
    finished: bool = Field(description="ended with </s> (false: stopped at the length cap)")
    tokens: list[str] = Field(description="target pieces, </s> excluded")
    attention: list[list[float]] | None = Field(
        None, description="with attention: one row per target piece (and one for </s> when finished), "
                          "one column per source piece")
    alignment: str | None = Field(None, description="with alignments: 'i-j' pairs, source word i aligned to "
                                  "target word j (0-based, whitespace words), sorted")


class Translation(Hypothesis):
    source_tokens: list[str] = Field(description="source pieces the model read, </s> included (columns of attention)")
    truncated: bool = Field(description="the input had more pieces than the model's decode.max_input_len; "
                                        "its end was not read")
    nbest: list[Hypothesis] | None = Field(None, description="with nbest > 1: every hypothesis, best first "
                                           "(the attention then only here, not repeated at the top)")


class TranslateResponse(BaseModel):
    translations: list[Translation]


def _branch(field: dict, kind: str) -> dict:
    """The member of type `kind` of a field's JSON schema (`str | list[str]` is an anyOf of two)."""
    return next(member for member in field.get("anyOf", [field]) if member.get("type") == kind)


def request_schema(limits: ServeConfig, pairs_rule: dict) -> dict:
    """TranslateRequest's JSON schema as this server checks it: its limits as bounds, a prefix of the
    text's shape, and `pairs_rule` (Pairs.schema: the served pairs' codes). A schema-valid request is
    refused only by TOO_LARGE and CONFLICTING."""
    schema = TranslateRequest.model_json_schema()
    fields = schema["properties"]
    for name in ("source", "target"):  # null is refused: it names no pair
        fields[name] = {"type": "string", "description": fields[name]["description"]}
    _branch(fields["text"], "array")["maxItems"] = limits.max_sentences
    _branch(fields["beam_size"], "integer")["maximum"] = limits.max_beam_size
    fields["nbest"]["maximum"] = limits.max_beam_size  # the beam is raised to nbest
    _branch(fields["length_penalty"], "number")["maximum"] = limits.max_length_penalty
    # A string text takes a string prefix, a list a list: each shape is one member (null: no prefix).
    schema["oneOf"] = [{"properties": {"text": {"type": kind}, "prefix": {"type": [kind, "null"]}}}
                       for kind in ("string", "array")]
    schema["anyOf"] = pairs_rule["anyOf"]
    schema["required"] = [*schema.get("required", []), *pairs_rule.get("required", [])]
    return schema


class Sentence(NamedTuple):
    """One sentence of a request: what the batcher queues and the decoding worker translates."""

    text: str
    prefix: str = ""  # target-side text its translation starts with ("" : none)


class Parsed(NamedTuple):
    """A /translate body read: what to decode, how, and the pair it names (None: not named)."""

    sentences: list[Sentence]
    settings: Settings
    source: str | None
    target: str | None


@dataclass(frozen=True)
class Settings:
    """Decode settings of one request; requests with equal settings may share a decoding batch
    (a sentence's prefix is its own, not a setting: sentences with different prefixes share one)."""

    beam_size: int
    nbest: int
    length_penalty: float | None
    attention: bool
    alignments: bool


def _describe(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if _unencodable([text]):  # a lone surrogate in a key or value: the message must still encode as UTF-8
        text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validation_message(err: ValidationError) -> str:
    """The first problem of a request, in one line naming the setting."""
    first = err.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "body"
    if first["type"] == "extra_forbidden":
        known = list(TranslateRequest.model_fields)
        close = difflib.get_close_matches(name, known, n=1)
        shown = name if name.isidentifier() else _describe(name)  # a key may hold a newline; the message may not
        return f"{shown}: unknown setting; " + (f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}")
    if first["type"] == "missing":
        return f"{name}: required, e.g. {{\"text\": \"Ein Hund läuft.\"}}"
    if name in ("text", "prefix"):  # one error per member of str | list[str]; an item's error has its index
        item = next((e for e in err.errors() if e["loc"][0] == name and isinstance(e["loc"][-1], int)), None)
        if item:
            return f"{name}[{item['loc'][-1]}]: expected a string, got {_describe(item['input'])}"
        return f"{name}: expected a string or a list of strings, got {_describe(first['input'])}"
    message = first["msg"][0].lower() + first["msg"][1:]
    return f"{name}: {message}, got {_describe(first['input'])}"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf
        raise ValueError(f"{text} is out of range for a number")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _unencodable(lines: list[str], name: str = "text") -> str | None:
    """A one-line complaint about the first line that is not valid Unicode (a lone surrogate such as "\\ud800")."""
    for i, line in enumerate(lines):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as err:
            where = f"{name}[{i}]" if len(lines) > 1 else name
            return f"{where}: not valid Unicode (a lone surrogate at character {err.start})"
    return None


def _prefixes(request: TranslateRequest, count: int) -> list[str]:
    """One prefix per sentence ("" for none), or RequestError when their shape is not the text's."""
    given = request.prefix
    if given is None:
        return [""] * count
    if isinstance(request.text, str) != isinstance(given, str):
        one = isinstance(request.text, str)
        shape = "a string, as text is one" if one else f"a list of {count} strings, as text is"
        raise RequestError(MALFORMED, f"prefix: expected {shape}, got {_describe(given)}")
    prefixes = [given] if isinstance(given, str) else given
    if len(prefixes) != count:
        raise RequestError(CONFLICTING, f"prefix: {len(prefixes)} given for {count} sentences; "
                                        "give one per sentence (\"\" for none)")
    if (problem := _unencodable(prefixes, "prefix")) is not None:
        raise RequestError(MALFORMED, problem)
    return prefixes


def parse_request(body: bytes, limits: ServeConfig, decode_of: Callable[[str | None, str | None], DecodeConfig]
                  ) -> Parsed:
    """The sentences and decode settings of a /translate body over the decode settings of the model it
    names (`decode_of(source, target)`, RequestError for a pair not served), or RequestError."""
    try:
        data = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise RequestError(MALFORMED, f"malformed JSON: {reason}") from None
    if not isinstance(data, dict):
        raise RequestError(MALFORMED, f"expected a JSON object such as {{\"text\": \"...\"}}, "
                                      f"got {_describe(data)}")
    if _unencodable(list(data)):
        raise RequestError(MALFORMED, "a setting's name is not valid Unicode (a lone surrogate)")
    try:
        request = TranslateRequest.model_validate(data)
    except ValidationError as err:
        raise RequestError(MALFORMED, validation_message(err)) from None
    lines = [request.text] if isinstance(request.text, str) else request.text
    if (problem := _unencodable(lines)) is not None:
        raise RequestError(MALFORMED, problem)
    prefixes = _prefixes(request, len(lines))
    chars = sum(len(line) for line in lines) + sum(len(prefix) for prefix in prefixes)
    if None in (data.get("source", ""), data.get("target", "")):  # null names no pair: the schema says a string
        raise RequestError(MALFORMED, "source, target: expected a language code, got null")
    decode = decode_of(request.source, request.target)
    try:
        beam = decode_options(decode, request.nbest, beam_size=request.beam_size).beam_size
    except NmtError as err:  # nbest over an explicit beam_size: the fields' own bounds are the schema's
        raise RequestError(CONFLICTING, str(err)) from None
    if beam > limits.max_beam_size:
        name = "beam_size" if request.beam_size else "nbest"
        raise RequestError(MALFORMED, f"{name}: at most {limits.max_beam_size} on this server, got {beam}")
    if request.length_penalty is not None and request.length_penalty > limits.max_length_penalty:
        raise RequestError(MALFORMED, f"length_penalty: at most {limits.max_length_penalty} on this server, "
                                      f"got {_describe(request.length_penalty)}")
    check_sizes(len(lines), chars, request.nbest, limits)
    settings = Settings(beam, request.nbest, request.length_penalty, request.attention, request.alignments)
    return Parsed([Sentence(line, prefix) for line, prefix in zip(lines, prefixes)], settings, request.source,
                  request.target)
