"""FHIR versioning of the stored Consents and Patients: a version counter on each row (meta.versionId,
ETag), and a tombstone per deleted policy set so that a second DELETE answers 204 and a read 410 Gone.

Revision ID: 0009_versioning
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_versioning"
down_revision = "0008_ledger_head"


def upgrade() -> None:
    with op.batch_alter_table("consent_policy") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.create_table(
        "consent_policy_deleted",
        sa.Column("policy_set_id", sa.String(80), primary_key=True),
        sa.Column("patient_pid", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),  # the version the deletion made (last kept + 1)
        sa.Column("deleted_at", sa.DateTime, nullable=False),
    )
