"""Identity vigilance: the review list. A feed that collides with the MPI (a SPID linked elsewhere,
demographics that differ, an identifier already another patient's) is never merged silently: its
case is kept here, sealed (`identity-review|<id>` as associated data), until a person resolves it.
The MPI opens a case and refuses the feed; what waits on a patient's identity asks whether an open
case names it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.errors import NotFound
from adapters.cara.store.schema import identity_review

# The patients, each with every patient merged into it (active links), named by an open review.
UNDER_REVIEW_SQL = ("WITH RECURSIVE merged(root, pid) AS (SELECT pid, pid FROM patient WHERE pid IN {pids} "
                    "UNION SELECT m.root, l.retired_pid FROM patient_link l JOIN merged m ON l.surviving_pid = m.pid "
                    "WHERE l.active) "
                    "SELECT DISTINCT m.root FROM merged m JOIN identity_review r ON r.pid = m.pid "
                    "WHERE r.status = 'open'")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class IdentityReview:
    id: str
    created_at: datetime
    reason: str
    pid: str | None
    status: str
    details: dict[str, Any]


class IdentityReviews:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring

    def open_case(self, *, reason: str, pid: str | None, details: dict[str, Any]) -> str:
        """A new open case (its own transaction: it stays when the feed that raised it is refused)."""
        review_id = uuid.uuid4().hex
        sealed = self._keyring.seal(json.dumps(details).encode(), f"identity-review|{review_id}")
        with self._engine.begin() as connection:
            connection.execute(insert(identity_review).values(
                id=review_id, created_at=_now(), reason=reason, pid=pid, status="open", resolved_at=None,
                sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext))
        return review_id

    def open_reviews(self) -> list[IdentityReview]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(identity_review).where(identity_review.c.status == "open")
                                      .order_by(identity_review.c.created_at, identity_review.c.id)).all()
        return [self._open(r) for r in rows]

    def resolve(self, review_id: str) -> IdentityReview:
        with self._engine.begin() as connection:
            row = connection.execute(select(identity_review).where(identity_review.c.id == review_id)).one_or_none()
            if row is None:
                raise NotFound(f"identity review {review_id} is not known")
            if row.status != "resolved":
                connection.execute(update(identity_review).where(identity_review.c.id == review_id)
                                   .values(status="resolved", resolved_at=_now()))
        review = self._open(row)
        return IdentityReview(review.id, review.created_at, review.reason, review.pid, "resolved", review.details)

    def of(self, pids: tuple[str, ...], *, reason: str | None = None, status: str | None = None) -> list[IdentityReview]:
        """The cases (open and resolved, or of `status`) naming these patients, oldest first, opened."""
        query = select(identity_review).where(identity_review.c.pid.in_(pids))
        if reason is not None:
            query = query.where(identity_review.c.reason == reason)
        if status is not None:
            query = query.where(identity_review.c.status == status)
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(identity_review.c.created_at, identity_review.c.id)).all()
        return [self._open(r) for r in rows]

    def names_any(self, pids: tuple[str, ...]) -> bool:
        """Whether an open case names any of `pids` (a patient and those merged into it)."""
        with self._engine.connect() as connection:
            return connection.execute(select(identity_review.c.id).where(
                identity_review.c.pid.in_(pids), identity_review.c.status == "open").limit(1)
            ).first() is not None

    def _open(self, row) -> IdentityReview:
        details = json.loads(self._keyring.open(Sealed(row.sealed_key, row.sealed), f"identity-review|{row.id}"))
        return IdentityReview(row.id, row.created_at, row.reason, row.pid, row.status, details)
