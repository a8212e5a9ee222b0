"""The HL7 v2 bridge's own tables: the answer given to each (sender, MSH-10), so that a repeat gets the
same ACK and changes nothing; and the messages held for identity review (sealed).

Revision ID: 0008_mllp_answers
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_mllp_answers"
down_revision = "0008_migration"


def upgrade() -> None:
    op.create_table(
        "mllp_answer",
        sa.Column("sender", sa.String(200), primary_key=True),
        sa.Column("control_id", sa.String(200), primary_key=True),
        sa.Column("ack_code", sa.String(2), nullable=False),
        sa.Column("ack", sa.LargeBinary, nullable=False),
        sa.Column("answered_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "mllp_held_message",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("sender", sa.String(200), nullable=False),
        sa.Column("control_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("pid", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("held_at", sa.DateTime, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_mllp_held_message_status", "mllp_held_message", ["status", "held_at"])
