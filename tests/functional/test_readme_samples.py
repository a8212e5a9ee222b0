"""The README's first steps hold: its PPQ-3 Consent body is accepted as written, and its HL7 v2 MDM,
sent over a real MLLP socket as the embedded default's development sender, is filed for the
demonstration patient and found by ITI-67 (issue 27 item 7: a newcomer copies these)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from conftest import sqlite_url, running_gateway
from functional.mllp_helpers import MllpClient, ack_fields, running_listener
from gateway.demo import DEMO_SPID, load_demo_data

README = Path(__file__).resolve().parents[2] / "README.md"
SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|"


def sample(name: str) -> str:
    """The fenced block right after `<!-- readme-sample: name -->`."""
    found = re.search(rf"<!-- readme-sample: {re.escape(name)} -->\n```[a-z]*\n(.*?)```", README.read_text(), re.S)
    assert found, f"README sample {name} not found"
    return found.group(1)




def test_the_readme_consent_is_accepted_as_written(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        services = gateway.services
        load_demo_data(documents=services.exchange, identities=services.identities, policies=services.policies,
                       base_url="https://testserver/fhir")
        patient = gateway.tokens.headers(gateway.tokens.patient(DEMO_SPID))
        created = gateway.client.post("/fhir/Consent", content=sample("ppq3-consent").encode(), headers=patient)
        policies = gateway.client.get("/fhir/Consent", params={"patient:identifier": SEARCH + DEMO_SPID},
                                      headers=patient).json()

    assert created.status_code == 201, created.text
    actors = [a.get("reference", {}).get("identifier", {}).get("value") for e in policies["entry"]
              for a in e["resource"].get("provision", {}).get("actor", [])]
    assert "7601000000019" in actors


def test_the_readme_mdm_is_filed_for_the_demo_patient_by_the_development_sender(tmp_path):
    message = sample("hl7v2-mdm").strip("\n").replace("\n", "\r") + "\r"
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        services = gateway.services
        load_demo_data(documents=services.exchange, identities=services.identities, policies=services.policies,
                       base_url="https://testserver/fhir")
        with running_listener(gateway.runtime) as address:
            client = MllpClient(address)
            ack = client.send(message.encode("utf-8"))
            client.close()
        found = gateway.find(DEMO_SPID, headers=gateway.tokens.headers(gateway.tokens.patient(DEMO_SPID))).json()

    assert ack_fields(ack)["MSA"][1:3] == ["AA", "FIRST-1"], ack
    assert "urn:oid:2.25.318463958713094619458263840153847" in [
        e["resource"]["masterIdentifier"]["value"] for e in found["entry"]]
