"""What the HL7 v2 use-cases' unit tests share (held_messages, message_documents): document messages as
the face hands them over (`IncomingDocument`: mapped to the record's model, the sender's technical
user, the patient's claim), the use-cases wired as `wiring.hl7_exchange` wires them on the test's real
store, and an answer table in the face's terms (AA/AE/AR, kept or not) that names the outcome, so a test
sees which outcome each message had."""

from __future__ import annotations

import hashlib

import pytest

from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.cara.model import Identifier
from adapters.cara.store.message_inbox import DatabaseMessageInbox
from conftest import HCP_GLN, LOCAL_SYSTEM, SPID
from consent.principal import Principal
from gateway.exchanges.held_messages import HeldMessages
from gateway.exchanges.message_answers import Answer, MessageAnswers, MessageKey
from gateway.exchanges.message_documents import DocumentMessages
from gateway.exchanges.message_outcomes import Held, IncomingDocument, Refused, Stored, TryAgain, Unready
from gateway.exchanges.patient_readiness import PatientClaim, PatientReadiness
from gateway.samples import pdf_document, provide_bundle

SENDER = Principal(role="TCU", user_id="kis-hl7", name="HL7 v2 feed kis-hl7", purpose_of_use="AUTO",
                   acting_for=HCP_GLN)


def incoming(title: str, *, control_id: str, local_id: str = "L-1", birth_date: str = "1980-05-17",
             unique_id: str | None = None, content: bytes | None = None, sender: Principal = SENDER,
             sender_key: str = "kis") -> IncomingDocument:
    """An MDM^T02 as the face maps it (the SPID still to resolve from the claim)."""
    document = {"title": title, "content": content or pdf_document(title, [title])}
    if unique_id:
        document["unique_id"] = unique_id
    submission = submission_from_bundle(provide_bundle(spid=SPID, author_role="TCU", documents=[document]))
    raw = f"MSH|^~\\&|KIS|H|EPR|EPR|20261120||MDM^T02|{control_id}|P|2.5\rTXA|{title}".encode()
    claim = PatientClaim((Identifier(LOCAL_SYSTEM, local_id),), "Muster", ("Anna",), birth_date, "female")
    return IncomingDocument(key=MessageKey(sender_key, control_id, hashlib.sha256(raw).hexdigest()),
                            principal=sender, submission=submission, claim=claim, raw=raw,
                            transaction="HL7v2 MDM^T02")


def answer_for(item: IncomingDocument, outcome) -> Answer:
    """The face's table in short: what each outcome is answered, for these tests to read back."""
    name = type(outcome).__name__
    control_id = item.key.control_id
    match outcome:
        case Stored() | Held():
            return Answer("AA", f"AA|{control_id}|{name}".encode())
        case Unready():
            return Answer("AE", f"AE|{control_id}|{name}|{outcome.readiness.hold}".encode())
        case Refused(error=error):
            return Answer("AE", f"AE|{control_id}|{name}|{type(error).__name__}".encode(), refusal=error)
        case TryAgain():
            return Answer("AR", f"AR|{control_id}|{name}".encode(), kept=False)
    raise AssertionError(f"no answer for {outcome!r}")


class Bridge:
    """The HL7 v2 document use-cases on one runtime, as `wiring.hl7_exchange` builds them."""

    def __init__(self, runtime):
        services = runtime.services
        exchange = services.exchange
        self.answers = MessageAnswers(inbox=DatabaseMessageInbox(engine=runtime.engine, keyring=runtime.keyring))
        self.readiness = PatientReadiness(patients=exchange.patients, access=exchange.access)
        self.held = HeldMessages(inbox=self.answers.inbox, answers=self.answers, readiness=self.readiness,
                                 exchange=exchange, patients=exchange.patients, auditor=services.auditor)
        self.documents = DocumentMessages(exchange=exchange, readiness=self.readiness, held=self.held,
                                          answers=self.answers, auditor=services.auditor)


@pytest.fixture
def bridge(runtime):
    # The composition root releases held messages after a feed, an onboarding or a resolved review
    # (`wiring.release_held_messages`, with the MLLP face's own reading of the message): here the tests
    # release them themselves, through the use-case under test.
    services = runtime.services
    services.identities.patient_fed.clear()
    services.identities.review_resolved.clear()
    services.policies.onboarded.clear()
    return Bridge(runtime)
