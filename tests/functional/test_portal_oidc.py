"""Production sign-in: OpenID Connect authorization code with PKCE against an identity provider served
over real TLS on an ephemeral loopback port (a small provider written for the test: it checks the
client secret and the PKCE verifier, and signs ID tokens with its own key)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from browser.portal_driver import free_port
from conftest import POLICY_ADMIN, SPID, make_settings, running_gateway, sqlite_url
from consent.policies import FULL, Policy
from gateway.composition import create_app
from gateway.first_start import prepare
from gateway.pki import ensure_dev_pki
from gateway.exchanges.policies import PolicyChange
from gateway.pages.sessions import COOKIE
from gateway.wiring import build_runtime

CLIENT_ID, CLIENT_SECRET = "epr-portal", secrets.token_urlsafe(16)


class IdentityProvider:
    def __init__(self, pki_dir: Path):
        self.key = ECKey.generate_key("P-256", parameters={"kid": "idp-1", "use": "sig", "alg": "ES256"})
        self.port = free_port()
        self.issuer = f"https://127.0.0.1:{self.port}"
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.nonce_override: str | None = None
        pki = ensure_dev_pki(pki_dir)
        self.ca = pki.ca_cert
        app = Starlette(routes=[Route("/.well-known/openid-configuration", self.discovery),
                                Route("/authorize", self.authorize), Route("/token", self.token, methods=["POST"]),
                                Route("/jwks", self.jwks)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, ssl_certfile=str(pki.server_cert),
                                ssl_keyfile=str(pki.server_key), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the identity provider did not start"
            time.sleep(0.05)

    async def discovery(self, _request):
        return JSONResponse({"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                             "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                             "code_challenge_methods_supported": ["S256"]})

    async def authorize(self, request: Request):
        """The person signed in at the provider (the test passes their claims as `claims.*`)."""
        query = request.query_params
        assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": query["code_challenge"], "nonce": query["nonce"],
                            "redirect_uri": query["redirect_uri"], "client_id": query["client_id"],
                            "claims": {k.removeprefix("claims."): v for k, v in query.items() if k.startswith("claims.")}}
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}", 303)

    async def token(self, request: Request):
        form = dict(await request.form())
        self.token_requests.append(form)
        basic = base64.b64decode(request.headers.get("authorization", "Basic ").split(" ", 1)[1] or b"").decode()
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (basic != f"{CLIENT_ID}:{CLIENT_SECRET}" or grant is None or challenge != grant["challenge"]
                or form.get("redirect_uri") != grant["redirect_uri"]):
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": str(uuid.uuid4()), "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": self.nonce_override or grant["nonce"], **grant["claims"]}
        id_token = jwt.encode({"alg": "ES256", "kid": "idp-1"}, claims, self.key)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token})

    async def jwks(self, _request):
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def provider(tmp_path):
    idp = IdentityProvider(tmp_path / "idp-pki")
    yield idp
    idp.stop()


@pytest.fixture
def portal(tmp_path, provider):
    """The gateway configured as production with the identity provider (keys from a first start)."""
    url = sqlite_url(tmp_path)
    settings = prepare(make_settings(tmp_path / "data", url)).settings
    with running_gateway(tmp_path, url) as gateway:
        gateway.register_patient()
        mandate = Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=303, patient_spid=SPID, rule=FULL,
                         subject_id="rep-7")
        gateway.services.policies.apply(principal=POLICY_ADMIN,
                                        changes=[PolicyChange("POST", mandate.policy_set_id, mandate)])
    runtime = build_runtime(settings.model_copy(update={
        "env": "production", "portal_oidc_issuer": provider.issuer, "portal_oidc_client_id": CLIENT_ID,
        "portal_oidc_client_secret": CLIENT_SECRET, "portal_oidc_ca": provider.ca}))
    with TestClient(create_app(runtime), base_url="https://testserver", headers={"Accept-Language": "en"}) as client:
        yield client
    runtime.close()


def log_in(client, provider, claims: dict[str, str], *, state: str | None = None):
    start = client.get("/portal/oidc/login", follow_redirects=False)
    assert start.status_code == 303
    authorization = urlsplit(start.headers["location"])
    query = {k: v[0] for k, v in parse_qs(authorization.query).items()}
    assert f"{authorization.scheme}://{authorization.netloc}{authorization.path}" == f"{provider.issuer}/authorize"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["client_id"] == CLIENT_ID and query["nonce"] and query["state"]
    import httpx

    with httpx.Client(verify=str(provider.ca)) as browser:
        back = browser.get(start.headers["location"] + "&" + urlencode({f"claims.{k}": v for k, v in claims.items()}))
    callback = urlsplit(back.headers["location"])
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    if state is not None:
        params["state"] = state
    return client.get(f"{callback.path}?{urlencode(params)}", follow_redirects=False)


def test_a_patient_signs_in_with_the_identity_provider(portal, provider):
    before = portal.cookies.get(COOKIE)
    answer = log_in(portal, provider, {"epr_spid": SPID, "name": "Anna Muster"})

    assert (answer.status_code, answer.headers["location"]) == (303, "/portal/documents")
    assert portal.cookies.get(COOKIE) != before
    page = portal.get("/portal/documents")
    assert page.status_code == 200 and "Anna Muster" in page.text
    verifier = provider.token_requests[-1]["code_verifier"]
    assert len(verifier) >= 43 and verifier not in page.text  # the PKCE verifier went to the provider only


def test_a_representative_signs_in_for_the_patient_they_represent(portal, provider):
    answer = log_in(portal, provider, {"epr_representative_id": "rep-7", "epr_represented_spid": SPID,
                                       "name": "Jean Muster"})
    assert answer.headers["location"] == "/portal/documents"
    assert "Jean Muster, representative" in portal.get("/portal/documents").text


@pytest.mark.parametrize("claims", [{"epr_representative_id": "rep-unknown", "epr_represented_spid": SPID},
                                    {"epr_spid": "761337610400000000"}, {"name": "no SPID at all"}])
def test_an_identity_without_a_record_or_mandate_is_refused(portal, provider, claims):
    answer = log_in(portal, provider, claims)
    assert answer.status_code == 403
    assert portal.get("/portal/documents", follow_redirects=False).headers["location"] == "/portal/sign-in"


def test_a_callback_with_another_state_is_refused(portal, provider):
    answer = log_in(portal, provider, {"epr_spid": SPID}, state="forged-state")
    assert answer.status_code == 403
    assert provider.token_requests == []  # the code was never even exchanged
    assert portal.get("/portal/documents", follow_redirects=False).headers["location"] == "/portal/sign-in"


def test_an_id_token_for_another_login_is_refused(portal, provider):
    provider.nonce_override = "nonce-of-another-login"
    answer = log_in(portal, provider, {"epr_spid": SPID})
    assert answer.status_code == 403
    assert portal.get("/portal/documents", follow_redirects=False).headers["location"] == "/portal/sign-in"


def test_the_sign_in_page_offers_only_the_identity_provider_in_production(portal):
    page = portal.get("/portal/sign-in")
    assert 'href="/portal/oidc/login"' in page.text and "dev-sign-in" not in page.text


def test_the_callback_is_on_the_public_origin_whatever_the_host_header(portal, provider):
    start = portal.get("/portal/oidc/login", headers={"Host": "evil.example"}, follow_redirects=False)

    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["location"]).query).items()}
    assert query["redirect_uri"] == "https://testserver/portal/oidc/callback"
