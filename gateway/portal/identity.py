"""Who the patients' identity provider names: a patient by their EPR-SPID, or a representative and the
patient they act for (`EPR_PORTAL_OIDC_SPID_CLAIM`, `_REPRESENTATIVE_CLAIM`, `_REPRESENTED_CLAIM`). The MPI
and the patient's 303 then decide (`PortalExchange.sign_in`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.cara.identifier_syntax import is_spid
from gateway.pages.oidc import OidcClient, Provider, SignInFailed


@dataclass(frozen=True)
class Identity:
    role: str  # PAT or REP
    user_id: str
    patient_spid: str
    name: str


def oidc_client(settings) -> OidcClient | None:
    if not settings.portal_oidc_issuer:
        return None
    if not settings.portal_oidc_client_id:
        raise ValueError("EPR_PORTAL_OIDC_ISSUER needs EPR_PORTAL_OIDC_CLIENT_ID (and usually _CLIENT_SECRET)")
    return OidcClient(Provider(issuer=settings.portal_oidc_issuer, client_id=settings.portal_oidc_client_id,
                               client_secret=settings.portal_oidc_client_secret,
                               redirect_url=settings.portal_oidc_redirect_url, ca=settings.portal_oidc_ca))


def identity_of(claims: dict[str, Any], settings) -> Identity:
    """The patient or representative the verified claims name, or SignInFailed."""
    name = str(claims.get("name") or " ".join(str(claims.get(k, "")) for k in ("given_name", "family_name"))).strip()
    representative = claims.get(settings.portal_oidc_representative_claim)
    if representative:
        spid = str(claims.get(settings.portal_oidc_represented_claim) or "")
        if not is_spid(spid):
            raise SignInFailed("a representative's token names no represented EPR-SPID")
        return Identity("REP", str(representative), spid, name)
    spid = str(claims.get(settings.portal_oidc_spid_claim) or "")
    if not is_spid(spid):
        raise SignInFailed("the ID token names no EPR-SPID")
    return Identity("PAT", spid, spid, name)
