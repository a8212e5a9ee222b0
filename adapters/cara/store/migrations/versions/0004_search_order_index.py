"""ITI-67 pages newest first straight from an index (no sort of the patient's whole record).

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_index("ix_document_entry_patient_order", "document_entry", ["patient_pid", "created_seq", "id"])
