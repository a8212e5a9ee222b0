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
from dataclasses import dataclass

from adapters.cara.identifier_syntax import is_oid
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
from adapters.cara.vocabulary import GLN_SYSTEM, ROLE_SYSTEM, ROLES
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables, Unmapped

RELATION_CODES = {ebrim.RPLC: "replaces", ebrim.APND: "appends", ebrim.XFRM: "transforms", ebrim.SIGNS: "signs"}
_CX = re.compile(r"^(?P<id>[^\^]+)\^\^\^[^&]*&(?P<oid>[0-2](\.(0|[1-9][0-9]*))+)&ISO$")
_DTM = re.compile(r"[0-9]{4}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2})?)?)?)?)?")
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
    """CX `id^^^&OID&ISO` → Identifier(urn:oid:OID, id)."""
    match = _CX.match(value or "")
    return Identifier(f"urn:oid:{match['oid']}", match["id"]) if match else None


def document_unique_id(obj: ebrim.RegistryObject) -> str | None:
    return obj.external_ids.get(ebrim.DOCUMENT_UNIQUE_ID)


def _dtm(value: str | None, slot: str) -> str | None:
    """HL7 DTM (UTC in XDS) → FHIR dateTime."""
    if value is None:
        return None
    if not _DTM.fullmatch(value) or len(value) not in (4, 6, 8, 10, 12, 14):
        raise Refused(f"{slot} {value!r} is not an HL7 date/time")
    if len(value) <= 8:
        return "-".join(p for p in (value[:4], value[4:6], value[6:8]) if p)
    padded = value.ljust(14, "0")
    return f"{padded[:4]}-{padded[4:6]}-{padded[6:8]}T{padded[8:10]}:{padded[10:12]}:{padded[12:14]}Z"


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
        birth = _dtm(birth[:8], "sourcePatientInfo PID-7")
    return Demographics(family, given, birth, _GENDERS.get((fields.get("PID-8") or "").upper()))


def _author(classified: ebrim.Classified, index: int) -> tuple[Author, Code | None]:
    person = (classified.slots.get("authorPerson") or [""])[0]
    parts = person.split("^")
    gln = parts[0] if parts and parts[0] else None
    family = parts[1] if len(parts) > 1 and parts[1] else None
    given = parts[2] if len(parts) > 2 and parts[2] else None
    practitioner = {"resourceType": "Practitioner", "id": f"author{index}"}
    if gln:
        practitioner["identifier"] = [{"system": GLN_SYSTEM, "value": gln}]
    if family or given:
        practitioner["name"] = [{k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}]
    role = (classified.slots.get("authorRole") or [""])[0].split("^")[0]
    role_code = Code(ROLE_SYSTEM, role, ROLES[role]) if role in ROLES else None
    contained = [practitioner]
    organization = _institution((classified.slots.get("authorInstitution") or [""])[0], index)
    if organization is not None:
        # The institution (and its OID) is kept: the community's registry requires it of every document.
        practitioner["id"] = f"author{index}-person"
        contained = [{"resourceType": "PractitionerRole", "id": f"author{index}",
                      "practitioner": {"reference": f"#author{index}-person"},
                      "organization": {"reference": f"#{organization['id']}"}}, practitioner, organization]
    author = Author({"reference": {"reference": f"#author{index}"}, "contained": contained},
                    (family,) if family else (), (given,) if given else ())
    return author, role_code


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
    patient_id = cx_identifier(obj.slot("sourcePatientId")) or cx_identifier(
        obj.external_ids.get(ebrim.DOCUMENT_PATIENT_ID))
    if patient_id is None:
        raise Refused("neither sourcePatientId nor patientId is a CX id^^^&OID&ISO")
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
    authors = [_author(classified, index)[0]
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
    subset = SubmissionSet(
        submission_set_id=new_record_id(),
        unique_id=f"urn:uuid:{uuid.uuid5(_SET_NAMESPACE, set_unique_id + '|' + unique_id)}",
        source_id=(submission_set.external_ids.get(ebrim.SUBMISSION_SOURCE_ID) if submission_set else None)
        or "urn:oid:2.16.756.5.30.1.145",
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
        entry_uuid=obj.id if obj.id.startswith("urn:uuid:") else None, date=creation,
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
