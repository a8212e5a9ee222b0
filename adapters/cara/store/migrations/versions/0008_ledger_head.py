"""The ledger's signed head: one row, re-signed at every commit batch (see audit.ledger).

Revision ID: 0008_ledger_head
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_ledger_head"
down_revision = "0008_portal"


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.DateTime, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
