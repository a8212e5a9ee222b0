"""The community outbox (transactional outbox): what the record must deliver to each community.

A row is written in the same transaction that stores a document (the provide seam calls `enqueue`
with the transaction's connection), so a document is stored if and only if its deliveries are due.
Deliverers (inside `serve`, or `epr-gateway deliver` processes, several at once on PostgreSQL) `claim`
due rows under a lease, send them, and `finish_many` them with the community's answers. Nothing is
ever deleted: a delivered row keeps its receipt, every attempt its answer.

Exactly once in the community: the submission set uniqueId, its entryUUIDs and the document's
uniqueId are fixed when the row is written, and every attempt sends the same ones; after a lost
answer the community's "duplicate submission set" answer says the earlier attempt landed.

Order: per community and patient, a row is claimed only when no earlier row of the same patient is
still on its way (pending, in flight or waiting for the patient), and a row that depends on another
(a replacement on its original, a metadata change on the document) only once that one is settled
(delivered, withdrawn or not supported; a failed original holds it back until an operator retries).
Claiming is one UPDATE over a sub-select (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
writers), so two deliverers never hold the same row, and a lease that expires (a deliverer killed
mid-send) makes the row due again. The operator's views are in `outbox_views.py`, the ATNA queue in
`outbox_audit.py`.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, select, update

from adapters.cara.store.database import driver_datetime, for_driver, in_chunks
from adapters.cara.store.outbox_audit import AuditQueue
from adapters.cara.store.outbox_rows import Attempt, Delivery, Finish, NewDelivery, deliveries, delivery_of
from adapters.cara.store.outbox_schema import (
    DELIVERED,
    FAILED,
    IN_FLIGHT,
    NOT_SUPPORTED,
    ON_ITS_WAY,
    PENDING,
    SENDS_DOCUMENT,
    STATES,
    WAITING_PATIENT,
    WITHDRAWN,
    community_delivery,
)
from adapters.cara.store.outbox_views import OperatorViews

HOLDS_DEPENDANTS = (*ON_ITS_WAY, FAILED)  # an original in one of these holds its replacement back
KINDS = ("provide", "replace", "update", "delete")
ANSWER_LIMIT = 64 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_submission_set_unique_id() -> str:
    """An OID under 2.25 (ITU-T X.667: a UUID as an integer arc), unique without a registry."""
    return f"2.25.{uuid.uuid4().int}"


def new_entry_uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True)
class Backoff:
    """Transport-class retries: exponential from `first_seconds`, at most `max_seconds`, with ±50 % jitter
    (many rows failing together must not come back together)."""

    first_seconds: float = 2.0
    max_seconds: float = 600.0
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempts: int) -> timedelta:
        base = min(self.max_seconds, self.first_seconds * 2 ** min(max(0, attempts - 1), 30))
        return timedelta(seconds=base * (0.5 + self.jitter()))


Within = Callable[[Connection, list[bool]], None]


class DatabaseOutbox(OperatorViews, AuditQueue):
    def __init__(self, *, engine: Engine, clock: Callable[[], datetime] = utcnow):
        self._engine = engine
        self._clock = clock

    # -- written in the provide seam's transaction ------------------------------------------------------
    def enqueue(self, connection: Connection, deliveries: Sequence[NewDelivery]) -> None:
        """One row per delivery, in the caller's transaction (its documents' transaction). A row naming an
        original depends on the latest row that put that document into the same community."""
        if not deliveries:
            return
        now = self._clock()
        rows = []
        for delivery in deliveries:
            if delivery.kind not in KINDS:
                raise ValueError(f"unknown delivery kind {delivery.kind!r}")
            depends_on = None
            if delivery.original_entry_id is not None:
                depends_on = self.sending_row(connection, delivery.community, delivery.original_entry_id)
            rows.append(dict(
                community=delivery.community, kind=delivery.kind, entry_id=delivery.entry_id,
                version=delivery.version, unique_id=delivery.unique_id, patient_pid=delivery.patient_pid,
                depends_on=depends_on, state=PENDING, submission_set_unique_id=new_submission_set_unique_id(),
                submission_set_uuid=new_entry_uuid(), entry_uuid=new_entry_uuid(),
                confidentiality=delivery.confidentiality, attempts=0, next_attempt_at=now, created_at=now,
                updated_at=now))
        connection.execute(insert(community_delivery), rows)

    @staticmethod
    def sending_row(connection: Connection, community: str, entry_id: str) -> int | None:
        """The latest row that puts `entry_id` into `community` (provide or replace), if any."""
        return connection.execute(select(func.max(community_delivery.c.id)).where(
            community_delivery.c.community == community, community_delivery.c.entry_id == entry_id,
            community_delivery.c.kind.in_(SENDS_DOCUMENT))).scalar()

    # -- the deliverer ------------------------------------------------------------------------------------
    def claim(self, *, owner: str, limit: int, lease_seconds: float,
              communities: Sequence[str] | None = None) -> list[Delivery]:
        """Up to `limit` due rows, each taken by `owner` for `lease_seconds` (state in-flight, one more
        attempt counted). A row in flight whose lease expired is due again."""
        now = self._clock()
        token = f"{owner[:27]}/{uuid.uuid4().hex}"  # this claim's rows, told apart from every other claim
        with self._engine.begin() as connection:
            dialect = connection.dialect.name
            sql, params = _claim_sql(dialect, limit, communities, now)
            ids = [row[0] for row in connection.exec_driver_sql(sql, (
                token, driver_datetime(now + timedelta(seconds=lease_seconds), dialect),
                driver_datetime(now, dialect), *params)).all()]
            if not ids:
                return []
            rows = connection.execute(deliveries().where(community_delivery.c.id.in_(ids))
                                      .order_by(community_delivery.c.id)).all()
        return [delivery_of(row) for row in rows]

    def release(self, deliveries: Sequence[Delivery]) -> int:
        """Give back rows claimed but not sent (a deliverer stopping): due again at once, the attempt the
        claim counted taken back. Only while the claim still holds them."""
        released = 0
        now = self._clock()
        with self._engine.begin() as connection:
            for delivery in deliveries:
                released += connection.execute(update(community_delivery).where(
                    community_delivery.c.id == delivery.id, community_delivery.c.lease_owner == delivery.lease_owner,
                    community_delivery.c.state == IN_FLIGHT).values(
                    state=PENDING, lease_owner=None, lease_until=None, attempts=community_delivery.c.attempts - 1,
                    updated_at=now)).rowcount
        return released

    def finish(self, delivery: Delivery, *, attempt: Attempt, state: str, retry_at: datetime | None = None,
               confidentiality: str | None = None, community_patient_id: str | None = None,
               receipt: dict | None = None, within: Within | None = None) -> bool:
        """`finish_many` of one."""
        return self.finish_many([Finish(delivery, attempt, state, retry_at, confidentiality, community_patient_id,
                                        receipt)], within=within)[0]

    def finish_many(self, finishes: Sequence[Finish], *, within: Within | None = None) -> list[bool]:
        """Record each attempt and move each row to its state, in ONE transaction — a row only while the
        claim that sent it still holds it (its lease owner): False for a row another deliverer took
        meanwhile (its attempt is kept anyway). `within(connection, held)` runs in the same transaction
        (the ledger records, the ATNA messages, a forward-only drop of the bytes where `held`)."""
        now = self._clock()
        held = []
        with self._engine.begin() as connection:
            # Plain statements on the driver's cursor: this runs once per delivery, and building each UPDATE
            # through the SQL expression layer cost more than the rest of the recording (bench/README.md).
            dialect = connection.dialect.name
            cursor = connection.connection.cursor()
            try:
                if finishes:
                    cursor.executemany(for_driver(_ATTEMPT_SQL, dialect), [_attempt_row(f, dialect) for f in finishes])
                for finish in finishes:
                    cursor.execute(for_driver(_FINISH_SQL, dialect), _next_state(finish, now, dialect))
                    held.append(cursor.rowcount == 1)
            finally:
                cursor.close()
            if within is not None:
                within(connection, held)
        return held

    def delivered_entry_uuids(self, community: str, entry_ids: Sequence[str]) -> dict[str, str]:
        """entry id → the entryUUID under which `community` holds it (its latest delivered provide or
        replace): what a relation (APND, XFRM, signs) names there."""
        found: dict[str, str] = {}
        with self._engine.connect() as connection:
            for chunk in in_chunks(list(dict.fromkeys(entry_ids))):
                rows = connection.execute(select(community_delivery.c.entry_id, community_delivery.c.entry_uuid)
                                          .where(community_delivery.c.community == community,
                                                 community_delivery.c.entry_id.in_(chunk),
                                                 community_delivery.c.kind.in_(SENDS_DOCUMENT),
                                                 community_delivery.c.state == DELIVERED)
                                          .order_by(community_delivery.c.id)).all()
                found.update(dict(rows))
        return found

    @staticmethod
    def undelivered_copies(connection: Connection, entry_id: str, *, besides: int) -> int:
        """How many rows, other than `besides`, still have to put `entry_id` into a community."""
        return connection.execute(select(func.count()).select_from(community_delivery).where(
            community_delivery.c.entry_id == entry_id, community_delivery.c.kind.in_(SENDS_DOCUMENT),
            community_delivery.c.id != besides, community_delivery.c.state != DELIVERED)).scalar_one()


_ATTEMPT_COLUMNS = ("delivery_id", "attempt", "started_at", "finished_at", "submission_set_unique_id", "entry_uuid",
                    "confidentiality", "outcome", "code", "text", "answer")
_ATTEMPT_SQL = (f"INSERT INTO community_delivery_attempt ({', '.join(_ATTEMPT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})")
# Optional values (NULL) keep what the row holds: one statement for every next state.
_FINISH_SQL = """UPDATE community_delivery SET state = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL,
    last_code = ?, last_text = ?, next_attempt_at = COALESCE(?, next_attempt_at),
    confidentiality = COALESCE(?, confidentiality), community_patient_id = COALESCE(?, community_patient_id),
    delivered_at = COALESCE(?, delivered_at), receipt = COALESCE(?, receipt)
    WHERE id = ? AND lease_owner = ?"""


def _attempt_row(finish: Finish, dialect: str) -> tuple:
    attempt, delivery = finish.attempt, finish.delivery
    return (delivery.id, delivery.attempts, driver_datetime(attempt.started_at, dialect),
            driver_datetime(attempt.finished_at, dialect), delivery.submission_set_unique_id, delivery.entry_uuid,
            attempt.confidentiality, attempt.outcome, attempt.code and attempt.code[:128],
            attempt.text and attempt.text[:2000], attempt.answer and attempt.answer[:ANSWER_LIMIT])


def _next_state(finish: Finish, now: datetime, dialect: str) -> tuple:
    attempt, delivered = finish.attempt, finish.state == DELIVERED

    def moment(value: datetime | None):
        return None if value is None else driver_datetime(value, dialect)

    return (finish.state, moment(now), attempt.code and attempt.code[:128], attempt.text and attempt.text[:2000],
            moment(finish.retry_at), finish.confidentiality, finish.community_patient_id,
            moment(now) if delivered else None,
            json.dumps(finish.receipt or {}, sort_keys=True) if delivered else None,
            finish.delivery.id, finish.delivery.lease_owner)


def _claim_sql(dialect: str, limit: int, communities: Sequence[str] | None, now: datetime) -> tuple[str, tuple]:
    """The claim as one statement: due rows, in order, none held back by an earlier row of its patient
    or an unsettled original; on PostgreSQL the rows another claim holds are skipped, not waited for.
    Both the outer scan and the look-back read the partial indexes of the rows still on their way."""
    on_its_way = ", ".join(f"'{state}'" for state in ON_ITS_WAY)
    holding = ", ".join(f"'{state}'" for state in HOLDS_DEPENDANTS)
    only = ""
    params: tuple = ()
    if communities:
        only = f" AND d.community IN ({', '.join('?' * len(communities))})"
        params = tuple(communities)
    lock = " FOR UPDATE OF d SKIP LOCKED" if dialect == "postgresql" else ""
    due = driver_datetime(now, dialect)
    sql = f"""
        UPDATE community_delivery SET state = '{IN_FLIGHT}', lease_owner = ?, lease_until = ?,
               attempts = attempts + 1, updated_at = ?
        WHERE id IN (
            SELECT d.id FROM community_delivery d
            WHERE d.state IN ({on_its_way}){only}
              AND ((d.state IN ('{PENDING}', '{WAITING_PATIENT}') AND d.next_attempt_at <= ?)
                   OR (d.state = '{IN_FLIGHT}' AND d.lease_until < ?))
              AND NOT EXISTS (SELECT 1 FROM community_delivery e
                              WHERE e.community = d.community AND e.patient_pid = d.patient_pid AND e.id < d.id
                                AND e.state IN ({on_its_way}))
              AND (d.depends_on IS NULL OR NOT EXISTS (SELECT 1 FROM community_delivery o
                                                       WHERE o.id = d.depends_on AND o.state IN ({holding})))
            ORDER BY d.id LIMIT {int(limit)}{lock})
        RETURNING id"""
    return for_driver(sql, dialect), (*params, due, due)  # in the order of their placeholders


__all__ = ["ANSWER_LIMIT", "Attempt", "Backoff", "DatabaseOutbox", "Delivery", "Finish", "NewDelivery", "DELIVERED",
           "FAILED", "IN_FLIGHT", "KINDS", "NOT_SUPPORTED", "ON_ITS_WAY", "PENDING", "SENDS_DOCUMENT", "STATES",
           "WAITING_PATIENT", "WITHDRAWN"]
