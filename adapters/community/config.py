"""The communities the gateway delivers into: the JSON file named by `EPR_COMMUNITIES`.

A JSON list; each community is either an XDS.b affinity domain reached over SOAP (ITI-41, ITI-40,
ITI-45, ATNA) or a remote MHD Document Recipient (`mhd_url` + `token_url`, issue 24 item 7). The file is
checked whole when it is read: every missing or unknown key, unreadable file, bad URL, OID or GLN is
found at once and reported as one line (`CommunityConfigError`), so that the command line can print it
and exit 2 before anything is sent. Unknown keys are refused: a misspelt optional key must not pass as
"not given". Relative file paths are read from the configuration file's folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.cara.identifier_syntax import is_gln, is_oid, is_oid_urn

__all__ = ["CommunityConfigError", "Community", "MhdCommunity", "TechnicalUser", "TlsFiles", "load_communities",
           "parse_communities"]

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(?P<port>[0-9]{1,5})")
_SOAP_KEYS = {"id", "home_community_id", "repository_unique_id", "iti41_url", "iti40_sts_url", "iti45_pix_url",
              "pix_assigning_authority", "atna_address", "tls", "technical_user", "source_id"}
_SOAP_OPTIONAL = {"pix_receiver_oid", "timeout_seconds"}
_MHD_KEYS = {"id", "mhd_url", "token_url", "tls"}
_MHD_OPTIONAL = {"client_id", "source_id", "timeout_seconds"}
_TLS_KEYS = {"ca", "client_cert", "client_key"}
_USER_KEYS = {"oid", "key", "cert", "principal_gln", "principal_name"}


class CommunityConfigError(Exception):
    """The communities file cannot be used; the message is one line naming every problem found."""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the community's CA (server certificates are verified against it only)
    client_cert: Path  # the gateway's certificate as this community's Document Source (mutual TLS)
    client_key: Path


@dataclass(frozen=True)
class TechnicalUser:
    """The gateway's technical user (TCU) as registered with the community: its OID and signing
    certificate, and the responsible professional on whose behalf it provides."""

    oid: str  # plain OID (Issuer `urn:oid:<oid>`, NameID `<oid>`, as the community's kit records it)
    key: Path
    cert: Path
    principal_gln: str
    principal_name: str


@dataclass(frozen=True)
class Community:
    """An XDS.b community reached over SOAP (cara on emedo)."""

    id: str
    home_community_id: str  # urn:oid:…
    repository_unique_id: str  # OID
    iti41_url: str
    iti40_sts_url: str
    iti45_pix_url: str
    pix_assigning_authority: str  # OID of the community's MPI-PID domain
    atna_host: str
    atna_port: int
    tls: TlsFiles
    technical_user: TechnicalUser
    source_id: str  # OID: XDSSubmissionSet.sourceId, the HL7 v3 sender device
    pix_receiver_oid: str  # HL7 v3 receiver device of the PIX manager (defaults to the MPI domain)
    timeout_seconds: float = 30.0

    @property
    def atna_address(self) -> str:
        return f"{self.atna_host}:{self.atna_port}"


@dataclass(frozen=True)
class MhdCommunity:
    """A remote MHD Document Recipient (ITI-65) with an IUA token by client credentials."""

    id: str
    mhd_url: str
    token_url: str
    tls: TlsFiles
    client_id: str | None = None
    source_id: str | None = None
    timeout_seconds: float = 30.0


def load_communities(path: str | Path) -> tuple[Community | MhdCommunity, ...]:
    """Read and check the file; CommunityConfigError (one line) if anything is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommunityConfigError(f"{path}: no such file (EPR_COMMUNITIES)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommunityConfigError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CommunityConfigError(f"{path}: not JSON ({exc})") from None
    return parse_communities(data, base=path.parent, source=str(path))


def parse_communities(data: Any, *, base: Path, source: str = "EPR_COMMUNITIES") -> tuple[Community | MhdCommunity, ...]:
    if not isinstance(data, list):
        raise CommunityConfigError(f"{source}: must be a JSON list of communities, not {type(data).__name__}")
    if not data:
        raise CommunityConfigError(f"{source}: lists no community (unset EPR_COMMUNITIES to deliver nowhere)")
    problems: list[str] = []
    communities: list[Community | MhdCommunity] = []
    for index, item in enumerate(data):
        checker = _Checker(base, f"community[{index}]")
        community = checker.community(item)
        problems.extend(checker.problems)
        if community is not None and not checker.problems:
            communities.append(community)
    seen: set[str] = set()
    for community in communities:
        if community.id in seen:
            problems.append(f"the id {community.id!r} is used twice")
        seen.add(community.id)
    if problems:
        raise CommunityConfigError(f"{source}: " + "; ".join(problems))
    return tuple(communities)


class _Checker:
    """Collects the problems of one community (every one, not only the first)."""

    def __init__(self, base: Path, where: str):
        self.base = base
        self.where = where
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    def community(self, item: Any) -> Community | MhdCommunity | None:
        if not isinstance(item, dict):
            self.fail("must be a JSON object")
            return None
        if isinstance(item.get("id"), str) and _ID.fullmatch(item["id"]):
            self.where += f" ({item['id']})"
        mhd = "mhd_url" in item or "token_url" in item
        required, optional = (_MHD_KEYS, _MHD_OPTIONAL) if mhd else (_SOAP_KEYS, _SOAP_OPTIONAL)
        if mhd and any(key in item for key in _SOAP_KEYS - _MHD_KEYS - {"source_id"}):
            self.fail("has both MHD keys (mhd_url, token_url) and SOAP endpoints: a community is one or the other")
            return None
        if not self._keys(item, required, optional, "community"):
            return None
        if not (isinstance(item["id"], str) and _ID.fullmatch(item["id"])):
            self.fail(f"id {item['id']!r} must be 1-64 characters of a-z, 0-9, '.', '_', '-'")
        tls = self.tls(item["tls"])
        timeout = self.timeout(item.get("timeout_seconds", 30.0))
        if mhd:
            mhd_url, token_url = self.url(item, "mhd_url"), self.url(item, "token_url")
            client_id = item.get("client_id")
            if client_id is not None and not (isinstance(client_id, str) and client_id.strip() == client_id != ""):
                self.fail("client_id must be a non-empty string without surrounding spaces")
            source_id = self.oid(item, "source_id") if "source_id" in item else None
            if self.problems or tls is None:
                return None
            return MhdCommunity(item["id"], mhd_url, token_url, tls, client_id, source_id, timeout)
        home = item["home_community_id"]
        if not is_oid_urn(home):
            self.fail(f"home_community_id {home!r} must be urn:oid:<OID>")
        urls = [self.url(item, key) for key in ("iti41_url", "iti40_sts_url", "iti45_pix_url")]
        oids = [self.oid(item, key) for key in ("repository_unique_id", "pix_assigning_authority", "source_id")]
        receiver = self.oid(item, "pix_receiver_oid") if "pix_receiver_oid" in item else oids[1]
        host, port = self.host_port(item["atna_address"])
        user = self.technical_user(item["technical_user"])
        if self.problems or tls is None or user is None:
            return None
        return Community(item["id"], home, oids[0], *urls, oids[1], host, port, tls, user, oids[2], receiver, timeout)

    def _keys(self, item: dict, required: set[str], optional: set[str], what: str) -> bool:
        missing = sorted(required - item.keys())
        unknown = sorted(item.keys() - required - optional)
        if missing:
            self.fail(f"{what} lacks {', '.join(missing)}")
        if unknown:
            self.fail(f"{what} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        return not missing and not unknown

    def url(self, item: dict, key: str) -> str:
        value = item[key]
        parts = urlsplit(value) if isinstance(value, str) else None
        if (parts is None or parts.scheme != "https" or not parts.hostname or parts.username or parts.password
                or parts.fragment or any(ch.isspace() or ord(ch) < 32 for ch in value)):
            self.fail(f"{key} {value!r} must be an https:// URL with a host (mutual TLS), no credentials, no fragment")
            return ""
        try:
            parts.port  # noqa: B018 - a port out of range raises here
        except ValueError:
            self.fail(f"{key} {value!r} has an invalid port")
        return value

    def oid(self, item: dict, key: str) -> str:
        value = item[key]
        if not is_oid(value):
            self.fail(f"{key} {value!r} must be an OID (digits and dots, e.g. 2.16.756.5.30.1.177.2.2.1.1)")
        return value if isinstance(value, str) else ""

    def host_port(self, value: Any) -> tuple[str, int]:
        match = _HOST_PORT.fullmatch(value) if isinstance(value, str) else None
        if match is None or not 0 < int(match["port"]) < 65536:
            self.fail(f"atna_address {value!r} must be host:port (syslog over TLS, e.g. atna.example.ch:6514)")
            return "", 0
        return match["host"].strip("[]"), int(match["port"])

    def timeout(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
            self.fail(f"timeout_seconds {value!r} must be a number of seconds in (0, 600]")
            return 30.0
        return float(value)

    def file(self, section: str, key: str, value: Any) -> Path | None:
        """The readable file `value` names, else None (and the problem noted)."""
        if not isinstance(value, str) or not value:
            self.fail(f"{section}.{key} must be a file path")
            return None
        path = Path(value) if Path(value).is_absolute() else self.base / value
        try:
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            self.fail(f"{section}.{key} {str(path)!r} cannot be read ({exc.strerror or type(exc).__name__})")
            return None
        return path

    def tls(self, section: Any) -> TlsFiles | None:
        if not isinstance(section, dict):
            self.fail("tls must be an object {ca, client_cert, client_key}")
            return None
        if not self._keys(section, _TLS_KEYS, set(), "tls"):
            return None
        ca, cert, key = (self.file("tls", name, section[name]) for name in ("ca", "client_cert", "client_key"))
        if ca is not None:
            self.pem_certificates("tls.ca", ca)
        if cert is not None and key is not None:
            self.key_pair("tls", cert, key)
        return TlsFiles(ca, cert, key) if ca and cert and key else None

    def technical_user(self, section: Any) -> TechnicalUser | None:
        if not isinstance(section, dict):
            self.fail("technical_user must be an object {oid, key, cert, principal_gln, principal_name}")
            return None
        if not self._keys(section, _USER_KEYS, set(), "technical_user"):
            return None
        oid = section["oid"]
        if not is_oid(oid):
            self.fail(f"technical_user.oid {oid!r} must be an OID (the one registered with the community)")
        if not is_gln(section["principal_gln"]):
            self.fail(f"technical_user.principal_gln {section['principal_gln']!r} is not a GLN (13 digits, GS1 check digit)")
        name = section["principal_name"]
        if not isinstance(name, str) or not name.strip() or name != name.strip() or any(ord(c) < 32 for c in name):
            self.fail("technical_user.principal_name must be the responsible professional's name (one line)")
        key = self.file("technical_user", "key", section["key"])
        cert = self.file("technical_user", "cert", section["cert"])
        if key is not None and cert is not None:
            self.key_pair("technical_user", cert, key, rsa_only=True)
        return TechnicalUser(oid, key, cert, section["principal_gln"], name) if not self.problems else None

    def pem_certificates(self, what: str, path: Path) -> None:
        try:
            if not x509.load_pem_x509_certificates(path.read_bytes()):
                raise ValueError("no certificate")
        except ValueError:
            self.fail(f"{what} {str(path)!r} holds no PEM certificate")

    def key_pair(self, section: str, cert_path: Path, key_path: Path, *, rsa_only: bool = False) -> None:
        """The certificate and its private key must belong together (a swapped file fails here, not
        at the first TLS handshake or signature hours later)."""
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError:
            self.fail(f"{section} certificate {str(cert_path)!r} is not a PEM certificate")
            return
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            self.fail(f"{section} key {str(key_path)!r} is not an unencrypted PEM private key ({exc})")
            return
        if rsa_only and not isinstance(key, rsa.RSAPrivateKey):
            self.fail(f"{section} key {str(key_path)!r} must be an RSA key (the assertion is signed RSA-SHA256)")
            return
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, public)
                != cert.public_key().public_bytes(serialization.Encoding.DER, public)):
            self.fail(f"{section} key {str(key_path)!r} does not belong to the certificate {str(cert_path)!r}")
