"""When a notification was seen on the patient's web page.

Revision ID: 0008_portal
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_portal"
down_revision = "0008_conformance"  # chained after h/conformance, merged into this branch


def upgrade() -> None:
    op.create_table(
        "patient_notification_read",
        sa.Column("notification_id", sa.String(64), sa.ForeignKey("patient_notification.id"), primary_key=True),
        sa.Column("read_at", sa.DateTime, nullable=False),
    )
