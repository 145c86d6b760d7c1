"""One delivery attempt to a mediation organization over HTTP(S), and its answer.

The attempt gives up after ``timeout`` seconds without an answer (CONTRACTS §4: 10 s) and
never follows a redirect (the registry holds the address to post to). Whatever happens is
an ``Answer``; nothing here raises.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import requests

ERROR_EXCERPT = 500


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no answer
    error: str | None  # what went wrong, for the operator: the body of a refusal, a timeout ...
    retry_after: float | None  # seconds the organization asked us to wait (Retry-After)
    took_ms: int


def post(url: str, body: bytes, headers: dict, timeout: float) -> Answer:
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return Answer(None, f"no answer within {timeout:g} s", None, took())
    except requests.RequestException as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT], None, took())
    ok = 200 <= response.status_code < 300
    error = None if ok else (f"HTTP {response.status_code}: " + response.text)[:ERROR_EXCERPT]
    return Answer(response.status_code, error, retry_after(response.headers.get("Retry-After")), took())


def retry_after(value: str | None) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is ignored: backoff applies)."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
