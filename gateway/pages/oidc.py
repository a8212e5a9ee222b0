"""Production sign-in: OpenID Connect authorization code flow with PKCE (S256), through Authlib.

The identity provider is configured by `EPR_PORTAL_OIDC_ISSUER`, `_CLIENT_ID`, `_CLIENT_SECRET` (and
`_CA` for a private CA). Its discovery document names the endpoints; the ID token is verified here
with joserfc against the provider's JWKS: algorithm allow-list, `iss`, `aud`, `exp`, `iat`, and the
`nonce` this login sent. State, nonce and the PKCE verifier stay in the server-side session.

The ID token's claims name the person: `EPR_PORTAL_OIDC_SPID_CLAIM` (default `epr_spid`) for a
patient; `EPR_PORTAL_OIDC_REPRESENTATIVE_CLAIM` and `_REPRESENTED_CLAIM` for a representative and the
patient they act for. The MPI and the patient's 303 then decide (`PortalExchange.sign_in`).
"""

from __future__ import annotations

import ssl
import time
import warnings
from dataclasses import dataclass
from typing import Any

import authlib.deprecate  # noqa: F401 - first, so that its "always show" filter comes before ours below
import httpx
from authlib.common.security import generate_token

# Authlib 1.9 warns, once per process at import, that its httpx client falls back from `httpx2` to
# `httpx`: httpx is what this gateway pins and uses, so the warning tells a user of any command
# nothing. Silenced for that one import and that one message only (other warnings still show).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated", category=DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from adapters.cara.identifier_syntax import is_spid

ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]
DISCOVERY_MAX_AGE_SECONDS = 3600.0
CLOCK_SKEW_SECONDS = 60


class SignInFailed(Exception):
    """The identity provider's answer could not be trusted (the reason is logged, not shown)."""


@dataclass(frozen=True)
class Identity:
    role: str  # PAT or REP
    user_id: str
    patient_spid: str
    name: str


class OidcClient:
    def __init__(self, settings):
        self.issuer = settings.portal_oidc_issuer.rstrip("/")
        self.client_id = settings.portal_oidc_client_id
        self.client_secret = settings.portal_oidc_client_secret
        self.redirect_url = settings.portal_oidc_redirect_url
        self.claims = (settings.portal_oidc_spid_claim, settings.portal_oidc_representative_claim,
                       settings.portal_oidc_represented_claim)
        self._verify: ssl.SSLContext | bool = (ssl.create_default_context(cafile=str(settings.portal_oidc_ca))
                                                if settings.portal_oidc_ca else True)
        self._discovery: tuple[float, dict[str, Any]] | None = None

    async def _metadata(self) -> dict[str, Any]:
        if self._discovery and time.monotonic() - self._discovery[0] < DISCOVERY_MAX_AGE_SECONDS:
            return self._discovery[1]
        async with httpx.AsyncClient(verify=self._verify, timeout=5) as client:
            answer = await client.get(f"{self.issuer}/.well-known/openid-configuration")
        answer.raise_for_status()
        metadata = answer.json()
        if metadata.get("issuer", "").rstrip("/") != self.issuer:
            raise SignInFailed("the discovery document names another issuer")
        self._discovery = (time.monotonic(), metadata)
        return metadata

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=self.client_id, client_secret=self.client_secret, scope="openid profile",
                                 redirect_uri=redirect_uri, code_challenge_method="S256", verify=self._verify,
                                 timeout=5)

    async def start(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL and what the callback must find again in the session."""
        metadata = await self._metadata()
        login = {"state": generate_token(32), "nonce": generate_token(32), "code_verifier": generate_token(64),
                 "redirect_uri": self.redirect_url or redirect_uri}
        async with self._client(login["redirect_uri"]) as client:
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=login["state"],
                                                     nonce=login["nonce"], code_verifier=login["code_verifier"])
        return url, login

    async def finish(self, *, login: dict[str, str], state: str | None, code: str | None) -> Identity:
        if not login or not state or state != login.get("state") or not code:
            raise SignInFailed("state does not match this browser's login")
        metadata = await self._metadata()
        async with self._client(login["redirect_uri"]) as client:
            try:
                token = await client.fetch_token(metadata["token_endpoint"], code=code,
                                                 code_verifier=login["code_verifier"],
                                                 grant_type="authorization_code")
            except Exception as error:  # the provider refused the code: not a reason to show
                raise SignInFailed(f"token endpoint refused the code ({type(error).__name__})") from None
        id_token = token.get("id_token")
        if not id_token:
            raise SignInFailed("no id_token in the token answer")
        claims = await self._verified_claims(id_token, metadata, login["nonce"])
        return self._identity(claims)

    async def _verified_claims(self, id_token: str, metadata: dict[str, Any], nonce: str) -> dict[str, Any]:
        async with httpx.AsyncClient(verify=self._verify, timeout=5) as client:
            answer = await client.get(metadata["jwks_uri"])
        answer.raise_for_status()
        try:
            keys = KeySet.import_key_set(answer.json())
            decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(leeway=CLOCK_SKEW_SECONDS, iss={"essential": True, "value": self.issuer},
                                  aud={"essential": True, "value": self.client_id},
                                  exp={"essential": True}, iat={"essential": True},
                                  nonce={"essential": True, "value": nonce}).validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise SignInFailed(f"ID token refused: {type(error).__name__}") from None
        return decoded.claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        spid_claim, representative_claim, represented_claim = self.claims
        name = str(claims.get("name") or " ".join(str(claims.get(k, "")) for k in ("given_name", "family_name"))).strip()
        representative = claims.get(representative_claim)
        if representative:
            spid = str(claims.get(represented_claim) or "")
            if not is_spid(spid):
                raise SignInFailed("a representative's token names no represented EPR-SPID")
            return Identity("REP", str(representative), spid, name)
        spid = str(claims.get(spid_claim) or "")
        if not is_spid(spid):
            raise SignInFailed("the ID token names no EPR-SPID")
        return Identity("PAT", spid, spid, name)


def oidc_client(settings) -> OidcClient | None:
    if not settings.portal_oidc_issuer:
        return None
    if not settings.portal_oidc_client_id:
        raise ValueError("EPR_PORTAL_OIDC_ISSUER needs EPR_PORTAL_OIDC_CLIENT_ID (and usually _CLIENT_SECRET)")
    return OidcClient(settings)
