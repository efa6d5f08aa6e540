"""`nmt-serve`'s settings: one typed field each, every flag of the command (`nmt-serve --help`)."""

from __future__ import annotations

from dataclasses import dataclass

from nmt.config import INFERENCE_DTYPES
from nmt.typed_yaml import option

# The limits GET /info reports, by ServeConfig field (its document takes their types from there).
INFO_LIMITS = ("max_sentences", "max_chars", "max_beam_size", "max_length_penalty", "max_hypotheses",
               "max_attention", "max_queue", "timeout")


@dataclass
class ServeConfig:
    """`nmt-serve` settings (command-line flags, not part of a recipe or checkpoint)."""

    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = option(8000, "TCP port", min=0)
    batch_wait_ms: float = option(20.0, "under load (requests waiting as a batch ends), how long the next batch "
                                        "waits for the clients just answered to send again (it starts sooner once "
                                        "they have, or once full); an idle server decodes a request at once", min=0)
    batch_sentences: int = option(64, "sentences per decoding batch (requests are never split)", min=1)
    batching: bool = option(True, "concurrent requests share decoding batches (off: each request "
                                         "is decoded alone, in arrival order)")
    decode_threads: int = option(0, "threads that decode a batch at once, each a part of similar sentence "
                                    "lengths with its share of torch's CPU threads (0: 2 on a CPU, 1 on a GPU)",
                                 min=0)
    max_sentences: int = option(100, "sentences per request; more is refused with 413", min=1)
    max_chars: int = option(20_000, "characters per request, all sentences together; more is refused with 413", min=1)
    max_beam_size: int = option(16, "largest beam size (and n-best) a request may ask for", min=1)
    max_length_penalty: float = option(5.0, "largest length_penalty a request may ask for (larger ones "
                                            "overflow the score of long hypotheses)", min=0)
    max_hypotheses: int = option(400, "sentences x nbest per request; more is refused with 413", min=1)
    max_attention: int = option(250_000, "attention weights per request with attention or alignments (made "
                                         "from them on the decoding worker), counted at the output length cap "
                                         "(sentences x nbest x rows x columns; sent, about 20 bytes of JSON "
                                         "each); more is refused with 413", min=1)
    max_queue: int = option(1000, "sentences waiting for the decoding worker; a request that would pass it is "
                                  "refused with 503 and Retry-After", min=1)
    timeout: float = option(60.0, "seconds a request may wait and decode; later it is answered 504 and its "
                                  "queued work dropped (0 = no deadline)", min=0)
    allow_origin: str = option("", "comma-separated origins (scheme://host:port) whose browser requests are "
                                   "served besides the server's own; '*' = any; others get 403")
    allow_host: str = option("", "comma-separated host names accepted in the Host header besides the bound "
                                 "address (and localhost when bound to loopback); others get 400 (DNS rebinding)")
    api_key_file: str = option("", "file holding an API key that requests must send (Authorization: Bearer KEY "
                                   "or X-API-Key: KEY), else 401; $NMT_SERVE_API_KEY sets one too")
    docs: bool = option(False, "serve Swagger UI at /docs and ReDoc at /redoc (they load scripts from a CDN; "
                               "/openapi.json is always served)")
    limit_concurrency: int = option(0, "requests in flight at once (the probes excepted); more get 503 and "
                                       "Retry-After (0 = no limit)", min=0)
    keep_alive_s: float = option(5.0, "uvicorn: seconds an idle keep-alive connection stays open", min=0)
    drain_timeout: float = option(30.0, "on SIGTERM, seconds to answer the requests in flight; those still "
                                        "unanswered then get 503, and the server exits", min=0)
    device: str = option("", "cpu, cuda, cuda:1, ... (empty: cuda if available)")
    dtype: str = option("fp32", "inference precision", choices=INFERENCE_DTYPES)
    access_log: bool = option(False, "log one line per request")
