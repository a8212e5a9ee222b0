"""Security headers on every answer of a web page (under /portal, under /hcp): a strict CSP (no inline script or style, nothing
from another origin), no framing, no referrer to other sites, no MIME sniffing, and no caching of
pages with patient data (static assets aside)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")
# An opened document (PDF, image) is shown by the browser's own viewer, which needs its own inline
# resources; it may embed nothing from elsewhere and run no page script of ours.
DOCUMENT_CSP = ("default-src 'none'; img-src 'self'; object-src 'self'; style-src 'unsafe-inline'; "
                "frame-ancestors 'none'")

COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Chromium send Origin: null on our own forms
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"strict-transport-security", b"max-age=31536000"),
]
NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
# What this middleware sets: the route's own values of these are replaced, never sent twice.
REPLACED = frozenset({b"cache-control", b"content-security-policy", b"pragma", *(name for name, _ in COMMON)})


class PageHeaders:
    def __init__(self, app: ASGIApp, prefix: str):
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(self.prefix + "/static/")
        document = path.endswith("/content")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A document downloaded rather than shown keeps the sandbox its route gave it (ITI-68's rule).
                sandbox = next((v for k, v in message.get("headers", []) if k.lower() == b"content-security-policy"
                                and v.startswith(b"sandbox")), None)
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in REPLACED]
                csp = sandbox.decode() if sandbox else DOCUMENT_CSP if document else PAGE_CSP
                headers += [(b"content-security-policy", csp.encode()), *COMMON]
                headers += [(b"cache-control", b"public, max-age=3600")] if static else NO_STORE
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
