from datetime import datetime

import pytest

from adapters.cara.fhir_dates import value_range


@pytest.mark.parametrize("value, start, end", [
    ("2026", datetime(2026, 1, 1), datetime(2027, 1, 1)),
    ("2026-02", datetime(2026, 2, 1), datetime(2026, 3, 1)),
    ("2026-12", datetime(2026, 12, 1), datetime(2027, 1, 1)),
    ("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1)),
    ("2026-06-20T08:00:00+02:00", datetime(2026, 6, 20, 6), datetime(2026, 6, 20, 6, 0, 1)),
    ("2026-06-20T08:00:00Z", datetime(2026, 6, 20, 8), datetime(2026, 6, 20, 8, 0, 1)),
])
def test_value_range_is_the_utc_range_at_the_value_precision(value, start, end):
    assert value_range(value) == (start, end)


@pytest.mark.parametrize("value", ["yesterday", "2026-13", "2026-06-20T08:00:00", "20260620"])
def test_anything_else_is_an_error(value):
    with pytest.raises(ValueError):
        value_range(value)
