"""A token whose lifetime (exp - iat) exceeds the configured maximum is refused (issue 10, item 11):
1 h for users, 15 min for technical users by default; `exp=1e308` and `exp=10**400` included."""

from __future__ import annotations

import pytest

from gateway.auth.dev_issuer import mint_token
from gateway.auth.errors import AuthenticationFailed
from gateway.auth.issuers import TrustedIssuers
from gateway.auth.iua import TokenVerifier
from gateway.first_start import ensure_dev_issuer

ISSUER = "https://127.0.0.1:8443/dev-issuer"
AUDIENCE = "https://127.0.0.1:8443/fhir"
NOW = 1_800_000_000
HCP_GLN = "7601000000002"


@pytest.fixture
def data_dir(tmp_path):
    ensure_dev_issuer(tmp_path, ISSUER)
    return tmp_path


def verifier(data_dir, **limits) -> TokenVerifier:
    return TokenVerifier(issuers=TrustedIssuers.load(data_dir / "auth" / "trusted-issuers.json"), audience=AUDIENCE,
                         now=lambda: NOW, **limits)


def token(data_dir, role="HCP", **claims) -> str:
    who = {"gln": HCP_GLN} if role == "HCP" else {"user_id": "migration", "principal_gln": HCP_GLN}
    return mint_token(data_dir=data_dir, issuer_url=ISSUER, audience=AUDIENCE, role=role, now=NOW, **who, **claims)


def refusal(verifier_: TokenVerifier, signed: str) -> str | None:
    try:
        verifier_.verify(signed)
    except AuthenticationFailed as refused:
        return refused.reason
    return None


@pytest.mark.parametrize("role, ttl, reason", [
    ("HCP", 3600, None), ("HCP", 3601, "token lifetime exceeds the maximum of 3600 s for role HCP"),
    ("TCU", 900, None), ("TCU", 901, "token lifetime exceeds the maximum of 900 s for role TCU"),
    ("TCU", 3600, "token lifetime exceeds the maximum of 900 s for role TCU"),
])
def test_lifetime_is_bounded_per_role(data_dir, role, ttl, reason):
    assert refusal(verifier(data_dir), token(data_dir, role=role, ttl=ttl)) == reason


@pytest.mark.parametrize("exp", [1e308, 10**400, NOW + 10 * 365 * 86400])
def test_a_far_expiry_is_refused_not_trusted_forever(data_dir, exp):
    signed = token(data_dir, extra_claims={"exp": exp})
    assert refusal(verifier(data_dir), signed) == "token lifetime exceeds the maximum of 3600 s for role HCP"


def test_the_maxima_are_configurable(data_dir):
    short = verifier(data_dir, max_lifetime_seconds=600, max_tcu_lifetime_seconds=60)
    assert refusal(short, token(data_dir, ttl=601)) == "token lifetime exceeds the maximum of 600 s for role HCP"
    assert refusal(short, token(data_dir, role="TCU", ttl=61)) == "token lifetime exceeds the maximum of 60 s for role TCU"
    assert refusal(short, token(data_dir, role="TCU", ttl=60)) is None
