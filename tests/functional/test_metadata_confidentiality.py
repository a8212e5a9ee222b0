"""`MetadataExchange.change_confidentiality` (the patient's page calls it): the patient's right, decided
by the PDP, audited with ATC_DOC_UPDATE, a new version with the old one kept, search pages dropped."""

import pytest

from adapters.cara.errors import InvalidInput, NotFound
from conftest import OTHER_SPID, SPID
from functional.helpers import document_ids, row_counts
from functional.test_audit_exchanges import ledger
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.samples import pdf_document, provide_bundle

PATIENT = Principal(role="PAT", user_id=SPID, user_id_qualifier="urn:e-health-suisse:2015:epr-spid",
                    name="Anna Muster", patient_spid=SPID)
OTHER_PATIENT = Principal(role="PAT", user_id=OTHER_SPID, user_id_qualifier="urn:e-health-suisse:2015:epr-spid",
                          name="Paul Autre", patient_spid=OTHER_SPID)
HCP = Principal(role="HCP", user_id="7601000000002", user_id_qualifier="urn:gs1:gln", name="Dr. Luc Favre")


@pytest.fixture
def lab_report(gateway) -> str:
    gateway.register_patient(grant_hcp="restricted")
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul")
    bundle = provide_bundle(spid=SPID, documents=[{"title": "Lab", "confidentiality": "restricted",
                                                   "content": pdf_document("Lab", ["b"])}])
    return document_ids(gateway.provide(bundle).json())[0]


def visible_to_hcp(gateway) -> list[str]:
    response = gateway.find()
    assert response.status_code == 200, response.text
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


def test_the_patient_makes_a_document_secret_and_the_professional_loses_it(gateway, lab_report):
    metadata = gateway.services.metadata
    assert visible_to_hcp(gateway) == [lab_report]  # the page is now remembered
    before = len(ledger(gateway))

    stored = metadata.change_confidentiality(principal=PATIENT, entry_id=lab_report, level="secret")

    assert (stored.entry_id, stored.confidentiality_level, stored.version) == (lab_report, "secret", 2)
    assert visible_to_hcp(gateway) == []  # the remembered page was dropped
    assert gateway.client.get(f"/fhir/DocumentReference/{lab_report}", headers=gateway.as_hcp()).status_code == 404
    patient = gateway.tokens.headers(gateway.tokens.patient())
    read = gateway.client.get(f"/fhir/DocumentReference/{lab_report}", headers=patient).json()
    assert [c["code"] for label in read["securityLabel"] for c in label["coding"]] == ["1141000195107"]
    history = metadata.history(principal=PATIENT, entry_id=lab_report)
    assert [(v.version, v.confidentiality_level) for v in history] == [(1, "restricted"), (2, "secret")]
    assert ledger(gateway)[before:before + 1] == [("CH-MHD-1", "ATC_DOC_UPDATE", "0", "PAT", SPID, "NORM", SPID)]

    lowered = metadata.change_confidentiality(principal=PATIENT, entry_id=lab_report, level="normal")
    assert (lowered.confidentiality_level, lowered.version) == ("normal", 3)
    assert visible_to_hcp(gateway) == [lab_report]


def test_a_professional_who_reads_the_document_is_refused_and_nothing_changes(gateway, lab_report):
    before = row_counts(gateway.runtime)
    with pytest.raises(AccessRefused):
        gateway.services.metadata.change_confidentiality(principal=HCP, entry_id=lab_report, level="normal")
    assert row_counts(gateway.runtime) == before
    assert ledger(gateway)[-1][:3] == ("CH-MHD-1", None, "4")


@pytest.mark.parametrize("principal", [OTHER_PATIENT, HCP], ids=["another patient", "hcp, level not granted"])
def test_a_document_the_principal_may_not_read_is_not_found_like_a_missing_one(gateway, lab_report, principal):
    metadata = gateway.services.metadata
    metadata.change_confidentiality(principal=PATIENT, entry_id=lab_report, level="secret")  # beyond the HCP's grant
    before = row_counts(gateway.runtime)
    with pytest.raises(NotFound) as refused:
        metadata.change_confidentiality(principal=principal, entry_id=lab_report, level="normal")
    with pytest.raises(NotFound) as missing:
        metadata.change_confidentiality(principal=principal, entry_id="no-such-entry", level="normal")
    assert str(refused.value) == str(missing.value).replace("no-such-entry", lab_report)
    assert row_counts(gateway.runtime) == before


def test_an_unknown_level_is_invalid_input(gateway, lab_report):
    with pytest.raises(InvalidInput, match="normal, restricted, secret"):
        gateway.services.metadata.change_confidentiality(principal=PATIENT, entry_id=lab_report, level="very-secret")
