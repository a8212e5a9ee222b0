"""ADT^A08 (update patient information) → an MPI feed; ADT^A40 (merge, ADT_A39) → who retires into whom."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.cara.identity import AHVN13_SYSTEM
from adapters.cara.model import Identifier, PatientRecord
from adapters.cara.vocabulary import SPID_SYSTEM
from adapters.infomed.hl7v2.dates import fhir_date
from adapters.infomed.hl7v2.errors import REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, SenderMustFix
from adapters.infomed.hl7v2.identifiers import cx_identifiers
from adapters.infomed.hl7v2.message import Message

# PID-8 administrative sex (table 0001) → FHIR gender
GENDERS = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown", "": None}


@dataclass(frozen=True)
class PatientFeed:
    source: Identifier  # the sender's local id: what the feed is attached to
    incoming: PatientRecord


@dataclass(frozen=True)
class Merge:
    surviving: tuple[Identifier, ...]  # PID-3
    retired: tuple[Identifier, ...]  # MRG-1


def patient_feed(message: Message, *, assigning_authority: str | None = None) -> PatientFeed:
    pid = message.require("PID")
    identifiers = cx_identifiers(pid, 3, default_system=assigning_authority)
    spid = next((i.value for i in identifiers if i.system == SPID_SYSTEM), None)
    local = [i for i in identifiers if i.system not in (SPID_SYSTEM, AHVN13_SYSTEM)]
    if not local:
        raise SenderMustFix("PID-3 needs the sender's local patient id (besides SPID or AHVN13)",
                            code=REQUIRED_FIELD_MISSING, segment="PID", field=3)
    sex = pid.value(8).upper()
    if sex not in GENDERS:
        raise SenderMustFix(f"PID-8 administrative sex {sex!r} is not in table 0001", code=TABLE_VALUE_NOT_FOUND,
                            segment="PID", field=8)
    given = tuple(g for g in (pid.component(5, 2), pid.component(5, 3)) if g)
    incoming = PatientRecord(
        pid="", spid=spid, family=pid.component(5, 1, subcomponent=1) or None, given=given,
        birth_date=fhir_date(pid.value(7), where=("PID", 7)), gender=GENDERS[sex],
        identifiers=tuple(i for i in identifiers if i.system != SPID_SYSTEM and i != local[0]),
    )
    return PatientFeed(local[0], incoming)


def merge(message: Message, *, assigning_authority: str | None = None) -> Merge:
    pid = message.require("PID")
    mrg = message.require("MRG")
    return Merge(tuple(cx_identifiers(pid, 3, default_system=assigning_authority)),
                 tuple(cx_identifiers(mrg, 1, default_system=assigning_authority)))
