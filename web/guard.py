"""The ASGI middleware in front of every request: the player's session cookie, rate limits, bounded bodies and
security headers. Pure ASGI (not ``BaseHTTPMiddleware``) so the event streams pass through untouched."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from http.cookies import SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.limits import Buckets, RateLimits

COOKIE = "cyoa_session"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
MAX_BODY = 16 * 1024  # bytes: the largest body the API takes (a 1000-character comment) is far smaller
YEAR = 365 * 24 * 3600
# No inline script or style anywhere: a text that slipped into the page could not run.
CSP = (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                   b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
# FastAPI's API explorer pages load Swagger UI and ReDoc from a CDN with an inline script; they show no
# player's text, so they go without the policy rather than the game pages with a weaker one.
EXPLORER = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def player_of(token: str) -> str:
    """The player id the engine and the store see: pseudonymous, and the token cannot be recovered from it (a
    saved game, an export or a log that shows it does not let anyone act as the player)."""
    return "web:" + hashlib.sha256(token.encode()).hexdigest()[:24]


def _cookie_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: treated as none, a new session is given
                return None
            morsel = cookie.get(COOKIE)
            if morsel is not None and _TOKEN.match(morsel.value):
                return morsel.value
    return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope.get("headers", ()) if key == name), None)


class Guard:
    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.players = Buckets(limits.per_player)
        self.addresses = Buckets(limits.per_address)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _cookie_token(scope)
        fresh = token is None
        token = token or secrets.token_urlsafe(32)
        player = player_of(token)
        scope.setdefault("state", {})["player"] = player

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if scope["path"] not in EXPLORER:
                    headers.append(CSP)
                if fresh:
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    cookie = f"{COOKIE}={token}; Path=/; Max-Age={YEAR}; HttpOnly; SameSite=Lax{secure}"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        refusal = self._refusal(scope, player)
        if refusal is not None:
            status, text = refusal
            await _json(send_with_headers, status, {"error": text})
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, player: str) -> tuple[int, str] | None:
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return 413, f"the request body is too large (at most {MAX_BODY} bytes)"
        if not scope["path"].startswith("/api/"):
            return None  # pages and static files are not rate limited; every API call is
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = max(self.addresses.take(address), self.players.take(player))
        if wait > 0:
            return 429, f"too many requests; try again in {max(1, round(wait))} s"
        return None


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
