"""Merges as links (`patient_link`), never rewrites: a retired patient's ids and documents are found
under the surviving one while the link is active, and an unmerge gives them back.

What a process remembers of the links (the MPI's SPID → surviving patient and merged-record caches)
is dropped when any worker changes them: merge and unmerge move the link version (`link_versions`:
in-process, or a Redis counter across workers) before and after their change, and every reader asks
`follow_changes` first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update

from adapters.cara.errors import Conflict, InvalidInput, NotFound
from adapters.cara.store.database import for_driver, in_list
from adapters.cara.store.link_versions import LinkVersion
from adapters.cara.store.schema import patient, patient_link

MAX_LINK_DEPTH = 32  # a merge chain longer than this is refused; it bounds every resolution loop


class PatientLinks:
    def __init__(self, *, engine: Engine, version: LinkVersion, on_change: Callable[[], None]):
        self._engine = engine
        self.version = version
        self._seen: object = version.current()
        self._on_change = on_change  # drops what the MPI remembers of the links

    def follow_changes(self) -> None:
        """Drop what this process remembers of the links when any worker changed them since."""
        version = self.version.current()
        if version != self._seen:
            self._on_change()
            self._seen = version

    def _changed(self) -> None:
        self._on_change()
        self.version.bump()

    # -- resolution -----------------------------------------------------------------------------
    def surviving(self, connection, pid: str) -> str:
        """The patient `pid` is merged into, through every active link (itself when not merged)."""
        for _ in range(MAX_LINK_DEPTH):
            nxt = connection.execute(select(patient_link.c.surviving_pid).where(
                patient_link.c.retired_pid == pid, patient_link.c.active)).scalar_one_or_none()
            if nxt is None:
                return pid
            pid = nxt
        raise Conflict("the merge chain of this patient is too long to resolve")

    def surviving_pid(self, pid: str) -> str:
        with self._engine.connect() as connection:
            return self.surviving(connection, pid)

    def surviving_many(self, cursor, dialect: str, pids: set[str]) -> dict[str, str]:
        """pid → its surviving patient (itself when not merged), following active links like `surviving`,
        on a driver cursor (a batch's resolution: one statement per link level)."""
        current = {pid: pid for pid in pids}
        frontier = set(pids)
        for _ in range(MAX_LINK_DEPTH):
            if not frontier:
                return current
            ordered = sorted(frontier)
            cursor.execute(for_driver("SELECT retired_pid, surviving_pid FROM patient_link WHERE active AND "
                                      f"retired_pid IN {in_list(len(ordered))}", dialect), tuple(ordered))
            moved = dict(cursor.fetchall())
            for start, now in current.items():
                if now in moved:
                    current[start] = moved[now]
            frontier = set(moved.values())
        if frontier:
            raise Conflict("the merge chain of this patient is too long to resolve")
        return current

    def pids_for(self, pid: str) -> tuple[str, ...]:
        """The patient and every patient merged into it (transitively, links active): whose documents are its."""
        found, frontier = [pid], [pid]
        with self._engine.connect() as connection:
            for _ in range(MAX_LINK_DEPTH):
                frontier = connection.execute(select(patient_link.c.retired_pid).where(
                    patient_link.c.surviving_pid.in_(frontier), patient_link.c.active)).scalars().all()
                if not frontier:
                    break
                found += frontier
        return tuple(found)

    def replaced_by(self, pid: str) -> str | None:
        """The patient a retired patient was merged into (active link), else None."""
        with self._engine.connect() as connection:
            return connection.execute(select(patient_link.c.surviving_pid).where(
                patient_link.c.retired_pid == pid, patient_link.c.active)).scalar_one_or_none()

    # -- merge and unmerge ------------------------------------------------------------------------
    def merge(self, *, retired: str, surviving: str, within: Callable | None = None) -> None:
        """Retire `retired` into `surviving`. `within(connection)` runs in the same transaction (audit)."""
        if retired == surviving:
            raise InvalidInput("source-patient and target-patient are the same patient", location="Parameters")
        self.version.bump()  # before too: a worker reading the links during the change reads them again after
        with self._engine.begin() as connection:
            _require_patients(connection, retired, surviving)
            for pid, role in ((retired, "source-patient"), (surviving, "target-patient")):
                into = connection.execute(select(patient_link.c.surviving_pid).where(
                    patient_link.c.retired_pid == pid, patient_link.c.active)).scalar_one_or_none()
                if into is not None:
                    raise Conflict(f"the {role} Patient/{pid} is already merged into Patient/{into}")
            connection.execute(delete(patient_link).where(patient_link.c.retired_pid == retired))
            connection.execute(insert(patient_link).values(retired_pid=retired, surviving_pid=surviving,
                                                           merged_at=datetime.now(UTC).replace(tzinfo=None),
                                                           active=True))
            if within is not None:
                within(connection)
        self._changed()

    def unmerge(self, *, retired: str, surviving: str, within: Callable | None = None) -> None:
        self.version.bump()
        with self._engine.begin() as connection:
            _require_patients(connection, retired, surviving)
            changed = connection.execute(update(patient_link).where(
                patient_link.c.retired_pid == retired, patient_link.c.surviving_pid == surviving,
                patient_link.c.active).values(active=False)).rowcount
            if changed != 1:
                raise Conflict(f"Patient/{retired} is not merged into Patient/{surviving}")
            if within is not None:
                within(connection)
        self._changed()


def _require_patients(connection, *pids: str) -> None:
    known = set(connection.execute(select(patient.c.pid).where(patient.c.pid.in_(pids))).scalars())
    missing = [p for p in pids if p not in known]
    if missing:
        raise NotFound(f"Patient/{missing[0]} is not known")
