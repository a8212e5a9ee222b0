"""`DocumentMessages` (gateway/exchanges/message_documents.py), the HL7 v2 bridge's group commit, on a real
store: each message of a batch answered by its own patient and content (stored, held, refused as unknown,
refused by the record), a message sent again answered as the first time and changing nothing, one
member's content never failing its neighbours, and a dependency failure answered "try again", not kept."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text

from functional.helpers import row_counts
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    OTHER_SPID,
    feed,
    open_record,
    provide,
    runtime,
    services,
)
from unit.gateway.exchanges.message_world import answer_for, bridge, incoming  # noqa: F401 (fixtures)


def stored(services, item) -> bool:
    return services.exchange.documents.entry_for_unique_id(item.submission.documents[0].entry.unique_id) is not None


def outcomes(runtime, since: int) -> list[tuple[str, str]]:
    """(transaction, outcome) of the records written since the `since`-th (ATC code for a document created)."""
    found = []
    for event in runtime.ledger.all_records()[since:]:
        codes = [c["code"] for c in event.get("subtype", [])]
        found.append((next((c for c in codes if c.startswith("ATC_")), codes[0] if codes else event["type"]["code"]),
                      event["outcome"]))
    return found


def test_each_message_of_a_batch_is_answered_by_its_own_patient_and_content(services, runtime, bridge):
    open_record(services)  # L-1: ready
    feed(services, spid=OTHER_SPID, local_id="L-2")  # a SPID, the EPR not opened: held
    taken = services.exchange.documents.get_entry(provide(services, title="Already there"))
    ready = incoming("Lab report", control_id="C-1")
    held = incoming("Discharge", control_id="C-2", local_id="L-2")
    unknown = incoming("Nobody's", control_id="C-3", local_id="L-404")
    conflict = incoming("Same uniqueId", control_id="C-4", unique_id=taken.unique_id)
    before = len(runtime.ledger.all_records())

    acks = bridge.documents.commit([ready, held, unknown, conflict, ready], answer_for=answer_for)

    assert acks == [b"AA|C-1|Stored", b"AA|C-2|Held", b"AE|C-3|Unready|unknown-patient", b"AE|C-4|Refused|Conflict",
                    b"AA|C-1|Stored"]  # the copy in the same batch gets the first's answer
    assert stored(services, ready) and not stored(services, held) and not stored(services, unknown)
    assert [(h.control_id, h.reason) for h in bridge.held.listing()] == [("C-2", "epr-not-opened")]
    keys = [i.key for i in (ready, held, unknown, conflict)]
    assert bridge.answers.earlier_many(keys) == dict(zip(keys, acks[:4], strict=True))  # every answer kept
    assert sorted(outcomes(runtime, before)) == sorted([
        ("ATC_DOC_CREATE", "0"),  # C-1 stored
        ("ITI-65", "4"),  # C-4 refused by the record, in the same transaction as C-1
        ("HL7v2 MDM^T02", "0"),  # C-2 held
        ("HL7v2 MDM^T02", "4")])  # C-3 refused: its patient is unknown


def test_the_same_message_again_gets_its_first_answer_and_a_reused_control_id_is_another_message(
        services, runtime, bridge):
    open_record(services)
    first = incoming("Lab report", control_id="C-1")
    [ack] = bridge.documents.commit([first], answer_for=answer_for)
    rows, records = row_counts(runtime), len(runtime.ledger.all_records())

    again = bridge.documents.commit([first], answer_for=answer_for)

    assert again == [ack] and (row_counts(runtime), len(runtime.ledger.all_records())) == (rows, records)
    other = incoming("Another report", control_id="C-1")  # MSH-10 reused after the sender restarted
    assert other.key.digest != first.key.digest
    assert bridge.documents.commit([other], answer_for=answer_for) == [b"AA|C-1|Stored"]
    assert stored(services, other)


def test_one_members_content_failure_is_its_refusal_alone(services, runtime, bridge, monkeypatch):
    open_record(services)
    documents = services.exchange.documents
    seal_body = documents.seal_body

    def sealing(document):  # a value deep in the sealing that the code cannot take (a content failure)
        if document.entry.title == "Poisoned":
            raise ValueError("a value the sealing cannot take")
        return seal_body(document)

    monkeypatch.setattr(documents, "seal_body", sealing)
    good, bad, after = (incoming("Before", control_id="C-1"), incoming("Poisoned", control_id="C-2"),
                        incoming("After", control_id="C-3"))

    acks = bridge.documents.commit([good, bad, after], answer_for=answer_for)

    assert acks == [b"AA|C-1|Stored", b"AE|C-2|Refused|ValueError", b"AA|C-3|Stored"]
    assert (stored(services, good), stored(services, bad), stored(services, after)) == (True, False, True)
    assert bridge.answers.earlier(bad.key) == b"AE|C-2|Refused|ValueError"  # kept: the same content, the same AE


def test_a_dependency_failure_answers_every_member_try_again_and_keeps_nothing(services, runtime, bridge):
    open_record(services)
    items = [incoming("A", control_id="C-1"), incoming("B", control_id="C-2")]
    with runtime.engine.begin() as connection:  # the bridge's memory is gone: the store cannot answer
        connection.execute(text("ALTER TABLE mllp_answer RENAME TO mllp_answer_away"))

    acks = bridge.documents.commit(items, answer_for=answer_for)

    assert acks == [b"AR|C-1|TryAgain", b"AR|C-2|TryAgain"]
    assert not any(stored(services, item) for item in items)
    with runtime.engine.begin() as connection:
        connection.execute(text("ALTER TABLE mllp_answer_away RENAME TO mllp_answer"))
    assert bridge.answers.earlier_many([item.key for item in items]) == {}  # nothing kept: sent again, taken afresh
    assert bridge.documents.commit(items, answer_for=answer_for) == [b"AA|C-1|Stored", b"AA|C-2|Stored"]


def test_an_impossible_date_the_store_cannot_take_is_that_members_refusal(services, runtime, bridge):
    """A face maps dates before the use-cases; one that still reaches the store impossible (month 13) is
    the member's content, like any value the code below cannot take: AE, kept, never "try again"."""
    open_record(services)
    good, after = incoming("Before", control_id="C-1"), incoming("After", control_id="C-3")
    bad = incoming("Month 13", control_id="C-2")
    document = bad.submission.documents[0]
    bad = replace(bad, submission=replace(bad.submission, documents=(
        replace(document, entry=replace(document.entry, date="2026-13-01T09:30:00+01:00")),)))

    acks = bridge.documents.commit([good, bad, after], answer_for=answer_for)

    assert acks == [b"AA|C-1|Stored", b"AE|C-2|Refused|InvalidDate", b"AA|C-3|Stored"]
    assert bridge.answers.earlier(bad.key) == b"AE|C-2|Refused|InvalidDate"
