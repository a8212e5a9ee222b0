"""The patients' policies and the notifications owed to them, in the shared store, sealed.

Policies are read per request from the store (through `PolicyCache` when one is configured): a
revocation takes effect on the very next decision.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.store.schema import consent_policy, patient_notification, patient_notification_read
from consent.policies import Policy


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _policy_context(policy_set_id: str, pid: str) -> str:
    return f"consent-policy|{policy_set_id}|{pid}"


class DatabasePolicyStore:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring

    def policies_for(self, pid: str) -> list[Policy]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(consent_policy.c.policy_set_id, consent_policy.c.sealed_key, consent_policy.c.sealed)
                .where(consent_policy.c.patient_pid == pid).order_by(consent_policy.c.policy_set_id)
            ).all()
        return [self._open(row.policy_set_id, pid, row) for row in rows]

    def get(self, policy_set_id: str) -> tuple[str, Policy] | None:
        """(patient pid, policy) or None."""
        with self._engine.connect() as connection:
            row = connection.execute(select(consent_policy).where(consent_policy.c.policy_set_id == policy_set_id)
                                     ).one_or_none()
        return None if row is None else (row.patient_pid, self._open(row.policy_set_id, row.patient_pid, row))

    def put(self, connection, policy: Policy, *, pid: str) -> bool:
        """Create or replace inside the caller's transaction; True when it was created."""
        sealed = self._keyring.seal(json.dumps(_policy_json(policy)).encode(),
                                    _policy_context(policy.policy_set_id, pid))
        values = dict(patient_pid=pid, template=policy.template, updated_at=_now(), sealed_key=sealed.wrapped_key,
                      sealed=sealed.ciphertext)
        changed = connection.execute(update(consent_policy)
                                     .where(consent_policy.c.policy_set_id == policy.policy_set_id,
                                            consent_policy.c.patient_pid == pid)
                                     .values(**values)).rowcount
        if changed:
            return False
        connection.execute(insert(consent_policy).values(policy_set_id=policy.policy_set_id, **values))
        return True

    def remove(self, connection, policy_set_id: str) -> bool:
        return bool(connection.execute(delete(consent_policy)
                                       .where(consent_policy.c.policy_set_id == policy_set_id)).rowcount)

    def _open(self, policy_set_id: str, pid: str, row) -> Policy:
        data = json.loads(self._keyring.open(Sealed(row.sealed_key, row.sealed), _policy_context(policy_set_id, pid)))
        for key in ("start", "end"):
            data[key] = date.fromisoformat(data[key]) if data[key] else None
        return Policy(**data)


def _policy_json(policy: Policy) -> dict[str, Any]:
    data = asdict(policy)
    for key in ("start", "end"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


class DatabaseNotificationStore:
    """What the patient must be told: each emergency access (who, when, which documents)."""

    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring

    def add(self, *, pid: str, notice: dict[str, Any]) -> str:
        notification_id = str(uuid.uuid4())
        sealed = self._keyring.seal(json.dumps(notice).encode(), f"notification|{notification_id}|{pid}")
        with self._engine.begin() as connection:
            connection.execute(insert(patient_notification).values(
                id=notification_id, patient_pid=pid, created_at=_now(), sealed_key=sealed.wrapped_key,
                sealed=sealed.ciphertext))
        return notification_id

    def for_patient(self, pid: str) -> list[tuple[str, datetime, dict[str, Any]]]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(patient_notification)
                                      .where(patient_notification.c.patient_pid == pid)
                                      .order_by(patient_notification.c.created_at.desc())).all()
        return [(row.id, row.created_at,
                 json.loads(self._keyring.open(Sealed(row.sealed_key, row.sealed), f"notification|{row.id}|{pid}")))
                for row in rows]


    def seen(self, pid: str) -> set[str]:
        """Ids of this patient's notifications already shown to them (the web page marks them)."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(patient_notification_read.c.notification_id)
                .join(patient_notification, patient_notification.c.id == patient_notification_read.c.notification_id)
                .where(patient_notification.c.patient_pid == pid)).all()
        return {row.notification_id for row in rows}

    def mark_seen(self, *, pid: str, notification_ids: list[str]) -> int:
        """Mark these of the patient's notifications as seen (others' ids are ignored); returns how many."""
        seen = self.seen(pid)
        with self._engine.begin() as connection:
            mine = {row.id for row in connection.execute(
                select(patient_notification.c.id).where(patient_notification.c.patient_pid == pid,
                                                        patient_notification.c.id.in_(notification_ids))).all()}
            new = sorted(mine - seen)
            if new:
                connection.execute(insert(patient_notification_read),
                                   [{"notification_id": n, "read_at": _now()} for n in new])
        return len(new)
