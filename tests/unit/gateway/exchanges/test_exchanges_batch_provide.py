"""`DocumentProvider` (gateway/exchanges/batch_provide.py), the one seam where documents enter the record,
on a real store: its two phases (decisions and sealing, then one transaction), what it tells the record's
participants in that transaction, and that a failure inside the transaction leaves nothing half-done —
neither rows nor audit records. (The batch's per-submission refusals are walked by
tests/functional/test_batch_provide.py through `DocumentExchange.provide_many`.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.cara.errors import UnknownPatient, UnknownRelationTarget
from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.cara.model import PendingRelation
from functional.helpers import row_counts
from gateway.samples import pdf_document, provide_bundle
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    OTHER_SPID,
    SPID,
    TCU,
    open_record,
    runtime,
    services,
)


def submission(title: str, *, spid: str = SPID, unique_id: str | None = None, content: bytes | None = None):
    document = {"title": title, "content": content or pdf_document(title, [title])}
    if unique_id:
        document["unique_id"] = unique_id
    return submission_from_bundle(provide_bundle(spid=spid, author_role="TCU", documents=[document]))


def replacing(new, target_unique_id: str):
    relation = PendingRelation("replaces", target_unique_id=target_unique_id)
    return replace(new, documents=(replace(new.documents[0], relations=(relation,)),))


def iti65(runtime) -> list[tuple[str, str, str, str]]:
    """(transaction, action, outcome, the patient's-trail ATC code or "-") of every ITI-65 record."""
    found = []
    for event in runtime.ledger.all_records():
        codes = {c["system"]: c["code"] for c in event.get("subtype", [])}
        if codes.get("urn:ihe:event-type-code") == "ITI-65":
            atc = next((code for code in codes.values() if code.startswith("ATC_")), "-")
            found.append(("ITI-65", event["action"], event["outcome"], atc))
    return found


def test_participants_are_told_in_the_transaction_what_was_created_and_only_that(services, runtime):
    pid = open_record(services)
    provider = services.exchange.provider
    first = submission("first", unique_id="urn:oid:2.25.9001")
    provider.provide_many(principal=TCU, submissions=[first])
    told = []
    provider.changes.on_documents_stored(lambda connection, stored: told.append(
        (connection.in_transaction(), list(stored))))
    again = submission("first", unique_id="urn:oid:2.25.9001", content=first.documents[0].content)
    new = submission("new")
    unknown = submission("unknown patient", spid=OTHER_SPID)

    outcomes = provider.provide_many(principal=TCU, submissions=[again, new, unknown])

    assert [(o.created, type(o.error).__name__ if o.error else None) for o in outcomes] == [
        (False, None), (True, None), (False, "UnknownPatient")]
    [(in_transaction, [announced])] = told  # one call, for the one submission that created a document
    [document] = announced.documents
    assert in_transaction and announced.principal == TCU and announced.spid == SPID
    assert announced.submission_set.patient_pid == pid
    assert document.entry.patient_pid == pid and document.entry.submitter.role == "TCU"
    assert document.entry.unique_id == new.documents[0].entry.unique_id
    assert document.content == new.documents[0].content


def test_a_participant_that_fails_rolls_back_the_documents_and_their_audit_records(services, runtime):
    open_record(services)
    provider = services.exchange.provider

    def outbox_down(connection, stored):
        raise RuntimeError("the outbox could not be written")

    provider.changes.on_documents_stored(outbox_down)
    rows, records = row_counts(runtime), len(runtime.ledger.all_records())

    with pytest.raises(RuntimeError, match="outbox"):
        provider.provide_many(principal=TCU, submissions=[submission("a"), submission("b")])

    assert (row_counts(runtime), len(runtime.ledger.all_records())) == (rows, records)
    assert services.exchange.documents.entry_for_unique_id(submission("c").documents[0].entry.unique_id) is None


def test_the_callers_rows_join_the_transaction_and_its_failure_leaves_nothing(services, runtime):
    open_record(services)
    provider = services.exchange.provider
    seen = []
    rows, records = row_counts(runtime), len(runtime.ledger.all_records())

    def journal_fails(connection, outcomes):
        seen.extend((o.created, o.error) for o in outcomes)
        raise OSError("the journal's disk is full")

    with pytest.raises(OSError):
        provider.provide_many(principal=TCU, submissions=[submission("a")], within=journal_fails)

    assert seen == [(True, None)]  # told the outcome inside the transaction, before the commit
    assert (row_counts(runtime), len(runtime.ledger.all_records())) == (rows, records)


def test_an_unknown_patient_is_refused_in_the_first_phase_and_audited_in_the_second(services, runtime):
    open_record(services)
    provider = services.exchange.provider
    before = iti65(runtime)

    batch = provider.authorise_many(principal=TCU, submissions=[submission("x", spid=OTHER_SPID), submission("ok")])

    assert iti65(runtime) == before  # the first phase writes nothing, not even the refusal's record
    [(index, stored, _)] = batch.authorised
    refused = batch.outcomes[0].error
    assert index == 1 and isinstance(refused, UnknownPatient)
    assert (refused.message, [i.location for i in refused.issues]) == (
        f"EPR-SPID {OTHER_SPID} is not registered in this community", ["List.subject.identifier"])
    assert set(batch.sealed_bodies) == {stored.documents[0].entry.entry_id}

    outcomes = provider.store_authorised(batch)

    assert [o.created for o in outcomes] == [False, True]
    assert iti65(runtime)[len(before):] == [("ITI-65", "E", "4", "-"), ("ITI-65", "C", "0", "ATC_DOC_CREATE")]


def test_a_pipelined_batch_may_name_a_document_of_the_batch_still_being_stored(services, runtime):
    open_record(services)
    provider = services.exchange.provider
    original = submission("original")
    target = original.documents[0].entry.unique_id
    first = provider.authorise_many(principal=TCU, submissions=[original])

    alone = provider.authorise_many(principal=TCU, submissions=[replacing(submission("no flight"), target)])
    second = provider.authorise_many(principal=TCU, submissions=[replacing(submission("replacement"), target)],
                                     in_flight=first.names)

    assert isinstance(alone.outcomes[0].error, UnknownRelationTarget)  # not stored, not in flight: unknown
    assert second.outcomes == [None] and len(second.authorised) == 1
    provider.store_authorised(first)
    [outcome] = provider.store_authorised(second)
    assert outcome.created
    documents = services.exchange.documents
    assert documents.entry_for_unique_id(target).status == "superseded"
    [relation] = documents.entry_for_unique_id(outcome.stored.documents[0].entry.unique_id).relations
    assert (relation.code, relation.target_entry_id) == ("replaces", documents.entry_for_unique_id(target).entry_id)
