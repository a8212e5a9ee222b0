"""Key rotation under load: the key-encryption keys each gateway process holds, reported every few seconds
(see adapters/cara/store/key_holders.py), so that a new key is promoted only once every worker can unwrap
with it and the old one retired only once none wraps under it.

Revision ID: 0012_key_holders
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_key_holders"
down_revision = "0011_community_outbox"


def upgrade() -> None:
    op.create_table(
        "key_holder",
        sa.Column("holder", sa.String(200), primary_key=True),
        sa.Column("key_ids", sa.Text, nullable=False),
        sa.Column("seen_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_holder")
