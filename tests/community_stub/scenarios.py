"""Failure scenarios the tests switch on per endpoint ("iti41", "sts", "pix"), for the next N calls
or until cleared.

- ``soap_fault``: a SOAP 1.2 Receiver fault (HTTP 500) instead of processing;
- ``http_error``: a bare HTTP error (``status``, default 500) instead of processing;
- ``reset``: the status line, headers and half the body are sent, then the connection is reset
  (TCP RST); with ``process=True`` the request is processed (and stored) first;
- ``slow``: the answer comes after ``delay`` seconds (the request is processed after the delay);
- ``lost``: the request is processed and stored, then the connection is reset before any answer
  (the "lost answer" an outbox must survive).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

KINDS = ("soap_fault", "http_error", "reset", "slow", "lost")
ENDPOINTS = ("iti41", "sts", "pix")


@dataclass(frozen=True)
class Scenario:
    kind: str
    status: int = 500
    delay: float = 0.0
    process: bool = False
    text: str = "ERROR #5002: Unexpected error in the XDS back end"


class Scenarios:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: dict[str, deque[Scenario]] = {endpoint: deque() for endpoint in ENDPOINTS}
        self._standing: dict[str, Scenario | None] = dict.fromkeys(ENDPOINTS)
        self.applied: list[tuple[str, Scenario]] = []

    def next(self, endpoint: str, kind: str, count: int = 1, **params) -> None:
        """The next `count` calls to `endpoint` meet `kind` (after any already queued)."""
        scenario = self._scenario(endpoint, kind, params)
        with self._lock:
            self._queued[endpoint].extend([scenario] * count)

    def always(self, endpoint: str, kind: str, **params) -> None:
        """Every call to `endpoint` meets `kind` until `clear`."""
        scenario = self._scenario(endpoint, kind, params)
        with self._lock:
            self._standing[endpoint] = scenario

    def clear(self, endpoint: str | None = None) -> None:
        with self._lock:
            for name in (endpoint,) if endpoint else ENDPOINTS:
                self._queued[name].clear()
                self._standing[name] = None

    def take(self, endpoint: str) -> Scenario | None:
        with self._lock:
            queue = self._queued.get(endpoint)
            scenario = queue.popleft() if queue else self._standing.get(endpoint)
            if scenario is not None:
                self.applied.append((endpoint, scenario))
            return scenario

    @staticmethod
    def _scenario(endpoint: str, kind: str, params: dict) -> Scenario:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        return Scenario(kind=kind, **params)
