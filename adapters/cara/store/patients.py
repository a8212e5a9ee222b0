"""The MPI: patients by MPI-PID, with the SPID and demographics sealed and look-ups by keyed hash."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.errors import Conflict
from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.store.schema import patient, patient_identifier
from adapters.cara.vocabulary import SPID_SYSTEM


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# SPID → MPI-PID links seen by this process. A link, once made, does not change (a merge, when the
# identity issue brings it, retires the old MPI-PID and must clear this cache), so positive answers
# can be kept; unknown SPIDs are always asked again.
PID_LINKS_CACHED = 100_000


class DatabasePatientIndex:
    def __init__(self, *, engine: Engine, keyring: Keyring):
        self._engine = engine
        self._keyring = keyring
        self._pid_by_spid_hash: dict[str, str] = {}

    def _spid_hash(self, spid: str) -> str:
        return self._keyring.index_hash("spid", spid)

    def _identifier_hash(self, identifier: Identifier) -> str:
        return self._keyring.index_hash("pid", identifier.token)

    def pid_for_spid(self, spid: str) -> str | None:
        spid_hash = self._spid_hash(spid)
        pid = self._pid_by_spid_hash.get(spid_hash)
        if pid is None:
            with self._engine.connect() as connection:
                pid = connection.execute(select(patient.c.pid).where(patient.c.spid_hash == spid_hash)
                                         ).scalar_one_or_none()
            if pid is not None:
                if len(self._pid_by_spid_hash) >= PID_LINKS_CACHED:
                    self._pid_by_spid_hash.clear()
                self._pid_by_spid_hash[spid_hash] = pid
        return pid

    def pid_for_identifier(self, identifier: Identifier) -> str | None:
        with self._engine.connect() as connection:
            return connection.execute(
                select(patient_identifier.c.pid).where(
                    patient_identifier.c.system == identifier.system,
                    patient_identifier.c.value_hash == self._identifier_hash(identifier),
                )
            ).scalar_one_or_none()

    def get(self, pid: str) -> PatientRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(patient).where(patient.c.pid == pid)).one_or_none()
        return None if row is None else self._open(row)

    def _open(self, row) -> PatientRecord:
        data = json.loads(self._keyring.open(Sealed(row.sealed_key, row.sealed), f"patient|{row.pid}"))
        return PatientRecord(
            pid=row.pid,
            spid=data["spid"],
            family=data["family"],
            given=tuple(data["given"]),
            birth_date=data["birth_date"],
            gender=data["gender"],
            identifiers=tuple(Identifier(**i) for i in data["identifiers"]),
        )

    def _seal(self, record: PatientRecord) -> Sealed:
        data = {
            "spid": record.spid,
            "family": record.family,
            "given": list(record.given),
            "birth_date": record.birth_date,
            "gender": record.gender,
            "identifiers": [{"system": i.system, "value": i.value} for i in record.identifiers],
        }
        return self._keyring.seal(json.dumps(data).encode(), f"patient|{record.pid}")

    def register(self, source: Identifier, incoming: PatientRecord) -> tuple[PatientRecord, bool]:
        """ITI-104: link `source` (a local id) and the SPID to one patient; create it when neither is known.

        A local id and a SPID that already belong to two different patients are a conflict: never
        merged silently (identity vigilance decides what happens next).
        """
        by_source = self.pid_for_identifier(source)
        by_spid = self.pid_for_spid(incoming.spid) if incoming.spid else None
        if by_source and by_spid and by_source != by_spid:
            raise Conflict("the local identifier and the EPR-SPID belong to two different patients of the MPI")
        pid = by_source or by_spid
        if pid is None:
            return self._create(source, incoming), True
        return self._update(pid, source, incoming), False

    def _create(self, source: Identifier, incoming: PatientRecord) -> PatientRecord:
        pid = uuid.uuid4().hex
        identifiers = tuple(dict.fromkeys((source, *incoming.identifiers)))
        record = PatientRecord(pid, incoming.spid, incoming.family, incoming.given, incoming.birth_date,
                               incoming.gender, identifiers)
        sealed = self._seal(record)
        now = _now()
        with self._engine.begin() as connection:
            connection.execute(insert(patient).values(
                pid=pid, spid_hash=self._spid_hash(record.spid) if record.spid else None,
                sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext, created_at=now, updated_at=now))
            self._link(connection, pid, identifiers)
        return record

    def _update(self, pid: str, source: Identifier, incoming: PatientRecord) -> PatientRecord:
        current = self.get(pid)
        if current.spid and incoming.spid and current.spid != incoming.spid:
            raise Conflict("this local identifier is linked to a patient with another EPR-SPID")
        known = set(current.identifiers)
        added = tuple(i for i in dict.fromkeys((source, *incoming.identifiers)) if i not in known)
        record = PatientRecord(
            pid, current.spid or incoming.spid, incoming.family or current.family, incoming.given or current.given,
            incoming.birth_date or current.birth_date, incoming.gender or current.gender,
            current.identifiers + added,
        )
        sealed = self._seal(record)
        with self._engine.begin() as connection:
            connection.execute(update(patient).where(patient.c.pid == pid).values(
                spid_hash=self._spid_hash(record.spid) if record.spid else None,
                sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext, updated_at=_now()))
            self._link(connection, pid, added)
        return record

    def _link(self, connection, pid: str, identifiers: tuple[Identifier, ...]) -> None:
        # The SPID is looked up through patient.spid_hash; the other ids through this table.
        rows = [{"pid": pid, "system": i.system, "value_hash": self._identifier_hash(i)}
                for i in identifiers if i.system != SPID_SYSTEM]
        if rows:
            connection.execute(insert(patient_identifier), rows)
