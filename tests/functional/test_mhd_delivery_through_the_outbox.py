"""Valais's own deliverer into cara over MHD (issue 24 items 1 and 7 together): Valais runs `serve` with
cara as an MHD community (`EPR_COMMUNITIES`), so every document it stores gets an outbox row and the
deliverer inside `serve` sends it with `MhdDocumentSource` — no test code between the two gateways.
What shows: every document Valais stores reaches cara with Valais's entryUUID, found by ITI-67 and byte
for byte by ITI-68; a replacement made at Valais replaces the original at cara (by the reference cara
answered, kept with the receipt); cara killed mid-way: the delivery retries (transport attempts) and is
delivered once cara is back; nothing twice on cara; Valais's ledger names each attempt ITI-65, an Export
to cara."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from conftest import SPID
from consent.policies import onboarding_policies
from consent.ppqm import consent_from_policy
from functional.helpers import document_ids
from functional.test_mhd_two_gateways import Peers, found_on_cara, retrieved_from_cara
from gateway.samples import pdf_document, provide_bundle

QUICK = {"EPR_DELIVERY_RETRY_SECONDS": "0.2", "EPR_DELIVERY_RETRY_MAX_SECONDS": "1",
         "EPR_DELIVERY_POLL_SECONDS": "0.1", "EPR_DELIVERY_PATIENT_RETRY_SECONDS": "0.5"}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    root = tmp_path_factory.mktemp("valais-delivers")
    running = Peers(root, EPR_COMMUNITIES=str(root / "valais-communities.json"), **QUICK)
    running.feed(running.valais, SPID, "L-1")
    open_the_record_at_valais(running)
    running.feed(running.cara, SPID, "C-1")
    yield running
    running.stop()


def open_the_record_at_valais(peers: Peers) -> None:
    """The onboarding policies (201/202/203) as a policy administrator: Valais delivers only what its own
    decision allows (the patient's EPR open, the responsible professional allowed to write)."""
    padm = peers.token(f"{peers.valais.base}/fhir", role="PADM", user_id="padm-test", name="Policy administrator")
    ids = tuple(f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    with peers.client(peers.valais) as client:
        for policy in onboarding_policies(patient_spid=SPID, policy_set_ids=ids):
            added = client.post("/fhir/Consent", content=orjson.dumps(consent_from_policy(policy)),
                                headers={"Authorization": f"Bearer {padm}", "Content-Type": "application/fhir+json"})
            assert added.status_code == 201, added.text


def provide_at_valais(peers: Peers, *titles: str, replaces: str | None = None) -> list[tuple[str, bytes, dict]]:
    """ITI-65 to Valais as a professional; (uniqueId, bytes, Valais's DocumentReference) of each document."""
    contents = [pdf_document(title, [title, os.urandom(8).hex()]) for title in titles]
    related = {"replaces": replaces} if replaces else {}
    bundle = provide_bundle(spid=SPID, documents=[{"title": t, "content": c, **related}
                                                  for t, c in zip(titles, contents, strict=True)])
    with peers.client(peers.valais) as client:
        answer = client.post("/fhir", content=orjson.dumps(bundle), headers=peers.hcp(f"{peers.valais.base}/fhir"))
        assert answer.status_code == 200, answer.text
        ids = document_ids(answer.json())
        stored = [client.get(f"/fhir/DocumentReference/{i}", headers=peers.patient_at(peers.valais, SPID)).json()
                  for i in ids]
    return [(s["masterIdentifier"]["value"], c, s) for s, c in zip(stored, contents, strict=True)]


def wait_on_cara(peers: Peers, unique_ids: list[str], *, seconds: float = 30) -> dict[str, dict]:
    deadline = time.monotonic() + seconds
    while True:
        held = found_on_cara(peers, SPID)
        if all(u in held for u in unique_ids):
            return held
        assert time.monotonic() < deadline, f"not delivered to cara in {seconds} s: " + "".join(
            outbox(peers, "show", u) for u in unique_ids)
        time.sleep(0.3)


def outbox(peers: Peers, *args: str) -> str:
    return valais_cli(peers, "outbox", *args)


def valais_cli(peers: Peers, *args: str) -> str:
    """An operator's `epr-gateway` command on Valais (its data directory and settings)."""
    environment = {"EPR_DATA_DIR": str(peers.valais_dir), "EPR_PORT": str(peers.valais_port),
                   "EPR_DEMO_DATA": "false", "EPR_AUDIENCE": f"{peers.valais.base}/fhir", "PATH": "/usr/bin:/bin",
                   **peers.valais_env}
    done = subprocess.run([sys.executable, "-c", "from gateway.cli import app; app()", *args],
                          env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_what_valais_stores_reaches_cara_with_valais_ids_byte_for_byte_once(peers):
    documents = provide_at_valais(peers, "Discharge letter", "Lab report") + provide_at_valais(peers, "Imaging")

    held = wait_on_cara(peers, [u for u, _, _ in documents])

    for unique_id, content, _ in documents:
        shown = outbox(peers, "show", unique_id)
        assert shown.startswith("cara-mhd provide (version 1): delivered"), shown
        entry_uuid = re.search(r"entryUUID (urn:uuid:[0-9a-f-]{36})", shown)[1]  # the outbox's, for cara
        assert held[unique_id]["identifier"] == [{"use": "official", "system": "urn:ietf:rfc:3986",
                                                  "value": entry_uuid}]
        assert retrieved_from_cara(peers, SPID, held[unique_id]) == content
    states = json.loads(outbox(peers, "status", "--json"))["communities"][0]
    assert (states["community"], states["states"]["delivered"]) == ("cara-mhd", 3)


def test_a_replacement_at_valais_replaces_the_original_at_cara(peers):
    ((original, _, at_valais),) = provide_at_valais(peers, "Operation report")
    cara_original = wait_on_cara(peers, [original])[original]

    ((corrected, content, _),) = provide_at_valais(peers, "Operation report (corrected)", replaces=at_valais["id"])
    held = wait_on_cara(peers, [corrected])

    assert held[original]["status"] == "superseded"
    assert held[corrected]["relatesTo"] == [{"code": "replaces",
                                             "target": {"reference": f"DocumentReference/{cara_original['id']}"}}]
    assert retrieved_from_cara(peers, SPID, held[corrected]) == content


def test_cara_down_the_delivery_retries_then_lands_once(peers):
    peers.kill_cara()
    ((unique_id, content, _),) = provide_at_valais(peers, "Consultation note")
    deadline = time.monotonic() + 30
    while "transport" not in (shown := outbox(peers, "show", unique_id)):
        assert time.monotonic() < deadline, shown
        time.sleep(0.3)
    assert ": delivered" not in shown.splitlines()[0]

    peers.restart_cara()
    held = wait_on_cara(peers, [unique_id])

    assert retrieved_from_cara(peers, SPID, held[unique_id]) == content
    shown = outbox(peers, "show", unique_id)
    assert shown.splitlines()[0].startswith("cara-mhd provide (version 1): delivered")
    assert "transport" in shown  # the attempts while cara was down, kept
    assert len(held) == len(found_on_cara(peers, SPID))  # found_on_cara fails on a uniqueId held twice


def test_valais_ledger_names_each_attempt_an_iti65_export_to_cara_and_verifies(peers):
    lines = valais_cli(peers, "audit", "export").splitlines()
    events = [json.loads(json.loads(line)["record_json"]) for line in lines]
    attempts = [e for e in events if "ITI-65" in [c.get("code") for c in e.get("subtype", [])]
                and any(a.get("who", {}).get("display") == "cara-mhd" for a in e["agent"])]

    assert attempts, "no delivery attempt in Valais's ledger"
    assert {e["type"]["code"] for e in attempts} == {"110106"}  # an Export: Valais sent it
    assert {e["outcome"] for e in attempts} == {"0", "8"}  # delivered; transport failures while cara was down
    assert all("meta" not in e for e in attempts)  # not claimed as the recipient's ITI-65 record
    for event in attempts:
        destination = next(a for a in event["agent"] if a["type"]["coding"][0]["code"] == "110152")
        assert destination["network"]["address"] == peers.cara_fhir
        assert [c["code"] for r in next(a for a in event["agent"] if a.get("requestor"))["role"]
                for c in r["coding"]] == ["TCU"]
    assert "audit ledger verifies" in valais_cli(peers, "audit", "verify", "--no-witness")
