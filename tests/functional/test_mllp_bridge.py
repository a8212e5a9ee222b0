"""The HL7 v2 bridge over real TCP sockets: persistent connections, big and foreign-encoded messages,
framing recovery, idempotent MSH-10, replacement, merge, identity review, refusals, TLS."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import time

import orjson
import pytest

from adapters.cara.store.message_inbox import DatabaseMessageInbox
from conftest import LOCAL_SYSTEM, OTHER_SPID, SPID, running_gateway, sqlite_url
from functional.helpers import row_counts
from functional.mllp_helpers import HOSPITAL, MllpClient, ack_fields, mdm, running_listener, senders_file
from gateway.mllp.framing import END, START
from gateway.pki import ensure_dev_pki, issue_client_certificate, server_ssl_context
from gateway.samples import pdf_document

RECORD_TABLES = ("submission_set", "document_entry", "document_body", "document_relation", "mllp_answer",
                 "mllp_held_message", "patient", "patient_identifier", "patient_link", "identity_review")


@pytest.fixture
def bridge(tmp_path, database_url):
    """(gateway, MLLP address) with the test patient registered and granting the test HCP."""
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            yield gateway, address


@pytest.fixture
def sqlite_bridge(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            yield gateway, address


def msa(ack: bytes, codec: str = "utf-8") -> list[str]:
    return ack_fields(ack, codec)["MSA"][1:3]


def found(gateway, spid: str = SPID, **params) -> dict[str, dict]:
    """uniqueId → DocumentReference of what ITI-67 finds for the test HCP."""
    response = gateway.find(spid, **params)
    assert response.status_code == 200, response.text
    return {e["resource"]["masterIdentifier"]["value"]: e["resource"] for e in response.json().get("entry", [])}


def content_of(gateway, reference: dict) -> bytes:
    url = reference["content"][0]["attachment"]["url"]
    response = gateway.client.get(url[url.index("/fhir/"):], headers=gateway.as_hcp())
    assert response.status_code == 200, response.text
    return response.content


def counts(gateway) -> dict[str, int]:
    every = row_counts(gateway.runtime)
    return {t: every[t] for t in RECORD_TABLES}


def test_a_persistent_connection_carries_several_messages_each_acknowledged_and_stored(bridge):
    gateway, address = bridge
    pdfs = [pdf_document(f"Report {n}", [f"line {n}"]) for n in range(3)]
    client = MllpClient(address)
    acks = [client.send(mdm(control_id=f"C-{n}", unique_id=f"urn:oid:2.25.10{n}", content=pdfs[n]).encode())
            for n in range(3)]
    client.close()

    assert [msa(a) for a in acks] == [["AA", "C-0"], ["AA", "C-1"], ["AA", "C-2"]]
    documents = found(gateway)
    assert sorted(documents) == ["urn:oid:2.25.100", "urn:oid:2.25.101", "urn:oid:2.25.102"]
    assert [content_of(gateway, documents[f"urn:oid:2.25.10{n}"]) for n in range(3)] == pdfs
    reference = documents["urn:oid:2.25.100"]
    assert reference["type"]["coding"][0]["code"] == "373942005"  # TXA-2 DS → discharge summary
    assert reference["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert reference["content"][0]["attachment"]["title"] == "Lettre de sortie"


def test_a_10_mb_message_is_received_whole(sqlite_bridge):
    gateway, address = sqlite_bridge
    big = pdf_document("Big", ["x"]) + bytes(range(256)) * (10 * 1024 * 4)  # ≈10 MB, ≈13.6 MB as Base64
    client = MllpClient(address)
    ack = client.send(mdm(control_id="BIG-1", unique_id="urn:oid:2.25.555", content=big).encode())
    client.close()

    assert msa(ack) == ["AA", "BIG-1"]
    stored = content_of(gateway, found(gateway)["urn:oid:2.25.555"])
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize("charset", ["8859/1", ""])
def test_latin_1_with_and_without_msh_18_keeps_umlauts_and_accents(sqlite_bridge, charset):
    gateway, address = sqlite_bridge
    title = "Befund Müller – Hôpital de Sion, Réadaptation".replace("–", "-")
    message = mdm(control_id="L1", unique_id="urn:oid:2.25.777", charset=charset, title=title).encode("iso-8859-1")
    client = MllpClient(address)
    ack = client.send(message)
    client.close()

    assert msa(ack, "iso-8859-1") == ["AA", "L1"]
    assert ack_fields(ack, "iso-8859-1")["MSH"][17:18] == ([charset] if charset else [])
    assert found(gateway)["urn:oid:2.25.777"]["content"][0]["attachment"]["title"] == title


def test_utf_8_declared_in_msh_18_is_read_as_utf_8(sqlite_bridge):
    gateway, address = sqlite_bridge
    title = "Lettre – Zürich ✓"
    client = MllpClient(address)
    ack = client.send(mdm(control_id="U1", unique_id="urn:oid:2.25.778", charset="UNICODE UTF-8",
                          title=title).encode("utf-8"))
    client.close()
    assert msa(ack) == ["AA", "U1"]
    assert found(gateway)["urn:oid:2.25.778"]["content"][0]["attachment"]["title"] == title


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
def test_lf_and_crlf_segment_separators_are_read(sqlite_bridge, separator):
    gateway, address = sqlite_bridge
    client = MllpClient(address)
    ack = client.send(mdm(control_id="S1", unique_id="urn:oid:2.25.779", separator=separator).encode())
    client.close()
    assert msa(ack) == ["AA", "S1"]
    assert list(found(gateway)) == ["urn:oid:2.25.779"]


def test_a_utf_8_byte_order_mark_is_ignored(sqlite_bridge):
    gateway, address = sqlite_bridge
    client = MllpClient(address)
    ack = client.send(b"\xef\xbb\xbf" + mdm(control_id="B1", unique_id="urn:oid:2.25.780", title="Zoé").encode())
    client.close()
    assert msa(ack) == ["AA", "B1"]
    assert found(gateway)["urn:oid:2.25.780"]["content"][0]["attachment"]["title"] == "Zoé"


def test_the_same_msh_10_again_gets_the_same_answer_and_changes_nothing(bridge):
    gateway, address = bridge
    client = MllpClient(address)
    first = client.send(mdm(control_id="DUP-1", unique_id="urn:oid:2.25.901").encode())
    before = counts(gateway)
    ledger_before = len(gateway.services.auditor.ledger.all_records())
    again = client.send(mdm(control_id="DUP-1", unique_id="urn:oid:2.25.901").encode())
    assert counts(gateway) == before
    assert len(gateway.services.auditor.ledger.all_records()) == ledger_before
    # Same control id, other content: another message, stored with its own answer (issue 22 item 1).
    other = client.send(mdm(control_id="DUP-1", unique_id="urn:oid:2.25.902").encode())
    client.close()

    assert msa(first) == ["AA", "DUP-1"] and again == first
    assert msa(other) == ["AA", "DUP-1"] and other != first
    assert sorted(found(gateway)) == ["urn:oid:2.25.901", "urn:oid:2.25.902"]


def test_an_error_answer_is_kept_too(sqlite_bridge):
    gateway, address = sqlite_bridge
    client = MllpClient(address)
    first = client.send(mdm(control_id="E-1", unique_id="").encode())
    again = client.send(mdm(control_id="E-1", unique_id="").encode())
    client.close()
    assert msa(first) == ["AE", "E-1"] and again == first


def test_garbage_between_frames_is_skipped(sqlite_bridge):
    gateway, address = sqlite_bridge
    client = MllpClient(address)
    client.send_raw(b"\r\n\x00 noise before the first frame \x1c\r")
    first = client.send(mdm(control_id="G1", unique_id="urn:oid:2.25.301").encode())
    client.send_raw(b"junk between frames" * 100)
    # a frame abandoned by its sender, restarted with a new start block
    client.send_raw(START + b"MSH|^~\\&|half a message")
    second = client.send(mdm(control_id="G2", unique_id="urn:oid:2.25.302").encode())
    client.close()

    assert (msa(first), msa(second)) == (["AA", "G1"], ["AA", "G2"])
    assert sorted(found(gateway)) == ["urn:oid:2.25.301", "urn:oid:2.25.302"]


def test_a_connection_dropped_mid_message_stores_and_acknowledges_nothing(sqlite_bridge):
    gateway, address = sqlite_bridge
    before = counts(gateway)
    whole = START + mdm(control_id="CUT-1", unique_id="urn:oid:2.25.401").encode() + END
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(whole[: len(whole) // 2])
    sock.shutdown(socket.SHUT_WR)
    answer = sock.recv(1024)  # the server closes without a word
    sock.close()

    assert answer == b""
    time.sleep(0.2)
    assert counts(gateway) == before
    # the sender sends it again, whole: it is a new message, processed once
    client = MllpClient(address)
    ack = client.send(mdm(control_id="CUT-1", unique_id="urn:oid:2.25.401").encode())
    client.close()
    assert msa(ack) == ["AA", "CUT-1"]


def test_a_t10_replaces_a_document_from_an_earlier_message(bridge):
    gateway, address = bridge
    client = MllpClient(address)
    original = client.send(mdm(control_id="R1", unique_id="urn:oid:2.25.501", content=b"%PDF-1.4 v1").encode())
    replacement = client.send(mdm(control_id="R2", unique_id="urn:oid:2.25.502", trigger="T10",
                                  parent="urn:oid:2.25.501", content=b"%PDF-1.4 v2").encode())
    again = client.send(mdm(control_id="R3", unique_id="urn:oid:2.25.503", trigger="T10",
                            parent="urn:oid:2.25.501", content=b"%PDF-1.4 v3").encode())
    client.close()

    assert (msa(original), msa(replacement)) == (["AA", "R1"], ["AA", "R2"])
    assert msa(again) == ["AE", "R3"]  # the original is superseded already: a conflict the sender must resolve
    assert ack_fields(again)["ERR"][3].startswith("205^")
    current = found(gateway, status="current")
    assert list(current) == ["urn:oid:2.25.502"]
    assert current["urn:oid:2.25.502"]["relatesTo"][0]["code"] == "replaces"
    superseded = found(gateway, status="superseded")
    assert list(superseded) == ["urn:oid:2.25.501"]


def test_a_t06_addendum_appends_to_its_parent(sqlite_bridge):
    gateway, address = sqlite_bridge
    client = MllpClient(address)
    client.send(mdm(control_id="A1", unique_id="urn:oid:2.25.601").encode())
    ack = client.send(mdm(control_id="A2", unique_id="urn:oid:2.25.602", trigger="T06",
                          parent="urn:oid:2.25.601", content=b"%PDF-1.4 addendum").encode())
    client.close()
    assert msa(ack) == ["AA", "A2"]
    documents = found(gateway)
    assert sorted(documents) == ["urn:oid:2.25.601", "urn:oid:2.25.602"]
    assert documents["urn:oid:2.25.602"]["relatesTo"][0]["code"] == "appends"


def test_an_a40_merge_files_the_retired_ids_documents_under_the_survivor(bridge):
    gateway, address = bridge
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Muster", given="Annette")
    client = MllpClient(address)
    stored = client.send(mdm(control_id="M1", unique_id="urn:oid:2.25.701", local_id="L-2", given="Annette").encode())
    assert found(gateway) == {}
    merge = (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120110000+0100||ADT^A40^ADT_A40|M2|P|2.5\r"
             "EVN|A40|20261120110000+0100\r"
             "PID|1||L-1^^^Hopital&2.16.756.5.30.1.999.2.1&ISO^PI||Muster^Anna||19800517|F\r"
             "MRG|L-2^^^Hopital&2.16.756.5.30.1.999.2.1&ISO^PI\r").encode()
    merged = client.send(merge)
    client.close()

    assert (msa(stored), msa(merged)) == (["AA", "M1"], ["AA", "M2"])
    assert list(found(gateway)) == ["urn:oid:2.25.701"]
    assert counts(gateway)["patient_link"] == 1


def test_an_unknown_patient_is_an_error_the_sender_must_fix_and_stores_nothing(bridge):
    gateway, address = bridge
    before = counts(gateway)
    client = MllpClient(address)
    ack = client.send(mdm(control_id="U-1", unique_id="urn:oid:2.25.801", local_id="NOBODY").encode())
    client.close()
    fields = ack_fields(ack)
    assert msa(ack) == ["AE", "U-1"]
    assert fields["ERR"][2:5] == ["PID^1^3", "204^Unknown key identifier^HL70357", "E"]
    assert "NOBODY" not in ack.decode()  # the ACK names the id's system, not the patient's id
    assert {**counts(gateway), "mllp_answer": 0} == {**before, "mllp_answer": 0}
    refused = gateway.services.auditor.ledger.all_records()[-1]
    assert (refused["outcome"], refused["subtype"][0]["code"]) == ("4", "HL7v2 MDM^T02")


def test_a_patient_without_an_epr_is_held_for_identity_review_and_acknowledged(sqlite_bridge):
    gateway, address = sqlite_bridge
    body = {"resourceType": "Patient", "identifier": [{"system": LOCAL_SYSTEM, "value": "L-9"}],
            "name": [{"family": "Sans", "given": ["Dossier"]}], "birthDate": "1950-01-01", "gender": "male"}
    assert gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-9", content=orjson.dumps(body),
                              headers=gateway.as_hcp()).status_code == 201
    message = mdm(control_id="H-1", unique_id="urn:oid:2.25.811", local_id="L-9").encode()
    client = MllpClient(address)
    ack = client.send(message)
    client.close()

    assert msa(ack) == ["AA", "H-1"]
    assert ack_fields(ack)["MSA"][3].startswith("held: the patient has no EPR (no EPR-SPID)")
    held = DatabaseMessageInbox(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring).held()
    assert [(reason, raw) for _, reason, _, raw in held] == [("no-epr", message)]
    assert counts(gateway)["document_entry"] == 0
    with gateway.runtime.engine.connect() as connection:  # sealed: the content is not in the clear
        raw_row = connection.exec_driver_sql("SELECT sealed FROM mllp_held_message").scalar_one()
    assert b"Muster" not in raw_row and base64.b64encode(b"%PDF-1.4 test") not in raw_row


@pytest.mark.parametrize(("change", "code", "location"), [
    ({"unique_id": ""}, "101", "TXA^1^12"),
    ({"data": "%%% not base64 %%%"}, "102", "OBX^1^5^5"),
    ({"data": ""}, "101", "OBX^1^5^5"),
    ({"doc_type": "ZZ"}, "103", "TXA^1^2"),
    ({"confidentiality": "X"}, "103", "TXA^1^18"),
    ({"encoding": "Hex", "data": "zz"}, "102", "OBX^1^5^5"),
])
def test_what_the_sender_must_fix_is_answered_ae_naming_it_and_stores_nothing(sqlite_bridge, change, code, location):
    gateway, address = sqlite_bridge
    before = counts(gateway)
    client = MllpClient(address)
    ack = client.send(mdm(control_id="BAD-1", **{"unique_id": "urn:oid:2.25.1", **change}).encode())
    client.close()
    err = ack_fields(ack)["ERR"]
    assert msa(ack) == ["AE", "BAD-1"]
    assert (err[2], err[3].split("^")[0], err[4]) == (location, code, "E")
    assert {**counts(gateway), "mllp_answer": 0} == {**before, "mllp_answer": 0}


@pytest.mark.parametrize(("message", "code"), [
    (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||ADT^A01^ADT_A01|X1|P|2.5\rPID|1||L-1\r", "201"),
    (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||SIU^S12^SIU_S12|X1|P|2.5\r", "200"),
    ("PID|1||L-1\rMSH|^~\\&|KIS\r", "100"),
    (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||MDM^T02^MDM_T02|X1|P|2.5||||||KOI8-R\r", "203"),
    ("MSH|^~\\&|KIS|UNKNOWN-CLINIC|EPR|EPR|20261120||MDM^T02^MDM_T02|X1|P|2.5\r", "207"),
])
def test_what_cannot_be_processed_is_answered_ar_and_audited(sqlite_bridge, message, code):
    gateway, address = sqlite_bridge
    before = counts(gateway)
    records = len(gateway.services.auditor.ledger.all_records())
    client = MllpClient(address)
    ack = client.send(message.encode())
    client.close()
    assert ack_fields(ack)["MSA"][1] == "AR"
    assert ack_fields(ack)["ERR"][3].split("^")[0] == code
    assert {**counts(gateway), "mllp_answer": 0} == {**before, "mllp_answer": 0}
    refusal = gateway.services.auditor.ledger.all_records()[records:]
    assert [r["outcome"] for r in refusal] == ["4"]


def test_an_a08_registers_demographics_and_a_conflict_is_held_for_review(sqlite_bridge):
    gateway, address = sqlite_bridge
    spid = "761337610455555558"
    feed = ("MSH|^~\\&|KIS|{h}|EPR|EPR|20261120||ADT^A08^ADT_A01|{c}|P|2.5\rEVN|A08|20261120\r"
            "PID|1||L-7^^^H&2.16.756.5.30.1.999.2.1&ISO^PI~{spid}^^^EPR&2.16.756.5.30.1.127.3.10.3&ISO||"
            "Favre^Jeanne||{birth}|F\r")
    client = MllpClient(address)
    first = client.send(feed.format(h=HOSPITAL, c="P1", spid=spid, birth="19700101").encode())
    conflict = client.send(feed.format(h=HOSPITAL, c="P2", spid=spid, birth="19710202").encode())
    client.close()

    assert msa(first) == ["AA", "P1"]
    record = gateway.services.exchange.patients
    pid = record.pid_for_spid(spid)
    assert (record.get(pid).family, record.get(pid).birth_date) == ("Favre", "1970-01-01")
    assert msa(conflict) == ["AA", "P2"]
    assert "held for identity review (demographics-differ)" in ack_fields(conflict)["MSA"][3]
    assert ack_fields(conflict)["ERR"][4] == "W"
    assert [r.reason for r in record.reviews.open_reviews()] == ["demographics-differ"]
    assert record.get(pid).birth_date == "1970-01-01"


# -- TLS ----------------------------------------------------------------------------------------
@pytest.fixture
def tls_bridge(tmp_path):
    pki = ensure_dev_pki(tmp_path / "data" / "pki")
    bound = {"facility": "LABO-VALAIS", "user_id": "labo-feed", "principal_gln": "7601000000002",
             "certificate_subject": "labo-valais", "assigning_authority": LOCAL_SYSTEM}
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path, bound)) as gateway:
        gateway.register_patient()
        context = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert, False)
        with running_listener(gateway.runtime, ssl_context=context) as address:
            yield gateway, address, pki


def client_context(pki, cert=None, key=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        context.load_cert_chain(str(cert), str(key))
    return context


def test_tls_with_the_bound_client_certificate_is_accepted(tls_bridge, tmp_path):
    gateway, address, pki = tls_bridge
    cert, key = issue_client_certificate(pki, "labo-valais", tmp_path / "certs")
    client = MllpClient(address, context=client_context(pki, cert, key))
    ack = client.send(mdm(control_id="T1", unique_id="urn:oid:2.25.951", facility="LABO-VALAIS").encode())
    client.close()
    assert msa(ack) == ["AA", "T1"]
    assert list(found(gateway)) == ["urn:oid:2.25.951"]
    stored = [r for r in gateway.services.auditor.ledger.all_records() if r["subtype"][0]["code"] == "ATC_DOC_CREATE"]
    agents = {a.get("altId") for a in stored[-1]["agent"]}
    assert {"labo-feed", "7601000000002", "labo-valais"} <= agents  # the TCU, for whom, its certificate


def test_tls_without_a_client_certificate_cannot_speak_for_a_bound_sender(tls_bridge, tmp_path):
    gateway, address, pki = tls_bridge
    other_cert, other_key = issue_client_certificate(pki, "someone-else", tmp_path / "certs")
    without = MllpClient(address, context=client_context(pki))
    refused = without.send(mdm(control_id="T2", unique_id="urn:oid:2.25.952", facility="LABO-VALAIS").encode())
    # an unbound sender over the same TLS listener, no certificate: identified by MSH-4
    plain = without.send(mdm(control_id="T3", unique_id="urn:oid:2.25.953").encode())
    without.close()
    wrong = MllpClient(address, context=client_context(pki, other_cert, other_key))
    impostor = wrong.send(mdm(control_id="T4", unique_id="urn:oid:2.25.954", facility="LABO-VALAIS").encode())
    wrong.close()

    assert (msa(refused), msa(plain), msa(impostor)) == (["AR", "T2"], ["AA", "T3"], ["AR", "T4"])
    assert list(found(gateway)) == ["urn:oid:2.25.953"]


def test_plain_tcp_to_a_tls_listener_gets_no_answer(tls_bridge):
    _, address, _ = tls_bridge
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(START + mdm(control_id="P1", unique_id="urn:oid:2.25.960").encode() + END)
    try:
        answer = sock.recv(1024)
    except ConnectionResetError:
        answer = b""
    sock.close()
    assert b"MSA" not in answer


# -- many connections: the group commit ----------------------------------------------------------
def test_many_connections_at_once_each_get_their_own_acks_after_a_shared_commit(bridge):
    gateway, address = bridge
    clients = [MllpClient(address) for _ in range(8)]
    for round_ in range(3):  # every connection sends before any reads: the messages share batches
        for n, client in enumerate(clients):
            client.send_raw(START + mdm(control_id=f"K{n}-{round_}", unique_id=f"urn:oid:2.25.2{n}{round_}").encode()
                            + END)
        acks = [msa(client.ack()) for client in clients]
        assert acks == [["AA", f"K{n}-{round_}"] for n in range(8)]
    for client in clients:
        client.close()
    assert len(found(gateway, _count="100")) == 24


def test_the_same_msh_10_on_two_connections_at_once_is_stored_once_with_one_answer(bridge):
    gateway, address = bridge
    message = START + mdm(control_id="TWIN-1", unique_id="urn:oid:2.25.4711").encode() + END
    clients = [MllpClient(address) for _ in range(4)]
    for client in clients:
        client.send_raw(message)
    acks = [client.ack() for client in clients]
    for client in clients:
        client.close()
    assert len(set(acks)) == 1 and msa(acks[0]) == ["AA", "TWIN-1"]
    assert list(found(gateway)) == ["urn:oid:2.25.4711"]
    assert counts(gateway)["mllp_answer"] == 1


def test_when_the_ledger_cannot_be_written_nothing_is_stored_nor_acknowledged_and_a_retry_succeeds(
        bridge, monkeypatch):
    gateway, address = bridge
    before = counts(gateway)
    ledger = gateway.services.auditor.ledger
    working = ledger.append_many

    def broken(*_args, **_kwargs):
        raise OSError("audit disk full")

    monkeypatch.setattr(ledger, "append_many", broken)
    client = MllpClient(address)
    refused = client.send(mdm(control_id="LD-1", unique_id="urn:oid:2.25.1201").encode())
    assert ack_fields(refused)["MSA"][1:3] == ["AR", "LD-1"]
    assert counts(gateway) == before  # no document, and the answer is not kept
    monkeypatch.setattr(ledger, "append_many", working)
    retried = client.send(mdm(control_id="LD-1", unique_id="urn:oid:2.25.1201").encode())
    client.close()
    assert ack_fields(retried)["MSA"][1:3] == ["AA", "LD-1"]
    assert list(found(gateway)) == ["urn:oid:2.25.1201"]


def test_the_use_case_alone_stores_one_message_and_keeps_its_answer(sqlite_bridge):
    """Without the listener's group commit: `Hl7Channel.handle` stores the document itself (a batch of one)."""
    from gateway.wiring import hl7_exchange

    gateway, _ = sqlite_bridge
    bridge = hl7_exchange(gateway.runtime)
    message = mdm(control_id="UC-1", unique_id="urn:oid:2.25.1301").encode()
    first = bridge.handle(message)
    assert msa(first) == ["AA", "UC-1"]
    assert bridge.handle(message) == first
    assert list(found(gateway)) == ["urn:oid:2.25.1301"]
