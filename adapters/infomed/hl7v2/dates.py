"""HL7 v2 TS/DTM fields → FHIR date / dateTime, through the gateway's one date parser.

A time without an offset is Swiss local time (Europe/Zurich, with summer time): that is what the
Valais senders' clocks write (`adapters/cara/dates.py` says how the switch hours are read). Whatever
the parser refuses (month 13, 30 February, hour 24, year 0000, a skipped local hour) is the sender's
to fix: AE with the field named, never a ValueError from deep inside, never an AR.
"""

from __future__ import annotations

from datetime import UTC

from adapters.cara.dates import SWISS_LOCAL_TIME, InvalidDate, Moment, parse_hl7
from adapters.infomed.hl7v2.errors import DATA_TYPE_ERROR, SenderMustFix

SENDER_ZONE = SWISS_LOCAL_TIME


def fhir_datetime(value: str, *, where: tuple[str, int]) -> str | None:
    """The FHIR dateTime (or date, at a date's precision) of field `where` = (segment, field); None if empty."""
    return _read(value, where, SENDER_ZONE, quoted=True).fhir() if value else None


def fhir_date(value: str, *, where: tuple[str, int]) -> str | None:
    """A date field (PID-7 birth date): its date part as written; a time sent with it is checked but not
    moved into any zone (a birth date is the date on the local calendar)."""
    return _read(value, where, UTC, quoted=False).fhir_date() if value else None


def _read(value: str, where: tuple[str, int], zone, *, quoted: bool) -> Moment:
    """`quoted`: the refusal may repeat the value (not a birth date: the ACK and the ledger keep it)."""
    try:
        return parse_hl7(value.strip(" "), zone=zone)
    except InvalidDate as refused:
        raise SenderMustFix(f"{where[0]}-{where[1]}: {refused.reason if quoted else refused.why}",
                            code=DATA_TYPE_ERROR, segment=where[0], field=where[1]) from None
