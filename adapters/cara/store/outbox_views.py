"""The community outbox as an operator sees it (`epr-gateway outbox status|show|retry`, the migration's
report): counts per community and state, every delivery and attempt of a document, making rows due
again. Part of `DatabaseOutbox` (a base class of it); nothing here sends or deletes anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update

from adapters.cara.store.database import in_chunks
from adapters.cara.store.outbox_rows import Delivery, deliveries, delivery_of
from adapters.cara.store.outbox_schema import (
    FAILED,
    NOT_SUPPORTED,
    ON_ITS_WAY,
    PENDING,
    WAITING_PATIENT,
    community_delivery,
    community_delivery_attempt,
)


@dataclass(frozen=True)
class CommunityCounts:
    community: str
    by_state: dict[str, int]
    oldest_due: datetime | None  # created_at of the oldest row still on its way


class OperatorViews:
    _engine: object
    _clock: object

    def counts(self) -> list[CommunityCounts]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(community_delivery.c.community, community_delivery.c.state, func.count())
                                      .group_by(community_delivery.c.community, community_delivery.c.state)).all()
            oldest = dict(connection.execute(
                select(community_delivery.c.community, func.min(community_delivery.c.created_at))
                .where(community_delivery.c.state.in_(ON_ITS_WAY)).group_by(community_delivery.c.community)).all())
        by_community: dict[str, dict[str, int]] = {}
        for community, state, count in rows:
            by_community.setdefault(community, {})[state] = count
        return [CommunityCounts(c, states, oldest.get(c)) for c, states in sorted(by_community.items())]

    def find(self, unique_id: str) -> list[tuple[Delivery, list[dict]]]:
        """Every delivery of the document `unique_id` (each community, each version) with its attempts."""
        with self._engine.connect() as connection:
            rows = connection.execute(deliveries().where(community_delivery.c.unique_id == unique_id)
                                      .order_by(community_delivery.c.id)).all()
            found = []
            for row in rows:
                attempts = connection.execute(select(community_delivery_attempt).where(
                    community_delivery_attempt.c.delivery_id == row.id).order_by(
                    community_delivery_attempt.c.attempt)).mappings().all()
                found.append((delivery_of(row), [dict(a) for a in attempts]))
        return found

    def retry(self, *, unique_ids: Sequence[str] = (), failed: bool = False) -> int:
        """Make rows due now: the failed ones (`failed`), and/or those of the named documents that are not
        delivered. Their submission set, entryUUIDs and uniqueId stay as they were."""
        if not unique_ids and not failed:
            return 0
        chosen = []
        if failed:
            chosen.append(community_delivery.c.state.in_((FAILED, NOT_SUPPORTED)))
        if unique_ids:
            chosen.append(and_(community_delivery.c.unique_id.in_(list(unique_ids)),
                               community_delivery.c.state.in_((FAILED, NOT_SUPPORTED, PENDING, WAITING_PATIENT))))
        now = self._clock()
        with self._engine.begin() as connection:
            return connection.execute(update(community_delivery).where(or_(*chosen)).values(
                state=PENDING, next_attempt_at=now, updated_at=now)).rowcount

    def states_of(self, entry_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """entry id → community → the state of its latest delivery."""
        return self._states(community_delivery.c.entry_id, entry_ids)

    def states_of_unique_ids(self, unique_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """uniqueId → community → the state of its latest delivery (the migration's report)."""
        return self._states(community_delivery.c.unique_id, unique_ids)

    def _states(self, column, keys: Sequence[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        with self._engine.connect() as connection:
            for chunk in in_chunks(list(dict.fromkeys(keys))):
                rows = connection.execute(select(column, community_delivery.c.community, community_delivery.c.state)
                                          .where(column.in_(chunk)).order_by(community_delivery.c.id)).all()
                for key, community, state in rows:
                    found.setdefault(key, {})[community] = state
        return found
