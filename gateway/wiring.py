"""The composition root: builds every part of the gateway once per process, from settings.

Above every floor (root → faces → use-cases → adapters/consent/audit): `build_runtime` makes the
infrastructure (engine, keyring, ledger, token verifier, directory) and the use-cases (`Services`),
and the functions below hand each face what it owns — the FHIR app (`gateway/composition.py`), the
MLLP listener, the migration's checkpointer. No face imports this module.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from adapters.cara.client_json import JsonLimits
from adapters.cara.crypto import Keyring
from adapters.cara.identifier_syntax import ascii_int
from adapters.cara.store.database import make_engine, migrate, store_in_process
from adapters.cara.store.documents import DatabaseDocumentStore
from adapters.cara.store.outbox import DatabaseOutbox
from adapters.cara.store.submission_sets import DatabaseSubmissionSets
from adapters.cara.store.link_versions import InProcessLinkVersion, LinkVersion, RedisLinkVersion, UncachedLinks
from adapters.cara.store.patients import DatabasePatientIndex
from gateway.auth.dev_issuer import KEY_FILE
from gateway.auth.issuers import TrustedIssuers
from gateway.auth.iua import TokenVerifier
from gateway.auth.token_endpoint import ClientCredentialsGrant, TokenClients
from consent.cache import InProcessPolicyCache, PolicyCache, RedisPolicyCache, UncachedPolicies
from consent.store import DatabaseNotificationStore, DatabasePolicyStore
from audit.ledger import DatabaseAuditLedger
from audit.shipping import SyslogShipper, client_ssl_context
from audit.signing import load_signing_key
from audit.witness import WitnessWriter
from gateway.delivery_setup import communities_of, delivery_exchange, running_delivery
from gateway.exchanges.access import AccessControl
from gateway.exchanges.delivery import DeliveryExchange
from gateway.exchanges.trail import AuditTrail
from gateway.exchanges.auditing import Auditor
from gateway.exchanges.document_lists import DocumentLists
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.identity import IdentityExchange
from gateway.exchanges.metadata import MetadataExchange
from gateway.exchanges.policies import PolicyExchange
from gateway.exchanges.record_changes import RecordChanges
from gateway.exchanges.portal import PortalExchange
from gateway.exchanges.professionals import ProfessionalExchange
from gateway.exchanges.paging_cursors import PageCursors
from gateway.exchanges.search_pages import InProcessSearchPages, NoSearchPages, RedisSearchPages, SearchPages
from gateway.exchanges.services import Services
from gateway.exchanges.transaction import TransactionExchange
from gateway.first_start import dev_issuer_url
from gateway.instrumentation import instrument
from gateway.portal.directory import Directory, load_directory
from gateway.redis_client import redis_client
from gateway.settings import Settings


log = logging.getLogger("epr.gateway")


@dataclass
class Runtime:
    """What `build_runtime` made: the infrastructure, kept here at the root, and the use-cases."""

    settings: Settings
    engine: Engine
    keyring: Keyring
    ledger: DatabaseAuditLedger
    verifier: TokenVerifier  # the FHIR face's door
    directory: Directory  # EPR_PORTAL_DIRECTORY: professionals and groups (the trail's names, the portal's choices)
    services: Services
    delivery: DeliveryExchange  # into the configured communities (none: delivery off); the deliverer's door
    token_grant: ClientCredentialsGrant | None = None  # DEVELOPMENT: the issuer's token endpoint (dev_token_grant)

    @property
    def store_in_process(self) -> bool:
        """SQLite: the store runs inside this process (see `routes.common.run_use_case`)."""
        return store_in_process(self.engine)

    def close(self) -> None:
        self.delivery.close()
        # The connections threads kept beside the pool (the engine's dispose closes only the pool's).
        self.services.exchange.documents.close()
        self.services.auditor.close()
        self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """Expects the keyring and trusted-issuers files to exist (`first_start.prepare` makes the dev ones).
    A communities file that cannot be used is a CommunityConfigError before anything else is built."""
    communities_of(settings)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    keyring = Keyring.load(settings.keyring_path)
    documents = DatabaseDocumentStore(engine=engine, keyring=keyring)
    patients = DatabasePatientIndex(engine=engine, keyring=keyring, links=link_version(settings))
    key_id, signing_key = load_signing_key(settings.audit_signing_key_path)
    ledger = DatabaseAuditLedger(engine=engine, signing_key=signing_key, key_id=key_id,
                                 checkpoint_every=settings.audit_checkpoint_every)
    instrument(engine, ledger)
    # SQLite is in-process: the event loop commits the reads' audit batches itself (see audit_commit).
    auditor = Auditor(engine=engine, ledger=ledger, keyring=keyring, source_site=settings.audit_source_oid,
                      community_oid=settings.community_oid, write_on_loop=store_in_process(engine))
    access = AccessControl(policies=DatabasePolicyStore(engine=engine, keyring=keyring), cache=policy_cache(settings),
                           notifications=DatabaseNotificationStore(engine=engine, keyring=keyring),
                           provide_level_mode=settings.provide_level_mode)
    pages = search_pages(settings, documents=documents)
    limits = json_limits(settings)
    cursors = PageCursors(keyring=keyring)
    # One set of in-transaction participants for every change to the record's documents (record_changes).
    changes = RecordChanges()
    exchange = DocumentExchange(documents=documents, patients=patients, access=access, auditor=auditor,
                                community_oid=settings.community_oid, cursors=cursors, pages=pages, json_limits=limits,
                                changes=changes)
    # The directory names whom a policy names in the patient's trail (and what the portal offers to choose).
    directory = load_directory(settings.portal_directory)
    policies = PolicyExchange(engine=engine, patients=patients, access=access, auditor=auditor, json_limits=limits,
                              name_of=directory.name_of)
    trail = AuditTrail(patients=patients, access=access, auditor=auditor, cursors=cursors, name_of=directory.name_of)
    verifier = TokenVerifier(issuers=TrustedIssuers.load(settings.trusted_issuers), audience=settings.audience,
                             clock_skew_seconds=settings.clock_skew_seconds,
                             max_lifetime_seconds=settings.max_token_lifetime_seconds,
                             max_tcu_lifetime_seconds=settings.max_tcu_token_lifetime_seconds)
    identities = IdentityExchange(patients=patients, auditor=auditor, community_oid=settings.community_oid,
                                  pages=pages, json_limits=limits)
    metadata = MetadataExchange(documents=documents, patients=patients, access=access, auditor=auditor, pages=pages,
                                json_limits=limits, changes=changes)
    transactions = TransactionExchange(documents=exchange, policies=policies, metadata=metadata, auditor=auditor,
                                       json_limits=limits)
    professionals = ProfessionalExchange(identities=identities, documents=exchange, access=access, auditor=auditor,
                                         community_oid=settings.community_oid, source_id=settings.hcp_source_id,
                                         max_upload_bytes=settings.hcp_max_upload_bytes)
    lists = DocumentLists(sets=DatabaseSubmissionSets(engine=engine, keyring=keyring), patients=patients,
                          access=access, auditor=auditor, cursors=cursors)
    services = Services(exchange=exchange, identities=identities, policies=policies, metadata=metadata, trail=trail,
                        portal=PortalExchange(patients=patients, access=access, auditor=auditor),
                        professionals=professionals, transactions=transactions, lists=lists, auditor=auditor)
    # Delivery into the communities: the outbox's rows written by every change above (record_changes).
    delivery = delivery_exchange(settings, outbox=DatabaseOutbox(engine=engine), changes=changes, documents=documents,
                                 patients=patients, access=access, auditor=auditor)
    runtime = Runtime(settings=settings, engine=engine, keyring=keyring, ledger=ledger, verifier=verifier,
                      directory=directory, services=services, delivery=delivery, token_grant=dev_token_grant(settings))
    release_held_messages(runtime)
    return runtime


def dev_token_grant(settings: Settings) -> ClientCredentialsGrant | None:
    """DEVELOPMENT: the development issuer's token endpoint (client credentials over mutual TLS), so a
    second gateway can obtain tokens from this one as from an IdP. Never in production; only where the
    development issuer's key exists (the embedded default) and clients are registered. A registrations
    file that cannot be used stops the start (TokenClientsInvalid, one line)."""
    if settings.is_production or settings.dev_token_clients is None:
        return None
    if not (settings.data_dir / "auth" / KEY_FILE).exists():
        return None
    return ClientCredentialsGrant(clients=TokenClients.load(settings.dev_token_clients), data_dir=settings.data_dir,
                                  issuer_url=dev_issuer_url(settings), audience=settings.audience)


def release_held_messages(runtime: Runtime) -> None:
    """A feed (ITI-104, A08), an onboarding or a resolved identity review may fix what holds HL7 v2 messages: the
    bridge's use-case processes that patient's held messages again. The channel is built only when some
    message is held (one indexed query per feed), so a bulk ITI-104 feed does not read the senders file each time."""
    from adapters.cara.store.message_inbox import DatabaseMessageInbox

    inbox = DatabaseMessageInbox(engine=runtime.engine, keyring=runtime.keyring)

    def follow(pid: str) -> None:
        try:
            if not inbox.any_held():
                return
            bridge = hl7_exchange(runtime)
        except Exception:  # the feed is done and answered; `bridge held --release` processes them later
            log.exception("held HL7 v2 messages could not be looked up after an identity change")
            return
        bridge.release_held_quietly(pid)

    services = runtime.services
    services.identities.patient_fed.append(follow)
    services.identities.review_resolved.append(follow)
    services.policies.onboarded.append(follow)


def json_limits(settings: Settings) -> JsonLimits:
    """The budget of client JSON, from `EPR_MAX_METADATA_BYTES` and its neighbours."""
    return JsonLimits(max_metadata_bytes=settings.max_metadata_bytes, max_depth=settings.max_json_depth,
                      max_resource_bytes=settings.max_resource_metadata_bytes, max_members=settings.max_json_members)


def siem_shipper(settings: Settings, engine: Engine) -> SyslogShipper | None:
    """The ledger's shipping to a SIEM when `EPR_SIEM_ADDRESS` is set (started with the app)."""
    if not settings.siem_address:
        return None
    host, _, port = settings.siem_address.rpartition(":")
    if not host or ascii_int(port) is None:
        raise ValueError("EPR_SIEM_ADDRESS must be host:port")
    context = client_ssl_context(str(settings.siem_ca) if settings.siem_ca else None,
                                 str(settings.siem_client_cert) if settings.siem_client_cert else None,
                                 str(settings.siem_client_key) if settings.siem_client_key else None)
    return SyslogShipper(engine=engine, host=host, port=int(port), ssl_context=context)


def search_pages(settings: Settings, documents: DatabaseDocumentStore | None = None) -> SearchPages:
    """Like the policy cache: Redis with several workers, in-process with one, else none. In-process
    pages also read the store's document version, so writes of other processes are seen at once."""
    ttl = settings.search_cache_seconds
    if ttl <= 0:
        return NoSearchPages()
    if settings.redis_url:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: a cache that cannot be asked at once is a miss (read the store), not a wait.
        client = redis_client(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
                              retry=Retry(NoBackoff(), 0))
        return RedisSearchPages(client=client, ttl_seconds=ttl)
    if settings.workers != 1:
        return NoSearchPages()
    return InProcessSearchPages(ttl_seconds=ttl, store_version=documents.document_version if documents else None)


def policy_cache(settings: Settings) -> PolicyCache:
    """Redis when configured (several workers); in-process for one worker; otherwise none."""
    if settings.redis_url:
        return RedisPolicyCache(client=redis_client(settings.redis_url, socket_timeout=2))
    return InProcessPolicyCache() if settings.workers == 1 else UncachedPolicies()


def hl7_exchange(runtime: Runtime, *, door_refusals=None):
    """The HL7 v2 channel on these services (the MLLP listener's one door), over its use-cases.
    `door_refusals`: the listener's refusal windows, which count its unknown senders (gateway/mllp/door.py)."""
    from adapters.cara.store.message_inbox import DatabaseMessageInbox
    from gateway.exchanges.held_messages import HeldMessages
    from gateway.exchanges.message_answers import MessageAnswers
    from gateway.exchanges.message_documents import DocumentMessages
    from gateway.exchanges.message_patients import PatientMessages
    from gateway.exchanges.patient_readiness import PatientReadiness
    from gateway.mllp.channel import Hl7Channel
    from gateway.mllp.senders import SenderRegistry

    services = runtime.services
    exchange, auditor, patients = services.exchange, services.auditor, services.exchange.patients
    answers = MessageAnswers(inbox=DatabaseMessageInbox(engine=runtime.engine, keyring=runtime.keyring))
    readiness = PatientReadiness(patients=patients, access=exchange.access)
    held = HeldMessages(inbox=answers.inbox, answers=answers, readiness=readiness, exchange=exchange,
                        patients=patients, auditor=auditor)
    return Hl7Channel(documents=DocumentMessages(exchange=exchange, readiness=readiness, held=held, answers=answers,
                                                 auditor=auditor),
                      patients=PatientMessages(exchange=exchange, identities=services.identities, patients=patients),
                      held=held, answers=answers, auditor=auditor,
                      senders=SenderRegistry.load(runtime.settings.mllp_senders), door_refusals=door_refusals)


@contextlib.contextmanager
def background_checkpoints(runtime: Runtime):
    """SQLite WAL checkpoints in a thread for the duration of a bulk write (the migration), instead of
    inside its commits: the commit that passes 1,000 WAL pages would also copy them into the database
    file and fsync it (the migration's figures with and without: bench/README.md). The checkpointer
    does nothing on PostgreSQL."""
    from adapters.cara.store.wal_checkpoint import WalCheckpointer

    checkpointer = WalCheckpointer(runtime.engine)
    checkpointer.start()
    try:
        yield
    finally:
        checkpointer.stop()


def mllp_listener(runtime: Runtime, *, port: int | None = None, reuse_port: bool = False):
    """The MLLP listener (EPR_MLLP_*): TLS with the gateway's certificate when EPR_MLLP_TLS=1."""
    from adapters.cara.store.wal_checkpoint import WalCheckpointer
    from gateway.mllp.door import MllpDoor, refusal_windows
    from gateway.mllp.limits import MllpLimits
    from gateway.mllp.listener import MllpListener
    from gateway.pki import server_ssl_context

    settings = runtime.settings
    context = (server_ssl_context(settings.tls_cert, settings.tls_key, settings.client_ca, settings.require_client_cert)
               if settings.mllp_tls else None)
    # SQLite has one writer: one thread avoids lock waits; PostgreSQL takes several.
    threads = 1 if runtime.store_in_process else 4
    processes = settings.mllp_map_processes
    windows = refusal_windows(settings)
    return MllpListener(handler=hl7_exchange(runtime, door_refusals=windows),
                        door=MllpDoor(windows=windows, auditor=runtime.services.auditor), host=settings.mllp_host,
                        port=settings.mllp_port if port is None else port, ssl_context=context,
                        limits=MllpLimits.from_settings(settings), threads=threads, reuse_port=reuse_port,
                        mapping_processes=processes,
                        checkpointer=WalCheckpointer(runtime.engine) if runtime.store_in_process else None)


def link_version(settings: Settings) -> LinkVersion:
    """Like the policy cache: the MPI's remembered links follow a Redis counter with several workers."""
    if settings.redis_url:
        return RedisLinkVersion(client=redis_client(settings.redis_url, socket_timeout=2))
    return InProcessLinkVersion() if settings.workers == 1 else UncachedLinks()


def key_heartbeat(runtime: Runtime):
    """The thread reporting the key-encryption keys this process holds (started with the app and the bridge)."""
    from adapters.cara.store.key_holders import KeyHeartbeat, KeyHolders

    return KeyHeartbeat(keyring=runtime.keyring, holders=KeyHolders(engine=runtime.engine),
                        interval_seconds=runtime.settings.key_heartbeat_seconds)


def audit_witness(settings: Settings, engine: Engine, ledger: DatabaseAuditLedger) -> WitnessWriter:
    """The writer of the ledger's signed heads to the witness file (started with the app), woken by
    every commit batch."""
    writer = WitnessWriter(engine=engine, path=settings.audit_witness_path,
                           interval_seconds=settings.audit_witness_seconds)
    ledger.on_head_signed(writer.wake)
    return writer


def deliverer(runtime: Runtime, *, concurrency: int | None = None):
    """The deliverer and ATNA sender of this process (`serve`'s lifespan, `epr-gateway deliver`); None
    when no community is configured."""
    if not runtime.delivery.communities:
        return None
    return running_delivery(runtime.settings, runtime.delivery, store_in_process=runtime.store_in_process,
                            concurrency=concurrency)
