"""An HL7 T10 (replace) or T06 (addendum) naming a document the sender may not name — another patient's,
or one deleted by the document administrator — is answered exactly as one naming a document that does
not exist (issue 22 item 15): the answer is no oracle, and nothing is stored."""

from __future__ import annotations

import orjson
import pytest

from conftest import OTHER_SPID, SPID, running_gateway
from functional.helpers import row_counts
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file

DELETION_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.18"
EXT_DELETION = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-ext-deletionstatus"
REQUESTED = "urn:e-health-suisse:2019:deletionStatus:deletionRequested"
TARGETS = {"unknown": "urn:oid:2.25.9100", "another patient's": "urn:oid:2.25.9102",
           "deleted": "urn:oid:2.25.9103"}


@pytest.fixture
def bridge(tmp_path, database_url):
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Muster", given="Annette")
        with running_listener(gateway.runtime) as address:
            client = MllpClient(address)
            for control_id, unique_id, local_id, given in (("S2", TARGETS["another patient's"], "L-2", "Annette"),
                                                           ("S3", TARGETS["deleted"], "L-1", "Anna")):
                ack = client.send(mdm(control_id=control_id, unique_id=unique_id, local_id=local_id,
                                      given=given).encode())
                assert ack_fields(ack)["MSA"][1] == "AA", ack
            client.close()
            delete(gateway, TARGETS["deleted"])
            yield gateway, address


def delete(gateway, unique_id: str) -> None:
    """The document administrator deletes it (CH:MHD-1: a new metadata version, status deleted)."""
    found = gateway.find(SPID).json()["entry"]
    entry_id = next(e["resource"]["id"] for e in found if e["resource"]["masterIdentifier"]["value"] == unique_id)
    letter = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=gateway.as_hcp()).json()
    letter["extension"].append({"url": EXT_DELETION, "valueCoding": {"system": DELETION_SYSTEM, "code": REQUESTED}})
    dadm = gateway.tokens.headers(gateway.tokens.mint(role="DADM", user_id="dadm-1", name="Document administrator"))
    response = gateway.client.put(f"/fhir/DocumentReference/{entry_id}", content=orjson.dumps(letter), headers=dadm)
    assert response.status_code == 200, response.text


def answer(ack: bytes, control_id: str, target: str) -> list[list[str]]:
    """The MSA and ERR segments, with the message's MSH-10 and the named target written as <id> and
    <target> (each case is its own message naming its own target)."""
    fields = ack_fields(ack.replace(target.encode(), b"<target>").replace(control_id.encode(), b"<id>"))
    return [fields["MSA"], fields["ERR"]]


@pytest.mark.parametrize("trigger", ["T10", "T06"])
def test_naming_another_patients_or_a_deleted_document_answers_as_an_unknown_one(bridge, trigger):
    gateway, address = bridge
    before = row_counts(gateway.runtime)
    client = MllpClient(address)
    answers = {}
    for case, target in TARGETS.items():
        control_id = f"N-{len(answers)}"
        ack = client.send(mdm(control_id=control_id, unique_id=f"urn:oid:2.25.92{len(answers)}", trigger=trigger,
                              parent=target, content=f"%PDF-1.4 {case}".encode()).encode())
        answers[case] = answer(ack, control_id, target)
    client.close()

    assert answers["unknown"][0][1] == "AE" and answers["unknown"][1][2:5] == [
        "TXA^1^13", "204^Unknown key identifier^HL70357", "E"]
    assert answers["another patient's"] == answers["unknown"]
    assert answers["deleted"] == answers["unknown"]
    assert {**row_counts(gateway.runtime), "mllp_answer": 0} == {**before, "mllp_answer": 0}
