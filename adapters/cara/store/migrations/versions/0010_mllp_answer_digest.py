"""The HL7 v2 bridge recognises the same message, not only the same (sender, MSH-10): each kept answer
also names the digest of the message it answered (a reused control id with other content is another
message), and a held message names the identity review case that holds it, if any.

Answers kept before this revision have no digest (''): they match no message, so a message whose
answer was kept before the upgrade is processed again if re-sent — harmless for documents (the
record finds the same uniqueId with the same bytes already present), where answering another
message with an old answer would lose a document.

Revision ID: 0010_mllp_answer_digest
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_mllp_answer_digest"
down_revision = "0009_versioning"


def upgrade() -> None:
    # A new primary key: the table is copied (the same way on SQLite and PostgreSQL).
    op.create_table(
        "mllp_answer_keyed",
        sa.Column("sender", sa.String(200), primary_key=True),
        sa.Column("control_id", sa.String(200), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("ack_code", sa.String(2), nullable=False),
        sa.Column("ack", sa.LargeBinary, nullable=False),
        sa.Column("answered_at", sa.DateTime, nullable=False),
    )
    op.execute("INSERT INTO mllp_answer_keyed (sender, control_id, digest, ack_code, ack, answered_at) "
               "SELECT sender, control_id, '', ack_code, ack, answered_at FROM mllp_answer")
    op.drop_table("mllp_answer")
    op.rename_table("mllp_answer_keyed", "mllp_answer")
    with op.batch_alter_table("mllp_held_message") as batch:
        batch.add_column(sa.Column("review_id", sa.String(64), nullable=True))
