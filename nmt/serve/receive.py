"""A request's body, read within the size limit, and its client's disconnect, watched while it waits."""

from __future__ import annotations

import asyncio

from fastapi import Request

from nmt.serve.refusal import TOO_LARGE, RequestError

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
