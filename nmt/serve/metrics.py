"""GET /metrics in Prometheus text format (prometheus-client), on a registry of this app's own, so that
two apps in one process (tests) count apart."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

# Batch sizes in sentences, up to a few hundred (--batch-sentences is 64 by default; a request goes whole).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Seconds: a lone sentence decodes in tens of milliseconds on a CPU, a full batch of beam 16 in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class PrometheusText(Response):
    """GET /metrics's answer; as a route's response_class, its media type is what /openapi.json states."""

    media_type = CONTENT_TYPE
ROUTES = frozenset({"/", "/translate", "/languages", "/detect", "/health", "/ready", "/info", "/metrics", "/openapi.json", "/docs", "/redoc"})


class Metrics:
    """The server's counters; `queue_depth` is read at each scrape."""

    def __init__(self, queue_depth: Callable[[], float]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("nmt_serve_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.sentences = Counter("nmt_serve_sentences", "sentences decoded", registry=r)
        self.dropped = Counter("nmt_serve_dropped_requests", "requests that left the queue undecoded, by reason",
                               ["reason"], registry=r)
        self.batch_sentences = Histogram("nmt_serve_batch_sentences", "sentences per decoding batch",
                                         buckets=BATCH_BUCKETS, registry=r)
        self.decode_seconds = Histogram("nmt_serve_decode_seconds", "seconds a decoding batch took",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("nmt_serve_request_seconds", "seconds from a /translate request's "
                                         "arrival to its answer", buckets=LATENCY_BUCKETS, registry=r)
        Gauge("nmt_serve_queue_sentences", "sentences waiting for the decoding worker",
              registry=r).set_function(queue_depth)
        for reason in ("timeout", "cancelled"):  # present from the start, at 0
            self.dropped.labels(reason)
        self.pair_sentences = Counter("nmt_serve_pair_sentences", "sentences decoded, by language pair",
                                      ["pair"], registry=r)
        self.pair_queue = Gauge("nmt_serve_pair_queue_sentences", "sentences waiting for a pair's decoding "
                                "worker", ["pair"], registry=r)

    def for_pair(self, pair: str, queue_depth: Callable[[], float]) -> "PairMetrics":
        """The observer of one pair's batcher: the server's totals and the pair's own."""
        self.pair_sentences.labels(pair)
        self.pair_queue.labels(pair).set_function(queue_depth)
        return PairMetrics(self, pair)

    @staticmethod
    def route(path: str) -> str:
        """A label for `path`: the route, or "other" (a label per unknown path would grow without bound)."""
        return path if path in ROUTES else "other"

    def dropped_request(self, reason: str) -> None:
        self.dropped.labels(reason).inc()

    def batch(self, sentences: int, seconds: float) -> None:
        self.sentences.inc(sentences)
        self.batch_sentences.observe(sentences)
        self.decode_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class PairMetrics:
    """A batcher's Observer: counts into the server's totals and into its pair's series."""

    def __init__(self, metrics: Metrics, pair: str):
        self.metrics, self.pair = metrics, pair

    def dropped_request(self, reason: str) -> None:
        self.metrics.dropped_request(reason)

    def batch(self, sentences: int, seconds: float) -> None:
        self.metrics.batch(sentences, seconds)
        self.metrics.pair_sentences.labels(self.pair).inc(sentences)


class CountResponses:
    """ASGI middleware counting answers by route and status (500s are counted by their handler, which
    answers outside this middleware)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = self.metrics.route(scope["path"])

        async def counted(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)
