"""The per-address windows of refusals (issue 10 item 13, issue 22 item 13), on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.exchanges.refusal_windows import MAX_REASONS, OTHER_SOURCES, RATE_LIMITED, RefusalWindows

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def refusals(**options):
    clock = [100.0]
    return RefusalWindows(clock=lambda: clock[0], wall=lambda: T0, **options), clock


def test_first_refusal_of_a_window_is_recorded_the_rest_counted_then_summarised():
    table, clock = refusals(interval_seconds=10, limit=1000)
    recorded = [table.refused("10.0.0.1", "invalid token: token expired") for _ in range(500)]
    assert recorded == [True] + [False] * 499
    assert table.closed() == []  # the window is still open
    clock[0] += 10
    [summary] = table.closed()
    assert (summary.address, summary.count, summary.reasons) == ("10.0.0.1", 499,
                                                                  (("invalid token: token expired", 499),))
    assert "499 further refused authentication(s) from 10.0.0.1" in summary.description()
    assert table.refused("10.0.0.1", "x") is True  # a new window records its first refusal at once


def test_past_the_limit_the_address_waits_and_the_429s_are_counted():
    table, clock = refusals(interval_seconds=10, limit=3)
    assert [table.retry_after("10.0.0.1") for _ in range(1)] == [None]
    for _ in range(3):
        table.refused("10.0.0.1", "no bearer token")
    clock[0] += 4
    assert [table.retry_after("10.0.0.1") for _ in range(5)] == [6] * 5
    assert table.retry_after("10.0.0.2") is None  # another address is not affected
    clock[0] += 6
    assert table.retry_after("10.0.0.1") is None  # the window is over
    [summary] = table.closed()
    assert dict(summary.reasons) == {"no bearer token": 2, RATE_LIMITED: 5}


def test_a_window_replaced_before_the_flush_keeps_its_count():
    table, clock = refusals(interval_seconds=10, limit=100)
    for _ in range(4):
        table.refused("10.0.0.1", "r")
    clock[0] += 11
    assert table.refused("10.0.0.1", "r") is True  # new window, the old one not flushed yet
    table.refused("10.0.0.1", "r")
    clock[0] += 11
    assert sorted(s.count for s in table.closed()) == [1, 3]


def test_memory_is_bounded_in_addresses_and_reasons():
    table, clock = refusals(interval_seconds=10, limit=10**6, max_sources=3)
    for n in range(1000):
        table.refused(f"10.0.{n // 256}.{n % 256}", f"reason {n % 100}")
    clock[0] += 10
    summaries = table.closed()
    assert [s.address for s in summaries] == [OTHER_SOURCES]
    assert summaries[0].count == 996  # 1000 refusals, 3 addresses and the bucket's first recorded at once
    assert len(summaries[0].reasons) == MAX_REASONS + 1  # "other reasons" holds the rest


def test_a_face_names_what_it_counts_and_the_transaction_of_its_summaries():
    clock = [100.0]
    table = RefusalWindows(interval_seconds=10, limit=2, transaction="HL7v2", what="refusals at the MLLP door",
                           turned_away="connection turned away (address over its limit)",
                           clock=lambda: clock[0], wall=lambda: T0)
    assert [table.refused("10.0.0.7", "MLLP frame over 1024 bytes") for _ in range(2)] == [True, False]
    assert table.retry_after("10.0.0.7") == 10
    clock[0] += 10
    [summary] = table.closed()
    assert (summary.transaction, summary.count) == ("HL7v2", 2)
    assert dict(summary.reasons) == {"MLLP frame over 1024 bytes": 1,
                                     "connection turned away (address over its limit)": 1}
    assert summary.description().startswith("2 further refusals at the MLLP door from 10.0.0.7 between ")
