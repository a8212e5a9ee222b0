"""Access log without query strings or headers: search parameters name patients (SPID) and headers
carry tokens, so neither may reach the log. Replaces uvicorn's access log.

Each request is one structured record (`fields`), written as one JSON line by `log_format`: the path
is a JSON string, so a `%0A` in it cannot start a line of its own.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("epr.gateway.exchanges.access")


class AccessLog:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        finally:
            client = scope.get("client") or ("-", 0)
            elapsed = round((time.perf_counter() - started) * 1000, 1)
            fields = {"client": client[0], "method": scope["method"], "path": scope["path"], "status": status,
                      "ms": elapsed}
            log.info("%s %s %d", scope["method"], scope["path"], status, extra={"fields": fields})
