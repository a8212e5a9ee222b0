"""The one table from what happened to a message to its acknowledgement (original mode):

| outcome                                        | MSA-1 | ERR                          | kept |
|------------------------------------------------|-------|------------------------------|------|
| stored, registered, merged                     | AA    | —                            | yes  |
| held until its patient is ready                | AA    | — (MSA-3: why, what releases)| yes  |
| A08 kept on the identity review list           | AA    | W 205 PID-3                  | yes  |
| what the sender must fix (its content: AE)     | AE    | E, the field and 0357 code   | yes  |
| unknown patient                                | AE    | E 204 PID-3                  | yes  |
| what cannot be processed (type, sender, consent)| AR   | E                            | yes* |
| the gateway's own failure (store, ledger, bug) | AR    | E 207 "send it again later"  | no   |
| a frame refused unread at the door (`door.py`) | AE/AR | E 207 (AR: too busy, later)  | no   |

*A message that cannot be keyed (unreadable, unknown sender, no usable MSH-10) is answered, never kept.
A failure of the gateway is not kept, so the sender's retry is processed afresh; AR is never the answer
for content (a message that can never succeed must not be sent again and again). ACKs name identifier
systems and fields, never a patient's value. `acks.py` in adapters/infomed/hl7v2 writes the bytes.
"""

from __future__ import annotations

from adapters.cara.errors import Conflict, InvalidInput, NotFound, ProfileViolation, UnknownPatient
from adapters.infomed.hl7v2.acks import build_ack
from adapters.infomed.hl7v2.errors import (
    APPLICATION_ERROR,
    DUPLICATE_KEY,
    UNKNOWN_KEY,
    CannotProcess,
    MessageError,
    SenderMustFix,
)
from adapters.infomed.hl7v2.message import Message
from gateway.auth.errors import AccessRefused
from gateway.exchanges.failures import is_content_failure
from gateway.exchanges.held_messages import THEN
from gateway.exchanges.message_answers import Answer
from gateway.exchanges.message_outcomes import (
    Held,
    Merged,
    Outcome,
    Refused,
    Registered,
    ReviewOpened,
    Stored,
    TryAgain,
    Unready,
)
from gateway.mllp.reading import content_refusal

TRY_AGAIN = "the gateway could not process the message now; send it again later"


def answer(message: Message | None, outcome: Outcome, *, names_a_document: bool = False) -> Answer:
    """The acknowledgement of `message` (None: it could not be read) for `outcome`. `names_a_document`:
    the message names another document (T06/T10): a record refusal of its target is TXA-13's."""
    match outcome:
        case Stored():
            return Answer("AA", build_ack(message, "AA", text="document stored"))
        case Registered():
            return Answer("AA", build_ack(message, "AA", text="patient registered"))
        case Merged():
            return Answer("AA", build_ack(message, "AA", text="patients merged"))
        case Held(readiness):
            return Answer("AA", build_ack(message, "AA", text=f"held: {readiness.explained(THEN)}"))
        case ReviewOpened(reason, review_id):
            text = f"held for identity review ({reason}), case {review_id}"
            warning = MessageError(text, code=DUPLICATE_KEY, segment="PID", field=3)
            return Answer("AA", build_ack(message, "AA", text=text, error=warning, warning=True))
        case Unready(readiness):  # the readiness names the ids' systems, never a patient's id
            return _refusal(message, SenderMustFix(f"unknown patient: {readiness.detail} (send the ADT feed first)",
                                                   code=UNKNOWN_KEY, segment="PID", field=3))
        case Refused(error):
            refusal = _refusal_for(message, error, names_a_document)
            return _try_again(message) if refusal is None else _refusal(message, refusal)
        case TryAgain():
            return _try_again(message)
    raise TypeError(f"no answer for {outcome!r}")


def _refusal(message: Message | None, error: MessageError) -> Answer:
    return Answer(error.ack_code, build_ack(message, error.ack_code, text=error.text, error=error), refusal=error)


def _try_again(message: Message | None) -> Answer:
    error = CannotProcess(TRY_AGAIN, code=APPLICATION_ERROR)
    return Answer("AR", build_ack(message, "AR", text=error.text, error=error), kept=False, refusal=error)


def _refusal_for(message: Message | None, error: Exception, names_a_document: bool) -> MessageError | None:
    """The refusal to answer with, in HL7 terms; None when it is the gateway's own failure."""
    patient_message = message is not None and message.message_type[0] == "ADT"
    if isinstance(error, MessageError):
        return error
    if isinstance(error, AccessRefused):
        return CannotProcess(f"refused: {getattr(error, 'reason', None) or error}", code=APPLICATION_ERROR)
    if isinstance(error, UnknownPatient):  # its message names the SPID: not for the ACK
        return SenderMustFix("the patient is not registered in this community", code=UNKNOWN_KEY,
                             segment="PID", field=3)
    if isinstance(error, ProfileViolation) and names_a_document:
        return SenderMustFix(f"TXA-13: {error.message}", code=UNKNOWN_KEY, segment="TXA", field=13)
    if isinstance(error, Conflict):
        return SenderMustFix(error.message, code=DUPLICATE_KEY, segment="PID" if patient_message else "TXA",
                             field=3 if patient_message else 12)
    if isinstance(error, (InvalidInput, ProfileViolation, NotFound)):
        return SenderMustFix(error.message, code=APPLICATION_ERROR)
    if is_content_failure(error):
        return content_refusal(message, error)
    return None  # the store or the ledger (StoreUnavailable, IntegrityFailure…), or a fault of the gateway
