"""`Auditor` (gateway/exchanges/auditing.py): a failure is recorded once with what the client was told;
outside a route a read's record commits before `write_now` returns, inside one it waits for the route;
the ledger names the patient by a keyed hash, never by the SPID."""

from __future__ import annotations

import asyncio

import pytest

from adapters.cara.errors import InvalidInput
from gateway.exchanges.auditing import audited, deferred_audits, traceparent_or_new
from unit.gateway.exchanges.exchange_world import HCP, SPID, ledger, runtime, services  # noqa: F401 (fixtures)


class UseCase:
    """A use-case in miniature: one audited method calling another (as `provide_bundle` calls
    `provide_submission`)."""

    def __init__(self, auditor):
        self.auditor = auditor

    @audited("ITI-67")
    def outer(self, *, principal):
        return self.inner(principal=principal)

    @audited("ITI-67")
    def inner(self, *, principal):
        raise InvalidInput("bad parameter", location="date")


def test_a_failure_is_recorded_once_with_its_message_and_reraised(runtime, services):
    with pytest.raises(InvalidInput) as raised:
        UseCase(services.auditor).outer(principal=HCP)

    [event] = runtime.ledger.all_records()
    assert ledger(runtime) == [("ITI-67", "E", "4")]
    assert (event["outcomeDesc"], raised.value.audited) == ("bad parameter", True)


def test_outside_a_route_a_record_commits_before_write_now_returns(runtime, services):
    services.auditor.write_now([services.auditor.record("ITI-81", HCP, patient_spid=SPID)])

    assert ledger(runtime) == [("ITI-81", "E", "0")]


def test_inside_a_route_a_record_waits_for_the_route_then_commits(runtime, services):
    auditor = services.auditor
    pending: list = []
    token = deferred_audits.set(pending)
    try:
        auditor.write_now([auditor.record("ITI-81", HCP, patient_spid=SPID)])
    finally:
        deferred_audits.reset(token)
    waiting = ledger(runtime)

    asyncio.run(auditor.written(pending))

    assert (waiting, len(pending), ledger(runtime)) == ([], 1, [("ITI-81", "E", "0")])


def test_the_ledger_keys_the_patient_by_a_keyed_hash(services):
    key = services.auditor.patient_key(SPID)

    assert key != SPID and SPID not in key and key == services.auditor.patient_key(SPID)
    assert services.auditor.patient_key(None) is None


@pytest.mark.parametrize("given", [None, "", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "not-a-traceparent"])
def test_a_missing_or_malformed_traceparent_is_replaced(given):
    made = traceparent_or_new(given)
    assert made != given and len(made) == 55 and made.startswith("00-")


def test_a_well_formed_traceparent_is_kept():
    value = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert traceparent_or_new(value) == value
