"""How the audit records of reads reach the ledger: batched, and committed before the answer leaves.

Why batches: a commit (lock, head read, insert, fsync) is a fixed cost; a batch of concurrent reads
shares one. Why two stages: handing each request's record to a writer thread and waking the event
loop for each answer cost more than the database work itself (measured: ~0.28 ms of a search's
~0.4 ms of audit). So on the event loop a `LoopBatcher` gathers the records of the requests in
progress, with no thread involved, and hands them to the `GroupCommit` writer thread as one batch
with one future: one thread hand-off and one loop wake-up per batch.

The batcher sends its batch as soon as every request in progress waits for it (`LoadGauge`), or
after `linger` at the latest (a request still working in the thread pool, say); a lone request is
sent at once. Callers outside an HTTP route (command line, bridge) use `GroupCommit.submit`, which
blocks until committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy import Engine

from adapters.cara.errors import StoreUnavailable
from audit.ledger import DatabaseAuditLedger, PreparedRecord
from gateway.load_gauge import LoadGauge

log = logging.getLogger("epr.gateway.audit")


class AuditUnavailable(StoreUnavailable):
    """The ledger could not be written: the exchange must not happen (503)."""


class GroupCommit:
    """One writer thread: each queued batch (and whatever else is queued with it) in one transaction."""

    def __init__(self, *, engine: Engine, ledger: DatabaseAuditLedger, max_records: int = 2000,
                 timeout_seconds: float = 10.0):
        self._engine = engine
        self._ledger = ledger
        self._max_records = max_records
        self.timeout = timeout_seconds
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, records: list[PreparedRecord]) -> None:
        """Enqueue and wait until committed (AuditUnavailable when it cannot be)."""
        if records:
            try:
                self.enqueue(records).result(timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001 - whatever stopped the commit, the record is not written
                raise unavailable(exc) from exc

    def enqueue(self, records: list[PreparedRecord]) -> Future:
        """Enqueue; the future completes when the transaction holding `records` has committed."""
        done: Future = Future()
        self._ensure_thread()
        self._queue.put((records, done))
        return done

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0][0])
            while size < self._max_records:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1][0])
            # From here a waiter can no longer cancel its future (a cancelled one is still written,
            # but nobody is told); setting the outcome of a cancelled future would kill this thread.
            waiting = [done for _, done in batch if done.set_running_or_notify_cancel()]
            try:
                with self._engine.begin() as connection:
                    self._ledger.append_many(connection, [record for records, _ in batch for record in records])
            except Exception as exc:  # noqa: BLE001 - every waiter learns that its record is not written
                for done in waiting:
                    done.set_exception(exc)
            else:
                for done in waiting:
                    done.set_result(None)


class _Batch:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.records: list[PreparedRecord] = []
        self.committed: asyncio.Future = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.waiters = 0


class LoopBatcher:
    """The records of the requests an event loop is working on, sent to the writer together."""

    def __init__(self, group_commit: GroupCommit, gauge: LoadGauge, *, linger_seconds: float = 0.004):
        self._group_commit = group_commit
        self._gauge = gauge
        self._linger = linger_seconds
        self._open: dict[asyncio.AbstractEventLoop, _Batch] = {}

    async def commit(self, records: list[PreparedRecord]) -> None:
        """Return once `records` have committed; AuditUnavailable (503) when they could not be."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        batch = self._open.get(loop)
        if batch is None:
            batch = self._open[loop] = _Batch(loop)
            batch.timer = loop.call_later(self._linger, self._send, loop, batch)
        batch.records.extend(records)
        batch.waiters += 1
        self._gauge.waiting_started()  # until the batch is settled (see `_settle`)
        try:
            if self._gauge.working <= 0:  # every request in progress waits: nothing more is coming
                self._send(loop, batch)
            await asyncio.wait_for(asyncio.shield(batch.committed), self._group_commit.timeout)
        except Exception as exc:  # noqa: BLE001 - a commit failure or a timeout: not written
            raise unavailable(exc) from exc

    def _send(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        if self._open.get(loop) is not batch:
            return  # already sent
        del self._open[loop]
        if batch.timer is not None:
            batch.timer.cancel()
        done = self._group_commit.enqueue(batch.records)
        done.add_done_callback(lambda future: loop.call_soon_threadsafe(self._settle, batch, future))

    def _settle(self, batch: _Batch, done: Future) -> None:
        # The batch's requests stop waiting now, not when each resumes: a request resumed later is
        # working again, and counting it as waiting meanwhile would send the next batch too early.
        for _ in range(batch.waiters):
            self._gauge.waiting_ended()
        error = done.exception()
        if error is None:
            batch.committed.set_result(None)
        else:
            batch.committed.set_exception(error)


def unavailable(cause: BaseException) -> AuditUnavailable:
    log.error("audit ledger unavailable: %s", type(cause).__name__)
    return AuditUnavailable("the audit record could not be written; nothing was done")
