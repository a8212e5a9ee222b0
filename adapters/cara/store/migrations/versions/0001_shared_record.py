"""The shared record: MPI, submission sets, document entries, tokens, relations, bodies.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("pid", sa.String(64), primary_key=True),
        sa.Column("spid_hash", sa.String(64), unique=True, nullable=True),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "patient_identifier",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pid", sa.String(64), sa.ForeignKey("patient.pid"), nullable=False, index=True),
        sa.Column("system", sa.String(256), nullable=False),
        sa.Column("value_hash", sa.String(64), nullable=False),
    )
    op.create_index("ux_patient_identifier", "patient_identifier", ["system", "value_hash"], unique=True)
    op.create_table(
        "submission_set",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("unique_id", sa.String(256), nullable=False, unique=True),
        sa.Column("patient_pid", sa.String(64), nullable=False, index=True),
        sa.Column("source_id", sa.String(256), nullable=False),
        sa.Column("submitted_at", sa.DateTime, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "document_entry",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("unique_id", sa.String(256), nullable=False, unique=True),
        sa.Column("patient_pid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("confidentiality", sa.String(16), nullable=False),
        sa.Column("date", sa.DateTime, nullable=True),
        sa.Column("period_start", sa.DateTime, nullable=True),
        sa.Column("period_end", sa.DateTime, nullable=True),
        sa.Column("submission_set_id", sa.String(64), sa.ForeignKey("submission_set.id"), nullable=False),
        sa.Column("created_seq", sa.BigInteger, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_document_entry_patient", "document_entry", ["patient_pid", "status", "created_seq"])
    op.create_table(
        "document_token",
        sa.Column("entry_id", sa.String(64), sa.ForeignKey("document_entry.id"), nullable=False),
        sa.Column("param", sa.String(32), nullable=False),
        sa.Column("system", sa.String(256), nullable=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_document_token_lookup", "document_token", ["param", "value", "entry_id"])
    op.create_index("ix_document_token_entry", "document_token", ["entry_id"])
    op.create_table(
        "document_relation",
        sa.Column("source_id", sa.String(64), sa.ForeignKey("document_entry.id"), primary_key=True),
        sa.Column("target_id", sa.String(64), sa.ForeignKey("document_entry.id"), primary_key=True),
        sa.Column("code", sa.String(16), primary_key=True),
    )
    op.create_table(
        "document_body",
        sa.Column("entry_id", sa.String(64), sa.ForeignKey("document_entry.id"), primary_key=True),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
