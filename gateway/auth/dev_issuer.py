"""The DEVELOPMENT token issuer of the embedded default: a local EC key that signs IUA tokens.

Why it exists: the gateway accepts nothing but signed tokens from trusted issuers, also on a laptop.
Rather than a bypass switch, the embedded default gets a real issuer whose key lives in the data
directory and whose JWKS is on the trusted list, so development exercises exactly the production
code path. The key file says DEVELOPMENT-ONLY in its name; `first_start` never creates it in
production, and `mint_token` can also produce deliberately broken tokens (`extra_claims`) for tests.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from consent.principal import Group
from consent.roles import PROFESSIONALS
from gateway.auth.identifiers import (
    GLN_QUALIFIER,
    PURPOSE_OF_USE_SYSTEM,
    REPRESENTATIVE_QUALIFIER,
    ROLE_SYSTEM,
    ROLES,
    SPID_QUALIFIER,
    person_id_for,
)

__all__ = ["KEY_FILE", "JWKS_FILE", "TRUSTED_ISSUERS_FILE", "ensure_dev_issuer", "mint_token"]

KEY_FILE = "dev-issuer-DEVELOPMENT-ONLY.key.pem"
JWKS_FILE = "dev-issuer-DEVELOPMENT-ONLY.jwks.json"
TRUSTED_ISSUERS_FILE = "trusted-issuers.json"


def ensure_dev_issuer(data_dir: Path, issuer_url: str) -> Path:
    """Create (once) the development signing key, its JWKS and a trusted-issuers file naming
    `issuer_url` and its token endpoint (`<issuer_url>/token`, see token_endpoint.py: announced in the
    SMART configuration and the CapabilityStatement); returns the trusted-issuers file. The key is
    never replaced; the JWKS and the trusted-issuers file are rewritten only when they no longer match
    (e.g. another port)."""
    auth_dir = Path(data_dir) / "auth"
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = auth_dir / KEY_FILE
    if not key_path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            _create_private(key_path, pem)
        except FileExistsError:
            pass  # another process made it first: use theirs
    key = _signing_key(data_dir)
    jwks = {"keys": [{**key.as_dict(private=False), "kid": key.thumbprint(), "use": "sig", "alg": "ES256"}]}
    _write_if_changed(auth_dir / JWKS_FILE, jwks)
    trusted = auth_dir / TRUSTED_ISSUERS_FILE
    _write_if_changed(trusted, {"issuers": [{"issuer": issuer_url, "jwks_file": JWKS_FILE,
                                             "token_endpoint": f"{issuer_url}/token"}]})
    return trusted


def mint_token(*, data_dir: Path, issuer_url: str, audience: str, role: str, gln: str | None = None,
               name: str | None = None, purpose: str | None = None, spid: str | None = None,
               principal_gln: str | None = None, principal_name: str | None = None,
               groups: Iterable[str | Group] = (), user_id: str | None = None, ttl: int | None = None,
               organisation: str | None = None, organisation_id: str | None = None,
               home_community_id: str | None = None, client_id: str | None = "epr-gateway-dev",
               now: float | None = None, extra_claims: Mapping[str, Any] | None = None) -> str:
    """A signed ES256 IUA token from the development issuer (`ensure_dev_issuer` must have run).

    The subject's id: PAT → `spid`; HCP/ASS → `gln`; REP, DADM, PADM, TCU → `user_id`. For the other
    roles a given `spid` makes an extended token (`person_id`). `purpose` defaults to AUTO for TCU and
    NORM otherwise. Identifiers are not validated here, so that tests can mint what the verifier must
    refuse. `extra_claims` is merged in depth; a `None` value removes that claim.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(sorted(ROLES))}")
    if ttl is None:  # the verifier's default maximum lifetimes: 1 h, 15 min for a technical user
        ttl = 900 if role == "TCU" else 3600
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    subject, qualifier = _subject(role=role, gln=gln, spid=spid, user_id=user_id)
    issued = int(time.time() if now is None else now)
    iua: dict[str, Any] = {
        "subject_name": name,
        "subject_organization": organisation,
        "subject_organization_id": organisation_id,
        "subject_role": {"system": ROLE_SYSTEM, "code": role},
        "purpose_of_use": {"system": PURPOSE_OF_USE_SYSTEM, "code": purpose or ("AUTO" if role == "TCU" else "NORM")},
        "home_community_id": home_community_id,
        "person_id": person_id_for(spid) if spid and role != "PAT" else None,
    }
    extensions: dict[str, Any] = {
        "ihe_iua": {k: v for k, v in iua.items() if v is not None},
        "ch_epr": {k: v for k, v in (("user_id", subject), ("user_id_qualifier", qualifier)) if v is not None},
    }
    if principal_gln or principal_name:
        extensions["ch_delegation"] = {k: v for k, v in (("principal", principal_name),
                                                        ("principal_id", principal_gln)) if v}
    group_list = [_group_claim(g) for g in groups]
    if group_list:
        extensions["ch_group"] = group_list
    claims: dict[str, Any] = {
        "iss": issuer_url, "sub": subject, "aud": audience, "iat": issued, "nbf": issued, "exp": issued + ttl,
        "jti": str(uuid.uuid4()), "client_id": client_id, "extensions": extensions,
    }
    claims = _merge({k: v for k, v in claims.items() if v is not None}, extra_claims or {})
    key = _signing_key(data_dir)
    return jwt.encode({"alg": "ES256", "kid": key.thumbprint()}, claims, key, algorithms=["ES256"])


def _subject(*, role: str, gln: str | None, spid: str | None, user_id: str | None) -> tuple[str, str | None]:
    if role == "PAT":
        if not spid:
            raise ValueError("a PAT token needs spid (the patient's EPR-SPID)")
        return spid, SPID_QUALIFIER
    if role in PROFESSIONALS:
        if not gln:
            raise ValueError(f"a {role} token needs gln")
        return gln, GLN_QUALIFIER
    if not user_id:
        raise ValueError(f"a {role} token needs user_id")
    return user_id, REPRESENTATIVE_QUALIFIER if role == "REP" else None


def _group_claim(group: str | Group) -> dict[str, str]:
    if isinstance(group, Group):
        return {"id": group.id, **({"name": group.name} if group.name else {})}
    return {"id": group}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


def _signing_key(data_dir: Path) -> ECKey:
    path = Path(data_dir) / "auth" / KEY_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no development issuer key; run ensure_dev_issuer first") from None
    return ECKey.import_key(pem)


def _create_private(path: Path, data: bytes) -> None:
    """Mode 0600 from the first byte, and all or nothing: a crash never leaves an empty key file.
    Raises FileExistsError when the key exists already (os.link does not replace)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_if_changed(path: Path, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)  # readers (a running gateway re-reading its JWKS) never see half a file
