"""A professional's own accesses, as the ledger holds them: the records whose `professional` column is their
GLN (theirs as an HCP, and their assistants' acting for them), about a patient, newest first."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select

from audit.schema import audit_record


def professional_activity(engine: Engine, *, gln: str, count: int = 50,
                          before: int | None = None) -> list[tuple[int, dict]]:
    """(seq, stored AuditEvent) of the `count` newest records of `gln` about a patient; `before`: a seq,
    for the next page. Read by the partial index on (professional, seq)."""
    query = (select(audit_record.c.seq, audit_record.c.record_json)
             .where(audit_record.c.professional == gln, audit_record.c.patient_key.is_not(None))
             .order_by(audit_record.c.seq.desc()).limit(count))
    if before is not None:
        query = query.where(audit_record.c.seq < before)
    with engine.connect() as connection:
        return [(row.seq, json.loads(row.record_json)) for row in connection.execute(query)]
