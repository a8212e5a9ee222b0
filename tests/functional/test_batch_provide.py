"""`DocumentExchange.provide_many`: many submissions in one transaction, each all-or-nothing, each audited."""

import base64
from dataclasses import replace

import orjson
import pytest
from sqlalchemy import select

from adapters.cara.errors import Conflict, UnknownPatient
from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.cara.model import PendingRelation
from audit.ledger import verify_ledger
from audit.schema import audit_record
from conftest import OTHER_SPID, SPID
from consent.principal import Principal
from functional.helpers import row_counts
from gateway.auth.errors import AccessRefused
from gateway.samples import pdf_document, provide_bundle
from gateway.wiring import build_runtime

TCU = Principal(role="TCU", user_id="infomed-migration", name="Migration", purpose_of_use="AUTO",
                acting_for="7601000000002")


def submission(title: str, *, spid: str = SPID, unique_id: str | None = None, content: bytes | None = None,
               confidentiality: str = "normal"):
    document = {"title": title, "content": content or pdf_document(title, [title]),
                "confidentiality": confidentiality}
    if unique_id:
        document["unique_id"] = unique_id
    return submission_from_bundle(provide_bundle(spid=spid, author_role="TCU", documents=[document]))


def replacing(new, old):
    """`new` with its document replacing `old`'s, named by uniqueId (as an XDM RPLC association does)."""
    document = new.documents[0]
    relation = PendingRelation("replaces", target_unique_id=old.documents[0].entry.unique_id)
    return replace(new, documents=(replace(document, relations=(relation,)),))


def ledger(runtime) -> list[tuple[str, str | None, str]]:
    with runtime.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(
            select(audit_record.c.event_type, audit_record.c.subtype, audit_record.c.outcome)
            .where(audit_record.c.event_type == "ITI-65").order_by(audit_record.c.seq))]


def test_a_batch_stores_the_good_submissions_and_refuses_each_bad_one_alone(gateway):
    gateway.register_patient()
    exchange = gateway.services.exchange
    stored_before = submission("first", unique_id="urn:oid:2.25.1001")
    exchange.provide_submission(principal=TCU, submission=stored_before)
    good = submission("good")
    other_bytes = submission("other bytes", unique_id="urn:oid:2.25.1001")
    unknown = submission("unknown patient", spid=OTHER_SPID)
    again = submission("first", unique_id="urn:oid:2.25.1001", content=stored_before.documents[0].content)
    before = row_counts(gateway.runtime)

    outcomes = exchange.provide_many(principal=TCU, submissions=[good, other_bytes, unknown, again])

    assert [o.submission for o in outcomes] == [good, other_bytes, unknown, again]
    assert [type(o.error) for o in outcomes] == [type(None), Conflict, UnknownPatient, type(None)]
    assert [o.result is None for o in outcomes] == [False, True, True, False]
    assert [d.created for d in outcomes[0].result.documents] == [True]
    assert [d.created for d in outcomes[3].result.documents] == [False]
    assert "already stored with other content" in outcomes[1].error.message
    after = row_counts(gateway.runtime)
    assert {t: after[t] - before[t] for t in ("submission_set", "document_entry", "document_body")} == {
        "submission_set": 1, "document_entry": 1, "document_body": 1}
    # one ATC_DOC_CREATE per created document, one refusal each, a record for the resubmission
    assert ledger(gateway.runtime)[-4:] == [("ITI-65", None, "4"), ("ITI-65", "ATC_DOC_CREATE", "0"),
                                             ("ITI-65", None, "4"), ("ITI-65", None, "0")]
    keys = gateway.services.auditor.ledger.public_keys
    assert verify_ledger(engine=gateway.runtime.engine, public_keys=keys).ok


def test_what_a_batch_stores_is_found_and_retrieved_byte_for_byte(gateway):
    gateway.register_patient()
    submissions = [submission(f"letter {n}") for n in range(5)]

    outcomes = gateway.services.exchange.provide_many(principal=TCU, submissions=submissions)

    found = gateway.find()
    assert found.status_code == 200
    assert found.json()["total"] == 5
    ids = {e["resource"]["masterIdentifier"]["value"]: e["resource"]["id"] for e in found.json()["entry"]}
    for outcome in outcomes:
        entry_id = ids[outcome.submission.documents[0].entry.unique_id]
        assert outcome.result.documents[0].entry_id == entry_id
        binary = gateway.client.get(f"/fhir/Binary/{entry_id}", headers=gateway.as_hcp())
        assert binary.content == outcome.submission.documents[0].content


def test_the_same_document_twice_in_one_batch_is_stored_once(gateway):
    gateway.register_patient()
    first = submission("twice", unique_id="urn:oid:2.25.2002")
    same = submission("twice", unique_id="urn:oid:2.25.2002", content=first.documents[0].content)
    changed = submission("twice", unique_id="urn:oid:2.25.2002", content=b"%PDF-1.4 other")

    outcomes = gateway.services.exchange.provide_many(principal=TCU, submissions=[first, same, changed])

    assert [o.result.documents[0].created if o.result else None for o in outcomes] == [True, False, None]
    assert outcomes[1].result.documents[0].entry_id == outcomes[0].result.documents[0].entry_id
    assert outcomes[1].result.submission_set_id == outcomes[0].result.submission_set_id
    assert isinstance(outcomes[2].error, Conflict)
    assert gateway.find().json()["total"] == 1


def test_a_replacement_in_the_same_batch_supersedes_and_a_second_one_is_refused(gateway):
    gateway.register_patient()
    original = submission("v1")
    second = replacing(submission("v2"), original)
    third = replacing(submission("v3"), original)

    outcomes = gateway.services.exchange.provide_many(principal=TCU, submissions=[original, second, third])

    assert [type(o.error) for o in outcomes] == [type(None), type(None), Conflict]
    assert "superseded and cannot be replaced again" in outcomes[2].error.message
    statuses = {e["resource"]["masterIdentifier"]["value"]: e["resource"]["status"]
                for e in gateway.find(status="current,superseded").json()["entry"]}
    assert statuses == {original.documents[0].entry.unique_id: "superseded",
                        second.documents[0].entry.unique_id: "current"}


def test_the_provide_level_raises_and_a_refused_principal_stores_nothing(gateway):
    gateway.register_patient()
    patient = Principal(role="PAT", user_id=OTHER_SPID, patient_spid=OTHER_SPID)
    before = row_counts(gateway.runtime)

    refused = gateway.services.exchange.provide_many(principal=patient, submissions=[submission("x")])

    assert isinstance(refused[0].error, AccessRefused)
    assert row_counts(gateway.runtime) == before
    outcome, = gateway.services.exchange.provide_many(principal=TCU, submissions=[submission("y")])
    # onboarding wrote 203 "normal": a normal upload stays normal, and `stored` is what was stored
    assert outcome.stored.documents[0].entry.confidentiality_level == "normal"


def test_a_failure_inside_the_transaction_leaves_nothing_stored_nor_audited(gateway):
    gateway.register_patient()
    before_rows, before_ledger = row_counts(gateway.runtime), ledger(gateway.runtime)

    def journal(connection, outcomes):
        raise RuntimeError("the journal cannot be written")

    with pytest.raises(RuntimeError):
        gateway.services.exchange.provide_many(principal=TCU, submissions=[submission("a"), submission("b")],
                                               within=journal)

    assert row_counts(gateway.runtime) == before_rows
    # the failed call is audited once (outside the rolled-back transaction), nothing else
    assert ledger(gateway.runtime) == before_ledger + [("ITI-65", None, "8")]


def test_a_batch_body_is_sealed_like_a_single_provide(gateway):
    gateway.register_patient()
    content = pdf_document("sealed", ["Anna Muster secret words"])
    gateway.services.exchange.provide_many(principal=TCU, submissions=[submission("sealed", content=content)])

    with gateway.runtime.engine.connect() as connection:
        from adapters.cara.store.schema import document_body, document_entry
        blobs = [r for row in connection.execute(select(document_body.c.sealed, document_entry.c.sealed)
                                                 .join(document_entry, document_entry.c.id == document_body.c.entry_id))
                 for r in row]
    assert blobs and all(b"secret words" not in blob and base64.b64encode(b"secret") not in blob for blob in blobs)


def test_a_batch_of_new_documents_is_sealed_and_its_records_prepared_before_its_transaction(gateway, monkeypatch):
    """The transaction of a batch of new documents naming no other one only checks, chains and inserts:
    every AES-GCM seal and every audit record's preparation happened in `authorise_many`."""
    import gateway.exchanges.auditing as auditing
    from adapters.cara.crypto import Keyring

    gateway.register_patient()
    exchange = gateway.services.exchange
    submissions = [submission(f"ahead {n}") for n in range(3)]
    batch = exchange.authorise_many(principal=TCU, submissions=submissions)
    ledger_before = ledger(gateway.runtime)

    def not_in_the_transaction(*args, **kwargs):
        raise AssertionError("sealed or prepared inside the batch's transaction")

    monkeypatch.setattr(Keyring, "seal", not_in_the_transaction)
    monkeypatch.setattr(auditing, "prepare", not_in_the_transaction)
    outcomes = exchange.store_authorised(principal=TCU, batch=batch)
    monkeypatch.undo()

    assert [(o.error, [d.created for d in o.result.documents]) for o in outcomes] == [(None, [True])] * 3
    assert ledger(gateway.runtime) == ledger_before + [("ITI-65", "ATC_DOC_CREATE", "0")] * 3
    found = gateway.find().json()
    assert {e["resource"]["masterIdentifier"]["value"] for e in found["entry"]} == {
        s.documents[0].entry.unique_id for s in submissions}
    entry_id = outcomes[0].result.documents[0].entry_id
    binary = gateway.client.get(f"/fhir/Binary/{entry_id}", headers=gateway.as_hcp())
    assert binary.content == submissions[0].documents[0].content
    keys = gateway.services.auditor.ledger.public_keys
    assert verify_ledger(engine=gateway.runtime.engine, public_keys=keys).ok


def test_a_batch_resubmitting_a_document_whose_metadata_was_updated_finds_it(gateway):
    """An entry at version 2 (its metadata changed, sealed under the versioned context) is opened
    under that version when a batch checks for existing copies: the resubmission is recognised."""
    gateway.register_patient()
    exchange = gateway.services.exchange
    first = submission("updated later", unique_id="urn:oid:2.25.3003")
    [outcome] = exchange.provide_many(principal=TCU, submissions=[first])
    entry_id = outcome.result.documents[0].entry_id
    patient = Principal(role="PAT", user_id=SPID, patient_spid=SPID)
    changed = gateway.services.metadata.change_confidentiality(principal=patient, entry_id=entry_id, level="restricted")
    assert changed.version == 2
    again = submission("updated later", unique_id="urn:oid:2.25.3003", content=first.documents[0].content)

    [repeat] = exchange.provide_many(principal=TCU, submissions=[again])

    assert repeat.error is None
    assert [(d.entry_id, d.created) for d in repeat.result.documents] == [(entry_id, False)]
    assert repeat.result.submission_set_id == outcome.result.submission_set_id


def raise_provide_level(gateway, level: str) -> None:
    """The patient replaces the onboarding provide level (203) through the gateway's FHIR face."""
    headers = gateway.tokens.headers(gateway.tokens.patient())
    consents = gateway.client.get("/fhir/Consent", params={"patient:identifier":
                                  f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"}, headers=headers)
    provide = next(e["resource"] for e in consents.json()["entry"] if e["resource"]["identifier"][1]["value"] == "203")
    provide["policyRule"]["coding"][0]["code"] = f"urn:e-health-suisse:2015:policies:provide-level:{level}"
    updated = gateway.client.put(f"/fhir/Consent/{provide['id']}", content=orjson.dumps(provide), headers=headers)
    assert updated.status_code == 200, updated.text


def test_a_batch_is_decided_on_the_consent_as_stored_not_as_another_process_remembers_it(gateway):
    """`epr-gateway migrate` beside the gateway on the embedded default: two processes over one store,
    each with its own policy cache (no Redis). The patient raises the provide level in the gateway
    between two batches of the other process: the next batch is stored at the raised level."""
    gateway.register_patient()
    beside = build_runtime(gateway.runtime.settings)  # the other process's services: caches of its own
    try:
        before, = beside.services.exchange.provide_many(principal=TCU, submissions=[submission("before")])
        raise_provide_level(gateway, "restricted")
        after, = beside.services.exchange.provide_many(principal=TCU, submissions=[submission("after")])
    finally:
        beside.close()

    assert before.stored.documents[0].entry.confidentiality_level == "normal"
    assert after.stored.documents[0].entry.confidentiality_level == "restricted"
    with gateway.runtime.engine.connect() as connection:
        from adapters.cara.store.schema import document_entry
        stored = dict(connection.execute(select(document_entry.c.unique_id, document_entry.c.confidentiality)).all())
    assert stored == {before.stored.documents[0].entry.unique_id: "normal",
                      after.stored.documents[0].entry.unique_id: "restricted"}
