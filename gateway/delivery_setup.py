"""The composition root's part for delivering into communities (issue 24): the communities file checked
at start, a transport per community, the outbox's participant in the provide seam, the delivery
use-case, and the deliverer and ATNA sender that run inside `serve` or as `epr-gateway deliver`.

`communities_of(settings)` is called by every command that builds the runtime: a missing file, key or
endpoint, or EPR_DELIVERY asking for delivery without communities, is a `CommunityConfigError` (one
line; the command line prints it and exits 2) before anything is stored or sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.cara.store.outbox import Backoff, DatabaseOutbox
from adapters.community.config import Community, CommunityConfigError, MhdCommunity, load_communities
from adapters.community.mhd import MhdDocumentSource
from adapters.community.source import XdsDocumentSource
from consent.principal import Principal
from consent.roles import TECHNICAL_USER
from gateway.delivery.audit_sender import AuditSender
from gateway.delivery.deliverer import Deliverer, owner_name
from gateway.delivery.single import SingleDeliverer, always
from gateway.exchanges.delivery import CommunityTarget, DeliveryExchange
from gateway.exchanges.delivery_outcomes import Retries
from gateway.exchanges.delivery_rows import DeliveryRows
from gateway.exchanges.record_changes import RecordChanges
from gateway.settings import Settings

log = logging.getLogger("epr.delivery")


def communities_of(settings: Settings) -> tuple[Community | MhdCommunity, ...]:
    """The configured communities, checked whole; () when delivery is off."""
    mode = settings.delivery_mode
    if mode == "off":
        return ()
    if settings.communities is None:
        raise CommunityConfigError(f"EPR_DELIVERY={mode} needs EPR_COMMUNITIES (the communities file); "
                                   "unset EPR_DELIVERY or set it to off to deliver nowhere")
    return load_communities(settings.communities)


def target(community: Community | MhdCommunity) -> CommunityTarget:
    """The community's transport and the principal the deliverer acts as."""
    if isinstance(community, MhdCommunity):  # a remote MHD Document Recipient (issue 24 item 7)
        source = MhdDocumentSource(community)
        delivering = Principal(role=TECHNICAL_USER, user_id=source.client_id,
                               name=f"technical user {source.client_id} ({community.id})", purpose_of_use="AUTO",
                               acting_for=community.principal_gln, acting_for_name=community.principal_name)
        return CommunityTarget(community.id, source, community.mhd_url, delivering, transaction="ITI-65")
    user = community.technical_user
    delivering = Principal(role=TECHNICAL_USER, user_id=user.oid, name=f"technical user {user.oid} ({community.id})",
                           purpose_of_use="AUTO", acting_for=user.principal_gln, acting_for_name=user.principal_name)
    return CommunityTarget(community.id, XdsDocumentSource(community), community.iti41_url, delivering)


def delivery_exchange(settings: Settings, *, outbox: DatabaseOutbox, changes: RecordChanges, documents, patients,
                      access, auditor) -> DeliveryExchange:
    """The delivery use-case; with communities, the outbox rows are written by every change from now on."""
    communities = communities_of(settings)
    targets = {community.id: target(community) for community in communities}
    if targets:
        DeliveryRows(outbox=outbox, communities=list(targets)).register(changes)
    longest = max(3600.0, settings.delivery_retry_max_seconds)
    retries = Retries(transport=Backoff(settings.delivery_retry_seconds, settings.delivery_retry_max_seconds),
                      waiting=Backoff(settings.delivery_patient_retry_seconds, longest))
    return DeliveryExchange(outbox=outbox, documents=documents, patients=patients, access=access, auditor=auditor,
                            targets=targets, mode=settings.delivery_mode, retries=retries)


@dataclass
class RunningDelivery:
    """The deliverer and the ATNA sender of one process, started and stopped together."""

    deliverer: Deliverer
    audit: AuditSender
    single: SingleDeliverer | None

    def start(self) -> RunningDelivery:
        self.deliverer.on_recorded = self.audit.wake
        self.deliverer.start()
        self.audit.start()
        return self

    def stop(self) -> None:
        self.deliverer.stop()
        self.audit.stop()
        if self.single is not None:
            self.single.release()

    def run_until_idle(self, *, timeout_seconds: float = 3600.0) -> int:
        """Deliver what is due, send the ATNA messages once, stop (`deliver --once`)."""
        self.deliverer.on_recorded = None
        try:
            recorded = self.deliverer.run_until_idle(timeout_seconds=timeout_seconds)
            self.audit.send_due()
            return recorded
        finally:
            if self.single is not None:
                self.single.release()


def running_delivery(settings: Settings, exchange: DeliveryExchange, *, store_in_process: bool,
                     concurrency: int | None = None, owner: str | None = None) -> RunningDelivery:
    """On SQLite one process of the data directory delivers at a time (`single.py`); on PostgreSQL all."""
    single = SingleDeliverer(settings.data_dir / "deliverer.lock") if store_in_process else None
    owner = owner or owner_name()
    deliverer = Deliverer(exchange=exchange, owner=owner, concurrency=concurrency or settings.delivery_concurrency,
                          lease_seconds=settings.delivery_lease_seconds, poll_seconds=settings.delivery_poll_seconds,
                          may_deliver=single.held if single is not None else always)
    return RunningDelivery(deliverer, AuditSender(exchange=exchange, owner=owner), single)


def close_transports(exchange: DeliveryExchange | None) -> None:
    if exchange is not None:
        exchange.close()


__all__: Sequence[str] = ("RunningDelivery", "communities_of", "delivery_exchange", "running_delivery", "target")
