"""Who may talk to the service: origins (CSRF), tokens, and a slowdown for guessing.

An origin is scheme, host and port (RFC 6454): a page on another port of the same machine
is another program's page, so only the service's own origin — as the browser reached it,
the request's Host header over plain HTTP — and the `--allow-origin` ones may post.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# A token shorter than this is refused: 12 random URL-safe characters are 72 bits.
MIN_TOKEN_LENGTH = 12
# Failed tokens allowed per client in FAILURE_WINDOW_S seconds before it must wait.
MAX_FAILURES = 10
FAILURE_WINDOW_S = 60.0


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header or URL; None if it is not one (`null`)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def own_origin(host_header: str) -> tuple[str, str, int] | None:
    """The service's own origin as a browser reached it: plain HTTP at the Host header."""
    return origin_key(f"http://{host_header.strip()}")


def may_post(origin: str | None, host_header: str, allowed: set[tuple]) -> bool:
    """Whether a request with this Origin header may change something. No Origin (a
    non-browser client, or a same-origin GET-like form some browsers send without one)
    is left to the Sec-Fetch-Site check and the token."""
    if origin is None:
        return True
    key = origin_key(origin)
    return key is not None and (key == own_origin(host_header) or key in allowed)


def bearer_token(authorization: str, fallback: str = "") -> str:
    """The token of an `Authorization: Bearer TOKEN` header (the scheme's case does not
    matter, RFC 7235), else `fallback` (the X-Fetalhc-Token header)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return fallback


def token_matches(given: str, expected: str) -> bool:
    """Constant time whatever the lengths: the digests are compared, not the strings."""
    digest = lambda s: hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest()  # noqa: E731
    return hmac.compare_digest(digest(given), digest(expected))


def token_problem(token: str | None) -> str:
    """'' if `token` is usable as the service's token (None: no token), else why not."""
    if token is None:
        return ""
    if not token.strip():
        return "--token is empty: give a secret (or leave --token out on loopback)"
    if any(not (33 <= ord(c) <= 126) for c in token):
        return "--token: use visible ASCII characters only (no spaces), as an HTTP header holds"
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"--token is {len(token)} characters: use at least {MIN_TOKEN_LENGTH}, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    return ""


class FailedAttempts:
    """Per client, the times of its recent failed tokens: past MAX_FAILURES within
    FAILURE_WINDOW_S it waits until the oldest one ages out (right token or not)."""

    def __init__(self, limit: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}

    def wait_s(self, client: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        times = self._failures.get(client)
        if not times:
            return 0.0
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return 0.0
        return self.window_s - (now - times[0]) if len(times) >= self.limit else 0.0

    def record(self, client: str, now: float | None = None) -> None:
        if len(self._failures) > 10_000:  # many clients: forget the quiet ones
            self._failures = {k: v for k, v in self._failures.items() if len(v) >= 2}
        self._failures.setdefault(client, deque(maxlen=self.limit)).append(
            time.monotonic() if now is None else now
        )
