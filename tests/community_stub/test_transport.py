"""The stub's transport: client certificates, failure scenarios, the ATNA listener, the configuration dict."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest

from community_stub.audit_message import check_audit_message
from community_stub.clients import client, pix_request, recorded_iti41, send_syslog, soap_post, syslog_frame
from community_stub.fixtures import sample
from gateway.pki import ensure_dev_pki

from .conftest import NORMAL, issue

# -- mutual TLS -----------------------------------------------------------------------------------


def handshake_failures(server) -> list[str]:
    """The server's handshake failures, once its thread recorded one (the client may see the alert first)."""
    deadline = time.monotonic() + 5
    while not server.handshake_failures and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(server.handshake_failures)


def test_a_request_without_client_certificate_fails_the_handshake(stub):
    with client(stub, with_certificate=False) as http, pytest.raises((httpx.ConnectError, httpx.ReadError,
                                                                      httpx.RemoteProtocolError)):
        http.post(stub.pix_url, content=b"<x/>")
    assert handshake_failures(stub._server) and stub.requests == []


def test_a_client_certificate_of_another_ca_fails_the_handshake(stub, tmp_path):
    foreign = ensure_dev_pki(tmp_path / "foreign")
    context = ssl.create_default_context(cafile=str(stub.keys.ca_cert))
    context.load_cert_chain(str(foreign.client_cert), str(foreign.client_key))
    with httpx.Client(verify=context) as http, pytest.raises((httpx.ConnectError, httpx.ReadError,
                                                              httpx.RemoteProtocolError)):
        http.post(stub.pix_url, content=b"<x/>")
    assert any("certificate" in f.lower() for f in handshake_failures(stub._server)) and stub.requests == []


def test_the_audit_repository_also_requires_a_client_certificate(stub):
    try:  # under TLS 1.3 the client may finish its side before the server refuses the certificate
        send_syslog(stub, [syslog_frame(GATEWAY_ITI41_AUDIT)], with_certificate=False)
    except (ssl.SSLError, OSError):
        pass
    assert handshake_failures(stub.audit) and stub.audit.messages == [] and stub.audit.rejected == []


# -- scenarios ------------------------------------------------------------------------------------


def _pix(stub, http):
    return soap_post(http, stub.pix_url, pix_request(NORMAL.spid, data_source=stub.registry.assigning_authority))


def test_scenarios_for_the_next_calls_then_normal_again(stub, http):
    stub.scenarios.next("pix", "soap_fault")
    stub.scenarios.next("pix", "http_error", count=2, status=503)
    statuses = [_pix(stub, http).status_code for _ in range(4)]
    assert statuses == [500, 503, 503, 200]
    assert [r.outcome for r in stub.requests_to("pix")][:3] == [
        "scenario soap_fault", "scenario http_error 503", "scenario http_error 503"]


def test_a_standing_scenario_lasts_until_cleared(stub, http):
    stub.scenarios.always("sts", "http_error")
    assert [soap_post(http, stub.sts_url, b"<x/>").status_code for _ in range(3)] == [500, 500, 500]
    stub.scenarios.clear("sts")
    assert issue(stub, http, NORMAL)


def test_a_slow_answer(stub, http):
    stub.scenarios.next("pix", "slow", delay=0.6)
    started = time.monotonic()
    assert _pix(stub, http).status_code == 200
    assert time.monotonic() - started >= 0.6


def test_a_reset_mid_answer_does_not_store(stub, http):
    request = recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)
    stub.scenarios.next("iti41", "reset")
    content_type, body = request.multipart()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post(stub.iti41_url, content=body, headers={"Content-Type": content_type})
    assert stub.documents == {}
    assert http.post(stub.iti41_url, content=body, headers={"Content-Type": content_type}).status_code == 200
    assert list(stub.documents) == [request.document_unique_id]


def test_a_lost_answer_is_stored_and_the_resend_meets_the_duplicate_submission_set(stub, http):
    request = recorded_iti41(issue(stub, http, NORMAL), stub=stub, patient=NORMAL)
    stub.scenarios.next("iti41", "lost")
    content_type, body = request.multipart()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post(stub.iti41_url, content=body, headers={"Content-Type": content_type})
    assert list(stub.documents) == [request.document_unique_id]
    again = http.post(stub.iti41_url, content=body, headers={"Content-Type": content_type})
    assert b"XDSDuplicateUniqueIdInRegistry" in again.content and request.submission_set_unique_id.encode() in again.content
    assert [r.status for r in stub.requests_to("iti41")] == [None, 200]


# -- ATNA -----------------------------------------------------------------------------------------

GATEWAY_ITI41_AUDIT = b"""<?xml version="1.0" encoding="UTF-8"?><AuditMessage>
<EventIdentification EventActionCode="R" EventDateTime="2026-01-05T10:00:00.000+01:00" EventOutcomeIndicator="0">
<EventID csd-code="110106" codeSystemName="DCM" originalText="Export"/>
<EventTypeCode csd-code="ITI-41" codeSystemName="IHE Transactions" originalText="Provide and Register Document Set-b"/>
<PurposeOfUse csd-code="AUTO" codeSystemName="2.16.756.5.30.1.127.3.10.5" originalText="Automatic Upload"/>
</EventIdentification>
<ActiveParticipant UserID="gateway" AlternativeUserID="4242" UserIsRequestor="true" NetworkAccessPointID="gateway.test" NetworkAccessPointTypeCode="1">
<RoleIDCode csd-code="110153" codeSystemName="DCM" originalText="Source Role ID"/></ActiveParticipant>
<ActiveParticipant UserID="https://127.0.0.1/Repository/services/RepositoryService" UserIsRequestor="false" NetworkAccessPointID="127.0.0.1" NetworkAccessPointTypeCode="2">
<RoleIDCode csd-code="110152" codeSystemName="DCM" originalText="Destination Role ID"/></ActiveParticipant>
<ActiveParticipant UserID="gateway" UserName="&lt;7601000000002@urn:oid:2.16.756.5.30.1.177.1.0.1&gt;" UserIsRequestor="false"/>
<ActiveParticipant UserID="7601000000002" UserName="Muster, Hans" UserIsRequestor="false">
<RoleIDCode csd-code="HCP" codeSystemName="2.16.756.5.30.1.127.3.10.6" originalText="Healthcare professional"/></ActiveParticipant>
<ActiveParticipant UserID="urn:oid:2.16.756.5.30.1.191.999.10" UserName="technical user" UserIsRequestor="false">
<RoleIDCode csd-code="TCU" codeSystemName="2.16.756.5.30.1.127.3.10.6" originalText="Technical user"/></ActiveParticipant>
<AuditSourceIdentification AuditSourceID="epr-gateway" AuditEnterpriseSiteID="2.16.756.5.30.1.145"/>
<ParticipantObjectIdentification ParticipantObjectID="100001201^^^&amp;2.16.756.5.30.1.177.2.2.1.1&amp;ISO" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">
<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/></ParticipantObjectIdentification>
<ParticipantObjectIdentification ParticipantObjectID="2.25.1234" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="20">
<ParticipantObjectIDTypeCode csd-code="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd" codeSystemName="IHE XDS Metadata" originalText="submission set classificationNode"/></ParticipantObjectIdentification>
</AuditMessage>"""


@pytest.mark.parametrize("name", ["iti-41-log.xml", "iti-45-log.xml", "iti-43-log.xml", "iti-18-log.xml",
                                  "iti-44-log.xml", "iti-47-log.xml"])
def test_the_recorded_audit_messages_pass_the_structural_check(name):
    assert check_audit_message(sample(name), strict=False).problems == []


def test_the_strict_check_asks_for_what_the_samples_lack():
    assert check_audit_message(sample("iti-41-log.xml"), strict=True).problems == [
        "AuditSourceIdentification needs the site's OID in AuditEnterpriseSiteID",
        "an XUA-secured ITI-41 needs EventIdentification/PurposeOfUse",
        "XUA participant of the technical user (role TCU) missing"]


def test_the_listener_keeps_a_valid_message(stub):
    send_syslog(stub, [syslog_frame(GATEWAY_ITI41_AUDIT)])
    received = stub.audit.wait_for(1)
    assert [(m.syslog.msg_id, m.check.event_type, m.problems) for m in received] == [("IHE+RFC-3881", "ITI-41", [])]
    assert received[0].syslog.message == GATEWAY_ITI41_AUDIT and stub.audit.rejected == []


@pytest.mark.parametrize(("frame", "problem"), [
    (syslog_frame(GATEWAY_ITI41_AUDIT, bom=True), "syslog: the MSG starts with a BOM (ITI-20: no BOM)"),
    (syslog_frame(GATEWAY_ITI41_AUDIT.replace(b'csd-code="110152"', b'csd-code="110153"')),
     "exactly one source participant (RoleIDCode 110153, DCM) expected"),
    (syslog_frame(GATEWAY_ITI41_AUDIT.replace(b'EventOutcomeIndicator="0"', b'EventOutcomeIndicator="1"')),
     "EventOutcomeIndicator must be 0, 4, 8 or 12"),
    (syslog_frame(GATEWAY_ITI41_AUDIT.replace(b'ParticipantObjectTypeCodeRole="20"', b'ParticipantObjectTypeCodeRole="3"')),
     "ITI-41 needs one submission set participant object (type 2, role 20)"),
    (syslog_frame(b"<AuditMessage><EventIdentification"), "not well-formed XML"),
    (b"13 <85>1 - - - -", "syslog: not an RFC 5424"),
])
def test_the_listener_rejects_a_malformed_message_and_keeps_the_next(stub, frame, problem):
    send_syslog(stub, [frame, syslog_frame(GATEWAY_ITI41_AUDIT)])
    stub.audit.wait_for(2)
    assert len(stub.audit.messages) == 1 and len(stub.audit.rejected) == 1
    assert any(problem in p for p in stub.audit.rejected[0].problems), stub.audit.rejected[0].problems


def test_a_framing_error_closes_the_connection(stub):
    send_syslog(stub, [b"12x <85>1 ", syslog_frame(GATEWAY_ITI41_AUDIT)])
    stub.audit.wait_for(1)
    time.sleep(0.2)
    assert stub.audit.messages == []
    assert [p for r in stub.audit.rejected for p in r.problems] == [
        "framing: MSG-LEN must be digits followed by one space"]


# -- the gateway's configuration of the stub -------------------------------------------------------


def test_the_community_configuration_points_at_the_stub(stub):
    path = stub.write_communities_file()
    [community] = json.loads(path.read_text())
    assert community == stub.community_config()
    assert set(community) == {"id", "home_community_id", "repository_unique_id", "iti41_url", "iti40_sts_url",
                              "iti45_pix_url", "pix_assigning_authority", "atna_address", "tls", "technical_user",
                              "source_id"}
    files = [community["tls"][k] for k in ("ca", "client_cert", "client_key")] + [
        community["technical_user"][k] for k in ("key", "cert")]
    assert all(Path(f).is_file() for f in files)
    assert community["iti41_url"].startswith("https://127.0.0.1:") and community["atna_address"] == stub.atna_address
