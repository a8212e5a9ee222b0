"""The physicians' production sign-in: OpenID Connect (code + PKCE) against the professionals' identity
provider over real TLS on loopback (the test provider of test_portal_oidc), with two factors proven by
`acr` or `amr`, a GLN, and for an assistant the professional they work for; anything else refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import HCP_GLN, make_settings, running_gateway, sqlite_url
from functional.test_portal_oidc import CLIENT_ID, CLIENT_SECRET, IdentityProvider
from gateway.composition import create_app
from gateway.first_start import prepare
from gateway.hcp.site import COOKIE
from gateway.wiring import build_runtime

LOA = "urn:example:loa:two-factor"
ASSISTANT_GLN = "7601000000019"


class ProfessionalsProvider(IdentityProvider):
    """The test provider, with `amr` (a list in an ID token) given as `claims.amr=pwd,otp`."""

    async def authorize(self, request):
        answer = await super().authorize(request)
        self.asked = dict(request.query_params)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        claims = self.codes[code]["claims"]
        if "amr" in claims:
            claims["amr"] = claims["amr"].split(",")
        return answer


@pytest.fixture
def provider(tmp_path):
    idp = ProfessionalsProvider(tmp_path / "idp-pki")
    yield idp
    idp.stop()


def production(tmp_path, provider, **overrides):
    url = sqlite_url(tmp_path)
    settings = prepare(make_settings(tmp_path / "data", url)).settings
    with running_gateway(tmp_path, url) as gateway:
        gateway.register_patient()
    return settings.model_copy(update={
        "env": "production", "hcp_oidc_issuer": provider.issuer, "hcp_oidc_client_id": CLIENT_ID,
        "hcp_oidc_client_secret": CLIENT_SECRET, "hcp_oidc_ca": provider.ca, "hcp_oidc_acr": LOA,
        "hcp_oidc_amr": "otp,hwk", **overrides})


@pytest.fixture
def page(tmp_path, provider):
    runtime = build_runtime(production(tmp_path, provider))
    with TestClient(create_app(runtime), base_url="https://testserver", headers={"Accept-Language": "en"}) as client:
        client.runtime = runtime
        yield client
    runtime.close()


def log_in(client, provider, claims: dict[str, str]):
    start = client.get("/hcp/oidc/login", follow_redirects=False)
    assert start.status_code == 303
    with httpx.Client(verify=str(provider.ca)) as browser:
        back = browser.get(start.headers["location"] + "&" + urlencode({f"claims.{k}": v for k, v in claims.items()}))
    callback = urlsplit(back.headers["location"])
    return client.get(f"{callback.path}?{callback.query}", follow_redirects=False)


FAVRE = {"gln": HCP_GLN, "name": "Dr. Luc Favre", "organisation": "Cabinet Favre"}


@pytest.mark.parametrize("proof", [{"acr": LOA}, {"amr": "pwd,otp"}, {"amr": "hwk"}])
def test_a_professional_signs_in_with_two_factors(page, provider, proof):
    before = page.cookies.get(COOKIE)
    answer = log_in(page, provider, {**FAVRE, **proof})

    assert (answer.status_code, answer.headers["location"]) == (303, "/hcp/patients")
    assert page.cookies.get(COOKIE) != before
    assert "Dr. Luc Favre" in page.get("/hcp/patients").text
    assert provider.asked["acr_values"] == LOA and provider.asked["code_challenge_method"] == "S256"
    signed_in = [r for r in page.runtime.ledger.all_records() if r["subtype"][0]["code"] == "hcp-sign-in"]
    assert [(a["altId"], a["name"]) for r in signed_in for a in r["agent"] if a.get("requestor")] == [
        (HCP_GLN, "Dr. Luc Favre")]


@pytest.mark.parametrize("claims", [
    FAVRE,  # no acr, no amr: one factor as far as anyone can tell
    {**FAVRE, "acr": "urn:example:loa:password"},
    {**FAVRE, "amr": "pwd"},
    {"name": "No GLN", "acr": LOA},
    {**FAVRE, "gln": "7601000000003", "acr": LOA},  # a GLN with a wrong check digit
    {"gln": ASSISTANT_GLN, "name": "Ana", "epr_role": "ASS", "acr": LOA},  # an assistant without delegation
])
def test_a_sign_in_without_two_factors_a_gln_or_a_delegation_is_refused(page, provider, claims):
    answer = log_in(page, provider, claims)

    assert answer.status_code == 403
    assert "The sign-in could not be completed" in answer.text or "This sign-in was refused" in answer.text
    assert page.get("/hcp/patients", follow_redirects=False).headers["location"] == "/hcp/sign-in"


def test_an_assistant_signs_in_for_the_professional_they_work_for(page, provider):
    answer = log_in(page, provider, {"gln": ASSISTANT_GLN, "name": "Ana Assistant", "epr_acting_for": HCP_GLN,
                                     "epr_acting_for_name": "Dr. Luc Favre", "acr": LOA})

    assert answer.headers["location"] == "/hcp/patients"
    assert "Ana Assistant, assistant of Dr. Luc Favre" in page.get("/hcp/patients").text


def test_the_sign_in_page_offers_only_the_identity_provider_and_the_callback_is_on_the_public_origin(page):
    sign_in_page = page.get("/hcp/sign-in")
    assert 'href="/hcp/oidc/login"' in sign_in_page.text and "dev-sign-in" not in sign_in_page.text
    start = page.get("/hcp/oidc/login", headers={"Host": "evil.example"}, follow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
    assert query["redirect_uri"] == "https://testserver/hcp/oidc/callback"


def test_a_provider_without_a_two_factor_rule_stops_the_start(tmp_path, provider):
    settings = production(tmp_path, provider, hcp_oidc_acr="", hcp_oidc_amr="")
    runtime = build_runtime(settings)
    try:
        with pytest.raises(ValueError, match="EPR_HCP_OIDC_ACR or EPR_HCP_OIDC_AMR"):
            create_app(runtime)
    finally:
        runtime.close()
