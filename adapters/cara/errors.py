"""Exceptions of the shared record. The gateway maps each to an HTTP status in one place."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One finding: what is wrong, and where (a FHIRPath expression) when known."""

    message: str
    location: str | None = None


class RecordError(Exception):
    """Base class. `code` is the FHIR issue type; `issues` lists every finding (at least one)."""

    code = "processing"

    def __init__(self, message: str, *, location: str | None = None, details_code: str | None = None,
                 issues: list[Issue] | None = None):
        super().__init__(message)
        self.message = message
        self.details_code = details_code
        self.issues = issues or [Issue(message, location)]


class InvalidInput(RecordError):
    """The request is not well-formed (not JSON, not the resource expected, not FHIR)."""

    code = "invalid"


class ProfileViolation(RecordError):
    """Well-formed FHIR that breaks the CH MHD / PPQm rules."""

    code = "business-rule"


class UnknownRelationTarget(ProfileViolation):
    """A relatesTo target that does not exist, is another patient's, or may not be named by the
    submitter: one class and one text for all of them, so the answer reveals nothing (no oracle), and
    so callers that treat it apart (the migration holds the document until its target arrives) tell
    it by type, not by the words of its location."""

    def __init__(self, key: str):
        super().__init__(f"relatesTo target {key} is not a document of this patient",
                         location="DocumentReference.relatesTo.target")


class UnknownPatient(RecordError):
    """The SPID or local id is not in the MPI (XDSPatientIDReconciliationError)."""

    code = "processing"

    def __init__(self, message: str, *, location: str | None = None):
        super().__init__(message, location=location, details_code="XDSPatientIDReconciliationError")


class Conflict(RecordError):
    """Same uniqueId with other bytes, or a replacement of a document that is not current."""

    code = "conflict"


class NotFound(RecordError):
    code = "not-found"


class StaleVersion(RecordError):
    """An If-Match that names another version than the stored one (412): the client's copy is stale,
    and nothing was changed (no lost update)."""

    code = "conflict"


class Gone(RecordError):
    """The resource existed and was deleted (410); told only to whom could have read it."""

    code = "deleted"


class ContentForwarded(Gone):
    """The document's bytes were delivered to the community and not kept here (EPR_DELIVERY=forward-only):
    its metadata and receipt remain; the bytes are retrieved from the community. Told only to whom may
    read the document (410)."""

    def __init__(self, entry_id: str, communities: str):
        super().__init__(f"the content of document {entry_id} was delivered to the community ({communities}) and "
                         "is not kept by this gateway (forward-only): retrieve it from the community")


class IntegrityFailure(RecordError):
    """Stored bytes no longer match their recorded hash or fail to decrypt: never served."""

    code = "exception"


class StoreUnavailable(RecordError):
    code = "transient"


class TooLarge(RecordError):
    """Metadata over its budget (size or count): refused before it is parsed or stored (413)."""

    code = "too-costly"


# -- CH:MHD-1 (the IG's OperationOutcome codes, in issue.details.text) ------------------------------
class UnknownDocumentEntry(NotFound):
    """The entry to update is not known, or not to this principal (the same answer)."""

    code = "processing"

    def __init__(self, message: str, *, location: str | None = None):
        super().__init__(message, location=location, details_code="XDSMetadataIdentifierError")


class MetadataIdentifierMismatch(ProfileViolation):
    """The submitted DocumentReference names other identifiers than the stored entry."""

    code = "processing"

    def __init__(self, message: str, *, location: str | None = None):
        super().__init__(message, location=location, details_code="XDSMetadataIdentifierError")


class PatientMismatch(ProfileViolation):
    code = "processing"

    def __init__(self, message: str, *, location: str | None = None):
        super().__init__(message, location=location, details_code="XDSPatientIDReconciliationError")


class UnmodifiableMetadata(ProfileViolation):
    """An update changes metadata that may not change (or that this principal may not change)."""

    code = "processing"

    def __init__(self, message: str, *, issues: list[Issue] | None = None):
        super().__init__(message, issues=issues, details_code="UnmodifiableMetadataError")


def unknown_relation_target(key: str) -> UnknownRelationTarget:
    """The one answer for a relation target (relatesTo of any code, an HL7 v2 parent, an XDM RPLC/APND)
    that does not exist, is another patient's, was deleted, or may not be named by the submitter: the
    same class, status and words on every path, so the answer reveals nothing (no existence oracle)."""
    return UnknownRelationTarget(key)
