"""Authentication failures as the client sees them: 401 + WWW-Authenticate + a precise outcome that
never echoes the token; 403 for a valid principal that may not do this."""

import time

import pytest

from conftest import SPID


def hcp_claims(**extra):
    return {"role": "HCP", "gln": "7601000000002", "name": "Dr. Luc Favre", **extra}


CASES = {
    "expired": (hcp_claims(ttl=60, now=time.time() - 7200), "token expired"),
    "wrong audience": (hcp_claims(extra_claims={"aud": "https://elsewhere.example/fhir"}), "wrong audience"),
    "bad GLN": (hcp_claims(gln="7601000000001"), "not a valid GLN"),
    "ASS without principal": ({"role": "ASS", "gln": "7601000000002", "name": "MPA"}, "principal"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_token_is_a_401_that_says_why(gateway, case):
    claims, words = CASES[case]
    token = gateway.tokens.mint(**claims)

    response = gateway.find(headers=gateway.tokens.headers(token))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    issue = response.json()["issue"][0]
    assert issue["code"] == "login"
    assert words in issue["diagnostics"]
    assert token not in response.text and token.split(".")[1] not in response.text


def test_tampered_payload_is_a_401(gateway):
    header, payload, signature = gateway.tokens.hcp().split(".")
    tampered = ".".join([header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature])

    response = gateway.find(headers=gateway.tokens.headers(tampered))

    assert response.status_code == 401


def test_tcu_with_norm_is_refused_at_the_door_with_403(gateway):
    token = gateway.tokens.mint(role="TCU", user_id="infomed-migration", principal_gln="7601000000002",
                                purpose="NORM")

    response = gateway.find(headers=gateway.tokens.headers(token))

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"


def test_extended_token_for_another_patient_is_a_403(gateway):
    gateway.register_patient()
    token = gateway.tokens.hcp(spid="761337610499999991")

    response = gateway.find(headers=gateway.tokens.headers(token))

    assert response.status_code == 403
    assert "another patient" in response.json()["issue"][0]["diagnostics"]


def test_extended_token_for_the_patient_of_the_request_is_served(gateway):
    gateway.register_patient()

    response = gateway.find(headers=gateway.tokens.headers(gateway.tokens.hcp(spid=SPID)))

    assert response.status_code == 200


def test_a_patient_cannot_feed_identities(gateway):
    response = gateway.client.put("/fhir/Patient?identifier=urn:oid:1.2|3", content=b"{}",
                                  headers=gateway.tokens.headers(gateway.tokens.patient()))

    assert response.status_code == 403
