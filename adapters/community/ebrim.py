"""The record's model → an ebRIM 3.0 `ProvideAndRegisterDocumentSetRequest` (ITI-41), for one community.

The reverse of the XDM reader (`adapters/infomed/xdm/ebrim.py` + `mapping.py`), through the same
table (`xds_table.py`). What the community insists on (cara-community.md): the community's MPI-PID as
`patientId` (never the SPID: an MPI domain that is the SPID's is refused, and a document whose local
id is an SPID names the patient by the MPI-PID in sourcePatientId and PID-3 too),
`sourcePatientInfo` with PID-5, authors with a GLN and institutions with an OID, every code under a
coding scheme of the affinity domain, hash and size, the repository's uniqueId, and a replacement as
an RPLC association to the entryUUID the community gave the original.

Everything the gateway chooses is stable across attempts of one submission: the caller's entryUUIDs
and submission set uniqueId, and the ids of classifications, external identifiers and associations
(uuid5 of the object they belong to), so a re-send after a lost answer is the same submission.
Only the confidentiality (raised after a consent-filter refusal) and the message around it change.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.cara.identifier_syntax import is_media_type, is_uuid_urn
from adapters.cara.model import Code, DocumentEntry, NewDocument, SubmissionSet
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK, SNOMED, SPID_SYSTEM
from adapters.community import hl7_types
from adapters.community.authors import ResponsibleProfessional, XdsAuthor, xds_author
from adapters.community.xml_writer import NotXml, XmlWriter
from adapters.community.xds_table import (
    ASSOCIATION_TYPES,
    CONTENT_TYPE_CODE,
    DELETION_STATUS_SLOT,
    DOCUMENT_AUTHOR,
    DOCUMENT_CODES,
    DOCUMENT_PATIENT_ID,
    DOCUMENT_UNIQUE_ID,
    EXTERNAL_ID_NAMES,
    HAS_MEMBER,
    ORIGINAL_PROVIDER_ROLE_SLOT,
    ROLE_OID,
    SPID_OID,
    STABLE_DOCUMENT,
    SUBMISSION_AUTHOR,
    SUBMISSION_PATIENT_ID,
    SUBMISSION_SET_NODE,
    SUBMISSION_SOURCE_ID,
    SUBMISSION_UNIQUE_ID,
    NoCodingScheme,
    coding_scheme,
    document_unique_id,
    oid_of_system,
    submission_set_unique_id,
)

XDS = "urn:ihe:iti:xds-b:2007"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XOP = "http://www.w3.org/2004/08/xop/include"
_DECLARATIONS = f' xmlns:xds="{XDS}" xmlns:lcm="{LCM}" xmlns:rim="{RIM}" xmlns:rs="{RS}"'
_IDS = uuid.UUID("8d1f4c52-2a8e-5b7e-9f61-3c0a7d5e2b14")  # namespace of the ids derived here
_IDS_BYTES = _IDS.bytes
_VERSION_CLEARED = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_5 = (0x8000 << 48) | (5 << 76)
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_DESIGNATION = Code(SNOMED, "71388002", "Procedure (procedure)")  # CH: the submission set's contentTypeCode


class MetadataNotSendable(ValueError):
    """The document's metadata cannot be written as the community requires (no PID-5, a code
    without coding scheme, an SPID where the MPI-PID belongs, …): refused before sending."""


@dataclass(frozen=True)
class OutgoingRelation:
    code: str  # replaces | appends | transforms | signs
    target_entry_uuid: str  # the entryUUID the community holds for the target (urn:uuid:…)
    # Where the community names documents by ids of its own (MHD): its reference of the target, as its
    # answer to the target's delivery gave it (`outcomes.Delivered.locations`). Unused by ITI-41.
    target_reference: str | None = None


@dataclass(frozen=True)
class OutgoingDocument:
    document: NewDocument
    entry_uuid: str  # urn:uuid:…, assigned and kept by the gateway
    relations: tuple[OutgoingRelation, ...] = ()
    content_id: str = ""  # the MIME part's Content-ID (set by the ITI-41 builder)


@dataclass(frozen=True)
class Demographics:
    """The patient as the MPI knows them: PID-5/7/8 when the document's sourcePatientInfo lacks them."""

    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None
    gender: str | None = None


@dataclass(frozen=True)
class OutgoingSubmission:
    submission_set: SubmissionSet  # title, authors, content type, submission time
    submission_set_unique_id: str  # stable across attempts (an OID, urn:oid: or urn:uuid:)
    submission_set_entry_uuid: str  # urn:uuid:…
    documents: tuple[OutgoingDocument, ...]
    mpi_pid: str  # the community's id of the patient
    confidentiality: str  # normal | restricted | secret, for every document of this attempt
    submission_time: datetime  # stable across attempts (UTC)
    responsible: ResponsibleProfessional
    demographics: Demographics = field(default_factory=Demographics)


@dataclass(frozen=True)
class Repository:
    """What of the community's configuration goes into the metadata."""

    repository_unique_id: str
    mpi_oid: str
    source_id: str


def provide_and_register(submission: OutgoingSubmission, repository: Repository) -> bytes:
    """The `xds:ProvideAndRegisterDocumentSetRequest` element (one line of UTF-8), its `xop:Include`s
    pointing at each document's `content_id`."""
    _check(submission, repository)
    out = XmlWriter()
    out.start("xds:ProvideAndRegisterDocumentSetRequest", declarations=_DECLARATIONS)
    out.start("lcm:SubmitObjectsRequest")
    out.empty("rs:RequestSlotList")
    out.start("rim:RegistryObjectList")
    patient_cx = hl7_types.cx(submission.mpi_pid, repository.mpi_oid)
    try:
        for outgoing in submission.documents:
            _extrinsic_object(out, outgoing, submission, repository, patient_cx)
        set_id = submission.submission_set_entry_uuid
        _registry_package(out, submission, repository, patient_cx)
    except NotXml as exc:
        raise MetadataNotSendable(str(exc)) from None
    out.empty("rim:Classification", {"classifiedObject": set_id, "classificationNode": SUBMISSION_SET_NODE,
                                     "id": _derived_id(set_id, "node")})
    for outgoing in submission.documents:
        out.start("rim:Association", {"associationType": HAS_MEMBER, "sourceObject": set_id,
                                      "targetObject": outgoing.entry_uuid,
                                      "id": _derived_id(set_id, "member", outgoing.entry_uuid)})
        _slot(out, "SubmissionSetStatus", ["Original"])
        out.end()
        for relation in outgoing.relations:
            out.empty("rim:Association", {
                "associationType": ASSOCIATION_TYPES[relation.code], "sourceObject": outgoing.entry_uuid,
                "targetObject": relation.target_entry_uuid,
                "id": _derived_id(outgoing.entry_uuid, relation.code, relation.target_entry_uuid)})
    out.end()  # RegistryObjectList
    out.end()  # SubmitObjectsRequest
    for outgoing in submission.documents:
        out.start("xds:Document", {"id": outgoing.entry_uuid})
        out.empty("xop:Include", {"href": f"cid:{outgoing.content_id}"}, declarations=f' xmlns:xop="{XOP}"')
        out.end()
    out.end()
    return out.result()


def entry_as_sent(entry: DocumentEntry, confidentiality: str) -> DocumentEntry:
    """The entry labelled with this attempt's confidentiality (never below its own: raising only)."""
    if CONFIDENTIALITY_RANK[confidentiality] < CONFIDENTIALITY_RANK[entry.confidentiality_level]:
        raise ValueError(f"confidentiality {confidentiality} is below the document's own "
                         f"{entry.confidentiality_level}: a delivery only ever raises it")
    return entry.with_confidentiality_level(confidentiality)


# -- checks -----------------------------------------------------------------------------------------
def _check(submission: OutgoingSubmission, repository: Repository) -> None:
    if repository.mpi_oid == SPID_OID:
        raise MetadataNotSendable("the community's MPI assigning authority is the SPID's: patientId would be an SPID")
    if not submission.documents:
        raise MetadataNotSendable("a submission without documents")
    ids = [submission.submission_set_entry_uuid, *(d.entry_uuid for d in submission.documents)]
    for value in ids + [r.target_entry_uuid for d in submission.documents for r in d.relations]:
        if not is_uuid_urn(value):
            raise MetadataNotSendable(f"{value!r} is not an entryUUID (urn:uuid:…)")
    if len(set(ids)) != len(ids):
        raise MetadataNotSendable("two objects of the submission share an entryUUID")
    for outgoing in submission.documents:
        if not outgoing.content_id:
            raise MetadataNotSendable("a document without its MIME part")
        if not is_media_type(outgoing.document.entry.mime_type):
            raise MetadataNotSendable(f"mimeType {outgoing.document.entry.mime_type!r} is not a MIME type")
        for relation in outgoing.relations:
            if relation.code not in ASSOCIATION_TYPES:
                raise MetadataNotSendable(f"relation {relation.code!r} has no XDS association type")


# -- the document entry -----------------------------------------------------------------------------
def _extrinsic_object(out: XmlWriter, outgoing: OutgoingDocument, submission: OutgoingSubmission, repository: Repository,
                      patient_cx: str) -> None:
    entry = entry_as_sent(outgoing.document.entry, submission.confidentiality)
    entry_uuid = outgoing.entry_uuid
    content = outgoing.document.content
    if len(content) != entry.size:
        raise MetadataNotSendable(f"document {entry.unique_id}: {len(content)} bytes where the metadata says {entry.size}")
    out.start("rim:ExtrinsicObject", {"id": entry_uuid, "mimeType": entry.mime_type, "objectType": STABLE_DOCUMENT})
    slots = [("creationTime", [_dtm(entry.creation_time, "creationTime")]), ("hash", [entry.sha1]),
             ("languageCode", [entry.language]), ("repositoryUniqueId", [repository.repository_unique_id]),
             ("size", [str(entry.size)]), ("sourcePatientId", [_source_patient_id(entry, patient_cx)]),
             ("sourcePatientInfo", _source_patient_info(entry, submission.demographics, patient_cx))]
    if entry.service_start:
        slots.append(("serviceStartTime", [_dtm(entry.service_start, "serviceStartTime")]))
    if entry.service_stop:
        slots.append(("serviceStopTime", [_dtm(entry.service_stop, "serviceStopTime")]))
    if entry.original_provider_role:
        slots.append((ORIGINAL_PROVIDER_ROLE_SLOT, [f"{hl7_types.escape(entry.original_provider_role.code)}"
                                                    f"^^^&{ROLE_OID}&ISO"]))
    if entry.deletion_status:
        slots.append((DELETION_STATUS_SLOT, [entry.deletion_status.code]))
    for name, values in slots:
        _slot(out, name, values)
    _localized(out, "Name", entry.title, entry.language)
    if entry.description:
        _localized(out, "Description", entry.description, entry.language)
    authors = [a for a in (xds_author(author) for author in entry.authors) if a] or [submission.responsible.as_author()]
    for index, author in enumerate(authors):
        _author(out, DOCUMENT_AUTHOR, entry_uuid, author, index)
    for model_field, (scheme, _name, _count) in DOCUMENT_CODES.items():
        value = getattr(entry, model_field)
        for index, code in enumerate(value if isinstance(value, list) else [value] if value else []):
            _code(out, scheme, entry_uuid, code, index)
    _external_id(out, entry_uuid, DOCUMENT_PATIENT_ID, patient_cx)
    _external_id(out, entry_uuid, DOCUMENT_UNIQUE_ID, document_unique_id(entry.unique_id))
    out.end()


def _source_patient_id(entry: DocumentEntry, patient_cx: str) -> str:
    """The local id the document came with; the MPI-PID when it has none in an OID domain. Never the SPID."""
    local = entry.source_patient_id
    domain = oid_of_system(local.system) if local else None
    if local is None or domain is None or local.system == SPID_SYSTEM:
        return patient_cx
    return hl7_types.cx(local.value, domain)


def _source_patient_info(entry: DocumentEntry, demographics: Demographics, patient_cx: str) -> list[str]:
    patient = entry.source_patient or {}
    name = next(iter(patient.get("name") or []), {})
    family = name.get("family") or demographics.family
    given = name.get("given") or list(demographics.given)
    if not family:
        raise MetadataNotSendable(f"document {entry.unique_id}: no family name for sourcePatientInfo PID-5 (the "
                                  "community's portal shows no name without it)")
    values = [f"PID-3|{_source_patient_id(entry, patient_cx)}",
              f"PID-5|{hl7_types.escape(family)}^{hl7_types.escape(' '.join(given))}".rstrip("^")]
    birth = patient.get("birthDate") or demographics.birth_date
    if birth:
        try:
            values.append(f"PID-7|{hl7_types.birth_date(birth)}")
        except ValueError:
            raise MetadataNotSendable(f"document {entry.unique_id}: birth date {birth!r} is not a FHIR date") from None
    gender = hl7_types.PID_8.get(patient.get("gender") or demographics.gender or "")
    if gender:
        values.append(f"PID-8|{gender}")
    return values


# -- the submission set -----------------------------------------------------------------------------
def _registry_package(out: XmlWriter, submission: OutgoingSubmission, repository: Repository, patient_cx: str) -> None:
    set_id = submission.submission_set_entry_uuid
    out.start("rim:RegistryPackage", {"id": set_id})
    _slot(out, "submissionTime", [submission.submission_time.astimezone(UTC).strftime("%Y%m%d%H%M%S")])
    if submission.submission_set.title:
        _localized(out, "Name", submission.submission_set.title, submission.documents[0].document.entry.language)
    authors = [a for a in (xds_author(author) for author in submission.submission_set.authors) if a] \
        or [submission.responsible.as_author()]
    for index, author in enumerate(authors):
        _author(out, SUBMISSION_AUTHOR, set_id, author, index)
    _code(out, CONTENT_TYPE_CODE, set_id, submission.submission_set.content_type or _DESIGNATION, 0)
    _external_id(out, set_id, SUBMISSION_PATIENT_ID, patient_cx)
    _external_id(out, set_id, SUBMISSION_UNIQUE_ID, submission_set_unique_id(submission.submission_set_unique_id))
    _external_id(out, set_id, SUBMISSION_SOURCE_ID, repository.source_id)
    out.end()


# -- ebRIM pieces -------------------------------------------------------------------------------------
def _slot(out: XmlWriter, name: str, values: list[str]) -> None:
    out.text_list("rim:Slot", {"name": name}, "rim:ValueList", "rim:Value", values)


def _localized(out: XmlWriter, tag: str, text: str, language: str | None) -> None:
    attributes = {"charset": "UTF-8", "value": text}
    if language and _LANGUAGE.fullmatch(language):  # xs:language, else the schema's default (en-US)
        attributes["xml:lang"] = language
    out.wrapped_empty(f"rim:{tag}", "rim:LocalizedString", attributes)


def _author(out: XmlWriter, scheme: str, owner: str, author: XdsAuthor, index: int) -> None:
    out.start("rim:Classification", {"classificationScheme": scheme, "classifiedObject": owner,
                                     "nodeRepresentation": "", "id": _derived_id(owner, "author", str(index))})
    for name, values in author.slots():
        _slot(out, name, values)
    out.end()


def _code(out: XmlWriter, scheme: str, owner: str, code: Code, index: int) -> None:
    try:
        coding = coding_scheme(code)
    except NoCodingScheme as exc:
        raise MetadataNotSendable(str(exc)) from None
    out.start("rim:Classification", {"classificationScheme": scheme, "classifiedObject": owner,
                                     "nodeRepresentation": code.code, "id": _derived_id(owner, scheme, str(index))})
    _slot(out, "codingScheme", [coding])
    _localized(out, "Name", code.display or code.code, "en")
    out.end()


def _external_id(out: XmlWriter, owner: str, scheme: str, value: str) -> None:
    out.start("rim:ExternalIdentifier", {"registryObject": owner, "identificationScheme": scheme, "value": value,
                                         "id": _derived_id(owner, scheme)})
    out.wrapped_empty("rim:Name", "rim:LocalizedString", {"value": EXTERNAL_ID_NAMES[scheme]})
    out.end()


def _derived_id(*parts: str) -> str:
    """`urn:uuid:` + uuid.uuid5(_IDS, the parts joined by "|"), written without the UUID object (some
    twenty a document: the object's checks and formatting cost more than the hash)."""
    value = int.from_bytes(hashlib.sha1(_IDS_BYTES + "|".join(parts).encode()).digest()[:16])
    value = value & _VERSION_CLEARED | _VERSION_5  # RFC 4122 variant and version 5, as uuid.UUID(version=5)
    hexed = f"{value:032x}"
    return f"urn:uuid:{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def _dtm(value: str, slot: str) -> str:
    try:
        return hl7_types.dtm(value)
    except ValueError:
        raise MetadataNotSendable(f"{slot} {value!r} is not a FHIR date/dateTime") from None
