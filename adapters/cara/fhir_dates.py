"""FHIR date/dateTime values as UTC ranges: what the store keeps and what `date` searches compare.

Every value is parsed into a range inside what `datetime` can hold, or refused with ValueError (a
search answers 400): `9999-12-31` ends at `datetime.max` instead of overflowing, an instant that
leaves years 1–9999 once moved to UTC (`0001-01-01T00:00:00+14:00`) is refused, and only FHIR's own
ASCII forms are read (`datetime.fromisoformat` alone also takes week dates, spaces and a missing zone).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_PARTIAL = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
# FHIR dateTime with a time: seconds optional as in search values, a zone required.
_DATE_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)(?:\.([0-9]{1,9}))?"
                        r"(Z|[+-][0-9]{2}:[0-9]{2})")


def value_range(value: str) -> tuple[datetime, datetime]:
    """[start, end) in naive UTC of a FHIR date or dateTime at its own precision.

    Raises ValueError for anything else, so a bad search value is reported, never ignored.
    """
    if not isinstance(value, str):
        raise ValueError("a FHIR date is a string")
    match = _PARTIAL.fullmatch(value)
    if match:
        year, month, day = match.groups()
        start = datetime(int(year), int(month or 1), int(day or 1))
        if day:
            return start, _plus(start, timedelta(days=1))
        if month:
            return start, _plus(start.replace(day=28), timedelta(days=4), first_of_month=True)
        return start, (start.replace(year=start.year + 1) if start.year < 9999 else datetime.max)
    match = _DATE_TIME.fullmatch(value)
    if not match:
        raise ValueError("not a FHIR date or dateTime (a dateTime with a time needs a time zone)")
    local, fraction, zone = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0") if fraction else ""
    parsed = datetime.fromisoformat(f"{local}{'.' + micro if micro else ''}{'+00:00' if zone == 'Z' else zone}")
    try:
        start = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("the instant is outside the years 1 to 9999 in UTC") from None
    precision = timedelta(seconds=1) if not fraction else timedelta(microseconds=1)
    if local.count(":") == 1:
        precision = timedelta(minutes=1)
    return start, _plus(start, precision)


def _plus(start: datetime, step: timedelta, *, first_of_month: bool = False) -> datetime:
    """start + step, or `datetime.max` when that passes the end of year 9999 (a bounded range)."""
    try:
        end = start + step
    except OverflowError:
        return datetime.max
    return end.replace(day=1) if first_of_month else end


def instant(value: str | None) -> datetime | None:
    """The start of a stored FHIR date/dateTime in naive UTC (None stays None)."""
    return None if value is None else value_range(value)[0]


def fhir_instant(value: datetime) -> str:
    """A stored UTC time (naive, as the store keeps them) as a FHIR instant (meta.lastUpdated)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")
