"""CH:MHD-1 metadata updates: a version per document entry and the versions it replaced.

`document_entry.version` joins the covering search index so that ITI-67 can tell, without reading a
table row, whether the metadata a worker holds in memory is still the entry's current version.

Revision ID: 0008_conformance
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_conformance"
down_revision = "0008_mllp_answers"

SEARCH_COLUMNS = ["patient_pid", "created_seq", "id", "status", "confidentiality", "date", "period_start",
                  "period_end", "version"]


def upgrade() -> None:
    with op.batch_alter_table("document_entry") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.drop_index("ix_document_entry_search", "document_entry")
    op.create_index("ix_document_entry_search", "document_entry", SEARCH_COLUMNS)
    op.create_table(
        "document_entry_version",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("entry_id", sa.String(64), sa.ForeignKey("document_entry.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("replaced_at", sa.DateTime, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("entry_id", "version", name="ux_document_entry_version"),
    )
