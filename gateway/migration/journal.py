"""The durable journal (one row per source document) and the holding area (sealed held documents).

Rows are written inside the caller's transaction: the batch provide's, so that what the journal says
and what the record holds commit together. A source already in the journal is never processed again
by `migrate` (resumable, idempotent); `migrate retry` takes held ones out of the holding area.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import base64

import orjson
from sqlalchemy import Connection, Engine, delete, insert, select

from adapters.cara.crypto import Keyring, Sealed
from gateway.migration.schema import migration_held, migration_journal

OUTCOMES = ("migrated", "already_present", "superseded", "held", "rejected")


@dataclass(frozen=True)
class JournalRow:
    source: str
    media: str
    outcome: str  # migrated | already_present | held | rejected (superseded is derived by the report)
    unique_id: str | None = None
    entry_uuid: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    replaces: str | None = None
    entry_id: str | None = None
    code_tables: str | None = None


@dataclass(frozen=True)
class HeldDocument:
    source: str
    reason_code: str
    reason: str
    held_at: datetime
    payload: dict  # document, submission_set, associations (ebRIM values), content (bytes)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _held_context(source: str) -> str:
    return f"migration-held|{source}"


class Journal:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self.engine = engine
        self._keyring = keyring

    # -- reading --------------------------------------------------------------------------------
    def rows_for(self, media: Iterable[str]) -> dict[str, JournalRow]:
        names = sorted(set(media))
        rows: dict[str, JournalRow] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(names), 500):
                for row in connection.execute(select(migration_journal).where(
                        migration_journal.c.media.in_(names[start:start + 500]))):
                    rows[row.source] = _row(row)
        return rows

    def stored_targets(self) -> dict[str, str]:
        """entryUUID → uniqueId of every document the migration has in the record (RPLC/APND targets
        in other packages, other media, earlier runs)."""
        with self.engine.connect() as connection:
            return {r.entry_uuid: r.unique_id for r in connection.execute(
                select(migration_journal.c.entry_uuid, migration_journal.c.unique_id).where(
                    migration_journal.c.entry_uuid.is_not(None),
                    migration_journal.c.outcome.in_(("migrated", "already_present"))))}

    def held(self) -> list[HeldDocument]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(migration_held).order_by(migration_held.c.source)).all()
        return [HeldDocument(r.source, r.reason_code, r.reason, r.held_at, self._open(r)) for r in rows]

    def held_summary(self) -> list[tuple[str, str, str]]:
        """(source, reason code, reason) of every held document, without opening them."""
        with self.engine.connect() as connection:
            return [tuple(r) for r in connection.execute(
                select(migration_held.c.source, migration_held.c.reason_code, migration_held.c.reason)
                .order_by(migration_held.c.source))]

    def _open(self, row) -> dict:
        plain = self._keyring.open(Sealed(row.sealed_key, row.sealed), _held_context(row.source))
        payload = orjson.loads(plain)
        payload["content"] = base64.b64decode(payload["content"])
        return payload

    # -- writing (inside the caller's transaction) -----------------------------------------------
    def record(self, connection: Connection, rows: list[JournalRow], held: list[tuple[JournalRow, dict]]) -> None:
        """Journal `rows` (replacing earlier rows of the same sources: a retried document), keep the
        held ones' payloads sealed, and drop from the holding area what is no longer held."""
        if not rows:
            return
        now = _now()
        sources = [r.source for r in rows]
        for start in range(0, len(sources), 500):
            chunk = sources[start:start + 500]
            connection.execute(delete(migration_journal).where(migration_journal.c.source.in_(chunk)))
            connection.execute(delete(migration_held).where(migration_held.c.source.in_(chunk)))
        connection.execute(insert(migration_journal), [{**r.__dict__, "recorded_at": now} for r in rows])
        if held:
            values = []
            for row, payload in held:
                plain = orjson.dumps({**payload, "content": base64.b64encode(payload["content"]).decode()})
                sealed = self._keyring.seal(plain, _held_context(row.source))
                values.append({"source": row.source, "reason_code": row.reason_code, "reason": row.reason,
                               "held_at": now, "sealed_key": sealed.wrapped_key, "sealed": sealed.ciphertext})
            connection.execute(insert(migration_held), values)

    def record_now(self, rows: list[JournalRow], held: list[tuple[JournalRow, dict]] = ()) -> None:
        with self.engine.begin() as connection:
            self.record(connection, rows, list(held))


def _row(row) -> JournalRow:
    return JournalRow(source=row.source, media=row.media, outcome=row.outcome, unique_id=row.unique_id,
                      entry_uuid=row.entry_uuid, reason_code=row.reason_code, reason=row.reason,
                      replaces=row.replaces, entry_id=row.entry_id, code_tables=row.code_tables)
