"""Shipping the ledger to a SIEM or ATNA Audit Record Repository: RFC 5424 messages over TLS with
octet-counting framing (RFC 5425), as IHE ATNA ITI-20 sends them.

Why the ledger is the outbox: a record is in the ledger once its exchange has committed, so a
shipper that reads the ledger from a stored position (`audit_shipping.last_seq`) cannot miss one,
and a SIEM outage only makes the position wait: the shipper retries with growing pauses and sends
everything after it once the SIEM is back. The position moves only after the TLS connection took
the batch, so delivery is at least once (a crash between the two resends that batch; the AuditEvent
id in each message tells duplicates apart). A batch the receiver refuses or drops right away (TLS
alert, close) is not counted as delivered (`adapters.syslog.SyslogConnection.send`).

Several workers: with PostgreSQL one of them ships at a time (a session advisory lock held on the
shipper's own connection; if that worker dies the lock goes and another takes over). SQLite is one
process.
"""

from __future__ import annotations

import logging
import ssl
import threading
from datetime import UTC, datetime
from itertools import islice

from sqlalchemy import Connection, Engine, insert, select, text, update

from audit.export import export, head_syslog_line
from audit.ledger import read_head
from audit.schema import audit_shipping
from adapters.syslog import SyslogConnection, client_ssl_context, frame

__all__ = ["SyslogShipper", "client_ssl_context", "frame"]

log = logging.getLogger("epr.audit.shipping")
_SHIPPER_LOCK = 7342003  # 7342001 migrations, 7342002 ledger appends


class SyslogShipper:
    def __init__(self, *, engine: Engine, host: str, port: int, ssl_context: ssl.SSLContext,
                 hostname: str | None = None, batch: int = 500, idle_seconds: float = 1.0,
                 max_pause_seconds: float = 30.0, timeout_seconds: float = 10.0, confirm_seconds: float = 0.2):
        self._engine = engine
        self._target = f"{host}:{port}"
        self._hostname = hostname
        self._batch = batch
        self._idle = idle_seconds
        self._max_pause = max_pause_seconds
        self._timeout = timeout_seconds
        self._confirm_seconds = confirm_seconds
        self._connection = SyslogConnection(host, port, ssl_context, timeout_seconds=timeout_seconds)
        self._leader: Connection | None = None  # PostgreSQL: the connection holding the shipper lock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-shipping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 5)
        self._connection.close()
        if self._leader is not None:
            self._leader.close()  # releases the leadership lock

    def _run(self) -> None:
        pause = self._idle
        while not self._stopping.is_set():
            try:
                shipped = self.ship_once()
                pause = self._idle if shipped < self._batch else 0.0
            except (OSError, ssl.SSLError) as exc:
                self._connection.close()
                pause = min(max(pause * 2, 1.0), self._max_pause)
                log.warning("SIEM %s unreachable (%s): retrying in %.0f s; nothing is lost", self._target,
                            type(exc).__name__, pause)
            except Exception:  # noqa: BLE001 - the store may be down too: keep the thread, try later
                log.exception("audit shipping failed; retrying")
                pause = min(max(pause * 2, 1.0), self._max_pause)
            self._stopping.wait(pause)

    # -- one round ----------------------------------------------------------------------------------
    def ship_once(self) -> int:
        """Send what follows the stored position (at most one batch); return how many records."""
        if not self._is_leader():
            return 0
        position = self.position()
        lines = list(islice(export(engine=self._engine, fmt="syslog", after_seq=position,
                                   hostname=self._hostname), self._batch))
        if not lines:
            return 0
        # The signed head follows each batch: the SIEM holds the heads outside the database (a cut
        # back to an older head shows there); it is a statement, not a record, so not counted.
        head = read_head(self._engine)
        if head is not None:
            lines.append(head_syslog_line(head, self._hostname))
        # A batch the SIEM refuses or drops right away is not delivered: `send` raises (see _run).
        self._connection.send(b"".join(frame(line) for line in lines), confirm_seconds=self._confirm_seconds)
        shipped = len(lines) - (head is not None)
        self._store_position(position + shipped)  # export yields the chain without holes
        return shipped

    def position(self) -> int:
        with self._engine.connect() as connection:
            stored = connection.execute(select(audit_shipping.c.last_seq)
                                        .where(audit_shipping.c.target == self._target)).scalar()
        return stored or 0

    def _store_position(self, last_seq: int) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        with self._engine.begin() as connection:
            moved = connection.execute(update(audit_shipping).where(audit_shipping.c.target == self._target)
                                       .values(last_seq=last_seq, updated_at=now)).rowcount
            if not moved:
                connection.execute(insert(audit_shipping).values(target=self._target, last_seq=last_seq,
                                                                 updated_at=now))

    def _is_leader(self) -> bool:
        if self._engine.dialect.name != "postgresql":
            return True
        if self._leader is not None:
            return True
        connection = self._engine.connect()
        try:
            held = connection.execute(text(f"SELECT pg_try_advisory_lock({_SHIPPER_LOCK})")).scalar()
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not held:  # another worker ships; ask again next round
            connection.close()
            return False
        self._leader = connection
        return True
