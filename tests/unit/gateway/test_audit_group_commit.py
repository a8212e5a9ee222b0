"""The audit group commit: the writer thread commits what is queued together; on the event loop the
batcher sends the records of concurrent requests as one batch — at once for a lone request, when
every request in progress waits, or after the linger at the latest — and a failed commit reaches
every waiter as AuditUnavailable."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway.audit_commit import AuditUnavailable, GroupCommit, LoopBatcher
from gateway.load_gauge import LoadGauge


class RecordingLedger:
    """Stands in for the ledger's write: what each commit held."""

    def __init__(self, fail: bool = False, hold: threading.Event | None = None):
        self.batches: list[list[str]] = []
        self.fail = fail
        self.hold = hold

    def append_many(self, _connection, prepared):
        if self.hold is not None:
            self.hold.wait(5)
        if self.fail:
            raise OSError("disk full")
        self.batches.append(list(prepared))
        return list(range(len(prepared)))


class NoEngine:
    """The writer's `engine.begin()` without a database."""

    def begin(self):
        return self

    def __enter__(self):
        return None

    def __exit__(self, *_exc):
        return False


def writer(ledger) -> GroupCommit:
    return GroupCommit(engine=NoEngine(), ledger=ledger)


# -- the writer thread ------------------------------------------------------------------------------
def test_submit_returns_once_committed_and_a_failure_is_audit_unavailable():
    ledger = RecordingLedger()
    writer(ledger).submit(["record"])
    assert ledger.batches == [["record"]]
    with pytest.raises(AuditUnavailable):
        writer(RecordingLedger(fail=True)).submit(["record"])


def test_what_is_queued_while_the_writer_is_busy_is_committed_together():
    hold = threading.Event()
    ledger = RecordingLedger(hold=hold)
    commit = writer(ledger)
    first = commit.enqueue(["first"])
    time.sleep(0.1)  # the writer holds "first" and waits in the ledger
    later = [commit.enqueue([f"later-{n}"]) for n in range(3)]
    hold.set()
    for future in (first, *later):
        future.result(timeout=5)
    assert ledger.batches == [["first"], ["later-0", "later-1", "later-2"]]


def test_a_waiter_that_gave_up_does_not_stop_the_writer():
    """A cancelled future (its waiter gave up) is still written, and the writer goes on."""
    hold = threading.Event()
    ledger = RecordingLedger(hold=hold)
    commit = writer(ledger)
    busy = commit.enqueue(["busy"])
    time.sleep(0.1)
    abandoned = commit.enqueue(["abandoned"])
    assert abandoned.cancel()
    hold.set()
    busy.result(timeout=5)
    commit.submit(["next"])
    assert [record for batch in ledger.batches for record in batch] == ["busy", "abandoned", "next"]


# -- the event loop's batcher -------------------------------------------------------------------------
async def request(gauge: LoadGauge, batcher: LoopBatcher, records: list[str], *, work_first: float = 0.0):
    """One request as the gateway runs it: counted in progress, working, then waiting for its records."""
    gauge.request_started()
    try:
        await asyncio.sleep(work_first)
        await batcher.commit(records)
    finally:
        gauge.request_ended()


def test_a_lone_request_is_sent_at_once_even_with_a_long_linger():
    ledger, gauge = RecordingLedger(), LoadGauge()
    batcher = LoopBatcher(writer(ledger), gauge, linger_seconds=5.0)
    started = time.monotonic()
    asyncio.run(request(gauge, batcher, ["record"]))
    assert time.monotonic() - started < 1.0
    assert ledger.batches == [["record"]]
    assert gauge.working == 0


def test_concurrent_requests_share_one_batch_sent_when_all_of_them_wait():
    ledger, gauge = RecordingLedger(), LoadGauge()
    batcher = LoopBatcher(writer(ledger), gauge, linger_seconds=5.0)

    async def three():
        await asyncio.gather(request(gauge, batcher, ["a"]), request(gauge, batcher, ["b"], work_first=0.05),
                             request(gauge, batcher, ["c", "d"], work_first=0.1))

    started = time.monotonic()
    asyncio.run(three())
    assert time.monotonic() - started < 1.0  # sent when the last one waited, not after the linger
    assert ledger.batches == [["a", "b", "c", "d"]]
    assert gauge.working == 0


def test_the_linger_is_bounded_when_a_request_keeps_working():
    ledger, gauge = RecordingLedger(), LoadGauge()
    batcher = LoopBatcher(writer(ledger), gauge, linger_seconds=0.2)

    async def one_waits_one_works():
        slow = asyncio.create_task(request(gauge, batcher, ["slow"], work_first=1.0))
        started = time.monotonic()
        await request(gauge, batcher, ["quick"])
        waited = time.monotonic() - started
        await slow
        return waited

    waited = asyncio.run(one_waits_one_works())
    assert 0.15 < waited < 0.9
    assert ledger.batches == [["quick"], ["slow"]]


def test_a_failed_batch_fails_every_request_in_it():
    gauge = LoadGauge()
    batcher = LoopBatcher(writer(RecordingLedger(fail=True)), gauge, linger_seconds=5.0)

    async def two():
        return await asyncio.gather(request(gauge, batcher, ["a"]), request(gauge, batcher, ["b"], work_first=0.05),
                                    return_exceptions=True)

    outcomes = asyncio.run(two())
    assert [type(outcome) for outcome in outcomes] == [AuditUnavailable, AuditUnavailable]
    assert gauge.working == 0
