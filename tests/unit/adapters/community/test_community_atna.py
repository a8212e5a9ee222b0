"""ITI-20 to the community: the audit messages compared in structure with the recorded samples
(`samples/iti-41-log.xml`, `iti-45-log.xml`, `files/Atna.md`), and the sender over real TLS on
loopback (RFC 5425 framing, RFC 5424 header, no BOM, the gateway's client certificate)."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import threading

import pytest
from lxml import etree

from adapters.community import atna
from adapters.community.xua import IssuedAssertion
from unit.adapters.community.community_fixtures import MPI_OID, MPI_PID, SPID, TCU_OID, community, make_pki, xds_fixture

WHEN = dt.datetime(2024, 5, 2, 12, 31, 5, 250000, tzinfo=dt.UTC)
SITE = atna.AuditSite("2.16.756.5.30.1.145.20.1", "gateway.hopital-vs.ch")
ENDPOINT = "https://ws.epr.cara.int/Repository/services/RepositoryService"
ASSERTION = IssuedAssertion(b"<a/>", {}, WHEN, "https://sts.emedo.ch", "7601000000002", "anna", "Anna Verantwortlich",
                            ("HCP", "Healthcare professional"), ("AUTO", "Automatic Upload"), f"urn:oid:{TCU_OID}")


def coded(element) -> tuple:
    return element.tag, element.get("csd-code"), element.get("codeSystemName")


def structure(message) -> list:
    """What the DICOM audit message schema orders (AuditMessage children) and the coded values."""
    return [(child.tag, tuple(coded(c) for c in child if isinstance(c.tag, str))) for child in message]


def check_dicom_shape(message) -> None:
    """DICOM PS3.15 A.5.1: one EventIdentification first, ActiveParticipants, one AuditSourceIdentification,
    then ParticipantObjectIdentifications; the attributes each requires."""
    tags = [c.tag for c in message]
    assert tags[0] == "EventIdentification" and tags.count("AuditSourceIdentification") == 1
    source_at = tags.index("AuditSourceIdentification")
    assert set(tags[1:source_at]) == {"ActiveParticipant"} and set(tags[source_at + 1:]) <= {"ParticipantObjectIdentification"}
    event = message[0]
    assert {"EventActionCode", "EventDateTime", "EventOutcomeIndicator"} <= set(event.attrib)
    dt.datetime.fromisoformat(event.get("EventDateTime"))  # xsd:dateTime with a zone
    for element in message.iter("EventID", "EventTypeCode", "RoleIDCode", "ParticipantObjectIDTypeCode", "PurposeOfUse"):
        assert {"csd-code", "codeSystemName", "originalText"} <= set(element.attrib), element.tag
    for participant in message.iter("ActiveParticipant"):
        assert participant.get("UserID") and participant.get("UserIsRequestor") in ("true", "false")
    for item in message.iter("ParticipantObjectIdentification"):
        assert {"ParticipantObjectID", "ParticipantObjectTypeCode", "ParticipantObjectTypeCodeRole"} <= set(item.attrib)
        assert item[0].tag == "ParticipantObjectIDTypeCode"


def sample(name: str):
    return etree.parse(str(xds_fixture(f"epr-by-example/samples/{name}"))).getroot()


def test_iti41_as_the_sample_and_atna_md_describe_it():
    message = atna.provide_and_register(site=SITE, endpoint=ENDPOINT, when=WHEN, outcome=atna.SUCCESS,
                                        mpi_cx=f"{MPI_PID}^^^&{MPI_OID}&ISO", submission_set_unique_id="2.25.77",
                                        assertion=ASSERTION)
    root = etree.fromstring(message.xml)
    check_dicom_shape(root)
    recorded = sample("iti-41-log.xml")
    event = root.find("EventIdentification")
    assert (event.get("EventActionCode"), event.get("EventOutcomeIndicator")) == ("R", "0")
    assert [coded(c) for c in event] == [coded(c) for c in recorded.find("EventIdentification")] + [
        ("PurposeOfUse", "AUTO", "2.16.756.5.30.1.127.3.10.5")]
    roles = [coded(p.find("RoleIDCode")) if p.find("RoleIDCode") is not None else None
             for p in root.iter("ActiveParticipant")]
    assert roles == [("RoleIDCode", "110153", "DCM"), ("RoleIDCode", "110152", "DCM"), None,
                     ("RoleIDCode", "HCP", "2.16.756.5.30.1.127.3.10.6"), ("RoleIDCode", "TCU", "2.16.756.5.30.1.127.3.10.6")]
    source, destination, alias, subject, delegate = root.iter("ActiveParticipant")
    assert (source.get("UserIsRequestor"), source.get("NetworkAccessPointID"), source.get("NetworkAccessPointTypeCode")) \
        == ("true", "gateway.hopital-vs.ch", "1")
    assert (destination.get("UserID"), destination.get("NetworkAccessPointID")) == (ENDPOINT, "ws.epr.cara.int")
    assert (alias.get("UserID"), alias.get("UserName")) == ("7601000000002", "anna<7601000000002@https://sts.emedo.ch>")
    assert (subject.get("UserName"), delegate.get("UserID")) == ("Anna Verantwortlich", f"urn:oid:{TCU_OID}")
    assert root.find("AuditSourceIdentification").get("AuditEnterpriseSiteID") == SITE.site_oid
    objects = [(o.get("ParticipantObjectID"), o.get("ParticipantObjectTypeCode"), o.get("ParticipantObjectTypeCodeRole"),
                coded(o[0])) for o in root.iter("ParticipantObjectIdentification")]
    expected = [(o.get("ParticipantObjectTypeCode"), o.get("ParticipantObjectTypeCodeRole"), coded(o[0]))
                for o in recorded.iter("ParticipantObjectIdentification")]
    assert [o[1:] for o in objects] == expected
    assert [o[0] for o in objects] == [f"{MPI_PID}^^^&{MPI_OID}&ISO", "2.25.77"]


def test_iti45_as_the_sample_describes_it():
    query = b'<queryByParameter xmlns="urn:hl7-org:v3"><queryId root="1.2" extension="q"/></queryByParameter>'
    message = atna.pix_query(site=SITE, endpoint="https://10.2.1.7/PIX", when=WHEN, outcome=atna.SUCCESS, spid=SPID,
                             query=query, message_id="1.2^m1")
    root = etree.fromstring(message.xml)
    check_dicom_shape(root)
    recorded = sample("iti-45-log.xml")
    assert [coded(c) for c in root.find("EventIdentification")] == [coded(c) for c in recorded.find("EventIdentification")]
    assert root.find("EventIdentification").get("EventActionCode") == "E"
    roles = [p.find("RoleIDCode").get("csd-code") for p in root.iter("ActiveParticipant")]
    assert roles == ["110153", "110152"]
    assert list(root.iter("ActiveParticipant"))[1].get("NetworkAccessPointTypeCode") == "2"  # an IP address
    patient, queried = root.iter("ParticipantObjectIdentification")
    recorded_patient, recorded_query = recorded.iter("ParticipantObjectIdentification")
    for ours, theirs in ((patient, recorded_patient), (queried, recorded_query)):
        assert [(o.get("ParticipantObjectTypeCode"), o.get("ParticipantObjectTypeCodeRole"), coded(o[0]))
                for o in (ours,)] == [(theirs.get("ParticipantObjectTypeCode"),
                                      theirs.get("ParticipantObjectTypeCodeRole"), coded(theirs[0]))]
    assert patient.get("ParticipantObjectID") == f"{SPID}^^^&2.16.756.5.30.1.127.3.10.3&ISO"
    assert base64.b64decode(queried.findtext("ParticipantObjectQuery")) == query
    assert [d.get("type") for d in queried.iter("ParticipantObjectDetail")] == ["MSH-10"]
    assert base64.b64decode(queried.find("ParticipantObjectDetail").get("value")) == b"1.2^m1"


def test_iti40_as_a_user_authentication():
    message = atna.get_x_user_assertion(site=SITE, endpoint="https://sts/STS", when=WHEN, outcome=atna.SERIOUS_FAILURE,
                                        spid=SPID, technical_user_oid=TCU_OID)
    root = etree.fromstring(message.xml)
    check_dicom_shape(root)
    assert [coded(c) for c in root.find("EventIdentification")] == [
        ("EventID", "110114", "DCM"), ("EventTypeCode", "ITI-40", "IHE Transactions"), ("EventTypeCode", "110122", "DCM"),
        ("PurposeOfUse", "AUTO", "2.16.756.5.30.1.127.3.10.5")]
    assert root.find("EventIdentification").get("EventOutcomeIndicator") == "8" and message.failed
    assert [p.find("RoleIDCode").get("csd-code") for p in root.iter("ActiveParticipant")] == ["110153", "110152", "TCU"]


def test_the_syslog_message_has_no_bom_and_a_5424_header():
    message = atna.pix_query(site=SITE, endpoint="https://pix/PIX", when=WHEN, outcome=atna.MINOR_FAILURE, spid=SPID,
                             query=b"<q/>", message_id="m")
    line = message.syslog("gateway host")
    header, _, xml = line.partition(b" - ")
    assert header.split(b" ")[:3] == [b"<84>1", b"2024-05-02T12:31:05.250000Z", b"gatewayhost"]
    assert header.split(b" ")[3::2] == [b"epr-gateway", b"IHE+RFC-3881"]
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<AuditMessage>") and b"\xef\xbb\xbf" not in line


# -- the sender over TLS on loopback ------------------------------------------------------------------
class Listener:
    """A syslog-over-TLS receiver requiring a client certificate from `client_ca`."""

    def __init__(self, pki, client_ca):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(client_ca)
        self.frames: list[bytes] = []
        self.peers: list[str] = []
        self.connections: list[ssl.SSLSocket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return
            try:
                connection = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            self.connections.append(connection)
            self.peers.append(dict(x[0] for x in connection.getpeercert()["subject"])["commonName"])
            threading.Thread(target=self.read, args=(connection,), daemon=True).start()

    def read(self, connection):
        buffer = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                if len(rest) < int(length):
                    break
                self.frames.append(rest[:int(length)])
                buffer = rest[int(length):]

    def wait_for(self, count):
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while len(self.frames) < count and dt.datetime.now() < deadline:
            threading.Event().wait(0.01)
        return self.frames

    def close(self):
        self.server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def listener(pki):
    receiving = Listener(pki, pki.ca_cert)
    yield receiving
    receiving.close()


def messages(count: int) -> list[atna.AuditMessage]:
    return [atna.pix_query(site=SITE, endpoint="https://pix/PIX", when=WHEN, outcome=atna.SUCCESS, spid=SPID,
                           query=f"<q n='{n}'/>".encode(), message_id=f"m{n}") for n in range(count)]


def test_messages_arrive_framed_with_the_gateways_client_certificate(pki, listener):
    sender = atna.AtnaSender(community(pki, atna=f"localhost:{listener.port}"), hostname="gw")
    try:
        sent = messages(3)
        sender.send(sent[:2])
        sender.send(sent[2:])
        frames = listener.wait_for(3)
    finally:
        sender.close()
    assert frames == [m.syslog("gw") for m in sent]
    assert listener.peers == ["epr-gateway source"]  # one connection, the source's certificate


def test_a_repository_that_closed_the_idle_connection_is_reached_again(pki, listener):
    sender = atna.AtnaSender(community(pki, atna=f"localhost:{listener.port}"), hostname="gw")
    try:
        sender.send(messages(1))
        listener.wait_for(1)
        listener.connections[0].shutdown(socket.SHUT_RDWR)  # its reader thread still holds the socket open
        threading.Event().wait(0.1)
        sender.send(messages(2)[1:])
        assert len(listener.wait_for(2)) == 2 and len(listener.peers) == 2
    finally:
        sender.close()


def test_unreachable_or_refusing_repositories_are_reported_not_hidden(pki, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    sender = atna.AtnaSender(community(pki, atna=f"localhost:{port}"))
    with pytest.raises(atna.AtnaUnavailable, match=f"localhost:{port}: ConnectionRefusedError"):
        sender.send(messages(1))
    other = make_pki(tmp_path / "other")  # a repository that trusts another CA refuses our certificate
    refusing = Listener(pki, other.ca_cert)
    try:
        sender = atna.AtnaSender(community(pki, atna=f"localhost:{refusing.port}"))
        with pytest.raises(atna.AtnaUnavailable):
            sender.send(messages(1))
        assert refusing.frames == []
    finally:
        refusing.close()
