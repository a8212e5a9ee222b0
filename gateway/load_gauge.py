"""How many requests this worker is working on, and how many of those only wait for their audit
record to commit: what the audit batching needs to know (see `gateway.audit_commit.LoopBatcher`).

A request counts from the moment it reaches the application until its answer is sent. While some
requests are still being worked on, a commit started now would leave them for the next one; once
every request in progress is waiting for the commit, waiting any longer gains nothing.
"""

from __future__ import annotations

import threading

from starlette.types import ASGIApp, Receive, Scope, Send


class LoadGauge:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_progress = 0
        self._waiting = 0

    @property
    def working(self) -> int:
        """Requests in progress that are not waiting for the audit commit (may still add records)."""
        return self._in_progress - self._waiting

    def request_started(self) -> None:
        self._add(in_progress=1)

    def request_ended(self) -> None:
        self._add(in_progress=-1)

    def waiting_started(self) -> None:
        self._add(waiting=1)

    def waiting_ended(self) -> None:
        self._add(waiting=-1)

    def _add(self, *, in_progress: int = 0, waiting: int = 0) -> None:
        with self._lock:
            self._in_progress += in_progress
            self._waiting += waiting


class CountRequests:
    """ASGI middleware feeding a `LoadGauge`."""

    def __init__(self, app: ASGIApp, gauge: LoadGauge):
        self.app = app
        self.gauge = gauge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.gauge.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gauge.request_ended()
