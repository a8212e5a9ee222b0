"""Audit as the use-cases write it: one AuditRecord per exchange, refusals and failures included.

A change is audited inside the transaction that makes it (`write`); a read is audited before its
answer leaves (`write_now`). When the ledger cannot be written the exchange fails with 503 and, for
a change, nothing is stored (fail closed). `audited` wraps a use-case so that any failure it raises
is recorded too, once.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Engine

from adapters.cara.crypto import Keyring
from adapters.cara.errors import RecordError, StoreUnavailable
from adapters.cara.model import DocumentEntry
from audit.events import AuditRecord, DocumentRef, split_per_document
from audit.ledger import DatabaseAuditLedger, PreparedRecord, prepare
from consent.principal import Principal
from gateway.exchanges.audit_commit import AuditUnavailable, GroupCommit, LoopBatcher
from gateway.auth.errors import AccessRefused

log = logging.getLogger("epr.gateway.audit")
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True)
class RequestContext:
    traceparent: str | None = None
    client_address: str | None = None
    server_address: str | None = None  # the URL the gateway answered on (the responder agent's network)


current_request: ContextVar[RequestContext] = ContextVar("epr_request", default=RequestContext())
# Set by an HTTP route around a use-case: the records its reads write, which the route commits and
# awaits before the answer leaves (`Auditor.written`), instead of a thread blocking on each.
deferred_audits: ContextVar[list[PreparedRecord] | None] = ContextVar("epr_deferred_audits", default=None)


def traceparent_or_new(value: str | None) -> str:
    """The caller's W3C traceparent when well-formed, else a new one (returned to the caller)."""
    if value and _TRACEPARENT.fullmatch(value) and value[3:35] != "0" * 32:
        return value
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class Auditor:
    def __init__(self, *, engine: Engine, ledger: DatabaseAuditLedger, keyring: Keyring, source_site: str,
                 community_oid: str, write_on_loop: bool = False):
        self.engine = engine
        self.ledger = ledger
        self._group_commit = GroupCommit(engine=engine, ledger=ledger)
        self._batcher = LoopBatcher(self._group_commit, write_on_loop=write_on_loop)
        self._keyring = keyring
        self._source_site = source_site
        self._community_oid = community_oid

    def patient_key(self, spid: str | None) -> str | None:
        """The patient's key in the ledger: the MPI's keyed hash of the SPID (never the SPID itself)."""
        return self._keyring.index_hash("spid", spid) if spid else None

    def record(self, transaction: str, principal: Principal | None, **details) -> AuditRecord:
        context = current_request.get()
        details.setdefault("server_address", context.server_address)
        return AuditRecord(transaction=transaction, principal=principal, source_site=self._source_site,
                           traceparent=context.traceparent, client_address=context.client_address, **details)

    def document(self, entry: DocumentEntry) -> DocumentRef:
        # The patient's trail shows a title; the ledger is kept in the clear, so it carries the
        # document type's display rather than the free-text title, which may name the patient.
        return DocumentRef(unique_id=entry.unique_id, repository_unique_id=self._community_oid,
                           home_community_id=f"urn:oid:{self._community_oid}", type_code=entry.type_code.code,
                           title=entry.type_code.display or entry.type_code.code)

    def close(self) -> None:
        """The ledger's kept connections closed (see `GroupCommit.close`)."""
        self._group_commit.close()

    def write(self, connection, records: Iterable[AuditRecord]) -> None:
        """Inside the caller's transaction: the records commit or roll back with the change. One record or
        a batch alike: every record prepared first, then one lock, one head read and one multi-row insert."""
        self.ledger.append_many(connection, self.prepare_many(records))

    def prepare_many(self, records: Iterable[AuditRecord]) -> list[PreparedRecord]:
        """The records made ready for the ledger (one per document), before any transaction: what a
        batch prepares ahead so that its transaction only chains and inserts them (`write_prepared`)."""
        return [prepare(one, self.patient_key(one.patient_spid), first_of_exchange=index == 0)
                for record in records for index, one in enumerate(split_per_document(record))]

    def write_prepared(self, connection, prepared: list[PreparedRecord]) -> None:
        """Records from `prepare_many`, chained and inserted in the caller's transaction."""
        self.ledger.append_many(connection, prepared)

    def write_now(self, records: Iterable[AuditRecord]) -> None:
        """Committed before this returns, together with what concurrent requests are writing — or,
        inside an HTTP route (`routes.common.run_use_case`), committed before the answer leaves."""
        prepared = self.prepare_many(records)
        deferred = deferred_audits.get()
        if deferred is None:
            self._group_commit.submit(prepared)
        else:
            deferred.extend(prepared)

    async def written(self, deferred: list[PreparedRecord]) -> None:
        """Wait until the records deferred by `write_now` have committed (AuditUnavailable if not)."""
        await self._batcher.commit(deferred)

    def failure(self, transaction: str, principal: Principal | None, error: Exception, **details) -> None:
        """Record a refused or failed exchange. The description is what the client was told."""
        self.write_now([self.failure_record(transaction, principal, error, **details)])
        error.audited = True  # type: ignore[attr-defined]

    def failure_record(self, transaction: str, principal: Principal | None, error: Exception,
                       **details) -> AuditRecord:
        """The record of a refused or failed exchange, for a caller that writes it in its own
        transaction (a batch provide). Marks the error as audited."""
        client_error = (isinstance(error, (RecordError, AccessRefused)) and not isinstance(error, StoreUnavailable)
                        or getattr(error, "status", 500) < 500)
        description = getattr(error, "reason", None) or getattr(error, "message", None) or type(error).__name__
        error.audited = True  # type: ignore[attr-defined]
        return self.record(transaction, principal, outcome="4" if client_error else "8",
                           outcome_description=description[:500], **details)


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
