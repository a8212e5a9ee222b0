"""`AccessControl` (gateway/exchanges/access.py): the decision point as the use-cases ask it — policies
through the cache, read fresh for a batch, the decision and its refusal, the provide level, and the
emergency obligation fulfilled before the answer leaves."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from conftest import grant_consent
from gateway.auth.errors import AccessRefused
from gateway.wiring import build_runtime
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    OTHER_HCP,
    OTHER_SPID,
    PATIENT,
    SPID,
    open_record,
    provide,
    runtime,
    services,
)


def test_a_token_bound_to_one_patient_acts_on_that_patient_only(services):
    services.exchange.access.require_patient_context(PATIENT, SPID)
    with pytest.raises(AccessRefused, match="bound to another patient"):
        services.exchange.access.require_patient_context(PATIENT, OTHER_SPID)


def test_a_grant_permits_and_its_absence_refuses_with_the_reason(services):
    pid = open_record(services, grant="normal")
    access = services.exchange.access

    permitted = access.require(HCP, spid=SPID, pid=pid, action="read", confidentiality="normal")
    with pytest.raises(AccessRefused) as refused:
        access.require(OTHER_HCP, spid=SPID, pid=pid, action="read", confidentiality="normal")
    with pytest.raises(AccessRefused):
        access.require(HCP, spid=SPID, pid=pid, action="read", confidentiality="restricted")

    assert permitted.permit is True
    assert refused.value.reason == access.decide(OTHER_HCP, spid=SPID, pid=pid, action="read",
                                                 confidentiality="normal").reason


def test_an_upload_is_raised_to_the_provide_level_never_lowered(services):
    pid = open_record(services)
    access = services.exchange.access

    assert [access.upload_level(level, pid=pid, spid=SPID) for level in ("normal", "restricted", "secret")] == [
        "normal", "restricted", "secret"]


def test_read_fresh_sees_a_change_another_process_made_where_the_cache_does_not(runtime, services):
    """Two runtimes over one SQLite file, each with its own in-process policy cache (two processes)."""
    pid = open_record(services, grant=None)
    access = services.exchange.access
    assert sorted(p.template for p in access.policies(pid)) == [201, 202, 203]  # now cached here
    other = build_runtime(runtime.settings)
    try:
        other.services.policies.add(principal=PATIENT, body=orjson.dumps(
            grant_consent(spid=SPID, gln=HCP.user_id, level="normal")))
    finally:
        other.close()

    cached = sorted(p.template for p in access.policies(pid))
    with access.read_fresh([pid]):
        fresh = sorted(p.template for p in access.policies(pid))
    after = sorted(p.template for p in access.policies(pid))

    assert (cached, fresh, after) == ([201, 202, 203], [201, 202, 203, 301], [201, 202, 203])


def test_an_emergency_read_notifies_the_patient(services):
    pid = open_record(services, grant=None)
    access = services.exchange.access
    emergency = replace(HCP, purpose_of_use="EMER")

    entry = services.exchange.documents.get_entry(provide(services))

    decision = access.require(emergency, spid=SPID, pid=pid, action="read", confidentiality="normal")
    access.fulfil(decision, emergency, pid=pid, what="ITI-68", documents=(entry,))

    [(_, _, notice)] = access.notifications.for_patient(pid)
    assert (notice["kind"], notice["what"], notice["documents"], notice["by"]["id"], notice["purpose_of_use"]) == (
        "emergency-access", "ITI-68", [entry.unique_id], HCP.user_id, "EMER")
    # What the patient's page names the document by: its link and its type code (never its free-text title).
    assert notice["entries"] == [{"id": entry.entry_id, "type": ["http://snomed.info/sct", "373942005"]}]
