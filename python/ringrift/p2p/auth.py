"""The cluster token: bearer checks on HTTP requests and HMAC signatures of discovery datagrams.

The token is a shared secret. It is compared in constant time (`hmac.compare_digest`), never
logged, never put in a response, and never sent in a UDP datagram: a discovery datagram only
carries an HMAC-SHA256 of its own body keyed with the token, plus a timestamp that bounds
replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from . import TOKEN_ENV

MAX_CLOCK_SKEW_S = 60.0


def resolve_token(arg: str | None, environ) -> str | None:
    """The token from --p2p-auth-token, else from the environment; empty means none."""
    token = arg if arg is not None else environ.get(TOKEN_ENV)
    token = (token or "").strip()
    return token or None


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries exactly `Bearer <token>` (constant time)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "surrogateescape"),
                               token.encode("utf-8", "surrogateescape"))


def auth_headers(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_datagram(body: dict, token: str | None) -> bytes:
    """The datagram for `body`: canonical JSON, with "mac" = HMAC-SHA256(token, body) when a
    token is set."""
    body = dict(body)
    body.pop("mac", None)
    if token:
        body["mac"] = hmac.new(token.encode(), _canonical(body), hashlib.sha256).hexdigest()
    return _canonical(body)


def open_datagram(data: bytes, token: str | None, *, now: float | None = None) -> dict | None:
    """The body of a received datagram, or None when it is malformed, unsigned or wrongly
    signed (with a token set), or too far from our clock (a replay)."""
    if len(data) > 2048:
        return None
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # '[' * 2000: json's recursion, before any signature check
        return None
    if not isinstance(body, dict):
        return None
    mac = body.pop("mac", None)
    if token:
        if not isinstance(mac, str):
            return None
        want = hmac.new(token.encode(), _canonical(body), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac.encode(), want.encode()):
            return None
        ts = body.get("t")
        if not isinstance(ts, (int, float)) or abs((now or time.time()) - ts) > MAX_CLOCK_SKEW_S:
            return None
    return body
