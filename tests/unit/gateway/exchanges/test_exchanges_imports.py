"""`ImportExchange` (gateway/exchanges/imports.py), the migration's use-cases beside `provide_many`, on a
real store: each document's patient answered by the one readiness rule with what releases it (a dry run
opening no review case), only for a technical user; and `migrate verify`'s comparison of the stored bytes,
decided as a write and audited, answering "same" or the first difference, never the content."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.cara.model import Identifier
from gateway.auth.errors import AccessRefused
from gateway.exchanges.imports import RETRY, ImportExchange, ImportPatient, PatientRequest
from gateway.samples import provide_bundle
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    LOCAL_SYSTEM,
    OTHER_SPID,
    SPID,
    TCU,
    feed,
    open_record,
    runtime,
    services,
)

CONTENT = b"%PDF-1.4 the migrated letter, as the source holds it"


def request(local_id: str = "L-1", *, birth_date: str = "1980-05-17") -> PatientRequest:
    return PatientRequest(Identifier(LOCAL_SYSTEM, local_id), "Muster", ("Anna",), birth_date, "female")


def migrated(services, content: bytes = CONTENT) -> str:
    """A document the migration's technical user stored; returns its uniqueId."""
    submission = submission_from_bundle(provide_bundle(spid=SPID, author_role="TCU", documents=[
        {"title": "Letter", "content": content}]))
    [outcome] = services.exchange.provide_many(principal=TCU, submissions=[submission])
    assert outcome.created
    return outcome.stored.documents[0].entry.unique_id


def last_records(runtime, count: int) -> list[tuple[str, str, str]]:
    """(IHE transaction, patient-trail ATC code or "-", outcome) of the last `count` records."""
    found = []
    for event in runtime.ledger.all_records()[-count:]:
        codes = {c["system"]: c["code"] for c in event.get("subtype", [])}
        found.append((codes.get("urn:ihe:event-type-code", "-"),
                      next((c for c in codes.values() if c.startswith("ATC_")), "-"), event["outcome"]))
    return found


def test_each_documents_patient_is_answered_by_the_one_rule_with_what_releases_it(services):
    open_record(services)
    feed(services, spid=OTHER_SPID, local_id="L-2")  # a SPID, the EPR not opened
    imports = ImportExchange(exchange=services.exchange)
    ready, twice, unknown, not_opened = request(), request(), request("L-404"), request("L-2")

    answers = imports.patients_for_import(principal=TCU, requests=[ready, unknown, not_opened, twice])

    assert answers[ready] == answers[twice] == ImportPatient(SPID)
    assert (answers[unknown].spid, answers[unknown].hold_code) == (None, "unknown-patient")
    assert answers[unknown].reason.endswith(f"it waits until the patient is fed (ITI-104 or ADT^A08){RETRY}")
    assert (answers[not_opened].hold_code, answers[not_opened].reason.endswith(
        f"it waits until the patient's EPR is opened (onboarding){RETRY}")) == ("epr-not-opened", True)


def test_only_a_technical_user_imports(services):
    open_record(services)

    with pytest.raises(AccessRefused, match=r"bulk imports are made by a technical user \(TCU\)"):
        ImportExchange(exchange=services.exchange).patients_for_import(principal=HCP, requests=[request()])


def test_differing_demographics_open_a_review_case_except_in_a_dry_run(services):
    open_record(services)
    differing = request(birth_date="1980-05-18")
    reviews = services.exchange.patients.reviews

    [dry] = ImportExchange(exchange=services.exchange, dry_run=True).patients_for_import(
        principal=TCU, requests=[differing]).values()
    assert (dry.spid, dry.hold_code, reviews.open_reviews()) == (None, "identity-conflict", [])

    [real] = ImportExchange(exchange=services.exchange).patients_for_import(
        principal=TCU, requests=[differing]).values()
    [case] = reviews.open_reviews()
    assert (real.spid, real.hold_code) == (None, "identity-conflict")
    assert case.id in real.reason and "birth date" in real.reason and "1980-05-18" not in real.reason


def test_verify_answers_same_or_the_first_difference_and_audits_each_comparison(services, runtime):
    open_record(services)
    unique_id = migrated(services)
    imports = ImportExchange(exchange=services.exchange)

    same = imports.compare_content(principal=TCU, unique_id=unique_id, content=CONTENT)
    longer = imports.compare_content(principal=TCU, unique_id=unique_id, content=CONTENT + b"!")
    changed = imports.compare_content(principal=TCU, unique_id=unique_id, content=CONTENT.replace(b"letter", b"lettre"))

    assert same is None
    assert longer == f"{unique_id}: the record holds {len(CONTENT)} bytes, the source {len(CONTENT) + 1}"
    assert changed == f"{unique_id}: the bytes differ from offset {CONTENT.index(b'letter') + 4}"
    # audited as ITI-68 outcomes, not in the patient's trail (no ATC code: nothing left the record)
    assert last_records(runtime, 3) == [("ITI-68", "-", "0")] * 3


def test_verify_of_an_unknown_document_says_so_and_a_refused_comparison_is_audited(services, runtime):
    open_record(services)
    unique_id = migrated(services)
    imports = ImportExchange(exchange=services.exchange)
    records = len(runtime.ledger.all_records())

    assert imports.compare_content(principal=TCU, unique_id="urn:oid:2.25.404", content=CONTENT) == (
        "urn:oid:2.25.404 is not in the record")
    assert len(runtime.ledger.all_records()) == records  # nothing read, nothing to audit
    with pytest.raises(AccessRefused, match="TCU cannot write with purpose NORM"):
        imports.compare_content(principal=replace(TCU, purpose_of_use="NORM"), unique_id=unique_id, content=CONTENT)
    assert last_records(runtime, 1) == [("ITI-68", "-", "4")]
