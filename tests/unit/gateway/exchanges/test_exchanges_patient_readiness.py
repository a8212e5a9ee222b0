"""The one readiness rule on a real store: each reason in its order, review cases opened once per
patient and claimed identity, a resolved case accepting that identity."""

import orjson

from adapters.cara.model import Identifier, PatientRecord
from conftest import LOCAL_SYSTEM, POLICY_ADMIN, SPID
from gateway.exchanges.patient_readiness import PatientClaim, PatientReadiness, differences
from gateway.samples import patient_feed

SPID_2 = "761337610455555558"


def claim(local_id: str = "L-1", **demographics) -> PatientClaim:
    values = {"family": "Muster", "given": ("Anna",), "birth_date": "1980-05-17", "gender": "female", **demographics}
    return PatientClaim((Identifier(LOCAL_SYSTEM, local_id),), **values)


def test_differences_name_fields_and_ignore_what_is_missing_case_and_composition():
    record = PatientRecord(pid="p", spid=SPID, family="Müller", given=("Anna", "Maria"), birth_date="1980-05-17",
                           gender="female")
    assert differences(claim(family="MÜLLER", given=("anna",)), record) == []
    assert differences(claim(family="Mu\u0308ller"), record) == []  # the same name, decomposed
    assert differences(claim(family=None, given=(), birth_date=None, gender=None), record) == []
    assert differences(claim(family="Muller", birth_date="1980-05-18", gender="male"), record) == [
        "family name", "birth date", "gender"]


def test_each_reason_in_its_order(sqlite_gateway):
    gateway = sqlite_gateway
    services = gateway.services
    readiness = PatientReadiness(patients=services.exchange.patients, access=services.exchange.access)
    gateway.register_patient()  # L-1: SPID, onboarded
    put = lambda local, spid: gateway.client.put(  # noqa: E731
        f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{local}", headers=gateway.as_hcp(),
        content=orjson.dumps(patient_feed(spid=spid, local_system=LOCAL_SYSTEM, local_id=local, family="Muster",
                                          given="Anna", birth_date="1980-05-17", gender="female")))
    assert put("L-2", SPID_2).status_code == 201  # a SPID, not onboarded
    body = {"resourceType": "Patient", "identifier": [{"system": LOCAL_SYSTEM, "value": "L-3"}],
            "name": [{"family": "Sans", "given": ["Dossier"]}], "birthDate": "1950-01-01", "gender": "male"}
    assert gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-3", content=orjson.dumps(body),
                              headers=gateway.as_hcp()).status_code == 201  # no SPID

    claims = [claim("NOBODY"), claim("L-3", family="Sans", given=("Dossier",), birth_date="1950-01-01",
                                     gender="male"), claim("L-2"), claim(birth_date="1980-05-18"), claim()]
    checked = readiness.check_many(claims)

    assert [checked[c].hold for c in claims] == ["unknown-patient", "no-epr", "epr-not-opened", "identity-conflict",
                                                 None]
    assert checked[claims[-1]].spid == SPID
    [case] = services.exchange.patients.reviews.open_reviews()
    assert checked[claims[3]].review_id == case.id and case.reason == "document-demographics-differ"
    assert "birth date" in checked[claims[3]].detail and "1980-05-18" not in checked[claims[3]].detail

    again = readiness.check_many([claim(birth_date="1980-05-18"), claim(birth_date="1980-05-18", gender="male")])
    assert [r.review_id for r in again.values()][0] == case.id  # the same claim: the same case, not a new one
    assert len(services.exchange.patients.reviews.open_reviews()) == 2  # another claimed identity: its own case

    services.identities.resolve_review(principal=POLICY_ADMIN, review_id=case.id)
    accepted = readiness.check_many([claim(birth_date="1980-05-18")])
    assert [(r.hold, r.spid) for r in accepted.values()] == [(None, SPID)]
