"""Signed tokens for the onboarding refresh_url and return_url.

Stripe sends the coach's *browser* back to these URLs, without our bearer
token, so the URL itself must say who the coach is and prove we issued it:
``<coach_id>.<expires unix>.<hmac>``. The HMAC key is derived from the JWT
secret with a purpose label, so such a token can never pass as an API token
(and an API token never passes as this). Anyone holding the URL can mint an
onboarding link for that coach, exactly like the Stripe account link itself,
so it lives only as long as needed to come back from Stripe.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from connect.errors import InvalidLinkToken

LINK_TOKEN_TTL = timedelta(days=7)
_PURPOSE = b"coachpay:onboarding-link:v1"
_MAX_TOKEN_LENGTH = 200


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _mac(secret: str, body: str) -> str:
    return hmac.new(_key(secret), body.encode(), hashlib.sha256).hexdigest()


def sign_link_token(coach_id: int, *, secret: str, now: datetime) -> str:
    expires = int((now + LINK_TOKEN_TTL).timestamp())
    body = f"{coach_id}.{expires}"
    return f"{body}.{_mac(secret, body)}"


def verify_link_token(token: str | None, *, secret: str, now: datetime) -> int:
    """The coach id the token was issued for; InvalidLinkToken otherwise."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidLinkToken("missing or malformed link token")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise InvalidLinkToken("missing or malformed link token")
    coach_id, expires, mac = int(parts[0]), int(parts[1]), parts[2]
    if not hmac.compare_digest(mac, _mac(secret, f"{parts[0]}.{parts[1]}")):
        raise InvalidLinkToken("link token signature does not match")
    if expires < now.timestamp():
        raise InvalidLinkToken("link token expired; start onboarding again from the app")
    return coach_id
