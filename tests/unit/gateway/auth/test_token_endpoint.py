"""The development issuer's client credentials grant: a registered client proven by its certificate gets a
TCU token for its responsible professional that the recipient's verifier accepts; every other request is
refused with the OAuth error that names why; the registrations file is checked whole at start."""

from __future__ import annotations

import json

import pytest

from consent.principal import Principal
from gateway.auth.dev_issuer import ensure_dev_issuer
from gateway.auth.errors import AuthenticationFailed, TokenRequestRefused
from gateway.auth.issuers import TrustedIssuers
from gateway.auth.iua import TokenVerifier
from gateway.auth.token_endpoint import (
    ClientCredentialsGrant,
    TokenClients,
    TokenClientsInvalid,
    ensure_dev_token_clients,
)

ISSUER = "https://127.0.0.1:8443/dev-issuer"
OWN = "https://127.0.0.1:8443/fhir"
CARA = "https://127.0.0.1:9443/fhir"
GLN = "7601000000002"
NOW = 1_800_000_000.0
ROLE = "subject_role=urn:oid:2.16.756.5.30.1.127.3.10.6|TCU"
AUTO = "purpose_of_use=urn:oid:2.16.756.5.30.1.127.3.10.5|AUTO"
CLIENT = {"client_id": "valais-deliverer", "certificate_cn": "valais-deliverer-cert", "user_id": "valais-delivery",
          "name": "Valais delivery", "principal_gln": GLN, "principal_name": "Dr. Luc Favre"}


def registrations(tmp_path, *clients) -> TokenClients:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": list(clients or [CLIENT])}))
    return TokenClients.load(path)


@pytest.fixture
def grant(tmp_path):
    ensure_dev_issuer(tmp_path, ISSUER)
    other = dict(CLIENT, client_id="limited", certificate_cn="limited", resources=[CARA])
    return ClientCredentialsGrant(clients=registrations(tmp_path, CLIENT, other), data_dir=tmp_path,
                                  issuer_url=ISSUER, audience=OWN, now=lambda: NOW)


def verifier(tmp_path, audience: str) -> TokenVerifier:
    return TokenVerifier(issuers=TrustedIssuers.load(tmp_path / "auth" / "trusted-issuers.json"), audience=audience,
                         now=lambda: NOW + 10)


def form(**changes) -> dict[str, str]:
    values = {"grant_type": "client_credentials", "client_id": "valais-deliverer", "resource": CARA,
              "scope": f"{ROLE} {AUTO}"}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def test_a_registered_client_gets_a_tcu_token_the_recipient_accepts(grant, tmp_path):
    issued = grant.issue(form=form(), certificate_cn="valais-deliverer-cert", certificate_subject="commonName=x")

    principal = verifier(tmp_path, CARA).verify(issued.access_token)
    assert issued.answer() == {"access_token": issued.access_token, "token_type": "Bearer", "expires_in": 300,
                               "scope": f"{ROLE} {AUTO}"}
    assert principal == Principal(role="TCU", user_id="valais-delivery", name="Valais delivery", purpose_of_use="AUTO",
                                  acting_for=GLN, acting_for_name="Dr. Luc Favre", token_id=principal.token_id,
                                  issuer=ISSUER, client_id="valais-deliverer")
    assert issued.principal == Principal(role="TCU", user_id="valais-delivery", name="Valais delivery",
                                         purpose_of_use="AUTO", acting_for=GLN, acting_for_name="Dr. Luc Favre",
                                         token_id=principal.token_id, issuer=ISSUER, client_id="valais-deliverer",
                                         client_certificate="commonName=x")


def test_the_token_is_for_the_named_resource_only_else_for_this_gateway(grant, tmp_path):
    for_cara = grant.issue(form=form(), certificate_cn="valais-deliverer-cert").access_token
    for_self = grant.issue(form=form(resource=None), certificate_cn="valais-deliverer-cert").access_token

    with pytest.raises(AuthenticationFailed, match="wrong audience"):
        verifier(tmp_path, OWN).verify(for_cara)
    assert verifier(tmp_path, OWN).verify(for_self).role == "TCU"


def test_no_scope_is_tcu_with_auto_and_dicom_auto_may_be_asked(grant):
    plain = grant.issue(form=form(scope=None), certificate_cn="valais-deliverer-cert")
    dicom = grant.issue(form=form(scope="purpose_of_use=urn:oid:2.16.756.5.30.1.127.3.10.5|DICOM_AUTO"),
                        certificate_cn="valais-deliverer-cert")

    assert (plain.principal.purpose_of_use, dicom.principal.purpose_of_use) == ("AUTO", "DICOM_AUTO")


@pytest.mark.parametrize(("changes", "certificate", "status", "error", "said"), [
    (dict(grant_type=None), "valais-deliverer-cert", 400, "invalid_request", "grant_type is required"),
    (dict(grant_type="password"), "valais-deliverer-cert", 400, "unsupported_grant_type", "only client_credentials"),
    (dict(grant_type="authorization_code"), "valais-deliverer-cert", 400, "unsupported_grant_type", "only"),
    (dict(client_id=None), "valais-deliverer-cert", 400, "invalid_request", "client_id is required"),
    (dict(), None, 401, "invalid_client", "no client certificate"),
    (dict(client_id="nobody"), "valais-deliverer-cert", 401, "invalid_client", "does not belong"),
    (dict(), "another-cert", 401, "invalid_client", "does not belong"),
    (dict(client_id="limited"), "valais-deliverer-cert", 401, "invalid_client", "does not belong"),
    (dict(client_secret="hunter2"), "valais-deliverer-cert", 401, "invalid_client", "tls_client_auth"),
    (dict(client_assertion="eyJ..."), "valais-deliverer-cert", 401, "invalid_client", "tls_client_auth"),
    (dict(scope="subject_role=urn:oid:2.16.756.5.30.1.127.3.10.6|HCP"), "valais-deliverer-cert", 400,
     "invalid_scope", "TCU"),
    (dict(scope="purpose_of_use=urn:oid:2.16.756.5.30.1.127.3.10.5|EMER"), "valais-deliverer-cert", 400,
     "invalid_scope", "AUTO"),
    (dict(scope="purpose_of_use=AUTO"), "valais-deliverer-cert", 400, "invalid_scope", "AUTO"),
    (dict(scope="person_id"), "valais-deliverer-cert", 400, "invalid_scope", "TCU"),
    (dict(resource="http://127.0.0.1:9443/fhir"), "valais-deliverer-cert", 400, "invalid_target", "https"),
    (dict(resource="https://127.0.0.1:9443/fhir#x"), "valais-deliverer-cert", 400, "invalid_target", "fragment"),
    (dict(resource="https://user@127.0.0.1/fhir"), "valais-deliverer-cert", 400, "invalid_target", "https"),
    (dict(resource="https://cära.example/fhir"), "valais-deliverer-cert", 400, "invalid_target", "https"),
    (dict(resource="/fhir"), "valais-deliverer-cert", 400, "invalid_target", "absolute"),
    (dict(client_id="limited", resource=OWN), "limited", 400, "invalid_target", "may not ask"),
], ids=["no-grant", "password", "code", "no-client-id", "no-certificate", "unknown-client", "other-certificate",
        "someone-elses-client-id", "secret", "assertion", "hcp-role", "emergency", "bare-purpose", "person",
        "http-resource", "fragment", "credentials-in-url", "non-ascii", "relative", "resource-not-registered"])
def test_every_other_request_is_refused_with_the_error_that_names_why(grant, changes, certificate, status, error, said):
    with pytest.raises(TokenRequestRefused) as refused:
        grant.issue(form=form(**changes), certificate_cn=certificate)

    assert (refused.value.status, refused.value.error) == (status, error)
    assert said in refused.value.reason
    assert "hunter2" not in refused.value.reason


def test_a_registered_resource_is_granted(grant, tmp_path):
    issued = grant.issue(form=form(client_id="limited"), certificate_cn="limited")

    assert verifier(tmp_path, CARA).verify(issued.access_token).client_id == "limited"


@pytest.mark.parametrize(("entry", "said"), [
    ({k: v for k, v in CLIENT.items() if k != "principal_gln"}, "lacks principal_gln"),
    (dict(CLIENT, colour="blue"), "unknown keys colour"),
    (dict(CLIENT, principal_gln="7601000000003"), "not a valid GLN"),
    (dict(CLIENT, user_id=" padded"), "non-empty strings"),
    (dict(CLIENT, resources="https://cara.example/fhir"), "list of https URLs"),
    (dict(CLIENT, resources=["http://cara.example/fhir"]), "list of https URLs"),
    ("not an object", "must be an object"),
], ids=["missing", "unknown", "gln", "padded", "resources-string", "resources-http", "not-object"])
def test_a_registrations_file_that_cannot_be_used_is_refused_at_start(tmp_path, entry, said):
    with pytest.raises(TokenClientsInvalid, match=said):
        registrations(tmp_path, entry)


def test_a_client_id_registered_twice_is_refused(tmp_path):
    with pytest.raises(TokenClientsInvalid, match="registered twice"):
        registrations(tmp_path, CLIENT, dict(CLIENT, certificate_cn="other"))


def test_an_unreadable_registrations_file_is_refused(tmp_path):
    (tmp_path / "clients.json").write_text("{not json")
    with pytest.raises(TokenClientsInvalid, match="cannot read"):
        TokenClients.load(tmp_path / "clients.json")
    with pytest.raises(TokenClientsInvalid, match="cannot read"):
        TokenClients.load(tmp_path / "absent.json")


def test_the_development_registrations_name_the_development_client_certificate(tmp_path):
    path = ensure_dev_token_clients(tmp_path, certificate_cn="epr-dev-client", gln=GLN, name="Dr. Demo Favre")
    first = path.read_text()
    ensure_dev_token_clients(tmp_path, certificate_cn="changed", gln=GLN, name="x")  # written once, then kept

    assert path.read_text() == first
    assert TokenClients.load(path).clients[0].certificate_cn == "epr-dev-client"
    assert TokenClients.load(path).find("epr-dev-client").principal_gln == GLN
