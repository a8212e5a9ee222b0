"""How the audit records of reads reach the ledger: batched, and committed before the answer leaves.

Why batches: a commit (lock, head read, insert, fsync) is a fixed cost; a batch of concurrent reads shares
one. Why two stages: handing each request's record to a writer thread and waking the event loop for each
answer cost more than the database work itself (bench/README.md). So on the event loop a `LoopBatcher` gathers
the records of the requests in progress, with no thread involved, and hands them to the `GroupCommit` writer
thread as one batch with one future: one thread hand-off and one loop wake-up per batch. Callers outside an
HTTP route (command line, bridge) use `GroupCommit.submit`, which blocks until committed.

With SQLite (`write_on_loop`) there is no hand-off at all: the store is in-process, so the event loop
writes the batch itself, right after the requests of the current loop iteration have added their
records. The GIL is then never passed between the loop and a writer thread at each commit (that
hand-off, not the writing, was what a search waited for; figures in bench/README.md), at the price
that the loop stops while the batch commits — a fraction of a millisecond, or as long as a change
in the thread pool holds SQLite's single write lock. That is the embedded default's trade-off;
PostgreSQL keeps the writer thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy import Engine

from adapters.cara.errors import StoreUnavailable
from adapters.cara.store.database import ConnectionPerThread
from audit.ledger import DatabaseAuditLedger, PreparedRecord

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
        self._kept = ConnectionPerThread(lambda: self._engine.connect())  # SQLite: each writing thread's (`write`)

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

    def write(self, records: list[PreparedRecord]) -> None:
        """Append and commit `records` in the calling thread."""
        if self._engine.dialect.name != "sqlite":
            with self._engine.begin() as connection:
                self._ledger.append_many(connection, records)
            return
        # SQLite: on a connection the calling thread keeps (the event loop, or the writer thread: two at
        # most), since a pool check-out and return cost more than a small batch's insert. Between
        # batches it holds no transaction. One that failed is closed, not used again.
        connection = self._kept.get()
        try:
            with connection.begin():
                self._ledger.append_many(connection, records)
        except Exception:
            self._kept.discard(connection)
            raise

    def close(self) -> None:
        """Close the connections the writing threads kept (with the runtime: a process that builds many,
        the test suite, kept each one's database files open). A thread that writes again opens another."""
        self._kept.close()

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
                self.write([record for records, _ in batch for record in records])
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
        self.scheduled = False


class LoopBatcher:
    """The records of an event loop's requests, sent to the writer one batch at a time: while a
    batch is being committed, the next one gathers what the loop's other requests write, and leaves
    the moment the first is settled. A lone request's batch leaves at once; under load the commit
    of one batch overlaps the work on the next, and no request waits for more than two commits.
    With `write_on_loop`, the loop writes each batch itself once the current iteration's requests
    have added to it."""

    def __init__(self, group_commit: GroupCommit, *, write_on_loop: bool = False):
        self._group_commit = group_commit
        self._write_on_loop = write_on_loop
        self._gathering: dict[asyncio.AbstractEventLoop, _Batch] = {}
        self._in_flight: dict[asyncio.AbstractEventLoop, _Batch] = {}

    async def commit(self, records: list[PreparedRecord]) -> None:
        """Return once `records` have committed; AuditUnavailable (503) when they could not be."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        batch = self._gathering.get(loop)
        if batch is None:
            batch = self._gathering[loop] = _Batch(loop)
        batch.records.extend(records)
        if self._write_on_loop:
            if not batch.scheduled:  # after the requests this loop iteration is running
                batch.scheduled = True
                loop.call_soon(self._write_here, loop)
        elif loop not in self._in_flight:
            self._send(loop)
        try:
            await asyncio.wait_for(asyncio.shield(batch.committed), self._group_commit.timeout)
        except Exception as exc:  # noqa: BLE001 - a commit failure or a timeout: not written
            raise unavailable(exc) from exc

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._in_flight[loop] = self._gathering.pop(loop)
        done = self._group_commit.enqueue(batch.records)
        done.add_done_callback(lambda future: loop.call_soon_threadsafe(self._settle, loop, batch, future))

    def _write_here(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._gathering.pop(loop)
        try:
            self._group_commit.write(batch.records)
        except Exception as exc:  # noqa: BLE001 - every waiter learns that its record is not written
            batch.committed.set_exception(exc)
        else:
            batch.committed.set_result(None)

    def _settle(self, loop: asyncio.AbstractEventLoop, batch: _Batch, done: Future) -> None:
        del self._in_flight[loop]
        error = done.exception()
        if error is None:
            batch.committed.set_result(None)
        else:
            batch.committed.set_exception(error)
        if loop in self._gathering:
            self._send(loop)


def unavailable(cause: BaseException) -> AuditUnavailable:
    log.error("audit ledger unavailable: %s", type(cause).__name__)
    return AuditUnavailable("the audit record could not be written; nothing was done")
