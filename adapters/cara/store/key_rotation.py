"""Key rotation: every wrapped data key re-wrapped under the keyring's active key, while the gateway serves.

Which rows: every table with a `sealed_key` column, read from the database itself (not from a list kept
by hand: a table added later — the migration's holding area was one that a list missed — is re-wrapped
too, or its rows would no longer open once the old key is retired). The key id of the key-encryption key
is the prefix of every wrapped key (`kek-…:`), bound to it as associated data (adapters/cara/crypto.py),
so "rows not yet under the active key" is a comparison of that prefix.

How: in batches by primary key, each batch its own transaction, so readers keep working (a row opens
under its old key until its batch commits, under the new one after). Each row is changed only if it
still holds the wrapped key that was read (compare and set): a row sealed again meanwhile (a metadata
update, a policy change) has a new data key with its new ciphertext, and re-wrapping the old data key
over it would pair them wrongly; it is left, and counted (`keys rewrap` then reads the backlog again).
On SQLite a batch takes the write lock before it reads: a read snapshot older than another writer's
commit cannot be turned into a write (SQLITE_BUSY_SNAPSHOT, not waited for), which under load would fail
batch after batch. Rows already under the active key are read and left, so a run that stopped (killed,
the store away) resumes by running again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Column, Engine, MetaData, Table, func, inspect, select, update

from adapters.cara.crypto import Keyring

BATCH = 500


@dataclass(frozen=True)
class SealedTable:
    name: str
    table: Table
    key: Column  # its primary key (one column)


@dataclass
class RewrapReport:
    rewrapped: dict[str, int] = field(default_factory=dict)
    changed_meanwhile: int = 0  # rows sealed again while read: left as they are (under the active key)


def sealed_tables(engine: Engine) -> list[SealedTable]:
    """Every table of the database with a `sealed_key` column, with its single-column primary key."""
    inspector = inspect(engine)
    found = []
    for name in sorted(inspector.get_table_names()):
        columns = {column["name"] for column in inspector.get_columns(name)}
        if "sealed_key" not in columns:
            continue
        primary = inspector.get_pk_constraint(name)["constrained_columns"]
        if len(primary) != 1:
            raise ValueError(f"table {name} holds sealed values without a single-column primary key")
        table = Table(name, MetaData(), Column(primary[0], primary_key=True), Column("sealed_key"))
        found.append(SealedTable(name, table, table.c[primary[0]]))
    return found


def _prefix(key_id: str) -> bytes:
    return key_id.encode() + b":"


def _under(table: SealedTable, key_id: str):
    prefix = _prefix(key_id)
    return func.substr(table.table.c.sealed_key, 1, len(prefix)) == prefix


def rows_not_under(*, engine: Engine, key_id: str) -> dict[str, int]:
    """Per table, the rows whose data key is wrapped under another key than `key_id` (the backlog)."""
    with engine.connect() as connection:
        return {t.name: connection.execute(select(func.count()).select_from(t.table)
                                           .where(~_under(t, key_id))).scalar_one() for t in sealed_tables(engine)}


def rows_under(*, engine: Engine, key_id: str) -> dict[str, int]:
    """Per table, the rows whose data key is wrapped under `key_id` (must be none before it is retired)."""
    with engine.connect() as connection:
        return {t.name: connection.execute(select(func.count()).select_from(t.table)
                                           .where(_under(t, key_id))).scalar_one() for t in sealed_tables(engine)}


def rewrap(*, engine: Engine, keyring: Keyring, batch: int = BATCH, pause_seconds: float = 0.0,
           progress: Callable[[str, int], None] | None = None) -> RewrapReport:
    """Re-wrap every data key not yet under the active key; `pause_seconds` between batches leaves the
    store to the requests (SQLite has one writer)."""
    active = _prefix(keyring.active_key_id)
    report = RewrapReport()
    for sealed in sealed_tables(engine):
        table, key = sealed.table, sealed.key
        report.rewrapped[sealed.name] = 0
        last = None
        while True:
            with engine.begin() as connection:
                if connection.dialect.name == "sqlite":  # the write lock first (see above)
                    connection.exec_driver_sql(f"UPDATE {sealed.name} SET sealed_key = sealed_key WHERE 1 = 0")
                query = select(key, table.c.sealed_key).order_by(key).limit(batch)
                rows = connection.execute(query if last is None else query.where(key > last)).all()
                for row_id, wrapped in rows:
                    if wrapped.startswith(active):
                        continue
                    changed = connection.execute(update(table).where(key == row_id, table.c.sealed_key == wrapped)
                                                 .values(sealed_key=keyring.rewrap(wrapped))).rowcount
                    report.rewrapped[sealed.name] += changed
                    report.changed_meanwhile += 1 - changed
            if progress is not None:
                progress(sealed.name, report.rewrapped[sealed.name])
            if len(rows) < batch:
                break
            last = rows[-1][0]
            if pause_seconds:
                time.sleep(pause_seconds)
    return report


def rewrap_data_keys(*, engine: Engine, keyring: Keyring) -> dict[str, int]:
    """Re-wrap every data key not yet under the active key; the count per table."""
    return rewrap(engine=engine, keyring=keyring).rewrapped
