"""`HeldMessages` (gateway/exchanges/held_messages.py) on a real store: a message held sealed with its
answer and its audit record; processed again by the one readiness rule — released into the record when
its cause is fixed, kept (its reason current) when not, refused and settled when the record refuses it
or it no longer reads; the sender's kept answer never changes."""

from __future__ import annotations

from dataclasses import replace

import orjson
from adapters.cara.store.document_batches import uniqueid_in_use
from adapters.infomed.hl7v2.errors import CannotProcess
from conftest import HCP_GLN, POLICY_ADMIN, SPID, grant_consent
from gateway.exchanges.held_messages import THEN, Unreadable, waiting
from gateway.exchanges.message_outcomes import Held
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    feed,
    patient,
    provide,
    runtime,
    services,
)
from unit.gateway.exchanges.message_world import SENDER, answer_for, bridge, incoming  # noqa: F401 (fixtures)


def hold(bridge, item):
    readiness = bridge.readiness.check_many([item.claim])[item.claim]
    assert not readiness.ready
    return bridge.held.hold(item, readiness, answer_for(item, Held(readiness)))


def open_epr(services, spid: str = SPID) -> None:
    services.policies.onboard(principal=POLICY_ADMIN, spid=spid)
    services.policies.add(principal=patient(spid), body=orjson.dumps(grant_consent(spid=spid, gln=HCP_GLN,
                                                                                   level="normal")))


def rereading(*items):
    """The face's reading of a held message again: here, the message it was."""
    by_raw = {item.raw: item for item in items}
    return lambda held: by_raw[held.raw]


def last_record(runtime) -> tuple[str, str, str]:
    event = runtime.ledger.all_records()[-1]
    return event["action"], event["outcome"], event.get("outcomeDesc", "")


def records(runtime) -> int:
    return len(runtime.ledger.all_records())


def test_a_message_is_held_sealed_with_its_answer_and_its_record(services, runtime, bridge):
    pid = feed(services)  # a SPID, the EPR not opened
    item = incoming("Lab report", control_id="C-1")
    before = records(runtime)

    ack = hold(bridge, item)

    assert ack == b"AA|C-1|Held" and bridge.answers.earlier(item.key) == ack
    [listed] = bridge.held.listing()
    assert (listed.sender, listed.control_id, listed.reason, listed.pid, listed.raw) == (
        "kis", "C-1", "epr-not-opened", pid, None)  # a listing does not open the message
    assert bridge.held.any_held()
    assert waiting(listed) == ("the patient's EPR is not opened yet (no onboarding policies); it waits until the "
                               f"patient's EPR is opened (onboarding){THEN}")
    # one record of the message taken in (a success: the ledger's events carry no outcomeDesc for those)
    assert (records(runtime) - before, last_record(runtime)) == (1, ("C", "0", ""))


def test_a_concurrent_copy_gets_the_first_answer_and_is_not_held_twice(services, bridge):
    feed(services)
    item = incoming("Lab report", control_id="C-1")
    first = hold(bridge, item)

    again = hold(bridge, item)

    assert again == first and len(bridge.held.listing()) == 1


def test_a_message_whose_cause_is_not_fixed_stays_held_with_its_reason_current(services, bridge):
    item = incoming("Lab report", control_id="C-1")
    hold(bridge, item)  # nobody in the MPI yet
    assert [h.reason for h in bridge.held.listing()] == ["unknown-patient"]
    pid = feed(services)

    [released] = bridge.held.release(reread=rereading(item))

    assert (released.outcome, released.control_id) == ("held", "C-1")
    assert released.detail.endswith(f"it waits until the patient's EPR is opened (onboarding){THEN}")
    assert [(h.reason, h.pid) for h in bridge.held.listing()] == [("epr-not-opened", pid)]


def test_released_once_the_epr_is_opened_the_document_is_stored_and_the_answer_unchanged(services, runtime,
                                                                                          bridge):
    pid = feed(services)
    item = incoming("Lab report", control_id="C-1")
    ack = hold(bridge, item)
    open_epr(services)

    [released] = bridge.held.release(reread=rereading(item))

    assert (released.outcome, released.detail) == ("released", "document stored")
    assert bridge.held.listing() == [] and not bridge.held.any_held()
    entry = services.exchange.documents.entry_for_unique_id(item.submission.documents[0].entry.unique_id)
    assert (entry.patient_pid, entry.submitter.user_id) == (pid, SENDER.user_id)
    assert bridge.answers.earlier(item.key) == ack  # what the sender was told stands
    assert bridge.held.release(reread=rereading(item)) == []  # settled: not processed twice


def test_a_message_the_record_refuses_is_settled_refused_and_audited(services, runtime, bridge):
    feed(services)
    open_epr(services)
    taken = services.exchange.documents.get_entry(provide(services, title="Another document"))
    item = incoming("Lab report", control_id="C-1", birth_date="1980-05-18", unique_id=taken.unique_id)
    hold(bridge, item)  # held for review: its birth date differs from the MPI
    [case] = services.exchange.patients.reviews.open_reviews()
    services.identities.resolve_review(principal=POLICY_ADMIN, review_id=case.id)

    [released] = bridge.held.release(reread=rereading(item))

    assert (released.outcome, released.detail) == ("refused", uniqueid_in_use(taken.unique_id).message)
    assert bridge.held.listing() == []
    assert last_record(runtime)[1] == "4"


def test_a_write_the_policies_refuse_keeps_it_held_as_access_refused(services, bridge):
    pid = feed(services)
    # a technical user writes for technical purposes only
    item = incoming("Lab report", control_id="C-1", sender=replace(SENDER, purpose_of_use="NORM"))
    hold(bridge, item)
    open_epr(services)

    [released] = bridge.held.release(reread=rereading(item))

    assert released.outcome == "held"
    assert released.detail == "the patient's policies refuse the write: TCU cannot write with purpose NORM"
    assert [(h.reason, h.pid) for h in bridge.held.listing()] == [("access-refused", pid)]


def test_a_sender_gone_keeps_it_held_and_one_that_no_longer_reads_is_refused(services, runtime, bridge):
    feed(services)
    gone, unreadable = incoming("A", control_id="C-1"), incoming("B", control_id="C-2")
    hold(bridge, gone)
    hold(bridge, unreadable)
    open_epr(services)
    refusal = CannotProcess("TXA-2 document type no longer mapped", code="103")

    released = bridge.held.release(reread=lambda held: None if held.raw == gone.raw else Unreadable(
        SENDER, "HL7v2 MDM^T02", refusal))

    assert [(r.control_id, r.outcome, r.detail) for r in released] == [
        ("C-1", "held", "its sender is no longer in the senders file"),
        ("C-2", "refused", "TXA-2 document type no longer mapped")]
    assert [(h.control_id, h.reason) for h in bridge.held.listing()] == [("C-1", "unknown-sender")]
    assert last_record(runtime)[1:] == ("4", "TXA-2 document type no longer mapped")


def test_a_release_for_one_patient_processes_that_patients_messages_only(services, bridge):
    feed(services)
    other = feed(services, spid=None, local_id="L-2", family="Autre")
    mine, theirs = incoming("Mine", control_id="C-1"), incoming("Theirs", control_id="C-2", local_id="L-2")
    hold(bridge, mine)
    hold(bridge, theirs)
    open_epr(services)

    released = bridge.held.release(reread=rereading(mine, theirs), pid=services.exchange.patients.pid_for_spid(SPID))

    assert [(r.control_id, r.outcome) for r in released] == [("C-1", "released")]
    assert [(h.control_id, h.reason, h.pid) for h in bridge.held.listing()] == [("C-2", "no-epr", other)]
