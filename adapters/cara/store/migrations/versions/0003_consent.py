"""Patient consent: the policies (CH:PPQm) and the notifications owed to the patient (emergency access).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "consent_policy",
        sa.Column("policy_set_id", sa.String(80), primary_key=True),
        sa.Column("patient_pid", sa.String(64), sa.ForeignKey("patient.pid"), nullable=False, index=True),
        sa.Column("template", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "patient_notification",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("patient_pid", sa.String(64), sa.ForeignKey("patient.pid"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_patient_notification_patient", "patient_notification", ["patient_pid", "created_at"])
