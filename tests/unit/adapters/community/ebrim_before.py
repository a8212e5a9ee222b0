"""The ebRIM writer as it was before its one-piece shapes (`XmlWriter.text_list`, `wrapped_empty`, the
hash-only `_derived_id`), with the small writer it used: the oracle `test_ebrim_same_bytes.py` holds the
product's writer to, byte for byte. Test code, frozen: never changed with the product's writer (that is
the point of it); the types and the refusal are the product's.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from adapters.cara.identifier_syntax import is_media_type, is_uuid_urn
from adapters.cara.model import Code, DocumentEntry
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK, SNOMED, SPID_SYSTEM
from adapters.community import hl7_types
from adapters.community.authors import XdsAuthor, xds_author
from adapters.community.ebrim import (
    Demographics,
    MetadataNotSendable,
    OutgoingDocument,
    OutgoingSubmission,
    Repository,
)
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


# -- the writer, as it was ------------------------------------------------------------------------
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", "\n": "&#10;"})
_ATTRIBUTE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                            "\n": "&#10;", "\t": "&#9;"})
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Most values need nothing done: one search decides (the translation tables cost more than the search).
_SPECIAL = re.compile('[&<>"\t\n\r]|[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


class NotXml(ValueError):
    """A value holds a character XML 1.0 cannot carry."""


def _checked(value: str) -> str:
    bad = _NOT_XML.search(value)
    if bad:
        raise NotXml(f"character U+{ord(bad.group()):04X} cannot be written in XML (in {value[:40]!r})")
    return value


class XmlWriter:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self._open: list[str] = []

    def start(self, tag: str, attributes: dict[str, str] | None = None, *, declarations: str = "") -> None:
        self._parts.append(f"<{tag}{declarations}{self._attributes(attributes)}>")
        self._open.append(tag)

    def end(self) -> None:
        self._parts.append(f"</{self._open.pop()}>")

    def empty(self, tag: str, attributes: dict[str, str] | None = None, *, declarations: str = "") -> None:
        self._parts.append(f"<{tag}{declarations}{self._attributes(attributes)}/>")

    def text_element(self, tag: str, text: str, attributes: dict[str, str] | None = None) -> None:
        if _SPECIAL.search(text) is not None:
            text = _checked(text).translate(_TEXT)
        self._parts.append(f"<{tag}{self._attributes(attributes)}>{text}</{tag}>")

    def result(self) -> bytes:
        if self._open:
            raise ValueError(f"elements left open: {self._open}")
        return "".join(self._parts).encode("utf-8")

    @staticmethod
    def _attributes(attributes: dict[str, str] | None) -> str:
        if not attributes:
            return ""
        return "".join(f' {name}="{value}"' if _SPECIAL.search(value) is None
                       else f' {name}="{_checked(value).translate(_ATTRIBUTE)}"' for name, value in attributes.items())


# -- the ebRIM, as it was -------------------------------------------------------------------------
XDS = "urn:ihe:iti:xds-b:2007"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
XOP = "http://www.w3.org/2004/08/xop/include"
_DECLARATIONS = f' xmlns:xds="{XDS}" xmlns:lcm="{LCM}" xmlns:rim="{RIM}" xmlns:rs="{RS}"'
_IDS = uuid.UUID("8d1f4c52-2a8e-5b7e-9f61-3c0a7d5e2b14")  # namespace of the ids derived here
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_DESIGNATION = Code(SNOMED, "71388002", "Procedure (procedure)")  # CH: the submission set's contentTypeCode


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
    out.start("rim:Slot", {"name": name})
    out.start("rim:ValueList")
    for value in values:
        out.text_element("rim:Value", value)
    out.end()
    out.end()


def _localized(out: XmlWriter, tag: str, text: str, language: str | None) -> None:
    attributes = {"charset": "UTF-8", "value": text}
    if language and _LANGUAGE.fullmatch(language):  # xs:language, else the schema's default (en-US)
        attributes["xml:lang"] = language
    out.start(f"rim:{tag}")
    out.empty("rim:LocalizedString", attributes)
    out.end()


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
    out.start("rim:Name")
    out.empty("rim:LocalizedString", {"value": EXTERNAL_ID_NAMES[scheme]})
    out.end()
    out.end()


def _derived_id(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_IDS, '|'.join(parts))}"


def _dtm(value: str, slot: str) -> str:
    try:
        return hl7_types.dtm(value)
    except ValueError:
        raise MetadataNotSendable(f"{slot} {value!r} is not a FHIR date/dateTime") from None
