"""The MLLP door's limits over real sockets (issue 22 items 9 and 13): a frame must end in time, an idle
connection is let go, a frame is bounded alone and all frames together, repetitions are bounded and read
in linear time; and every refusal at the door is accounted like the FHIR face's refused authentications
(the first of a window recorded at once, the rest counted into one summary)."""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time

import pytest

from adapters.cara.model import Identifier
from audit.events import ATC_SYSTEM, RESTFUL_INTERACTION
from conftest import LOCAL_SYSTEM, running_gateway, sqlite_url
from functional.mllp_helpers import HOSPITAL, TIMEOUT, MllpClient, ack_fields, mdm, senders_file, started_listener
from gateway.mllp.framing import END, START
from gateway.pki import ensure_dev_pki, server_ssl_context

HEADER = f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120100000||MDM^T02^MDM_T02|{{control_id}}|P|2.5\r"


def limits(**settings):
    """The `door` fixture with these settings (small limits, for speed)."""
    return pytest.mark.parametrize("door", [settings], indirect=True, ids=["limits"])


@pytest.fixture
def door(tmp_path, request):
    """(gateway, listener, address) with the settings `limits` gives, else the defaults."""
    limits = getattr(request, "param", {})
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path), **limits) as gateway:
        gateway.register_patient()
        with started_listener(gateway.runtime) as (listener, address):
            yield gateway, listener, address


def door_records(gateway, since: int) -> list[tuple[str, str, str, list[str]]]:
    """(transaction, outcome, description, client addresses) of the ledger's records after `since`."""
    return [(next(c["code"] for c in r["subtype"] if c["system"] not in (ATC_SYSTEM, RESTFUL_INTERACTION)),
             r["outcome"], r.get("outcomeDesc", ""),
             [a["network"]["address"] for a in r["agent"] if "network" in a])
            for r in gateway.services.auditor.ledger.all_records()[since:]]


def ledger_size(gateway) -> int:
    return len(gateway.services.auditor.ledger.all_records())


def eventually(read, until, seconds: float = 10):
    """`read()` once `until(value)` holds (or the last value after `seconds`)."""
    deadline = time.monotonic() + seconds
    value = read()
    while not until(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def closed_by_server(sock: socket.socket, *, within: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed `sock` (None if it did not within `within`), sending `trickle` a
    byte every 0.2 s meanwhile (a slow-loris peer)."""
    started = time.monotonic()
    sent = 0
    with selectors.DefaultSelector() as selector:  # not select(): descriptors past 1024 in a long run
        selector.register(sock, selectors.EVENT_READ)
        while time.monotonic() - started < within:
            try:
                if selector.select(timeout=0.2) and sock.recv(65536) == b"":
                    return time.monotonic() - started
                if sent < len(trickle):
                    sock.send(trickle[sent:sent + 1])
                    sent += 1
            except ConnectionError:
                return time.monotonic() - started
    return None


def big_frame(control_id: str, size: int) -> bytes:
    return START + HEADER.format(control_id=control_id).encode() + b"NTE|1||" + b"x" * size + b"\r" + END


# -- time ---------------------------------------------------------------------------------------------
@limits(mllp_read_timeout_seconds=1.0)
def test_a_slow_loris_frame_is_cut_at_the_read_timeout_and_accounted(door):
    gateway, _, address = door
    before = ledger_size(gateway)
    sock = socket.create_connection(address, timeout=TIMEOUT)
    closed_after = closed_by_server(sock, within=8, trickle=START + HEADER.format(control_id="SLOW").encode() * 10)
    sock.close()

    assert closed_after is not None and 0.8 <= closed_after < 5, closed_after
    records = eventually(lambda: door_records(gateway, before), bool)
    assert records == [("HL7v2", "4", "MLLP frame not complete within 1 s", ["127.0.0.1"])]


@limits(mllp_idle_timeout_seconds=1.0, mllp_read_timeout_seconds=30.0)
def test_an_idle_connection_is_closed_at_the_idle_timeout_and_a_new_one_is_served(door):
    gateway, _, address = door
    before = ledger_size(gateway)
    client = MllpClient(address)
    assert ack_fields(client.send(mdm(control_id="I-1", unique_id="urn:oid:2.25.7001").encode()))["MSA"][1] == "AA"
    closed_after = closed_by_server(client.sock, within=8)
    client.close()
    assert closed_after is not None and 0.8 <= closed_after < 5, closed_after

    again = MllpClient(address)
    assert ack_fields(again.send(mdm(control_id="I-2", unique_id="urn:oid:2.25.7002").encode()))["MSA"][1] == "AA"
    again.close()
    # Letting an idle connection go refuses nothing: the ledger has the two documents' records only.
    assert [r[0] for r in door_records(gateway, before)] == ["ITI-65", "ITI-65"]


# -- size ----------------------------------------------------------------------------------------------
def test_a_100_mb_frame_is_answered_ae_read_unheld_accounted_and_the_connection_goes_on(door):
    gateway, listener, address = door
    before = ledger_size(gateway)
    held = []
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            held.append(listener.budget.used)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    client = MllpClient(address)
    try:
        client.send_raw(big_frame("BIG-1", 100 * 1024 * 1024))
        refused = client.ack()
    finally:
        sampling.set()
        sampler.join()
    after = client.send(mdm(control_id="N-1", unique_id="urn:oid:2.25.7003").encode())
    client.close()

    fields = ack_fields(refused)
    assert fields["MSA"][1:3] == ["AE", "BIG-1"]
    assert fields["ERR"][8] == "MLLP frame over 33554432 bytes: the gateway does not take it"
    assert ack_fields(after)["MSA"][1:3] == ["AA", "N-1"]
    assert max(held) <= 32 * 1024 * 1024 + 1024 * 1024  # never the whole frame: at most the limit and a read
    records = door_records(gateway, before)
    assert records[0] == ("HL7v2", "4", "MLLP frame over 33554432 bytes", ["127.0.0.1"])
    assert [r[0] for r in records[1:]] == ["ITI-65"]


@limits(mllp_max_frame_bytes=300 * 1024, mllp_max_buffered_bytes=1024 * 1024,
                    auth_failure_limit=1000)
def test_frames_held_across_connections_stay_under_the_total_and_the_one_past_it_is_answered_ar(door):
    """The review's case scaled down: ten connections each sending an unfinished frame held 300 MB."""
    gateway, listener, address = door
    before = ledger_size(gateway)
    clients = [MllpClient(address) for _ in range(10)]
    for n, client in enumerate(clients):  # ten unfinished frames of 250 KB: 2.5 MB offered, 1 MB taken
        client.send_raw(big_frame(f"T-{n}", 250 * 1024)[:-len(END)])
    held = eventually(lambda: listener.budget.used, lambda used: used >= 1000 * 1024)
    assert 1000 * 1024 <= held <= 1024 * 1024
    for client in clients:
        client.send_raw(END)
    answers = [ack_fields(client.ack())["MSA"][1:4] for client in clients]
    for client in clients:
        client.close()

    assert [a[0] for a in answers].count("AR") == 6  # four frames fit in 1 MB
    busy = "MLLP frames held over 1048576 bytes across connections"
    assert {a[2] for a in answers if a[0] == "AR"} == {f"{busy}: send it again later"}
    assert sorted(a[1] for a in answers) == [f"T-{n}" for n in range(10)]
    assert eventually(lambda: listener.budget.used, lambda used: used == 0) == 0
    assert [(r[0], r[2]) for r in door_records(gateway, before) if r[0] == "HL7v2"] == [("HL7v2", busy)]


def test_frames_sent_without_waiting_for_their_acks_are_answered_in_order(door):
    gateway, listener, address = door
    client = MllpClient(address)
    client.send_raw(b"".join(START + mdm(control_id=f"P-{n}", unique_id=f"urn:oid:2.25.780{n}").encode() + END
                             for n in range(5)))
    answers = [ack_fields(client.ack())["MSA"][1:3] for _ in range(5)]
    client.close()
    assert answers == [["AA", f"P-{n}"] for n in range(5)]
    assert eventually(lambda: listener.budget.used, lambda used: used == 0) == 0


# -- connections ---------------------------------------------------------------------------------------
@limits(mllp_max_connections=3, auth_failure_limit=1000, auth_failure_interval_seconds=0.5)
def test_connections_over_the_limit_are_closed_at_once_and_counted_and_those_within_are_served(door):
    gateway, _, address = door
    before = ledger_size(gateway)
    kept = [MllpClient(address) for _ in range(3)]
    time.sleep(0.2)
    over = [socket.create_connection(address, timeout=TIMEOUT) for _ in range(5)]
    assert [closed_by_server(sock, within=5) is not None for sock in over] == [True] * 5
    for sock in over:
        sock.close()
    answers = [ack_fields(c.send(mdm(control_id=f"K-{n}", unique_id=f"urn:oid:2.25.71{n}").encode()))["MSA"][1]
               for n, c in enumerate(kept)]
    for client in kept:
        client.close()

    assert answers == ["AA"] * 3
    refusals = eventually(lambda: [r for r in door_records(gateway, before) if r[0] == "HL7v2"], lambda r: len(r) >= 2)
    assert [r[1:3] for r in refusals[:1]] == [("4", "MLLP connection over the limit of 3")]
    assert refusals[1][2].startswith("4 further refusals at the MLLP door from 127.0.0.1 between ")
    assert refusals[1][2].endswith(": MLLP connection over the limit of 3 ×4")


@limits(auth_failure_limit=3, auth_failure_interval_seconds=30)
def test_an_address_over_its_refusal_limit_has_its_connections_closed_unread(door):
    gateway, _, address = door
    for _ in range(3):  # three refusals: bytes outside any frame, then the peer leaves
        sock = socket.create_connection(address, timeout=TIMEOUT)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        closed_by_server(sock, within=0.5)
        sock.close()
    eventually(lambda: gateway.services.auditor.ledger.all_records(), lambda r: "outside an MLLP frame" in str(r))
    turned_away = socket.create_connection(address, timeout=TIMEOUT)
    turned_away.sendall(START + mdm(control_id="X-1", unique_id="urn:oid:2.25.7201").encode() + END)
    assert closed_by_server(turned_away, within=5) is not None
    turned_away.close()
    assert "urn:oid:2.25.7201" not in str(gateway.find().json())


# -- refusals of frames and of peers, accounted -----------------------------------------------------------
@limits(auth_failure_interval_seconds=0.5, auth_failure_limit=1000)
def test_stray_bytes_abandoned_and_cut_frames_are_accounted_one_record_and_a_summary(door):
    gateway, _, address = door
    before = ledger_size(gateway)
    client = MllpClient(address)
    client.send_raw(b"noise before the first frame")
    first = client.send(mdm(control_id="G1", unique_id="urn:oid:2.25.7301").encode())
    client.send_raw(START + b"MSH|^~\\&|half a message")  # abandoned: restarted by the next start block
    second = client.send(mdm(control_id="G2", unique_id="urn:oid:2.25.7302").encode())
    client.send_raw(START + b"MSH|^~\\&|cut")
    client.close()  # mid-frame
    assert [ack_fields(a)["MSA"][1] for a in (first, second)] == ["AA", "AA"]

    refusals = eventually(lambda: [r for r in door_records(gateway, before) if r[0] == "HL7v2"], lambda r: len(r) >= 2)
    assert refusals[0][1:] == ("4", "bytes outside an MLLP frame (before its start block)", ["127.0.0.1"])
    assert refusals[1][2].startswith("2 further refusals at the MLLP door from 127.0.0.1")
    assert "MLLP frame abandoned: a new start block before its end block ×1" in refusals[1][2]
    assert "MLLP frame cut short: the connection closed before its end block ×1" in refusals[1][2]


@limits(auth_failure_interval_seconds=0.5, auth_failure_limit=1000)
def test_a_flood_from_an_unknown_sender_costs_one_record_and_a_summary_not_one_each(door):
    gateway, _, address = door
    before = ledger_size(gateway)
    client = MllpClient(address)
    answers = [client.send(mdm(control_id=f"U-{n}", unique_id=f"urn:oid:2.25.74{n:02}", facility="NOBODY").encode())
               for n in range(30)]
    client.close()

    assert {tuple(ack_fields(a)["MSA"][1:2]) for a in answers} == {("AR",)}
    refusals = eventually(lambda: door_records(gateway, before), lambda r: len(r) >= 2)
    assert len(refusals) == 2
    assert refusals[0][:2] == ("HL7v2 MDM^T02", "4") and refusals[0][2].startswith("unknown sender")
    assert refusals[1][0] == "HL7v2"
    assert refusals[1][2].startswith("29 further refusals at the MLLP door from 127.0.0.1")
    assert refusals[1][2].endswith(": unknown sender ×29")


@pytest.fixture
def tls_door(tmp_path):
    """(gateway, address, pki) of a listener over TLS that requires a client certificate (read timeout 1 s)."""
    pki = ensure_dev_pki(tmp_path / "data" / "pki")
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path),
                         mllp_read_timeout_seconds=1.0) as gateway:
        required = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_cert, True)
        with started_listener(gateway.runtime, ssl_context=required) as (_, address):
            yield gateway, address, pki


def test_a_failed_tls_handshake_is_accounted(tls_door):
    gateway, address, _ = tls_door
    before = ledger_size(gateway)
    plain = socket.create_connection(address, timeout=TIMEOUT)  # MLLP without TLS
    plain.sendall(START + mdm(control_id="P1", unique_id="urn:oid:2.25.7501").encode() + END)
    assert closed_by_server(plain, within=5) is not None
    plain.close()

    [(transaction, outcome, description, addresses)] = eventually(lambda: door_records(gateway, before), bool)
    assert (transaction, outcome, addresses) == ("HL7v2", "4", ["127.0.0.1"])
    assert description.startswith("TLS handshake refused: ")


def test_a_tls_handshake_that_does_not_come_is_cut_at_the_read_timeout_and_accounted(tls_door):
    gateway, address, _ = tls_door
    before = ledger_size(gateway)
    silent = socket.create_connection(address, timeout=TIMEOUT)  # connects, never says hello
    closed_after = closed_by_server(silent, within=8)
    silent.close()

    assert closed_after is not None and 0.8 <= closed_after < 5, closed_after
    records = eventually(lambda: door_records(gateway, before), bool)
    assert [(r[0], r[2]) for r in records] == [("HL7v2", "TLS handshake not complete within 1 s")]


def test_a_peer_without_the_required_client_certificate_is_refused_and_accounted(tls_door):
    gateway, address, pki = tls_door
    before = ledger_size(gateway)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client = MllpClient(address, context=context)  # TLS 1.3: refused at the first read
        client.send(mdm(control_id="C1", unique_id="urn:oid:2.25.7502").encode())

    records = eventually(lambda: door_records(gateway, before), bool)
    assert [(r[0], r[2]) for r in records] == [("HL7v2", "TLS handshake refused: PEER_DID_NOT_RETURN_A_CERTIFICATE")]


# -- repetitions -----------------------------------------------------------------------------------------
def test_an_a08_with_10000_pid_3_repetitions_is_an_ae_naming_pid_3_in_bounded_cpu(door):
    gateway, _, address = door
    before = gateway.services.exchange.patients.get(gateway.services.exchange.patients.pid_for_identifier(
        Identifier(LOCAL_SYSTEM, "L-1")))
    repetitions = "~".join(f"ID{n}^^^NS&2.16.756.5.30.1.{n}&ISO" for n in range(10_000))
    message = (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||ADT^A08^ADT_A01|R-1|P|2.5\rEVN|A08|20261120\r"
               f"PID|1||L-1~{repetitions}||Muster^Anna||19800517|F\r").encode()
    client = MllpClient(address)
    cpu = time.process_time()  # the listener runs in this process: its CPU is counted here
    ack = client.send(message)
    cpu = time.process_time() - cpu
    client.close()

    fields = ack_fields(ack)
    assert fields["MSA"][1:3] == ["AE", "R-1"]
    assert (fields["ERR"][2], fields["ERR"][3].split("^")[0]) == ("PID^1^3", "102")
    assert fields["ERR"][8] == "PID-3 has 10001 repetitions: at most 32 identifiers are taken"
    assert cpu < 2.0, cpu  # was 33 s: each repetition read split the whole field again
    patients = gateway.services.exchange.patients
    assert patients.get(patients.pid_for_identifier(Identifier(LOCAL_SYSTEM, "L-1"))) == before
