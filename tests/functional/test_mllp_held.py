"""Messages held for identity review are processed again once their cause is fixed: automatically after
a feed (ITI-104 over FHIR, ADT^A08 over MLLP), an onboarding or a resolved review, and on demand with
`epr-gateway bridge held` / `bridge retry`. Each release goes through provide (consent decision, audit)."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from conftest import HCP_GLN, LOCAL_SYSTEM, POLICY_ADMIN, SPID, running_gateway, sqlite_url
from functional.mllp_helpers import HOSPITAL, MllpClient, ack_fields, cli_environment, mdm, running_listener, senders_file
from gateway.cli import app
from gateway.samples import patient_feed

NEW_SPID = "761337610455555558"
UNFED = {"resourceType": "Patient", "identifier": [{"system": LOCAL_SYSTEM, "value": "L-9"}],
         "name": [{"family": "Sans", "given": ["Dossier"]}], "birthDate": "1950-01-01", "gender": "male"}


@pytest.fixture
def bridge(tmp_path):
    senders = senders_file(tmp_path)
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            yield gateway, address, tmp_path


def send(address, message: bytes) -> bytes:
    client = MllpClient(address)
    try:
        return client.send(message)
    finally:
        client.close()


def held(gateway) -> list[tuple[str, str, str]]:
    from gateway.wiring import hl7_exchange

    return [(m.control_id, m.reason, m.sender) for m in hl7_exchange(gateway.runtime).held_messages()]


def found(gateway, spid: str) -> set[str]:
    response = gateway.find(spid)
    assert response.status_code == 200, response.text
    return {e["resource"]["masterIdentifier"]["value"] for e in response.json().get("entry", [])}


def created_records(gateway, spid: str) -> list[dict]:
    """The ATC_DOC_CREATE records of this patient (a release's audit)."""
    return [r for r in gateway.services.auditor.ledger.all_records()
            if r["subtype"][0]["code"] == "ATC_DOC_CREATE" and spid in orjson.dumps(r.get("entity")).decode()]


def unfed_document(control_id: str, unique_id: str) -> bytes:
    """A document for the patient UNFED, with its demographics (the bridge compares them with the MPI's)."""
    return mdm(control_id=control_id, unique_id=unique_id, local_id="L-9", family="Sans", given="Dossier",
               birth="19500101", sex="M").encode()


def put_patient(gateway, body: dict, local_id: str) -> int:
    return gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{local_id}", content=orjson.dumps(body),
                              headers=gateway.as_hcp()).status_code


def a08(control_id: str, *, local_id: str, spid: str | None, family: str, given: str, birth: str, gender: str) -> bytes:
    ids = f"{local_id}^^^H&{LOCAL_SYSTEM.removeprefix('urn:oid:')}&ISO^PI"
    if spid:
        ids += f"~{spid}^^^EPR&2.16.756.5.30.1.127.3.10.3&ISO"
    return (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||ADT^A08^ADT_A01|{control_id}|P|2.5\rEVN|A08|20261120\r"
            f"PID|1||{ids}||{family}^{given}||{birth}|{gender}\r").encode()


@pytest.mark.parametrize("channel", ["ITI-104", "ADT^A08"])
def test_a_held_message_waits_for_the_epr_to_be_opened_then_is_stored(bridge, channel):
    gateway, address, _ = bridge
    assert put_patient(gateway, UNFED, "L-9") == 201  # known to the MPI, no EPR-SPID
    ack = send(address, unfed_document("H-1", "urn:oid:2.25.911"))
    assert ack_fields(ack)["MSA"][1:3] == ["AA", "H-1"]
    assert [(c, r) for c, r, _ in held(gateway)] == [("H-1", "no-epr")]

    # The feed gives the patient its SPID: processed again, but its EPR is not opened yet.
    if channel == "ITI-104":
        body = patient_feed(spid=NEW_SPID, local_system=LOCAL_SYSTEM, local_id="L-9", family="Sans",
                            given="Dossier", birth_date="1950-01-01", gender="male")
        assert put_patient(gateway, body, "L-9") == 200
    else:
        fed = send(address, a08("A-1", local_id="L-9", spid=NEW_SPID, family="Sans", given="Dossier",
                                birth="19500101", gender="M"))
        assert ack_fields(fed)["MSA"][1:3] == ["AA", "A-1"]
    assert [(c, r) for c, r, _ in held(gateway)] == [("H-1", "epr-not-opened")]
    assert found(gateway, NEW_SPID) == set()

    # Onboarding opens it: the document is stored, as the sender's technical user, and audited.
    gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=NEW_SPID)
    assert held(gateway) == []
    gateway.grant(NEW_SPID, HCP_GLN, "normal")  # for the HCP's search below
    assert found(gateway, NEW_SPID) == {"urn:oid:2.25.911"}
    [record] = created_records(gateway, NEW_SPID)
    assert {"hopital-sion-feed", HCP_GLN} <= {a.get("altId") for a in record["agent"]}  # the TCU, for whom
    # The sender's kept answer is what it was told; a repeat gets it again and changes nothing.
    again = send(address, unfed_document("H-1", "urn:oid:2.25.911"))
    assert again == ack and found(gateway, NEW_SPID) == {"urn:oid:2.25.911"}


def test_resolving_the_identity_review_that_held_a_message_stores_it(bridge):
    gateway, address, _ = bridge
    conflicting = patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-1", family="Muster",
                               given="Anna", birth_date="1999-01-01", gender="female")
    put_patient(gateway, conflicting, "L-1")  # demographics differ: an identity review case is opened
    [review] = gateway.services.exchange.patients.reviews.open_reviews()
    send(address, mdm(control_id="R-1", unique_id="urn:oid:2.25.921").encode())
    assert [(c, r) for c, r, _ in held(gateway)] == [("R-1", "identity-review")]
    assert "urn:oid:2.25.921" not in found(gateway, SPID)

    admin = gateway.tokens.headers(gateway.tokens.mint(role="PADM", user_id="padm-1", name="Admin"))
    resolved = gateway.client.post(f"/admin/identity-reviews/{review.id}/resolve", headers=admin)

    assert resolved.status_code == 200
    assert held(gateway) == []
    assert "urn:oid:2.25.921" in found(gateway, SPID)
    assert len(created_records(gateway, SPID)) == 1


def test_bridge_held_lists_and_bridge_retry_releases_what_nothing_else_released(bridge, monkeypatch):
    gateway, address, tmp_path = bridge
    conflicting = patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-1", family="Muster",
                               given="Anna", birth_date="1999-01-01", gender="female")
    put_patient(gateway, conflicting, "L-1")
    [review] = gateway.services.exchange.patients.reviews.open_reviews()
    send(address, mdm(control_id="C-1", unique_id="urn:oid:2.25.931").encode())
    cli_environment(monkeypatch, gateway)

    listed = CliRunner().invoke(app, ["bridge", "held"])
    assert listed.exit_code == 0, listed.output
    assert "1 messages held" in listed.output and "identity-review" in listed.output and "MSH-10 C-1" in listed.output
    assert review.id in listed.output and "/admin/identity-reviews" in listed.output  # what releases it
    assert "Muster" not in listed.output and "L-1" not in listed.output  # reasons, never the patient

    waiting = CliRunner().invoke(app, ["bridge", "retry"])
    assert waiting.exit_code == 0, waiting.output
    assert "1 held" in waiting.output and "an identity review case names the patient" in waiting.output

    gateway.services.exchange.patients.reviews.resolve(review.id)  # resolved in the store: no use-case told
    assert [(c, r) for c, r, _ in held(gateway)] == [("C-1", "identity-review")]
    released = CliRunner().invoke(app, ["bridge", "retry"])

    assert released.exit_code == 0, released.output
    assert "1 released" in released.output and "document stored" in released.output
    assert held(gateway) == []
    assert "urn:oid:2.25.931" in found(gateway, SPID)
    assert "nothing held" in CliRunner().invoke(app, ["bridge", "retry"]).output


def test_a_held_message_whose_sender_left_the_senders_file_stays_held_saying_so(bridge):
    gateway, address, tmp_path = bridge
    assert put_patient(gateway, UNFED, "L-9") == 201
    send(address, unfed_document("S-1", "urn:oid:2.25.941"))
    body = patient_feed(spid=NEW_SPID, local_system=LOCAL_SYSTEM, local_id="L-9", family="Sans",
                        given="Dossier", birth_date="1950-01-01", gender="male")
    assert put_patient(gateway, body, "L-9") == 200
    elsewhere = {"senders": [{"facility": "ELSEWHERE", "user_id": "x", "principal_gln": HCP_GLN}]}
    (tmp_path / "senders.json").write_text(orjson.dumps(elsewhere).decode())  # the hospital is gone
    gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=NEW_SPID)  # would release it

    assert [(c, r) for c, r, _ in held(gateway)] == [("S-1", "unknown-sender")]
    assert found(gateway, NEW_SPID) == set() and created_records(gateway, NEW_SPID) == []
