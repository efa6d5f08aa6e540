"""A refusal made before any route runs (Guard's Host, Origin and key rules, InFlightLimit), in the
shape of the API the request speaks: ours `{"detail": ...}`, LibreTranslate's `{"error": ...}` with
its status for an overloaded server, 429 (ours: 503), as its clients expect.

Which API a /translate request speaks is in its body (nmt/serve/libre.py), so a refusal of one reads
the body first: at most the size a route would read, and for at most BODY_WAIT_S, since a refused
client need not be waited for. A body cut short by either bound is judged by what arrived (a JSON
object cut short reads as ours unless its query string names LibreTranslate's fields). Only refused
requests are read here: a request let through reaches its route with its body unread.
"""

from __future__ import annotations

import asyncio
import json

from nmt.serve.libre import is_libre

# Enough for a client on loopback or a LAN to send a body of the size limit; a slower one is judged
# by the part that arrived.
BODY_WAIT_S = 2.0
# LibreTranslate's status for "too many requests now" (its rate limits and its full queue), where ours is 503.
LIBRE_OVERLOADED = 429


async def _read(receive, chunks: list[bytes], max_bytes: int) -> None:
    """Append the body's chunks to `chunks` until it ends, the client goes, or over `max_bytes` arrived."""
    while sum(map(len, chunks)) <= max_bytes:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client is gone
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def speaks_libre(scope, receive, max_bytes: int) -> bool:
    """Whether the request is LibreTranslate's (the rule of nmt/serve/libre.py), its body read if need be."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    chunks: list[bytes] = []
    if scope["path"] == "/translate":
        try:
            await asyncio.wait_for(_read(receive, chunks, max_bytes), BODY_WAIT_S)
        except asyncio.TimeoutError:
            pass  # judged by what arrived
    body = b"".join(chunks)[:max_bytes]
    query = scope.get("query_string", b"").decode("latin-1")
    return is_libre(scope["path"], body, headers.get("content-type", ""), query)


async def refuse(scope, receive, send, status: int, detail: str, headers: list, max_bytes: int,
                 overloaded: bool = False) -> None:
    """Answer `status` with {"detail": `detail`} in one JSON line, or, for a LibreTranslate request,
    {"error": `detail`} (with 429 when `overloaded`)."""
    if await speaks_libre(scope, receive, max_bytes):
        body, status = {"error": detail}, LIBRE_OVERLOADED if overloaded else status
    else:
        body = {"detail": detail}
    encoded = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode()), *headers]})
    await send({"type": "http.response.body", "body": encoded})
