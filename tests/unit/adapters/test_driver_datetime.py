"""Datetimes the hot writes bind themselves (`driver_datetime`) are the text SQLAlchemy writes for the
same value: rows written either way compare and sort together in SQLite."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import DATETIME

from adapters.cara.store.database import driver_datetime

SQLALCHEMY_TEXT = DATETIME().bind_processor(sqlite.dialect())


@pytest.mark.parametrize("value", [
    datetime(2026, 12, 7, 10, 33, 16, 123),
    datetime(2026, 1, 1),  # no microseconds: still six digits
    datetime(999, 1, 2, 3, 4, 5),  # before the year 1000: four digits, as SQLAlchemy writes it
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))),  # the zone dropped, as SQLAlchemy does
])
def test_the_text_sqlalchemy_writes(value):
    assert driver_datetime(value, "sqlite") == SQLALCHEMY_TEXT(value)


def test_text_order_is_time_order_across_the_year_1000():
    values = [datetime(999, 12, 31), datetime(1000, 1, 1), datetime(2026, 1, 1)]
    assert sorted(driver_datetime(v, "sqlite") for v in values) == [driver_datetime(v, "sqlite") for v in values]


def test_postgresql_gets_the_datetime_itself():
    value = datetime(2026, 12, 7, tzinfo=timezone.utc)
    assert driver_datetime(value, "postgresql") is value
