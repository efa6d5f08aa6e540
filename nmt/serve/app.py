"""The HTTP routes: / (the page), POST /translate, GET /health, /ready, /info, /metrics and /openapi.json
(/docs and /redoc with --docs: they load Swagger UI and ReDoc from a CDN)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import uuid
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from nmt import __version__
from nmt.serve.answer import check_budget, check_prefixes, encode, translate_records
from nmt.serve.batcher import Batcher, QueueFull, ShuttingDown
from nmt.serve.config import ServeConfig
from nmt.serve import compat
from nmt.serve.guard import KEY_REQUIRED, Guard
from nmt.serve.limit import InFlightLimit
from nmt.serve.metrics import CountResponses, Metrics, PrometheusText
from nmt.serve.libre import FORM, LIBRE_PATHS, libre_fields
from nmt.serve.openapi import RETRY_AFTER, Health, Info, LibreAnswer, Ready, complete_document, error, libre_document
from nmt.serve.pairs import Pair, Pairs
from nmt.serve.receive import CLIENT_GONE, ClientGone, read_body, unless_disconnected
from nmt.serve.parts import PartedDecoder
from nmt.serve.refusal import MALFORMED, RequestError
from nmt.serve.schema import TranslateResponse, parse_request, request_schema
from nmt.translate.language import can_tell

log = logging.getLogger("nmt.serve")

# A full queue drains within about a second at the throughput of a small CPU model; clients retry then.
RETRY_AFTER_S = 1
# Hypotheses (without attention) in an answer encoded on the event loop: tens of microseconds.
SMALL_ANSWER = 16
def _libre(request: Request) -> bool:
    """Whether the request is LibreTranslate's: one of its routes, or a /translate request its route found so."""
    return request.url.path in LIBRE_PATHS or bool(request.scope.get("state", {}).get("libre"))


def _whose(request: Request, body: bytes) -> dict | None:
    """The request's LibreTranslate fields (None: ours), request.state.libre set to say which API's
    shape its refusals take."""
    try:
        fields = libre_fields(body, request.headers.get("content-type", ""), request.url.query)
    except RequestError:  # a LibreTranslate field given twice: only its requests name its fields
        request.state.libre = True
        raise
    request.state.libre = fields is not None
    return fields


def _one_line(status: int, detail: str | None = None, headers: dict | None = None):
    """An exception handler answering {"detail": `detail`, else the exception's message} ({"error": ...}
    to a LibreTranslate request)."""
    async def handle(request: Request, err: Exception) -> JSONResponse:
        text = detail or getattr(err, "message", None) or str(err)
        return JSONResponse({"error" if _libre(request) else "detail": text},
                            status_code=getattr(err, "status", status), headers=headers)
    return handle


def _refusals(app: FastAPI, metrics: Metrics) -> None:
    """Every error is one JSON line: {"detail": ...}, and for a 500 the id of its logged traceback
    (LibreTranslate's requests: {"error": ...}, the id in it)."""
    app.add_exception_handler(RequestError, _one_line(MALFORMED))
    app.add_exception_handler(ShuttingDown, _one_line(503))
    app.add_exception_handler(QueueFull, _one_line(503, headers={"Retry-After": str(RETRY_AFTER_S)}))
    # asyncio.wait_for's timeout: asyncio.TimeoutError (the builtin TimeoutError only from Python 3.11).
    app.add_exception_handler(asyncio.TimeoutError, _one_line(504, "the request was not answered within this "
                                                          "server's --timeout"))
    app.add_exception_handler(ClientGone, _one_line(CLIENT_GONE, "client closed the request"))

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:16]
        log.error("request %s (%s %s) failed: %r", request_id, request.method, request.url.path, err, exc_info=err)
        metrics.requests.labels(metrics.route(request.url.path), "500").inc()
        if _libre(request):
            return JSONResponse({"error": f"internal error (logged as request {request_id})"}, status_code=500)
        return JSONResponse({"detail": "internal error", "request_id": request_id}, status_code=500)


def _status_routes(app: FastAPI, pairs: Pairs, metrics: Metrics, cfg: ServeConfig) -> None:
    @app.get("/health", summary="Liveness (503 once a decoding worker has stopped) and batching counters, "
             "summed over the pairs", response_model=Health,
             responses={503: {"model": Health, "description": "a worker has stopped"}})
    async def health() -> JSONResponse:
        alive = all(p.batcher.alive or p.batcher.closing for p in pairs)
        counters = [dataclasses.asdict(p.batcher.stats) for p in pairs]
        summed = {name: (any if isinstance(value, bool) else sum)(c[name] for c in counters)
                  for name, value in counters[0].items()}
        return JSONResponse({"status": "ok" if alive else "worker stopped", **summed}, status_code=200 if alive else 503)

    @app.get("/ready", summary="Readiness: models loaded, workers running, each pair's queue below --max-queue, "
             "not shutting down", response_model=Ready,
             responses={503: error("shutting down, a worker stopped, or a pair's queue full (Retry-After)",
                                   headers=RETRY_AFTER)})
    async def ready() -> JSONResponse:
        for pair in pairs:
            batcher = pair.batcher
            if batcher.closing:
                return JSONResponse({"detail": "the server is shutting down"}, status_code=503)
            if not batcher.alive:
                return JSONResponse({"detail": f"the decoding worker of {pair.name} has stopped"}, status_code=503)
            if batcher.queued_sentences >= cfg.max_queue:
                return JSONResponse({"detail": f"the queue of {pair.name} is full ({batcher.queued_sentences} "
                                               "sentences)"}, status_code=503,
                                    headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ready", "queued_sentences": sum(p.batcher.queued_sentences for p in pairs),
                             "pairs": {p.name: {"queued_sentences": p.batcher.queued_sentences} for p in pairs}})

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=PrometheusText)
    async def prometheus() -> PrometheusText:
        return PrometheusText(metrics.exposition())

    # As model_info built it: the document describes it, never filters it. The first pair at the top level.
    info = {**pairs.first.info, "pairs": {pair.name: pair.info for pair in pairs}}

    @app.get("/info", summary="The models (the first one at the top level, each under pairs), their languages, "
             "parameters, decode defaults and this server's limits", response_model=Info)
    async def model_info() -> JSONResponse:
        return JSONResponse(info)


def decode_threads(cfg: ServeConfig, translator) -> tuple[int, int]:
    """How many parts a batch is cut into (--decode-threads; 0: 2 on a CPU, 1 on a GPU) and torch's CPU
    threads for each: together, what one batch would have had."""
    parts = cfg.decode_threads or (1 if translator.device.type == "cuda" else min(2, torch.get_num_threads()))
    return parts, max(1, torch.get_num_threads() // parts)


async def _ours(request: Request, body: bytes, pairs: Pairs, cfg: ServeConfig, decode) -> bytes:
    """Our /translate: the answer's JSON, or RequestError and the batcher's refusals."""
    parsed = parse_request(body, cfg, lambda source, target: pairs.find(source, target).translator.cfg.decode)
    pair, sentences, settings = pairs.find(parsed.source, parsed.target), parsed.sentences, parsed.settings
    loop = asyncio.get_running_loop()
    # Tokenising 100 long sentences and encoding a large answer take milliseconds: not on the event loop.
    # Without prefixes, attention or alignments these checks need no tokens, and a few hypotheses
    # encode faster than a thread hop.
    if any(s.prefix for s in sentences):
        await loop.run_in_executor(None, check_prefixes, pair.translator, sentences)
    if settings.attention or settings.alignments:
        await loop.run_in_executor(None, check_budget, pair.translator, sentences, settings, cfg.max_attention)
    records = await decode(pair, sentences, settings, request.receive)
    if settings.attention or len(sentences) * settings.nbest > SMALL_ANSWER:
        return await loop.run_in_executor(None, encode, {"translations": records})
    return encode({"translations": records})


@contextlib.asynccontextmanager
async def _lifespan(pairs: Pairs, parts: PartedDecoder, app: FastAPI):
    for pair in pairs:
        pair.batcher.start()
    # The identifier loads now (several sources: about a second), off the event loop: the first /detect or
    # `source: auto` does not wait for it, and /openapi.json knows whether /detect can answer.
    await asyncio.get_running_loop().run_in_executor(None, can_tell, pairs.sources())
    yield
    for pair in pairs:
        await pair.batcher.close()  # after the server has answered every request in flight
    parts.close()


def _batchers(pairs: Pairs, cfg: ServeConfig, parts: PartedDecoder, metrics: Metrics) -> None:
    """A batcher of its own for each pair: a batch never mixes two models."""
    for pair in pairs:
        decode = functools.partial(translate_records, pair.translator, cfg.batch_sentences, parts)
        observer = metrics.for_pair(pair.name, lambda pair=pair: pair.batcher.queued_sentences)
        pair.batcher = Batcher(decode, cfg.batch_wait_ms / 1000, cfg.batch_sentences, cfg.batching, cfg.max_queue,
                               observer)


def create_app(served, cfg: ServeConfig, info: dict | None = None, api_key: str | None = None) -> FastAPI:
    """The application for `served`: Pairs, or one loaded `Translator` whose /info is `info`. The
    decoding threads serve every pair: one batch at a time has the CPU, whichever its pair."""
    pairs = served if isinstance(served, Pairs) else Pairs([Pair(
        served.cfg.data.src_lang, served.cfg.data.tgt_lang, served, info or {})])
    parts = PartedDecoder(*decode_threads(cfg, pairs.first.translator))
    metrics = Metrics(queue_depth=lambda: sum(pair.batcher.queued_sentences for pair in pairs))
    _batchers(pairs, cfg, parts, metrics)
    # A character as \\uXXXX, one outside the BMP as two (12 bytes, as json.dumps does); the rest: keys, settings.
    max_bytes = 12 * cfg.max_chars + 65536
    page = resources.files("nmt.serve").joinpath("page.html").read_text(encoding="utf-8")
    timeout = cfg.timeout or None

    app = FastAPI(title="nmt-serve", version=__version__, lifespan=functools.partial(_lifespan, pairs, parts),
                  docs_url="/docs" if cfg.docs else None, redoc_url="/redoc" if cfg.docs else None,
                  description="Translate with trained nmt models: our API, and LibreTranslate's (POST /translate "
                              "with q, GET /languages, POST /detect). Concurrent requests share decoding batches.")
    _refusals(app, metrics)
    _status_routes(app, pairs, metrics, cfg)
    compat.add_routes(app, pairs, api_key, document := libre_document(cfg, pairs),
                      functools.partial(read_body, max_bytes=max_bytes))

    app.get("/", response_class=HTMLResponse, include_in_schema=False)(lambda: HTMLResponse(page))
    async def decode(pair: Pair, sentences: list, settings, receive) -> list:
        return await unless_disconnected(pair.batcher.translate(sentences, settings, timeout), receive)

    @app.post("/translate", summary="Translate: our API (a JSON body with text) or LibreTranslate's (q: "
              "docs/serving.md)", response_model=TranslateResponse | LibreAnswer, responses=document["translate"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"anyOf": [request_schema(cfg, pairs.schema()),
                                                            document["json"]]}},
                  FORM: {"schema": document["form"]}}}})
    async def translate(request: Request) -> Response:
        # The body is parsed here rather than by FastAPI so that every refusal is a one-line 400, 413 or 422,
        # and `curl -d` works without a Content-Type header.
        arrived = time.perf_counter()
        _whose(request, b"")  # until the body says (one over the limit is never read to the end): the query's
        body = await read_body(request, max_bytes)
        if (fields := _whose(request, body)) is not None:
            answer = await compat.respond(request, fields, pairs, cfg, api_key,
                                          lambda *args: decode(*args, request.receive), RETRY_AFTER_S)
            metrics.request_seconds.observe(time.perf_counter() - arrived)
            return answer
        if not compat.key_given(request, None, api_key):
            return JSONResponse({"detail": KEY_REQUIRED}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await _ours(request, body, pairs, cfg, decode)
        metrics.request_seconds.observe(time.perf_counter() - arrived)
        return Response(body, media_type="application/json")

    complete_document(app, cfg, keyed=api_key is not None, detects=lambda: can_tell(pairs.sources()))
    app.state.batcher, app.state.pairs, app.state.metrics = pairs.first.batcher, pairs, metrics
    if cfg.limit_concurrency:
        app.add_middleware(InFlightLimit, limit=cfg.limit_concurrency, retry_after_s=RETRY_AFTER_S,
                           max_bytes=max_bytes)
    app.add_middleware(CountResponses, metrics=metrics)
    app.add_middleware(Guard, bound_host=cfg.host, allow_hosts=cfg.allow_host, allow_origins=cfg.allow_origin,
                       api_key=api_key, max_bytes=max_bytes)
    return app
