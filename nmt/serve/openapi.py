"""What GET /openapi.json states beyond what FastAPI derives from the routes: the bodies of the status
routes and of every refusal, and the refusals that come from the middleware rather than from a route
(a foreign Host or Origin, a missing API key, --limit-concurrency, a 500), each in the shape of the
API a route serves (LibreTranslate's routes: {"error"}; /translate: either), with the API key as a
security scheme when one is asked for. tests/test_serve_contract.py fuzzes a real server against it."""

from __future__ import annotations

import dataclasses
import typing

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

from nmt.config import DecodeConfig, ModelConfig
from nmt.serve.batcher import Stats
from nmt.serve.config import INFO_LIMITS, ServeConfig
from nmt.serve.guard import OPEN_PATHS
from nmt.serve.libre import FORM, LIBRE_PATHS, detect_schema, libre_schema
from nmt.serve.pairs import Pairs
from nmt.serve.refusal import CONFLICTING, MALFORMED, TOO_LARGE

# The Retry-After header of a 503 (app.py sends RETRY_AFTER_S: the queue, the in-flight limit, /ready).
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before sending again",
                               "schema": {"type": "integer"}}}


class Error(BaseModel):
    detail: str = Field(description="why, in one line")


class InternalError(Error):
    request_id: str = Field(description="the id under which the server logged the traceback")


def _counters() -> dict:
    """Stats's fields as pydantic fields: /health sends them all, whatever they are."""
    hints = typing.get_type_hints(Stats)
    return {f.name: (hints[f.name], ...) for f in dataclasses.fields(Stats)}


# Bodies are documented as closed (no other keys): a key the server adds without a word here fails the fuzzer.
CLOSED = ConfigDict(extra="forbid")
Health = create_model("Health", __config__=CLOSED, __doc__="Liveness and the batcher's counters.",
                      status=(typing.Literal["ok", "worker stopped"], ...), **_counters())


class PairReady(BaseModel):
    model_config = CLOSED
    queued_sentences: int


class Ready(BaseModel):
    model_config = CLOSED
    status: typing.Literal["ready"]
    queued_sentences: int = Field(description="all pairs together")
    pairs: dict[str, PairReady] = Field(description="by pair (source-target)")


Limits = create_model("Limits", __config__=CLOSED,
                      **{name: (typing.get_type_hints(ServeConfig)[name], ...) for name in INFO_LIMITS})


class Batching(BaseModel):
    model_config = CLOSED
    enabled: bool
    wait_ms: float
    sentences: int
    decode_threads: int


class Vocabulary(BaseModel):
    model_config = CLOSED
    source: int
    target: int


class ModelInfo(BaseModel):
    model_config = CLOSED
    model: str = Field(description="the run directory's name (several: an ensemble, joined by ' + ')")
    checkpoint: str
    step: int | None
    ensemble: int = Field(description="models averaged")
    source_language: str
    target_language: str
    parameters: int
    architecture: ModelConfig
    vocabulary: Vocabulary
    decode: DecodeConfig = Field(description="the model's decode settings: a request's defaults")
    device: str
    dtype: str
    limits: Limits
    batching: Batching


class Info(ModelInfo):
    pairs: dict[str, ModelInfo] = Field(description="every pair served (source-target), the first one's "
                                        "also at the top level")


class LibreError(BaseModel):
    error: str = Field(description="why, in one line (LibreTranslate's shape)")


class Detected(BaseModel):
    model_config = CLOSED
    confidence: float = Field(ge=0, le=100)
    language: str


class LibreAnswer(BaseModel):
    """LibreTranslate's /translate answer: a list for a list."""

    model_config = CLOSED
    translatedText: str | list[str]
    detectedLanguage: Detected | list[Detected] = Field(None, description="only with source auto")
    alternatives: list[str] | list[list[str]] = Field(None, description="only when asked: other translations, "
                                                      "best first, de-duplicated (for a list, one list per text)")


class Language(BaseModel):
    model_config = CLOSED
    code: str
    name: str
    targets: list[str] = Field(description="the codes a served model translates this one into")


def error(description: str, **extra) -> dict:
    """A refusal as a route's `responses` entry: {"detail": ...} with its cause."""
    return {"description": description, "model": Error, **extra}


# POST /translate's refusals, as /openapi.json documents them (the middleware's join them there).
TRANSLATE_REFUSALS = {
    MALFORMED: error("malformed JSON, invalid Unicode, or a request outside the schema: a wrong type, an unknown "
                     "setting, a value out of range (this server's limits included)"),
    TOO_LARGE: error("more sentences, characters (prefixes included), sentences x nbest or attention weights than "
                     "this server takes, or a larger body"),
    CONFLICTING: error("values the schema cannot relate: another count of prefixes than of sentences, nbest over "
                       "beam_size, a prefix word outside the model's target vocabulary"),
    503: error("the queue is full (Retry-After) or the server is shutting down", headers=RETRY_AFTER),
    504: error("not answered within the server's --timeout"),
}


def _either(description: str, **extra) -> dict:
    """A refusal of /translate: ours ({"detail"}) for our API's requests, LibreTranslate's ({"error"}) for its."""
    either = {"anyOf": [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/LibreError"}]}
    return {"description": description, "content": {"application/json": {"schema": either}}, **extra}


def libre_document(cfg: ServeConfig, pairs: Pairs) -> dict:
    """What the routes that serve LibreTranslate's API declare: POST /translate's two request bodies
    (a form carries one text) and refusals in either shape, and GET /languages's answer."""
    described = {status: entry["description"] for status, entry in TRANSLATE_REFUSALS.items()}
    translate = {status: _either(text, **({"headers": RETRY_AFTER} if status == 503 else {}))
                 for status, text in described.items()}
    translate[MALFORMED]["description"] += "; LibreTranslate's: a missing q, an unsupported pair or format"
    translate[403] = _either("LibreTranslate's: its api_key (or the header) is not this server's key")
    translate[429] = {"description": "LibreTranslate's: the queue is full (Retry-After)", "model": LibreError,
                      "headers": RETRY_AFTER}
    rule = pairs.schema()
    targets = dict.fromkeys(pair.target for pair in pairs)  # auto: detected among the sources into a target
    rule = {**rule, "anyOf": [*rule["anyOf"], *({"properties": {"source": {"const": "auto"}, "target": {"const": t}}}
                                                 for t in targets)]}
    return {"translate": translate, "json": libre_schema(cfg, rule, ["text", "html"], form=False),
            "form": libre_schema(cfg, rule, ["text", "html"], form=True),
            "languages": {200: {"model": list[Language], "description": "the languages served"}},
            "detect": {200: {"model": list[Detected], "description": "every served source language with its "
                                                                   "confidence, best first"},
                       MALFORMED: _libre_error("a missing or empty q, another field than q and api_key, a "
                                               "wrong type, invalid Unicode"),
                       403: _libre_error("its api_key (or the header) is not this server's key"),
                       TOO_LARGE: _libre_error("a body larger than this server reads")},
            "detect_body": {"required": True, "content": {"application/json": {"schema": detect_schema(form=False)},
                                                          FORM: {"schema": detect_schema(form=True)}}}}


def _libre_error(description: str, **extra) -> dict:
    return {"description": description, "model": LibreError, **extra}


def _refusal(description: str, schemas: tuple[str, ...] = ("Error",), headers: dict | None = None) -> dict:
    """The same in the document's own words, for a status that no route declares: a body of one of
    `schemas` (components' names)."""
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schemas]
    content = {"application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}}
    return {"description": description, "content": content, **({"headers": headers} if headers else {})}


def _middleware_refusals(path: str, cfg: ServeConfig, keyed: bool) -> dict:
    """What Guard, InFlightLimit and the 500 handler may answer on `path`, before or around its route,
    in the shape of the API the path serves (nmt/serve/shape.py): LibreTranslate's routes answer
    {"error"} and 429 for the in-flight limit; /translate either API's (its requests say which)."""
    libre, both = path in LIBRE_PATHS, path == "/translate"
    shapes = ("LibreError",) if libre else ("Error", "LibreError") if both else ("Error",)
    refusals = {400: _refusal("a Host header that is not a name of this server (--allow-host)", shapes),
                403: _refusal("an Origin header that may not use this server (--allow-origin)", shapes)}
    if keyed and path not in OPEN_PATHS and path != "/detect":  # /detect checks its key itself: 403
        refusals[401] = _refusal("no API key, or another one (Authorization: Bearer KEY or X-API-Key: KEY)",
                                 headers={"WWW-Authenticate": {"schema": {"type": "string"}}})
    if cfg.limit_concurrency and path not in OPEN_PATHS:
        limit = f"{cfg.limit_concurrency} requests are in flight (--limit-concurrency)"
        if not libre:
            refusals[503] = _refusal(limit + ("; our API's requests" if both else ""), headers=RETRY_AFTER)
        if libre or both:
            refusals[429] = _refusal(limit + ("; LibreTranslate's requests" if both else ""), ("LibreError",),
                                     RETRY_AFTER)
    internal = tuple("InternalError" if name == "Error" else name for name in shapes)
    refusals[500] = _refusal("a bug; its traceback is in the server's log under its request id", internal)
    return refusals


def complete_document(app: FastAPI, cfg: ServeConfig, keyed: bool, detects) -> None:
    """Make `app.openapi()` FastAPI's document with the middleware's refusals on every route, and, when
    `keyed` (an API key is asked for), the key as a security scheme of the routes that need it. POST
    /detect is stated only where `detects()`: elsewhere the identifier cannot tell the served sources
    apart and every request of it gets 400, which no request schema can say."""
    derive = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = derive()  # FastAPI keeps it as app.openapi_schema: completed once, here
        if not detects():
            del document["paths"]["/detect"]
        for path, operations in document["paths"].items():
            for operation in operations.values():
                responses = operation["responses"]
                for status, refusal in _middleware_refusals(path, cfg, keyed).items():
                    if str(status) in responses:  # the route's own says more; the middleware's cause joins it
                        responses[str(status)]["description"] += "; or " + refusal["description"]
                    else:
                        responses[str(status)] = refusal
                if keyed and path not in OPEN_PATHS:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]  # either one
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in (Error, InternalError, LibreError):
            schemas[model.__name__] = model.model_json_schema()
        if keyed:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                             "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
        return document

    app.openapi = openapi
