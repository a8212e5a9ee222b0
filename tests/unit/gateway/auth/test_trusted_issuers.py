"""TrustedIssuers: configuration is checked at load; JWKS URLs are fetched lazily, re-fetched on an
unknown kid at most once a minute (no DoS amplification) and refreshed hourly; failures keep old keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from gateway.auth.errors import AuthenticationFailed
from gateway.auth.issuers import TrustedIssuers, TrustedIssuersInvalid

IDP = "https://idp.example.ch"
JWKS_URL = "https://idp.example.ch/.well-known/jwks.json"


class FakeIdp:
    """An issuer's JWKS endpoint (httpx.MockTransport) that counts its requests."""

    def __init__(self) -> None:
        self.keys: dict[str, ECKey] = {"k1": ECKey.generate_key("P-256")}
        self.requests = 0
        self.status = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        jwks = {"keys": [{**key.as_dict(private=False), "kid": kid} for kid, key in self.keys.items()]}
        return httpx.Response(self.status, json=jwks)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_issuers(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"issuers": entries}))
    return path


@pytest.fixture
def idp() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuers(tmp_path, idp, clock) -> TrustedIssuers:
    path = write_issuers(tmp_path / "issuers.json", [{"issuer": IDP, "jwks_url": JWKS_URL}])
    return TrustedIssuers.load(path, http=httpx.Client(transport=httpx.MockTransport(idp.handler)), monotonic=clock)


def test_url_keys_are_fetched_once_for_known_kids(issuers, idp):
    first = issuers.key_for(issuer=IDP, kid="k1")
    second = issuers.key_for(issuer=IDP, kid="k1")
    assert (first.thumbprint(), second.thumbprint(), idp.requests) == (idp.keys["k1"].thumbprint(),) * 2 + (1,)


def unknown_kid(issuers: TrustedIssuers, kid: str) -> str:
    with pytest.raises(AuthenticationFailed) as refused:
        issuers.key_for(issuer=IDP, kid=kid)
    return refused.value.reason


def test_unknown_kid_refetches_at_most_once_a_minute(issuers, idp, clock):
    issuers.key_for(issuer=IDP, kid="k1")
    clock.now += 61
    reasons = [unknown_kid(issuers, f"forged-{n}") for n in range(50)]
    assert (set(reasons), idp.requests) == ({"unknown signing key (kid)"}, 2)


def test_rotated_key_is_found_on_the_next_allowed_fetch(issuers, idp, clock):
    issuers.key_for(issuer=IDP, kid="k1")
    idp.keys["k2"] = ECKey.generate_key("P-256")
    clock.now += 30
    too_early = unknown_kid(issuers, "k2")
    clock.now += 31
    found = issuers.key_for(issuer=IDP, kid="k2")
    assert (too_early, found.thumbprint(), idp.requests) == ("unknown signing key (kid)",
                                                             idp.keys["k2"].thumbprint(), 2)


def test_withdrawn_key_is_dropped_after_an_hour(issuers, idp, clock):
    issuers.key_for(issuer=IDP, kid="k1")
    idp.keys = {"k2": ECKey.generate_key("P-256")}
    clock.now += 3600
    assert (unknown_kid(issuers, "k1"), idp.requests) == ("unknown signing key (kid)", 2)


def test_failed_refresh_keeps_the_known_keys(issuers, idp, clock):
    known = issuers.key_for(issuer=IDP, kid="k1")
    idp.status = 503
    clock.now += 3600
    assert (issuers.key_for(issuer=IDP, kid="k1").thumbprint(), idp.requests) == (known.thumbprint(), 2)


def test_unreachable_issuer_means_unknown_kid(tmp_path, clock):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    path = write_issuers(tmp_path / "issuers.json", [{"issuer": IDP, "jwks_url": JWKS_URL}])
    issuers = TrustedIssuers.load(path, http=httpx.Client(transport=httpx.MockTransport(down)), monotonic=clock)
    assert unknown_kid(issuers, "k1") == "unknown signing key (kid)"


def test_unknown_issuer(issuers, idp):
    with pytest.raises(AuthenticationFailed) as refused:
        issuers.key_for(issuer="https://idp.attacker.example", kid="k1")
    assert (refused.value.reason, idp.requests) == ("unknown issuer", 0)


def test_symmetric_and_encryption_keys_are_never_trusted(tmp_path):
    signing = ECKey.generate_key("P-256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "enc", "use": "enc"},
        {**signing.as_dict(private=True), "kid": "sig"},
    ]}))
    issuers = TrustedIssuers.load(write_issuers(tmp_path / "issuers.json", [{"issuer": IDP, "jwks_file": "jwks.json"}]))
    reasons = [unknown_kid(issuers, kid) for kid in ("hmac", "enc")]
    key = issuers.key_for(issuer=IDP, kid="sig")
    assert (reasons, key.is_private, key.thumbprint()) == (["unknown signing key (kid)"] * 2, False,
                                                           signing.thumbprint())


def test_relative_jwks_file_is_relative_to_the_issuers_file(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir()
    key = ECKey.generate_key("P-256")
    (config / "idp.jwks.json").write_text(json.dumps({"keys": [{**key.as_dict(private=False), "kid": "k1"}]}))
    write_issuers(config / "issuers.json", [{"issuer": IDP, "jwks_file": "idp.jwks.json"}])
    monkeypatch.chdir(tmp_path)
    issuers = TrustedIssuers.load(Path("config/issuers.json"))
    assert (issuers.issuers, issuers.key_for(issuer=IDP, kid="k1").thumbprint()) == ((IDP,), key.thumbprint())


@pytest.mark.parametrize(("entries", "message"), [
    ([], "no trusted issuer configured"),
    ([{"issuer": IDP, "jwks_url": "http://idp.example.ch/jwks"}], "jwks_url must be https"),
    ([{"issuer": IDP}], "exactly one of 'jwks_file' or 'jwks_url' is required"),
    ([{"issuer": IDP, "jwks_url": JWKS_URL, "jwks_file": "x.json"}], "exactly one of"),
    ([{"jwks_url": JWKS_URL}], "'issuer' (string) is required"),
    ([{"issuer": IDP, "jwks_url": JWKS_URL}, {"issuer": IDP, "jwks_url": JWKS_URL}], "is listed twice"),
    ([{"issuer": IDP, "jwks_file": "missing.json"}], "cannot read JWKS"),
], ids=["empty", "http", "no-keys", "both", "no-issuer", "twice", "missing-file"])
def test_invalid_configuration_is_refused_at_load(tmp_path, entries, message):
    with pytest.raises(TrustedIssuersInvalid, match=re.escape(message)):
        TrustedIssuers.load(write_issuers(tmp_path / "issuers.json", entries))
