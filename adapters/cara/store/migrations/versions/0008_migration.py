"""The Infomed migration's journal and holding area (gateway/migration/schema.py), and the per-patient
document version that lets search pages of other processes notice the migration's writes.

Revision ID: 0008_migration
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_migration"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "migration_journal",
        sa.Column("source", sa.String(1024), primary_key=True),
        sa.Column("media", sa.String(255), nullable=False),
        sa.Column("unique_id", sa.String(256), nullable=True),
        sa.Column("entry_uuid", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("replaces", sa.String(256), nullable=True),
        sa.Column("entry_id", sa.String(64), nullable=True),
        sa.Column("code_tables", sa.String(128), nullable=True),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_migration_journal_media", "migration_journal", ["media"])
    op.create_index("ix_migration_journal_entry_uuid", "migration_journal", ["entry_uuid"])
    op.create_table(
        "migration_held",
        sa.Column("source", sa.String(1024), primary_key=True),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("held_at", sa.DateTime, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "document_version",
        sa.Column("patient_pid", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
