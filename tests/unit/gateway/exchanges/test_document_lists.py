"""The SubmissionSet Lists use-case (gateway/exchanges/document_lists.py) on a real SQLite store: sets that came
in by every face (ITI-65, an HL7 v2 message's set with a contained author, an XDM set without designation or
date) answer as CH MHD SubmissionSet Lists; a sealed set copied onto another row is an integrity failure,
never served."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from fhir.resources.R4B.list import List as FhirList
from sqlalchemy import select, update

from adapters.cara import fhir_mapping
from adapters.cara.errors import IntegrityFailure, NotFound
from adapters.cara.mhd_rules import check_submission_set
from adapters.cara.store.schema import submission_set
from adapters.infomed.authors import author_from_xcn
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    BASE, HCP, PATIENT, SPID, TCU, open_record, runtime, services)
from gateway.samples import pdf_document, provide_bundle

SEARCH = [("patient.identifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}"), ("code", "submissionset")]


def submission(title: str, author_role: str = "HCP", **bundle_options):
    bundle = provide_bundle(spid=SPID, author_role=author_role, documents=[
        {"title": title, "content": pdf_document(title, [title])}], **bundle_options)
    return bundle, fhir_mapping.submission_from_bundle(bundle)


def stored_set_id(services, principal, subset_submission) -> str:
    _, result = services.exchange.provide_submission(principal=principal, submission=subset_submission)
    return result.submission_set_id


def test_sets_from_every_face_answer_as_ch_mhd_submissionset_lists(services):
    open_record(services)
    bundle, as_sent = submission("ITI-65")
    bundle["entry"][0]["resource"]["source"] = {"identifier": {"system": "urn:oid:2.51.1.3", "value": "7601000000002"},
                                                "display": "Dr. Luc Favre"}
    answer = services.transactions.submit(principal=HCP, body=orjson.dumps(bundle), base_url=BASE)
    [iti65] = [e["response"]["location"].rsplit("/", 1)[1] for e in answer["entry"] if "/List/" in e["response"]["location"]]
    _, message = submission("HL7 v2")
    message = replace(message, submission_set=replace(message.submission_set, authors=[
        author_from_xcn("7601000000002", "Favre", "Luc", "2.51.1.3", reference="author")]))
    hl7 = stored_set_id(services, HCP, message)
    _, migrated = submission("XDM", author_role="TCU")
    migrated = replace(migrated, submission_set=replace(migrated.submission_set, content_type=None, submission_time=None,
                                                        authors=[], title="Infomed migration"))
    xdm = stored_set_id(services, TCU, migrated)

    lists = {set_id: services.lists.read(principal=PATIENT, set_id=set_id) for set_id in (iti65, hl7, xdm)}

    for resource in lists.values():
        FhirList.model_validate(resource)
        assert check_submission_set(resource) == []
    assert lists[iti65]["source"] == {"identifier": {"system": "urn:oid:2.51.1.3", "value": "7601000000002"},
                                      "display": "Dr. Luc Favre"}
    assert lists[hl7]["source"] == {"identifier": {"system": "urn:oid:2.51.1.3", "value": "7601000000002"},
                                    "display": "Luc Favre"}
    assert "source" not in lists[xdm]
    assert (lists[xdm]["title"], lists[xdm]["date"], lists[xdm]["extension"][0]["valueCodeableConcept"]) == (
        "Infomed migration", lists[xdm]["meta"]["lastUpdated"],
        {"coding": [{"system": "http://snomed.info/sct", "code": "71388002", "display": "Procedure (procedure)"}]})
    by_author = services.lists.find(principal=PATIENT, params=[*SEARCH, ("source.family", "favre")], base_url=BASE)
    assert [e["resource"]["id"] for e in by_author["entry"]] == [hl7]  # names of a contained author only


def test_a_set_whose_sealed_metadata_was_copied_onto_another_row_is_never_served(services, runtime):
    open_record(services)
    first = stored_set_id(services, HCP, submission("first")[1])
    second = stored_set_id(services, HCP, submission("second")[1])
    with runtime.engine.begin() as connection:
        sealed = connection.execute(select(submission_set.c.sealed_key, submission_set.c.sealed)
                                    .where(submission_set.c.id == first)).one()
        connection.execute(update(submission_set).where(submission_set.c.id == second)
                           .values(sealed_key=sealed.sealed_key, sealed=sealed.sealed))

    with pytest.raises(IntegrityFailure):
        services.lists.read(principal=PATIENT, set_id=second)
    with pytest.raises(IntegrityFailure):
        services.lists.find(principal=PATIENT, params=SEARCH, base_url=BASE)
    assert services.lists.read(principal=PATIENT, set_id=first)["id"] == first


def test_an_unknown_id_and_a_set_of_another_patient_are_the_same_refusal(services):
    open_record(services)
    set_id = stored_set_id(services, HCP, submission("letter")[1])
    other_patient = replace(PATIENT, user_id="761337610499999991", patient_spid="761337610499999991")

    with pytest.raises(NotFound) as unknown:
        services.lists.read(principal=PATIENT, set_id="no-such-set")
    with pytest.raises(NotFound) as hidden:
        services.lists.read(principal=other_patient, set_id=set_id)
    assert (unknown.value.message.replace("no-such-set", "ID"), unknown.value.code) == (
        hidden.value.message.replace(set_id, "ID"), hidden.value.code)
