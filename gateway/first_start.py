"""The embedded default's first start: development keyring, PKI and token issuer, then demo data.

Everything generated here is labelled DEVELOPMENT and refused when EPR_ENV=production, where the
keyring, the TLS certificate and the trusted issuers must be configured explicitly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from adapters.cara.crypto import Keyring
from audit.signing import load_or_create_signing_key
from gateway.auth.dev_issuer import ensure_dev_issuer
from gateway.pki import DevPki, ensure_dev_pki
from gateway.settings import Settings

log = logging.getLogger("epr.gateway")


class ProductionMisconfigured(Exception):
    pass


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    pki: DevPki | None
    generated: tuple[str, ...]


def prepare(settings: Settings) -> Prepared:
    """Make sure keys, certificates and issuers exist; returns settings with their paths filled in."""
    generated: list[str] = []
    problem = public_base_url_problem(settings.public_base_url) if settings.public_base_url else None
    if problem:
        raise ProductionMisconfigured(f"EPR_PUBLIC_BASE_URL {problem}")
    if settings.is_production:
        missing = [name for name, value in (("EPR_KEYRING", settings.keyring), ("EPR_TLS_CERT", settings.tls_cert),
                                            ("EPR_TLS_KEY", settings.tls_key),
                                            ("EPR_TRUSTED_ISSUERS", settings.trusted_issuers),
                                            ("EPR_AUDIT_SIGNING_KEY", settings.audit_signing_key),
                                            ("EPR_DATABASE_URL", settings.database_url),
                                            ("EPR_PUBLIC_BASE_URL", settings.public_base_url)) if not value]
        if missing:
            raise ProductionMisconfigured(f"production needs {', '.join(missing)}: no development defaults")
        return Prepared(settings, None, ())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keyring_path: Path = settings.keyring_path
    if not keyring_path.exists():
        Keyring.create_file(keyring_path)
        generated.append(f"DEVELOPMENT keyring {keyring_path}")
    if not settings.audit_signing_key_path.exists():
        load_or_create_signing_key(settings.audit_signing_key_path)
        generated.append(f"DEVELOPMENT audit signing key {settings.audit_signing_key_path}")
    pki = ensure_dev_pki(settings.data_dir / "pki")
    updates: dict = {}
    if settings.tls_cert is None:
        updates.update(tls_cert=pki.server_cert, tls_key=pki.server_key)
    if settings.trusted_issuers is None:
        updates["trusted_issuers"] = ensure_dev_issuer(settings.data_dir, dev_issuer_url(settings))
    if settings.mllp_senders is None:
        from gateway.demo import DEMO_GLN, DEMO_LOCAL_SYSTEM
        from gateway.mllp.senders import ensure_dev_senders

        updates["mllp_senders"] = ensure_dev_senders(settings.data_dir, gln=DEMO_GLN,
                                                     assigning_authority=DEMO_LOCAL_SYSTEM)
    return Prepared(settings.model_copy(update=updates), pki, tuple(generated))


def dev_issuer_url(settings: Settings) -> str:
    return f"https://{settings.host}:{settings.port}/dev-issuer"


def public_base_url_problem(url: str) -> str | None:
    """Why a configured FHIR base cannot be the base of the links clients follow, or None."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL with a host"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "takes no query, fragment or credentials"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters"
    return None
