"""The community outbox's tables (migration 0011_community_outbox), on the shared record's metadata.

One `community_delivery` row per stored document (or metadata change) and configured community,
written in the transaction that stores the document; `community_delivery_attempt` keeps every try
and the community's answer; `community_audit_message` is the durable queue of the ATNA messages
(ITI-20) for the community's audit record repository; `document_forwarded` names the documents
whose bytes were dropped once delivered (EPR_DELIVERY=forward-only). Nothing here names a patient
but by the MPI-PIDs (pseudonyms, in the clear elsewhere too); no document content.

The partial indexes cover the rows still on their way only: a claim reads them in order and asks
whether an earlier row of the same patient is still on its way, and both stay cheap however many
delivered rows the table keeps (nothing is ever deleted).
"""

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, LargeBinary, String, Table, Text, text

from adapters.cara.store.schema import metadata

# SQLite gives an INTEGER PRIMARY KEY its rowid (autoincrement); BIGINT would not be one there.
Identity64 = BigInteger().with_variant(Integer(), "sqlite")
# A delivery's states (what each means and what an operator does: README, "Delivering into a community").
PENDING, IN_FLIGHT, DELIVERED, FAILED, WAITING_PATIENT, NOT_SUPPORTED, WITHDRAWN = (
    "pending", "in-flight", "delivered", "failed", "waiting-patient", "not-supported", "withdrawn")
STATES = (PENDING, IN_FLIGHT, WAITING_PATIENT, DELIVERED, FAILED, NOT_SUPPORTED, WITHDRAWN)
ON_ITS_WAY = (PENDING, IN_FLIGHT, WAITING_PATIENT)  # an earlier row in one of these holds the later ones back
SENDS_DOCUMENT = ("provide", "replace")  # the kinds of row that put a document into the community
# The rows still on their way, as the partial indexes and the claim write them.
OPEN_ROWS = "state IN ('pending', 'in-flight', 'waiting-patient')"

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
    Index("ix_community_delivery_open", "community", "id", sqlite_where=text(OPEN_ROWS),
          postgresql_where=text(OPEN_ROWS)),
    Index("ix_community_delivery_open_patient", "community", "patient_pid", "id", sqlite_where=text(OPEN_ROWS),
          postgresql_where=text(OPEN_ROWS)),
    Index("ix_community_delivery_unique_id", "unique_id"),
    Index("ix_community_delivery_lease", "lease_owner"),
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
    # A sender takes unsent messages under a lease (several deliverer processes on PostgreSQL).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime, nullable=True),
    Index("ix_community_audit_message_unsent", "community", "id", sqlite_where=text("sent_at IS NULL"),
          postgresql_where=text("sent_at IS NULL")),
)

document_forwarded = Table(
    "document_forwarded",
    metadata,
    Column("entry_id", String(64), primary_key=True),  # its document_body row is gone: delivered, not kept
    Column("forwarded_at", DateTime, nullable=False),
    Column("communities", String(512), nullable=False),  # where it went (comma-separated community ids)
)
