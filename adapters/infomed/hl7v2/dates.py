"""HL7 v2 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) → FHIR date / dateTime."""

from __future__ import annotations

import re

from adapters.infomed.hl7v2.errors import DATA_TYPE_ERROR, SenderMustFix

_TS = re.compile(r"([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?(\.[0-9]{1,4})?([+-][0-9]{4})?")


def fhir_datetime(value: str, *, where: tuple[str, int]) -> str | None:
    if not value:
        return None
    match = _TS.fullmatch(value.strip())
    if not match:
        raise SenderMustFix(f"{where[0]}-{where[1]} {value!r} is not an HL7 date/time", code=DATA_TYPE_ERROR,
                            segment=where[0], field=where[1])
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if not (month and day):
        return "-".join(p for p in (year, month) if p)
    if not hour:
        return f"{year}-{month}-{day}"
    time = f"{hour}:{minute or '00'}:{second or '00'}{fraction or ''}"
    offset = f"{zone[:3]}:{zone[3:]}" if zone else "+00:00"  # no zone: read as UTC, FHIR needs one with a time
    return f"{year}-{month}-{day}T{time}{offset}"


def fhir_date(value: str, *, where: tuple[str, int]) -> str | None:
    converted = fhir_datetime(value, where=where)
    return converted[:10] if converted else None
