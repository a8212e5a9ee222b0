"""The community outbox's tables (migration 0010_community_outbox), on the shared record's metadata.

One `community_delivery` row per stored document (or metadata change) and configured community,
written in the transaction that stores the document; `community_delivery_attempt` keeps every try
and the community's answer; `community_audit_message` is the durable queue of the ATNA messages
(ITI-20) for the community's audit record repository. Nothing here names a patient but by the
MPI-PIDs (pseudonyms, in the clear elsewhere too); no document content.
"""

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, LargeBinary, String, Table, Text

from adapters.cara.store.schema import metadata

# SQLite gives an INTEGER PRIMARY KEY its rowid (autoincrement); BIGINT would not be one there.
Identity64 = BigInteger().with_variant(Integer(), "sqlite")

community_delivery = Table(
    "community_delivery",
    metadata,
    Column("id", Identity64, primary_key=True, autoincrement=True),  # the order of enqueueing
    Column("community", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # provide | replace | update | delete
    Column("entry_id", String(64), nullable=False),  # the record's own document entry
    Column("version", Integer, nullable=False),  # the entry's metadata version this row delivers
    Column("unique_id", String(256), nullable=False),  # the document's uniqueId (operators name it)
    Column("patient_pid", String(64), nullable=False),  # the record's MPI-PID: the order is per patient
    Column("depends_on", Identity64, nullable=True),  # the delivery of the original (replace, update, delete)
    Column("state", String(20), nullable=False),  # see adapters/cara/store/outbox.py (STATES)
    # Stable across attempts: a re-send after a lost answer is the same submission for the community.
    Column("submission_set_unique_id", String(128), nullable=False),
    Column("submission_set_uuid", String(45), nullable=False),
    Column("entry_uuid", String(45), nullable=False),
    Column("confidentiality", String(16), nullable=False),  # the level the next attempt sends (raised only)
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Column("community_patient_id", String(128), nullable=True),  # the community's MPI-PID (PIX V3)
    Column("last_code", String(128), nullable=True),
    Column("last_text", String(2000), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("delivered_at", DateTime, nullable=True),
    Column("receipt", Text, nullable=True),  # JSON: what the community answered when it took it
    Index("ix_community_delivery_due", "community", "state", "next_attempt_at"),
    Index("ix_community_delivery_patient", "community", "patient_pid", "id"),
    Index("ix_community_delivery_unique_id", "unique_id"),
    Index("ux_community_delivery_entry", "community", "entry_id", "version", "kind", unique=True),
)

community_delivery_attempt = Table(
    "community_delivery_attempt",
    metadata,
    Column("delivery_id", Identity64, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=False),
    Column("submission_set_unique_id", String(128), nullable=False),
    Column("entry_uuid", String(45), nullable=False),
    Column("confidentiality", String(16), nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("code", String(128), nullable=True),
    Column("text", String(2000), nullable=True),
    Column("answer", Text, nullable=True),  # the community's answer as received (SOAP part), bounded
)

community_audit_message = Table(
    "community_audit_message",
    metadata,
    Column("id", Identity64, primary_key=True, autoincrement=True),
    Column("community", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("message", LargeBinary, nullable=False),  # the RFC 5424 message, ready to frame
    Column("sent_at", DateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(500), nullable=True),
    Index("ix_community_audit_message_unsent", "community", "sent_at", "id"),
)
