"""The audit ledger's tables, declared on the shared record's `metadata` so that the one Alembic
chain (migration 0002) and the schema-vs-migration test cover them.

Why separate tables, not columns on the document tables: the ledger is append-only and kept for
years, independent of what happens to documents (a deleted document keeps its trail). Unlike the
document tables it holds the SPID in the clear, inside each AuditEvent: the patient's trail (CH:ATC)
must name the patient, and an audit record that needs the MPI to be read is no proof. Look-ups go
through `patient_key` (an HMAC of the SPID computed by the caller), never through the SPID.
"""

from sqlalchemy import BigInteger, Column, DateTime, Index, LargeBinary, SmallInteger, String, Table, Text, text

from adapters.cara.store.schema import metadata

audit_record = Table(
    "audit_record",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3, … no gaps
    Column("recorded_at", DateTime, nullable=False),  # AuditEvent.recorded, UTC
    Column("patient_key", String(64), nullable=True),  # HMAC of the SPID; NULL: no patient
    Column("event_type", String(32), nullable=False),  # IHE transaction, e.g. ITI-65
    Column("subtype", String(64), nullable=True),  # CH:ATC event type; NULL: not in the patient's trail
    Column("outcome", String(2), nullable=False),  # 0, 4, 8, 12
    # GLN of the professional a person acted for: an HCP's own, an assistant's responsible HCP; NULL for
    # every other actor. What a professional's "my activity" reads (the GLN is in the AuditEvent already).
    Column("professional", String(13), nullable=True),
    Column("record_json", Text, nullable=False),  # the AuditEvent, canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    Index("ix_audit_record_patient", "patient_key", "recorded_at"),
    Index("ix_audit_record_recorded", "recorded_at"),
    # Partial: the bulk writers (migration, bridge: technical users) add nothing to it.
    Index("ix_audit_record_professional", "professional", "seq",
          postgresql_where=text("professional IS NOT NULL"), sqlite_where=text("professional IS NOT NULL")),
)

# A signed statement "the chain up to `seq` ends in `record_hash`", written every N records.
audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # last record covered
    Column("record_hash", String(64), nullable=False),
    Column("signed_at", DateTime, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("public_key", LargeBinary, nullable=False),  # raw Ed25519, for export (trust the key_id, not this)
    Column("signature", LargeBinary, nullable=False),
)

# How far the ledger has been shipped to each SIEM (syslog over TLS): the ledger is the outbox, this
# row its read position. Moved only after the SIEM took the records (see audit.shipping).
audit_shipping = Table(
    "audit_shipping",
    metadata,
    Column("target", String(255), primary_key=True),  # host:port of the receiver
    Column("last_seq", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# The chain's head, signed at every commit batch (one row, id 1): no record is ever left unsigned, so
# rewriting or deleting the latest records breaks a signature. A cut back to an older head (with the
# later checkpoints deleted) is what the witness outside the database catches (audit.witness).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("record_hash", String(64), nullable=False),
    Column("signed_at", DateTime, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)
