"""W3C trace context: every exchange carries a `traceparent` (the caller's, or one made here), which
the audit record keeps and the response returns. Also notes the caller's address for the audit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auditing import RequestContext, current_request, traceparent_or_new


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
        token = current_request.set(RequestContext(traceparent=traceparent, client_address=client[0] if client else None))

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"traceparent", traceparent.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            current_request.reset(token)
