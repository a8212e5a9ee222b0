"""The one date parser (issue 22 item 10, issue 27 item 5): every grammar (FHIR date/dateTime/instant,
search values, HL7 v2 TS, XDS DTM) ends in the same calendar check, refuses what does not exist with one
typed error and a reason, folds a leap second into second 59, and reads local times in the zone the face
names (HL7 v2: Europe/Zurich with summer time; XDS: UTC)."""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.cara.dates import InvalidDate, parse_fhir, parse_full_date, parse_hl7, parse_xds, value_range


@pytest.mark.parametrize("value, start, end", [
    ("2026", datetime(2026, 1, 1), datetime(2027, 1, 1)),
    ("2026-02", datetime(2026, 2, 1), datetime(2026, 3, 1)),
    ("2026-12", datetime(2026, 12, 1), datetime(2027, 1, 1)),
    ("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1)),
    ("2026-06-20T08:00:00+02:00", datetime(2026, 6, 20, 6), datetime(2026, 6, 20, 6, 0, 1)),
    ("2026-06-20T08:00:00Z", datetime(2026, 6, 20, 8), datetime(2026, 6, 20, 8, 0, 1)),
    ("2026-06-20T08:00Z", datetime(2026, 6, 20, 8), datetime(2026, 6, 20, 8, 1)),
    ("2026-06-20T08:00:00.5Z", datetime(2026, 6, 20, 8, 0, 0, 500000), datetime(2026, 6, 20, 8, 0, 0, 500001)),
    ("9999-12-31", datetime(9999, 12, 31), datetime.max),
    ("9999-12", datetime(9999, 12, 1), datetime.max),
    ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59), datetime.max),
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59), datetime(2017, 1, 1)),
])
def test_value_range_is_the_utc_range_at_the_value_precision(value, start, end):
    assert value_range(value) == (start, end)


@pytest.mark.parametrize("value", ["yesterday", "2026-06-20T08:00:00", "20260620", "2026-06-20 08:00Z",
                                   "2026-W25", " 2026-06-20", "2026-06-20\n", "２０２６-06-20", None, 20260620])
def test_anything_else_is_the_typed_error_never_a_value_error(value):
    with pytest.raises(InvalidDate) as refused:
        value_range(value)
    assert not isinstance(refused.value, ValueError) and "is not a FHIR date search value" in refused.value.reason


# What does not exist, written in each grammar: each is refused with the reason naming what is wrong.
IMPOSSIBLE = {
    "month 13": ("2016-13-01T10:00:00Z", "20161301100000", "month 13"),
    "30 February": ("2016-02-30T10:00:00Z", "20160230100000", "day 30"),
    "hour 24": ("2016-12-31T24:00:00Z", "20161231240000", "hour 24"),
    "minute 60": ("2016-12-31T10:60:00Z", "20161231106000", "minute 60"),
    "second 61": ("2016-12-31T10:00:61Z", "20161231100061", "second 61"),
    "year 0000": ("0000-01-01T10:00:00Z", "00000101100000", "year 0000"),
}


GRAMMARS = {"dateTime": lambda iso, _: parse_fhir(iso, kind="dateTime"),
            "instant": lambda iso, _: parse_fhir(iso, kind="instant"),
            "search": lambda iso, _: parse_fhir(iso, kind="search"),
            "hl7": lambda _, compact: parse_hl7(compact), "xds": lambda _, compact: parse_xds(compact)}


@pytest.mark.parametrize("what", sorted(IMPOSSIBLE))
@pytest.mark.parametrize("grammar", sorted(GRAMMARS))
def test_what_does_not_exist_is_refused_in_every_grammar(what, grammar):
    iso, compact, named = IMPOSSIBLE[what]
    with pytest.raises(InvalidDate) as refused:
        GRAMMARS[grammar](iso, compact)
    assert named in refused.value.reason


@pytest.mark.parametrize("value, kind", [("9999-12-31T23:59:59-12:00", "dateTime"),
                                         ("0001-01-01T00:00:00+14:00", "instant"), ("9999-12-31T23:59-00:01", "search")])
def test_a_moment_outside_the_years_1_to_9999_in_utc_is_refused(value, kind):
    with pytest.raises(InvalidDate, match="outside the years 0001 to 9999"):
        parse_fhir(value, kind=kind)


# the last: Swiss local time (then local mean time) was ahead of UTC
@pytest.mark.parametrize("value", ["99991231235959-1200", "00010101000000+1400", "999912312359-0001",
                                   "00010101003000"])
def test_an_hl7_time_outside_the_years_1_to_9999_in_utc_is_refused(value):
    with pytest.raises(InvalidDate, match="outside the years 0001 to 9999"):
        parse_hl7(value)


@pytest.mark.parametrize("offset", ["+14:01", "-15:00", "+10:60"])
def test_an_offset_beyond_14_hours_is_refused(offset):
    with pytest.raises(InvalidDate, match="offset"):
        parse_fhir(f"2024-01-01T10:00:00{offset}", kind="dateTime")


@pytest.mark.parametrize("value, kind, stored", [
    ("2016-12-31T23:59:60Z", "instant", "2016-12-31T23:59:59Z"),
    ("2017-01-01T00:59:60+01:00", "dateTime", "2017-01-01T00:59:59+01:00"),
    ("2016-12-31T23:59:60.25Z", "dateTime", "2016-12-31T23:59:59.25Z"),
])
def test_a_leap_second_is_taken_as_a_repeated_second_59(value, kind, stored):
    moment = parse_fhir(value, kind=kind)
    assert moment.fhir() == stored and moment.start.date() == date(2016, 12, 31)
    assert parse_hl7("20161231235960+0000").fhir() == "2016-12-31T23:59:59Z"
    assert parse_xds("20161231235960").fhir() == "2016-12-31T23:59:59Z"


def test_fhir_dates_keep_the_offset_and_digits_they_were_written_with():
    assert [parse_fhir(v, kind="dateTime").fhir() for v in (
        "2026-06-20T08:00:00+00:00", "2026-06-20T08:00:00.120Z", "2026-06", "2026-06-20T08:00:00-05:30")] == [
        "2026-06-20T08:00:00+00:00", "2026-06-20T08:00:00.120Z", "2026-06", "2026-06-20T08:00:00-05:30"]


@pytest.mark.parametrize("value, kind", [("2026-06-20T08:00:00Z", "date"), ("2026-06-20", "instant"),
                                         ("2026-06-20T08:00Z", "dateTime"), ("2026-06-20T08:00:00", "dateTime"),
                                         ("2026-06-20T08:00:00.1234567890Z", "dateTime")])
def test_each_fhir_type_takes_its_own_forms_only(value, kind):
    with pytest.raises(InvalidDate):
        parse_fhir(value, kind=kind)


def test_a_full_date_is_a_calendar_date():
    assert parse_full_date("2024-02-29") == date(2024, 2, 29)
    for value in ("2023-02-29", "2024-02", "2024-1-01", "20240101", "2024-W01-1"):
        with pytest.raises(InvalidDate):
            parse_full_date(value)


# -- local times (issue 27, item 5) -----------------------------------------------------------------
@pytest.mark.parametrize("value, fhir, utc", [
    ("20260120093000", "2026-01-20T09:30:00+01:00", datetime(2026, 1, 20, 8, 30)),  # winter: CET
    ("20260720093000", "2026-07-20T09:30:00+02:00", datetime(2026, 7, 20, 7, 30)),  # summer: CEST
    ("2026072009", "2026-07-20T09:00:00+02:00", datetime(2026, 7, 20, 7)),
    ("20260720093000-0500", "2026-07-20T09:30:00-05:00", datetime(2026, 7, 20, 14, 30)),  # an offset wins
    # the hour that happens twice (summer time ends at 03:00 CEST → 02:00 CET): the first, summer time
    ("20261025023000", "2026-10-25T02:30:00+02:00", datetime(2026, 10, 25, 0, 30)),
    ("20261025023000+0100", "2026-10-25T02:30:00+01:00", datetime(2026, 10, 25, 1, 30)),  # the second, by offset
    ("20260120", "2026-01-20", datetime(2026, 1, 20)),  # a date stays a date
])
def test_hl7_times_without_an_offset_are_swiss_local_time(value, fhir, utc):
    moment = parse_hl7(value)
    assert (moment.fhir(), moment.start) == (fhir, utc)


def test_the_hour_skipped_in_spring_is_refused_unless_its_offset_is_sent():
    with pytest.raises(InvalidDate, match="did not exist in Europe/Zurich"):
        parse_hl7("20260329023000")  # 02:00 CET → 03:00 CEST
    assert parse_hl7("20260329013000").fhir() == "2026-03-29T01:30:00+01:00"
    assert parse_hl7("20260329033000").fhir() == "2026-03-29T03:30:00+02:00"
    assert parse_hl7("20260329023000+0100").start == datetime(2026, 3, 29, 1, 30)


def test_xds_times_are_utc_and_carry_no_offset():
    assert parse_xds("20260720093000").fhir() == "2026-07-20T09:30:00Z"
    assert parse_xds("2026072009").fhir() == "2026-07-20T09:00:00Z"
    for value in ("20260720093000+0200", "20260720093000.5", "2026072009300"):
        with pytest.raises(InvalidDate, match="XDS date/time"):
            parse_xds(value)


# -- no other parser, and no other error --------------------------------------------------------------
@given(st.text(max_size=40))
def test_any_text_is_a_moment_or_the_typed_error(text):
    for parse in (lambda v: parse_fhir(v, kind="dateTime"), lambda v: parse_fhir(v, kind="search"), parse_hl7,
                  parse_xds, parse_full_date):
        with suppress(InvalidDate):
            parse(text)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_what_the_parser_writes_reads_back_as_the_same_instant(moment, minutes):
    written = moment.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    parsed = parse_fhir(written, kind="dateTime")
    assert parse_fhir(parsed.fhir(), kind="dateTime").start == parsed.start == moment.replace(tzinfo=None)


ROOT = Path(__file__).resolve().parents[3]
# Parsing dates from text anywhere else is the class this test keeps out. What remains reads the
# gateway's own writing back (never input), and says why.
OWN_WRITING = {
    "adapters/cara/store/documents.py": "a time the store wrote itself (SQLite returns it as text)",
    "audit/witness.py": "the witness file's own stamp",
    "audit/events.py": "the `recorded` the ledger wrote itself",
    "gateway/http/versioning.py": "meta.lastUpdated the gateway formatted itself (fhir_instant)",
    "gateway/exchanges/trail.py": "the recorded time inside a paging cursor the gateway signed",
    "consent/store.py": "a policy's dates as the store sealed them",
    "gateway/exchanges/document_lists.py": "the times inside a paging cursor the gateway signed",
    "adapters/cara/store/submission_sets.py": "a time the store wrote itself (SQLite returns it as text)",
}
PARSING = re.compile(r"fromisoformat\(|strptime\(|dateutil|isoparse\(|parsedate")


def test_no_other_module_parses_dates():
    found = {str(p.relative_to(ROOT)) for root in ("adapters", "consent", "gateway", "audit")
             for p in (ROOT / root).rglob("*.py") if PARSING.search(p.read_text()) and p.name != "dates.py"}
    assert found == set(OWN_WRITING)
