"""The audit ledger: a hash-chained, append-only record of every exchange, and signed checkpoints.

Kept out of the document tables (see audit/schema.py for why). Append-only is a convention of the
code (no UPDATE or DELETE anywhere) made evident by the chain: any change is found by
`audit.ledger.verify_ledger`.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "audit_record",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("subtype", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
    )
    # CH:ATC (ITI-81) asks for one patient's events in a date range.
    op.create_index("ix_audit_record_patient", "audit_record", ["patient_key", "recorded_at"])
    op.create_index("ix_audit_record_recorded", "audit_record", ["recorded_at"])
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.DateTime, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
