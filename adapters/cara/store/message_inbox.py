"""The HL7 v2 bridge's memory: the ACK given to each message — (sender, MSH-10, the message's digest) —
kept durably so the same message again gets the same answer, and the messages held until their patient
is ready, sealed like everything naming a patient."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.store.database import driver_datetime, for_driver, in_chunks, in_list, insert_rows
from adapters.cara.store.schema import mllp_answer, mllp_held_message

_ANSWER_COLUMNS = ("sender", "control_id", "digest", "ack_code", "ack", "answered_at")
AnswerKey = tuple[str, str, str]  # (sender, MSH-10, digest)


@dataclass(frozen=True)
class HeldMessage:
    """A message held for identity review: who sent it, why it waits (in clear), and — when opened —
    the message as received."""

    id: str
    sender: str  # the sender's key (senders file)
    control_id: str
    reason: str
    pid: str | None
    held_at: datetime
    raw: bytes | None = None
    review_id: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def held_context(held_id: str) -> str:
    return f"mllp-held|{held_id}"


class DatabaseMessageInbox:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring

    def answer(self, key: AnswerKey) -> bytes | None:
        with self._engine.connect() as connection:
            return self.answers_in(connection, [key]).get(key)

    def remember(self, key: AnswerKey, ack_code: str, ack: bytes, *, connection=None) -> bytes:
        """Keep the answer; if a concurrent copy of the message answered first, that answer stands
        (and is returned), so both copies get the same ACK."""
        sender, control_id, digest = key
        row = dict(sender=sender, control_id=control_id, digest=digest, ack_code=ack_code, ack=ack,
                   answered_at=_now())
        if connection is not None:
            connection.execute(insert(mllp_answer).values(**row))
            return ack
        try:
            with self._engine.begin() as own:
                own.execute(insert(mllp_answer).values(**row))
        except IntegrityError:
            return self.answer(key) or ack
        return ack

    def answers(self, keys: list[AnswerKey]) -> dict[AnswerKey, bytes]:
        """The answers already kept for these messages: one query for a whole batch."""
        if not keys:
            return {}
        with self._engine.connect() as connection:
            return self.answers_in(connection, keys)

    def answers_in(self, connection, keys: list[AnswerKey]) -> dict[AnswerKey, bytes]:
        """The answers already kept for these messages, read in the caller's transaction: one query
        per sender (a batch has one or a few), plain SQL on the driver (a Core statement costs
        several times what the database takes to answer it; see `search_sql`)."""
        wanted = set(keys)
        by_sender: dict[str, list[str]] = {}
        for sender, control_id, _ in wanted:
            by_sender.setdefault(sender, []).append(control_id)
        found: dict[AnswerKey, bytes] = {}
        dialect = connection.dialect.name
        for sender, control_ids in by_sender.items():
            for chunk in in_chunks(sorted(set(control_ids))):
                sql = for_driver("SELECT control_id, digest, ack FROM mllp_answer WHERE sender = ? AND control_id IN "
                                 + in_list(len(chunk)), dialect)
                for control_id, digest, ack in connection.exec_driver_sql(sql, (sender, *chunk)).all():
                    if (sender, control_id, digest) in wanted:
                        found[(sender, control_id, digest)] = bytes(ack)
        return found

    def remember_many(self, connection, answers: list[tuple[AnswerKey, str, bytes]]) -> None:
        """(key, ACK code, ACK) rows in the caller's transaction (one multi-row insert)."""
        if answers:
            now = driver_datetime(_now(), connection.dialect.name)
            insert_rows(connection, "mllp_answer", _ANSWER_COLUMNS,
                        [(s, c, d, code, ack, now) for (s, c, d), code, ack in answers])

    def hold(self, *, key: AnswerKey, reason: str, pid: str | None, review_id: str | None, raw: bytes,
             ack_code: str, ack: bytes, within: Callable | None = None) -> str:
        """Hold a message until its patient is ready and keep its answer, in one transaction (with
        `within`, the audit record)."""
        held_id = uuid.uuid4().hex
        sealed = self._keyring.seal(raw, held_context(held_id))
        with self._engine.begin() as connection:
            connection.execute(insert(mllp_held_message).values(
                id=held_id, sender=key[0], control_id=key[1], reason=reason, pid=pid, review_id=review_id,
                status="held", held_at=_now(), sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext))
            self.remember(key, ack_code, ack, connection=connection)
            if within is not None:
                within(connection)
        return held_id

    def held(self) -> list[tuple[str, str, str | None, bytes]]:
        """(id, reason, pid, message) of every message still held, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(select(mllp_held_message).where(mllp_held_message.c.status == "held")
                                      .order_by(mllp_held_message.c.held_at)).all()
        return [(r.id, r.reason, r.pid, self._keyring.open(Sealed(r.sealed_key, r.sealed), held_context(r.id)))
                for r in rows]

    def any_held(self) -> bool:
        with self._engine.connect() as connection:
            return connection.execute(select(mllp_held_message.c.id).where(mllp_held_message.c.status == "held")
                                      .limit(1)).first() is not None

    def held_messages(self, *, pids: tuple[str, ...] | None = None, opened: bool = False) -> list[HeldMessage]:
        """The messages still held (of these MPI-PIDs only, when given), oldest first; `opened` decrypts
        each message (to process it again) — a listing does not need to."""
        query = select(mllp_held_message).where(mllp_held_message.c.status == "held")
        if pids is not None:
            query = query.where(mllp_held_message.c.pid.in_(pids))
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(mllp_held_message.c.held_at, mllp_held_message.c.id)).all()
        return [HeldMessage(r.id, r.sender, r.control_id, r.reason, r.pid, r.held_at,
                            self._keyring.open(Sealed(r.sealed_key, r.sealed), held_context(r.id)) if opened else None,
                            r.review_id)
                for r in rows]

    def settle(self, connection, held_id: str, status: str) -> None:
        """A held message processed again: `released` (its document is in the record) or `refused`
        (the record refused it; the audit record says why), in the caller's transaction."""
        connection.execute(update(mllp_held_message).where(mllp_held_message.c.id == held_id,
                                                           mllp_held_message.c.status == "held")
                           .values(status=status))

    def still_held(self, held_id: str, reason: str, pid: str | None, review_id: str | None = None) -> None:
        """Processed again but its cause is not fixed (or another now holds it): the reason kept current."""
        with self._engine.begin() as connection:
            connection.execute(update(mllp_held_message).where(mllp_held_message.c.id == held_id)
                               .values(reason=reason, pid=pid, review_id=review_id))
