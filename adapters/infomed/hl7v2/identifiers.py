"""PID-3 / MRG-1 CX lists → MPI identifiers. `id^^^NS&OID&ISO` is `urn:oid:OID|id`.

Each id is checked after its escapes are decoded (`\\X0D\\`, `\\X00\\`, `\\.br\\` become the characters they
stand for) by its kind's validator: an EPR-SPID, an AHVN13, else the sender's local patient id.
"""

from __future__ import annotations

from adapters.cara.identifier_syntax import AHVN13, AHVN13_SYSTEM, LOCAL_PATIENT_ID, SPID, is_oid
from adapters.cara.model import Identifier
from adapters.cara.vocabulary import SPID_SYSTEM
from adapters.infomed.hl7v2.errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, SenderMustFix
from adapters.infomed.hl7v2.message import Segment

KIND_OF_SYSTEM = {SPID_SYSTEM: SPID, AHVN13_SYSTEM: AHVN13}
# Identifiers taken from one CX list (PID-3, MRG-1). A patient has a handful (the local id, AHVN13, the
# SPID, the ids of merged records); each one costs the MPI a look-up and a row, so a list of thousands is
# refused (AE naming the field) before any of them is looked up.
MAX_IDENTIFIERS = 32


def cx_identifiers(segment: Segment, field: int, *, default_system: str | None = None) -> list[Identifier]:
    """Every repetition with an id and an assigning authority OID (CX.4.2, or CX.4.1 when it is an
    OID). A repetition without any authority takes `default_system` (the sender's configured local id
    namespace); one whose authority has no OID cannot be mapped and is reported (AE)."""
    found: list[Identifier] = []
    unmapped: list[str] = []
    reps = segment.repetitions(field)
    if len(reps) > MAX_IDENTIFIERS:
        raise SenderMustFix(f"{segment.name}-{field} has {len(reps)} repetitions: at most {MAX_IDENTIFIERS} "
                            "identifiers are taken", code=DATA_TYPE_ERROR, segment=segment.name, field=field)
    for index in range(len(reps)):
        value = segment.component(field, 1, repetition=index)
        if not value:
            continue
        namespace = segment.component(field, 4, repetition=index, subcomponent=1)
        oid = segment.component(field, 4, repetition=index, subcomponent=2)
        if not oid and is_oid(namespace):
            oid = namespace
        if oid and is_oid(oid):
            found.append(_checked(Identifier(f"urn:oid:{oid}", value), segment, field))
        elif not namespace and not oid and default_system:
            found.append(_checked(Identifier(default_system, value), segment, field))
        else:
            unmapped.append(namespace or oid or "(none)")
    if not found:
        where = f"{segment.name}-{field}"
        if unmapped:
            raise SenderMustFix(f"{where}: assigning authority {unmapped[0]!r} has no OID "
                                "(send id^^^namespace&OID&ISO)", code=TABLE_VALUE_NOT_FOUND,
                                segment=segment.name, field=field, component=4)
        raise SenderMustFix(f"{where}: no patient identifier", code=REQUIRED_FIELD_MISSING,
                            segment=segment.name, field=field)
    return found


def _checked(identifier: Identifier, segment: Segment, field: int) -> Identifier:
    kind = KIND_OF_SYSTEM.get(identifier.system, LOCAL_PATIENT_ID)
    # An AHVN13 may be written with its dots (756.1234.5678.97); the MPI removes them (identity.canonical).
    problem = kind.problem(identifier.value.replace(".", "") if kind is AHVN13 else identifier.value)
    if problem:
        raise SenderMustFix(f"{segment.name}-{field}: {problem}", code=DATA_TYPE_ERROR, segment=segment.name,
                            field=field, component=1)
    return identifier
