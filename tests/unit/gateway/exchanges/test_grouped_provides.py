"""`GroupedProvides` (gateway/exchanges/grouped_provides.py): ITI-65 requests of one principal queued
while a provide commits are stored together in the next transaction, each with the answer and the
audit records it would get alone (in that order), on a real SQLite store. The first transaction is
held open by a gate until the others have queued, so the grouping is certain, not a matter of timing."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from sqlalchemy.exc import OperationalError

from adapters.cara.errors import Conflict
from gateway.exchanges.auditing import RequestContext, current_request
from gateway.exchanges.failures import is_dependency_failure
from gateway.exchanges.grouped_provides import GroupedProvides
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    OTHER_HCP,
    SPID,
    open_record,
    runtime,
    services,
)
from adapters.cara.fhir_mapping import submission_from_bundle


def submission(unique_id: str, text: str, author_role: str = "HCP"):
    return submission_from_bundle(provide_bundle(spid=SPID, author_role=author_role, documents=[
        {"title": "Letter", "unique_id": unique_id, "content": pdf_document("Letter", [text])}]))


class Gate:
    """The seam's store, with the first transaction held until `queued` batches wait behind it."""

    def __init__(self, services, *, fail_groups_with: Exception | None = None):
        self.provider = services.exchange.provider
        self.sizes: list[int] = []
        self.open = threading.Event()
        self.fail_groups_with = fail_groups_with
        self.grouped = GroupedProvides(self.store, is_dependency_failure)

    def store(self, batch):
        self.sizes.append(len(batch.submissions))
        if len(self.sizes) == 1:
            assert self.open.wait(20)
        if self.fail_groups_with is not None and len(batch.submissions) > 1:
            raise self.fail_groups_with
        return self.provider.store_authorised(batch)

    def run(self, requests: list[tuple]) -> list:
        """Each (principal, submission, traceparent) in a thread of its own, the first one first;
        the others queue while the first's transaction is held. Their outcomes (or errors), in order."""
        results: list = [None] * len(requests)

        def one(index: int, principal, submitted, trace: str) -> None:
            current_request.set(RequestContext(traceparent=trace, client_address=f"10.0.0.{index + 1}"))
            batch = self.provider.authorise_many(principal=principal, submissions=[submitted], fresh_policies=False)
            try:
                [results[index]] = self.grouped.store(batch)
            except Exception as error:  # noqa: BLE001 - the test compares errors too
                results[index] = error

        threads = [threading.Thread(target=one, args=(i, *request)) for i, request in enumerate(requests)]
        threads[0].start()
        _until(lambda: self.sizes)  # the first transaction has started and is held
        for queued, thread in enumerate(threads[1:], 1):  # one after the other: they queue in this order
            thread.start()
            _until(lambda: self.grouped.queued == queued)
        self.open.set()
        for thread in threads:
            thread.join(30)
        return results


def _until(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def trace(n: int) -> str:
    return f"00-{n:032x}-{n:016x}-01"


def created_records(runtime) -> dict[str, tuple[str, str]]:
    """uniqueId → (traceparent, client address) of every ATC_DOC_CREATE record."""
    found = {}
    for event in runtime.ledger.all_records():
        if "ATC_DOC_CREATE" not in orjson.dumps(event).decode():
            continue
        [unique_id] = [e["what"]["identifier"]["value"] for e in event["entity"]
                       if e["what"].get("identifier", {}).get("system") == "urn:ihe:iti:xds:2013:uniqueId"]
        [traceparent] = [v for v in entity_values(event) if v.startswith("00-")]
        [client] = [a["network"]["address"] for a in event["agent"] if a.get("network")]
        found[f"urn:oid:{unique_id}"] = (traceparent, client)
    return found


def entity_values(event: dict) -> list[str]:
    return [e["what"]["identifier"].get("value", "") for e in event.get("entity", []) if "identifier" in e["what"]]


def test_requests_queued_during_a_commit_share_the_next_transaction(services, runtime):
    open_record(services)
    ids = [new_oid_unique_id() for _ in range(4)]
    gate = Gate(services)

    outcomes = gate.run([(HCP, submission(unique_id, unique_id), trace(n + 1)) for n, unique_id in enumerate(ids)])

    assert gate.sizes == [1, 3]  # the first alone, the three that queued behind it together
    assert [(o.error, o.created) for o in outcomes] == [(None, True)] * 4
    for outcome, unique_id in zip(outcomes, ids, strict=True):
        stored = services.exchange.documents.get_entry(outcome.result.documents[0].entry_id)
        assert (stored.unique_id, stored.patient_pid != "") == (unique_id, True)
    # Each request's record names its own trace and address, as if it had been stored alone.
    assert created_records(runtime) == {unique_id: (trace(n + 1), f"10.0.0.{n + 1}") for n, unique_id in enumerate(ids)}


def test_in_a_group_each_request_gets_what_it_would_get_stored_after_the_ones_before_it(services, runtime):
    open_record(services)
    first, other = new_oid_unique_id(), new_oid_unique_id()
    gate = Gate(services)

    outcomes = gate.run([
        (HCP, submission(other, "the first"), trace(1)),
        (HCP, submission(first, "the same bytes"), trace(2)),
        (HCP, submission(first, "the same bytes"), trace(3)),  # the same document again: already present
        (HCP, submission(first, "other bytes"), trace(4)),  # the same uniqueId, other bytes: 409
    ])

    assert gate.sizes == [1, 3]
    assert [o.created for o in outcomes[:3]] == [True, True, False]
    assert outcomes[2].result.documents[0].entry_id == outcomes[1].result.documents[0].entry_id
    assert isinstance(outcomes[3].error, Conflict) and outcomes[3].result is None
    refusals = [e for e in runtime.ledger.all_records() if e["outcome"] == "4"]
    assert len(refusals) == 1  # the conflict's record, with the refused request's own trace
    assert trace(4) in entity_values(refusals[0])


def test_only_batches_of_one_principal_go_together(services, runtime):
    open_record(services)
    gate = Gate(services)
    other_hcp = submission(new_oid_unique_id(), "other", author_role="HCP")

    outcomes = gate.run([(HCP, submission(new_oid_unique_id(), "a"), trace(1)),
                         (OTHER_HCP, other_hcp, trace(2)),
                         (HCP, submission(new_oid_unique_id(), "b"), trace(3)),
                         (HCP, submission(new_oid_unique_id(), "c"), trace(4))])

    assert gate.sizes in ([1, 1, 2], [1, 2, 1])  # the HCP's two queued together, the other HCP's alone
    assert [(o.error, o.created) for o in outcomes] == [(None, True)] * 4
    assert {p for p, _ in created_records(runtime).values()} == {trace(n) for n in range(1, 5)}


def test_a_group_that_fails_for_something_else_is_stored_request_by_request(services, runtime):
    open_record(services)
    gate = Gate(services, fail_groups_with=RuntimeError("a fault of the gateway's own"))

    outcomes = gate.run([(HCP, submission(new_oid_unique_id(), str(n)), trace(n)) for n in range(3)])

    assert gate.sizes == [1, 2, 1, 1]  # the group failed, then each of its requests alone
    assert [(o.error, o.created) for o in outcomes] == [(None, True)] * 3


def test_a_dependency_failure_fails_every_request_of_the_group(services, runtime):
    open_record(services)
    down = OperationalError("INSERT", {}, Exception("database is locked"))
    gate = Gate(services, fail_groups_with=down)

    outcomes = gate.run([(HCP, submission(new_oid_unique_id(), str(n)), trace(n)) for n in range(3)])

    assert gate.sizes == [1, 2]  # not tried again one by one: the clients send again later
    assert outcomes[0].created and outcomes[1] is down and outcomes[2] is down


def test_combining_batches_of_two_principals_is_refused(services):
    from gateway.exchanges.batch_provide import combined

    open_record(services)
    provider = services.exchange.provider
    batches = [provider.authorise_many(principal=p, submissions=[submission(new_oid_unique_id(), "x")],
                                       fresh_policies=False) for p in (HCP, OTHER_HCP)]
    with pytest.raises(ValueError, match="one principal"):
        combined(batches)
