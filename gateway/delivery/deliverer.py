"""The deliverer: a face like the MLLP listener, whose "requests" are the outbox's due rows.

Three kinds of thread, sharing nothing but queues:
- the claimer takes due rows under a lease (`DeliveryExchange.claim`), in batches that keep the senders
  busy (up to four times `concurrency` outstanding), and hands them to the senders;
- `concurrency` senders each make one attempt at a time (`deliver`): the community answers in tens of
  milliseconds, so several attempts wait on it at once while the interpreter does the next one's work;
- the recorder writes the attempts that came back in groups, one transaction each (`record`): one
  commit (and one fsync on SQLite) for many deliveries.
The ATNA messages are sent by their own thread (`audit_sender.py`): a repository that is down never
holds a delivery back.

Stopping: no more claims; rows claimed but not started are given back (`release`), attempts in flight
finish within `stop_grace_seconds` and are recorded; one still waiting on the community after that is
left in flight, and its lease expires. A SIGKILL is the same without the courtesy: every row it held
is due again when its lease expires, and the same submission (same uniqueIds) is sent again, which the
community answers "already delivered".
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from gateway.exchanges.delivery import DeliveryExchange, Sent

log = logging.getLogger("epr.delivery")
_DONE = object()


def owner_name() -> str:
    """Who holds a lease (shown by `outbox show` while a row is in flight): host and process."""
    return f"{socket.gethostname()[:16]}:{os.getpid()}"


class Deliverer:
    def __init__(self, *, exchange: DeliveryExchange, owner: str | None = None, concurrency: int = 8,
                 lease_seconds: float = 120.0, poll_seconds: float = 0.5, record_batch: int = 64,
                 stop_grace_seconds: float = 10.0, may_deliver: Callable[[], bool] = lambda: True):
        self.exchange = exchange
        self.owner = owner or owner_name()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.record_batch = record_batch
        self.stop_grace_seconds = stop_grace_seconds
        self._may_deliver = may_deliver  # False: another deliverer of this store delivers (SQLite: one at a time)
        self._rows: queue.Queue = queue.Queue()
        self._sent: queue.Queue = queue.Queue()
        self._outstanding = 0  # claimed and not yet recorded (or given back)
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.recorded = 0  # attempts recorded by this deliverer (for `deliver --once` and the benchmark)
        self.on_recorded: Callable[[list[Sent]], None] | None = None

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> Deliverer:
        self._stopping.clear()
        self._threads = [threading.Thread(target=self._claims, name="delivery-claims", daemon=True),
                         threading.Thread(target=self._recorder, name="delivery-recorder", daemon=True)]
        self._threads += [threading.Thread(target=self._sender, name=f"delivery-sender-{n}", daemon=True)
                          for n in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """No more claims; unsent rows given back; attempts in flight recorded (within the grace)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        claimer, recorder, *senders = self._threads or [None, None]
        if claimer is not None:
            claimer.join()
        for _ in senders:
            self._rows.put(_DONE)
        deadline = time.monotonic() + self.stop_grace_seconds
        for sender in senders:
            sender.join(max(0.0, deadline - time.monotonic()))
        self._sent.put(_DONE)
        if recorder is not None:
            recorder.join(max(1.0, deadline - time.monotonic()))
        self._threads = []

    def run_until_idle(self, *, timeout_seconds: float = 3600.0) -> int:
        """Deliver until no row is due and nothing is outstanding, then stop (`epr-gateway deliver --once`).
        Returns the attempts recorded."""
        self.start()
        deadline = time.monotonic() + timeout_seconds
        try:
            while time.monotonic() < deadline:
                with self._changed:
                    self._changed.wait(self.poll_seconds)
                    idle = self._outstanding == 0 and self._idle_claims >= 2
                if idle:
                    break
        finally:
            self.stop()
        return self.recorded

    # -- the threads ----------------------------------------------------------------------------------
    _idle_claims = 0  # consecutive claims that found nothing due (with nothing outstanding)

    def _claims(self) -> None:
        # Rows are claimed in batches: up to eight senders' worth outstanding, a claim once half of that is
        # done. A claim is a write transaction (an fsync on SQLite) that reads the open rows in order: one
        # per finished attempt would cost more than the attempt's own record. Eight, not four: a claim and
        # its read-ahead take tens of milliseconds on a busy machine, and rows sent but not yet recorded
        # count as outstanding; with four the senders waited for rows a fifth of the time, and the
        # claims' fixed cost was spread over fewer rows (bench/README.md).
        depth = 8 * self.concurrency
        while not self._stopping.is_set():
            with self._changed:
                room = depth - self._outstanding
                if room < depth // 2:
                    self._changed.wait(self.poll_seconds)
                    continue
            if not self._may_deliver():
                self._stopping.wait(self.poll_seconds * 4)
                continue
            try:
                claimed = self.exchange.claim(owner=self.owner, limit=room, lease_seconds=self.lease_seconds)
            except Exception:  # noqa: BLE001 - the store is down: try again, never die
                log.exception("delivery: cannot claim rows (retrying)")
                self._stopping.wait(max(1.0, self.poll_seconds))
                continue
            with self._changed:
                self._outstanding += len(claimed)
                self._idle_claims = 0 if claimed or self._outstanding else self._idle_claims + 1
                self._changed.notify_all()
            for delivery in claimed:
                self._rows.put(delivery)
            if not claimed:
                with self._changed:
                    self._changed.wait(self.poll_seconds)

    def _sender(self) -> None:
        while True:
            delivery = self._rows.get()
            if delivery is _DONE:
                return
            if self._stopping.is_set():
                self._give_back(delivery)
                continue
            try:
                self._sent.put(self.exchange.deliver(delivery=delivery))
            except Exception:  # noqa: BLE001 - the store failed mid-way: nothing sent or nothing known
                log.exception("delivery %s to %s: the attempt could not be made (given back)", delivery.id,
                              delivery.community)
                self._give_back(delivery)

    def _give_back(self, delivery) -> None:
        try:
            self.exchange.release(deliveries=[delivery])
        except Exception:  # noqa: BLE001 - left to its lease
            log.warning("delivery %s: could not be given back; due again when its lease expires", delivery.id)
        self._settled(1)

    def _recorder(self) -> None:
        done = False
        while not done:
            first = self._sent.get()
            if first is _DONE:
                return
            group = [first]
            while len(group) < self.record_batch:
                try:
                    more = self._sent.get_nowait()
                except queue.Empty:
                    break
                if more is _DONE:
                    done = True
                    break
                group.append(more)
            self._record(group)

    def _record(self, group: list[Sent]) -> None:
        """One transaction for the group; while the store cannot be written, again (the answers are only
        here) — until the stop's grace is over: then the rows' leases expire and they are sent again."""
        wait = 0.2
        while True:
            try:
                self.exchange.record(sent=group)
                break
            except Exception:  # noqa: BLE001
                log.exception("delivery: %d attempts could not be recorded (retrying)", len(group))
                if self._stopping.is_set() and wait > self.stop_grace_seconds:
                    self._settled(len(group))
                    return
                time.sleep(wait)
                wait = min(wait * 2, 5.0)
        self.recorded += len(group)
        if self.on_recorded is not None:
            self.on_recorded(group)
        self._settled(len(group))

    def _settled(self, count: int) -> None:
        with self._changed:
            self._outstanding -= count
            self._changed.notify_all()
