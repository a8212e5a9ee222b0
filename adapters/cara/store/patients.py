"""The MPI: patients by MPI-PID, with the SPID and demographics sealed and look-ups by keyed hash;
the ITI-104 feed (registration) and PDQm's search.

Every value that could name a person (SPID, local ids, AHVN13, family and given names, birth date,
gender) is looked up through `Keyring.index_hash` only. Every look-up resolves merges to the surviving
patient (`patient_links.PatientLinks`, the MPI's `links`). Conflicting identities are never merged
silently: they go to the review list (`identity_reviews.IdentityReviews`, the MPI's `reviews`) and
the feed is refused (`IdentityConflict`, 409).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from adapters.cara import identity
from adapters.cara.crypto import Keyring, Sealed
from adapters.cara.model import Identifier, OrganizationRef, PatientRecord
from adapters.cara.store.database import for_driver, in_chunks, in_list
from adapters.cara.store.identity_reviews import UNDER_REVIEW_SQL, IdentityReviews
from adapters.cara.store.link_versions import InProcessLinkVersion, LinkVersion
from adapters.cara.store.patient_links import PatientLinks
from adapters.cara.store.schema import patient, patient_identifier, patient_index, patient_link
from adapters.cara.vocabulary import SPID_SYSTEM


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# SPID → surviving MPI-PID links and merged records seen by this process (positive answers only;
# unknown SPIDs are always asked again). Only a merge or an unmerge changes an answer: both clear the
# cache here and move the link version, which makes every other worker clear its own (`link_versions`).
PID_LINKS_CACHED = 100_000
SELECTIVITY = ("birthdate", "family", "given", "gender")  # PDQm criteria, most selective first (usually)


@dataclass(frozen=True)
class Resolved:
    """A patient found by identifier for a batch (`resolve_many`)."""

    pid: str  # the surviving MPI-PID
    record: PatientRecord | None
    under_review: bool  # an open identity review names it or a patient merged into it


class _PatientRow(NamedTuple):
    pid: str
    sealed_key: bytes
    sealed: bytes


_IN_CHUNK = 400  # pairs per IN (...) list: an identifier takes two values (system, hash)


class DatabasePatientIndex:
    def __init__(self, *, engine: Engine, keyring: Keyring, links: LinkVersion | None = None):
        self._engine = engine
        self._keyring = keyring
        self._pid_by_spid_hash: dict[str, str] = {}
        self._records: dict[str, tuple[tuple[str, str | None], ...]] = {}
        self.links = PatientLinks(engine=engine, version=links or InProcessLinkVersion(), on_change=self._forget_links)
        self.reviews = IdentityReviews(engine=engine, keyring=keyring)

    def _forget_links(self) -> None:
        self._pid_by_spid_hash.clear()
        self._records.clear()

    # -- keyed hashes -----------------------------------------------------------------------------
    def _spid_hash(self, spid: str) -> str:
        return self._keyring.index_hash("spid", spid)

    def _identifier_hash(self, identifier: Identifier) -> str:
        return self._keyring.index_hash("pid", identifier.token)

    def _value_hash(self, param: str, normalised: str) -> str:
        return self._keyring.index_hash(f"pdq-{param}", normalised)

    # -- look-ups (each resolves merges to the surviving patient) ---------------------------------
    def pid_for_spid(self, spid: str) -> str | None:
        self.links.follow_changes()
        spid_hash = self._spid_hash(spid)
        pid = self._pid_by_spid_hash.get(spid_hash)
        if pid is None:
            with self._engine.connect() as connection:
                raw = connection.execute(select(patient.c.pid).where(patient.c.spid_hash == spid_hash)
                                         ).scalar_one_or_none()
                pid = None if raw is None else self.links.surviving(connection, raw)
            if pid is not None:
                if len(self._pid_by_spid_hash) >= PID_LINKS_CACHED:
                    self._pid_by_spid_hash.clear()
                self._pid_by_spid_hash[spid_hash] = pid
        return pid

    def pid_for_identifier(self, identifier: Identifier, *, follow_merges: bool = True) -> str | None:
        if identifier.system == SPID_SYSTEM:
            return self.pid_for_spid(identifier.value) if follow_merges else self._raw_pid_for_spid(identifier.value)
        with self._engine.connect() as connection:
            raw = connection.execute(select(patient_identifier.c.pid).where(
                patient_identifier.c.system == identifier.system,
                patient_identifier.c.value_hash == self._identifier_hash(identifier))).scalar_one_or_none()
            return raw if raw is None or not follow_merges else self.links.surviving(connection, raw)

    def pid_for_mpi_pid(self, pid: str, *, follow_merges: bool = True) -> str | None:
        with self._engine.connect() as connection:
            known = connection.execute(select(patient.c.pid).where(patient.c.pid == pid)).scalar_one_or_none()
            return known if known is None or not follow_merges else self.links.surviving(connection, known)

    def surviving_pid(self, pid: str) -> str:
        return self.links.surviving_pid(pid)

    def pids_for(self, pid: str) -> tuple[str, ...]:
        """The patient and every patient merged into it (transitively, links active): whose documents are its."""
        return self.links.pids_for(pid)

    def record_of(self, pid: str) -> tuple[tuple[str, str | None], ...]:
        """The merged record `pid` belongs to: (MPI-PID, SPID) of its surviving patient first, then of
        every patient merged into it. One patient alone is a record of one. Remembered per process
        until a link changes (in any worker): every exchange asks it."""
        self.links.follow_changes()
        members = self._records.get(pid)
        if members is None:
            pids = self.pids_for(self.surviving_pid(pid))
            spids = {r.pid: r.spid for r in self.get_many(pids)}
            members = tuple((p, spids.get(p)) for p in pids)
            if len(self._records) >= PID_LINKS_CACHED:
                self._records.clear()
            self._records[pid] = members  # keyed by the pid asked: no look-up of the survivor either
        return members

    def system_known(self, system: str) -> bool:
        """Whether any patient has a local identifier in `system` (a PIXm target domain we know)."""
        with self._engine.connect() as connection:
            return connection.execute(select(patient_identifier.c.id).where(patient_identifier.c.system == system)
                                      .limit(1)).first() is not None

    def get(self, pid: str) -> PatientRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(patient).where(patient.c.pid == pid)).one_or_none()
        return None if row is None else self._open(row)

    def version_of(self, pid: str) -> tuple[int, datetime] | None:
        """(meta.versionId, when that version was written) of a patient: +1 per identity feed update."""
        with self._engine.connect() as connection:
            row = connection.execute(select(patient.c.version, patient.c.updated_at)
                                     .where(patient.c.pid == pid)).one_or_none()
        return None if row is None else (row.version, row.updated_at)

    def get_many(self, pids: list[str] | tuple[str, ...]) -> list[PatientRecord]:
        """Records in the order of `pids` (unknown ones left out)."""
        return [record for record, _ in self.get_many_versioned(pids)]

    def get_many_versioned(self, pids: list[str] | tuple[str, ...]) -> list[tuple[PatientRecord, tuple[int, datetime]]]:
        """`get_many` with each record's (meta.versionId, when that version was written), as `version_of`
        gives them, from the same rows: a search's Patients carry the version a read gives."""
        with self._engine.connect() as connection:
            rows = {r.pid: r for r in connection.execute(select(patient).where(patient.c.pid.in_(pids)))}
        return [(self._open(rows[p]), (rows[p].version, rows[p].updated_at)) for p in pids if p in rows]

    def _open(self, row) -> PatientRecord:
        data = json.loads(self._keyring.open(Sealed(row.sealed_key, row.sealed), f"patient|{row.pid}"))
        organization = data.get("managing_organization")  # both absent from records sealed before them
        return PatientRecord(pid=row.pid, spid=data["spid"], family=data["family"], given=tuple(data["given"]),
                             birth_date=data["birth_date"], gender=data["gender"],
                             identifiers=tuple(Identifier(**i) for i in data["identifiers"]),
                             birth_name=data.get("birth_name"),
                             managing_organization=OrganizationRef(**organization) if organization else None)

    def _seal(self, record: PatientRecord) -> Sealed:
        return self._keyring.seal(json.dumps(_record_json(record)).encode(), f"patient|{record.pid}")

    # -- PDQm (ITI-78) ----------------------------------------------------------------------------
    def search(self, query: identity.PatientSearch, *, mpi_system: str | None = None) -> tuple[int, list[str]]:
        """(total, up to `count` MPI-PIDs) of the active (not retired) patients matching every criterion.
        `mpi_system`: the community's MPI-PID system, whose identifiers are the MPI-PIDs themselves."""
        # Driven from the index: the likely most selective criterion gives the candidate pids (a range
        # of the (param, value_hash, pid) key), the others are point look-ups in the same key, so a
        # query costs what its criteria select rather than a pass over every patient.
        ordered = sorted(query.demographics, key=lambda c: SELECTIVITY.index(c[0]))
        conditions = [~exists().where(patient_link.c.retired_pid == patient.c.pid, patient_link.c.active)]
        for alternatives in query.identifiers:
            ahvn13 = tuple(i.value for i in alternatives if i.system == identity.AHVN13_SYSTEM)
            pids = {p for i in alternatives if i.system != identity.AHVN13_SYSTEM
                    for p in [self.pid_for_mpi_pid(i.value) if i.system == mpi_system else self.pid_for_identifier(i)]
                    if p is not None}
            conditions.append(or_(patient.c.pid.in_(pids), patient.c.pid.in_(self._with_any("ahvn13", ahvn13))))
        if ordered:
            conditions.append(patient.c.pid.in_(self._with_any(*ordered[0])))
            conditions += [self._has_any(p, v) for p, v in ordered[1:]]
        with self._engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(patient).where(*conditions)).scalar_one()
            pids = connection.execute(select(patient.c.pid).where(*conditions).order_by(patient.c.pid)
                                      .limit(query.count)).scalars().all()
        return total, list(pids)

    def _has_any(self, param: str, values: tuple[str, ...]):
        return exists().where(patient_index.c.param == param,
                              patient_index.c.value_hash.in_([self._value_hash(param, v) for v in values]),
                              patient_index.c.pid == patient.c.pid)

    def _with_any(self, param: str, values: tuple[str, ...]):
        return select(patient_index.c.pid).where(
            patient_index.c.param == param,
            patient_index.c.value_hash.in_([self._value_hash(param, v) for v in values]))

    def _match_demographics(self, incoming: PatientRecord) -> str | None:
        """The one active patient whose family, given, birth date and gender equal the incoming ones
        exactly (hashes first, then the opened records), else None: an ambiguous match links nothing."""
        if not (incoming.family and incoming.given and incoming.birth_date and incoming.gender):
            return None
        wanted = [(p, v) for p, v in identity.index_values(incoming) if p != "ahvn13"]
        pairs = [and_(patient_index.c.param == p, patient_index.c.value_hash == self._value_hash(p, v))
                 for p, v in wanted]
        with self._engine.connect() as connection:
            candidates = connection.execute(
                select(patient_index.c.pid).where(or_(*pairs)).group_by(patient_index.c.pid)
                .having(func.count() == len(wanted)).limit(10)).scalars().all()
            active = [p for p in candidates if self.links.surviving(connection, p) == p]
        matches = [r.pid for r in self.get_many(active) if identity.same_person_by_demographics(r, incoming)]
        return matches[0] if len(matches) == 1 else None

    # -- ITI-104 ----------------------------------------------------------------------------------
    def register(self, source: Identifier, incoming: PatientRecord, *,
                 complete: bool = True) -> tuple[PatientRecord, bool]:
        """ITI-104: link `source` (a local id) and the SPID to one patient, found by the local id, the
        SPID, or else an exact and unique match of family, given, birth date and gender; create it
        when none is found. Any collision with the MPI is refused and put on the review list.
        `complete`: the feed is a whole Patient (ITI-104), so what it leaves out of the birth name and
        managingOrganization is removed; False for a feed that cannot carry them (HL7 v2 ADT)."""
        incoming = identity.canonical(incoming)
        identity.validate_incoming(incoming)
        try:
            return self._register_once(source, incoming, complete)
        except IntegrityError:  # a concurrent feed of the same identity won the race: decide again
            return self._register_once(source, incoming, complete)

    def _register_once(self, source: Identifier, incoming: PatientRecord,
                       complete: bool = True) -> tuple[PatientRecord, bool]:
        by_source = self.pid_for_identifier(source)
        by_spid = self.pid_for_spid(incoming.spid) if incoming.spid else None
        if by_source and by_spid and by_source != by_spid:
            self._refuse(identity.SPID_LINKED_ELSEWHERE, by_source, source, incoming)
        pid = by_source or by_spid
        current = self.get(pid) if pid else None
        if current is not None:
            spids = {r.spid for r in self.get_many(self.pids_for(pid)) if r.spid}
            if incoming.spid and spids and incoming.spid not in spids:
                self._refuse(identity.SPID_DIFFERS, pid, source, incoming)
            if by_source and identity.demographics_differ(current, incoming):
                self._refuse(identity.DEMOGRAPHICS_DIFFER, pid, source, incoming)
        else:
            pid = self._match_demographics(incoming)
            current = self.get(pid) if pid else None
        for identifier in (source, *incoming.identifiers):
            owner = self.pid_for_identifier(identifier)
            if owner is not None and owner != pid:
                reason = (identity.AHVN13_LINKED_ELSEWHERE if identifier.system == identity.AHVN13_SYSTEM
                          else identity.IDENTIFIER_LINKED_ELSEWHERE)
                self._refuse(reason, owner, source, incoming)
        if current is None:
            return self._create(source, incoming), True
        return self._update(current, source, incoming, complete=complete), False

    def load_new_patients(self, feeds: list[tuple[Identifier, PatientRecord]]) -> list[PatientRecord]:
        """Bulk load of patients known to be new (an MPI export, a benchmark), in one transaction: no
        look-ups and no linking, so no vigilance beyond the unique indexes (a SPID, local id or AHVN13
        already present fails the whole batch). Everyday feeds go through `register`."""
        records, patients, identifiers, index = [], [], [], []
        now = _now()
        for source, incoming in feeds:
            incoming = identity.canonical(incoming)
            identity.validate_incoming(incoming)
            record = replace(incoming, pid=uuid.uuid4().hex,
                             identifiers=tuple(dict.fromkeys((source, *incoming.identifiers))))
            sealed = self._seal(record)
            patients.append({"pid": record.pid, "spid_hash": self._spid_hash(record.spid) if record.spid else None,
                             "sealed_key": sealed.wrapped_key, "sealed": sealed.ciphertext, "created_at": now,
                             "updated_at": now})
            identifiers += [{"pid": record.pid, "system": i.system, "value_hash": self._identifier_hash(i)}
                            for i in record.identifiers if i.system != SPID_SYSTEM]
            index += [{"pid": record.pid, "param": p, "value_hash": self._value_hash(p, v)}
                      for p, v in dict.fromkeys(identity.index_values(record))]
            records.append(record)
        with self._engine.begin() as connection:
            for table, rows in ((patient, patients), (patient_identifier, identifiers), (patient_index, index)):
                if rows:
                    connection.execute(insert(table), rows)
        return records

    def _create(self, source: Identifier, incoming: PatientRecord) -> PatientRecord:
        pid = uuid.uuid4().hex
        identifiers = tuple(dict.fromkeys((source, *incoming.identifiers)))
        record = replace(incoming, pid=pid, identifiers=identifiers)
        sealed = self._seal(record)
        now = _now()
        with self._engine.begin() as connection:
            connection.execute(insert(patient).values(
                pid=pid, spid_hash=self._spid_hash(record.spid) if record.spid else None,
                sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext, created_at=now, updated_at=now))
            self._link(connection, pid, identifiers)
            self._index(connection, record)
        return record

    def _update(self, current: PatientRecord, source: Identifier, incoming: PatientRecord, *,
                complete: bool = True) -> PatientRecord:
        pid = current.pid
        # Ids already linked (to this patient or one merged into it) stay where they are.
        added = tuple(i for i in dict.fromkeys((source, *incoming.identifiers))
                      if i not in current.identifiers and self.pid_for_identifier(i) is None)
        spid = current.spid or (incoming.spid if incoming.spid and self._raw_pid_for_spid(incoming.spid) is None
                                else None)
        # The birth name and managingOrganization are replaced as a whole (ITI-104 is a PUT: a feed without
        # them removes them); a feed that cannot carry them (`complete` False: HL7 v2 ADT) keeps them.
        record = PatientRecord(
            pid, spid, incoming.family or current.family, incoming.given or current.given,
            incoming.birth_date or current.birth_date, incoming.gender or current.gender,
            current.identifiers + added,
            birth_name=incoming.birth_name if complete else current.birth_name,
            managing_organization=incoming.managing_organization if complete else current.managing_organization,
        )
        sealed = self._seal(record)
        with self._engine.begin() as connection:
            connection.execute(update(patient).where(patient.c.pid == pid).values(
                spid_hash=self._spid_hash(record.spid) if record.spid else None,
                sealed_key=sealed.wrapped_key, sealed=sealed.ciphertext, updated_at=_now(),
                version=patient.c.version + 1))
            self._link(connection, pid, added)
            connection.execute(delete(patient_index).where(patient_index.c.pid == pid))
            self._index(connection, record)
        return record

    def _raw_pid_for_spid(self, spid: str) -> str | None:
        with self._engine.connect() as connection:
            return connection.execute(select(patient.c.pid).where(patient.c.spid_hash == self._spid_hash(spid))
                                      ).scalar_one_or_none()

    def _link(self, connection, pid: str, identifiers: tuple[Identifier, ...]) -> None:
        # The SPID is looked up through patient.spid_hash; the other ids through this table.
        rows = [{"pid": pid, "system": i.system, "value_hash": self._identifier_hash(i)}
                for i in identifiers if i.system != SPID_SYSTEM]
        if rows:
            connection.execute(insert(patient_identifier), rows)

    def _index(self, connection, record: PatientRecord) -> None:
        rows = [{"pid": record.pid, "param": p, "value_hash": self._value_hash(p, v)}
                for p, v in dict.fromkeys(identity.index_values(record))]
        if rows:
            connection.execute(insert(patient_index), rows)

    # -- identity vigilance: a colliding feed opens a review case and is refused ------------------
    def _refuse(self, reason: str, pid: str | None, source: Identifier, incoming: PatientRecord) -> None:
        raise identity.IdentityConflict(reason, review_id=self.open_review(reason, pid, source, incoming))

    def open_review(self, reason: str, pid: str | None, source: Identifier, incoming: PatientRecord) -> str:
        """A new open case on the review list: the incoming identity (sealed) beside the patient it
        collided with (a feed, or a document whose demographics differ from the MPI's). Its id."""
        details = {"reason": reason, "source": {"system": source.system, "value": source.value},
                   "incoming": _record_json(incoming), "pid": pid}
        return self.reviews.open_case(reason=reason, pid=pid, details=details)

    def reviews_of(self, pids: tuple[str, ...], *, reason: str | None = None, status: str | None = None):
        """The cases (open and resolved, or of `status`) naming these patients, oldest first, opened."""
        return self.reviews.of(pids, reason=reason, status=status)

    def resolve_many(self, messages: list[tuple[Identifier, ...]]) -> dict[tuple[Identifier, ...], Resolved | None]:
        """For each message's identifiers (a PID-3 list, in its order): the surviving patient of the
        first one the MPI knows — `Resolved` (MPI-PID, its record, whether an open identity review names
        it or a patient merged into it) — or None when none is known. What `pid_for_identifier`, `get`
        and `under_review` answer one by one, for a whole batch (the HL7 v2 bridge's group commit) on
        one connection in four plain-SQL statements (identifiers, links, records, reviews), however
        many messages and patients: the Core statements cost several times what the database takes."""
        distinct = list(dict.fromkeys(messages))
        local = {i for identifiers in distinct for i in identifiers if i.system != SPID_SYSTEM}
        hashes = {i: self._identifier_hash(i) for i in local}
        by_spid = {i: self.pid_for_spid(i.value) for identifiers in distinct for i in identifiers
                   if i.system == SPID_SYSTEM}  # remembered per process (see pid_for_spid)
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            dialect = self._engine.dialect.name
            raw: dict[tuple[str, str], str] = {}
            if hashes:
                pairs = sorted({(i.system, h) for i, h in hashes.items()})
                for chunk in in_chunks(pairs, _IN_CHUNK):
                    cursor.execute(for_driver("SELECT system, value_hash, pid FROM patient_identifier WHERE "
                                              + " OR ".join(["(system = ? AND value_hash = ?)"] * len(chunk)), dialect),
                                   tuple(v for pair in chunk for v in pair))
                    raw.update(((system, value_hash), pid) for system, value_hash, pid in cursor.fetchall())
            surviving = self.links.surviving_many(cursor, dialect, set(raw.values()))
            found: dict[tuple[Identifier, ...], str | None] = {}
            for identifiers in distinct:
                found[identifiers] = next((pid for pid in (
                    by_spid[i] if i.system == SPID_SYSTEM else surviving.get(raw.get((i.system, hashes[i])))
                    for i in identifiers) if pid), None)
            pids = sorted({pid for pid in found.values() if pid})
            records: dict[str, PatientRecord] = {}
            reviewed: set[str] = set()
            for chunk in in_chunks(pids, _IN_CHUNK):
                cursor.execute(for_driver(f"SELECT pid, sealed_key, sealed FROM patient WHERE pid IN "
                                          f"{in_list(len(chunk))}", dialect), tuple(chunk))
                records.update((row[0], self._open(_PatientRow(*row))) for row in cursor.fetchall())
                cursor.execute(for_driver(UNDER_REVIEW_SQL.format(pids=in_list(len(chunk))), dialect), tuple(chunk))
                reviewed.update(pid for pid, in cursor.fetchall())
            cursor.close()
        finally:
            connection.close()  # back to the pool (which ends the read transaction)
        return {identifiers: None if pid is None else Resolved(pid, records.get(pid), pid in reviewed)
                for identifiers, pid in found.items()}

    def under_review(self, pid: str) -> bool:
        """Whether an open review names this patient or one merged into it (its documents wait)."""
        return self.reviews.names_any(self.pids_for(pid))


def _record_json(record: PatientRecord) -> dict[str, Any]:
    return {
        "spid": record.spid,
        "family": record.family,
        "given": list(record.given),
        "birth_date": record.birth_date,
        "gender": record.gender,
        "identifiers": [{"system": i.system, "value": i.value} for i in record.identifiers],
        "birth_name": record.birth_name,
        "managing_organization": asdict(record.managing_organization) if record.managing_organization else None,
    }
