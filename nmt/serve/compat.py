"""LibreTranslate's API beside ours: GET /languages, POST /detect, and its POST /translate
(libre.py says which /translate requests are its). Errors are {"error": ...}, with LibreTranslate's
statuses: 400 bad request or unsupported pair, 403 API key, 429 overloaded (with Retry-After); our
limits (413), deadline (504) and shutdown (503) keep their statuses, in its shape.

A text (a paragraph, or with format html a fragment) is split into sentences by
nmt.translate.paragraphs.segments, each decoded as one sentence in the pair's batcher, and joined back
with the text's own whitespace, newlines and markup. `source: auto` and /detect ask
nmt.translate.language.detect_language among the served sources (into the target, for /translate).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nmt.config import decode_options
from nmt.errors import NmtError
from nmt.serve.batcher import QueueFull, ShuttingDown
from nmt.serve.config import ServeConfig
from nmt.serve.libre import DETECT_FIELDS, LibreRequest, given_fields, read_detect, read_request
from nmt.serve.pairs import Pairs
from nmt.serve.refusal import MALFORMED, RequestError
from nmt.serve.schema import Sentence, Settings
from nmt.serve.sizes import check_sizes
from nmt.translate.language import detect_language
from nmt.translate.paragraphs import Segmented, segments

# Codes of common languages and their English names, as LibreTranslate's /languages names them; a code
# not listed is its own name.
NAMES = {"ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
         "es": "Spanish", "fi": "Finnish", "fr": "French", "hu": "Hungarian", "it": "Italian", "ja": "Japanese",
         "ko": "Korean", "nl": "Dutch", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
         "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese"}

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


def _joined(request: LibreRequest, parts: list[Segmented], records: list[dict], detected: dict | None) -> dict:
    """The answer: each text rebuilt around its sentences' translations, and its alternatives: the
    i-th hypothesis of every sentence put back so (a sentence with fewer keeps its best), de-duplicated."""
    found, alternatives, at = [], [], 0
    for part in parts:
        mine, at = records[at:at + len(part.sentences)], at + len(part.sentences)
        best = part.join([record["text"] for record in mine])
        ranked = [record.get("nbest") or [record] for record in mine]
        others = [part.join([hyps[min(i, len(hyps) - 1)]["text"] for hyps in ranked])
                  for i in range(1, request.alternatives + 1)]
        found.append(best)
        alternatives.append([text for text in dict.fromkeys(others) if text != best])
    answer: dict = {"translatedText": found if request.batch else found[0]}
    if detected is not None:
        answer["detectedLanguage"] = [detected] * len(found) if request.batch else detected
    if request.alternatives > 0:
        answer["alternatives"] = alternatives if request.batch else alternatives[0]
    return answer


def detect(texts: list[str], candidates: list[str]) -> list[dict]:
    """LibreTranslate's detections of `texts` taken together, best first; RequestError 400 when the
    identifier cannot tell these candidates."""
    try:
        guesses = detect_language(["\n".join(texts)], candidates)[0]
    except NmtError as err:
        raise RequestError(MALFORMED, str(err)) from None
    return [{"confidence": guess.confidence, "language": guess.language} for guess in guesses]


async def translate(request: Request, fields: dict, pairs: Pairs, cfg: ServeConfig, api_key: str | None,
                    decode: Decode) -> dict:
    """LibreTranslate's /translate answer, or RequestError and the batcher's refusals."""
    asked = read_request(fields, cfg)
    if not key_given(request, asked.api_key, api_key):
        raise RequestError(403, "Invalid API key")
    detected, source = None, asked.source
    if asked.source == "auto":  # the identifier loads on first use (about a second): off the event loop
        candidates = pairs.sources_into(asked.target)
        if not candidates:
            raise RequestError(MALFORMED, f"{asked.target} is not supported as a target")
        loop = asyncio.get_running_loop()
        detected = (await loop.run_in_executor(None, detect, asked.texts, candidates))[0]
        source = detected["language"]
    pair = pairs.find(source, asked.target)
    parts = [segments(text, pair.source, asked.format == "html") for text in asked.texts]
    sentences = [Sentence(sentence) for part in parts for sentence in part.sentences]
    nbest = asked.alternatives + 1
    check_sizes(len(sentences), sum(len(s.text) for s in sentences), nbest, cfg)
    beam = decode_options(pair.translator.cfg.decode, nbest).beam_size
    if beam > cfg.max_beam_size:
        raise RequestError(MALFORMED, f"Invalid request: alternatives need a beam of {beam}; this server's "
                                      f"largest is {cfg.max_beam_size}")
    records = await decode(pair, sentences, Settings(beam, nbest, None, False, False)) if sentences else []
    return _joined(asked, parts, records, detected)


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


def add_routes(app: FastAPI, pairs: Pairs, api_key: str | None, document: dict, read_body) -> None:
    """GET /languages (a body on it is ignored, as libretranslatepy sends one) and POST /detect
    (`read_body(request)`: its body within the size limit, else RequestError TOO_LARGE)."""
    @app.get("/languages", summary="LibreTranslate: the languages served and each one's targets",
             responses=document["languages"])
    async def served_languages() -> JSONResponse:
        return JSONResponse(languages(pairs))

    # The document states it only where the identifier knows every served source (openapi.py).
    @app.post("/detect", summary="LibreTranslate: the language of q among the served sources, best first",
              responses=document["detect"], openapi_extra={"requestBody": document["detect_body"]})
    async def detect_route(request: Request) -> JSONResponse:
        body = await read_body(request)
        fields, _ = given_fields(body, request.headers.get("content-type", ""), request.url.query, DETECT_FIELDS)
        texts, key = read_detect(fields)
        if not key_given(request, key, api_key):
            return JSONResponse({"error": "Invalid API key"}, status_code=403)
        return JSONResponse(await asyncio.get_running_loop().run_in_executor(None, detect, texts, pairs.sources()))
