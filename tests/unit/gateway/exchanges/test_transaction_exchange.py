"""`TransactionExchange` (gateway/exchanges/transaction.py): POST [base] tells CH:MHD-1, PPQ-4 and ITI-65
apart by the Bundle's content and answers with that exchange's transaction-response; what is not a
Bundle at all is refused and audited as a failed ITI-65."""

from __future__ import annotations

import orjson
import pytest

from adapters.cara.errors import InvalidInput
from conftest import HCP_GLN, grant_consent
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    BASE,
    HCP,
    PATIENT,
    SPID,
    ledger,
    open_record,
    provide,
    runtime,
    services,
)


def test_a_provide_document_bundle_is_iti65(services, runtime):
    open_record(services)

    entry_id = provide(services)

    found = services.exchange.read_reference(principal=HCP, entry_id=entry_id, base_url=BASE)
    assert (found["id"], found["status"]) == (entry_id, "current")
    assert ("ITI-65", "C", "0") in ledger(runtime)


def test_a_bundle_of_consents_is_ppq4(services, runtime):
    open_record(services, grant=None)
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": consent, "request": {"method": "POST", "url": "Consent"}}]}

    answer = services.transactions.submit(principal=PATIENT, body=orjson.dumps(bundle), base_url=BASE)

    assert (answer["type"], [e["response"]["status"][:3] for e in answer["entry"]]) == ("transaction-response", ["201"])
    assert ledger(runtime)[-1] == ("PPQ-3", "C", "0")  # PPQ-4 writes one PPQ-3 record per change


def test_a_bundle_of_document_reference_puts_is_a_metadata_update(services, runtime):
    open_record(services)
    entry_id = provide(services)
    resource = services.exchange.read_reference(principal=HCP, entry_id=entry_id, base_url=BASE)
    resource["description"] = "corrected"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource, "request": {"method": "PUT", "url": f"DocumentReference/{entry_id}"}}]}

    answer = services.transactions.submit(principal=HCP, body=orjson.dumps(bundle), base_url=BASE)

    assert [e["response"]["location"] for e in answer["entry"]] == [f"{BASE}/DocumentReference/{entry_id}/_history/2"]
    assert ledger(runtime)[-1][:2] == ("CH-MHD-1", "U")


@pytest.mark.parametrize("body", [b"{not json", b'{"resourceType": "Patient"}', b"[]"])
def test_what_is_not_a_bundle_is_refused_and_audited_as_iti65(services, runtime, body):
    before = len(ledger(runtime))

    with pytest.raises(InvalidInput):
        services.transactions.submit(principal=HCP, body=body, base_url=BASE)

    assert ledger(runtime)[before:] == [("ITI-65", "E", "4")]
