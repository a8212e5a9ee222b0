"""`POST /dev-issuer/token`, the development issuer's token endpoint: announced in the SMART configuration
and the CapabilityStatement; a registered client proven by its certificate gets a TCU token that works,
recorded in the ledger; each refusal in OAuth's terms, recorded too; absent in production. Over real
mutual TLS against a `serve` process, and in process (where the certificate's CN is put where the
server's TLS protocol puts it, `ClientCertificateProtocol`)."""

from __future__ import annotations

import httpx
import pytest

from conftest import running_gateway, sqlite_url
from functional.helpers import one_document_bundle
from functional.test_tls_server import Server, free_port
from gateway.composition import create_app
from gateway.http.capability import OAUTH_URIS
from gateway.pki import ensure_dev_pki, issue_client_certificate
from starlette.testclient import TestClient

TOKEN_URL = "https://127.0.0.1:8443/dev-issuer/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ledger(gateway) -> list[tuple]:
    """(transaction, outcome, role, user, description) of each record."""
    found = []
    for event in gateway.services.auditor.ledger.all_records():
        transaction = next(c["code"] for c in event["subtype"] if c["system"] == "urn:ihe:event-type-code") \
            if any(c["system"] == "urn:ihe:event-type-code" for c in event.get("subtype", [])) else None
        user = next((a for a in event["agent"] if a.get("requestor")), None)
        found.append((transaction, event["outcome"], user and user["role"][0]["coding"][0]["code"],
                      user and user["altId"], event.get("outcomeDesc")))
    return found


def test_the_token_endpoint_is_announced_in_the_smart_configuration_and_the_capability_statement(sqlite_gateway):
    smart = sqlite_gateway.client.get("/.well-known/smart-configuration").json()
    statement = sqlite_gateway.client.get("/fhir/metadata").json()

    assert smart["token_endpoint"] == TOKEN_URL
    assert "tls_client_auth" in smart["token_endpoint_auth_methods_supported"]
    assert "client_credentials" in smart["grant_types_supported"]
    assert statement["rest"][0]["security"]["extension"] == [
        {"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": TOKEN_URL}]}]


def test_a_registered_client_gets_a_token_that_works_and_is_recorded(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    gateway.client.app_state["tls_client_common_name"] = "epr-dev-client"  # as the TLS protocol sets it
    gateway.client.app_state["tls_client_subject"] = "commonName=epr-dev-client"

    answer = gateway.client.post("/dev-issuer/token", content=b"grant_type=client_credentials&client_id=epr-dev-client",
                                 headers=FORM)
    token = answer.json()["access_token"]
    provided = gateway.provide(one_document_bundle(author_role="TCU"),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})

    assert answer.status_code == 200, answer.text
    assert (answer.headers["cache-control"], answer.headers["pragma"]) == ("no-store", "no-cache")
    assert {k: v for k, v in answer.json().items() if k != "access_token"} == {
        "token_type": "Bearer", "expires_in": 300,
        "scope": "subject_role=urn:oid:2.16.756.5.30.1.127.3.10.6|TCU "
                 "purpose_of_use=urn:oid:2.16.756.5.30.1.127.3.10.5|AUTO"}
    assert provided.status_code == 200, provided.text
    issued, stored = [r for r in ledger(gateway) if r[0] in ("ITI-71", "ITI-65")]
    assert issued == ("ITI-71", "0", "TCU", "epr-dev-client", None)
    assert stored[:4] == ("ITI-65", "0", "TCU", "epr-dev-client")


@pytest.mark.parametrize(("body", "headers", "status", "error"), [
    (b"grant_type=client_credentials&client_id=epr-dev-client", FORM, 401, "invalid_client"),  # no certificate
    (b'{"grant_type": "client_credentials"}', {"Content-Type": "application/json"}, 400, "invalid_request"),
    (b"grant_type=client_credentials&grant_type=password&client_id=x", FORM, 400, "invalid_request"),
    (b"grant_type=client_credentials&client_id=\xc3\xa9", FORM, 400, "invalid_request"),
    (b"grant_type=client_credentials&client_id=x&" + b"a=1&" * 20, FORM, 400, "invalid_request"),
    (b"grant_type=password&username=a&password=b", FORM, 400, "unsupported_grant_type"),
    (b"", FORM, 400, "invalid_request"),
], ids=["no-certificate", "json", "twice", "not-ascii", "too-many-fields", "password", "empty"])
def test_each_refusal_is_an_oauth_error_and_is_recorded(sqlite_gateway, body, headers, status, error):
    answer = sqlite_gateway.client.post("/dev-issuer/token", content=body, headers=headers)

    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json()["error"] == error and answer.json()["error_description"]
    assert ledger(sqlite_gateway)[-1] == ("ITI-71", "4", None, None, answer.json()["error_description"])


def test_a_certificate_of_an_unregistered_client_is_refused(sqlite_gateway):
    sqlite_gateway.client.app_state["tls_client_common_name"] = "stranger"

    answer = sqlite_gateway.client.post("/dev-issuer/token", content=b"grant_type=client_credentials&client_id=stranger",
                                        headers=FORM)

    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


def test_without_a_development_issuer_the_endpoint_is_absent(tmp_path):
    """What production builds (`wiring.dev_token_grant` gives None there): 404, nothing issued."""
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.runtime.token_grant = None
        with TestClient(create_app(gateway.runtime), base_url="https://testserver") as client:
            client.app_state["tls_client_common_name"] = "epr-dev-client"
            answer = client.post("/dev-issuer/token", content=b"grant_type=client_credentials&client_id=epr-dev-client",
                                 headers=FORM)

    assert answer.status_code == 404
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert "access_token" not in answer.text


def test_production_builds_no_token_endpoint(tmp_path):
    from gateway.settings import Settings
    from gateway.wiring import dev_token_grant

    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:  # the development issuer and clients exist
        development = gateway.runtime.settings
        production = Settings(**{**development.model_dump(), "env": "production"})

        assert dev_token_grant(development) is not None
        assert dev_token_grant(production) is None


@pytest.fixture
def server(tmp_path):
    pki = ensure_dev_pki(tmp_path / "data" / "pki")
    running = Server(tmp_path / "data", free_port(), EPR_CLIENT_CA=str(pki.ca_cert))
    yield running
    running.stop()


def test_over_mutual_tls_the_certificate_is_the_credential(server, tmp_path):
    url = f"{server.base}/dev-issuer/token"
    form = {"grant_type": "client_credentials", "client_id": "epr-dev-client", "resource": f"{server.base}/fhir"}
    stranger = server.client_context(with_certificate=False)
    stranger.load_cert_chain(*map(str, issue_client_certificate(server.pki, "stranger", tmp_path)))

    with httpx.Client(verify=server.client_context(with_certificate=True), timeout=10) as client:
        issued = client.post(url, data=form)
        token = issued.json()["access_token"]
        used = client.post(f"{server.base}/fhir", content=b"{}", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
    with httpx.Client(verify=server.client_context(with_certificate=False), timeout=10) as client:
        anonymous = client.post(url, data=form)
    with httpx.Client(verify=stranger, timeout=10) as client:
        other = client.post(url, data=form)

    assert issued.status_code == 200, issued.text
    assert used.status_code == 400, used.text  # past the door: the token is accepted, `{}` is no Bundle
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")
    assert "no client certificate" in anonymous.json()["error_description"]
    assert (other.status_code, other.json()["error"]) == (401, "invalid_client")
