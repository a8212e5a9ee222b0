"""The development issuer: created once, key private to its owner, tokens shaped like CH:ADR/IUA."""

from __future__ import annotations

import base64
import json
import stat

import pytest

from gateway.auth.dev_issuer import JWKS_FILE, KEY_FILE, TRUSTED_ISSUERS_FILE, ensure_dev_issuer, mint_token

ISSUER = "https://127.0.0.1:8443/dev-issuer"
AUDIENCE = "https://127.0.0.1:8443/fhir"
NOW = 1_800_000_000


def decoded(token: str) -> tuple[dict, dict]:
    header, payload, _ = (part + "=" * (-len(part) % 4) for part in token.split("."))
    return json.loads(base64.urlsafe_b64decode(header)), json.loads(base64.urlsafe_b64decode(payload))


def test_creates_key_jwks_and_trusted_issuers(tmp_path):
    trusted = ensure_dev_issuer(tmp_path, ISSUER)
    jwks = json.loads((tmp_path / "auth" / JWKS_FILE).read_text())
    assert (trusted, json.loads(trusted.read_text()), stat.S_IMODE((tmp_path / "auth" / KEY_FILE).stat().st_mode),
            [sorted(k) for k in jwks["keys"]]) == (
        tmp_path / "auth" / TRUSTED_ISSUERS_FILE,
        {"issuers": [{"issuer": ISSUER, "jwks_file": JWKS_FILE, "token_endpoint": f"{ISSUER}/token"}]}, 0o600,
        [["alg", "crv", "kid", "kty", "use", "x", "y"]])


def test_is_idempotent_and_follows_a_new_issuer_url(tmp_path):
    ensure_dev_issuer(tmp_path, ISSUER)
    key, jwks = (tmp_path / "auth" / KEY_FILE).read_bytes(), (tmp_path / "auth" / JWKS_FILE).read_bytes()
    trusted = ensure_dev_issuer(tmp_path, "https://127.0.0.1:9443/dev-issuer")
    assert ((tmp_path / "auth" / KEY_FILE).read_bytes(), (tmp_path / "auth" / JWKS_FILE).read_bytes(),
            json.loads(trusted.read_text())["issuers"][0]["issuer"]) == (key, jwks, "https://127.0.0.1:9443/dev-issuer")


def test_tcu_token_claims(tmp_path):
    ensure_dev_issuer(tmp_path, ISSUER)
    token = mint_token(data_dir=tmp_path, issuer_url=ISSUER, audience=AUDIENCE, role="TCU",
                       user_id="infomed-migration", name="Migration", principal_gln="7601000000002",
                       principal_name="Dr. Luc Favre", now=NOW, ttl=600)
    header, claims = decoded(token)
    kid = json.loads((tmp_path / "auth" / JWKS_FILE).read_text())["keys"][0]["kid"]
    assert header == {"alg": "ES256", "kid": kid, "typ": "JWT"}
    assert {**claims, "jti": "…"} == {
        "iss": ISSUER, "sub": "infomed-migration", "aud": AUDIENCE, "iat": NOW, "nbf": NOW, "exp": NOW + 600,
        "jti": "…", "client_id": "epr-gateway-dev",
        "extensions": {
            "ihe_iua": {"subject_name": "Migration",
                        "subject_role": {"system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "TCU"},
                        "purpose_of_use": {"system": "urn:oid:2.16.756.5.30.1.127.3.10.5", "code": "AUTO"}},
            "ch_epr": {"user_id": "infomed-migration"},
            "ch_delegation": {"principal": "Dr. Luc Favre", "principal_id": "7601000000002"},
        },
    }


def test_every_token_has_its_own_jti(tmp_path):
    ensure_dev_issuer(tmp_path, ISSUER)
    tokens = [mint_token(data_dir=tmp_path, issuer_url=ISSUER, audience=AUDIENCE, role="HCP", gln="7601000000002")
              for _ in range(3)]
    assert len({decoded(t)[1]["jti"] for t in tokens}) == 3


@pytest.mark.parametrize(("claims", "message"), [
    (dict(role="PAT"), "a PAT token needs spid"),
    (dict(role="HCP"), "a HCP token needs gln"),
    (dict(role="TCU"), "a TCU token needs user_id"),
    (dict(role="ROOT", user_id="x"), "role must be one of"),
], ids=["PAT", "HCP", "TCU", "unknown-role"])
def test_refuses_to_mint_without_a_subject(tmp_path, claims, message):
    ensure_dev_issuer(tmp_path, ISSUER)
    with pytest.raises(ValueError, match=message):
        mint_token(data_dir=tmp_path, issuer_url=ISSUER, audience=AUDIENCE, **claims)


def test_minting_needs_the_issuer_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="run ensure_dev_issuer first"):
        mint_token(data_dir=tmp_path, issuer_url=ISSUER, audience=AUDIENCE, role="HCP", gln="7601000000002")
