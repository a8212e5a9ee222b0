"""Discovery over HTTP: the CapabilityStatement is what the routes serve (no drift either way), the SMART
configuration and the OpenAPI description are public metadata and can be switched off."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from conftest import SEARCH, SPID, running_gateway, sqlite_url
from gateway.http.capability import IMPLEMENTATION_GUIDE, INSTANTIATES, OAUTH_URIS
from gateway.http.route_table import every_route
from gateway.http.search_parameters import SEARCHES

# One request per interaction kind, to show the declared interaction is served (not a 404/405).
# An update or delete may be conditional (`PUT /fhir/Patient?identifier=…`): either form counts.
PROBE = {"read": [("GET", "/fhir/{type}/x")], "update": [("PUT", "/fhir/{type}/x"), ("PUT", "/fhir/{type}?identifier=x")],
         "delete": [("DELETE", "/fhir/{type}/x"), ("DELETE", "/fhir/{type}?identifier=x")],
         "create": [("POST", "/fhir/{type}")], "search-type": [("GET", "/fhir/{type}")],
         "vread": [("GET", "/fhir/{type}/x/_history/1")]}


@pytest.fixture
def statement(sqlite_gateway) -> dict:
    answer = sqlite_gateway.client.get("/fhir/metadata")
    assert answer.status_code == 200
    CapabilityStatement.model_validate(answer.json())
    return answer.json()


def test_the_statement_declares_every_fhir_route_of_the_app(sqlite_gateway, statement):
    declared = {(r["type"], i["code"]) for r in statement["rest"][0]["resource"] for i in r["interaction"]}
    operations = {(r["type"], o["name"]) for r in statement["rest"][0]["resource"] for o in r.get("operation", [])}
    routes = [r for r in every_route(sqlite_gateway.client.app.routes)
              if r.path.startswith("/fhir/") and r.path.rstrip("/") not in ("/fhir", "/fhir/metadata")
              and "/.well-known/" not in r.path]  # discovery (public, SMART) is no FHIR interaction

    for route in routes:
        kind, _, rest = route.path.removeprefix("/fhir/").partition("/")
        operation = rest.rsplit("/", 1)[-1] if "$" in rest else None
        assert (kind, operation[1:]) in operations if operation else any(k == kind for k, _ in declared), route.path
    assert {"transaction"} == {i["code"] for i in statement["rest"][0]["interaction"]}
    assert ("Patient", "ihe-pix") in operations and ("Patient", "merge") in operations


def test_every_declared_interaction_is_served(sqlite_gateway, statement):
    hcp = sqlite_gateway.as_hcp()
    for resource in statement["rest"][0]["resource"]:
        for interaction in resource["interaction"]:
            answers = [sqlite_gateway.client.request(method, path.format(type=resource["type"]), content=b"{}",
                                                     headers=hcp) for method, path in PROBE[interaction["code"]]]
            served = [a for a in answers if a.status_code != 405 and not (
                a.status_code == 404 and "no such resource or interaction" in a.text)]
            assert served, (resource["type"], interaction["code"], [a.status_code for a in answers])


def test_every_declared_search_parameter_is_accepted_by_its_search(sqlite_gateway, statement):
    sqlite_gateway.register_patient()
    patient = sqlite_gateway.tokens.headers(sqlite_gateway.tokens.patient())
    required = {"DocumentReference": {"patient.identifier": SEARCH + SPID},
                "List": {"patient.identifier": SEARCH + SPID, "code": "submissionset"},
                "AuditEvent": {"entity.identifier": SEARCH + SPID}}
    searched = {r["type"]: [p["name"] for p in r.get("searchParam", [])] for r in statement["rest"][0]["resource"]}

    assert {s.resource for s in SEARCHES} <= set(searched)
    for kind, names in searched.items():
        for name in names:
            params = {**required.get(kind, {}), name: "1"}
            answer = sqlite_gateway.client.get(f"/fhir/{kind}", params=params, headers=patient)
            assert f"unknown or unsupported search parameter(s): {name}" not in answer.text, (kind, name)
            assert "unknown" not in answer.text.lower() or answer.status_code == 200, (kind, name, answer.text)


def test_the_statement_names_the_actors_the_guide_and_the_security(tmp_path):
    issuers = tmp_path / "issuers.json"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    issuers.write_text(json.dumps({"issuers": [{"issuer": "https://iam.example/realms/epr", "jwks_file": "jwks.json",
                                                "token_endpoint": "https://iam.example/token",
                                                "authorization_endpoint": "https://iam.example/authorize"}]}))
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.runtime.settings.trusted_issuers = issuers
        statement = gateway.client.get("/fhir/metadata").json()
        smart = gateway.client.get("/.well-known/smart-configuration")

    CapabilityStatement.model_validate(statement)
    assert statement["instantiates"] == list(INSTANTIATES)
    assert "http://fhir.ch/ig/ch-epr-fhir/CapabilityStatement/PatientAuditRecordRepositoryCapabilityStatement" in \
        statement["instantiates"]  # CH:ATC's actor (ITI-81), not the ATNA repository the gateway is not
    assert statement["implementationGuide"] == [IMPLEMENTATION_GUIDE]
    assert statement["rest"][0]["security"]["extension"] == [{"url": OAUTH_URIS, "extension": [
        {"url": "authorize", "valueUri": "https://iam.example/authorize"},
        {"url": "token", "valueUri": "https://iam.example/token"}]}]
    assert smart.status_code == 200
    assert smart.json()["issuer"] == "https://iam.example/realms/epr"
    assert smart.json()["token_endpoint"] == "https://iam.example/token"
    assert smart.json()["epr_trusted_issuers"] == [{"issuer": "https://iam.example/realms/epr",
                                                   "token_endpoint": "https://iam.example/token",
                                                   "authorization_endpoint": "https://iam.example/authorize"}]


def test_smart_configuration_is_public_and_names_the_scopes(sqlite_gateway):
    smart = sqlite_gateway.client.get("/.well-known/smart-configuration")
    at_base = sqlite_gateway.client.get("/fhir/.well-known/smart-configuration")  # where SMART clients look

    assert (at_base.status_code, at_base.json()) == (200, smart.json())

    assert smart.status_code == 200
    assert smart.json()["issuer"].endswith("/dev-issuer")
    assert "subject_role=urn:oid:2.16.756.5.30.1.127.3.10.6|HCP" in smart.json()["scopes_supported"]
    assert "keys" not in smart.text and "BEGIN" not in smart.text


def test_openapi_and_docs_are_public_and_describe_the_plain_routes_too(sqlite_gateway):
    openapi = sqlite_gateway.client.get("/openapi.json")
    docs = sqlite_gateway.client.get("/docs")

    assert openapi.status_code == 200 and docs.status_code == 200
    assert {"/fhir/DocumentReference", "/fhir/Binary/{entry_id}", "/fhir/Consent", "/fhir"} <= set(openapi.json()["paths"])
    assert "swagger" in docs.text.lower()


def test_openapi_and_docs_can_be_switched_off(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), api_docs=False) as gateway:
        answers = [gateway.client.get("/openapi.json").status_code, gateway.client.get("/docs").status_code]

    assert answers == [404, 404]
