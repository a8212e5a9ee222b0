"""Access log without query strings or headers: search parameters name patients (SPID) and headers
carry tokens, so neither may reach the log. Replaces uvicorn's access log.

Each request is one structured record (`fields`), written as one JSON line by `log_format`: the path
is a JSON string, so a `%0A` in it cannot start a line of its own.

The same place counts the request in the metrics, by the template of the route that answered it
(`/fhir/Binary/{id}`), never by its path: ids in paths would make a series per document. FastAPI names
the route in the scope for its own routes only; `name_routes` makes the plain Starlette routes (the hot
reads) and mounts do the same.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics

log = logging.getLogger("epr.gateway.exchanges.access")


def name_routes(routes) -> None:
    """Each route that is not FastAPI's own puts itself in the scope when it answers (`scope["route"]`).

    Once per route object: some routes (the hot MHD reads) are module-level objects shared by every app
    built in the process, and wrapping them again at each app would stack one call per app built."""
    from fastapi.routing import APIRoute

    for route in routes:
        if not isinstance(route, APIRoute) and not getattr(route.handle, "names_route", False):
            route.handle = _naming(route, route.handle)


def _naming(route, handle):
    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route
        await handle(scope, receive, send)
    named.names_route = True
    return named


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
            seconds = time.perf_counter() - started
            fields = {"client": client[0], "method": scope["method"], "path": scope["path"], "status": status,
                      "ms": round(seconds * 1000, 1)}
            log.info("%s %s %d", scope["method"], scope["path"], status, extra={"fields": fields})
            route = scope.get("route")
            metrics.request_served(route=getattr(route, "path", None) or metrics.UNMATCHED_ROUTE,
                                   method=scope["method"], status=status, seconds=seconds)
