"""An ExtrinsicObject of an XDM package (with its file) → the shared record's model.

The result names the patient by the Infomed local id (`sourcePatientId`, else `patientId`, as the
MPI identifier `urn:oid:<OID>|<id>`) and carries the demographics of `sourcePatientInfo`; the
migration resolves them through the MPI. Nothing here touches storage. Why each document becomes a
submission of its own: one refused document must not hold back its siblings, so the submission set's
uniqueId is derived (uuid5) from the package's and the document's, the same on every run.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC

from adapters.cara.dates import InvalidDate, parse_hl7, parse_xds
from adapters.cara.identifier_syntax import (
    ENTRY_UUID,
    LOCAL_PATIENT_ID,
    SOURCE_ID,
    UNIQUE_ID,
    IdentifierKind,
    InvalidIdentifier,
    is_oid,
    is_printable_id,
)
from adapters.cara.record_ids import new_record_id
from adapters.cara.model import (
    Author,
    Code,
    DocumentEntry,
    Identifier,
    NewDocument,
    PendingRelation,
    SubmissionSet,
)
from adapters.infomed.authors import author_from_xcn
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables, Unmapped

RELATION_CODES = {ebrim.RPLC: "replaces", ebrim.APND: "appends", ebrim.XFRM: "transforms", ebrim.SIGNS: "signs"}
# `fullmatch` (a `$` would take a trailing newline); the id's own syntax is LOCAL_PATIENT_ID's.
_CX = re.compile(r"(?P<id>[^^]+)\^\^\^[^&^]*&(?P<oid>[0-9.]+)&ISO")
INFOMED_SOURCE_ID = "urn:oid:2.16.756.5.30.1.145"  # the sourceId of a package that names none
MAX_SYMBOLIC_ID = 64
_SET_NAMESPACE = uuid.UUID("6f1c3f2e-4a51-5b8e-9c0d-1b2a3c4d5e6f")
_GENDERS = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}


class Refused(Exception):
    """The document cannot be migrated as it is. `held`: it waits for a fix outside the export (a
    code table); otherwise it is rejected (the export itself is wrong)."""

    def __init__(self, reason: str, *, held: bool = False, code: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        self.held = held
        self.code = code


@dataclass(frozen=True)
class Demographics:
    family: str | None = None
    given: tuple[str, ...] = ()
    birth_date: str | None = None
    gender: str | None = None


@dataclass(frozen=True)
class MappedDocument:
    """One source document in the record's terms, its patient still named by the local id."""

    unique_id: str
    entry_uuid: str
    patient_id: Identifier
    demographics: Demographics
    submission_set: SubmissionSet
    document: NewDocument
    relation_targets: tuple[tuple[str, str], ...]  # (code, target entryUUID) from the package's associations


def cx_identifier(value: str | None) -> Identifier | None:
    """CX `id^^^&OID&ISO` → Identifier(urn:oid:OID, id); None when it is not that shape or the
    authority is not an OID. The id itself is checked by `_patient_identifier`."""
    match = _CX.fullmatch(value or "")
    return Identifier(f"urn:oid:{match['oid']}", match["id"]) if match and is_oid(match["oid"]) else None


def patient_key(obj: ebrim.RegistryObject) -> str | None:
    """The local patient `obj` names, as `_patient_identifier` picks it, in one string without mapping
    anything; None when it names none that reads (its mapping will say why)."""
    named = _first_cx(obj)
    return f"{named[1].system}|{named[1].value}" if named is not None else None


def _first_cx(obj: ebrim.RegistryObject) -> tuple[str, Identifier] | None:
    """`sourcePatientId`, else `patientId`: the first that is a CX, with the field it came from. One rule
    for the mapping and for the share a migration writer takes (`patient_key`)."""
    for field, value in (("sourcePatientId", obj.slot("sourcePatientId")),
                         ("XDSDocumentEntry.patientId", obj.external_ids.get(ebrim.DOCUMENT_PATIENT_ID))):
        identifier = cx_identifier(value)
        if identifier is not None:
            return field, identifier
    return None


def _patient_identifier(obj: ebrim.RegistryObject) -> Identifier:
    """The first CX (`_first_cx`); its id must be a local patient id."""
    named = _first_cx(obj)
    if named is None:
        raise Refused("neither sourcePatientId nor patientId is a CX id^^^&OID&ISO")
    field, identifier = named
    problem = LOCAL_PATIENT_ID.problem(identifier.value)
    if problem:
        raise Refused(f"{field}: {problem}")
    return identifier


def _read(kind: IdentifierKind, value: str, field: str) -> str:
    try:
        return kind.read(value)
    except InvalidIdentifier as refused:
        raise Refused(f"{field}: {refused.reason}") from None


def _entry_uuid(object_id: str) -> str | None:
    """The ExtrinsicObject's id: its entryUUID when it is a `urn:uuid:` (which must then be a UUID), else
    a symbolic id (ITI TF-3 4.2.3.1.5) that only links the package's associations: printable ASCII."""
    if object_id.startswith("urn:uuid:"):
        return _read(ENTRY_UUID, object_id, "ExtrinsicObject id (entryUUID)")
    if not is_printable_id(object_id) or len(object_id) > MAX_SYMBOLIC_ID:
        raise Refused(f"ExtrinsicObject id: the symbolic id {object_id[:40]!r} is not 1 to {MAX_SYMBOLIC_ID} "
                      "printable ASCII characters without spaces (or urn:uuid: and a UUID)")
    return None


def document_unique_id(obj: ebrim.RegistryObject) -> str | None:
    return obj.external_ids.get(ebrim.DOCUMENT_UNIQUE_ID)


def _dtm(value: str | None, slot: str) -> str | None:
    """XDS DTM (UTC by the IHE rule, whatever the sender's zone) → FHIR dateTime, through the gateway's
    one date parser; what it refuses is this document's rejection, naming the slot."""
    if value is None:
        return None
    try:
        return parse_xds(value).fhir()
    except InvalidDate as refused:
        raise Refused(f"{slot}: {refused.reason}") from None


def _birth_date(value: str) -> str:
    """PID-7 of sourcePatientInfo: the date as written (a time after it is checked, not moved to UTC)."""
    try:
        return parse_hl7(value, zone=UTC).fhir_date()
    except InvalidDate as refused:
        raise Refused(f"sourcePatientInfo PID-7: {refused.why}") from None


def _demographics(values: list[str]) -> Demographics:
    fields: dict[str, str] = {}
    for value in values:
        name, _, rest = value.partition("|")
        fields.setdefault(name, rest)
    family, given = None, ()
    if fields.get("PID-5"):
        parts = fields["PID-5"].split("^")
        family = parts[0] or None
        given = tuple(g for g in parts[1:2] if g)
    birth = fields.get("PID-7") or None
    if birth:
        birth = _birth_date(birth)
    return Demographics(family, given, birth, _GENDERS.get((fields.get("PID-8") or "").upper()))


def _author(classified: ebrim.Classified, index: int) -> Author:
    """`authorPerson` (XCN `id^family^given^…^^^&OID&ISO`) by the rule HL7 TXA-9 follows too."""
    parts = ((classified.slots.get("authorPerson") or [""])[0].split("^") + [""] * 9)[:9]
    authority = parts[8].split("&")[1] if "&" in parts[8] else parts[8]
    try:
        author = author_from_xcn(parts[0], parts[1], parts[2], authority, reference=f"author{index}")
    except InvalidIdentifier as refused:
        raise Refused(f"authorPerson: {refused.reason}") from None
    organization = _institution((classified.slots.get("authorInstitution") or [""])[0], index)
    if organization is None:
        return author
    # The institution (and its OID) is kept: the community's registry requires it of every document.
    practitioner = {**author.resource["contained"][0], "id": f"author{index}-person"}
    role = {"resourceType": "PractitionerRole", "id": f"author{index}",
            "practitioner": {"reference": f"#author{index}-person"},
            "organization": {"reference": f"#{organization['id']}"}}
    return replace(author, resource={**author.resource, "contained": [role, practitioner, organization]})


def _institution(xon: str, index: int) -> dict | None:
    """XON (name, XON.10 its OID) → a contained Organization, or None without a name."""
    parts = xon.split("^")
    name = parts[0].strip()
    if not name:
        return None
    organization: dict = {"resourceType": "Organization", "id": f"author{index}-org", "name": name}
    oid = parts[9].strip() if len(parts) > 9 else ""
    if is_oid(oid):
        organization["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{oid}"}]
    return organization


def map_document(obj: ebrim.RegistryObject, submission_set: ebrim.RegistryObject | None,
                 associations: list[ebrim.Association], content: bytes, tables: CodeTables) -> MappedDocument:
    """The document, or Refused naming every problem found (unmapped codes all at once)."""
    unique_id = document_unique_id(obj)
    if not unique_id:
        raise Refused("the ExtrinsicObject has no XDSDocumentEntry.uniqueId")
    unique_id = _read(UNIQUE_ID, unique_id, "XDSDocumentEntry.uniqueId")
    entry_uuid = _entry_uuid(obj.id)
    patient_id = _patient_identifier(obj)
    sha1, size = hashlib.sha1(content).hexdigest(), len(content)
    if (obj.slot("hash") or "").lower() != sha1:
        raise Refused(f"the metadata hash {obj.slot('hash')!r} does not match the file's SHA-1 {sha1}")
    if obj.slot("size") != str(size):
        raise Refused(f"the metadata size {obj.slot('size')!r} does not match the file's {size} bytes")
    for required in ("creationTime", "languageCode"):
        if not obj.slot(required):
            raise Refused(f"the required slot {required} is missing")
    if not obj.mime_type:
        raise Refused("the ExtrinsicObject has no mimeType")

    unmapped: list[Unmapped] = []

    def mapped(slot: str, scheme_uuid: str, *, required: bool = True, many: bool = False):
        found = [tables.map(slot, c.coding_scheme, c.code) for c in obj.codes(scheme_uuid)]
        unmapped.extend(c for c in found if isinstance(c, Unmapped))
        codes = [c for c in found if isinstance(c, Code)]
        if required and not found:
            raise Refused(f"the required classification {slot} is missing")
        return codes if many else (codes[0] if codes else None)

    class_codes = mapped("classCode", ebrim.CLASS_CODE, many=True)
    type_code = mapped("typeCode", ebrim.TYPE_CODE)
    format_code = mapped("formatCode", ebrim.FORMAT_CODE)
    confidentiality = mapped("confidentialityCode", ebrim.CONFIDENTIALITY_CODE, many=True)
    facility = mapped("healthcareFacilityTypeCode", ebrim.FACILITY_TYPE_CODE)
    setting = mapped("practiceSettingCode", ebrim.PRACTICE_SETTING_CODE)
    events = mapped("eventCodeList", ebrim.EVENT_CODE, required=False, many=True)
    if unmapped:
        raise Refused("unmapped code" + ("s " if len(unmapped) > 1 else " ") + "; ".join(map(str, unmapped)),
                      held=True, code="unmapped-code")

    # The authors' XDS roles stay with the authors; originalProviderRole is the *submitting* role,
    # which the gateway sets from the principal (the migration's TCU): gateway/exchanges/provenance.py.
    authors = [_author(classified, index)
               for index, classified in enumerate(obj.codes(ebrim.DOCUMENT_AUTHOR), start=1)]
    demographics = _demographics(obj.slots.get("sourcePatientInfo", []))
    source_patient = {"resourceType": "Patient", "id": "src",
                      "identifier": [{"use": "usual", "system": patient_id.system, "value": patient_id.value}]}
    if demographics.family or demographics.given:
        source_patient["name"] = [{k: v for k, v in (("family", demographics.family),
                                                     ("given", list(demographics.given))) if v}]
    if demographics.birth_date:
        source_patient["birthDate"] = demographics.birth_date
    if demographics.gender:
        source_patient["gender"] = demographics.gender

    set_unique_id = (submission_set.external_ids.get(ebrim.SUBMISSION_UNIQUE_ID) if submission_set else None) or ""
    if set_unique_id:
        set_unique_id = _read(UNIQUE_ID, set_unique_id, "XDSSubmissionSet.uniqueId")
    source_id = submission_set.external_ids.get(ebrim.SUBMISSION_SOURCE_ID) if submission_set else None
    subset = SubmissionSet(
        submission_set_id=new_record_id(),
        unique_id=f"urn:uuid:{uuid.uuid5(_SET_NAMESPACE, set_unique_id + '|' + unique_id)}",
        source_id=_read(SOURCE_ID, source_id, "XDSSubmissionSet.sourceId") if source_id else INFOMED_SOURCE_ID,
        patient_pid="",
        submission_time=_dtm(submission_set.slot("submissionTime"), "submissionTime") if submission_set else None,
        title=f"Infomed submission set {set_unique_id}" if set_unique_id else "Infomed migration",
    )
    creation = _dtm(obj.slot("creationTime"), "creationTime")
    entry = DocumentEntry(
        entry_id=new_record_id(), unique_id=unique_id, patient_pid="", status="current",
        type_code=type_code, class_codes=class_codes, format_code=format_code, confidentiality=confidentiality,
        facility_type=facility, practice_setting=setting, mime_type=obj.mime_type,
        language=obj.slot("languageCode") or "", title=obj.name or type_code.display or type_code.code,
        creation_time=creation, original_provider_role=None, size=size, sha1=sha1,
        entry_uuid=entry_uuid, date=creation,
        description=obj.description, event_codes=events,
        service_start=_dtm(obj.slot("serviceStartTime"), "serviceStartTime"),
        service_stop=_dtm(obj.slot("serviceStopTime"), "serviceStopTime"),
        authors=authors, source_patient=source_patient, source_patient_id=patient_id,
        submission_set_id=subset.submission_set_id)
    targets = tuple((RELATION_CODES[a.type], a.target) for a in associations
                    if a.source == obj.id and a.type in RELATION_CODES)
    return MappedDocument(unique_id, obj.id, patient_id, demographics, subset, NewDocument(entry, content), targets)


def with_relations(mapped: MappedDocument, target_unique_ids: list[tuple[str, str]]) -> NewDocument:
    """The document with its relations, each target named by uniqueId (resolved by the migration)."""
    relations = tuple(PendingRelation(code, target_unique_id=target) for code, target in target_unique_ids)
    return NewDocument(mapped.document.entry, mapped.document.content, relations)
