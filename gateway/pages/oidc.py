"""Production sign-in of the web pages: OpenID Connect authorization code flow with PKCE (S256), through
Authlib.

Each page has its own identity provider (the patients' `EPR_PORTAL_OIDC_*`, the professionals'
`EPR_HCP_OIDC_*`): issuer, client id and secret, and a CA for a private one. The provider's discovery
document names the endpoints; the ID token is verified here with joserfc against the provider's JWKS:
algorithm allow-list, `iss`, `aud`, `exp`, `iat`, and the `nonce` this login sent. State, nonce and the
PKCE verifier stay in the server-side session. What the verified claims name (a patient, a professional)
is each page's to read (`gateway.portal.identity`, `gateway.hcp.identity`).
"""

from __future__ import annotations

import ssl
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
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

ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]
DISCOVERY_MAX_AGE_SECONDS = 3600.0
CLOCK_SKEW_SECONDS = 60


class SignInFailed(Exception):
    """The identity provider's answer could not be trusted (the reason is logged, not shown)."""


@dataclass(frozen=True)
class Provider:
    """One page's identity provider, as configured. `acr_values`: asked for at login (e.g. two-factor)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    redirect_url: str | None = None
    ca: Path | None = None
    acr_values: str | None = None


class OidcClient:
    def __init__(self, provider: Provider):
        self.issuer = provider.issuer.rstrip("/")
        self.client_id = provider.client_id
        self.client_secret = provider.client_secret
        self.redirect_url = provider.redirect_url
        self.acr_values = provider.acr_values
        self._verify: ssl.SSLContext | bool = (ssl.create_default_context(cafile=str(provider.ca))
                                                if provider.ca else True)
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
            extra = {"acr_values": self.acr_values} if self.acr_values else {}
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"], state=login["state"],
                                                     nonce=login["nonce"], code_verifier=login["code_verifier"], **extra)
        return url, login

    async def finish(self, *, login: dict[str, str], state: str | None, code: str | None) -> dict[str, Any]:
        """The verified ID token's claims of the login this browser started, or SignInFailed."""
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
        return await self._verified_claims(id_token, metadata, login["nonce"])

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
