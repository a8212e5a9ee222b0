"""The read position of the ledger's shipping to a SIEM (RFC 5424 over TLS, IHE ITI-20).

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "audit_shipping",
        sa.Column("target", sa.String(255), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
