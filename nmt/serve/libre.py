"""LibreTranslate's /translate request: which requests are its, its fields, and their schema.

POST /translate serves two APIs. A request is LibreTranslate's when its body is a JSON object with
`q` and without `text`, or, for a body that is not a JSON object, when a form body
(application/x-www-form-urlencoded: libretranslatepy) or the query string (deep-translator) names
one of LibreTranslate's fields. Every other request is ours, refused or answered as before: our API
never took any of these names. As LibreTranslate reads them (libretranslate/app.py), a JSON body's
fields come from it alone; otherwise from the query string, then the form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

from nmt.serve.config import ServeConfig
from nmt.serve.refusal import MALFORMED, RequestError

FIELDS = ("q", "source", "target", "format", "alternatives", "api_key")
DETECT_FIELDS = ("q", "api_key")
FORM = "application/x-www-form-urlencoded"
# Routes of LibreTranslate's alone: every answer of theirs is in its shape.
LIBRE_PATHS = frozenset({"/languages", "/detect"})


@dataclass(frozen=True)
class LibreRequest:
    """A LibreTranslate request read: its texts (`batch`: q was a list), pair, format and n-best."""

    texts: list[str]
    batch: bool
    source: str | None
    target: str | None
    format: str
    alternatives: int
    api_key: str | None


def _pairs(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return values


def given_fields(body: bytes, content_type: str, query: str, names=FIELDS) -> tuple[dict, bool]:
    """The fields a request gives, as LibreTranslate reads them (a JSON object's own; else the query
    string's among `names` over the form's), and whether it came as a JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        return data, True
    try:
        form = _pairs(body.decode("utf-8")) if content_type.split(";")[0].strip().lower() == FORM else {}
    except UnicodeDecodeError:
        return {}, False
    queried = {name: values for name, values in _pairs(query).items() if name in names}
    if not any(name in names for name in [*form, *queried]):
        return {}, False
    for source in (form, queried):
        repeated = next((name for name, values in source.items() if len(values) > 1), None)
        if repeated is not None:
            raise RequestError(MALFORMED, f"Invalid request: {repeated} given more than once")
    # Line endings made LF only, as LibreTranslate does for a form: its character limit counts so.
    fields = {name: "\n".join(values[0].splitlines()) if name == "q" else values[0] for name, values in form.items()}
    fields.update({name: values[0] for name, values in queried.items()})
    return {**fields, "q": "\n".join(fields["q"].splitlines())} if isinstance(fields.get("q"), str) else fields, False


def libre_fields(body: bytes, content_type: str, query: str) -> dict | None:
    """The request's LibreTranslate fields, or None when the request is ours (the rule above)."""
    fields, as_json = given_fields(body, content_type, query)
    if as_json:
        return fields if "q" in fields and "text" not in fields else None
    return fields if any(name in FIELDS for name in fields) else None


def is_libre(path: str, body: bytes, content_type: str, query: str) -> bool:
    """Whether a request to `path` is LibreTranslate's, so that any refusal of it takes its shape."""
    if path in LIBRE_PATHS:
        return True
    if path != "/translate":
        return False
    try:
        return libre_fields(body, content_type, query) is not None
    except RequestError:  # a LibreTranslate field given twice: only its requests name them
        return True


def _alternatives(value, limits: ServeConfig) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():  # JSON Schema's integer: 11.0 is one
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(MALFORMED, "Invalid request: alternatives parameter is not a number of at least 0")
    if value > limits.max_beam_size - 1:
        raise RequestError(MALFORMED, f"Invalid request: alternatives parameter must be <= {limits.max_beam_size - 1}")
    return value


def _texts(fields: dict, known: tuple[str, ...]) -> list[str]:
    """The texts of `q`, every field checked known and every other one a string; RequestError MALFORMED."""
    unknown = next((name for name in fields if name not in known), None)
    if unknown is not None:
        raise RequestError(MALFORMED, f"Invalid request: {unknown!r} is not a parameter (known: {', '.join(known)})")
    q = fields.get("q")
    if not q:
        raise RequestError(MALFORMED, "Invalid request: missing q parameter")
    if not (isinstance(q, str) or (isinstance(q, list) and all(isinstance(item, str) for item in q))):
        raise RequestError(MALFORMED, "Invalid request: q must be a string or a list of strings")
    texts = [q] if isinstance(q, str) else q
    for name in ("source", "target", "format", "api_key"):
        if name in fields and not isinstance(fields[name], str):
            raise RequestError(MALFORMED, f"Invalid request: {name} must be a string")
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(MALFORMED, "Invalid request: q is not valid Unicode (a lone surrogate)") from None
    return texts


def read_detect(fields: dict) -> tuple[list[str], str | None]:
    """/detect's texts and api_key, checked as detect_schema states them; RequestError MALFORMED (400)."""
    return _texts(fields, DETECT_FIELDS), fields.get("api_key")


def read_request(fields: dict, limits: ServeConfig) -> LibreRequest:
    """The fields checked as the schema (libre_schema) states them; RequestError MALFORMED (400) otherwise."""
    texts = _texts(fields, FIELDS)
    q = fields["q"]
    text_format = fields.get("format") or "text"
    if text_format not in ("text", "html"):
        raise RequestError(MALFORMED, f"{text_format} format is not supported")
    return LibreRequest(texts, isinstance(q, list), fields.get("source"), fields.get("target"), text_format,
                        _alternatives(fields.get("alternatives", 0), limits), fields.get("api_key"))


def libre_schema(limits: ServeConfig, pairs_rule: dict, formats: list[str], form: bool) -> dict:
    """The request's JSON Schema as read_request and the pair lookup check it (`form`: every field a
    string, q one text, alternatives digits: what a form can carry)."""
    text = {"type": "string", "minLength": 1}
    q = text if form else {"anyOf": [text, {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                            "maxItems": limits.max_sentences}]}
    alternatives = {"type": "integer", "minimum": 0, "maximum": limits.max_beam_size - 1}
    return {"type": "object", "additionalProperties": False, "required": ["q", *pairs_rule.get("required", [])],
            "properties": {"q": {**q, "description": "a text, or a list of texts answered in the same order "
                                                     "(a text's lines and sentences are translated one by one)"},
                           "source": {"type": "string", "description": "the source language's code"},
                           "target": {"type": "string", "description": "the target language's code"},
                           "format": {"enum": formats, "default": "text"},
                           "alternatives": {**alternatives, "default": 0,
                                            "description": "other translations to send, de-duplicated"},
                           "api_key": {"type": "string", "description": "the key of a server started with "
                                                                        "--api-key-file (ignored by one without)"}},
            "anyOf": pairs_rule["anyOf"]}


def detect_schema(form: bool) -> dict:
    """/detect's request as read_detect checks it (`form`: q one text)."""
    text = {"type": "string", "minLength": 1}
    q = text if form else {"anyOf": [text, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    return {"type": "object", "additionalProperties": False, "required": ["q"],
            "properties": {"q": {**q, "description": "the text (a list: its texts taken together)"},
                           "api_key": {"type": "string", "description": "the key of a server started with "
                                                                        "--api-key-file (ignored by one without)"}}}
