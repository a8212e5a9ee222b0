"""The audit group commit: the writer thread commits what is queued together; on the event loop the
batcher sends a lone request's records at once and gathers concurrent requests' records while a
batch is being committed; a failed or hung commit reaches every waiter as AuditUnavailable."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway.exchanges.audit_commit import AuditUnavailable, GroupCommit, LoopBatcher


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

    class dialect:  # noqa: N801 - stands in for the engine's dialect (not SQLite: no kept connection)
        name = "none"

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
def test_a_lone_request_is_sent_at_once():
    ledger = RecordingLedger()
    batcher = LoopBatcher(writer(ledger))
    started = time.monotonic()
    asyncio.run(batcher.commit(["record"]))
    assert time.monotonic() - started < 1.0
    assert ledger.batches == [["record"]]


def test_while_a_batch_commits_the_next_gathers_and_leaves_when_it_is_settled():
    hold = threading.Event()
    ledger = RecordingLedger(hold=hold)
    batcher = LoopBatcher(writer(ledger))

    async def requests():
        first = asyncio.create_task(batcher.commit(["a"]))
        await asyncio.sleep(0.05)  # "a" is being committed (the writer is held)
        later = [asyncio.create_task(batcher.commit([name])) for name in ("b", "c")]
        await asyncio.sleep(0.05)
        assert ledger.batches == [] and not first.done()
        hold.set()
        await asyncio.gather(first, *later)

    asyncio.run(requests())
    assert ledger.batches == [["a"], ["b", "c"]]


def test_a_failed_batch_fails_every_request_in_it():
    hold = threading.Event()
    batcher = LoopBatcher(writer(RecordingLedger(fail=True, hold=hold)))

    async def requests():
        tasks = [asyncio.create_task(batcher.commit([name])) for name in ("a", "b", "c")]
        await asyncio.sleep(0.05)
        hold.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(requests())
    assert [type(outcome) for outcome in outcomes] == [AuditUnavailable] * 3


def test_a_writer_that_never_answers_is_audit_unavailable_after_the_timeout():
    hold = threading.Event()  # never set: the writer hangs in the ledger
    commit = GroupCommit(engine=NoEngine(), ledger=RecordingLedger(hold=hold), timeout_seconds=0.2)
    with pytest.raises(AuditUnavailable):
        asyncio.run(LoopBatcher(commit).commit(["record"]))
    hold.set()


# -- written by the event loop itself (SQLite) -------------------------------------------------------
def test_on_the_loop_the_requests_of_one_iteration_share_one_write():
    ledger = RecordingLedger()
    batcher = LoopBatcher(writer(ledger), write_on_loop=True)

    async def requests():
        await asyncio.gather(*(batcher.commit([name]) for name in ("a", "b", "c")))
        await batcher.commit(["alone"])

    asyncio.run(requests())
    assert ledger.batches == [["a", "b", "c"], ["alone"]]


def test_on_the_loop_a_failed_write_fails_every_request_in_it():
    batcher = LoopBatcher(writer(RecordingLedger(fail=True)), write_on_loop=True)

    async def requests():
        return await asyncio.gather(*(batcher.commit([name]) for name in ("a", "b")), return_exceptions=True)

    assert [type(outcome) for outcome in asyncio.run(requests())] == [AuditUnavailable] * 2


def test_on_sqlite_each_thread_commits_on_a_kept_connection_and_a_failed_one_is_replaced(tmp_path):
    """SQLite: the writing thread keeps its connection between batches (no pool check-out per batch);
    it holds no transaction in between (another connection sees every batch at once), and after a
    failed batch the next one is written on a fresh connection."""
    from sqlalchemy import text

    from adapters.cara.store.database import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/kept.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (v TEXT)"))

    class TableLedger:
        fail = False

        def __init__(self):
            self.connections = []

        def append_many(self, connection, prepared):
            self.connections.append(connection)
            connection.execute(text("INSERT INTO t VALUES (:v)"), [{"v": v} for v in prepared])
            if self.fail:
                raise OSError("disk full")
            return list(range(len(prepared)))

    def stored() -> list[str]:
        with engine.connect() as other:
            return [row[0] for row in other.execute(text("SELECT v FROM t ORDER BY v"))]

    ledger = TableLedger()
    commit = GroupCommit(engine=engine, ledger=ledger)
    commit.write(["a"])
    assert stored() == ["a"]
    commit.write(["b"])
    assert stored() == ["a", "b"]
    assert ledger.connections[0] is ledger.connections[1]
    ledger.fail = True
    with pytest.raises(OSError):
        commit.write(["c"])
    assert stored() == ["a", "b"] and ledger.connections[2].closed
    ledger.fail = False
    commit.write(["d"])
    assert stored() == ["a", "b", "d"] and ledger.connections[3] is not ledger.connections[2]
