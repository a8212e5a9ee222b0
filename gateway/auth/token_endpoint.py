"""The DEVELOPMENT issuer's token endpoint: IUA tokens for registered technical clients by the OAuth 2.0
client credentials grant (RFC 6749 §4.4), so that a second gateway (or any MHD client) can obtain a
token the way it would from the community's IdP, and two development gateways are real peers.

Why it looks like this:
- The client is authenticated by its TLS client certificate (RFC 8705 §2.1, `tls_client_auth`): the
  TLS layer has verified it against `EPR_CLIENT_CA` (the development CA), and the registration binds
  the `client_id` the request names to the certificate's CN. No secret travels, nothing signed can be
  replayed; a request trying another method (a secret, a client assertion) is refused as such.
- A client may only be what its registration says: a technical user (TCU) acting for the registered
  responsible professional (`principal_gln`, `principal_name`), purpose of use AUTO (or DICOM_AUTO if
  it asks). A scope asking for anything else is `invalid_scope`, never silently narrowed.
- The token's audience is the `resource` the client names (RFC 8707: the recipient's FHIR base, an
  https URL), else this gateway's own. A registration may list the resources it may ask for.
- Deny by default: a client not in the registrations file is refused. Development only: the root
  builds it only outside production, from the development issuer's key; in production the route
  answers 404.

Registrations (`EPR_DEV_TOKEN_CLIENTS`, default a DEVELOPMENT file naming the development client
certificate for the demo professional):

    {"clients": [{"client_id": "valais-deliverer", "certificate_cn": "valais-deliverer",
                  "user_id": "valais-deliverer", "name": "Valais delivery",
                  "principal_gln": "7601000000002", "principal_name": "Dr. Luc Favre",
                  "resources": ["https://cara.example.ch/fhir"] (optional)}]}
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from consent.principal import Principal
from gateway.auth.dev_issuer import mint_token
from gateway.auth.errors import TokenRequestRefused
from gateway.auth.identifiers import PURPOSE_OF_USE_SYSTEM, ROLE_SYSTEM, gln_is_valid

__all__ = ["TokenClient", "TokenClients", "TokenClientsInvalid", "ClientCredentialsGrant", "IssuedToken",
           "ensure_dev_token_clients", "CLIENTS_FILE", "TOKEN_LIFETIME_SECONDS"]

CLIENTS_FILE = "token-clients.DEVELOPMENT.json"
TOKEN_LIFETIME_SECONDS = 300
_KEYS = {"client_id", "certificate_cn", "user_id", "name", "principal_gln", "principal_name"}
_OPTIONAL = {"resources"}
_PURPOSES = ("AUTO", "DICOM_AUTO")
_OTHER_METHODS = ("client_secret", "client_assertion", "client_assertion_type")
MAX_URL_CHARS = 2048


class TokenClientsInvalid(ValueError):
    """The registrations file cannot be used (raised at start, one line)."""


@dataclass(frozen=True)
class TokenClient:
    client_id: str
    certificate_cn: str
    user_id: str  # the technical user's id in the token (extensions.ch_epr.user_id)
    name: str
    principal_gln: str
    principal_name: str
    resources: tuple[str, ...] | None = None  # None: any https resource


@dataclass(frozen=True)
class TokenClients:
    clients: tuple[TokenClient, ...]

    @classmethod
    def load(cls, path: Path) -> TokenClients:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenClientsInvalid(f"{path}: cannot read the token clients ({type(exc).__name__})") from None
        entries = document.get("clients") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise TokenClientsInvalid(f'{path}: expected {{"clients": [...]}}')
        clients = tuple(_client(entry, f"{path}: clients[{index}]") for index, entry in enumerate(entries))
        if len({c.client_id for c in clients}) != len(clients):
            raise TokenClientsInvalid(f"{path}: a client_id is registered twice")
        return cls(clients)

    def find(self, client_id: str) -> TokenClient | None:
        return next((c for c in self.clients if c.client_id == client_id), None)


def _client(entry: Any, where: str) -> TokenClient:
    if not isinstance(entry, dict):
        raise TokenClientsInvalid(f"{where} must be an object")
    missing, unknown = sorted(_KEYS - entry.keys()), sorted(entry.keys() - _KEYS - _OPTIONAL)
    if missing:
        raise TokenClientsInvalid(f"{where} lacks {', '.join(missing)}")
    if unknown:
        raise TokenClientsInvalid(f"{where} has unknown keys {', '.join(unknown)}")
    if not all(isinstance(entry[key], str) and entry[key].strip() == entry[key] != "" for key in _KEYS):
        raise TokenClientsInvalid(f"{where}: {', '.join(sorted(_KEYS))} must be non-empty strings")
    if not gln_is_valid(entry["principal_gln"]):
        raise TokenClientsInvalid(f"{where}: principal_gln is not a valid GLN")
    resources = entry.get("resources")
    if resources is not None and not (isinstance(resources, list) and all(_is_resource(r) for r in resources)):
        raise TokenClientsInvalid(f"{where}: resources must be a list of https URLs")
    return TokenClient(entry["client_id"], entry["certificate_cn"], entry["user_id"], entry["name"],
                       entry["principal_gln"], entry["principal_name"],
                       tuple(resources) if resources is not None else None)


def ensure_dev_token_clients(data_dir: Path, *, certificate_cn: str, gln: str, name: str) -> Path:
    """The embedded default's DEVELOPMENT registrations: the development client certificate as a
    technical user acting for the demo professional (written once; edit it to add peers)."""
    path = Path(data_dir) / "auth" / CLIENTS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = {"_comment": "DEVELOPMENT token clients (client credentials, mutual TLS) written by the embedded "
                                "default; not used in production",
                    "clients": [{"client_id": certificate_cn, "certificate_cn": certificate_cn,
                                 "user_id": certificate_cn, "name": "Development technical client",
                                 "principal_gln": gln, "principal_name": name}]}
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    principal: Principal  # whom the token names, for the audit record

    def answer(self) -> dict[str, Any]:
        """The token answer (RFC 6749 §5.1)."""
        return {"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in,
                "scope": self.scope}


class ClientCredentialsGrant:
    def __init__(self, *, clients: TokenClients, data_dir: Path, issuer_url: str, audience: str,
                 lifetime_seconds: int = TOKEN_LIFETIME_SECONDS, now: Callable[[], float] = time.time):
        self._clients = clients
        self._data_dir = data_dir
        self._issuer = issuer_url
        self._audience = audience
        self._lifetime = lifetime_seconds
        self._now = now

    def issue(self, *, form: Mapping[str, str], certificate_cn: str | None,
              certificate_subject: str | None = None) -> IssuedToken:
        """A token for the client the form names and the certificate proves, or TokenRequestRefused."""
        grant = form.get("grant_type")
        if not grant:
            raise TokenRequestRefused(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            raise TokenRequestRefused(400, "unsupported_grant_type", "only client_credentials is supported here")
        if any(name in form for name in _OTHER_METHODS):
            raise TokenRequestRefused(401, "invalid_client", "clients authenticate with their TLS certificate "
                                                             "(tls_client_auth), not a secret or an assertion")
        client_id = form.get("client_id")
        if not client_id:
            raise TokenRequestRefused(400, "invalid_request", "client_id is required (RFC 8705)")
        if not certificate_cn:
            raise TokenRequestRefused(401, "invalid_client", "no client certificate: connect with mutual TLS")
        client = self._clients.find(client_id)
        if client is None or client.certificate_cn != certificate_cn:
            raise TokenRequestRefused(401, "invalid_client", "the client certificate does not belong to a registered "
                                                             "client of that client_id")
        purpose = _purpose(form.get("scope"))
        audience = _resource(form.get("resource"), client) or self._audience
        jti = str(uuid.uuid4())
        scope = f"subject_role={ROLE_SYSTEM}|TCU purpose_of_use={PURPOSE_OF_USE_SYSTEM}|{purpose}"
        token = mint_token(data_dir=self._data_dir, issuer_url=self._issuer, audience=audience, role="TCU",
                           user_id=client.user_id, name=client.name, purpose=purpose,
                           principal_gln=client.principal_gln, principal_name=client.principal_name,
                           client_id=client.client_id, ttl=self._lifetime, now=self._now(),
                           extra_claims={"jti": jti, "scope": scope})
        principal = Principal(role="TCU", user_id=client.user_id, name=client.name, purpose_of_use=purpose,
                              acting_for=client.principal_gln, acting_for_name=client.principal_name, token_id=jti,
                              issuer=self._issuer, client_id=client.client_id, client_certificate=certificate_subject)
        return IssuedToken(token, self._lifetime, scope, principal)


def _purpose(scope: str | None) -> str:
    """The purpose of use the scope asks for (AUTO when it asks none); anything but TCU's is refused."""
    purpose = "AUTO"
    for item in (scope or "").split(" "):
        name, _, value = item.partition("=")
        if not item:
            continue
        if name == "subject_role" and value == f"{ROLE_SYSTEM}|TCU":
            continue
        coded = value.removeprefix(f"{PURPOSE_OF_USE_SYSTEM}|")
        if name == "purpose_of_use" and coded != value and coded in _PURPOSES:
            purpose = coded
            continue
        raise TokenRequestRefused(400, "invalid_scope", "a technical client gets role TCU with purpose AUTO or "
                                                        "DICOM_AUTO only")
    return purpose


def _resource(resource: str | None, client: TokenClient) -> str | None:
    if resource is None:
        return None
    if not _is_resource(resource):
        raise TokenRequestRefused(400, "invalid_target", "resource must be an absolute https URL without fragment")
    if client.resources is not None and resource not in client.resources:
        raise TokenRequestRefused(400, "invalid_target", "this client may not ask for a token for that resource")
    return resource


def _is_resource(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS or not value.isascii():
        return False
    if any(c.isspace() or not c.isprintable() for c in value):
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.fragment and not parts.username
