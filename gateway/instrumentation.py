"""The parts connected to the metrics (`gateway/metrics.py`) where they offer a hook: part of the
composition root, so that the store, the ledger and the use-cases need not know of metrics.

- **Exchanges by transaction and outcome**, from the one place every exchange passes: the audit ledger
  (`DatabaseAuditLedger.on_head_signed`). A batch is inserted inside its caller's transaction, which may
  still roll back (a change that fails is then audited again as the failure it was), so the batch is
  kept on the connection and counted when that transaction commits; dropped if it rolls back.
- **Ledger batches**: records per batch, and the time from asking for the ledger's lock to the commit.
- **The database pool**: connections in use, and how long each check-out waited (`TimedQueuePool`).
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine, event

from adapters.cara.store.database import POOL_WAIT_LISTENERS
from audit.ledger import DatabaseAuditLedger, PreparedRecord
from gateway import metrics

_PENDING = "epr.audit-batches"  # key in the connection's `info`: batches inserted, not yet committed


def instrument(engine: Engine, ledger: DatabaseAuditLedger) -> None:
    """Connect this process's engine and ledger to the metrics (once per engine)."""
    if getattr(engine, "_epr_instrumented", False):
        return
    engine._epr_instrumented = True  # type: ignore[attr-defined]
    event.listen(engine, "commit", _committed)
    event.listen(engine, "rollback", _rolled_back)
    event.listen(engine, "checkout", _checked_out)
    event.listen(engine, "checkin", _checked_in)
    event.listen(engine, "detach", _detached)  # a connection kept by a thread leaves the pool for good
    ledger.on_head_signed(_appended)
    if metrics.pool_waited not in POOL_WAIT_LISTENERS:
        POOL_WAIT_LISTENERS.append(metrics.pool_waited)


def _appended(connection: Connection, records: list[PreparedRecord], started: float) -> None:
    connection.info.setdefault(_PENDING, []).append((records, started))


def _committed(connection: Connection) -> None:
    batches = connection.info.pop(_PENDING, None)
    if not batches:
        return
    now = time.perf_counter()
    for records, started in batches:
        metrics.audit_batch_committed(records=len(records), seconds=now - started)
        metrics.exchanges_committed([(r.exchange, r.outcome) for r in records if r.exchange is not None])


def _rolled_back(connection: Connection) -> None:
    connection.info.pop(_PENDING, None)


def _checked_out(_dbapi_connection, _record, _proxy) -> None:
    metrics.pool_connections(+1)


def _checked_in(_dbapi_connection, _record) -> None:
    metrics.pool_connections(-1)


def _detached(_dbapi_connection, _record) -> None:
    metrics.pool_connections(-1)
