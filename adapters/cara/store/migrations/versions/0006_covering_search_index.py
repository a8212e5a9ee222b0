"""ITI-67 answered from one covering index: the count and the page never read a table row.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"

SEARCH_COLUMNS = ["patient_pid", "created_seq", "id", "status", "confidentiality", "date", "period_start",
                  "period_end"]


def upgrade() -> None:
    op.create_index("ix_document_entry_search", "document_entry", SEARCH_COLUMNS)
    op.drop_index("ix_document_entry_patient_order", "document_entry")
    op.drop_index("ix_document_entry_patient", "document_entry")

