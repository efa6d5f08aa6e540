"""Who may talk to the server: the Host header (DNS rebinding), the Origin header (other web pages)
and an optional API key, checked before any route runs. A pure ASGI middleware, so that a client's
disconnect still reaches the route.

Why: a server on 127.0.0.1 is reachable from any web page the user visits. A cross-origin POST with
Content-Type text/plain needs no CORS preflight, and a rebound DNS name makes the page same-origin
in the browser's eyes, but its Host header still names the attacker's domain.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from nmt.errors import NmtError
from nmt.serve.shape import refuse

API_KEY_ENV = "NMT_SERVE_API_KEY"
# Probes and the page itself need no key: they reveal nothing and decode nothing.
OPEN_PATHS = frozenset({"/", "/health", "/ready", "/languages"})  # LibreTranslate's /languages is open too
# LibreTranslate's clients may send the key as a field of the body: these routes check it themselves,
# with Guard's finding about the headers in scope["state"]["key_ok"].
KEY_IN_ROUTE = frozenset({"/translate", "/detect"})
KEY_REQUIRED = "an API key is required (Authorization: Bearer KEY or X-API-Key: KEY)"
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def load_api_key(path: str) -> str | None:
    """The key from `path` (its first line) or $NMT_SERVE_API_KEY; None: no key is asked for."""
    if path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise NmtError(f"--api-key-file {path}: {err.strerror}") from None
        if not key:
            raise NmtError(f"--api-key-file {path}: the file is empty")
        return _ascii(key, f"--api-key-file {path}")
    key = os.environ.get(API_KEY_ENV) or None
    return key and _ascii(key, f"${API_KEY_ENV}")


def _ascii(key: str, where: str) -> str:
    """HTTP headers carry bytes that servers read as latin-1: a key outside ASCII would never match."""
    bad = next((c for c in key if not c.isascii() or not c.isprintable()), None)
    if bad is not None:
        raise NmtError(f"{where}: the key holds {bad!r}; an API key must be printable ASCII, as HTTP headers carry it")
    return key


def _split(names: str) -> set[str]:
    return {name.strip().lower().rstrip("/") for name in names.split(",") if name.strip()}


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_name(header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1', 'Example.org' -> 'example.org'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: 400 for a foreign Host, 403 for a foreign Origin, 401 without the API key
    (LibreTranslate's routes check the key themselves: 403, its status)."""

    def __init__(self, app, bound_host: str, allow_hosts: str, allow_origins: str, api_key: str | None,
                 max_bytes: int):
        self.app, self.api_key, self.max_bytes = app, api_key, max_bytes
        bound = bound_host.strip("[]").lower()
        self.any_ip = bound in WILDCARDS  # DNS rebinding needs a name: an IP literal is always safe
        self.hosts = {bound} | _split(allow_hosts)
        if bound in ("localhost",) or (_is_ip(bound) and ipaddress.ip_address(bound).is_loopback):
            self.hosts |= {"localhost", "127.0.0.1", "::1"}
        self.origins = _split(allow_origins)

    def refusal(self, scope) -> tuple[int, str, list] | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if host is not None:
            name = host_name(host)
            if not (name in self.hosts or (self.any_ip and _is_ip(name))):
                return 400, f"Host {host!r} is not a name of this server (allow it with --allow-host)", []
        origin = headers.get("origin")
        if origin is not None and "*" not in self.origins:
            own = f"{scope.get('scheme', 'http')}://{host}".lower() if host else None
            if origin.lower().rstrip("/") not in self.origins | {own}:
                return 403, f"Origin {origin!r} may not use this server (allow it with --allow-origin)", []
        if self.api_key is not None and scope["path"] not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            given = auth[len("bearer "):] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
            key_ok = hmac.compare_digest(given.strip().encode(), self.api_key.encode())
            if scope["path"] in KEY_IN_ROUTE:
                scope.setdefault("state", {})["key_ok"] = key_ok
            elif not key_ok:
                return 401, KEY_REQUIRED, [
                    (b"www-authenticate", b"Bearer")]
        return None

    async def __call__(self, scope, receive, send):
        refused = self.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            return await self.app(scope, receive, send)
        await refuse(scope, receive, send, *refused, max_bytes=self.max_bytes)  # in the request's API's shape
