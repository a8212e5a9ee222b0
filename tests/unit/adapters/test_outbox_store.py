"""The community outbox's rows on SQLite and PostgreSQL: written in the caller's transaction, claimed in
order per patient, never by two deliverers at once, due again when a lease expires, finished only by
the claim that holds them, and nothing ever deleted."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from adapters.cara.store.database import make_engine, migrate
from adapters.cara.store.outbox import (
    DELIVERED, FAILED, IN_FLIGHT, PENDING, WAITING_PATIENT, Attempt, Backoff, DatabaseOutbox, NewDelivery)
from adapters.cara.store.outbox_schema import community_delivery, community_delivery_attempt


class Clock:
    def __init__(self):
        self.now = datetime(2026, 12, 6, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(database_url, tmp_path):
    (tmp_path / "data").mkdir(exist_ok=True)
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def outbox(engine, clock):
    return DatabaseOutbox(engine=engine, clock=clock)


def provide(entry: str, pid: str = "P1", community: str = "cara", **kw) -> NewDelivery:
    return NewDelivery(community=community, kind=kw.pop("kind", "provide"), entry_id=entry, version=kw.pop("version", 1),
                       unique_id=f"2.999.{entry}", patient_pid=pid, confidentiality="normal", **kw)


def enqueue(engine, outbox, *deliveries):
    with engine.begin() as connection:
        outbox.enqueue(connection, list(deliveries))


def attempt(outcome: str, clock: Clock, **kw) -> Attempt:
    return Attempt(outcome=outcome, started_at=clock.now, finished_at=clock.now, confidentiality="normal", **kw)


def test_a_row_is_written_only_with_its_transaction(engine, outbox):
    with pytest.raises(RuntimeError), engine.begin() as connection:
        outbox.enqueue(connection, [provide("E1")])
        raise RuntimeError("the document's transaction fails")
    enqueue(engine, outbox, provide("E2"))

    with engine.connect() as connection:
        assert connection.execute(select(community_delivery.c.entry_id)).scalars().all() == ["E2"]


def test_each_row_gets_its_own_stable_submission_and_entry_ids(engine, outbox, clock):
    enqueue(engine, outbox, provide("E1"), provide("E2", pid="P2"))
    first = outbox.claim(owner="d1", limit=10, lease_seconds=30)
    ids = {(d.submission_set_unique_id, d.submission_set_uuid, d.entry_uuid) for d in first}

    assert len(ids) == 2 and all(s.startswith("2.25.") and u.startswith("urn:uuid:") and e.startswith("urn:uuid:")
                                 for s, u, e in ids)
    clock.now += timedelta(seconds=31)  # both leases expire: claimed again, with the same ids
    again = outbox.claim(owner="d2", limit=10, lease_seconds=30)
    assert {(d.submission_set_unique_id, d.submission_set_uuid, d.entry_uuid) for d in again} == ids
    assert [d.attempts for d in again] == [2, 2]


def test_per_patient_order_holds_later_rows_back_until_the_earlier_is_done(engine, outbox, clock):
    enqueue(engine, outbox, provide("A1", pid="A"), provide("A2", pid="A"), provide("B1", pid="B"))

    first = outbox.claim(owner="d1", limit=10, lease_seconds=30)
    assert [d.entry_id for d in first] == ["A1", "B1"]
    assert outbox.claim(owner="d2", limit=10, lease_seconds=30) == []  # A2 waits for A1
    outbox.finish(first[0], attempt=attempt("transport", clock), state=PENDING, retry_at=clock.now + timedelta(seconds=5))
    assert outbox.claim(owner="d2", limit=10, lease_seconds=30) == []  # A1 not delivered yet: still first
    clock.now += timedelta(seconds=6)
    retried = outbox.claim(owner="d2", limit=10, lease_seconds=30)
    assert [d.entry_id for d in retried] == ["A1"]
    outbox.finish(retried[0], attempt=attempt("delivered", clock), state=DELIVERED, receipt={"status": "Success"})
    assert [d.entry_id for d in outbox.claim(owner="d2", limit=10, lease_seconds=30)] == ["A2"]


def test_a_failed_row_does_not_hold_its_patient_back_but_its_replacement_waits(engine, outbox, clock):
    enqueue(engine, outbox, provide("A1", pid="A"))
    enqueue(engine, outbox, provide("A2", pid="A", kind="replace", original_entry_id="A1"), provide("A3", pid="A"))
    first = outbox.claim(owner="d1", limit=10, lease_seconds=30)
    outbox.finish(first[0], attempt=attempt("rejected", clock, code="XDSRegistryMetadataError", text="unknown code"),
                  state=FAILED)

    # A2 replaces A1, which failed: it waits (an operator retries A1); A3 is unrelated and goes.
    assert [d.entry_id for d in outbox.claim(owner="d1", limit=10, lease_seconds=30)] == []
    with engine.connect() as connection:
        states = dict(connection.execute(select(community_delivery.c.entry_id, community_delivery.c.state)).all())
    assert states == {"A1": FAILED, "A2": PENDING, "A3": PENDING}


def test_a_replacement_goes_after_its_original_with_the_originals_entry_uuid(engine, outbox, clock):
    enqueue(engine, outbox, provide("A1", pid="A"))
    enqueue(engine, outbox, provide("A2", pid="A", kind="replace", original_entry_id="A1"))
    original = outbox.claim(owner="d1", limit=10, lease_seconds=30)[0]
    outbox.finish(original, attempt=attempt("delivered", clock), state=DELIVERED)

    replacement = outbox.claim(owner="d1", limit=10, lease_seconds=30)[0]
    assert (replacement.entry_id, replacement.depends_on, replacement.original_entry_uuid) == (
        "A2", original.id, original.entry_uuid)


def test_a_finish_by_a_claim_that_lost_its_lease_changes_nothing_but_is_kept(engine, outbox, clock):
    enqueue(engine, outbox, provide("E1"))
    slow = outbox.claim(owner="slow", limit=1, lease_seconds=10)[0]
    clock.now += timedelta(seconds=11)
    fast = outbox.claim(owner="fast", limit=1, lease_seconds=10)[0]

    assert outbox.finish(fast, attempt=attempt("delivered", clock), state=DELIVERED, receipt={"n": 1})
    assert not outbox.finish(slow, attempt=attempt("transport", clock, text="timeout"), state=PENDING)
    with engine.connect() as connection:
        assert connection.execute(select(community_delivery.c.state)).scalar() == DELIVERED
        assert connection.execute(select(func.count()).select_from(community_delivery_attempt)).scalar() == 2


def test_waiting_for_the_patient_holds_the_patients_later_rows(engine, outbox, clock):
    enqueue(engine, outbox, provide("A1", pid="A"), provide("A2", pid="A"))
    first = outbox.claim(owner="d1", limit=10, lease_seconds=30)[0]
    outbox.finish(first, attempt=attempt("waiting-patient", clock, code="NF"), state=WAITING_PATIENT,
                  retry_at=clock.now + timedelta(seconds=60))

    assert outbox.claim(owner="d1", limit=10, lease_seconds=30) == []
    clock.now += timedelta(seconds=61)
    assert [d.entry_id for d in outbox.claim(owner="d1", limit=10, lease_seconds=30)] == ["A1"]


def test_the_operator_sees_counts_a_documents_attempts_and_retries_failed_rows(engine, outbox, clock):
    enqueue(engine, outbox, provide("E1", pid="A"), provide("E2", pid="B"), provide("E3", pid="C", community="other"))
    claimed = outbox.claim(owner="d1", limit=10, lease_seconds=30, communities=["cara"])
    outbox.finish(claimed[0], attempt=attempt("delivered", clock), state=DELIVERED, receipt={"status": "Success"})
    outbox.finish(claimed[1], attempt=attempt("rejected", clock, code="XDSRegistryError", text="no"), state=FAILED)

    counts = {c.community: (c.by_state, c.oldest_due) for c in outbox.counts()}
    assert counts == {"cara": ({DELIVERED: 1, FAILED: 1}, None), "other": ({PENDING: 1}, clock.now)}
    (found, attempts), = outbox.find("2.999.E2")
    assert (found.state, found.last_code, [a["outcome"] for a in attempts]) == (FAILED, "XDSRegistryError", ["rejected"])
    assert outbox.retry(failed=True) == 1
    assert [d.entry_id for d in outbox.claim(owner="d1", limit=10, lease_seconds=30, communities=["cara"])] == ["E2"]
    assert outbox.states_of(["E1", "E2", "E3"]) == {"E1": {"cara": DELIVERED}, "E2": {"cara": IN_FLIGHT},
                                                     "E3": {"other": PENDING}}


def test_backoff_grows_is_capped_and_jittered():
    fixed = Backoff(first_seconds=2, max_seconds=60, jitter=lambda: 0.5)
    assert [fixed.delay(n).total_seconds() for n in (1, 2, 3, 6, 20)] == [2, 4, 8, 60, 60]
    assert Backoff(first_seconds=2, jitter=lambda: 0.0).delay(1).total_seconds() == 1
    assert Backoff(first_seconds=2, jitter=lambda: 0.999).delay(1).total_seconds() == pytest.approx(2.998)


def _claimer(url: str, owner: str, out) -> None:
    engine = make_engine(url)
    outbox = DatabaseOutbox(engine=engine)
    taken = []
    while True:
        claimed = outbox.claim(owner=owner, limit=7, lease_seconds=300)
        if not claimed:
            break
        for delivery in claimed:
            taken.append(delivery.id)
            outbox.finish(delivery, attempt=Attempt("delivered", delivery.created_at, delivery.created_at, "normal"),
                          state=DELIVERED)
    engine.dispose()
    out.put(taken)


def test_two_deliverer_processes_never_take_the_same_row(engine, outbox, database_url):
    enqueue(engine, outbox, *[provide(f"E{n}", pid=f"P{n % 40}") for n in range(400)])
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [context.Process(target=_claimer, args=(database_url, f"d{n}", out)) for n in range(2)]
    for process in processes:
        process.start()
    taken = [out.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(30)

    everything = taken[0] + taken[1]
    assert len(everything) == len(set(everything)) == 400
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(community_delivery_attempt)).scalar() == 400
