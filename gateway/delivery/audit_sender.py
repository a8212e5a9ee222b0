"""The ATNA sender: drains each community's durable queue of audit messages (ITI-20) to its audit record
repository, beside the deliverer and never in its way (a thread of its own; the messages were queued
in the transaction that recorded their attempt). A message is marked sent only once the repository
took it (`DeliveryExchange.send_queued_audit`); while a repository is down, its community is tried
again after a growing pause (1 s to a minute), the others go on."""

from __future__ import annotations

import logging
import threading
import time

from gateway.exchanges.delivery import DeliveryExchange

log = logging.getLogger("epr.delivery.atna")


class AuditSender:
    def __init__(self, *, exchange: DeliveryExchange, owner: str, idle_seconds: float = 1.0,
                 max_pause_seconds: float = 60.0, gather_seconds: float = 0.2):
        self.exchange = exchange
        self.owner = owner
        self.idle_seconds = idle_seconds
        self.gather_seconds = gather_seconds
        self.max_pause_seconds = max_pause_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pause: dict[str, float] = {}  # community → seconds to wait after a failure
        self._next_try: dict[str, float] = {}

    def wake(self, *_ignored) -> None:
        """Messages were queued (the deliverer recorded attempts): send them now rather than at the next tick."""
        self._wake.set()

    def start(self) -> AuditSender:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="delivery-atna", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, flush_seconds: float = 2.0) -> None:
        """Stop, after one last try to send what is queued (what is not taken stays queued)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(flush_seconds + 10.0)
            self._thread = None

    def send_due(self) -> int:
        """One round over the communities whose pause is over; the messages sent."""
        sent = 0
        now = time.monotonic()
        for community in self.exchange.communities:
            if self._next_try.get(community, 0.0) > now:
                continue
            while True:
                try:
                    drained = self.exchange.send_queued_audit(community=community, owner=self.owner)
                except Exception:  # noqa: BLE001 - the store: next round
                    log.exception("ATNA messages of %s could not be read or marked", community)
                    break
                if drained.error is not None:
                    pause = min(self._pause.get(community, 0.5) * 2, self.max_pause_seconds)
                    self._pause[community] = pause
                    self._next_try[community] = time.monotonic() + pause
                    log.warning("ATNA repository of %s did not take the messages (%s); again in %.0f s", community,
                                drained.error, pause)
                    break
                self._pause.pop(community, None)
                sent += drained.sent
                if not drained.sent:
                    break
        return sent

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self.send_due():
                # Messages come with every recorded group (every few deliveries): after a round that sent
                # some, the next waits a moment, so that one claim and one mark (two write transactions,
                # which the deliverer's own wait for on SQLite) carry many messages, not a group's few.
                self._stopping.wait(self.gather_seconds)
            self._wake.wait(self.idle_seconds)
            self._wake.clear()
        self._next_try.clear()  # a last round on the way out, whatever the pauses
        self.send_due()
