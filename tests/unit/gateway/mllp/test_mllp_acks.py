"""The one table from outcome to acknowledgement: every outcome and every kind of refusal, with its
MSA-1, its ERR, and whether the answer is kept for the message."""

import pytest
from sqlalchemy.exc import OperationalError

from adapters.cara.errors import (
    Conflict,
    IntegrityFailure,
    InvalidInput,
    ProfileViolation,
    StoreUnavailable,
    UnknownPatient,
)
from adapters.infomed.hl7v2.errors import CannotProcess, SenderMustFix
from adapters.infomed.hl7v2.message import Message
from functional.mllp_helpers import ack_fields, mdm
from gateway.auth.errors import AccessRefused
from gateway.exchanges.message_outcomes import (
    MERGED,
    REGISTERED,
    STORED,
    Held,
    Refused,
    ReviewOpened,
    TryAgain,
    Unready,
)
from gateway.exchanges.patient_readiness import Readiness
from gateway.mllp.acks import answer

MESSAGE = Message.parse(mdm(control_id="C-1", unique_id="urn:oid:2.25.1").encode())
A40 = Message.parse(b"MSH|^~\\&|KIS|H|EPR|EPR|20261120||ADT^A40^ADT_A40|C-1|P|2.5\rPID|1||L-1\rMRG|L-2\r")


def shown(outcome, message=MESSAGE, **options) -> tuple:
    given = answer(message, outcome, **options)
    fields = ack_fields(given.ack)
    err = fields.get("ERR")
    return given.code, given.kept, fields["MSA"][1:3], (err[2], err[3].split("^")[0], err[4]) if err else None


NOT_OPENED = Readiness("pid", None, "epr-not-opened", "the patient's EPR is not opened yet (no onboarding policies)")
UNKNOWN = Readiness(None, None, "unknown-patient", "no patient id it names (urn:oid:1.2.3) is in the MPI")


@pytest.mark.parametrize(("outcome", "options", "expected"), [
    (STORED, {}, ("AA", True, ["AA", "C-1"], None)),
    (REGISTERED, {}, ("AA", True, ["AA", "C-1"], None)),
    (MERGED, {}, ("AA", True, ["AA", "C-1"], None)),
    (Held(NOT_OPENED), {}, ("AA", True, ["AA", "C-1"], None)),
    (ReviewOpened("demographics-differ", "r1"), {}, ("AA", True, ["AA", "C-1"], ("PID^1^3", "205", "W"))),
    (Unready(UNKNOWN), {}, ("AE", True, ["AE", "C-1"], ("PID^1^3", "204", "E"))),
    (Refused(SenderMustFix("TXA-2 missing", code="101", segment="TXA", field=2)), {},
     ("AE", True, ["AE", "C-1"], ("TXA^1^2", "101", "E"))),
    (Refused(CannotProcess("not taken", code="200")), {}, ("AR", True, ["AR", "C-1"], ("", "200", "E"))),
    (Refused(UnknownPatient("EPR-SPID 7613… is not registered")), {},
     ("AE", True, ["AE", "C-1"], ("PID^1^3", "204", "E"))),
    (Refused(ProfileViolation("relatesTo target x is not a document of this patient")), {"names_a_document": True},
     ("AE", True, ["AE", "C-1"], ("TXA^1^13", "204", "E"))),
    (Refused(Conflict("uniqueId already stored with other content")), {},
     ("AE", True, ["AE", "C-1"], ("TXA^1^12", "205", "E"))),
    (Refused(InvalidInput("bad")), {}, ("AE", True, ["AE", "C-1"], ("", "207", "E"))),
    (Refused(AccessRefused("no write")), {}, ("AR", True, ["AR", "C-1"], ("", "207", "E"))),
    (Refused(ValueError("month must be in 1..12")), {}, ("AE", True, ["AE", "C-1"], ("", "102", "E"))),
    (Refused(TypeError("deep")), {}, ("AE", True, ["AE", "C-1"], ("", "102", "E"))),
    # the gateway's own failures: AR "send it again later", not kept
    (Refused(StoreUnavailable("down")), {}, ("AR", False, ["AR", "C-1"], ("", "207", "E"))),
    (Refused(IntegrityFailure("does not decrypt")), {}, ("AR", False, ["AR", "C-1"], ("", "207", "E"))),
    (Refused(AttributeError("a bug")), {}, ("AR", False, ["AR", "C-1"], ("", "207", "E"))),
    (Refused(OperationalError("insert", {}, Exception("locked"))), {}, ("AR", False, ["AR", "C-1"], ("", "207", "E"))),
    (TryAgain(OSError("disk full")), {}, ("AR", False, ["AR", "C-1"], ("", "207", "E"))),
])
def test_each_outcome_has_its_one_answer(outcome, options, expected):
    assert shown(outcome, **options) == expected


def test_a_conflict_of_a_patient_message_names_pid_3():
    assert shown(Refused(Conflict("already merged")), message=A40)[3] == ("PID^1^3", "205", "E")


def test_content_is_never_answered_send_it_again_and_a_hold_says_what_releases_it():
    held = answer(MESSAGE, Held(NOT_OPENED))
    assert b"not opened" in held.ack and b"epr-gateway held --release" in held.ack
    content = answer(MESSAGE, Refused(ValueError("x")))
    assert b"again later" not in content.ack and content.refusal is not None
    assert b"again later" in answer(MESSAGE, TryAgain()).ack
