"""The full MPI: PDQm keyed-hash index, merge links, identity review list.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "patient_index",
        sa.Column("param", sa.String(16), primary_key=True),
        sa.Column("value_hash", sa.String(64), primary_key=True),
        sa.Column("pid", sa.String(64), sa.ForeignKey("patient.pid"), primary_key=True),
    )
    op.create_index("ix_patient_index_pid", "patient_index", ["pid"])
    op.create_table(
        "patient_link",
        sa.Column("retired_pid", sa.String(64), sa.ForeignKey("patient.pid"), primary_key=True),
        sa.Column("surviving_pid", sa.String(64), sa.ForeignKey("patient.pid"), nullable=False),
        sa.Column("merged_at", sa.DateTime, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_patient_link_surviving", "patient_link", ["surviving_pid", "active"])
    op.create_table(
        "identity_review",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("pid", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_identity_review_status", "identity_review", ["status", "created_at"])
    op.create_index("ix_identity_review_pid", "identity_review", ["pid"])
