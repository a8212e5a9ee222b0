"""The durable queue of ATNA messages (ITI-20) for each community's audit record repository: written
in the transaction that finishes a delivery attempt, taken under a lease by one sender at a time
(several deliverer processes on PostgreSQL), and marked sent only when the repository took it; a
message the repository did not take is due again when its lease is released (or expires, after a
kill). Part of `DatabaseOutbox` (a base class of it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Connection, func, select, update

from adapters.cara.store.database import driver_datetime, for_driver
from adapters.cara.store.outbox_schema import community_audit_message


_QUEUE_SQL = "INSERT INTO community_audit_message (community, created_at, message, attempts) VALUES (?, ?, ?, ?)"


class AuditQueue:
    _engine: object
    _clock: object

    def queue_audit(self, connection: Connection, community: str, messages: Sequence[bytes]) -> None:
        """ATNA messages (RFC 5424, ready to frame) for `community`'s repository, in the caller's transaction."""
        if messages:
            dialect = connection.dialect.name
            now = driver_datetime(self._clock(), dialect)
            cursor = connection.connection.cursor()  # the driver's own: once per delivery (see outbox.finish_many)
            try:
                cursor.executemany(for_driver(_QUEUE_SQL, dialect),
                                   [(community, now, message, 0) for message in messages])
            finally:
                cursor.close()

    def claim_audit(self, *, community: str, owner: str, limit: int = 200,
                    lease_seconds: float = 60.0) -> list[tuple[int, bytes]]:
        """Up to `limit` unsent messages of `community` in their order, taken by `owner` for `lease_seconds`."""
        now = self._clock()
        token = f"{owner[:27]}/{uuid.uuid4().hex}"
        with self._engine.begin() as connection:
            dialect = connection.dialect.name
            lock = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
            sql = for_driver(f"""
                UPDATE community_audit_message SET lease_owner = ?, lease_until = ?
                WHERE id IN (SELECT id FROM community_audit_message
                             WHERE sent_at IS NULL AND community = ? AND (lease_until IS NULL OR lease_until < ?)
                             ORDER BY id LIMIT {int(limit)}{lock})
                RETURNING id""", dialect)
            ids = [row[0] for row in connection.exec_driver_sql(sql, (
                token, driver_datetime(now + timedelta(seconds=lease_seconds), dialect), community,
                driver_datetime(now, dialect))).all()]
            if not ids:
                return []
            return [tuple(row) for row in connection.execute(
                select(community_audit_message.c.id, community_audit_message.c.message)
                .where(community_audit_message.c.id.in_(ids)).order_by(community_audit_message.c.id)).all()]

    def unsent_audit(self, community: str, limit: int = 100) -> list[tuple[int, bytes]]:
        """Messages not (yet) taken by the repository, oldest first (whoever holds them)."""
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                select(community_audit_message.c.id, community_audit_message.c.message).where(
                    community_audit_message.c.community == community, community_audit_message.c.sent_at.is_(None))
                .order_by(community_audit_message.c.id).limit(limit)).all()]

    def audit_sent(self, ids: Sequence[int]) -> None:
        with self._engine.begin() as connection:
            connection.execute(update(community_audit_message).where(community_audit_message.c.id.in_(list(ids)))
                               .values(sent_at=self._clock(), attempts=community_audit_message.c.attempts + 1,
                                       lease_owner=None, lease_until=None))

    def audit_not_sent(self, ids: Sequence[int], error: str) -> None:
        """The repository did not take them: due again for the next send (the lease released)."""
        with self._engine.begin() as connection:
            connection.execute(update(community_audit_message).where(community_audit_message.c.id.in_(list(ids)))
                               .values(attempts=community_audit_message.c.attempts + 1, last_error=error[:500],
                                       lease_owner=None, lease_until=None))

    def unsent_audit_count(self) -> dict[str, int]:
        """community → messages its repository has not taken yet (`outbox status`)."""
        with self._engine.connect() as connection:
            return dict(connection.execute(
                select(community_audit_message.c.community, func.count())
                .where(community_audit_message.c.sent_at.is_(None))
                .group_by(community_audit_message.c.community)).all())
