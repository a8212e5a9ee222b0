"""A document message read for the use-cases: which message it is (its digest), who it says its patient
is (the claim the one readiness rule checks), dates the record can hold, and — when its content could
not be stored — which field to name in the answer.

Pure: no store, no decision; the listener's thread and the mapping worker processes both use it.
"""

from __future__ import annotations

import hashlib

from adapters.cara.dates import value_range
from adapters.cara.model import Identifier
from adapters.infomed.hl7v2.adt import GENDERS
from adapters.infomed.hl7v2.dates import fhir_date, fhir_datetime
from adapters.infomed.hl7v2.documents import DocumentMessage
from adapters.infomed.hl7v2.errors import DATA_TYPE_ERROR, MessageError, SenderMustFix
from adapters.infomed.hl7v2.message import Message
from gateway.exchanges.patient_readiness import PatientClaim

# The dates each message kind's mapping reads (documents: MSH-7, TXA-4, TXA-6; PID-7 for the claim).
DOCUMENT_DATES = (("MSH", 7), ("TXA", 4), ("TXA", 6), ("PID", 7))
FEED_DATES = (("PID", 7),)
MAX_CONTROL_ID = 199  # HL7 v2.5 MSH-10 (ST); the kept answers' column holds 200
MAX_STORED_ID = 256  # the record's uniqueId columns
STORED_IDS = (("TXA", 12), ("TXA", 13))  # the message's values that become columns of the record


def digest(message: Message) -> str:
    """SHA-256 of the message's normalised text without MSH-7: the same message sent again — also by an
    engine that stamps MSH-7 anew on each try — has the same digest; any other difference is another
    message. Normalised: decoded (any charset), segments separated by CR, blank segments dropped."""
    text = message.text
    end = text.find("\r")
    end = len(text) if end < 0 else end
    fields = text[:end].split(message.delimiters.field)
    if len(fields) > 6:
        fields[6] = ""  # MSH-7 (fields[0] is "MSH", fields[1] MSH-2: MSH-1 is the separator itself)
    hashed = hashlib.sha256(message.delimiters.field.join(fields).encode("utf-8", "surrogatepass"))
    utf8 = message.utf8
    if utf8 is None:
        hashed.update(text[end:].encode("utf-8", "surrogatepass"))
    else:  # the same bytes, without encoding the whole text again (CR is one byte in both)
        cut = utf8.find(b"\r")
        hashed.update(memoryview(utf8)[len(utf8) if cut < 0 else cut:])
    return hashed.hexdigest()


def require_control_id(message: Message) -> None:
    """MSH-10 names the message for its sender: required, and a value the answers can be kept under."""
    control_id = message.control_id
    if not control_id:
        raise SenderMustFix("MSH-10 (message control id) is required", code="101", segment="MSH", field=10)
    if len(control_id) > MAX_CONTROL_ID or any(ord(c) < 0x20 or c == "\x7f" for c in control_id):
        raise SenderMustFix(f"MSH-10 (message control id) must be at most {MAX_CONTROL_ID} characters without "
                            "control characters", code=DATA_TYPE_ERROR, segment="MSH", field=10)


def require_possible_dates(message: Message, fields: tuple[tuple[str, int], ...]) -> None:
    """Each of these dates, when given, is one the record can hold (month 13, 30 February, hour 24, a
    leap second or year 0000 are not): AE naming the field, before anything is stored — never a
    ValueError deep in the group commit. The answer names the field, not the value (a birth date is
    the patient's)."""
    for segment_name, number in fields:
        segment = message.first(segment_name)
        value = segment.value(number) if segment is not None else ""
        if not value:
            continue
        try:
            value_range(fhir_datetime(value, where=(segment_name, number)))
        except (MessageError, ValueError):  # its words would quote the value (a birth date is the patient's)
            raise SenderMustFix(f"{segment_name}-{number} is not a possible HL7 date/time", code=DATA_TYPE_ERROR,
                                segment=segment_name, field=number) from None


def require_storable_dates(message: Message, mapped: DocumentMessage) -> None:
    """`require_possible_dates` for a mapped document, cheaply: the dates the mapping made are checked,
    and only when one is impossible are the fields read again to name it."""
    submission = mapped.submission
    try:
        for document in submission.documents:
            value_range(document.entry.creation_time)
        if submission.submission_set.submission_time:
            value_range(submission.submission_set.submission_time)
    except ValueError:
        require_possible_dates(message, DOCUMENT_DATES)  # AE naming the field
        raise  # a date the mapping took from elsewhere: the message's content refusal, unnamed


def claim(message: Message, identifiers: tuple[Identifier, ...]) -> PatientClaim:
    """Who the message says its patient is: PID-3 (mapped) and PID-5, PID-7 (a possible date, or AE), PID-8."""
    pid = message.require("PID")
    given = pid.component(5, 2)
    birth_date = None
    if pid.value(7):
        require_possible_dates(message, FEED_DATES)
        birth_date = fhir_date(pid.value(7), where=("PID", 7))
    return PatientClaim(identifiers, pid.component(5, 1, subcomponent=1) or None, (given,) if given else (),
                        birth_date, GENDERS.get(pid.value(8).upper()))


def set_key(sender_key: str, message_digest: str) -> str:
    """What the mapping derives the submission set's uniqueId from (with MSH-10): the sender and the
    message's digest, so the same message again names the same set (the record answers it
    idempotently) and another message with a reused MSH-10 another set."""
    return f"{sender_key}#{message_digest}"


def content_refusal(message: Message | None, error: Exception) -> MessageError:
    """The AE for a message whose content the record could not take (`failures.is_content_failure`):
    the field when one of the values that become the record's columns is the cause, else the message.
    The error's own words stay in the log: they may quote content."""
    for segment_name, number in STORED_IDS if message is not None else ():
        segment = message.first(segment_name)
        value = segment.value(number) if segment is not None else ""
        if len(value) > MAX_STORED_ID or any(ord(c) < 0x20 or c == "\x7f" for c in value):
            return SenderMustFix(f"{segment_name}-{number} cannot be stored: longer than {MAX_STORED_ID} characters "
                                 "or with control characters", code=DATA_TYPE_ERROR, segment=segment_name, field=number)
    return SenderMustFix(f"the message's content cannot be stored ({type(error).__name__}): correct it and send "
                         "it again", code=DATA_TYPE_ERROR)
