"""The ledger's `professional` column: the GLN of the professional a person acted for (an HCP's own, an
assistant's responsible HCP), so a professional's own accesses are read by an index, not by scanning
every AuditEvent. Derived from the hashed AuditEvent like the other query columns (`verify_ledger`
checks it): existing records are filled in from their JSON here, by the same rule as
`audit.events.responsible_professional` (written out: a migration must not change when the code does).

Revision ID: 0013_ledger_professional
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0013_ledger_professional"
down_revision = "0012_key_holders"
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("audit_record") as batch:
        batch.add_column(sa.Column("professional", sa.String(13), nullable=True))
    op.create_index("ix_audit_record_professional", "audit_record", ["professional", "seq"],
                    postgresql_where=sa.text("professional IS NOT NULL"),
                    sqlite_where=sa.text("professional IS NOT NULL"))
    connection = op.get_bind()
    after = 0
    while True:
        # Only events whose requestor is a professional or an assistant can name one.
        rows = connection.execute(sa.text(
            "SELECT seq, record_json FROM audit_record WHERE seq > :after AND (record_json LIKE '%\"code\":\"HCP\"%' "
            "OR record_json LIKE '%\"code\":\"ASS\"%') ORDER BY seq LIMIT :batch"), {"after": after, "batch": BATCH}).all()
        if not rows:
            break
        for seq, record_json in rows:
            gln = _responsible_professional(json.loads(record_json))
            if gln is not None:
                connection.execute(sa.text("UPDATE audit_record SET professional = :gln WHERE seq = :seq"),
                                   {"gln": gln, "seq": seq})
        after = rows[-1][0]


def _responsible_professional(event: dict) -> str | None:
    agents = event.get("agent", [])
    main = next((a for a in agents if a.get("requestor")), None)
    role = ((main or {}).get("role") or [{}])[0].get("coding", [{}])[0].get("code")
    if role == "HCP":
        return main.get("who", {}).get("identifier", {}).get("value")
    if role == "ASS":
        return next((a.get("who", {}).get("identifier", {}).get("value") for a in agents
                     if a.get("type", {}).get("coding", [{}])[0].get("code") == "PPRF"), None)
    return None


def downgrade() -> None:
    op.drop_index("ix_audit_record_professional", table_name="audit_record")
    with op.batch_alter_table("audit_record") as batch:
        batch.drop_column("professional")
