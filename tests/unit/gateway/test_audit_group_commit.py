"""The audit group commit: a lone request commits at once, concurrent requests share a commit,
a failed commit reaches every waiter, and a route's deferred records are awaited without a thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway.auditing import AuditUnavailable, GroupCommit
from gateway.load_gauge import LoadGauge


class RecordingLedger:
    """Stands in for the ledger's write: what each commit held (the engine is a no-op context)."""

    def __init__(self, fail: bool = False):
        self.batches: list[list[str]] = []
        self.fail = fail

    def append_many(self, _connection, prepared):
        if self.fail:
            raise OSError("disk full")
        self.batches.append(list(prepared))
        return list(range(len(prepared)))


class NoEngine:
    def begin(self):
        return self

    def __enter__(self):
        return None

    def __exit__(self, *_exc):
        return False


def group_commit(ledger, gauge=None, linger=2.0) -> GroupCommit:
    return GroupCommit(engine=NoEngine(), ledger=ledger, gauge=gauge, linger_seconds=linger)


def test_a_lone_request_commits_at_once_even_with_a_long_linger():
    ledger, gauge = RecordingLedger(), LoadGauge()
    commit = group_commit(ledger, gauge, linger=5.0)
    gauge.request_started()
    started = time.monotonic()
    commit.submit(["record"])  # the only request waits for its commit: nothing else is coming
    assert time.monotonic() - started < 1.0
    assert ledger.batches == [["record"]]
    gauge.request_ended()


def test_records_of_requests_still_being_worked_on_join_the_same_commit():
    ledger, gauge = RecordingLedger(), LoadGauge()
    commit = group_commit(ledger, gauge, linger=5.0)
    gauge.request_started()
    gauge.request_started()  # a second request is still working: the first commit waits for it
    first = threading.Thread(target=commit.submit, args=(["first"],))
    first.start()
    time.sleep(0.2)
    assert ledger.batches == []  # lingering: the second request has not written yet
    commit.submit(["second"])  # now every request waits: one commit holds both
    first.join(timeout=5)
    assert ledger.batches == [["first", "second"]]


def test_the_linger_is_bounded():
    ledger, gauge = RecordingLedger(), LoadGauge()
    commit = group_commit(ledger, gauge, linger=0.2)
    gauge.request_started()
    gauge.request_started()  # never writes, never waits
    started = time.monotonic()
    commit.submit(["record"])
    assert 0.15 < time.monotonic() - started < 2.0
    assert ledger.batches == [["record"]]


def test_a_failed_commit_fails_every_waiter_with_audit_unavailable():
    commit = group_commit(RecordingLedger(fail=True), LoadGauge())
    with pytest.raises(AuditUnavailable):
        commit.submit(["record"])

    async def deferred():
        await commit.written([commit.enqueue(["a"]), commit.enqueue(["b"])])

    with pytest.raises(AuditUnavailable):
        asyncio.run(deferred())


def test_deferred_records_are_committed_before_written_returns():
    ledger, gauge = RecordingLedger(), LoadGauge()
    commit = group_commit(ledger, gauge)

    async def route():
        gauge.request_started()
        pending = [commit.enqueue(["a"]), commit.enqueue(["b", "c"])]
        await commit.written(pending)
        gauge.request_ended()
        return [future.done() for future in pending]

    assert asyncio.run(route()) == [True, True]
    assert [record for batch in ledger.batches for record in batch] == ["a", "b", "c"]
    assert gauge.working == 0


def test_a_waiter_that_gave_up_does_not_stop_the_writer():
    """A route cancelled while it waits (timeout, shutdown) leaves a cancelled future in the queue:
    its record is still written and the writer goes on serving the others."""
    ledger, gauge = RecordingLedger(), LoadGauge()
    commit = group_commit(ledger, gauge, linger=5.0)
    gauge.request_started()  # the writer lingers for this request while the first waiter gives up
    abandoned = commit.enqueue(["abandoned"])
    time.sleep(0.1)
    assert abandoned.cancel()
    commit.submit(["next"])
    assert [record for batch in ledger.batches for record in batch] == ["abandoned", "next"]
