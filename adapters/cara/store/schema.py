"""Tables of the shared record (SQLAlchemy Core). Alembic migrations create them; this is the
query-side description and must match the latest migration (a test compares them).

What is stored in the clear and why (docs/design-notes.md, "Encryption at rest"): codes, statuses and
dates that the MHD search parameters need; the MPI-PID (a community pseudonym). Everything that identifies the patient
or holds document content is sealed (envelope-encrypted), and the values searched by exact match
that could name a person (SPID, local ids, author names) are kept as keyed hashes only.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

patient = Table(
    "patient",
    metadata,
    Column("pid", String(64), primary_key=True),  # MPI-PID
    Column("spid_hash", String(64), unique=True, nullable=True),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # SPID, demographics, identifiers
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),  # meta.versionId (0009)
)

patient_identifier = Table(
    "patient_identifier",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pid", String(64), ForeignKey("patient.pid"), nullable=False, index=True),
    Column("system", String(256), nullable=False),
    Column("value_hash", String(64), nullable=False),
    Index("ux_patient_identifier", "system", "value_hash", unique=True),
)

submission_set = Table(
    "submission_set",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("unique_id", String(256), nullable=False, unique=True),
    Column("patient_pid", String(64), nullable=False, index=True),
    Column("source_id", String(256), nullable=False),
    Column("submitted_at", DateTime, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
)

document_entry = Table(
    "document_entry",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("unique_id", String(256), nullable=False, unique=True),
    Column("patient_pid", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("confidentiality", String(16), nullable=False),  # normal | restricted | secret
    Column("date", DateTime, nullable=True),  # DocumentReference.date, UTC
    Column("period_start", DateTime, nullable=True),
    Column("period_end", DateTime, nullable=True),
    Column("submission_set_id", String(64), ForeignKey("submission_set.id"), nullable=False),
    Column("created_seq", BigInteger, nullable=False),  # stable order for paging
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # the whole DocumentEntry as JSON
    Column("version", Integer, nullable=False, server_default="1"),  # CH:MHD-1 metadata updates (0008)
    # ITI-67 counts and pages from this index alone (see search_sql); the order is its first columns.
    Index("ix_document_entry_search", "patient_pid", "created_seq", "id", "status", "confidentiality", "date",
          "period_start", "period_end", "version"),
)

# One row per searchable token of an entry (category, type, setting, facility, event, format,
# security-label, author.family, author.given, related): one mechanism for every MHD parameter.
document_token = Table(
    "document_token",
    metadata,
    Column("entry_id", String(64), ForeignKey("document_entry.id"), nullable=False),
    Column("param", String(32), nullable=False),
    Column("system", String(256), nullable=True),
    Column("value", String(256), nullable=False),
    Index("ix_document_token_lookup", "param", "value", "entry_id"),
    Index("ix_document_token_entry", "entry_id"),
)

document_relation = Table(
    "document_relation",
    metadata,
    Column("source_id", String(64), ForeignKey("document_entry.id"), primary_key=True),
    Column("target_id", String(64), ForeignKey("document_entry.id"), primary_key=True),
    Column("code", String(16), primary_key=True),
)

document_body = Table(
    "document_body",
    metadata,
    Column("entry_id", String(64), ForeignKey("document_entry.id"), primary_key=True),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
)

consent_policy = Table(
    "consent_policy",
    metadata,
    Column("policy_set_id", String(80), primary_key=True),
    Column("patient_pid", String(64), ForeignKey("patient.pid"), nullable=False, index=True),
    Column("template", Integer, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # the Policy as JSON (names the SPID and grantees)
    Column("version", Integer, nullable=False, server_default="1"),  # meta.versionId (0009)
)

# A deleted policy set (0009): its last version, so that DELETE again answers 204 and a read 410 Gone.
# Nothing of the policy is kept (no grantee, no SPID): only that it existed and was removed.
consent_policy_deleted = Table(
    "consent_policy_deleted",
    metadata,
    Column("policy_set_id", String(80), primary_key=True),
    Column("patient_pid", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("deleted_at", DateTime, nullable=False),
)

patient_notification = Table(
    "patient_notification",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("patient_pid", String(64), ForeignKey("patient.pid"), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # who accessed what, under which purpose
    Index("ix_patient_notification_patient", "patient_pid", "created_at"),
)

# Tables whose `sealed_key` column holds a wrapped data key: what key rotation walks.
SEALED_TABLES = {
    "patient": (patient, patient.c.pid),
    "submission_set": (submission_set, submission_set.c.id),
    "document_entry": (document_entry, document_entry.c.id),
    "document_body": (document_body, document_body.c.entry_id),
    "consent_policy": (consent_policy, consent_policy.c.policy_set_id),
    "patient_notification": (patient_notification, patient_notification.c.id),
}

# -- identity (migration 0005) ----------------------------------------------------------------------
from sqlalchemy import Boolean  # noqa: E402 - kept with the tables that use it

# PDQm look-ups and demographic matching: one keyed hash per normalised value (family, each given,
# birthdate, gender, ahvn13), never the value itself. Exact match only.
patient_index = Table(
    "patient_index",
    metadata,
    Column("param", String(16), primary_key=True),
    Column("value_hash", String(64), primary_key=True),
    Column("pid", String(64), ForeignKey("patient.pid"), primary_key=True),  # one value may name many patients
    Index("ix_patient_index_pid", "pid"),
)

# Merges: the retired patient's ids and documents are found under the surviving one while active;
# an unmerge sets active false (the row stays as history).
patient_link = Table(
    "patient_link",
    metadata,
    Column("retired_pid", String(64), ForeignKey("patient.pid"), primary_key=True),
    Column("surviving_pid", String(64), ForeignKey("patient.pid"), nullable=False),
    Column("merged_at", DateTime, nullable=False),
    Column("active", Boolean, nullable=False),
    Index("ix_patient_link_surviving", "surviving_pid", "active"),
)

# Identities the MPI refused to merge silently (identity vigilance), waiting for a person to decide.
identity_review = Table(
    "identity_review",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("reason", String(40), nullable=False),
    Column("pid", String(64), nullable=True),  # the MPI patient the incoming identity collided with
    Column("status", String(16), nullable=False),  # open | resolved
    Column("resolved_at", DateTime, nullable=True),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # the incoming identity and what it collided with
    Index("ix_identity_review_status", "status", "created_at"),
    Index("ix_identity_review_pid", "pid"),
)

SEALED_TABLES["identity_review"] = (identity_review, identity_review.c.id)


# A counter per patient, raised in the transaction of every change to the patient's documents: how a
# process that did not make the change (a migration beside a running gateway, another worker without
# Redis) learns that its remembered search pages are stale (gateway/exchanges/search_pages.py).
document_version = Table(
    "document_version",
    metadata,
    Column("patient_pid", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
)
# -- the HL7 v2 bridge (migration 0008_mllp_answers) ----------------------------------------------
mllp_answer = Table(
    "mllp_answer",
    metadata,
    Column("sender", String(200), primary_key=True),
    Column("control_id", String(200), primary_key=True),  # MSH-10
    # The message's digest (normalised, MSH-7 left out): a reused MSH-10 with other content is another
    # message with its own answer (migration 0010; '' for answers kept before, which match nothing).
    Column("digest", String(64), primary_key=True),
    Column("ack_code", String(2), nullable=False),
    Column("ack", LargeBinary, nullable=False),  # the ACK as sent: codes and error texts, no content
    Column("answered_at", DateTime, nullable=False),
)

mllp_held_message = Table(
    "mllp_held_message",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("sender", String(200), nullable=False),
    Column("control_id", String(200), nullable=False),
    Column("reason", String(40), nullable=False),  # gateway/exchanges/patient_readiness.py (no-epr, …)
    Column("pid", String(64), nullable=True),
    Column("review_id", String(64), nullable=True),  # the identity review case that holds it (0010)
    Column("status", String(16), nullable=False),  # held | released | refused (processed again)
    Column("held_at", DateTime, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # the whole message as received
    Index("ix_mllp_held_message_status", "status", "held_at"),
)
SEALED_TABLES["mllp_held_message"] = (mllp_held_message, mllp_held_message.c.id)  # re-wrapped by `keys rotate`
# -- the patient's web page (migration 0008_portal) ---------------------------------------------------
# When the patient (or a representative) saw a notification: the page marks notifications read as it
# shows them. A table of its own rather than a column, so the notification rows stay as written.
patient_notification_read = Table(
    "patient_notification_read",
    metadata,
    Column("notification_id", String(64), ForeignKey("patient_notification.id"), primary_key=True),
    Column("read_at", DateTime, nullable=False),
)

# -- metadata versions (migration 0008_conformance) ---------------------------------------------------
from sqlalchemy import UniqueConstraint  # noqa: E402 - kept with the table that uses it

# Every metadata version a CH:MHD-1 update replaced, sealed as it was (its own associated data, see
# documents.metadata_context), so the history of an entry stays readable and provable.
document_entry_version = Table(
    "document_entry_version",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("entry_id", String(64), ForeignKey("document_entry.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("replaced_at", DateTime, nullable=False),
    Column("sealed_key", LargeBinary, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    UniqueConstraint("entry_id", "version", name="ux_document_entry_version"),
)

SEALED_TABLES["document_entry_version"] = (document_entry_version, document_entry_version.c.id)
