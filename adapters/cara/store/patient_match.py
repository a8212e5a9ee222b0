"""ITI-119's candidates from the MPI's keyed-hash index: which active patients share which of the
submitted (normalised) demographics. One statement on `patient_index`; no record is opened here."""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.store.schema import patient_index, patient_link

CANDIDATES = 200  # bound on the patients one match considers


def shared_demographics(index: DatabasePatientIndex, demographics: tuple[tuple[str, str], ...]) -> dict[str, set[str]]:
    """MPI-PID → the params (family, given, birthdate, gender) it shares with the submitted values;
    retired (merged) patients are left out: their survivor answers."""
    if not demographics:
        return {}
    pairs = [and_(patient_index.c.param == p, patient_index.c.value_hash == index._value_hash(p, v))
             for p, v in demographics]
    retired = select(patient_link.c.retired_pid).where(patient_link.c.active)
    with index._engine.connect() as connection:
        rows = connection.execute(
            select(patient_index.c.pid, patient_index.c.param).where(or_(*pairs), patient_index.c.pid.not_in(retired))
            .order_by(patient_index.c.pid).limit(CANDIDATES * 5)).all()
    shared: dict[str, set[str]] = {}
    for pid, param in rows:
        shared.setdefault(pid, set()).add(param)
    return shared
