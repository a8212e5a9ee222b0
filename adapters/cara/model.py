"""The shared record's own model: XDS document entries, submission sets, relations, patients.

FHIR is the wire format; `fhir_mapping` converts between these values and R4 resources. Everything
here is plain data, serialisable to JSON for the encrypted metadata blob.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from adapters.cara.vocabulary import CONFIDENTIALITY_CODES, CONFIDENTIALITY_DISPLAY, CONFIDENTIALITY_RANK, SNOMED


@dataclass(frozen=True)
class Code:
    """A coded value (XDS code / FHIR Coding)."""

    system: str | None
    code: str
    display: str | None = None

    def as_coding(self) -> dict[str, Any]:
        coding: dict[str, Any] = {"code": self.code}
        if self.system:
            coding = {"system": self.system, **coding}
        if self.display:
            coding["display"] = self.display
        return coding

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Code | None:
        return None if data is None else cls(data.get("system"), data["code"], data.get("display"))


@dataclass(frozen=True)
class Identifier:
    system: str
    value: str

    @property
    def token(self) -> str:
        return f"{self.system}|{self.value}"


@dataclass(frozen=True)
class Author:
    """One XDS author. `resource` keeps the contained FHIR resource as sent, for a faithful answer;
    `family`/`given` are what the author.* search parameters index."""

    resource: dict[str, Any]
    family: tuple[str, ...] = ()
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Submitter:
    """Who submitted an entry, as authenticated (not as the metadata claims): the role, the user id
    and, for an assistant or a technical user, the responsible professional's GLN. Recorded so that
    a technical user, which never reads, may later name what it submitted itself (a migration
    replacing what it migrated, an HL7 sender's T10 replacing its own T02)."""

    role: str
    user_id: str
    acting_for: str | None = None


@dataclass(frozen=True)
class Relation:
    code: str  # replaces | transforms | signs | appends
    target_entry_id: str


@dataclass
class DocumentEntry:
    """An XDS DocumentEntry with all metadata the CH MHD Comprehensive profile carries."""

    entry_id: str  # the FHIR logical id, also the Binary id
    unique_id: str  # masterIdentifier value, verbatim (urn:oid:… or urn:uuid:…)
    patient_pid: str  # MPI-PID of the community; never the SPID (EPRO Art. 10)
    status: str  # current | superseded
    type_code: Code
    class_codes: list[Code]
    format_code: Code
    confidentiality: list[Code]
    facility_type: Code
    practice_setting: Code
    mime_type: str
    language: str
    title: str
    creation_time: str  # FHIR dateTime as sent (attachment.creation)
    original_provider_role: Code | None  # set by the gateway from the authenticated principal
    size: int
    sha1: str  # hex of the plaintext bytes
    entry_uuid: str | None = None  # DocumentReference.identifier (official urn:uuid)
    date: str | None = None  # DocumentReference.date
    description: str | None = None
    event_codes: list[Code] = field(default_factory=list)
    service_start: str | None = None
    service_stop: str | None = None
    authors: list[Author] = field(default_factory=list)
    source_patient: dict[str, Any] | None = None  # contained Patient (sourcePatientInfo)
    source_patient_id: Identifier | None = None  # its identifier with use=usual
    relations: list[Relation] = field(default_factory=list)
    related: list[dict[str, Any]] = field(default_factory=list)  # context.related (referenceIdList)
    deletion_status: Code | None = None
    submission_set_id: str | None = None
    extensions: list[dict[str, Any]] = field(default_factory=list)  # other extensions, kept as sent
    version: int = 1  # the metadata version: 1 as provided, +1 per CH:MHD-1 update
    submitter: Submitter | None = None  # None: sealed before submitters were recorded

    @property
    def confidentiality_level(self) -> str:
        """normal, restricted or secret: the most restrictive of the labels."""
        levels = [CONFIDENTIALITY_CODES[c.code] for c in self.confidentiality if c.code in CONFIDENTIALITY_CODES]
        return max(levels, key=CONFIDENTIALITY_RANK.__getitem__) if levels else "normal"

    def with_confidentiality_level(self, level: str) -> DocumentEntry:
        """The same entry labelled `level` instead of its confidentiality code (other labels kept)."""
        code, display = CONFIDENTIALITY_DISPLAY[level]
        kept = [c for c in self.confidentiality if c.code not in CONFIDENTIALITY_CODES]
        return self.copy_with(confidentiality=[Code(SNOMED, code, display), *kept])

    def copy_with(self, **changes: Any) -> DocumentEntry:
        """`dataclasses.replace(self, **changes)` for the hot paths, at a third of its cost: replace calls
        the 33-field __init__ by keyword, and a provide copies each entry two or three times (about a
        tenth of the migration writer's time went there). The same result: this class has no
        __post_init__ and no field outside __init__ (tests/unit/adapters/test_entry_copies.py)."""
        unknown = changes.keys() - _ENTRY_FIELDS
        if unknown:
            raise TypeError(f"DocumentEntry has no field {', '.join(sorted(unknown))}")
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def filed_under(self, patient_pid: str) -> DocumentEntry:
        """The entry with its row's patient: the row's column is what the store reads an entry under
        (a sealed entry keeps the patient it was sealed with). Itself when they agree."""
        return self if self.patient_pid == patient_pid else self.copy_with(patient_pid=patient_pid)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocumentEntry:
        data = dict(data)
        for key in ("type_code", "format_code", "facility_type", "practice_setting", "original_provider_role",
                    "deletion_status"):
            data[key] = Code.from_dict(data[key])
        for key in ("class_codes", "confidentiality", "event_codes"):
            data[key] = [Code.from_dict(c) for c in data[key]]
        data["authors"] = [Author(a["resource"], tuple(a["family"]), tuple(a["given"])) for a in data["authors"]]
        data["relations"] = [Relation(**r) for r in data["relations"]]
        if data["source_patient_id"] is not None:
            data["source_patient_id"] = Identifier(**data["source_patient_id"])
        if data.get("submitter") is not None:
            data["submitter"] = Submitter(**data["submitter"])
        return cls(**data)


_ENTRY_FIELDS = frozenset(f.name for f in fields(DocumentEntry))


@dataclass
class SubmissionSet:
    submission_set_id: str
    unique_id: str
    source_id: str
    patient_pid: str
    submission_time: str | None
    content_type: Code | None = None
    authors: list[Author] = field(default_factory=list)
    title: str | None = None
    entry_uuid: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmissionSet:
        """What `seal_submission_set` stored (orjson writes the dataclass as `asdict` would)."""
        data = dict(data)
        data["content_type"] = Code.from_dict(data.get("content_type"))
        data["authors"] = [Author(a["resource"], tuple(a["family"]), tuple(a["given"])) for a in data["authors"]]
        return cls(**data)


@dataclass(frozen=True)
class PendingRelation:
    """A relatesTo as sent: the target named by logical id or by uniqueId, resolved by the store."""

    code: str
    target_entry_id: str | None = None
    target_unique_id: str | None = None


@dataclass(frozen=True)
class NewDocument:
    """A document on its way in: its entry and its bytes."""

    entry: DocumentEntry
    content: bytes
    relations: tuple[PendingRelation, ...] = ()
    location: str | None = None  # FHIRPath of the document in the request (for findings), when known


@dataclass(frozen=True)
class Submission:
    """A provide request in the record's terms (ITI-65, MDM, XDM alike)."""

    submission_set: SubmissionSet
    documents: tuple[NewDocument, ...]
    spid: str  # as sent, resolved to the MPI-PID before anything is stored


@dataclass(frozen=True)
class OrganizationRef:
    """Patient.managingOrganization as the ITI-104 feed gave it: any of a reference, an identifier
    (system optional, as in a FHIR Identifier) and a display."""

    reference: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    display: str | None = None


@dataclass(frozen=True)
class PatientRecord:
    """A patient of the MPI. The SPID and demographics exist only here, encrypted at rest.
    `birth_name`: the family name at birth (CH EPR FHIR BirthName, CH Core `use` maiden)."""

    pid: str
    spid: str | None
    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None
    gender: str | None = None
    identifiers: tuple[Identifier, ...] = ()
    birth_name: str | None = None
    managing_organization: OrganizationRef | None = None
