"""MDM^T02/T06/T10 and ORU^R01 → a `Submission` of the shared record (the SPID still to resolve).

The document is the OBX with OBX-2 = ED (OBX-5: source application ^ type of data ^ subtype ^
encoding ^ data; Base64, Hex or plain `A`); an MDM without ED but with TX/FT observations is a
plain-text document of those lines. TXA-12 is the uniqueId, kept verbatim; T10 replaces TXA-13,
T06 appends to it.
"""

from __future__ import annotations

import binascii
import hashlib
import uuid
from dataclasses import dataclass

from adapters.cara.base64_strict import b64decode_strict_wrapped
from adapters.cara.document_content import EMPTY_DOCUMENT, content_problem
from adapters.cara.identifier_syntax import UNIQUE_ID, IdentifierKind, InvalidIdentifier
from adapters.cara.record_ids import new_record_id
from adapters.cara.model import (
    Author,
    Code,
    DocumentEntry,
    Identifier,
    NewDocument,
    PendingRelation,
    Submission,
    SubmissionSet,
)
from adapters.cara.vocabulary import CONFIDENTIALITY_DISPLAY, ROLE_SYSTEM, SNOMED
from adapters.infomed.authors import author_from_xcn
from adapters.infomed.hl7v2 import code_tables
from adapters.infomed.hl7v2.code_tables import CodeTables
from adapters.infomed.hl7v2.dates import fhir_datetime
from adapters.infomed.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_MESSAGE_TYPE,
    CannotProcess,
    SenderMustFix,
)
from adapters.infomed.hl7v2.identifiers import cx_identifiers
from adapters.infomed.hl7v2.message import Message, Segment

RELATION_OF_EVENT = {"T06": "appends", "T10": "replaces"}
TEXT_OBSERVATIONS = frozenset({"TX", "FT", "ST"})


@dataclass(frozen=True)
class SenderProfile:
    """What the sender's configuration adds to its messages (HL7 v2 does not carry it)."""

    source_id: str  # the submission set's sourceId (urn:oid:…)
    facility_type: Code
    practice_setting: Code
    language: str = "fr-CH"
    assigning_authority: str | None = None  # urn:oid:… for PID-3 ids sent without an authority


@dataclass(frozen=True)
class DocumentMessage:
    patient_identifiers: tuple[Identifier, ...]  # PID-3, in the order sent: the first the MPI knows counts
    submission: Submission  # spid "" until the gateway resolves the patient


def document_message(message: Message, *, sender_key: str, profile: SenderProfile,
                     tables: CodeTables) -> DocumentMessage:
    code, trigger, _ = message.message_type
    pid = message.require("PID")
    identifiers = tuple(cx_identifiers(pid, 3, default_system=profile.assigning_authority))
    txa = message.first("TXA")
    if code == "MDM" and txa is None:
        raise SenderMustFix("an MDM message needs its TXA segment", code=REQUIRED_FIELD_MISSING, segment="TXA")
    content, mime = _content(message, allow_text=code == "MDM")
    unique_id, where = (txa.value(12) if txa is not None else ""), ("TXA", 12)
    if not unique_id and code == "ORU":
        unique_id, where = (message.first("OBR").value(3) if message.first("OBR") else ""), ("OBR", 3)
    if not unique_id:
        raise SenderMustFix("TXA-12 (unique document number) is required", code=REQUIRED_FIELD_MISSING,
                            segment="TXA", field=12)
    unique_id = _identifier(UNIQUE_ID, unique_id, *where)
    type_key = txa.value(2) if code == "MDM" else tables.oru_document_type
    if code == "MDM" and not type_key:
        raise SenderMustFix("TXA-2 (document type) is required", code=REQUIRED_FIELD_MISSING, segment="TXA", field=2)
    codes = tables.document_type(type_key)
    if codes is None:
        raise SenderMustFix(f"TXA-2 document type {type_key!r} is not in the code table", code=TABLE_VALUE_NOT_FOUND,
                            segment="TXA", field=2)
    type_code, class_code = codes
    level = _confidentiality(txa)
    if txa is not None:
        _require_shareable(txa)
    sent = fhir_datetime(message.msh.value(7), where=("MSH", 7))
    created = (fhir_datetime(txa.value(4), where=("TXA", 4)) or fhir_datetime(txa.value(6), where=("TXA", 6))
               if txa is not None else None) or sent
    if created is None:
        raise SenderMustFix("TXA-4 (activity date/time) or MSH-7 is required", code=REQUIRED_FIELD_MISSING,
                            segment="TXA", field=4)
    authors = _authors(txa)
    submission_set_id = new_record_id()
    source_patient = _source_patient(pid, identifiers[0])
    entry = DocumentEntry(
        entry_id=new_record_id(),
        unique_id=unique_id,
        patient_pid="",
        status="current",
        type_code=type_code,
        class_codes=[class_code],
        format_code=code_tables.UNSTRUCTURED,
        confidentiality=[Code(SNOMED, *CONFIDENTIALITY_DISPLAY[level])],
        facility_type=profile.facility_type,
        practice_setting=profile.practice_setting,
        mime_type=mime,
        language=profile.language,
        title=_title(txa, type_code),
        creation_time=created,
        original_provider_role=Code(ROLE_SYSTEM, "TCU", "Technical user"),
        size=len(content),
        sha1=hashlib.sha1(content).hexdigest(),
        date=created,
        authors=authors,
        source_patient=source_patient,
        source_patient_id=identifiers[0],
        submission_set_id=submission_set_id,
    )
    relations = ()
    if trigger in RELATION_OF_EVENT:
        parent = txa.value(13)
        if not parent:
            raise SenderMustFix(f"MDM^{trigger} needs TXA-13 (the parent document's unique number)",
                                code=REQUIRED_FIELD_MISSING, segment="TXA", field=13)
        parent = _identifier(UNIQUE_ID, parent, "TXA", 13)
        relations = (PendingRelation(RELATION_OF_EVENT[trigger], target_unique_id=parent),)
    # One message, one submission set; its uniqueId is derived from sender and MSH-10, so that a
    # repeat of the message names the same set (the record answers it idempotently).
    set_unique_id = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'mllp:{sender_key}:{message.control_id}')}"
    submission_set = SubmissionSet(submission_set_id=submission_set_id, unique_id=set_unique_id,
                                   source_id=profile.source_id, patient_pid="", submission_time=sent or created,
                                   content_type=Code(SNOMED, "71388002", "Procedure"), authors=authors)
    return DocumentMessage(identifiers, Submission(submission_set, (NewDocument(entry, content, relations),), spid=""))


def _content(message: Message, *, allow_text: bool) -> tuple[bytes, str]:
    observations = message.all("OBX")
    embedded = [(i, s) for i, s in enumerate(observations, start=1) if s.value(2) == "ED"]
    if len(embedded) > 1:
        raise SenderMustFix("one embedded document (OBX-2 ED) per message", code=DATA_TYPE_ERROR, segment="OBX",
                            field=2, sequence=embedded[1][0])
    if embedded:
        return _embedded(message, *embedded[0])
    lines = [s for s in observations if s.value(2) in TEXT_OBSERVATIONS]
    if allow_text and lines:
        text = "\n".join(message.unescape(rep, where=("OBX", 5)) for s in lines for rep in s.repetitions(5))
        return text.encode("utf-8"), "text/plain"
    raise CannotProcess("the message carries no document (no OBX with OBX-2 = ED): results without an "
                        "embedded report are not shared by this gateway", code=UNSUPPORTED_MESSAGE_TYPE,
                        segment="OBX", field=2)


def _embedded(message: Message, sequence: int, obx: Segment) -> tuple[bytes, str]:
    parts = (obx.components(5) + [""] * 5)[:5]  # the data component sliced once out of the message
    _, data_type, subtype, encoding, data = (p.strip() for p in parts)
    mime = code_tables.mime_type(data_type, subtype)
    if mime is None:
        raise SenderMustFix(f"OBX-5 type of data {data_type!r} / subtype {subtype!r} names no MIME type",
                            code=TABLE_VALUE_NOT_FOUND, segment="OBX", field=5, component=2, sequence=sequence)
    if not data:
        raise SenderMustFix(f"OBX-5.5: {EMPTY_DOCUMENT}", code=REQUIRED_FIELD_MISSING,
                            segment="OBX", field=5, component=5, sequence=sequence)
    encoding = encoding.upper()
    try:
        if encoding == "BASE64":
            content = b64decode_strict_wrapped(data)
        elif encoding == "HEX":
            content = bytes.fromhex(data)
        elif encoding == "A":
            content = message.unescape(data, where=("OBX", 5)).encode("utf-8")
        else:
            raise SenderMustFix(f"OBX-5.4 encoding {encoding!r} is not Base64, Hex or A", code=TABLE_VALUE_NOT_FOUND,
                                segment="OBX", field=5, component=4, sequence=sequence)
    except (binascii.Error, ValueError):
        raise SenderMustFix(f"OBX-5.5 does not decode as {encoding}", code=DATA_TYPE_ERROR, segment="OBX",
                            field=5, component=5, sequence=sequence) from None
    problem = content_problem(content)
    if problem:
        raise SenderMustFix(f"OBX-5.5: {problem}", code=REQUIRED_FIELD_MISSING,
                            segment="OBX", field=5, component=5, sequence=sequence)
    return content, mime


def _confidentiality(txa: Segment | None) -> str:
    value = txa.value(18).upper() if txa is not None else ""
    level = code_tables.CONFIDENTIALITY.get(value)
    if level is None:
        raise SenderMustFix(f"TXA-18 confidentiality {value!r} is not R, U or V (table 0272)",
                            code=TABLE_VALUE_NOT_FOUND, segment="TXA", field=18)
    return level


def _require_shareable(txa: Segment) -> None:
    completion, availability = txa.value(17).upper(), txa.value(19).upper()
    if completion not in code_tables.SHAREABLE_COMPLETION:
        raise SenderMustFix(f"TXA-17 completion status {completion!r}: only authenticated or documented "
                            "documents are shared (AU, LA, DO, PA)", code=TABLE_VALUE_NOT_FOUND, segment="TXA",
                            field=17)
    if availability not in code_tables.SHAREABLE_AVAILABILITY:
        raise SenderMustFix(f"TXA-19 availability {availability!r}: only available (AV) documents are shared",
                            code=TABLE_VALUE_NOT_FOUND, segment="TXA", field=19)


def _authors(txa: Segment | None) -> list[Author]:
    """TXA-9 originator (XCN) by the rule XDS authorPerson follows too (`adapters/infomed/authors.py`):
    a GLN in XCN.1 (13 digits, or XCN.9 naming 2.51.1.3) becomes the contained Practitioner's identifier."""
    if txa is None or not txa.raw(9):
        return []
    authority = txa.component(9, 9, subcomponent=2) or txa.component(9, 9)
    try:
        return [author_from_xcn(txa.component(9, 1), txa.component(9, 2), txa.component(9, 3), authority,
                                reference="author")]
    except InvalidIdentifier as refused:
        raise SenderMustFix(f"TXA-9: {refused.reason}", code=DATA_TYPE_ERROR, segment="TXA", field=9,
                            component=1) from None


def _identifier(kind: IdentifierKind, value: str, segment: str, field: int) -> str:
    """`value` (unescaped) as the record keeps it, or AE naming the field (ERR: SEG^1^field)."""
    try:
        return kind.read(value)
    except InvalidIdentifier as refused:
        raise SenderMustFix(f"{segment}-{field}: {refused.reason}", code=DATA_TYPE_ERROR, segment=segment,
                            field=field) from None


def _title(txa: Segment | None, type_code: Code) -> str:
    if txa is not None:
        for number in (25, 16):
            if txa.value(number):
                return txa.value(number)
    return type_code.display or type_code.code


def _source_patient(pid: Segment, identifier: Identifier) -> dict:
    patient: dict = {"resourceType": "Patient", "id": "src",
                     "identifier": [{"use": "usual", "system": identifier.system, "value": identifier.value}]}
    family, given = pid.component(5, 1, subcomponent=1), pid.component(5, 2)
    name = {k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}
    if name:
        patient["name"] = [name]
    return patient
