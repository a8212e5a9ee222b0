"""What Windows senders write as "ISO-8859-1" (windows-1252) over a real MLLP socket, read back as stored
through PDQm (the patient's name) and ITI-67 (the document's title)."""

from __future__ import annotations

import pytest

from conftest import LOCAL_SYSTEM, SPID, running_gateway, sqlite_url
from functional.mllp_helpers import HOSPITAL, MllpClient, ack_fields, mdm, running_listener, senders_file

LATIN_1_LABELS = ["8859/1", "", "ASCII"]  # declared, absent, claimed ASCII: all written by cp1252 senders
FAMILY = "D’Andrea"  # 0x92 in windows-1252, a C1 control character when read as ISO-8859-1
TITLE = "Lettre d’Anna – contrôle „Röntgen“ • 5 €"


@pytest.fixture
def bridge(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            yield gateway, address


def a08(*, control_id: str, family: str, charset: str, local_id: str = "L-90") -> str:
    return (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120100000||ADT^A08^ADT_A01|{control_id}|P|2.5|||||CHE|{charset}\r"
            "EVN|A08|20261120\r"
            f"PID|1||{local_id}^^^H&{LOCAL_SYSTEM[8:]}&ISO^PI||{family}^Lucia||19750203|F\r")


def pdqm_families(gateway, local_id: str) -> list[str]:
    response = gateway.client.get("/fhir/Patient", params={"identifier": f"{LOCAL_SYSTEM}|{local_id}"},
                                  headers=gateway.as_hcp())
    assert response.status_code == 200, response.text
    return [name["family"] for entry in response.json().get("entry", []) for name in entry["resource"]["name"]]


@pytest.mark.parametrize("charset", LATIN_1_LABELS)
def test_a_windows_1252_name_is_stored_as_typed_and_read_back_through_pdqm(bridge, charset):
    gateway, address = bridge
    client = MllpClient(address)
    ack = client.send(a08(control_id="CS-1", family=FAMILY, charset=charset).encode("cp1252"))
    client.close()

    assert ack_fields(ack, "cp1252")["MSA"][1:3] == ["AA", "CS-1"]
    assert pdqm_families(gateway, "L-90") == [FAMILY]


@pytest.mark.parametrize("charset", LATIN_1_LABELS)
def test_a_windows_1252_title_is_stored_as_typed_and_read_back_through_iti_67(bridge, charset):
    gateway, address = bridge
    client = MllpClient(address)
    ack = client.send(mdm(control_id="CS-2", unique_id="urn:oid:2.25.9092", charset=charset, title=TITLE)
                      .encode("cp1252"))
    client.close()

    assert ack_fields(ack, "cp1252")["MSA"][1:3] == ["AA", "CS-2"]
    response = gateway.find(SPID)
    assert response.status_code == 200, response.text
    [entry] = response.json()["entry"]
    assert entry["resource"]["content"][0]["attachment"]["title"] == TITLE


@pytest.mark.parametrize("charset", LATIN_1_LABELS)
def test_a_byte_windows_1252_leaves_undefined_is_refused_naming_its_field_and_stores_nothing(bridge, charset):
    gateway, address = bridge
    records = len(gateway.services.auditor.ledger.all_records())
    raw = a08(control_id="CS-3", family="M\x00ller", charset=charset).encode("cp1252").replace(b"\x00", b"\x81")
    client = MllpClient(address)
    ack = client.send(raw)
    client.close()

    refusal = gateway.services.auditor.ledger.all_records()[records:]
    fields = ack_fields(ack, "cp1252")
    assert fields["MSA"][1] == "AE"
    assert (fields["ERR"][2], fields["ERR"][3].split("^")[0]) == ("PID^1^5", "102")
    assert fields["ERR"][8] == ("byte 0x81 in PID-5 is not a character of windows-1252 (what 8859/1 senders "
                                "write): send the text in the character set MSH-18 names")
    assert [(r["outcome"], r["outcomeDesc"]) for r in refusal] == [("4", fields["ERR"][8])]
    assert pdqm_families(gateway, "L-90") == []
