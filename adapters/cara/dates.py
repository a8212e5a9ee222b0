"""The gateway's one date and time parser: every face reads dates and times through it.

Two wire grammars feed one calendar check:
- ISO forms (FHIR `date`, `dateTime`, `instant`, search values; the patient's page and the command
  line): `YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]]`, each use stating which parts it requires;
- HL7 compact forms (HL7 v2 TS/DTM, XDS DTM): `YYYY[MM[DD[hh[mm[ss[.f]]]]]][±hhmm]`.

The check is the same whatever the grammar: a month 13, 30 February, hour 24, minute 60, year 0000,
an offset beyond ±14:00 and a moment outside the years 1–9999 once moved to UTC are refused, as
`InvalidDate` with a reason a sender can act on; each face turns it into its own refusal naming the
field (an OperationOutcome expression, an HL7 ERR location, the migration report's reason). Nothing
here raises ValueError from `datetime`, so no face answers 500 for a date.

Decisions (ARCHITECTURE.md, "Dates and time zones"):
- A leap second (second 60, valid FHIR and ISO 8601) is accepted and read as a repetition of second
  59, as POSIX clocks keep it: `2016-12-31T23:59:60Z` is stored and served as `2016-12-31T23:59:59Z`,
  so it stays in its day and year for searches, and `datetime` (which has no second 60) can hold it.
- Where a time has no offset, the face says in which zone it was written: HL7 v2 senders in Valais
  write Swiss local time (Europe/Zurich, with summer time); XDS `DTM` is UTC by the IHE rule. A local
  time that occurs twice (the last hour of summer time) is read as the first, summer time (PEP 495
  `fold=0`); one that never occurred (the hour skipped in spring) is refused: the sender's clock or
  conversion is wrong, and sending the offset removes the doubt.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from adapters.cara.identifier_syntax import shown as _shown

__all__ = ["SWISS_LOCAL_TIME", "InvalidDate", "Moment", "fhir_instant", "instant", "parse_fhir", "parse_full_date",
           "parse_hl7", "parse_xds", "value_range"]

SWISS_LOCAL_TIME = ZoneInfo("Europe/Zurich")
MAX_OFFSET = timedelta(hours=14)  # FHIR's own bound (its regex: ±13:59 or ±14:00)
MAX_FRACTION_DIGITS = 9

_ISO = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"
                  r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?")
_HL7 = re.compile(r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]+))?)?)?)?)?)?"
                  r"([+-][0-9]{4})?")

# What each ISO use requires once a time is given: (seconds required, zone required).
_ISO_USES = {
    "date": None,  # FHIR date: no time at all
    "dateTime": (True, True),  # FHIR dateTime (R4: seconds and a zone with every time)
    "instant": (True, True),  # FHIR instant: a time is required as well (checked below)
    "search": (False, True),  # FHIR search values: minutes may end the value
    "cli": (False, False),  # the command line: a missing zone is UTC
}
_ISO_FORMS = {
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)",
    "instant": "YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)",
    "search": "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]](Z|+hh:mm|-hh:mm)",
    "cli": "YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm|-hh:mm]",
}


class InvalidDate(Exception):
    """A date or time the gateway does not take. `reason` says why, the value quoted; `why` says it
    without the value, for a birth date (it identifies a patient: refusals reach the ACK and the ledger)."""

    def __init__(self, value: object, reason: str):
        super().__init__(f"{value!r}: {reason}")
        self.value = value
        self.reason = f"{_shown(value)} {reason}"
        self.why = f"the date {reason}"


@dataclass(frozen=True)
class Moment:
    """A date, or a date and time with its offset, at the precision it was written; leap second
    already folded into second 59. `start`/`end` are naive UTC (what the store keeps)."""

    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int = 0
    second: int | None = None  # None: minute precision (search and command-line values)
    fraction: str = ""  # the digits as written (at most nine)
    offset: timedelta | None = None  # None for a date without time
    zone: str = ""  # the offset as FHIR writes it, as the value wrote it (`Z`, `+00:00`); "" for a date

    @property
    def start(self) -> datetime:
        """The first instant the value covers, in naive UTC (a date: its midnight, as the store keeps it)."""
        if self.hour is None:
            return datetime(self.year, self.month or 1, self.day or 1)
        micro = int(self.fraction[:6].ljust(6, "0")) if self.fraction else 0
        local = datetime(self.year, self.month or 1, self.day or 1, self.hour, self.minute, self.second or 0, micro)
        return local - (self.offset or timedelta(0))  # checked in range by `_moment`

    @property
    def end(self) -> datetime:
        """The first instant after the value at its precision (`datetime.max` past the year 9999)."""
        start = self.start
        if self.hour is not None:
            step = (timedelta(minutes=1) if self.second is None else
                    timedelta(seconds=1) if not self.fraction else timedelta(microseconds=1))
            return _plus(start, step)
        if self.day is not None:
            return _plus(start, timedelta(days=1))
        if self.month is not None and self.month < 12:
            return start.replace(month=self.month + 1)
        return start.replace(year=start.year + 1, month=1) if start.year < 9999 else datetime.max

    def fhir_date(self) -> str:
        """The date as written, at its precision (`YYYY[-MM[-DD]]`), whatever time follows it."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
        if self.day is not None:
            text += f"-{self.day:02d}"
        return text

    def fhir(self) -> str:
        """The value in FHIR's form at its precision: a date as `YYYY[-MM[-DD]]`, a time with its offset
        (`Z` for UTC; a local offset that is not whole minutes, as before 1894, is given in UTC)."""
        if self.hour is None:
            return self.fhir_date()
        moment = self if self.zone else _in_utc(self)
        text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}"
        if moment.second is not None:
            text += f":{moment.second:02d}" + (f".{moment.fraction}" if moment.fraction else "")
        return text + moment.zone

    def as_date(self) -> date:
        return date(self.year, self.month or 1, self.day or 1)


# -- the grammars --------------------------------------------------------------------------------
def parse_fhir(value: object, *, kind: str) -> Moment:
    """A FHIR `date`, `dateTime`, `instant`, a search value (`search`) or a command-line moment (`cli`)."""
    if not isinstance(value, str):
        raise InvalidDate(value, f"is not {_KIND_NAMES[kind]} ({_ISO_FORMS[kind]})")
    return _parse_fhir(value, kind)


@lru_cache(maxsize=4096)
def _parse_fhir(value: str, kind: str) -> Moment:
    """Remembered (a Moment never changes; what is refused is not remembered): an ITI-65 Bundle checks
    and then maps its dates, mostly the same few, and the hot searches repeat theirs."""
    uses = _ISO_USES[kind]
    match = _ISO.fullmatch(value)
    if match is None:
        raise InvalidDate(value, f"is not {_KIND_NAMES[kind]} ({_ISO_FORMS[kind]})")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    has_time = hour is not None
    if (kind == "date" and has_time) or (kind == "instant" and not has_time) or (
            kind == "cli" and day is None) or (has_time and uses is not None and (
            (uses[0] and second is None) or (uses[1] and zone is None))):
        raise InvalidDate(value, f"is not {_KIND_NAMES[kind]} ({_ISO_FORMS[kind]})")
    offset = None
    if has_time:
        offset = timedelta(0) if zone in (None, "Z") else _offset(value, zone[0], zone[1:3], zone[4:6])
    return _moment(value, year, month, day, hour, minute, second, fraction, offset, zone or "Z")


def parse_full_date(value: object) -> date:
    """`YYYY-MM-DD` and nothing else (birth dates, Consent periods, the page's date fields)."""
    moment = parse_fhir(value, kind="date")
    if moment.day is None:
        raise InvalidDate(value, "is not a full date (YYYY-MM-DD)")
    return moment.as_date()


def parse_hl7(value: object, *, zone: tzinfo = SWISS_LOCAL_TIME) -> Moment:
    """HL7 v2 TS/DTM `YYYY[MM[DD[hh[mm[ss[.ffff]]]]]][±hhmm]`; a time without offset was written in
    `zone` (the sender's local time: Europe/Zurich in Valais). Hours without minutes are hh:00:00."""
    match = _HL7.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidDate(value, "is not an HL7 date/time (YYYY[MM[DD[hh[mm[ss[.ffff]]]]]][+hhmm|-hhmm])")
    year, month, day, hour, minute, second, fraction, written = match.groups()
    offset = None if written is None else _offset(value, written[0], written[1:3], written[3:5])
    if hour is None:  # a date: an offset written after it says nothing more
        return _moment(value, year, month, day, None, None, None, None, None)
    minute, second = minute or "00", second or "00"
    if offset is not None:
        return _moment(value, year, month, day, hour, minute, second, fraction, offset)
    as_utc = _moment(value, year, month, day, hour, minute, second, fraction, timedelta(0))
    return _moment(value, year, month, day, hour, minute, second, fraction, _local_offset(value, as_utc, zone))


def parse_xds(value: object) -> Moment:
    """XDS `DTM` (ITI TF-3 4.2.3.1.4): `YYYY[MM[DD[hh[mm[ss]]]]]`, always UTC, no offset, no fraction."""
    match = _HL7.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(7) is not None or match.group(8) is not None:
        raise InvalidDate(value, "is not an XDS date/time (YYYY[MM[DD[hh[mm[ss]]]]], UTC without an offset)")
    year, month, day, hour, minute, second = match.groups()[:6]
    if hour is None:
        return _moment(value, year, month, day, None, None, None, None, None)
    return _moment(value, year, month, day, hour, minute or "00", second or "00", None, timedelta(0))


def value_range(value: object) -> tuple[datetime, datetime]:
    """[start, end) in naive UTC of a FHIR search date value at its own precision."""
    moment = parse_fhir(value, kind="search")
    return moment.start, moment.end


def fhir_instant(value: datetime) -> str:
    """A stored UTC time (naive, as the store keeps them) as a FHIR instant (meta.lastUpdated)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


# -- the one check -------------------------------------------------------------------------------
_KIND_NAMES = {"date": "a FHIR date", "dateTime": "a FHIR dateTime", "instant": "a FHIR instant",
               "search": "a FHIR date search value", "cli": "an ISO date or date-time"}


def _moment(value: object, year: str, month: str | None, day: str | None, hour: str | None, minute: str | None,
            second: str | None, fraction: str | None, offset: timedelta | None, zone: str | None = None) -> Moment:
    """The one check every grammar ends in. `zone`: the offset's text when written (else derived)."""
    number = int(year)
    if number == 0:
        raise InvalidDate(value, "has the year 0000, which does not exist (years start at 0001)")
    if month is not None and not 1 <= int(month) <= 12:
        raise InvalidDate(value, f"has the month {month}, which does not exist (01 to 12)")
    if day is not None:
        last = calendar.monthrange(number, int(month))[1]
        if not 1 <= int(day) <= last:
            raise InvalidDate(value, f"has the day {day}, which does not exist: {number:04d}-{month} has {last} days")
    if hour is None:
        return Moment(number, _int(month), _int(day))
    if int(hour) > 23:
        raise InvalidDate(value, f"has the hour {hour}, which does not exist (00 to 23; a day ends at 23:59:59)")
    if int(minute) > 59:
        raise InvalidDate(value, f"has the minute {minute}, which does not exist (00 to 59)")
    if second is not None and int(second) > 60:
        raise InvalidDate(value, f"has the second {second}, which does not exist (00 to 59, or 60 for a leap second)")
    if fraction is not None and len(fraction) > MAX_FRACTION_DIGITS:
        raise InvalidDate(value, f"has more than {MAX_FRACTION_DIGITS} digits of a second")
    # A leap second repeats second 59 (POSIX); `datetime` has no second 60.
    moment = Moment(number, int(month), int(day), int(hour), int(minute),
                    None if second is None else min(int(second), 59), fraction or "", offset,
                    zone or _offset_text(offset))
    local = datetime(number, int(month), int(day), int(hour), int(minute))
    try:
        local - offset
    except OverflowError:
        raise InvalidDate(value, "is outside the years 0001 to 9999 once moved to UTC") from None
    return moment


def _offset(value: object, sign: str, hours: str, minutes: str) -> timedelta:
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if int(minutes) > 59 or offset > MAX_OFFSET:
        raise InvalidDate(value, f"has the offset {sign}{hours}:{minutes}, beyond what exists (-14:00 to +14:00)")
    return -offset if sign == "-" else offset


def _local_offset(value: object, wall: Moment, zone: tzinfo) -> timedelta:
    """The offset of wall-clock time `wall` (its fields, offset ignored) in `zone`: the first of two
    (fold=0) where the clocks went back; refused where they went forward past it."""
    naive = datetime(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second or 0)
    local = naive.replace(tzinfo=zone)
    try:
        round_trip = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        raise InvalidDate(value, "is outside the years 0001 to 9999 once moved to UTC") from None
    if round_trip != naive:
        raise InvalidDate(value, f"is a local time that did not exist in {zone} (the clocks were put forward "
                                 "over it): send the time with its offset (+hhmm)")
    return local.utcoffset() or timedelta(0)


def _in_utc(moment: Moment) -> Moment:
    start = moment.start
    return Moment(start.year, start.month, start.day, start.hour, start.minute,
                  None if moment.second is None else start.second, moment.fraction, timedelta(0), "Z")


def _offset_text(offset: timedelta) -> str:
    """`Z`, `+hh:mm` or `-hh:mm`; "" for an offset FHIR cannot write (not whole minutes: `fhir()` gives
    such a time in UTC)."""
    if not offset:
        return "Z"
    if offset % timedelta(minutes=1):
        return ""
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _plus(start: datetime, step: timedelta) -> datetime:
    """start + step, or `datetime.max` when that passes the end of year 9999 (a bounded range)."""
    try:
        return start + step
    except OverflowError:
        return datetime.max


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def instant(value: str | None) -> datetime | None:
    """The start of a stored FHIR date/dateTime in naive UTC (None stays None): what the store indexes.
    The value was read by `parse_fhir` when it came in, so this never refuses a stored one."""
    return None if value is None else parse_fhir(value, kind="dateTime").start
