"""--limit-concurrency: at most so many requests in flight at once; more are refused with 503 and
Retry-After, as one JSON line like every other error (uvicorn's own limit answers in plain text);
a LibreTranslate request gets 429 {"error": ...}, its clients' status for "too many requests".
The probes are never refused: an orchestrator must see an overloaded server as alive."""

from __future__ import annotations

from nmt.serve.guard import OPEN_PATHS
from nmt.serve.shape import refuse


class InFlightLimit:
    """ASGI middleware: 503 (LibreTranslate's: 429) for a request beyond `limit` in flight (probes and
    the page excepted)."""

    def __init__(self, app, limit: int, retry_after_s: int, max_bytes: int):
        self.app, self.limit, self.retry_after, self.max_bytes = app, limit, str(retry_after_s).encode(), max_bytes
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            return await refuse(scope, receive, send, 503, f"{self.in_flight} requests are in flight; this server "
                                f"takes at most {self.limit} at once", [(b"retry-after", self.retry_after)],
                                self.max_bytes, overloaded=True)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
