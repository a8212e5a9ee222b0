"""FHIR date/dateTime values as UTC ranges: what the store keeps and what `date` searches compare."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def value_range(value: str) -> tuple[datetime, datetime]:
    """[start, end) in naive UTC of a FHIR date or dateTime at its own precision.

    Raises ValueError for anything else, so a bad search value is reported, never ignored.
    """
    match = _PARTIAL.match(value)
    if match:
        year, month, day = match.groups()
        start = datetime(int(year), int(month or 1), int(day or 1))
        if day:
            return start, start + timedelta(days=1)
        if month:
            return start, (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return start, start.replace(year=start.year + 1)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a dateTime with a time needs a time zone")
    start = parsed.astimezone(UTC).replace(tzinfo=None)
    precision = timedelta(seconds=1) if parsed.microsecond == 0 else timedelta(microseconds=1)
    return start, start + precision


def instant(value: str | None) -> datetime | None:
    """The start of a stored FHIR date/dateTime in naive UTC (None stays None)."""
    return None if value is None else value_range(value)[0]
