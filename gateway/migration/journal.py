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
import hashlib

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select

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


# The journal's string columns and their sizes (schema.py): a value from the export is made to fit,
# so that the row reporting a document is always written, whatever the export holds.
_LIMITS = {"source": 1024, "media": 255, "unique_id": 256, "entry_uuid": 128, "reason_code": 32, "replaces": 256,
           "entry_id": 64, "code_tables": 128, "reason": 4000}


def storable(value: str | None, limit: int) -> str | None:
    """`value` as the journal keeps it: UTF-8, no NUL (PostgreSQL refuses it in text), at most `limit`
    characters; a longer value is cut and ends with a digest of the whole, so two long values that
    share their beginning stay two keys. The same value always gives the same result (a rerun finds
    its rows)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a file name's undecodable bytes (surrogates): written as escapes
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
    value = value.replace("\x00", "\\x00")
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return f"{value[:limit - 18]}…#{digest}"


def storable_source(source: str) -> str:
    return storable(source, _LIMITS["source"])


def _storable_row(row: JournalRow, now: datetime) -> dict:
    return {**{name: storable(value, _LIMITS[name]) if name in _LIMITS else value
               for name, value in row.__dict__.items()}, "recorded_at": now}


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

    def in_the_record(self) -> list[tuple[str, str]]:
        """(source, uniqueId) of every document the migration put in the record (`migrate status`: where
        each stands in its delivery to the communities)."""
        with self.engine.connect() as connection:
            return [tuple(r) for r in connection.execute(
                select(migration_journal.c.source, migration_journal.c.unique_id).where(
                    migration_journal.c.unique_id.is_not(None),
                    migration_journal.c.outcome.in_(("migrated", "already_present")))
                .order_by(migration_journal.c.source))]

    def outcome_counts(self) -> dict[str, int]:
        """Source documents per outcome (migrated, already_present, superseded, held, rejected): the metrics."""
        with self.engine.connect() as connection:
            return dict(connection.execute(select(migration_journal.c.outcome, func.count())
                                           .group_by(migration_journal.c.outcome)).all())

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
        connection.execute(insert(migration_journal), [_storable_row(r, now) for r in rows])
        if held:
            values = []
            for row, payload in held:
                plain = orjson.dumps({**payload, "content": base64.b64encode(payload["content"]).decode()})
                sealed = self._keyring.seal(plain, _held_context(row.source))
                values.append({"source": row.source, "reason_code": row.reason_code,
                               "reason": storable(row.reason, _LIMITS["reason"]),
                               "held_at": now, "sealed_key": sealed.wrapped_key, "sealed": sealed.ciphertext})
            connection.execute(insert(migration_held), values)

    def record_now(self, rows: list[JournalRow], held: list[tuple[JournalRow, dict]] = ()) -> None:
        with self.engine.begin() as connection:
            self.record(connection, rows, list(held))


def _row(row) -> JournalRow:
    return JournalRow(source=row.source, media=row.media, outcome=row.outcome, unique_id=row.unique_id,
                      entry_uuid=row.entry_uuid, reason_code=row.reason_code, reason=row.reason,
                      replaces=row.replaces, entry_id=row.entry_id, code_tables=row.code_tables)
