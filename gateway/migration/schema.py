"""The migration's own tables, on the shared record's `metadata` (one Alembic chain, migration 0008).

Why in the record's database: a batch's journal rows commit in the same transaction as its documents
and their audit records, so after a crash (SIGKILL included) the journal says exactly what is stored:
a rerun continues where the last commit ended and never stores a document twice. What is in the
clear: source paths inside the export, uniqueIds and outcomes (no content, no names, no patient id);
a reason names slots and codes, never a patient's value. Held documents are sealed.
"""

from sqlalchemy import Column, DateTime, Index, LargeBinary, String, Table, Text

from adapters.cara.store.schema import metadata

migration_journal = Table(
    "migration_journal",
    metadata,
    Column("source", String(1024), primary_key=True),  # <media>/IHE_XDM/<subset>/<URI>, or a media problem
    Column("media", String(255), nullable=False),  # the media (directory or ZIP) name
    Column("unique_id", String(256), nullable=True),
    Column("entry_uuid", String(128), nullable=True),  # the ExtrinsicObject id (RPLC/APND targets name it)
    Column("outcome", String(16), nullable=False),  # migrated | already_present | held | rejected
    Column("reason_code", String(32), nullable=True),
    Column("reason", Text, nullable=True),
    Column("replaces", String(256), nullable=True),  # uniqueId of the document it replaced
    Column("entry_id", String(64), nullable=True),  # the record's entry, when stored
    Column("code_tables", String(128), nullable=True),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_migration_journal_media", "media"),
    Index("ix_migration_journal_entry_uuid", "entry_uuid"),
)

# Held documents, sealed (the ebRIM values, the package's submission set and associations, the bytes),
# so `migrate retry` maps them again (extended code table) and resolves the patient again.
migration_held = Table(
    "migration_held",
    metadata,
    Column("source", String(1024), primary_key=True),
    Column("reason_code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("held_at", DateTime, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
)
