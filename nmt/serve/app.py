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
from nmt.serve.guard import Guard
from nmt.serve.limit import InFlightLimit
from nmt.serve.metrics import CountResponses, Metrics, PrometheusText
from nmt.serve.openapi import RETRY_AFTER, TRANSLATE_REFUSALS, Health, Info, Ready, complete_document, error
from nmt.serve.parts import PartedDecoder
from nmt.serve.schema import MALFORMED, TOO_LARGE, RequestError, TranslateResponse, parse_request, request_schema

log = logging.getLogger("nmt.serve")

# A full queue drains within about a second at the throughput of a small CPU model; clients retry then.
RETRY_AFTER_S = 1
# Hypotheses (without attention) in an answer encoded on the event loop: tens of microseconds.
SMALL_ANSWER = 16
# nginx's "client closed request": never sent (no one listens), but counted in /metrics.
CLIENT_GONE = 499


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with TOO_LARGE (413) as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(TOO_LARGE, f"request body of {declared} bytes; this server takes at most {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(TOO_LARGE, f"request body over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _disconnected(receive) -> None:
    # Once the body is read, the next ASGI message is http.disconnect: it comes when the client hangs up.
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(work, receive):
    """`work`'s result, or ClientGone (and `work` cancelled) as soon as the client hangs up."""
    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # this handler itself was cancelled (the drain's bound passed)
        task.cancel()
        raise
    finally:
        watch.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone()


def _one_line(status: int, detail: str | None = None, headers: dict | None = None):
    """An exception handler answering {"detail": `detail`, else the exception's message}."""
    async def handle(request: Request, err: Exception) -> JSONResponse:
        text = detail or getattr(err, "message", None) or str(err)
        return JSONResponse({"detail": text}, status_code=getattr(err, "status", status), headers=headers)
    return handle


def _refusals(app: FastAPI, metrics: Metrics) -> None:
    """Every error is one JSON line: {"detail": ...}, and for a 500 the id of its logged traceback."""
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
        return JSONResponse({"detail": "internal error", "request_id": request_id}, status_code=500)


def _status_routes(app: FastAPI, batcher: Batcher, metrics: Metrics, cfg: ServeConfig, info: dict) -> None:
    @app.get("/health", summary="Liveness (503 once the decoding worker has stopped) and batching counters",
             response_model=Health, responses={503: {"model": Health, "description": "the worker has stopped"}})
    async def health() -> JSONResponse:
        alive = batcher.alive or batcher.closing
        body = {"status": "ok" if alive else "worker stopped", **dataclasses.asdict(batcher.stats)}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/ready", summary="Readiness: model loaded, worker running, queue below --max-queue, not shutting down",
             response_model=Ready, responses={503: error("shutting down, the worker stopped, or the queue full "
                                                         "(Retry-After)", headers=RETRY_AFTER)})
    async def ready() -> JSONResponse:
        if batcher.closing:
            return JSONResponse({"detail": "the server is shutting down"}, status_code=503)
        if not batcher.alive:
            return JSONResponse({"detail": "the decoding worker has stopped"}, status_code=503)
        if batcher.queued_sentences >= cfg.max_queue:
            return JSONResponse({"detail": f"the queue is full ({batcher.queued_sentences} sentences)"},
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ready", "queued_sentences": batcher.queued_sentences})

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=PrometheusText)
    async def prometheus() -> PrometheusText:
        return PrometheusText(metrics.exposition())

    @app.get("/info", summary="The model, its languages, parameters, decode defaults and this server's limits",
             response_model=Info)
    async def model_info() -> JSONResponse:
        return JSONResponse(info)  # as model_info built it: the document describes it, never filters it


def decode_threads(cfg: ServeConfig, translator) -> tuple[int, int]:
    """How many parts a batch is cut into (--decode-threads; 0: 2 on a CPU, 1 on a GPU) and torch's CPU
    threads for each: together, what one batch would have had."""
    parts = cfg.decode_threads or (1 if translator.device.type == "cuda" else min(2, torch.get_num_threads()))
    return parts, max(1, torch.get_num_threads() // parts)


def create_app(translator, cfg: ServeConfig, info: dict, api_key: str | None = None) -> FastAPI:
    """The application for one loaded `Translator`; `info` is what GET /info reports about the model."""
    parts = PartedDecoder(*decode_threads(cfg, translator))
    decode = functools.partial(translate_records, translator, cfg.batch_sentences, parts)
    metrics = Metrics(queue_depth=lambda: batcher.queued_sentences)
    batcher = Batcher(decode, cfg.batch_wait_ms / 1000, cfg.batch_sentences, cfg.batching, cfg.max_queue, metrics)
    # JSON may spell a character as \\uXXXX, one outside the BMP as two (12 bytes: json.dumps does by
    # default); the rest is room for keys and settings.
    max_bytes = 12 * cfg.max_chars + 65536
    page = resources.files("nmt.serve").joinpath("page.html").read_text(encoding="utf-8")
    timeout = cfg.timeout or None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.close()  # after the server has answered every request in flight
        parts.close()

    app = FastAPI(title="nmt-serve", version=__version__, lifespan=lifespan,
                  docs_url="/docs" if cfg.docs else None, redoc_url="/redoc" if cfg.docs else None,
                  description="Translate with a trained nmt model. Concurrent requests share decoding batches.")
    _refusals(app, metrics)
    _status_routes(app, batcher, metrics, cfg, info)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.post("/translate", summary="Translate one sentence or a list of sentences", response_model=TranslateResponse,
              responses=TRANSLATE_REFUSALS, openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": request_schema(cfg)}}}})
    async def translate(request: Request) -> Response:
        # The body is parsed here rather than by FastAPI so that every refusal is a one-line 400, 413 or 422,
        # and `curl -d` works without a Content-Type header.
        arrived = time.perf_counter()
        sentences, settings = parse_request(await read_body(request, max_bytes), cfg, translator.cfg.decode)
        loop = asyncio.get_running_loop()
        # Tokenising 100 long sentences and encoding a large answer take milliseconds: not on the event loop.
        # Without prefixes, attention or alignments these checks need no tokens, and a few hypotheses
        # encode faster than a thread hop.
        if any(s.prefix for s in sentences):
            await loop.run_in_executor(None, check_prefixes, translator, sentences)
        if settings.attention or settings.alignments:
            await loop.run_in_executor(None, check_budget, translator, sentences, settings, cfg.max_attention)
        records = await unless_disconnected(batcher.translate(sentences, settings, timeout), request.receive)
        if settings.attention or len(sentences) * settings.nbest > SMALL_ANSWER:
            body = await loop.run_in_executor(None, encode, {"translations": records})
        else:
            body = encode({"translations": records})
        metrics.request_seconds.observe(time.perf_counter() - arrived)
        return Response(body, media_type="application/json")

    complete_document(app, cfg, keyed=api_key is not None)
    app.state.batcher, app.state.metrics = batcher, metrics
    if cfg.limit_concurrency:
        app.add_middleware(InFlightLimit, limit=cfg.limit_concurrency, retry_after_s=RETRY_AFTER_S)
    app.add_middleware(CountResponses, metrics=metrics)
    app.add_middleware(Guard, bound_host=cfg.host, allow_hosts=cfg.allow_host, allow_origins=cfg.allow_origin,
                       api_key=api_key)
    return app
