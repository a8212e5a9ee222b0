"""Idempotency recognises the same message, not only the same (sender, MSH-10) (issue 22 item 1): a
sender that reuses a control id for another message (counters reset on restart; two systems of one
facility both sending `1`) has it processed as the new message it is; only the same message again (also
re-sent with a new MSH-7) gets the first answer and changes nothing."""

from __future__ import annotations

import pytest

from conftest import LOCAL_SYSTEM
from functional.helpers import row_counts
from functional.mllp_helpers import HOSPITAL, MllpClient, ack_fields, mdm, running_bridge, send_together
from functional.mllp_helpers import stored_unique_ids as stored


@pytest.fixture
def bridge(tmp_path, database_url):
    with running_bridge(tmp_path, database_url) as running:
        yield running


def msa(ack: bytes) -> list[str]:
    return ack_fields(ack)["MSA"][1:3]


def a08(control_id: str) -> bytes:
    return (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261121||ADT^A08^ADT_A01|{control_id}|P|2.5\rEVN|A08|20261121\r"
            f"PID|1||L-1^^^H&{LOCAL_SYSTEM.removeprefix('urn:oid:')}&ISO^PI||Muster^Anna||19800517|F\r").encode()


def test_a_reused_control_id_with_another_document_is_stored_as_the_new_message_it_is(bridge):
    gateway, address = bridge
    client = MllpClient(address)
    first = client.send(mdm(control_id="1", unique_id="urn:oid:2.25.8001", content=b"%PDF-1.4 one").encode())
    # the sender restarted and counts from 1 again: another document, the same MSH-10
    second = client.send(mdm(control_id="1", unique_id="urn:oid:2.25.8002", content=b"%PDF-1.4 two").encode())
    client.close()

    assert msa(first) == ["AA", "1"] and msa(second) == ["AA", "1"]
    assert second != first  # its own answer, not the first one's
    assert stored(gateway) == {"urn:oid:2.25.8001", "urn:oid:2.25.8002"}


def test_two_systems_of_one_facility_sending_the_same_id_at_once_are_both_stored(bridge):
    gateway, address = bridge
    pacs = mdm(control_id="1", unique_id="urn:oid:2.25.8101", content=b"%PDF-1.4 pacs").encode()
    ris = mdm(control_id="1", unique_id="urn:oid:2.25.8102", content=b"%PDF-1.4 ris").encode()
    acks = send_together(address, [pacs, ris])

    assert [msa(a) for a in acks] == [["AA", "1"], ["AA", "1"]]
    assert stored(gateway) == {"urn:oid:2.25.8101", "urn:oid:2.25.8102"}


def test_the_same_message_again_even_with_a_new_msh_7_gets_the_first_answer_and_changes_nothing(bridge):
    gateway, address = bridge
    client = MllpClient(address)
    first = client.send(mdm(control_id="R-1", unique_id="urn:oid:2.25.8201").encode())
    before = row_counts(gateway.runtime)
    records = len(gateway.services.auditor.ledger.all_records())
    again = client.send(mdm(control_id="R-1", unique_id="urn:oid:2.25.8201").encode())
    resent = client.send(mdm(control_id="R-1", unique_id="urn:oid:2.25.8201", sent="20261121080000+0100").encode())
    client.close()

    assert msa(first) == ["AA", "R-1"] and again == first and resent == first
    assert row_counts(gateway.runtime) == before
    assert len(gateway.services.auditor.ledger.all_records()) == records
    assert stored(gateway) == {"urn:oid:2.25.8201"}


def test_after_a_reused_id_each_message_sent_again_gets_its_own_answer(bridge):
    gateway, address = bridge
    client = MllpClient(address)
    one = mdm(control_id="7", unique_id="urn:oid:2.25.8301", content=b"%PDF-1.4 one").encode()
    two = mdm(control_id="7", unique_id="urn:oid:2.25.8302", content=b"%PDF-1.4 two").encode()
    first, second = client.send(one), client.send(two)
    before = row_counts(gateway.runtime)
    first_again, second_again = client.send(one), client.send(two)
    client.close()

    assert (first_again, second_again) == (first, second)
    assert row_counts(gateway.runtime) == before


def test_an_a08_reusing_an_mdms_control_id_is_processed_and_answered_as_an_a08(bridge):
    gateway, address = bridge
    client = MllpClient(address)
    document = client.send(mdm(control_id="42", unique_id="urn:oid:2.25.8401").encode())
    records = len(gateway.services.auditor.ledger.all_records())
    feed = client.send(a08("42"))
    client.close()

    assert msa(document) == ["AA", "42"] and ack_fields(document)["MSH"][8] == "ACK^T02^ACK"
    assert ack_fields(feed)["MSA"][1:4] == ["AA", "42", "patient registered"]
    assert ack_fields(feed)["MSH"][8] == "ACK^A08^ACK"
    fed = [r["subtype"][0]["code"] for r in gateway.services.auditor.ledger.all_records()[records:]]
    assert fed == ["ITI-104"]  # the feed was processed (and audited), not answered from memory
