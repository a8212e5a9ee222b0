"""The use-cases only the professionals' web page needs: signing in, finding a patient whose EPR is open,
claiming an emergency access, uploading a PDF, and reading one's own activity in the ledger.

Everything else the page shows goes through the use-cases FHIR clients use (ITI-67, ITI-68), and these
call them too (ITI-78 to find, ITI-65 to upload): the same decisions and audit records as a practice
system's, no second door. The person signed in becomes the Principal a FHIR client with an IUA token for
the same person gets (`professional_principal`: the same claims, through the same checks).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from adapters.cara import value_sets
from adapters.cara.dates import InvalidDate, instant, parse_full_date
from adapters.cara.errors import InvalidInput, NotFound
from adapters.cara.upload_bundle import Upload, UploadAuthor, upload_bundle
from adapters.cara.vocabulary import PURPOSE_OF_USE_SYSTEM, ROLE_SYSTEM, SPID_SYSTEM
from audit.activity import professional_activity
from audit.event_codes import ATC_SYSTEM
from consent.principal import Group, Principal
from consent.roles import ASSISTANT, EMERGENCY_USERS, PROFESSIONALS
from gateway.auth.errors import AccessRefused
from gateway.auth.iua import principal_from_claims
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.exchanges.documents import DocumentExchange, Provided, Retrieved
from gateway.exchanges.identity import IdentityExchange

HCP_PAGE_CLIENT = "epr-hcp-page"
REASON_LENGTH = (10, 300)
TITLE_LENGTH = 200
LANGUAGES = ("fr-CH", "de-CH", "it-CH", "rm-CH", "en")
LEVELS = ("normal", "restricted", "secret")
PDF_START, PDF_END = b"%PDF-", b"%%EOF"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Professional:
    """Who signed in, as the professionals' identity provider (or the development page) named them."""

    role: str  # HCP, or ASS for an assistant
    gln: str
    name: str | None = None
    acting_for: str | None = None  # an assistant's responsible professional (GLN)
    acting_for_name: str | None = None
    organisation: str | None = None
    organisation_id: str | None = None
    groups: tuple[Group, ...] = ()


def professional_principal(person: Professional, *, issuer: str, emergency_reason: str | None = None,
                           patient_spid: str | None = None) -> Principal:
    """The Principal of `person`, acting normally or (with a reason) in an emergency: the claims an IUA
    token for the same person carries, read by the FHIR door's own checks (`principal_from_claims`: GLN
    check digits, an assistant's delegation, EMER for professionals only). An emergency is claimed for one
    patient: its principal is bound to that patient's SPID as an extended token is (`person_id`), so it
    reads nobody else's record. AuthenticationFailed or AccessRefused when the FHIR door would refuse such
    a token too; InvalidInput for an emergency without a reason the patient can read."""
    if emergency_reason is not None:
        emergency_reason = checked_reason(emergency_reason)
        if patient_spid is None:
            raise AccessRefused("an emergency access is claimed for one patient")
    if person.role not in PROFESSIONALS:
        raise AccessRefused("the professionals' page is for healthcare professionals and their assistants")
    purpose = "EMER" if emergency_reason is not None else "NORM"
    iua = {"subject_name": person.name, "subject_organization": person.organisation,
           "subject_organization_id": person.organisation_id,
           "subject_role": {"system": ROLE_SYSTEM, "code": person.role},
           "purpose_of_use": {"system": PURPOSE_OF_USE_SYSTEM, "code": purpose},
           "person_id": f"{patient_spid}^^^&{SPID_SYSTEM.removeprefix('urn:oid:')}&ISO" if patient_spid else None}
    extensions: dict[str, Any] = {"ihe_iua": {k: v for k, v in iua.items() if v is not None},
                                  "ch_epr": {"user_id": person.gln, "user_id_qualifier": "urn:gs1:gln"}}
    if person.acting_for or person.role == ASSISTANT:
        extensions["ch_delegation"] = {k: v for k, v in (("principal_id", person.acting_for),
                                                         ("principal", person.acting_for_name)) if v}
    if person.groups:
        extensions["ch_group"] = [{k: v for k, v in (("id", g.id), ("name", g.name)) if v} for g in person.groups]
    principal = principal_from_claims({"iss": issuer, "jti": None, "client_id": HCP_PAGE_CLIENT,
                                       "extensions": extensions})
    return replace(principal, emergency_reason=emergency_reason)


@dataclass(frozen=True)
class PatientRow:
    pid: str  # the MPI-PID: the page's URLs name patients by it, never by the SPID
    spid: str
    family: str
    given: str
    birth_date: str | None
    gender: str | None


@dataclass(frozen=True)
class FoundPatients:
    patients: tuple[PatientRow, ...]
    wanted: tuple[str, ...] = ()  # too many matched (CH PDQm): the Patient elements that would narrow it


@dataclass(frozen=True)
class ActivityRow:
    when: datetime
    transaction: str
    atc_code: str | None
    patient_spid: str | None
    documents: tuple[str, ...]
    outcome_ok: bool
    who: str
    role: str
    emergency_reason: str | None
    emergency: bool


class ProfessionalExchange:
    def __init__(self, *, identities: IdentityExchange, documents: DocumentExchange, access: AccessControl,
                 auditor: Auditor, community_oid: str, source_id: str, max_upload_bytes: int):
        self.identities = identities
        self.documents = documents
        self.access = access
        self.auditor = auditor
        self.mpi_system = f"urn:oid:{community_oid}"
        self.source_id = source_id
        self.max_upload_bytes = max_upload_bytes

    @audited("hcp-sign-in")
    def sign_in(self, *, principal: Principal) -> Principal:
        if principal.role not in PROFESSIONALS:
            raise AccessRefused("the professionals' page is for healthcare professionals and their assistants")
        self.auditor.write_now([self.auditor.record("hcp-sign-in", principal)])
        return principal

    # -- patients ---------------------------------------------------------------------------------
    def find_patients(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> FoundPatients:
        """ITI-78 as FHIR clients ask it (its audit, its too-many rule); only patients whose EPR is open."""
        bundle = self.identities.pdq(principal=principal, params=params, base_url=base_url)
        entries = bundle.get("entry", [])
        outcome = next((e["resource"] for e in entries if e.get("search", {}).get("mode") == "outcome"), None)
        if outcome is not None:
            return FoundPatients((), tuple(x for i in outcome["issue"] for x in i.get("expression", [])))
        rows = (self._row(e["resource"]) for e in entries if e["resource"]["resourceType"] == "Patient")
        return FoundPatients(tuple(r for r in rows if r is not None))

    def patient(self, *, principal: Principal, pid: str) -> PatientRow:
        """One patient (an ITI-78 read), NotFound alike for an unknown id, a retired one and one whose EPR is
        not open."""
        row = self._row(self.identities.read(principal=principal, pid=pid))
        if row is None:
            raise NotFound(f"Patient/{pid} is not known")
        return row

    def _row(self, resource: dict[str, Any]) -> PatientRow | None:
        spid = next((i["value"] for i in resource.get("identifier", []) if i.get("system") == SPID_SYSTEM), None)
        if spid is None or not resource.get("active", True) or not self.access.policies(resource["id"]):
            return None  # no EPR (no SPID, merged away, or never opened): not a patient the page shows
        name = (resource.get("name") or [{}])[0]
        return PatientRow(resource["id"], spid, name.get("family", ""), " ".join(name.get("given", [])),
                          resource.get("birthDate"), resource.get("gender"))

    # -- emergency access -------------------------------------------------------------------------
    @audited("hcp-emergency")
    def emergency(self, *, principal: Principal, pid: str) -> PatientRow:
        """A professional claims an emergency access to one patient (a principal of purpose EMER with its
        reason, `professional_principal`): recorded, the reason with it, before anything is read. What they
        then may read is the decision point's (the patient's 202); each read under it is audited with the
        reason and notified to the patient."""
        if principal.role not in EMERGENCY_USERS or principal.purpose_of_use != "EMER":
            raise AccessRefused("an emergency access is claimed by a professional, with purpose EMER")
        checked_reason(principal.emergency_reason)
        row = self.patient(principal=principal, pid=pid)
        self.auditor.write_now([self.auditor.record("hcp-emergency", principal, patient_spid=row.spid)])
        return row

    @audited("ITI-68")
    def open_document(self, *, principal: Principal, pid: str, entry_id: str, base_url: str) -> Retrieved:
        """ITI-68 of a document of this patient: one of another patient answers like an unknown one,
        before anything is read (a page's URL names the patient and the document together)."""
        entry = self.documents.documents.get_entry(entry_id)
        if entry is None or self.identities.patients.surviving_pid(entry.patient_pid) != pid:
            raise NotFound(f"Binary/{entry_id} is not known")
        return self.documents.retrieve(principal=principal, entry_id=entry_id, base_url=base_url)

    # -- upload -----------------------------------------------------------------------------------
    @audited("ITI-65")
    def upload(self, *, principal: Principal, pid: str, upload: Upload, base_url: str) -> Provided:
        """A PDF for the patient, as an ITI-65 Provide Document Bundle through the ITI-65 use-case: its
        rules, the provide level and the write decision apply. InvalidInput (naming the field) for what
        the form got wrong; nothing is stored then."""
        check_upload(upload, max_bytes=self.max_upload_bytes)
        row = self.patient(principal=principal, pid=pid)
        gln = principal.acting_for if principal.role == ASSISTANT else principal.user_id
        name = principal.acting_for_name if principal.role == ASSISTANT else principal.name
        author = UploadAuthor(gln=gln, name=name, organisation=principal.organisation,
                              organisation_id=principal.organisation_id)
        source_patient = {"identifier": [{"use": "usual", "system": self.mpi_system, "value": row.pid}],
                          "name": [{"family": row.family, "given": row.given.split()}]}
        if row.birth_date:
            source_patient["birthDate"] = row.birth_date
        bundle = upload_bundle(upload, spid=row.spid, author=author, submitter_role=principal.role,
                               source_id=self.source_id, source_patient=source_patient,
                               now=datetime.now(UTC).isoformat(timespec="seconds"))
        return self.documents.provide_bundle(principal=principal, bundle=bundle, base_url=base_url)

    # -- my activity ------------------------------------------------------------------------------
    @audited("hcp-activity")
    def activity(self, *, principal: Principal, count: int = 50) -> list[ActivityRow]:
        """The signed-in professional's own recent accesses to patients' records (an assistant's: those
        of the professional they act for), newest first: what the ledger holds for that GLN only."""
        if principal.role not in PROFESSIONALS:
            raise AccessRefused("a professional's activity is read by that professional")
        gln = principal.acting_for if principal.role == ASSISTANT else principal.user_id
        events = professional_activity(self.auditor.engine, gln=gln, count=count)
        self.auditor.write_now([self.auditor.record("hcp-activity", principal, action="R")])
        return [activity_row(event) for _, event in events]


def checked_reason(reason: str | None) -> str:
    """The reason as recorded: required, one line, 10 to 300 characters."""
    text = " ".join((reason or "").split())
    low, high = REASON_LENGTH
    if not low <= len(text) <= high or _CONTROL.search(text):
        raise InvalidInput(f"give the reason for the emergency access ({low} to {high} characters)", location="reason")
    return text


def check_upload(upload: Upload, *, max_bytes: int) -> None:
    """What the page's form must give; each refusal names its field (`location`)."""
    if len(upload.content) > max_bytes:
        raise InvalidInput(f"the file is larger than {max_bytes // (1024 * 1024)} MB", location="file-size")
    head, tail = upload.content[:1024], upload.content[-1024:]
    if not upload.content.startswith(PDF_START) or PDF_END not in tail or b"%PDF-" not in head:
        raise InvalidInput("the file is not a PDF", location="file")
    if not upload.title.strip() or len(upload.title) > TITLE_LENGTH or _CONTROL.search(upload.title):
        raise InvalidInput(f"give a title of at most {TITLE_LENGTH} characters", location="title")
    for kind, code in (("type", upload.type_code), ("class", upload.class_code),
                       ("facility", upload.facility_type), ("setting", upload.practice_setting)):
        if value_sets.concept(kind, code.code) is None:
            raise InvalidInput(f"choose the {kind} from the list", location=kind)
    try:
        day = parse_full_date(upload.date)
    except InvalidDate:
        raise InvalidInput("give the document's date", location="date") from None
    if day > datetime.now(UTC).date():
        raise InvalidInput("the document's date is in the future", location="date")
    if upload.language not in LANGUAGES:
        raise InvalidInput("choose the document's language from the list", location="language")
    if upload.confidentiality not in LEVELS:
        raise InvalidInput("choose the confidentiality from the list", location="confidentiality")


def activity_row(event: dict[str, Any]) -> ActivityRow:
    """What the activity page shows of a stored AuditEvent."""
    codes = {c.get("system"): c.get("code") for c in event.get("subtype", [])}
    main = next((a for a in event.get("agent", []) if a.get("requestor")), {})
    purpose = (main.get("purposeOfUse") or [{}])[0]
    spid = next((e["what"]["identifier"]["value"] for e in event.get("entity", [])
                 if e.get("role", {}).get("code") == "1"), None)
    titles = tuple(_decoded(d.get("valueBase64Binary")) for e in event.get("entity", [])
                   for d in e.get("detail", []) if d.get("type") == "title")
    return ActivityRow(when=instant(event["recorded"]).replace(tzinfo=UTC),  # the ledger's own stamp, in UTC
                       transaction=next((v for k, v in codes.items() if k != ATC_SYSTEM
                                         and v not in ("read", "search", "create", "update", "delete")), ""),
                       atc_code=codes.get(ATC_SYSTEM), patient_spid=spid,
                       documents=titles, outcome_ok=event.get("outcome") == "0", who=main.get("name", ""),
                       role=((main.get("role") or [{}])[0].get("coding") or [{}])[0].get("code", ""),
                       emergency_reason=purpose.get("text"),
                       emergency=(purpose.get("coding") or [{}])[0].get("code") == "EMER")


def _decoded(value: str | None) -> str:
    try:
        return base64.b64decode(value or "").decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


