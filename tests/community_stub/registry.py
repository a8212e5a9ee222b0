"""The registry/repository rules the platform applies to a Provide and Register, and the store.

What each rule mirrors is listed in README.md. The rules run in the platform's order: metadata
(patient, PID-5, institution OID, codes, hash/size, structure), then the consent filter on the
confidentiality, then uniqueness and replacement; only a submission that passes them all is stored,
as a whole, under one lock (check and store are one step, as in a registry's transaction).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .ebrim import (ENTRY_CODES, ENTRY_PATIENT_ID, ENTRY_UNIQUE_ID, HAS_MEMBER, RPLC, SET_PATIENT_ID, SET_SOURCE_ID,
                    SET_UNIQUE_ID, STABLE_ENTRY, SUBMISSION_SET_CODES, RegistryEntry, Submission)
from .soap import RegistryError

SPID_ROOT = "2.16.756.5.30.1.127.3.10.3"
CONFIDENTIALITY_RANK = {"17621005": 0, "263856008": 1, "1141000195107": 2}  # normal, restricted, secret
LEVEL_CODES = {"normal": "17621005", "restricted": "263856008", "secret": "1141000195107"}
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_CX = re.compile(r"^([^^&]+)\^\^\^&([0-9.]+)&ISO$")
_CODED_SLOTS = {"authorRole": "authorRole", "authorSpecialty": "authorSpecialty"}
AFFINITY_DOMAIN = Path(__file__).with_name("affinity_domain.json")


@dataclass
class StoredDocument:
    unique_id: str
    entry_uuid: str
    submission_set_unique_id: str
    patient_id: str          # the MPI-PID (extension), in the community's assigning authority
    confidentiality: str     # the confidentialityCode as stored
    hash: str
    size: int
    mime_type: str
    status: str = "Approved"
    replaces: str | None = None
    content: bytes | None = None
    stored_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


@dataclass
class CodeTable:
    """(code, codingScheme) per metadata attribute, seeded from the CH value sets (ch-term)."""
    codes: dict[str, set[tuple[str, str]]]

    @classmethod
    def ch_value_sets(cls) -> CodeTable:
        data = json.loads(AFFINITY_DOMAIN.read_text(encoding="utf-8"))
        return cls({name: {(code, scheme) for code, scheme, _display in rows}
                    for name, rows in data.items() if not name.startswith("_")})

    def add(self, attribute: str, code: str, scheme: str) -> None:
        self.codes.setdefault(attribute, set()).add((code, scheme))

    def remove(self, attribute: str, code: str, scheme: str) -> None:
        self.codes.get(attribute, set()).discard((code, scheme))

    def knows(self, attribute: str, code: str, scheme: str) -> bool:
        return (code, scheme) in self.codes.get(attribute, set())


@dataclass
class RegistryState:
    assigning_authority: str
    repository_unique_id: str
    codes: CodeTable
    provide_levels: dict[str, str] = field(default_factory=dict)  # MPI-PID -> normal|restricted|secret
    known_patients: set[str] = field(default_factory=set)         # MPI-PIDs
    consent_error: str = "emedo"                                   # or "former" (the former platform's answer)
    keep_content: bool = False
    documents: dict[str, StoredDocument] = field(default_factory=dict)      # by uniqueId
    by_entry_uuid: dict[str, StoredDocument] = field(default_factory=dict)
    submission_sets: dict[str, list[str]] = field(default_factory=dict)   # uniqueId -> document uniqueIds
    stored_in_order: list[StoredDocument] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SubmissionRefused(Exception):
    def __init__(self, errors: list[RegistryError]):
        super().__init__("; ".join(f"{e.code}: {e.context}" for e in errors))
        self.errors = errors


def register(state: RegistryState, submission: Submission, contents: dict[str, bytes]) -> list[StoredDocument]:
    """Check `submission` (with the bytes of each entry's part) and store it, or raise SubmissionRefused."""
    errors = _metadata_errors(state, submission, contents)
    if errors:
        raise SubmissionRefused(errors)
    errors = _consent_filter(state, submission)
    if errors:
        raise SubmissionRefused(errors)
    with state.lock:
        errors = _uniqueness_errors(state, submission, contents)
        if errors:
            raise SubmissionRefused(errors)
        return _store(state, submission, contents)


def _metadata_errors(state: RegistryState, submission: Submission, contents: dict[str, bytes]) -> list[RegistryError]:
    errors: list[RegistryError] = []

    def error(context: str, location: str = "", code: str = "XDSRegistryMetadataError") -> None:
        errors.append(RegistryError(code, context, location))

    package = submission.submission_set
    if package is None:
        error(f"exactly one SubmissionSet expected, found {submission.packages}")
        return errors
    if not submission.entries:
        error("the submission has no DocumentEntry", package.id, "XDSMissingDocumentMetadata")
    set_unique_id = package.identifier(SET_UNIQUE_ID)
    if not set_unique_id or not _OID.match(set_unique_id):
        error("XDSSubmissionSet.uniqueId must be one OID", package.id)
    if not _OID.match(package.identifier(SET_SOURCE_ID) or ""):
        error("XDSSubmissionSet.sourceId must be one OID", package.id)
    if not package.slot("submissionTime"):
        error("XDSSubmissionSet.submissionTime missing", package.id)
    set_patient = package.identifier(SET_PATIENT_ID)
    _patient_errors(state, set_patient, "XDSSubmissionSet.patientId", package.id, errors)
    _code_errors(state, package, SUBMISSION_SET_CODES, errors, required=("contentTypeCode",))
    _author_errors(state, package, errors, institution_required=False)
    members = {a.target for a in submission.associations if a.type == HAS_MEMBER and a.source == package.id}
    for entry in submission.entries:
        where = entry.id
        if entry.element.get("objectType") != STABLE_ENTRY:
            error(f"objectType must be the stable DocumentEntry {STABLE_ENTRY}", where)
        if not entry.identifier(ENTRY_UNIQUE_ID):
            error("XDSDocumentEntry.uniqueId missing", where)
        patient = entry.identifier(ENTRY_PATIENT_ID)
        _patient_errors(state, patient, "XDSDocumentEntry.patientId", where, errors)
        if patient and set_patient and patient != set_patient:
            error(f"XDSDocumentEntry.patientId {patient} differs from the SubmissionSet's {set_patient}", where,
                  "XDSPatientIdDoesNotMatch")
        for slot in ("creationTime", "languageCode", "sourcePatientId"):
            if not entry.slot(slot):
                error(f"XDSDocumentEntry.{slot} missing", where)
        if not any(v.startswith("PID-5|") and v[6:].strip(" ^") for v in entry.slots.get("sourcePatientInfo", [])):
            error("XDSDocumentEntry.sourcePatientInfo must carry the patient's name (PID-5)", where)
        if not entry.element.get("mimeType"):
            error("XDSDocumentEntry.mimeType missing", where)
        _code_errors(state, entry, ENTRY_CODES, errors, required=(
            "classCode", "typeCode", "formatCode", "healthcareFacilityTypeCode", "practiceSettingCode",
            "confidentialityCode"))
        _author_errors(state, entry, errors, institution_required=True)
        for value in entry.slots.get("urn:e-health-suisse:2020:originalProviderRole", []):
            _coded_slot_errors(state, "originalProviderRole", value, where, errors)
        if where not in members:
            error("no HasMember association from the SubmissionSet to this DocumentEntry", where)
        _content_errors(state, entry, contents.get(where), errors)
    return errors


def _patient_errors(state, value, what, where, errors) -> None:
    match = _CX.match(value or "")
    if match is None:
        errors.append(RegistryError("XDSRegistryMetadataError", f"{what} must be one CX id^^^&OID&ISO: {value!r}", where))
        return
    extension, root = match.groups()
    if root == SPID_ROOT:
        errors.append(RegistryError("XDSUnknownPatientId", f"{what} {value} is an EPR-SPID: the community's "
                                    f"MPI-PID ({state.assigning_authority}) is expected", where))
    elif root != state.assigning_authority or extension not in state.known_patients:
        errors.append(RegistryError("XDSUnknownPatientId", f"{what} {value} is not known to the registry", where))


def _code_errors(state, entry: RegistryEntry, schemes: dict[str, str], errors, *, required: tuple[str, ...]) -> None:
    seen: dict[str, int] = {}
    for coded in entry.codes:
        attribute = schemes.get(coded.scheme)
        if attribute is None:
            continue
        seen[attribute] = seen.get(attribute, 0) + 1
        if not state.codes.knows(attribute, coded.code, coded.coding_scheme):
            errors.append(RegistryError("XDSRegistryMetadataError", f"Code '{coded.code}' with code system "
                                        f"'{coded.coding_scheme}' ({attribute}) not found in the Affinity Domain "
                                        f"configuration", entry.id))
    for attribute in required:
        count = seen.get(attribute, 0)
        if count == 0 or (count > 1 and attribute != "confidentialityCode"):
            errors.append(RegistryError("XDSRegistryMetadataError", f"{attribute}: exactly one expected, found "
                                        f"{count}", entry.id))


def _author_errors(state, entry: RegistryEntry, errors, *, institution_required: bool) -> None:
    if not entry.authors or not all(any(a.get(k) for k in ("authorPerson", "authorInstitution", "authorTelecom"))
                                    for a in entry.authors):
        errors.append(RegistryError("XDSRegistryMetadataError", "each author needs an authorPerson, "
                                    "authorInstitution or authorTelecom", entry.id))
    institutions = [v for author in entry.authors for v in author.get("authorInstitution", [])]
    if institution_required and not any(_OID.match(_component(v, 9)) for v in institutions):
        errors.append(RegistryError("XDSRegistryMetadataError", "authorInstitution must carry the "
                                    "organisation's OID in XON.10", entry.id))
    for author in entry.authors:
        for slot, table in _CODED_SLOTS.items():
            for value in author.get(slot, []):
                _coded_slot_errors(state, table, value, entry.id, errors)


def _coded_slot_errors(state, attribute, value, where, errors) -> None:
    match = _CX.match(value)
    if match is None or not state.codes.knows(attribute, *match.groups()):
        errors.append(RegistryError("XDSRegistryMetadataError", f"{attribute} '{value}' not found in the Affinity "
                                    f"Domain configuration", where))


def _content_errors(state, entry: RegistryEntry, content: bytes | None, errors) -> None:
    if content is None:
        errors.append(RegistryError("XDSMissingDocument", f"no document for DocumentEntry {entry.id}", entry.id))
        return
    digest = entry.slot("hash")
    if digest is not None and digest.lower() != hashlib.sha1(content).hexdigest():
        errors.append(RegistryError("XDSRepositoryMetadataError", f"hash {digest} does not match the document "
                                    f"({hashlib.sha1(content).hexdigest()})", entry.id))
    size = entry.slot("size")
    if size is not None and size != str(len(content)):
        errors.append(RegistryError("XDSRepositoryMetadataError", f"size {size} does not match the document "
                                    f"({len(content)} bytes)", entry.id))
    repository = entry.slot("repositoryUniqueId")
    if repository is not None and repository != state.repository_unique_id:
        errors.append(RegistryError("XDSRepositoryMetadataError", f"repositoryUniqueId {repository} is not this "
                                    f"repository ({state.repository_unique_id})", entry.id))


def _consent_filter(state: RegistryState, submission: Submission) -> list[RegistryError]:
    """cara's table: below the patient's level is refused; secret only for a patient at secret."""
    for entry in submission.entries:
        patient = _CX.match(entry.identifier(ENTRY_PATIENT_ID)).group(1)
        level = CONFIDENTIALITY_RANK[LEVEL_CODES[state.provide_levels.get(patient, "normal")]]
        for coded in entry.codes:
            if ENTRY_CODES.get(coded.scheme) != "confidentialityCode" or coded.code not in CONFIDENTIALITY_RANK:
                continue
            rank = CONFIDENTIALITY_RANK[coded.code]
            if rank < level or (rank == 2 and level != 2):
                if state.consent_error == "former":
                    return [RegistryError("XDSRegistryError", "Unexpected registry error.", "Sense XDS Registry")]
                return [RegistryError("XDSRepositoryError", "Consent filter applied", entry.id)]
    return []


def _uniqueness_errors(state, submission: Submission, contents) -> list[RegistryError]:
    errors = []
    set_unique_id = submission.submission_set.identifier(SET_UNIQUE_ID)
    if set_unique_id in state.submission_sets:
        errors.append(RegistryError("XDSDuplicateUniqueIdInRegistry", f"The SubmissionSet unique ID "
                                    f"\"{set_unique_id}\" already exists in the registry", "Registry"))
    for entry in submission.entries:
        unique_id = entry.identifier(ENTRY_UNIQUE_ID)
        stored = state.documents.get(unique_id)
        if entry.id in state.by_entry_uuid and (stored is None or stored.entry_uuid != entry.id):
            errors.append(RegistryError("XDSDuplicateUniqueIdInRegistry", f"The entryUUID {entry.id} already "
                                        f"exists in the registry", "Registry"))
        if stored is None:
            continue
        if stored.hash != hashlib.sha1(contents[entry.id]).hexdigest():
            errors.append(RegistryError("XDSNonIdenticalHash", f"The XDS document with the unique ID \"{unique_id}"
                                        f"\" already exists in the sense repository, but the hash of the provided "
                                        f"document does not match the hash of the stored document!", "Repository"))
        elif stored.submission_set_unique_id != set_unique_id:
            errors.append(RegistryError("XDSDuplicateUniqueIdInRegistry", f"The DocumentEntry unique ID "
                                        f"\"{unique_id}\" already exists in the registry (SubmissionSet "
                                        f"{stored.submission_set_unique_id})", "Registry"))
    errors.extend(_replacement_errors(state, submission))
    return errors


def _replacement_errors(state, submission: Submission) -> list[RegistryError]:
    errors = []
    entries = {e.id: e for e in submission.entries}
    for association in submission.associations:
        if association.type != RPLC:
            continue
        entry = entries.get(association.source)
        original = state.by_entry_uuid.get(association.target)
        if entry is None:
            errors.append(RegistryError("XDSRegistryMetadataError", f"RPLC sourceObject {association.source} is "
                                        "not a DocumentEntry of this submission", association.id))
        elif original is None:
            errors.append(RegistryError("UnresolvedReferenceException", f"RPLC targetObject {association.target} "
                                        "is not a DocumentEntry of the registry", association.id))
        elif original.status != "Approved":
            errors.append(RegistryError("XDSRegistryMetadataError", f"RPLC targetObject {association.target} is "
                                        f"{original.status}, not the current version", association.id))
        elif _CX.match(entry.identifier(ENTRY_PATIENT_ID)).group(1) != original.patient_id:
            errors.append(RegistryError("XDSPatientIdDoesNotMatch", f"RPLC targetObject {association.target} "
                                        "belongs to another patient", association.id))
    return errors


def _store(state: RegistryState, submission: Submission, contents: dict[str, bytes]) -> list[StoredDocument]:
    set_unique_id = submission.submission_set.identifier(SET_UNIQUE_ID)
    replaced = {a.source: a.target for a in submission.associations if a.type == RPLC}
    stored = []
    for entry in submission.entries:
        content = contents[entry.id]
        entry_uuid = entry.id if entry.id.startswith("urn:uuid:") else f"urn:uuid:{uuid.uuid4()}"
        confidentiality = next(c.code for c in entry.codes if ENTRY_CODES.get(c.scheme) == "confidentialityCode")
        document = StoredDocument(
            unique_id=entry.identifier(ENTRY_UNIQUE_ID), entry_uuid=entry_uuid, submission_set_unique_id=set_unique_id,
            patient_id=_CX.match(entry.identifier(ENTRY_PATIENT_ID)).group(1), confidentiality=confidentiality,
            hash=hashlib.sha1(content).hexdigest(), size=len(content), mime_type=entry.element.get("mimeType"),
            replaces=replaced.get(entry.id), content=content if state.keep_content else None)
        if document.replaces:
            state.by_entry_uuid[document.replaces].status = "Deprecated"
        state.documents[document.unique_id] = document
        state.by_entry_uuid[entry_uuid] = document
        state.stored_in_order.append(document)
        stored.append(document)
    state.submission_sets[set_unique_id] = [d.unique_id for d in stored]
    return stored


def _component(value: str, index: int) -> str:
    parts = value.split("^")
    return parts[index] if len(parts) > index else ""
