"""The community outbox: a delivery row per stored document and configured community, every attempt
with the community's answer, the durable queue of ATNA messages to the community, and the documents
whose bytes were dropped once delivered (forward-only).

Revision ID: 0011_community_outbox
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_community_outbox"
down_revision = "0010_mllp_answer_digest"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN_ROWS = "state IN ('pending', 'in-flight', 'waiting-patient')"  # rows still on their way


def upgrade() -> None:
    op.create_table(
        "community_delivery",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("unique_id", sa.String(256), nullable=False),
        sa.Column("patient_pid", sa.String(64), nullable=False),
        sa.Column("depends_on", ID, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("submission_set_unique_id", sa.String(128), nullable=False),
        sa.Column("submission_set_uuid", sa.String(45), nullable=False),
        sa.Column("entry_uuid", sa.String(45), nullable=False),
        sa.Column("confidentiality", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("community_patient_id", sa.String(128), nullable=True),
        sa.Column("last_code", sa.String(128), nullable=True),
        sa.Column("last_text", sa.String(2000), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("delivered_at", sa.DateTime, nullable=True),
        sa.Column("receipt", sa.Text, nullable=True),
    )
    open_rows = sa.text(OPEN_ROWS)
    op.create_index("ix_community_delivery_open", "community_delivery", ["community", "id"],
                    sqlite_where=open_rows, postgresql_where=open_rows)
    op.create_index("ix_community_delivery_open_patient", "community_delivery", ["community", "patient_pid", "id"],
                    sqlite_where=open_rows, postgresql_where=open_rows)
    op.create_index("ix_community_delivery_unique_id", "community_delivery", ["unique_id"])
    op.create_index("ix_community_delivery_lease", "community_delivery", ["lease_owner"])
    op.create_index("ux_community_delivery_entry", "community_delivery", ["community", "entry_id", "version", "kind"],
                    unique=True)
    op.create_table(
        "community_delivery_attempt",
        sa.Column("delivery_id", ID, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Column("submission_set_unique_id", sa.String(128), nullable=False),
        sa.Column("entry_uuid", sa.String(45), nullable=False),
        sa.Column("confidentiality", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("code", sa.String(128), nullable=True),
        sa.Column("text", sa.String(2000), nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
    )
    op.create_table(
        "community_audit_message",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("community", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("message", sa.LargeBinary, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
    )
    unsent = sa.text("sent_at IS NULL")
    op.create_index("ix_community_audit_message_unsent", "community_audit_message", ["community", "id"],
                    sqlite_where=unsent, postgresql_where=unsent)
    op.create_table(
        "document_forwarded",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("forwarded_at", sa.DateTime, nullable=False),
        sa.Column("communities", sa.String(512), nullable=False),
    )
