"""The patients' policies and the notifications owed to them, in the shared store, sealed.

Policies are read per request from the store (through `PolicyCache` when one is configured): a
revocation takes effect on the very next decision.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.errors import StaleVersion
from adapters.cara.store.database import in_chunks
from adapters.cara.store.schema import (
    consent_policy,
    consent_policy_deleted,
    patient_notification,
    patient_notification_read,
)
from consent.policies import Policy


@dataclass(frozen=True)
class StoredPolicy:
    """A policy as stored: its patient, its version (meta.versionId) and when that version was written."""

    pid: str
    policy: Policy
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class DeletedPolicy:
    """What is kept of a removed policy set: whose it was, the version its deletion made, and when."""

    pid: str
    version: int
    deleted_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _policy_context(policy_set_id: str, pid: str) -> str:
    return f"consent-policy|{policy_set_id}|{pid}"


# Policies opened, by what was stored: the same sealed bytes under the same context always open to the
# same policy, so a batch that reads its patients' policies fresh (the migration, the bridge: every
# batch) decrypts only those that changed. Changed ones are new bytes (a fresh data key and nonce),
# never served from here; the rows are still read from the store every time.
OPENED_POLICIES_KEPT = 10_000  # a few per patient: the patients of many batches


class DatabasePolicyStore:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring
        self._opened: dict[tuple[str, str, bytes, bytes], Policy] = {}

    def policies_for(self, pid: str) -> list[Policy]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(consent_policy.c.policy_set_id, consent_policy.c.sealed_key, consent_policy.c.sealed)
                .where(consent_policy.c.patient_pid == pid).order_by(consent_policy.c.policy_set_id)
            ).all()
        return [self._open(row.policy_set_id, pid, row) for row in rows]

    def policies_for_many(self, pids: list[str]) -> dict[str, list[Policy]]:
        """`policies_for` of each of `pids` (an empty list for a patient without any), in a few IN-list
        queries: a batch's patients together."""
        found: dict[str, list[Policy]] = {pid: [] for pid in pids}
        with self._engine.connect() as connection:
            for chunk in in_chunks(list(found)):
                rows = connection.execute(
                    select(consent_policy.c.patient_pid, consent_policy.c.policy_set_id, consent_policy.c.sealed_key,
                           consent_policy.c.sealed)
                    .where(consent_policy.c.patient_pid.in_(chunk))
                    .order_by(consent_policy.c.patient_pid, consent_policy.c.policy_set_id)).all()
                for row in rows:
                    found[row.patient_pid].append(self._open(row.policy_set_id, row.patient_pid, row))
        return found

    def get(self, policy_set_id: str) -> tuple[str, Policy] | None:
        """(patient pid, policy) or None."""
        with self._engine.connect() as connection:
            row = connection.execute(select(consent_policy).where(consent_policy.c.policy_set_id == policy_set_id)
                                     ).one_or_none()
        return None if row is None else (row.patient_pid, self._open(row.policy_set_id, row.patient_pid, row))

    def stored(self, policy_set_id: str) -> StoredPolicy | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(consent_policy).where(consent_policy.c.policy_set_id == policy_set_id)
                                     ).one_or_none()
        return None if row is None else StoredPolicy(row.patient_pid, self._open(row.policy_set_id, row.patient_pid, row),
                                                      row.version, row.updated_at)

    def stored_for(self, pid: str) -> list[StoredPolicy]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(consent_policy).where(consent_policy.c.patient_pid == pid)
                                      .order_by(consent_policy.c.policy_set_id)).all()
        return [StoredPolicy(pid, self._open(row.policy_set_id, pid, row), row.version, row.updated_at)
                for row in rows]

    def deleted(self, policy_set_id: str) -> DeletedPolicy | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(consent_policy_deleted)
                                     .where(consent_policy_deleted.c.policy_set_id == policy_set_id)).one_or_none()
        return None if row is None else DeletedPolicy(row.patient_pid, row.version, row.deleted_at)

    def put(self, connection, policy: Policy, *, pid: str, if_match: int | None = None) -> tuple[bool, StoredPolicy]:
        """Create or replace inside the caller's transaction: (created, the policy as now stored).
        `if_match`: the version the client read; the row is replaced only if it is still that one
        (compare-and-set in the UPDATE itself, so two writers cannot both win), else StaleVersion.
        A policy set created again after its deletion continues its version numbers."""
        sealed = self._keyring.seal(json.dumps(_policy_json(policy)).encode(),
                                    _policy_context(policy.policy_set_id, pid))
        now = _now()
        values = dict(patient_pid=pid, template=policy.template, updated_at=now, sealed_key=sealed.wrapped_key,
                      sealed=sealed.ciphertext)
        where = [consent_policy.c.policy_set_id == policy.policy_set_id, consent_policy.c.patient_pid == pid]
        if if_match is not None:
            where.append(consent_policy.c.version == if_match)
        row = connection.execute(update(consent_policy).where(*where)
                                 .values(version=consent_policy.c.version + 1, **values)
                                 .returning(consent_policy.c.version)).one_or_none()
        if row is not None:
            return False, StoredPolicy(pid, policy, row.version, now)
        if if_match is not None:
            raise StaleVersion(f"Consent/{policy.policy_set_id.removeprefix('urn:uuid:')} is not at version "
                               f"{if_match}: read it again, then update", location="If-Match")
        tombstone = connection.execute(
            delete(consent_policy_deleted).where(consent_policy_deleted.c.policy_set_id == policy.policy_set_id)
            .returning(consent_policy_deleted.c.version)).one_or_none()
        version = tombstone.version + 1 if tombstone else 1
        connection.execute(insert(consent_policy).values(policy_set_id=policy.policy_set_id, version=version,
                                                         **values))
        return True, StoredPolicy(pid, policy, version, now)

    def remove(self, connection, policy_set_id: str, *, if_match: int | None = None) -> bool:
        """Delete inside the caller's transaction, leaving a tombstone (no policy content) behind."""
        where = [consent_policy.c.policy_set_id == policy_set_id]
        if if_match is not None:
            where.append(consent_policy.c.version == if_match)
        row = connection.execute(delete(consent_policy).where(*where)
                                 .returning(consent_policy.c.patient_pid, consent_policy.c.version)).one_or_none()
        if row is None:
            if if_match is not None:
                raise StaleVersion(f"Consent/{policy_set_id.removeprefix('urn:uuid:')} is not at version "
                                   f"{if_match}", location="If-Match")
            return False
        connection.execute(delete(consent_policy_deleted).where(consent_policy_deleted.c.policy_set_id == policy_set_id))
        connection.execute(insert(consent_policy_deleted).values(policy_set_id=policy_set_id, patient_pid=row.patient_pid,
                                                                 version=row.version + 1, deleted_at=_now()))
        return True

    def _open(self, policy_set_id: str, pid: str, row) -> Policy:
        stored = (policy_set_id, pid, bytes(row.sealed_key), bytes(row.sealed))
        policy = self._opened.get(stored)
        if policy is None:
            data = json.loads(self._keyring.open(Sealed(row.sealed_key, row.sealed), _policy_context(policy_set_id, pid)))
            for key in ("start", "end"):
                data[key] = date.fromisoformat(data[key]) if data[key] else None
            policy = Policy(**data)
            if len(self._opened) >= OPENED_POLICIES_KEPT:
                self._opened.clear()
            self._opened[stored] = policy
        return policy


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
