"""What the use-cases' unit tests share: the use-cases as the composition root builds them, on a real
SQLite store in a temporary directory (the unit under test is one use-case module, called directly,
no HTTP), principals, and a record in everyday use. Test modules import the fixtures by name."""

from __future__ import annotations

import orjson
import pytest

from conftest import HCP_GLN, LOCAL_SYSTEM, OTHER_SPID, POLICY_ADMIN, SPID, grant_consent, make_settings, sqlite_url
from consent.principal import Principal
from gateway.first_start import prepare
from gateway.samples import patient_feed
from gateway.wiring import build_runtime

HCP = Principal(role="HCP", user_id=HCP_GLN, name="Dr. Luc Favre", purpose_of_use="NORM")
OTHER_HCP = Principal(role="HCP", user_id="7601000000019", name="Dr. Other", purpose_of_use="NORM")
PATIENT = Principal(role="PAT", user_id=SPID, user_id_qualifier="urn:e-health-suisse:2015:epr-spid",
                    name="Anna Muster", patient_spid=SPID)
TCU = Principal(role="TCU", user_id="infomed-migration", name="Migration", purpose_of_use="AUTO", acting_for=HCP_GLN)
DADM = Principal(role="DADM", user_id="dadm-test", name="Document administrator", purpose_of_use="NORM")
__all__ = ["HCP", "OTHER_HCP", "PATIENT", "TCU", "DADM", "POLICY_ADMIN", "SPID", "OTHER_SPID", "LOCAL_SYSTEM"]


@pytest.fixture
def runtime(tmp_path):
    built = build_runtime(prepare(make_settings(tmp_path / "data", sqlite_url(tmp_path))).settings)
    yield built
    built.close()


@pytest.fixture
def services(runtime):
    return runtime.services


def feed(services, *, spid: str | None = SPID, local_id: str = "L-1", family: str = "Muster",
         given: str = "Anna") -> str:
    """ITI-104 as an HCP's system feeds it; returns the MPI-PID."""
    body = patient_feed(spid=spid, local_system=LOCAL_SYSTEM, local_id=local_id, family=family, given=given,
                        birth_date="1980-05-17", gender="female")
    services.identities.register_patient(principal=HCP, identifier_param=f"{LOCAL_SYSTEM}|{local_id}",
                                       body=orjson.dumps(body))
    return pid_of(services, local_id)


def pid_of(services, local_id: str) -> str:
    from adapters.cara.model import Identifier

    return services.exchange.patients.pid_for_identifier(Identifier(LOCAL_SYSTEM, local_id))


def open_record(services, *, spid: str = SPID, grant: str | None = "normal") -> str:
    """A record in everyday use: fed, onboarded, and (unless None) the HCP granted `grant` by the patient."""
    pid = feed(services, spid=spid)
    services.policies.onboard(principal=POLICY_ADMIN, spid=spid)
    if grant:
        services.policies.add(principal=patient(spid), body=orjson.dumps(grant_consent(spid=spid, gln=HCP_GLN,
                                                                                        level=grant)))
    return pid


def patient(spid: str) -> Principal:
    return Principal(role="PAT", user_id=spid, user_id_qualifier="urn:e-health-suisse:2015:epr-spid",
                     name="Anna Muster", patient_spid=spid)


def ledger(runtime) -> list[tuple[str, str, str]]:
    """(transaction code, action, outcome) of every stored record, in order."""
    found = []
    for event in runtime.ledger.all_records():
        code = next(c["code"] for c in event.get("subtype", []) if c["system"] in (
            "urn:ihe:event-type-code", "urn:e-health-suisse:event-type-code")) if event.get("subtype") else None
        found.append((code or event["type"]["code"], event["action"], event["outcome"]))
    return found


BASE = "https://gw.example/fhir"


def provide(services, *, title: str = "Discharge letter", spid: str = SPID, principal: Principal = HCP,
            confidentiality: str = "normal") -> str:
    """One document provided through POST [base] (ITI-65); returns its entry id."""
    from gateway.samples import pdf_document, provide_bundle

    bundle = provide_bundle(spid=spid, author_role=principal.role, documents=[
        {"title": title, "content": pdf_document(title, [title]), "confidentiality": confidentiality}])
    answer = services.transactions.submit(principal=principal, body=orjson.dumps(bundle), base_url=BASE)
    locations = [e["response"]["location"] for e in answer["entry"]]
    [location] = [where for where in locations if "/DocumentReference/" in where]
    return location.split("/DocumentReference/")[1].split("/")[0]
