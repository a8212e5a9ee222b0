"""W3C trace context: every exchange carries a `traceparent` (the caller's, or one made here), which
the audit record keeps and the response returns. Also notes the caller's address for the audit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.exchanges.auditing import RequestContext, current_request, traceparent_or_new


class TraceContext:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"traceparent", b"").decode("latin-1") or None
        traceparent = traceparent_or_new(sent)
        client = scope.get("client")
        token = current_request.set(RequestContext(traceparent=traceparent, client_address=client[0] if client else None,
                                                   server_address=_server_address(scope)))

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"traceparent", traceparent.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            current_request.reset(token)


def _server_address(scope: Scope) -> str | None:
    """The gateway's own address as the server socket has it (not the client-sent Host header, which
    would let a caller write what it likes into the audit record)."""
    server = scope.get("server")
    if not server:
        return None
    host, port = server[0], server[1]
    scheme = scope.get("scheme", "http")
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"
