"""`IdentityExchange` (gateway/exchanges/identity.py): PIXm and PDQm for professionals and systems, never
for the patient side; merging for the mergers only; each query and refusal audited, by parameter names."""

from __future__ import annotations

import orjson
import pytest

from adapters.cara.errors import NotFound
from gateway.auth.errors import AccessRefused
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    BASE,
    DADM,
    HCP,
    LOCAL_SYSTEM,
    OTHER_SPID,
    PATIENT,
    SPID,
    feed,
    ledger,
    runtime,
    services,
)

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"


def test_pix_answers_the_spid_and_the_mpi_pid_of_a_local_id(services, runtime):
    pid = feed(services)

    answer = services.identities.pix(principal=HCP, params=[("sourceIdentifier", f"{LOCAL_SYSTEM}|L-1")])

    targets = [p["valueIdentifier"] for p in answer["parameter"] if p["name"] == "targetIdentifier"]
    assert targets == [{"system": SPID_SYSTEM, "value": SPID},
                       {"system": f"urn:oid:{runtime.settings.community_oid}", "value": pid}]
    assert ledger(runtime)[-1] == ("ITI-83", "E", "0")


@pytest.mark.parametrize("use_case", ["pix", "pdq"])
def test_the_patient_side_may_not_look_identities_up_and_the_refusal_is_audited(services, runtime, use_case):
    feed(services)
    params = {"pix": [("sourceIdentifier", f"{LOCAL_SYSTEM}|L-1")], "pdq": [("family", "Muster")]}[use_case]
    kwargs = {"pdq": {"base_url": BASE}}.get(use_case, {})

    with pytest.raises(AccessRefused, match="role PAT may not"):
        getattr(services.identities, use_case)(principal=PATIENT, params=params, **kwargs)

    assert ledger(runtime)[-1] == ({"pix": "ITI-83", "pdq": "ITI-78"}[use_case], "E", "4")


def test_an_unknown_source_identifier_is_not_found(services, runtime):
    with pytest.raises(NotFound, match="is not known to this MPI"):
        services.identities.pix(principal=HCP, params=[("sourceIdentifier", f"{LOCAL_SYSTEM}|nobody")])


def test_pdq_finds_by_exact_family_name_only(services):
    feed(services)

    found = services.identities.pdq(principal=HCP, params=[("family", "muster")], base_url=BASE)
    prefix = services.identities.pdq(principal=HCP, params=[("family", "Must")], base_url=BASE)

    assert [e["resource"]["name"][0]["family"] for e in found["entry"]] == ["Muster"]
    assert (found["total"], prefix["total"]) == (1, 0)


def test_a_professional_may_not_merge_and_an_administrator_may(services, runtime):
    retired = feed(services, spid=OTHER_SPID, local_id="L-2", family="Muster", given="Anne")
    surviving = feed(services)
    body = orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{retired}"}},
        {"name": "target-patient", "valueReference": {"reference": f"Patient/{surviving}"}}]})

    with pytest.raises(AccessRefused, match="role HCP may not merge"):
        services.identities.merge(principal=HCP, body=body)
    merged = services.identities.merge(principal=DADM, body=body)

    assert merged["parameter"][0]["resource"]["issue"][0]["diagnostics"] == (
        f"Patient/{retired} merged into Patient/{surviving}")
    assert services.exchange.patients.pid_for_spid(OTHER_SPID) == surviving
    assert ledger(runtime)[-2:] == [("ITI-104", "U", "0"), ("ITI-104", "U", "0")]
