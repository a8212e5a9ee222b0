"""What `epr-gateway check-restore` asks of a restored store: every document opens and is the document
that was stored (its SHA-1 and size as its metadata records them), every sealed value's data key unwraps
under the key set restored beside it, and how many rows each table holds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import Engine, MetaData, Table, func, inspect, select

from adapters.cara.crypto import DecryptionFailed, Keyring, Sealed
from adapters.cara.errors import IntegrityFailure
from adapters.cara.store.key_rotation import rows_under, sealed_tables
from adapters.cara.store.schema import document_body, document_entry
from adapters.cara.store.sealed_entries import SealedEntry, open_body, open_entry

BATCH = 200
MAX_PROBLEMS = 20  # named one by one; beyond, counted


@dataclass
class Checked:
    checked: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.failed += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def check_documents(*, engine: Engine, keyring: Keyring) -> Checked:
    """Each document's metadata and bytes open, and the bytes have the SHA-1 and size recorded."""
    result = Checked()
    columns = (document_entry.c.id, document_entry.c.unique_id, document_entry.c.status, document_entry.c.sealed_key,
               document_entry.c.sealed, document_entry.c.version, document_body.c.sealed_key.label("body_key"),
               document_body.c.sealed.label("body"))
    query = select(*columns).select_from(document_entry.outerjoin(document_body,
                                                                  document_body.c.entry_id == document_entry.c.id))
    last = None
    while True:
        with engine.connect() as connection:
            page = query.order_by(document_entry.c.id).limit(BATCH)
            rows = connection.execute(page if last is None else page.where(document_entry.c.id > last)).all()
        for row in rows:
            result.checked += 1
            try:
                entry = open_entry(keyring, SealedEntry(row.id, row.unique_id, row.status, row.sealed_key, row.sealed,
                                                        row.version))
                if row.body is None:
                    raise IntegrityFailure(f"document {row.id} has no stored content")
                content = open_body(keyring, entry, Sealed(row.body_key, row.body))
            except IntegrityFailure as failure:
                result.fail(str(failure))
                continue
            if hashlib.sha1(content).hexdigest() != entry.sha1 or len(content) != entry.size:
                result.fail(f"the content of document {row.id} is not the document stored (hash or size)")
        if len(rows) < BATCH:
            return result
        last = rows[-1].id


def check_data_keys(*, engine: Engine, keyring: Keyring) -> Checked:
    """Every sealed value's data key unwraps under `keyring` (every table with sealed values)."""
    result = Checked()
    with engine.connect() as connection:
        for sealed in sealed_tables(engine):
            for row_id, wrapped in connection.execute(select(sealed.key, sealed.table.c.sealed_key)):
                result.checked += 1
                try:
                    keyring.check_unwraps(wrapped)
                except DecryptionFailed:
                    key_id = wrapped.split(b":", 1)[0].decode(errors="replace")[:40]
                    result.fail(f"{sealed.name} {row_id}: its data key is wrapped under {key_id}, not in this key set")
    return result


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table (every table of the database but Alembic's own)."""
    names = sorted(n for n in inspect(engine).get_table_names() if n != "alembic_version")
    with engine.connect() as connection:
        return {name: connection.execute(select(func.count()).select_from(Table(name, MetaData()))).scalar_one()
                for name in names}


def key_ids_in_use(*, engine: Engine, keyring: Keyring) -> list[str]:
    """The keyring's keys that stored data keys are wrapped under: what a backup's key set must hold."""
    return [key_id for key_id in keyring.key_ids if sum(rows_under(engine=engine, key_id=key_id).values())]
