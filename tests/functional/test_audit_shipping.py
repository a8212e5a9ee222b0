"""Shipping the ledger to a SIEM: RFC 5424 over real TLS on loopback (RFC 5425 framing), nothing lost
while the SIEM is down, mutual TLS, and the gateway shipping on its own when configured.
Each store test runs on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.cara.store.database import make_engine, migrate
from audit.events import AuditRecord, DocumentRef
from audit.ledger import DatabaseAuditLedger
from audit.shipping import SyslogShipper, client_ssl_context, frame
from audit.signing import key_id_of
from conftest import SPID, fresh_postgres_url, running_gateway, sqlite_url
from consent.principal import Principal
from gateway.pki import ensure_dev_pki

HCP = Principal(role="HCP", user_id="7601000234438", user_id_qualifier="urn:gs1:gln", name="Dr. Test",
                token_id="jti-1", client_id="kis")


class SyslogReceiver:
    """A TLS syslog receiver (octet counting) on 127.0.0.1: what a SIEM would get."""

    def __init__(self, pki, port: int = 0, require_client_cert: bool = False):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(pki.ca_cert)
        self.messages: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._context = context
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                connection = self._context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection) -> None:
        buffer = b""
        connection.settimeout(0.2)
        while not self._stop.is_set():
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                if len(rest) < int(length):
                    break
                self.messages.append(rest[:int(length)].decode("utf-8"))
                buffer = rest[int(length):]
        connection.close()

    def wait_for(self, count: int, seconds: float = 10.0) -> list[str]:
        deadline = time.monotonic() + seconds
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite3'}" if request.param == "sqlite"
                         else fresh_postgres_url())
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pki(tmp_path):
    return ensure_dev_pki(tmp_path / "pki")


def append(engine, count: int, start: int = 1) -> list[str]:
    """`count` read events in the ledger; their AuditEvent ids, in order."""
    key = Ed25519PrivateKey.generate()
    ledger = DatabaseAuditLedger(engine=engine, signing_key=key, key_id=key_id_of(key.public_key()))
    ids = []
    for number in range(start, start + count):
        record = AuditRecord(transaction="ITI-68", principal=HCP, source_site="2.16.756.5.30.1.999.1.1",
                             atc_code="ATC_DOC_READ", patient_spid=SPID,
                             documents=(DocumentRef(unique_id=f"urn:oid:1.2.3.{number}"),))
        ledger.append_now(record, patient_key="k")
        ids.append(record.event_id)
    return ids


def shipper_to(engine, pki, port: int, **client) -> SyslogShipper:
    return SyslogShipper(engine=engine, host="127.0.0.1", port=port, batch=10, hostname="gw-test",
                         ssl_context=client_ssl_context(str(pki.ca_cert), **client), timeout_seconds=2)


def ship_all(shipper: SyslogShipper) -> int:
    total = 0
    while shipped := shipper.ship_once():
        total += shipped
    return total


def records(messages: list[str]) -> list[str]:
    """The AuditEvents among the messages (each batch is followed by the ledger's signed head)."""
    return [m for m in messages if " epr-gateway - ATNA " in m]


def heads(messages: list[str]) -> list[dict]:
    return [json.loads(m.split(" SIGNED-HEAD - ", 1)[1]) for m in messages if " SIGNED-HEAD - " in m]


def event_ids(messages: list[str]) -> list[str]:
    return [json.loads(m[m.index("] ") + 2:])["id"] for m in records(messages)]


def test_the_ledger_arrives_in_order_as_rfc5424_over_tls(engine, pki):
    ids = append(engine, 25)
    receiver = SyslogReceiver(pki)
    shipper = shipper_to(engine, pki, receiver.port)
    try:
        assert ship_all(shipper) == 25  # three batches of at most 10, each followed by the signed head
        messages = receiver.wait_for(28)
    finally:
        shipper.stop()
        receiver.close()

    assert event_ids(messages) == ids
    assert [h["seq"] for h in heads(messages)] == [25, 25, 25]
    assert [m.startswith("<85>1 ") and " SIGNED-HEAD - " in m for m in messages].count(True) == 3
    assert messages[0].startswith("<85>1 ")  # facility authpriv (10), severity notice: a success
    assert " gw-test epr-gateway - ATNA [meta sequenceId=\"1\"] {" in messages[0]
    assert shipper.position() == 25


def test_a_siem_outage_loses_nothing_and_repeats_nothing(engine, pki):
    first = append(engine, 5)
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: the SIEM is down
    shipper = shipper_to(engine, pki, port)
    with pytest.raises(OSError):
        shipper.ship_once()
    assert shipper.position() == 0

    second = append(engine, 4, start=6)  # the gateway goes on recording meanwhile
    receiver = SyslogReceiver(pki, port=port)
    try:
        assert ship_all(shipper) == 9
        third = append(engine, 3, start=10)
        assert ship_all(shipper) == 3
        messages = receiver.wait_for(15)  # 12 records, 3 heads
    finally:
        shipper.stop()
        receiver.close()
    assert event_ids(messages) == first + second + third


def test_mutual_tls_node_authentication(engine, pki):
    append(engine, 2)
    receiver = SyslogReceiver(pki, require_client_cert=True)
    try:
        anonymous = shipper_to(engine, pki, receiver.port)
        with pytest.raises((ssl.SSLError, OSError)):  # with TLS 1.3 the refusal follows the handshake
            anonymous.ship_once()
        anonymous.stop()
        assert anonymous.position() == 0

        authenticated = shipper_to(engine, pki, receiver.port, client_cert=str(pki.client_cert),
                                   client_key=str(pki.client_key))
        assert ship_all(authenticated) == 2
        authenticated.stop()
        assert len(records(receiver.wait_for(3))) == 2
    finally:
        receiver.close()


def test_the_gateway_ships_its_exchanges_when_a_siem_is_configured(tmp_path):
    pki = ensure_dev_pki(tmp_path / "siem-pki")
    receiver = SyslogReceiver(pki)
    try:
        with running_gateway(tmp_path, sqlite_url(tmp_path), siem_address=f"127.0.0.1:{receiver.port}",
                             siem_ca=pki.ca_cert) as gateway:
            gateway.register_patient()  # ITI-104, PPQ policies, …: each recorded, then shipped
            messages = receiver.wait_for(3)
            with gateway.runtime.engine.connect() as connection:
                recorded = connection.exec_driver_sql("SELECT COUNT(*) FROM audit_record").scalar()
    finally:
        receiver.close()
    assert len(records(messages)) >= 2
    assert {json.loads(m[m.index("] ") + 2:])["resourceType"] for m in records(messages)} == {"AuditEvent"}
    assert heads(messages)
    assert recorded >= 3


def test_framing_is_octet_counting_in_bytes():
    assert frame("é") == b"2 \xc3\xa9"


@pytest.mark.parametrize("address", ["siem.example", "siem.example:", ":6514", "siem.example:tls"])
def test_a_malformed_siem_address_stops_the_start(tmp_path, address):
    from gateway.settings import Settings
    from gateway.wiring import siem_shipper

    with pytest.raises(ValueError, match="EPR_SIEM_ADDRESS must be host:port"):
        siem_shipper(Settings(data_dir=tmp_path, siem_address=address), engine=None)
