"""LibreTranslate's API beside ours: GET /languages, POST /detect, and its POST /translate
(libre.py says which /translate requests are its). Errors are {"error": ...}, with LibreTranslate's
statuses: 400 bad request or unsupported pair, 403 API key, 429 overloaded (with Retry-After); our
limits (413), deadline (504) and shutdown (503) keep their statuses, in its shape.

A text's lines are its sentences: each is decoded as one sentence in the pair's batcher, and the
answer keeps the text's newlines.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nmt.config import decode_options
from nmt.serve.batcher import QueueFull, ShuttingDown
from nmt.serve.config import ServeConfig
from nmt.serve.libre import LibreRequest, libre_fields, read_request
from nmt.serve.pairs import Pairs
from nmt.serve.refusal import MALFORMED, RequestError
from nmt.serve.schema import Sentence, Settings
from nmt.serve.sizes import check_sizes

# Codes of common languages and their English names, as LibreTranslate's /languages names them; a code
# not listed is its own name.
NAMES = {"ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
         "es": "Spanish", "fi": "Finnish", "fr": "French", "hu": "Hungarian", "it": "Italian", "ja": "Japanese",
         "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
         "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese"}
NOT_YET = "is not available yet on this server"

Decode = Callable[..., Awaitable[list]]  # (pair, sentences, settings) -> one record per sentence


def refusal(err: Exception, retry_after_s: int) -> JSONResponse | None:
    """LibreTranslate's answer to a refusal of ours, or None for an exception that is not one."""
    if isinstance(err, RequestError):
        return JSONResponse({"error": err.message}, status_code=err.status)
    if isinstance(err, QueueFull):
        return JSONResponse({"error": f"Slowdown: {err}"}, status_code=429, headers={"Retry-After": str(retry_after_s)})
    if isinstance(err, ShuttingDown):
        return JSONResponse({"error": str(err)}, status_code=503)
    if isinstance(err, asyncio.TimeoutError):
        return JSONResponse({"error": "the request was not answered within this server's --timeout"}, status_code=504)
    return None


def key_given(request: Request, field: str | None, api_key: str | None) -> bool:
    """True when no key is asked for, or the header (Guard's finding) or the api_key field holds it."""
    if api_key is None or request.scope.get("state", {}).get("key_ok"):
        return True
    return field is not None and hmac.compare_digest(field.encode(), api_key.encode())


def _joined(request: LibreRequest, lines: list[list[str]], records: list[dict]) -> dict:
    """The answer: each text its lines' translations joined by newlines, and its alternatives: the
    i-th hypothesis of every line joined so (a line with fewer keeps its best), de-duplicated."""
    found, alternatives, at = [], [], 0
    for text_lines in lines:
        mine, at = records[at:at + len(text_lines)], at + len(text_lines)
        best = "\n".join(record["text"] for record in mine)
        others = ["\n".join((record.get("nbest") or [record])[min(i, len(record.get("nbest") or [record]) - 1)]["text"]
                            for record in mine) for i in range(1, request.alternatives + 1)]
        found.append(best)
        alternatives.append([text for text in dict.fromkeys(others) if text != best])
    answer: dict = {"translatedText": found if request.batch else found[0]}
    if request.alternatives > 0:
        answer["alternatives"] = alternatives if request.batch else alternatives[0]
    return answer


async def translate(request: Request, fields: dict, pairs: Pairs, cfg: ServeConfig, api_key: str | None,
                    decode: Decode) -> dict:
    """LibreTranslate's /translate answer, or RequestError and the batcher's refusals."""
    asked = read_request(fields, cfg)
    if not key_given(request, asked.api_key, api_key):
        raise RequestError(403, "Invalid API key")
    if asked.format == "html":
        raise RequestError(MALFORMED, f"format html {NOT_YET} (only text)")
    if asked.source == "auto":
        raise RequestError(MALFORMED, f"source auto (language detection) {NOT_YET}; name the source language")
    pair = pairs.find(asked.source, asked.target)
    lines = [text.split("\n") for text in asked.texts]
    sentences = [Sentence(line) for text_lines in lines for line in text_lines]
    nbest = asked.alternatives + 1
    check_sizes(len(sentences), sum(len(s.text) for s in sentences), nbest, cfg)
    beam = decode_options(pair.translator.cfg.decode, nbest).beam_size
    if beam > cfg.max_beam_size:
        raise RequestError(MALFORMED, f"Invalid request: alternatives need a beam of {beam}; this server's "
                                      f"largest is {cfg.max_beam_size}")
    records = await decode(pair, sentences, Settings(beam, nbest, None, False, False))
    return _joined(asked, lines, records)


async def respond(request: Request, fields: dict, pairs: Pairs, cfg: ServeConfig, api_key: str | None,
                  decode: Decode, retry_after_s: int) -> JSONResponse:
    """`translate`'s answer, or its refusal in LibreTranslate's shape (other exceptions propagate)."""
    try:
        return JSONResponse(await translate(request, fields, pairs, cfg, api_key, decode))
    except Exception as err:
        if (refused := refusal(err, retry_after_s)) is None:
            raise
        return refused


def languages(pairs: Pairs) -> list[dict]:
    """GET /languages: every code served, with the targets a model translates it into."""
    return [{"code": code, "name": NAMES.get(code, code), "targets": pairs.targets(code)}
            for code in pairs.languages()]


def add_routes(app: FastAPI, pairs: Pairs, api_key: str | None, document: dict) -> None:
    """GET /languages (a body on it is ignored, as libretranslatepy sends one) and POST /detect."""
    @app.get("/languages", summary="LibreTranslate: the languages served and each one's targets",
             responses=document["languages"])
    async def served_languages() -> JSONResponse:
        return JSONResponse(languages(pairs))

    # Not in the document while it only refuses: a schema-valid request answered 400 breaks its contract.
    @app.post("/detect", include_in_schema=False)
    async def detect(request: Request) -> JSONResponse:
        fields = libre_fields(await request.body(), request.headers.get("content-type", ""), request.url.query)
        if not key_given(request, (fields or {}).get("api_key"), api_key):
            return JSONResponse({"error": "Invalid API key"}, status_code=403)
        return JSONResponse({"error": f"language detection {NOT_YET}"}, status_code=400)
