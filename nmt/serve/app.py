"""The HTTP routes: / (the page), POST /translate, GET /health, GET /info; OpenAPI at /docs and /openapi.json."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from nmt import __version__
from nmt.config import ServeConfig
from nmt.serve.batcher import Batcher, ShuttingDown
from nmt.serve.schema import RequestError, TranslateRequest, TranslateResponse, parse_request, translate_records

ERROR = {"content": {"application/json": {"example": {"detail": "beam_size: at most 16 on this server, got 50"}}}}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"request body of {declared} bytes; this server takes at most {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"request body over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(translator, cfg: ServeConfig, info: dict) -> FastAPI:
    """The application for one loaded `Translator`; `info` is what GET /info reports about the model."""
    decode = functools.partial(translate_records, translator, cfg.batch_sentences)
    batcher = Batcher(decode, cfg.batch_wait_ms / 1000, cfg.batch_sentences, cfg.batching)
    # JSON may spell a character as \\uXXXX (6 bytes); the rest is room for keys and settings.
    max_bytes = 6 * cfg.max_chars + 65536
    page = resources.files("nmt.serve").joinpath("page.html").read_text(encoding="utf-8")
    default_beam = translator.cfg.decode.beam_size

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.close()  # after the server has answered every request in flight

    app = FastAPI(title="nmt-serve", version=__version__, lifespan=lifespan,
                  description="Translate with a trained nmt model. Concurrent requests share decoding batches.")

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request: Request, err: ShuttingDown) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", summary="Liveness and batching counters")
    async def health() -> dict:
        return {"status": "ok", **dataclasses.asdict(batcher.stats)}

    @app.get("/info", summary="The model, its languages, parameters, decode defaults and this server's limits")
    async def model_info() -> dict:
        return info

    @app.post("/translate", summary="Translate one sentence or a list of sentences", response_model=TranslateResponse,
              responses={400: {"description": "malformed JSON, a wrong type or an unknown setting", **ERROR},
                         413: {"description": "more sentences or characters than this server takes", **ERROR}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": TranslateRequest.model_json_schema()}}}})
    async def translate(request: Request) -> JSONResponse:
        # The body is parsed here rather than by FastAPI so that every refusal is a one-line 400 or 413,
        # and `curl -d` works without a Content-Type header.
        lines, settings = parse_request(await read_body(request, max_bytes), cfg, default_beam)
        return JSONResponse({"translations": await batcher.translate(lines, settings)})

    app.state.batcher = batcher
    return app
