"""Builds the gateway's services from settings: store, keyring, MPI, token verifier, use-cases."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from adapters.cara.crypto import Keyring
from adapters.cara.store.database import make_engine, migrate
from adapters.cara.store.documents import DatabaseDocumentStore
from adapters.cara.store.patients import DatabasePatientIndex
from gateway.auth.issuers import TrustedIssuers
from gateway.auth.iua import TokenVerifier
from gateway.exchange import Exchange
from gateway.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    keyring: Keyring
    exchange: Exchange
    verifier: TokenVerifier


def build_services(settings: Settings) -> Services:
    """Expects the keyring and trusted-issuers files to exist (`first_start.prepare` makes the dev ones)."""
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    keyring = Keyring.load(settings.keyring_path)
    documents = DatabaseDocumentStore(engine=engine, keyring=keyring)
    patients = DatabasePatientIndex(engine=engine, keyring=keyring)
    exchange = Exchange(documents=documents, patients=patients, community_oid=settings.community_oid)
    verifier = TokenVerifier(issuers=TrustedIssuers.load(settings.trusted_issuers), audience=settings.audience,
                             clock_skew_seconds=settings.clock_skew_seconds)
    return Services(settings=settings, engine=engine, keyring=keyring, exchange=exchange, verifier=verifier)
