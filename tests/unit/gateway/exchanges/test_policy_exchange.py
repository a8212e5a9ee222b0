"""`PolicyExchange` (gateway/exchanges/policies.py): onboarding, PPQ-3 by the patient, the day policies
are judged against, and the refusals — each with its audit record, on a real store."""

from __future__ import annotations

from datetime import date

import orjson
import pytest

from conftest import HCP_GLN, grant_consent
from gateway.auth.errors import AccessRefused
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    OTHER_SPID,
    PATIENT,
    POLICY_ADMIN,
    SPID,
    feed,
    ledger,
    open_record,
    runtime,
    services,
)

ONBOARDING_TEMPLATES = [201, 202, 203]


def templates(services, spid: str = SPID) -> list[int]:
    bundle = services.policies.retrieve(principal=POLICY_ADMIN, params=[
        ("patient:identifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{spid}")], base_url="https://gw/fhir")
    return sorted(int(next(i["value"] for i in e["resource"]["identifier"] if i["type"]["coding"][0]["code"]
                           == "templateId")) for e in bundle.get("entry", []))


def test_onboarding_opens_the_record_with_the_bootstrap_set_and_tells_its_followers(services, runtime):
    pid = feed(services)
    told = []
    services.policies.onboarded.append(told.append)

    policies = services.policies.onboard(principal=POLICY_ADMIN, spid=SPID)

    assert [p.template for p in policies] == ONBOARDING_TEMPLATES
    assert templates(services) == ONBOARDING_TEMPLATES
    assert told == [pid]
    assert ledger(runtime)[-4:-1] == [("PPQ-3", "C", "0")] * 3  # the three sets, then the PPQ-5 read above


def test_onboard_unless_open_opens_a_fed_record_once_and_ignores_an_unknown_spid(services, runtime):
    feed(services)

    first = services.policies.onboard_unless_open(principal=POLICY_ADMIN, spid=SPID)
    records = len(ledger(runtime))
    again = services.policies.onboard_unless_open(principal=POLICY_ADMIN, spid=SPID)
    unknown = services.policies.onboard_unless_open(principal=POLICY_ADMIN, spid=OTHER_SPID)

    assert (first, again, unknown) == (True, False, False)
    assert len(ledger(runtime)) == records  # the second and third call wrote nothing
    assert templates(services) == ONBOARDING_TEMPLATES


def test_the_patient_grants_a_professional_and_the_grant_is_stored_and_audited(services, runtime):
    open_record(services, grant=None)

    consent, created = services.policies.add(principal=PATIENT, body=orjson.dumps(
        grant_consent(spid=SPID, gln=HCP_GLN, level="restricted")))

    assert created is True
    assert consent["policyRule"]["coding"][0]["code"].endswith("access-level:restricted")
    assert templates(services) == [*ONBOARDING_TEMPLATES, 301]
    assert ledger(runtime)[-2] == ("PPQ-3", "C", "0")


def test_a_professional_may_not_grant_on_the_patients_behalf_and_the_refusal_is_audited(services, runtime):
    open_record(services, grant=None)

    with pytest.raises(AccessRefused):
        services.policies.add(principal=HCP, body=orjson.dumps(grant_consent(spid=SPID, gln=HCP_GLN, level="normal")))

    assert ledger(runtime)[-1] == ("PPQ-3", "E", "4")  # a refusal is recorded as such (action E)
    assert templates(services) == ONBOARDING_TEMPLATES


def test_the_day_policies_are_judged_against_is_the_decision_points(services):
    assert services.policies.today() == services.exchange.access.today()
    assert isinstance(services.policies.today(), date)
