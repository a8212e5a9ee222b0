"""The birth name and managingOrganization of an ITI-104 feed: kept (sealed with the demographics),
returned on PDQm (ITI-78 read and search, ITI-119 $match) and by the feed's answer, replaced by the next
ITI-104 PUT (a feed without them removes them), kept by an HL7 v2 update (which cannot carry them)."""

import orjson
import pytest
from fhir.resources.R4B.patient import Patient
from sqlalchemy import select

from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.store.schema import metadata
from conftest import LOCAL_SYSTEM, SPID
from consent.principal import Principal

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
ECH_11_NAME = "http://fhir.ch/ig/ch-core/StructureDefinition/ch-ext-ech-11-name"
QUALIFIER = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier"
OFFICIAL = {"use": "official", "family": "Muster", "given": ["Anna"]}
# CH Core's birth name (use maiden, eCH-0011 originalName), as the CH Core examples write it
CH_CORE_BIRTH_NAME = {"use": "maiden", "family": "Ledigname",
                      "_family": {"extension": [{"url": ECH_11_NAME, "valueCode": "originalName"}]}}
# what the answers carry: CH EPR FHIR ch-epr-fhir-birthname (qualifier BR) and CH Core's use maiden
BIRTH_NAME_OUT = {"use": "maiden", "family": "Ledigname",
                  "_family": {"extension": [{"url": QUALIFIER, "valueCode": "BR"}]}}
NAME_OUT = {"family": "Muster", "given": ["Anna"]}  # the MPI keeps family and given of the official name
ORGANIZATION = {"identifier": {"system": "urn:oid:2.51.1.3", "value": "7601000201041"}, "display": "Spital Muster"}


def feed(gateway, *, names, organization=None):
    body = {"resourceType": "Patient",
            "identifier": [{"system": LOCAL_SYSTEM, "value": "L-1"}, {"system": SPID_SYSTEM, "value": SPID}],
            "name": names, "birthDate": "1980-05-17", "gender": "female"}
    if organization is not None:
        body["managingOrganization"] = organization
    return gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-1", content=orjson.dumps(body),
                              headers=gateway.as_hcp())


def kept(resource: dict) -> tuple[list, dict | None]:
    Patient.model_validate(resource)
    return resource["name"], resource.get("managingOrganization")


def everything_pdqm_answers(gateway, pid: str) -> list[tuple[list, dict | None]]:
    """The Patient as ITI-78 read, ITI-78 search and ITI-119 $match return it."""
    read = gateway.client.get(f"/fhir/Patient/{pid}", headers=gateway.as_hcp())
    search = gateway.client.get("/fhir/Patient", params={"family": "Muster", "birthdate": "1980-05-17"},
                                headers=gateway.as_hcp())
    match = gateway.client.post("/fhir/Patient/$match", headers=gateway.as_hcp(), content=orjson.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
            "resourceType": "Patient", "name": [{"family": "Muster", "given": ["Anna"]}],
            "birthDate": "1980-05-17", "gender": "female"}}]}))
    for response in (read, search, match):
        assert response.status_code == 200, response.text
    [searched], [matched] = search.json()["entry"], match.json()["entry"]
    return [kept(read.json()), kept(searched["resource"]), kept(matched["resource"])]


def test_the_birth_name_and_managing_organization_are_kept_and_returned_on_pdqm(gateway):
    fed = feed(gateway, names=[CH_CORE_BIRTH_NAME, OFFICIAL], organization=ORGANIZATION)  # birth name first

    assert fed.status_code == 201, fed.text
    assert kept(fed.json()) == ([NAME_OUT, BIRTH_NAME_OUT], ORGANIZATION)
    assert everything_pdqm_answers(gateway, fed.json()["id"]) == [([NAME_OUT, BIRTH_NAME_OUT], ORGANIZATION)] * 3


def test_the_epr_birth_name_form_and_an_organization_reference_are_kept_too(gateway):
    epr_birth_name = {"family": "Ledigname", "_family": {"extension": [{"url": QUALIFIER, "valueCode": "BR"}]}}
    organization = {"reference": "Organization/spital-muster", "display": "Spital Muster"}

    fed = feed(gateway, names=[{"family": "Muster", "given": ["Anna"]}, epr_birth_name], organization=organization)

    assert fed.status_code == 201, fed.text
    assert everything_pdqm_answers(gateway, fed.json()["id"]) == [
        ([NAME_OUT, BIRTH_NAME_OUT], organization)] * 3


def test_an_iti104_update_without_them_removes_them_as_a_put_replaces(gateway):
    pid = feed(gateway, names=[OFFICIAL, CH_CORE_BIRTH_NAME], organization=ORGANIZATION).json()["id"]

    updated = feed(gateway, names=[OFFICIAL])

    assert updated.status_code == 200, updated.text
    assert everything_pdqm_answers(gateway, pid) == [([NAME_OUT], None)] * 3
    other = {"identifier": {"value": "ORG-2"}}
    assert feed(gateway, names=[OFFICIAL], organization=other).status_code == 200
    assert everything_pdqm_answers(gateway, pid) == [([NAME_OUT], other)] * 3


def test_an_hl7v2_update_which_cannot_carry_them_keeps_them(gateway):
    pid = feed(gateway, names=[OFFICIAL, CH_CORE_BIRTH_NAME], organization=ORGANIZATION).json()["id"]
    feeder = Principal(role="HCP", user_id="7601000000002", user_id_qualifier="urn:gs1:gln", name="Dr. Luc Favre")

    gateway.services.identities.register_patient_record(
        principal=feeder, source=Identifier(LOCAL_SYSTEM, "L-1"),
        incoming=PatientRecord("", SPID, "Muster", ("Anna",), "1980-05-17", "female"))

    assert everything_pdqm_answers(gateway, pid) == [([NAME_OUT, BIRTH_NAME_OUT], ORGANIZATION)] * 3


def test_they_are_kept_sealed_with_the_demographics(gateway):
    pid = feed(gateway, names=[OFFICIAL, CH_CORE_BIRTH_NAME], organization=ORGANIZATION).json()["id"]

    assert everything_pdqm_answers(gateway, pid)[0] == ([NAME_OUT, BIRTH_NAME_OUT], ORGANIZATION)  # kept, and
    with gateway.runtime.engine.connect() as connection:
        raw = b"\n".join(v if isinstance(v, bytes) else str(v).encode()
                         for name, table in metadata.tables.items() for row in connection.execute(select(table))
                         for v in row)
    for secret in (b"Ledigname", b"ledigname", b"7601000201041", b"Spital Muster"):
        assert secret not in raw, secret


@pytest.mark.parametrize("names, organization, location", [
    ([OFFICIAL, CH_CORE_BIRTH_NAME, {**CH_CORE_BIRTH_NAME, "family": "Zweitname"}], None, "Patient.name"),
    ([OFFICIAL, {"use": "maiden", "given": ["Anna"]}], None, "Patient.name.family"),
    ([NAME_OUT], {"type": "Organization"}, "Patient.managingOrganization"),
])
def test_a_second_birth_name_one_without_family_or_an_empty_organization_is_a_400(gateway, names, organization,
                                                                                 location):
    response = feed(gateway, names=names, organization=organization)

    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [location]
