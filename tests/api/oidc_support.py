"""A local identity provider for tests: keys made here, a JWKS served on 127.0.0.1.

PyJWKClient fetches with urllib, so the JWKS is served for real (a thread),
not mocked. ``Provider.token`` signs access tokens as the provider would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://id.marketplace.test/realms/main"
AUDIENCE = "coachpay"
ROLE_MAP = "marketplace-mentee=mentee,marketplace-coach=coach,mp-finance=finance,mp-admin=admin"
ROLE_NAMES = {
    "mentee": "marketplace-mentee",
    "coach": "marketplace-coach",
    "finance": "mp-finance",
    "admin": "mp-admin",
}


@dataclass
class Provider:
    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)  # kids in the JWKS
    requests: int = 0

    def add_key(self, kid: str, kind: str = "rsa") -> None:
        if kind == "rsa":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            key = self.keys[kid]
            algo = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
            if algo is None:
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            else:
                jwk = json.loads(algo.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def token(
        self,
        sub: str = "user-1",
        role: str | None = "coach",
        *,
        kid: str | None = None,
        ttl: int = 600,
        **claims: Any,
    ) -> str:
        kid = kid or self.published[0]
        key = self.keys[kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl,
        }  # fmt: skip
        if role is not None:
            payload["roles"] = [ROLE_NAMES[role], "offline_access"]
        payload.update(claims)
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@contextmanager
def serve(provider: Provider) -> Iterator[Provider]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            provider.requests += 1
            body = json.dumps(provider.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider.url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def oidc_settings(provider: Provider, **extra: Any) -> dict[str, Any]:
    return {
        "oidc_issuer": ISSUER,
        "oidc_audience": AUDIENCE,
        "oidc_jwks_url": provider.url,
        "oidc_role_map": ROLE_MAP,
        **extra,
    }
