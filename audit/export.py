"""Getting the ledger out: with its proof (NDJSON) or to an ATNA audit repository (syslog).

Why two formats: an export is only worth something if it can be checked away from this database, so
the NDJSON form carries, per record, exactly the bytes that were hashed and the signed checkpoint
that covers them. The syslog form (RFC 5424, as IHE ATNA ITI-20 sends it) feeds a SIEM or an
Audit Record Repository, which keep their own copy and want the AuditEvent, not our proof.

Checking an NDJSON export elsewhere, line by line (all values are in the line):
  record_hash == SHA-256(prev_hash "\\n" seq "\\n" patient_key-or-empty "\\n" record_json), and
  each line's prev_hash == the previous line's record_hash; then for the covering checkpoint
  (the first checkpoint at or after the record): its record_hash is the hash of the line at its seq,
  key_id == the first 16 hex digits of SHA-256(public key), the key_id is one you trust (obtained
  out of band, never from the export), and the Ed25519 signature verifies over the message built by
  `audit.signing.checkpoint_message`. Records after the last checkpoint have "checkpoint": null:
  call `DatabaseAuditLedger.checkpoint()` before exporting to cover them.

Each yielded string is one line without its terminator, so the caller picks the framing (newline
for a file, octet counting for syslog over TLS, RFC 5425).
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, func, select

from audit.events import fhir_instant, naive_utc
from audit.schema import audit_checkpoint, audit_record
from adapters.syslog import AUTHPRIV as _AUTHPRIV
from adapters.syslog import syslog_token as _syslog_token

_PAGE = 1000
_APP_NAME = "epr-gateway"
_MSGID = "ATNA"
_SYSLOG_SEQUENCE_MAX = 2147483647  # RFC 5424 meta sequenceId range


def export(*, engine: Engine, since: datetime | None = None, fmt: Literal["ndjson", "syslog"] = "ndjson",
           after_seq: int = 0, hostname: str | None = None) -> Iterator[str]:
    """Yield the ledger from the first record recorded at or after `since` (and after `after_seq`,
    for incremental shipping) to the end, in chain order and without holes."""
    if fmt not in ("ndjson", "syslog"):
        raise ValueError("fmt must be 'ndjson' or 'syslog'")
    host = _syslog_token(hostname or socket.gethostname())
    with engine.connect() as connection:
        start = after_seq
        if since is not None:
            first = connection.execute(select(func.min(audit_record.c.seq)).where(
                audit_record.c.recorded_at >= naive_utc(since), audit_record.c.seq > after_seq)).scalar()
            if first is None:
                return
            start = first - 1
        checkpoints = connection.execute(select(audit_checkpoint).where(audit_checkpoint.c.seq > start)
                                         .order_by(audit_checkpoint.c.seq)).all()
        covering = 0
        while True:
            rows = connection.execute(select(audit_record).where(audit_record.c.seq > start)
                                      .order_by(audit_record.c.seq).limit(_PAGE)).all()
            for row in rows:
                while covering < len(checkpoints) and checkpoints[covering].seq < row.seq:
                    covering += 1
                if fmt == "ndjson":
                    yield _ndjson_line(row, checkpoints[covering] if covering < len(checkpoints) else None)
                else:
                    yield _syslog_line(row, host)
            if len(rows) < _PAGE:
                return
            start = rows[-1].seq


def _ndjson_line(row, checkpoint) -> str:
    line = {
        "seq": row.seq,
        "recorded_at": fhir_instant(row.recorded_at.replace(tzinfo=UTC)),
        "patient_key": row.patient_key,
        "prev_hash": row.prev_hash,
        "record_hash": row.record_hash,
        "record_json": row.record_json,  # the exact hashed text (parse it for the AuditEvent)
        "checkpoint": None if checkpoint is None else {
            "seq": checkpoint.seq,
            "record_hash": checkpoint.record_hash,
            "signed_at": checkpoint.signed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "key_id": checkpoint.key_id,
            "public_key": base64.b64encode(checkpoint.public_key).decode(),
            "signature": base64.b64encode(checkpoint.signature).decode(),
        },
    }
    return json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _syslog_line(row, host: str) -> str:
    """RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG, MSG = the AuditEvent JSON.
    Severity 5 (notice) for a success, 4 (warning) for a failure. No BOM before the JSON: RFC 8259
    forbids one in JSON text, which the receiving repository parses."""
    severity = 5 if row.outcome == "0" else 4
    sequence = (row.seq - 1) % _SYSLOG_SEQUENCE_MAX + 1
    stamp = json.loads(row.record_json)["recorded"]  # the event's own time, RFC 3339 in UTC
    return (f"<{_AUTHPRIV * 8 + severity}>1 {stamp} {host} {_APP_NAME} - {_MSGID} "
            f'[meta sequenceId="{sequence}"] {row.record_json}')


def head_syslog_line(head, hostname: str | None = None) -> str:
    """The ledger's signed head as an RFC 5424 message (MSGID SIGNED-HEAD, no structured data), the MSG
    the witness file's JSON line (`audit.witness.head_line`): the SIEM keeps a copy of every head
    outside the database, so a cut back is seen there too. Verify it like a checkpoint."""
    from audit.witness import head_line

    stamp = head.signed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = _syslog_token(hostname or socket.gethostname())
    return f"<{_AUTHPRIV * 8 + 5}>1 {stamp} {host} {_APP_NAME} - SIGNED-HEAD - {head_line(head)}"
