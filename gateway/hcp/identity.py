"""Who the professionals' identity provider names, and whether it proved two factors.

The ID token (verified by `gateway.pages.oidc`) names the professional by GLN (`EPR_HCP_OIDC_GLN_CLAIM`);
an assistant (role claim ASS, or a delegation claim) also names the professional they work for
(`EPR_HCP_OIDC_DELEGATION_CLAIM`, a GLN) and is refused without one. Two-factor authentication is the
provider's to prove: its `acr` must be one of `EPR_HCP_OIDC_ACR`, or its `amr` name one of
`EPR_HCP_OIDC_AMR`; anything else is refused. The login asks for the configured `acr` values, so a
provider that steps up on request does. The page will not start with a provider and neither list
(fail closed: no sign-in could be trusted to be two-factor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.cara.identifier_syntax import is_oid_urn
from consent.principal import Group
from consent.roles import ASSISTANT, PROFESSIONAL
from gateway.exchanges.professionals import Professional
from gateway.pages.oidc import OidcClient, Provider, SignInFailed


@dataclass(frozen=True)
class ClaimNames:
    gln: str
    role: str
    delegation: str
    delegation_name: str
    organisation: str
    organisation_id: str
    groups: str
    local_id_system: str
    acr: frozenset[str]
    amr: frozenset[str]


def claim_names(settings) -> ClaimNames:
    return ClaimNames(gln=settings.hcp_oidc_gln_claim, role=settings.hcp_oidc_role_claim,
                      delegation=settings.hcp_oidc_delegation_claim,
                      delegation_name=settings.hcp_oidc_delegation_name_claim,
                      organisation=settings.hcp_oidc_organisation_claim,
                      organisation_id=settings.hcp_oidc_organisation_id_claim, groups=settings.hcp_oidc_groups_claim,
                      local_id_system=settings.hcp_oidc_local_id_system_claim, acr=_values(settings.hcp_oidc_acr),
                      amr=_values(settings.hcp_oidc_amr))


def oidc_client(settings) -> OidcClient | None:
    if not settings.hcp_oidc_issuer:
        return None
    if not settings.hcp_oidc_client_id:
        raise ValueError("EPR_HCP_OIDC_ISSUER needs EPR_HCP_OIDC_CLIENT_ID (and usually _CLIENT_SECRET)")
    names = claim_names(settings)
    if not names.acr and not names.amr:
        raise ValueError("EPR_HCP_OIDC_ISSUER needs EPR_HCP_OIDC_ACR or EPR_HCP_OIDC_AMR: the values that prove "
                         "a two-factor sign-in (none configured: no sign-in could be trusted)")
    return OidcClient(Provider(issuer=settings.hcp_oidc_issuer, client_id=settings.hcp_oidc_client_id,
                               client_secret=settings.hcp_oidc_client_secret,
                               redirect_url=settings.hcp_oidc_redirect_url, ca=settings.hcp_oidc_ca,
                               acr_values=" ".join(sorted(names.acr)) or None))


def professional_of(claims: dict[str, Any], names: ClaimNames) -> tuple[Professional, str]:
    """The professional (or assistant) the verified claims name, and their institution's patient id system
    (may be empty); SignInFailed when two factors are not proven or a claim is missing or malformed."""
    if not two_factor(claims, names):
        raise SignInFailed("the identity provider did not assert a two-factor sign-in (acr/amr)")
    gln = _text(claims.get(names.gln))
    if not gln:
        raise SignInFailed(f"the ID token names no GLN ({names.gln})")
    acting_for = _text(claims.get(names.delegation))
    role = ASSISTANT if _text(claims.get(names.role)) == ASSISTANT or acting_for else PROFESSIONAL
    if role == ASSISTANT and not acting_for:
        raise SignInFailed(f"an assistant's ID token names no professional they work for ({names.delegation})")
    name = _text(claims.get("name")) or " ".join(_text(claims.get(k)) for k in ("given_name", "family_name")).strip()
    local_system = _text(claims.get(names.local_id_system))
    person = Professional(role=role, gln=gln, name=name or None, acting_for=acting_for or None,
                          acting_for_name=_text(claims.get(names.delegation_name)) or None,
                          organisation=_text(claims.get(names.organisation)) or None,
                          organisation_id=_text(claims.get(names.organisation_id)) or None,
                          groups=_groups(claims.get(names.groups)))
    return person, local_system if is_oid_urn(local_system) else ""


def two_factor(claims: dict[str, Any], names: ClaimNames) -> bool:
    acr = claims.get("acr")
    amr = claims.get("amr")
    if isinstance(acr, str) and acr in names.acr:
        return True
    return isinstance(amr, list) and any(isinstance(m, str) and m in names.amr for m in amr)


def _groups(value: Any) -> tuple[Group, ...]:
    if not isinstance(value, list):
        return ()
    groups = []
    for item in value:
        group_id, name = (item.get("id"), item.get("name")) if isinstance(item, dict) else (item, None)
        if not is_oid_urn(_text(group_id)):
            raise SignInFailed(f"a group of the ID token is not urn:oid:…")
        groups.append(Group(_text(group_id), _text(name) or None))
    return tuple(groups)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _values(setting: str) -> frozenset[str]:
    return frozenset(v.strip() for v in setting.split(",") if v.strip())
