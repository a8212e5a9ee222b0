"""Audit as the use-cases write it: one AuditRecord per exchange, refusals and failures included.

A change is audited inside the transaction that makes it (`write`); a read is audited before its
answer leaves (`write_now`). When the ledger cannot be written the exchange fails with 503 and, for
a change, nothing is stored (fail closed). `audited` wraps a use-case so that any failure it raises
is recorded too, once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Engine

from adapters.cara.crypto import Keyring
from adapters.cara.errors import RecordError, StoreUnavailable
from adapters.cara.model import DocumentEntry
from audit.events import AuditRecord, DocumentRef, split_per_document
from audit.ledger import DatabaseAuditLedger, prepare
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.load_gauge import LoadGauge

log = logging.getLogger("epr.gateway.audit")
_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class RequestContext:
    traceparent: str | None = None
    client_address: str | None = None


current_request: ContextVar[RequestContext] = ContextVar("epr_request", default=RequestContext())
# Set by an HTTP route around a use-case: the group-commit futures of the reads' records, which the
# route awaits before the answer leaves (`answer_after_audit`), instead of a thread blocking on each.
deferred_audits: ContextVar[list[Future] | None] = ContextVar("epr_deferred_audits", default=None)


def traceparent_or_new(value: str | None) -> str:
    """The caller's W3C traceparent when well-formed, else a new one (returned to the caller)."""
    if value and _TRACEPARENT.match(value) and value[3:35] != "0" * 32:
        return value
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class AuditUnavailable(StoreUnavailable):
    """The ledger could not be written: the exchange must not happen (503)."""


class Auditor:
    def __init__(self, *, engine: Engine, ledger: DatabaseAuditLedger, keyring: Keyring, source_site: str,
                 community_oid: str, gauge: LoadGauge | None = None):
        self.engine = engine
        self.ledger = ledger
        self._group_commit = GroupCommit(engine=engine, ledger=ledger, gauge=gauge)
        self._keyring = keyring
        self._source_site = source_site
        self._community_oid = community_oid

    def patient_key(self, spid: str | None) -> str | None:
        """The patient's key in the ledger: the MPI's keyed hash of the SPID (never the SPID itself)."""
        return self._keyring.index_hash("spid", spid) if spid else None

    def record(self, transaction: str, principal: Principal | None, **details) -> AuditRecord:
        context = current_request.get()
        return AuditRecord(transaction=transaction, principal=principal, source_site=self._source_site,
                           traceparent=context.traceparent, client_address=context.client_address, **details)

    def document(self, entry: DocumentEntry) -> DocumentRef:
        # The patient's trail shows a title; the ledger is kept in the clear, so it carries the
        # document type's display rather than the free-text title, which may name the patient.
        return DocumentRef(unique_id=entry.unique_id, repository_unique_id=self._community_oid,
                           home_community_id=f"urn:oid:{self._community_oid}", type_code=entry.type_code.code,
                           title=entry.type_code.display or entry.type_code.code)

    def write(self, connection, records: Iterable[AuditRecord]) -> None:
        """Inside the caller's transaction: the records commit or roll back with the change."""
        for record in records:
            for one in split_per_document(record):
                self.ledger.append(connection, one, patient_key=self.patient_key(one.patient_spid))

    def write_now(self, records: Iterable[AuditRecord]) -> None:
        """Committed before this returns, together with what concurrent requests are writing — or,
        inside `answer_after_audit`, committed before the answer leaves."""
        items = [prepare(one, self.patient_key(one.patient_spid))
                 for record in records for one in split_per_document(record)]
        pending = deferred_audits.get()
        if pending is None:
            self._group_commit.submit(items)
        elif items:
            pending.append(self._group_commit.enqueue(items))

    async def written(self, pending: list[Future]) -> None:
        """Wait until the records deferred by `write_now` have committed (AuditUnavailable if not)."""
        await self._group_commit.written(pending)

    def failure(self, transaction: str, principal: Principal | None, error: Exception, **details) -> None:
        """Record a refused or failed exchange. The description is what the client was told."""
        client_error = (isinstance(error, (RecordError, AccessRefused)) and not isinstance(error, StoreUnavailable)
                        or getattr(error, "status", 500) < 500)
        description = getattr(error, "reason", None) or getattr(error, "message", None) or type(error).__name__
        self.write_now([self.record(transaction, principal, outcome="4" if client_error else "8",
                                    outcome_description=description[:500], **details)])
        error.audited = True  # type: ignore[attr-defined]


class GroupCommit:
    """Audit records of reads written by one thread, a batch per transaction.

    Each caller waits until its batch has committed (or failed: then AuditUnavailable, 503), so a
    read's record is durable before its answer leaves; concurrent reads share one lock, one head
    read and one commit (with its fsync) instead of paying for them each.

    Why the linger: the commit (and its fsync) is a fixed cost that only batching spreads. While
    requests of this worker are still being worked on (`LoadGauge`), their records are about to
    come, so the writer waits for them up to `linger`; once every request in progress waits for
    the commit, or when there is none (a lone request), it commits at once.
    """

    def __init__(self, *, engine: Engine, ledger: DatabaseAuditLedger, gauge: LoadGauge | None = None,
                 max_batch: int = 256, timeout_seconds: float = 10.0, linger_seconds: float = 0.004):
        self._engine = engine
        self._ledger = ledger
        self._gauge = gauge
        self._max_batch = max_batch
        self._timeout = timeout_seconds
        self._linger = linger_seconds
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, items: list) -> None:
        """Enqueue and wait until committed (AuditUnavailable when it cannot be)."""
        if items:
            done = self.enqueue(items)
            with self._waiting():
                try:
                    done.result(timeout=self._timeout)
                except Exception as exc:  # noqa: BLE001 - whatever stopped the commit, the record is not written
                    raise _unavailable(exc) from exc

    def enqueue(self, items: list) -> Future:
        """Enqueue; the future completes when the batch holding `items` has committed."""
        done: Future = Future()
        self._ensure_thread()
        self._queue.put((items, done))
        return done

    async def written(self, pending: list[Future]) -> None:
        """Wait, without holding a thread, until every pending record has committed."""
        with self._waiting():
            try:
                await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in pending)), self._timeout)
            except Exception as exc:  # noqa: BLE001 - a commit failure or a timeout: not written
                raise _unavailable(exc) from exc

    @contextmanager
    def _waiting(self):
        if self._gauge is None:
            yield
            return
        self._gauge.waiting_started()
        try:
            yield
        finally:
            self._gauge.waiting_ended()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if self._gauge is not None:
                self._gauge.wait_until_idle(self._linger)
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # From here a waiter can no longer cancel its future (a cancelled one is still written,
            # but nobody is told); setting the outcome of a cancelled future would kill this thread.
            waiting = [done for _, done in batch if done.set_running_or_notify_cancel()]
            try:
                with self._engine.begin() as connection:
                    self._ledger.append_many(connection, [item for items, _ in batch for item in items])
            except Exception as exc:  # noqa: BLE001 - every waiter learns that its record is not written
                for done in waiting:
                    done.set_exception(exc)
            else:
                for done in waiting:
                    done.set_result(None)


def _unavailable(cause: BaseException) -> AuditUnavailable:
    log.error("audit ledger unavailable: %s", type(cause).__name__)
    return AuditUnavailable("the audit record could not be written; nothing was done")


def audited(transaction: str) -> Callable:
    """Decorate a use-case (keyword `principal`) so a failure it raises is audited, then re-raised."""
    def decorate(use_case: Callable) -> Callable:
        @functools.wraps(use_case)
        def wrapper(self, *, principal: Principal, **kwargs):
            try:
                return use_case(self, principal=principal, **kwargs)
            except AuditUnavailable:
                raise
            except Exception as error:
                if not getattr(error, "audited", False):
                    self.auditor.failure(transaction, principal, error)
                raise
        return wrapper
    return decorate
