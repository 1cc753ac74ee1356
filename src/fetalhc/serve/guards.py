"""What every request passes first: the Host header (DNS rebinding), the security
headers, the body's size limit."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    ),
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """Whether an address to bind (or a Host name) is this machine only."""
    import ipaddress

    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LimitBody:
    """ASGI middleware: a request body (chunked or not) stops being read at `limit` bytes
    and is answered 413 — nothing past the limit is spooled to memory or disk. The app
    then sees the client as gone, and whatever it would still send is dropped."""

    def __init__(self, app, limit: int, message: str) -> None:
        self.app, self.limit, self.message = app, limit, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0
        state = {"started": False, "refused": False}

        async def counted():
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not state["started"]:
                    state["refused"] = True
                    response = JSONResponse({"detail": self.message}, 413, headers=SECURITY_HEADERS)
                    await response(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message):
            if state["refused"]:
                return  # the 413 has been sent
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not state["refused"]:
                raise
