"""IUA access token (signed JWT, CH:ADR/IUA claims) → `Principal`, or a precise refusal.

Why the order below: everything an attacker controls is checked before it can influence anything.
The header is parsed first and its `alg` held against a fixed allow-list (no `none`, no HMAC: an
`HS256` token "signed" with our public key must never verify), then the issuer must be on the trusted
list before any key is looked up, the key's type must fit the algorithm, and only then is the
signature verified. Claims are read from the verified token only. Role rules that need no record
(TCU writes as AUTO, EMER is for professionals) are refused here, once, for every route.

Refusal reasons name the failed check (`wrong audience`, `missing claim extensions.ch_epr.user_id`);
they never contain the token or values copied from it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jws import JWSRegistry

from consent.principal import Group, Principal
from consent.roles import DELEGATING, EMERGENCY_USERS, TECHNICAL_PURPOSES, TECHNICAL_USER
from gateway.auth.errors import AccessRefused, AuthenticationFailed
from gateway.auth.identifiers import (
    GLN_QUALIFIER,
    PURPOSE_OF_USE_SYSTEM,
    PURPOSES,
    REPRESENTATIVE_QUALIFIER,
    ROLE_SYSTEM,
    ROLES,
    SPID_QUALIFIER,
    gln_is_valid,
    oid_urn_is_valid,
    spid_from_person_id,
    spid_is_well_formed,
)
from gateway.auth.issuers import TrustedIssuers

__all__ = ["ALLOWED_ALGORITHMS", "TokenVerifier", "gln_is_valid", "principal_from_claims"]

ALLOWED_ALGORITHMS = ("ES256", "RS256", "EdDSA")
MAX_TOKEN_CHARS = 32 * 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_PRINTABLE_ALG = re.compile(r"[A-Za-z0-9_+-]{1,20}")


class _Registry(JWSRegistry):
    """joserfc's registry restricted to our allow-list. EdDSA is accepted on purpose (IUA issuers use
    it), so joserfc's RFC 9864 deprecation warning is not raised per token; headers may carry an
    `x5c` chain, hence the larger header limit."""

    max_header_length = 8192

    def get_alg(self, name: str):  # type: ignore[override]
        if name not in ALLOWED_ALGORITHMS:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


REVERIFY_SECONDS = 300.0
MAX_CACHED_TOKENS = 10_000


class TokenVerifier:
    def __init__(self, *, issuers: TrustedIssuers, audience: str, clock_skew_seconds: int = 60,
                 now: Callable[[], float] = time.time, max_lifetime_seconds: int = 3600,
                 max_tcu_lifetime_seconds: int = 900) -> None:
        if not audience:
            raise ValueError("audience is required")
        if clock_skew_seconds < 0:
            raise ValueError("clock_skew_seconds must not be negative")
        if max_lifetime_seconds <= 0 or max_tcu_lifetime_seconds <= 0:
            raise ValueError("token lifetimes must be positive")
        # A token is a bearer credential: a stolen one works until `exp`, so `exp` far away (1e308)
        # is a credential that never ends. Technical users (TCU) get a shorter maximum.
        self._max_lifetime = {"TCU": max_tcu_lifetime_seconds}
        self._default_max_lifetime = max_lifetime_seconds
        self._issuers = issuers
        self._audience = audience
        self._skew = clock_skew_seconds
        self._now = now
        self._registry = _Registry(algorithms=list(ALLOWED_ALGORITHMS))
        # Verified tokens by SHA-256 digest: a client repeats its token on every request, and the
        # signature check is most of a request's cost. An entry serves until the token expires and
        # for at most REVERIFY_SECONDS, so a key withdrawn from the issuer's JWKS bites soon after.
        self._verified: dict[bytes, tuple[Principal, float, float]] = {}

    def verify(self, token: str) -> Principal:
        """The caller, or AuthenticationFailed (401) / AccessRefused (403) with a safe reason."""
        digest = hashlib.sha256(token.encode(errors="surrogatepass")).digest() if isinstance(token, str) else b""
        cached = self._verified.get(digest)
        now = self._now()
        if cached is not None and now < cached[1] + self._skew and now - cached[2] < REVERIFY_SECONDS:
            return cached[0]
        principal, expires = self._verify_fully(token)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified.clear()
        self._verified[digest] = (principal, expires, now)
        return principal

    def _verify_fully(self, token: str) -> tuple[Principal, float]:
        header, unverified = _unverified_parts(token)
        alg = _accepted_algorithm(header)
        if not token.rpartition(".")[2]:
            raise AuthenticationFailed("malformed token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed("missing key id (kid) in token header")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise AuthenticationFailed("missing claim iss")
        key = self._issuers.key_for(issuer=issuer, kid=kid)
        _check_key_fits(key, alg)
        try:
            claims = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS), registry=self._registry).claims
        except BadSignatureError:
            raise AuthenticationFailed("signature does not verify") from None
        except (JoseError, ValueError, TypeError):
            raise AuthenticationFailed("malformed token") from None
        if claims.get("iss") != issuer:  # same bytes as parsed above; kept as a guard against drift
            raise AuthenticationFailed("malformed token")
        self._check_registered_claims(claims)
        principal = _principal_from(claims)
        _check_role_rules(principal)
        self._check_lifetime(claims, principal.role)
        return principal, float(claims["exp"])

    def _check_lifetime(self, claims: dict[str, Any], role: str) -> None:
        """`exp - iat` within the role's maximum (`EPR_MAX_TOKEN_LIFETIME_SECONDS`, `…_TCU_…`)."""
        limit = self._max_lifetime.get(role, self._default_max_lifetime)
        if claims["exp"] - claims["iat"] > limit:
            raise AuthenticationFailed(f"token lifetime exceeds the maximum of {limit} s for role {role}")

    def _check_registered_claims(self, claims: dict[str, Any]) -> None:
        now = self._now()
        exp = _number(claims, "exp", required=True)
        if now >= exp + self._skew:
            raise AuthenticationFailed("token expired")
        nbf = _number(claims, "nbf", required=False)
        if nbf is not None and now + self._skew < nbf:
            raise AuthenticationFailed("token not yet valid")
        iat = _number(claims, "iat", required=True)
        if iat > now + self._skew:
            raise AuthenticationFailed("token issued in the future (iat)")
        audience = claims.get("aud")
        if audience is None:
            raise AuthenticationFailed("missing claim aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise AuthenticationFailed("claim aud must be a string or a list of strings")
        if self._audience not in audiences:
            raise AuthenticationFailed("wrong audience")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthenticationFailed("missing claim jti")


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(token, str):
        raise AuthenticationFailed("malformed token")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationFailed("token too large")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1] or not _B64URL.fullmatch(parts[2]):
        raise AuthenticationFailed("malformed token")
    return _json_segment(parts[0]), _json_segment(parts[1])


def _json_segment(segment: str) -> dict[str, Any]:
    if not _B64URL.fullmatch(segment):
        raise AuthenticationFailed("malformed token")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw, object_pairs_hook=_no_duplicate_members, parse_constant=_no_constant)
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise AuthenticationFailed("malformed token") from None
    if not isinstance(value, dict):
        raise AuthenticationFailed("malformed token")
    return value


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two `alg` or two `iss` members could be read differently by two parsers: refuse them outright.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; a NaN `exp` would never compare as expired.
    raise ValueError(f"{name} is not JSON")


def _accepted_algorithm(header: dict[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise AuthenticationFailed("missing alg in token header")
    if alg.lower() == "none":
        raise AuthenticationFailed("unsigned token (alg none) not accepted")
    if alg not in ALLOWED_ALGORITHMS:
        shown = alg if _PRINTABLE_ALG.fullmatch(alg) else "of this token"
        raise AuthenticationFailed(f"algorithm {shown} not accepted")
    if "crit" in header or "b64" in header:
        raise AuthenticationFailed("unsupported critical header")
    return alg


def _check_key_fits(key: Any, alg: str) -> None:
    """The trusted key must be of the kind the algorithm needs (no algorithm confusion)."""
    if alg == "ES256":
        fits = key.key_type == "EC" and key.curve_name == "P-256"
    elif alg == "RS256":
        fits = key.key_type == "RSA" and key.public_key.key_size >= 2048
    else:  # EdDSA
        fits = key.key_type == "OKP" and key.curve_name in ("Ed25519", "Ed448")
    declared = key.get("alg")
    if not fits or (declared is not None and declared != alg):
        raise AuthenticationFailed("signing key type does not match algorithm")


def _number(claims: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AuthenticationFailed(f"missing claim {name}")
        return None
    finite_number = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, bool) or not finite_number:
        raise AuthenticationFailed(f"claim {name} must be a number (seconds since epoch)")
    return value


# --- EPR claims ----------------------------------------------------------------------------------

def _object(parent: dict[str, Any], name: str, path: str, *, required: bool) -> dict[str, Any] | None:
    value = parent.get(name)
    if value is None:
        if required:
            raise AuthenticationFailed(f"missing claim {path}")
        return None
    if not isinstance(value, dict):
        raise AuthenticationFailed(f"claim {path} must be an object")
    return value


def _string(parent: dict[str, Any], name: str, path: str, *, required: bool) -> str | None:
    value = parent.get(name)
    if value is None or value == "":
        if required:
            raise AuthenticationFailed(f"missing claim {path}")
        return None
    if not isinstance(value, str):
        raise AuthenticationFailed(f"claim {path} must be a string")
    return value


def _coded(parent: dict[str, Any], name: str, path: str, *, system: str, codes: frozenset[str]) -> str:
    coding = _object(parent, name, path, required=True)
    if coding.get("system") != system:
        raise AuthenticationFailed(f"claim {path}.system must be {system}")
    code = coding.get("code")
    if not isinstance(code, str) or code not in codes:
        raise AuthenticationFailed(f"claim {path}.code must be one of {', '.join(sorted(codes))}")
    return code


def _gln(parent: dict[str, Any], name: str, path: str, *, required_because: str | None) -> str | None:
    value = parent.get(name)
    if value is None or value == "":
        if required_because:
            raise AuthenticationFailed(f"missing claim {path} (required for {required_because})")
        return None
    if not gln_is_valid(value):
        raise AuthenticationFailed(f"claim {path} is not a valid GLN (13 digits, GS1 check digit)")
    return value


def _principal_from(claims: dict[str, Any]) -> Principal:
    extensions = _object(claims, "extensions", "extensions", required=True)
    iua = _object(extensions, "ihe_iua", "extensions.ihe_iua", required=True)
    role = _coded(iua, "subject_role", "extensions.ihe_iua.subject_role", system=ROLE_SYSTEM, codes=ROLES)
    purpose = _coded(iua, "purpose_of_use", "extensions.ihe_iua.purpose_of_use", system=PURPOSE_OF_USE_SYSTEM,
                     codes=PURPOSES)
    epr = _object(extensions, "ch_epr", "extensions.ch_epr", required=True)
    user_id, qualifier = _user(epr, role)

    acting_for = acting_for_name = None
    if role in DELEGATING:  # for other roles a delegation has no meaning and is not carried on
        delegation = _object(extensions, "ch_delegation", "extensions.ch_delegation", required=False) or {}
        acting_for = _gln(delegation, "principal_id", "extensions.ch_delegation.principal_id",
                          required_because=role)
        acting_for_name = _string(delegation, "principal", "extensions.ch_delegation.principal", required=False)

    patient_spid = None
    person_id = _string(iua, "person_id", "extensions.ihe_iua.person_id", required=False)
    if person_id is not None:
        patient_spid = spid_from_person_id(person_id)
        if patient_spid is None:
            raise AuthenticationFailed("claim extensions.ihe_iua.person_id is not an EPR-SPID "
                                       "(<18 digits>^^^&2.16.756.5.30.1.127.3.10.3&ISO)")
    if role == "PAT":
        if patient_spid is not None and patient_spid != user_id:
            raise AuthenticationFailed("claim extensions.ihe_iua.person_id differs from the patient's own "
                                       "EPR-SPID (extensions.ch_epr.user_id)")
        patient_spid = user_id

    return Principal(
        role=role,
        user_id=user_id,
        user_id_qualifier=qualifier,
        name=_string(iua, "subject_name", "extensions.ihe_iua.subject_name", required=False),
        purpose_of_use=purpose,
        acting_for=acting_for,
        acting_for_name=acting_for_name,
        groups=_groups(extensions),
        organisation=_string(iua, "subject_organization", "extensions.ihe_iua.subject_organization",
                             required=False),
        organisation_id=_string(iua, "subject_organization_id", "extensions.ihe_iua.subject_organization_id",
                                required=False),
        patient_spid=patient_spid,
        token_id=claims["jti"],
        issuer=claims["iss"],
        client_id=_string(claims, "client_id", "client_id", required=False),
        home_community_id=_string(iua, "home_community_id", "extensions.ihe_iua.home_community_id",
                                  required=False),
    )


def _user(epr: dict[str, Any], role: str) -> tuple[str, str | None]:
    user_id = _string(epr, "user_id", "extensions.ch_epr.user_id", required=True)
    qualifier = _string(epr, "user_id_qualifier", "extensions.ch_epr.user_id_qualifier", required=False)
    expected = {"HCP": GLN_QUALIFIER, "ASS": GLN_QUALIFIER, "PAT": SPID_QUALIFIER,
                "REP": REPRESENTATIVE_QUALIFIER}.get(role)
    # DADM, PADM and TCU have no fixed qualifier (the published examples even swap DADM/PADM's):
    # their id is taken as given, the qualifier carried along for the audit record.
    if expected is not None and qualifier != expected:
        raise AuthenticationFailed(f"claim extensions.ch_epr.user_id_qualifier must be {expected} for {role}")
    if expected == GLN_QUALIFIER and not gln_is_valid(user_id):
        raise AuthenticationFailed("claim extensions.ch_epr.user_id is not a valid GLN (13 digits, GS1 check digit)")
    if expected == SPID_QUALIFIER and not spid_is_well_formed(user_id):
        raise AuthenticationFailed("claim extensions.ch_epr.user_id is not an EPR-SPID (18 digits)")
    return user_id, qualifier


def _groups(extensions: dict[str, Any]) -> tuple[Group, ...]:
    entries = extensions.get("ch_group")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise AuthenticationFailed("claim extensions.ch_group must be a list")
    groups = []
    for position, entry in enumerate(entries):
        path = f"extensions.ch_group[{position}]"
        if not isinstance(entry, dict):
            raise AuthenticationFailed(f"claim {path} must be an object")
        group_id = entry.get("id")
        if not oid_urn_is_valid(group_id):
            raise AuthenticationFailed(f"claim {path}.id must be urn:oid:<OID>")
        groups.append(Group(id=group_id, name=_string(entry, "name", f"{path}.name", required=False)))
    return tuple(groups)


def _check_role_rules(principal: Principal) -> None:
    role, purpose = principal.role, principal.purpose_of_use
    if role == TECHNICAL_USER and purpose not in TECHNICAL_PURPOSES:
        raise AccessRefused(f"role TCU may only act with purpose of use AUTO or DICOM_AUTO, not {purpose}")
    if purpose == "EMER" and role not in EMERGENCY_USERS:
        raise AccessRefused(f"purpose of use EMER is reserved to HCP and ASS, not {role}")
    if purpose in TECHNICAL_PURPOSES and role != TECHNICAL_USER:
        raise AccessRefused(f"purpose of use {purpose} is reserved to TCU, not {role}")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """The EPR claim checks and role rules of `TokenVerifier.verify`, without signature or time checks.

    The development `token` command runs them on what it is about to print, so that a token the
    gateway would refuse (bad GLN, EMER for a patient, …) is refused by the command instead.
    Raises AuthenticationFailed or AccessRefused with the reason."""
    principal = _principal_from(claims)
    _check_role_rules(principal)
    return principal
