"""The community outbox (transactional outbox): what the record must deliver to each community.

A row is written in the same transaction that stores a document (the provide seam calls `enqueue`
with the transaction's connection), so a document is stored if and only if its deliveries are due.
Deliverers (inside `serve`, or `epr-gateway deliver` processes, several at once on PostgreSQL) `claim`
due rows under a lease, send them, and `finish` them with the community's answer. Nothing is ever
deleted: a delivered row keeps its receipt, every attempt its answer.

Exactly once in the community: the submission set uniqueId, its entryUUIDs and the document's
uniqueId are fixed when the row is written, and every attempt sends the same ones; after a lost
answer the community's "duplicate submission set" answer says the earlier attempt landed.

Order: per community and patient, a row is claimed only when no earlier row of the same patient is
still on its way (pending, in flight or waiting for the patient), and a row that depends on another
(a replacement on its original, a metadata update on the document) only once that one is delivered.
Claiming is one UPDATE over a sub-select (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
writers), so two deliverers never hold the same row, and a lease that expires (a deliverer killed
mid-send) makes the row due again.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update

from adapters.cara.store.database import driver_datetime, for_driver
from adapters.cara.store.outbox_schema import community_audit_message, community_delivery, community_delivery_attempt

PENDING, IN_FLIGHT, DELIVERED, FAILED, WAITING_PATIENT, NOT_SUPPORTED = (
    "pending", "in-flight", "delivered", "failed", "waiting-patient", "not-supported")
STATES = (PENDING, IN_FLIGHT, WAITING_PATIENT, DELIVERED, FAILED, NOT_SUPPORTED)
ON_ITS_WAY = (PENDING, IN_FLIGHT, WAITING_PATIENT)  # an earlier row in one of these holds the later ones back
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
class NewDelivery:
    """What the provide seam knows when a document (or a metadata version) is stored."""

    community: str
    kind: str  # provide | replace | update | delete
    entry_id: str
    version: int
    unique_id: str
    patient_pid: str
    confidentiality: str  # the level it was stored with: the first attempt sends it
    original_entry_id: str | None = None  # replace: the replaced entry; update/delete: the entry itself


@dataclass(frozen=True)
class Delivery:
    id: int
    community: str
    kind: str
    entry_id: str
    version: int
    unique_id: str
    patient_pid: str
    depends_on: int | None
    state: str
    submission_set_unique_id: str
    submission_set_uuid: str
    entry_uuid: str
    confidentiality: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    community_patient_id: str | None
    last_code: str | None
    last_text: str | None
    created_at: datetime
    delivered_at: datetime | None
    receipt: dict | None
    original_entry_uuid: str | None = None  # the community entryUUID of what this row depends on, if delivered


@dataclass(frozen=True)
class Attempt:
    """One try and what the community said (or why nothing was heard)."""

    outcome: str  # delivered | already-delivered | raise-confidentiality | conflict | rejected | transport |
    # waiting-patient | not-supported
    started_at: datetime
    finished_at: datetime
    confidentiality: str
    code: str | None = None
    text: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Transport-class retries: exponential from `first_seconds`, at most `max_seconds`, with ±50 % jitter
    (many rows failing together must not come back together)."""

    first_seconds: float = 2.0
    max_seconds: float = 600.0
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempts: int) -> timedelta:
        base = min(self.max_seconds, self.first_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=base * (0.5 + self.jitter()))


@dataclass(frozen=True)
class CommunityCounts:
    community: str
    by_state: dict[str, int]
    oldest_due: datetime | None  # created_at of the oldest row still on its way


class DatabaseOutbox:
    def __init__(self, *, engine: Engine, clock: Callable[[], datetime] = utcnow):
        self._engine = engine
        self._clock = clock

    # -- written in the provide seam's transaction ------------------------------------------------------
    def enqueue(self, connection: Connection, deliveries: Sequence[NewDelivery]) -> None:
        """One row per delivery, in the caller's transaction (its documents' transaction)."""
        if not deliveries:
            return
        now = self._clock()
        rows = []
        for delivery in deliveries:
            if delivery.kind not in KINDS:
                raise ValueError(f"unknown delivery kind {delivery.kind!r}")
            depends_on = None
            if delivery.original_entry_id is not None:
                depends_on = connection.execute(
                    select(func.max(community_delivery.c.id)).where(
                        community_delivery.c.community == delivery.community,
                        community_delivery.c.entry_id == delivery.original_entry_id)).scalar()
            rows.append(dict(
                community=delivery.community, kind=delivery.kind, entry_id=delivery.entry_id,
                version=delivery.version, unique_id=delivery.unique_id, patient_pid=delivery.patient_pid,
                depends_on=depends_on, state=PENDING, submission_set_unique_id=new_submission_set_unique_id(),
                submission_set_uuid=new_entry_uuid(), entry_uuid=new_entry_uuid(),
                confidentiality=delivery.confidentiality, attempts=0, next_attempt_at=now, created_at=now,
                updated_at=now))
        connection.execute(insert(community_delivery), rows)

    def queue_audit(self, connection: Connection, community: str, message: bytes) -> None:
        """An ATNA message for the community's repository, kept until it is taken (see `unsent_audit`)."""
        connection.execute(insert(community_audit_message).values(
            community=community, created_at=self._clock(), message=message, attempts=0))

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
            connection.exec_driver_sql(sql, (token, driver_datetime(now + timedelta(seconds=lease_seconds), dialect),
                                             driver_datetime(now, dialect), *params))
            rows = connection.execute(_deliveries().where(community_delivery.c.lease_owner == token)
                                      .order_by(community_delivery.c.id)).all()
        return [_delivery(row) for row in rows]

    def finish(self, delivery: Delivery, *, attempt: Attempt, state: str, retry_at: datetime | None = None,
               confidentiality: str | None = None, community_patient_id: str | None = None,
               receipt: dict | None = None, within: Callable[[Connection], None] | None = None) -> bool:
        """Record `attempt` and move the row to `state` — only while this claim still holds it (the lease
        owner); returns False when another deliverer took it meanwhile (the attempt is kept anyway).
        `within(connection)` runs in the same transaction (the ledger record, the ATNA message)."""
        now = self._clock()
        values: dict = dict(state=state, updated_at=now, lease_owner=None, lease_until=None,
                            last_code=attempt.code, last_text=(attempt.text or None) and attempt.text[:2000])
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        if confidentiality is not None:
            values["confidentiality"] = confidentiality
        if community_patient_id is not None:
            values["community_patient_id"] = community_patient_id
        if state == DELIVERED:
            values["delivered_at"] = now
            values["receipt"] = json.dumps(receipt or {}, sort_keys=True)
        with self._engine.begin() as connection:
            connection.execute(insert(community_delivery_attempt).values(
                delivery_id=delivery.id, attempt=delivery.attempts, started_at=attempt.started_at,
                finished_at=attempt.finished_at, submission_set_unique_id=delivery.submission_set_unique_id,
                entry_uuid=delivery.entry_uuid, confidentiality=attempt.confidentiality, outcome=attempt.outcome,
                code=attempt.code and attempt.code[:128], text=attempt.text and attempt.text[:2000],
                answer=attempt.answer and attempt.answer[:ANSWER_LIMIT]))
            held = connection.execute(update(community_delivery).where(
                community_delivery.c.id == delivery.id, community_delivery.c.lease_owner == delivery.lease_owner)
                .values(**values)).rowcount
            if within is not None:
                within(connection)
        return held == 1

    # -- the operator -------------------------------------------------------------------------------------
    def counts(self) -> list[CommunityCounts]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(community_delivery.c.community, community_delivery.c.state, func.count())
                                      .group_by(community_delivery.c.community, community_delivery.c.state)).all()
            oldest = dict(connection.execute(
                select(community_delivery.c.community, func.min(community_delivery.c.created_at))
                .where(community_delivery.c.state.in_(ON_ITS_WAY)).group_by(community_delivery.c.community)).all())
        by_community: dict[str, dict[str, int]] = {}
        for community, state, count in rows:
            by_community.setdefault(community, {})[state] = count
        return [CommunityCounts(c, states, oldest.get(c)) for c, states in sorted(by_community.items())]

    def find(self, unique_id: str) -> list[tuple[Delivery, list[dict]]]:
        """Every delivery of the document `unique_id` (each community, each version) with its attempts."""
        with self._engine.connect() as connection:
            rows = connection.execute(_deliveries().where(community_delivery.c.unique_id == unique_id)
                                      .order_by(community_delivery.c.id)).all()
            found = []
            for row in rows:
                attempts = connection.execute(select(community_delivery_attempt).where(
                    community_delivery_attempt.c.delivery_id == row.id).order_by(
                    community_delivery_attempt.c.attempt)).mappings().all()
                found.append((_delivery(row), [dict(a) for a in attempts]))
        return found

    def retry(self, *, unique_ids: Sequence[str] = (), failed: bool = False) -> int:
        """Make rows due now: the failed ones (`failed`), and/or those of the named documents that are not
        delivered. Their submission set, entryUUIDs and uniqueId stay as they were."""
        if not unique_ids and not failed:
            return 0
        chosen = []
        if failed:
            chosen.append(community_delivery.c.state.in_((FAILED, NOT_SUPPORTED)))
        if unique_ids:
            chosen.append(and_(community_delivery.c.unique_id.in_(list(unique_ids)),
                               community_delivery.c.state.in_((FAILED, NOT_SUPPORTED, PENDING, WAITING_PATIENT))))
        now = self._clock()
        with self._engine.begin() as connection:
            return connection.execute(update(community_delivery).where(or_(*chosen)).values(
                state=PENDING, next_attempt_at=now, updated_at=now)).rowcount

    def states_of(self, entry_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """entry id → community → the state of its latest delivery (the migration's report)."""
        found: dict[str, dict[str, str]] = {}
        if not entry_ids:
            return found
        with self._engine.connect() as connection:
            rows = connection.execute(select(community_delivery.c.entry_id, community_delivery.c.community,
                                             community_delivery.c.state)
                                      .where(community_delivery.c.entry_id.in_(list(entry_ids)))
                                      .order_by(community_delivery.c.id)).all()
        for entry_id, community, state in rows:
            found.setdefault(entry_id, {})[community] = state
        return found

    def delivered_entry_uuid(self, delivery_id: int) -> str | None:
        with self._engine.connect() as connection:
            return connection.execute(select(community_delivery.c.entry_uuid).where(
                community_delivery.c.id == delivery_id, community_delivery.c.state == DELIVERED)).scalar()

    # -- the ATNA queue -----------------------------------------------------------------------------------
    def unsent_audit(self, community: str, limit: int = 100) -> list[tuple[int, bytes]]:
        with self._engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                select(community_audit_message.c.id, community_audit_message.c.message).where(
                    community_audit_message.c.community == community, community_audit_message.c.sent_at.is_(None))
                .order_by(community_audit_message.c.id).limit(limit)).all()]

    def audit_sent(self, ids: Sequence[int]) -> None:
        with self._engine.begin() as connection:
            connection.execute(update(community_audit_message).where(community_audit_message.c.id.in_(list(ids)))
                               .values(sent_at=self._clock(), attempts=community_audit_message.c.attempts + 1))

    def audit_not_sent(self, ids: Sequence[int], error: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(update(community_audit_message).where(community_audit_message.c.id.in_(list(ids)))
                               .values(attempts=community_audit_message.c.attempts + 1, last_error=error[:500]))


def _deliveries():
    original = community_delivery.alias("original")
    return (select(community_delivery, original.c.entry_uuid.label("original_entry_uuid"))
            .select_from(community_delivery.outerjoin(original, and_(
                original.c.id == community_delivery.c.depends_on, original.c.state == DELIVERED))))


def _delivery(row) -> Delivery:
    values = row._mapping
    receipt = values["receipt"]
    return Delivery(**{name: values[name] for name in Delivery.__dataclass_fields__ if name not in ("receipt",)},
                    receipt=json.loads(receipt) if receipt else None)


def _claim_sql(dialect: str, limit: int, communities: Sequence[str] | None, now: datetime) -> tuple[str, tuple]:
    """The claim as one statement: due rows, in order, none held back by an earlier row of its patient
    or an undelivered original; on PostgreSQL the rows another claim holds are skipped, not waited for."""
    on_its_way = ", ".join(f"'{state}'" for state in ON_ITS_WAY)
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
            WHERE ((d.state IN ('{PENDING}', '{WAITING_PATIENT}') AND d.next_attempt_at <= ?)
                   OR (d.state = '{IN_FLIGHT}' AND d.lease_until < ?)){only}
              AND NOT EXISTS (SELECT 1 FROM community_delivery e
                              WHERE e.community = d.community AND e.patient_pid = d.patient_pid AND e.id < d.id
                                AND e.state IN ({on_its_way}))
              AND (d.depends_on IS NULL OR NOT EXISTS (SELECT 1 FROM community_delivery o
                                                       WHERE o.id = d.depends_on AND o.state <> '{DELIVERED}'))
            ORDER BY d.id LIMIT {int(limit)}{lock})"""
    return for_driver(sql, dialect), (due, due, *params)
