"""`DocumentExchange` (gateway/exchanges/documents.py) called directly on a real store: a submission in
the record's model as a batch of one, the two halves of a batch kept to their principal, reads and
retrievals that answer a refusal exactly as an unknown document (audited in the patient's trail), a
search that shows an unknown patient and an unreadable record alike, and the PPQ-4 / ITI-65 tell."""

from __future__ import annotations

import orjson
import pytest

from adapters.cara.errors import NotFound, UnknownPatient
from adapters.cara.fhir_mapping import submission_from_bundle
from functional.helpers import row_counts
from gateway.auth.errors import AccessRefused
from gateway.exchanges.documents import is_consent_bundle
from gateway.samples import pdf_document, provide_bundle
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    BASE,
    HCP,
    OTHER_HCP,
    OTHER_SPID,
    PATIENT,
    SPID,
    TCU,
    open_record,
    provide,
    runtime,
    services,
)


def submission(title: str = "Letter", *, spid: str = SPID):
    return submission_from_bundle(provide_bundle(spid=spid, author_role="TCU", documents=[
        {"title": title, "content": pdf_document(title, [title])}]))


def trail(runtime, since: int) -> list[tuple[str, str, str]]:
    """(IHE transaction, ATC code or "-", outcome) of the records written since the `since`-th."""
    found = []
    for event in runtime.ledger.all_records()[since:]:
        codes = {c["system"]: c["code"] for c in event.get("subtype", [])}
        found.append((codes.get("urn:ihe:event-type-code", "-"),
                      next((c for c in codes.values() if c.startswith("ATC_")), "-"), event["outcome"]))
    return found


def test_a_submission_in_the_records_model_is_stored_as_a_batch_of_one(services, runtime):
    pid = open_record(services)
    given = submission("Migrated letter")
    before = len(runtime.ledger.all_records())

    stored, result = services.exchange.provide_submission(principal=TCU, submission=given)

    [document] = stored.documents
    assert [d.created for d in result.documents] == [True]
    entry = services.exchange.documents.entry_for_unique_id(document.entry.unique_id)
    assert (entry.patient_pid, entry.status, entry.submitter.role) == (pid, "current", "TCU")
    assert services.exchange.documents.read_content(entry) == given.documents[0].content
    assert trail(runtime, before) == [("ITI-65", "ATC_DOC_CREATE", "0")]


def test_a_refused_submission_is_raised_audited_once_and_stores_nothing(services, runtime):
    open_record(services)
    rows, before = row_counts(runtime), len(runtime.ledger.all_records())

    with pytest.raises(UnknownPatient) as refused:
        services.exchange.provide_submission(principal=TCU, submission=submission(spid=OTHER_SPID))

    assert refused.value.audited
    assert row_counts(runtime) == rows
    assert trail(runtime, before) == [("ITI-65", "-", "4")]  # once: the decorator does not audit it again


def test_a_batch_is_stored_only_by_the_principal_it_was_authorised_for(services, runtime):
    open_record(services)
    batch = services.exchange.authorise_many(principal=TCU, submissions=[submission()])
    rows = row_counts(runtime)

    with pytest.raises(AccessRefused, match="a batch is stored by the principal it was authorised for"):
        services.exchange.store_authorised(principal=HCP, batch=batch)

    assert row_counts(runtime) == rows
    [outcome] = services.exchange.store_authorised(principal=TCU, batch=batch)
    assert outcome.created


def test_a_document_one_may_not_read_is_answered_as_an_unknown_one_and_audited(services, runtime):
    open_record(services)
    entry_id = provide(services)
    before = len(runtime.ledger.all_records())

    answers = []
    for who, asked in ((OTHER_HCP, entry_id), (HCP, "no-such-entry")):
        with pytest.raises(NotFound) as refused:
            services.exchange.retrieve(principal=who, entry_id=asked, base_url=BASE)
        answers.append(refused.value.message.replace(asked, "<id>"))
    retrieved = services.exchange.retrieve(principal=HCP, entry_id=entry_id, base_url=BASE)

    assert answers == ["Binary/<id> is not known"] * 2
    assert retrieved.content.startswith(b"%PDF") and retrieved.content_type == "application/pdf"
    # the refusal is in the patient's trail (ATC_DOC_READ, outcome 4); the unknown id names no patient
    assert trail(runtime, before) == [("ITI-68", "ATC_DOC_READ", "4"), ("ITI-68", "-", "4"),
                                      ("ITI-68", "ATC_DOC_READ", "0")]


def test_a_version_that_does_not_exist_is_not_found_and_the_current_one_is_read(services):
    open_record(services)
    entry_id = provide(services)
    services.metadata.change_confidentiality(principal=PATIENT, entry_id=entry_id, level="restricted")

    with pytest.raises(NotFound, match=f"DocumentReference/{entry_id} has no version 7"):
        services.exchange.read_reference(principal=PATIENT, entry_id=entry_id, base_url=BASE, version=7)
    first = services.exchange.read_reference(principal=PATIENT, entry_id=entry_id, base_url=BASE, version=1)
    current = services.exchange.read_reference(principal=PATIENT, entry_id=entry_id, base_url=BASE)

    assert (first["meta"]["versionId"], current["meta"]["versionId"]) == ("1", "2")
    assert ([c["code"] for c in first["securityLabel"][0]["coding"]],
            [c["code"] for c in current["securityLabel"][0]["coding"]]) == (["17621005"], ["263856008"])


def test_an_unknown_patient_and_a_record_one_may_not_see_both_look_empty(services, runtime):
    open_record(services)
    provide(services)

    def found(principal, spid):
        params = [("patient.identifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{spid}"), ("status", "current")]
        bundle = orjson.loads(services.exchange.find(principal=principal, params=params, base_url=BASE))
        return bundle["total"], len(bundle.get("entry", []))

    assert found(HCP, SPID) == (1, 1)
    assert found(OTHER_HCP, SPID) == (0, 0)
    assert found(HCP, OTHER_SPID) == (0, 0)
    assert [t for t in trail(runtime, 0) if t[0] == "ITI-67"] == [("ITI-67", "ATC_DOC_SEARCH", "0")] * 3


@pytest.mark.parametrize(("entries", "consent"), [
    ([{"resource": {"resourceType": "Consent"}}], True),
    ([{"request": {"method": "DELETE", "url": "Consent?identifier=urn:oid:2.25.1|x"}}], True),
    ([{"resource": {"resourceType": "Consent"}}, {"resource": {"resourceType": "Binary"}}], False),
    ([{"resource": {"resourceType": "List"}}], False),
    (["not an entry", {"request": {"url": "Consents/1"}}], False),
])
def test_a_consent_bundle_is_told_from_a_provide_bundle_by_content(entries, consent):
    assert is_consent_bundle({"resourceType": "Bundle", "entry": entries}) is consent
