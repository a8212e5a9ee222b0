"""Request body size limit, enforced while the body streams in (not only from Content-Length)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.cara.identifier_syntax import ascii_int
from gateway.http.outcomes import HttpProblem, refusal_before_routing


class BodyTooLarge(HttpProblem):
    """Raised while the body streams in; answered 413 by the app's HttpProblem handler (audited)."""

    def __init__(self, max_bytes: int):
        super().__init__(413, "too-costly", f"the request body exceeds the limit of {max_bytes} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        length = ascii_int(declared.decode("latin-1")) if declared is not None else None
        if length is not None and length > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = BodyTooLarge(self.max_bytes)
        refusal.headers = {"Connection": "close"}
        await refusal_before_routing(refusal)(scope, receive, send)
