"""The community outbox's values: what is enqueued (`NewDelivery`), a row as a deliverer holds it
(`Delivery`, with the state of the row it depends on), one attempt (`Attempt`) and what finishing it
writes (`Finish`); and how a row is read (`deliveries`, `delivery_of`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from adapters.cara.store.outbox_schema import DELIVERED, community_delivery


@dataclass(frozen=True)
class NewDelivery:
    """What the provide seam knows when a document (or a metadata version) is stored."""

    community: str
    kind: str  # provide | replace | update | delete
    entry_id: str
    version: int
    unique_id: str
    patient_pid: str
    confidentiality: str  # the level it was stored with: the first attempt sends at least it
    original_entry_id: str | None = None  # replace: the replaced entry; update/delete: the entry itself


@dataclass(frozen=True)
class Delivery:
    id: int
    community: str
    kind: str
    entry_id: str
    version: int
    unique_id: str
    patient_pid: str
    depends_on: int | None
    state: str
    submission_set_unique_id: str
    submission_set_uuid: str
    entry_uuid: str
    confidentiality: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    community_patient_id: str | None
    last_code: str | None
    last_text: str | None
    created_at: datetime
    delivered_at: datetime | None
    receipt: dict | None
    # What this row depends on (the delivery that put the document into the community), if any:
    original_state: str | None = None
    original_entry_uuid: str | None = None  # its community entryUUID, once delivered
    original_receipt: dict | None = None


@dataclass(frozen=True)
class Attempt:
    """One try and what the community said (or why nothing was heard)."""

    outcome: str  # delivered | already-delivered | raise-confidentiality | conflict | rejected | transport |
    # waiting-patient | not-supported | withdrawn | refused
    started_at: datetime
    finished_at: datetime
    confidentiality: str
    code: str | None = None
    text: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Finish:
    """A delivery's attempt and the state it moves to (see `DatabaseOutbox.finish_many`)."""

    delivery: Delivery
    attempt: Attempt
    state: str
    retry_at: datetime | None = None
    confidentiality: str | None = None  # raised for the next attempt (never lowered)
    community_patient_id: str | None = None
    receipt: dict | None = None


def deliveries():
    original = community_delivery.alias("original")
    return (select(community_delivery, original.c.state.label("original_state"),
                   original.c.entry_uuid.label("original_delivered_uuid"),
                   original.c.receipt.label("original_receipt"))
            .select_from(community_delivery.outerjoin(original, original.c.id == community_delivery.c.depends_on)))


def delivery_of(row) -> Delivery:
    values = row._mapping
    receipt, original = values["receipt"], values["original_receipt"]
    delivered = values["original_state"] == DELIVERED
    return Delivery(**{name: values[name] for name in Delivery.__dataclass_fields__
                       if name not in ("receipt", "original_entry_uuid", "original_receipt")},
                    receipt=json.loads(receipt) if receipt else None,
                    original_entry_uuid=values["original_delivered_uuid"] if delivered else None,
                    original_receipt=json.loads(original) if delivered and original else None)
