"""Origins are scheme, host and port; tokens are compared in constant time, refused when
weak, read case-insensitively, and guessing is slowed down (hostile round 4)."""

from __future__ import annotations

import pytest

from fetalhc.serve.security import (
    FailedAttempts,
    bearer_token,
    may_post,
    origin_key,
    token_matches,
    token_problem,
)
from tests.conftest import run_cli
from tests.doubles import NeverMeasures

STRONG = "k3P9-wq7ZrT2xV1m"


def service(**config):
    from fastapi.testclient import TestClient

    from fetalhc.serve.app import ServiceConfig, create_app

    return TestClient(
        create_app(NeverMeasures(), ServiceConfig(**config)), base_url="http://127.0.0.1:8000"
    )


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9000",  # another program on this machine
        "http://localhost:8000",  # another host name is another origin
        "http://[::1]:8000",
        "https://127.0.0.1:8000",  # another scheme
        "http://127.0.0.1",  # the host without the port: port 80
        "null",
        "http://127.0.0.1:8000@evil.example",
    ],
)
def test_only_the_services_own_origin_may_post(origin):
    assert not may_post(origin, "127.0.0.1:8000", set())
    with service() as c:
        r = c.post("/api/v1/measure", files={"file": ("a.png", b"x")}, headers={"Origin": origin})
        assert r.status_code == 403 and "may not post" in r.json()["detail"]
        sr = c.post(
            "/api/v1/measure/sr", files={"file": ("a.png", b"x")}, headers={"Origin": origin}
        )
        assert sr.status_code == 403


def test_the_own_origin_and_allowed_ones_may_post():
    assert may_post("http://127.0.0.1:8000", "127.0.0.1:8000", set())
    assert may_post("http://EXAMPLE.org", "example.org:80", set())  # default port, any case
    allowed = {origin_key("https://ris.local")}
    assert may_post("https://ris.local:443", "scanner:8000", allowed)
    assert not may_post("https://ris.local:8443", "scanner:8000", allowed)


def test_bearer_is_case_insensitive_and_tokens_compare_by_digest():
    assert bearer_token("bearer abc") == "abc" and bearer_token("BEARER  abc ") == "abc"
    assert bearer_token("Basic abc", "fallback") == "fallback"
    assert token_matches(STRONG, STRONG) and not token_matches(STRONG, STRONG[:-1])
    assert not token_matches("", STRONG)


@pytest.mark.parametrize(
    ("token", "words"),
    [("", "empty"), ("   ", "empty"), ("a", "at least"), ("with space 1234567", "visible")],
)
def test_weak_tokens_are_refused_with_the_reason(token, words):
    assert words in token_problem(token)
    r = run_cli("serve", "--token", token, "--port", "1")
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


def test_a_strong_token_passes_and_guessing_is_slowed_down():
    assert token_problem(STRONG) == "" and token_problem(None) == ""
    limiter = FailedAttempts(limit=3, window_s=60)
    for t in range(3):
        assert limiter.wait_s("a", now=t) == 0
        limiter.record("a", now=t)
    assert limiter.wait_s("a", now=3) == pytest.approx(57)
    assert limiter.wait_s("b", now=3) == 0  # another client is not held up
    assert limiter.wait_s("a", now=61) == 0  # the oldest failure aged out
    with service(token=STRONG) as c:
        for _ in range(10):
            assert c.get("/api/v1/health", headers={"Authorization": "Bearer x"}).status_code == 401
        held = c.get("/api/v1/health", headers={"Authorization": f"bearer {STRONG}"})
        assert held.status_code == 429 and int(held.headers["retry-after"]) > 0
    with service(token=STRONG) as c:
        ok = c.get("/api/v1/health", headers={"Authorization": f"bEaReR {STRONG}"})
        assert ok.status_code == 200


def test_an_allowed_origin_that_is_not_one_is_refused_at_start():
    r = run_cli("serve", "--allow-origin", "ris.local", "--port", "1")
    assert r.returncode == 2 and "--allow-origin" in r.stderr
