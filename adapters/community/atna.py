"""ITI-20 to the community: a DICOM AuditMessage for each ITI-41, ITI-40 and ITI-45 the gateway makes,
and a sender over syslog on TLS.

The messages follow `epr-by-example/files/Atna.md` and `samples/iti-41-log.xml` / `iti-45-log.xml`:
EventIdentification (EventID, EventTypeCode, and PurposeOfUse when XUA-secured), the source
(110153: the gateway, `UserID` its wsa:ReplyTo, the process id, its host) and destination (110152:
the endpoint URI and its host) participants, for ITI-41 the three XUA participants (the assertion's
`alias<NameID@Issuer>`, the subject with its role, the technical user named in SubjectConfirmation),
AuditSourceIdentification with the site's OID, and the patient and the submission set (ITI-41) or the
query (ITI-45) as participant objects.

ITI-40 (the STS request) has no message of its own in IHE; the gateway records it as a DICOM User
Authenticated event (110114, Login 110122) with EventTypeCode ITI-40, the STS as destination, the
technical user as participant and the patient the assertion is for.

Sending (RFC 5424 message, RFC 5425 octet counting, no BOM as ITI-20 and the community's kit ask)
is one attempt: `AtnaUnavailable` if the repository cannot be reached or refuses. Keeping messages
until it can (durably, never blocking a delivery) is the outbox's work.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from lxml import etree

from adapters.syslog import AUTHPRIV, SyslogConnection, client_ssl_context, frame, syslog_token
from adapters.community.config import Community
from adapters.community.soap import ANONYMOUS
from adapters.community.xua import IssuedAssertion, spid_cx

ROLE_SYSTEM = "2.16.756.5.30.1.127.3.10.6"
PURPOSE_SYSTEM = "2.16.756.5.30.1.127.3.10.5"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"
_APP_NAME = "epr-gateway"
_MSGID = "IHE+RFC-3881"


class AtnaUnavailable(Exception):
    """The audit record repository could not be reached or refused the messages: keep them, retry."""


@dataclass(frozen=True)
class AuditMessage:
    """One DICOM AuditMessage (UTF-8 XML) and what its syslog header needs."""

    xml: bytes
    event_time: datetime
    failed: bool

    def syslog(self, hostname: str) -> bytes:
        severity = 4 if self.failed else 5  # warning / notice
        stamp = self.event_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        header = f"<{AUTHPRIV * 8 + severity}>1 {stamp} {syslog_token(hostname)} {_APP_NAME} {os.getpid()} {_MSGID} - "
        return header.encode("ascii") + self.xml


@dataclass(frozen=True)
class AuditSite:
    """The gateway as it names itself in audit messages."""

    site_oid: str  # AuditEnterpriseSiteID (and AuditSourceID)
    host: str  # NetworkAccessPointID of the gateway

    @classmethod
    def of(cls, community: Community) -> AuditSite:
        return cls(community.source_id, socket.gethostname())


def provide_and_register(*, site: AuditSite, endpoint: str, when: datetime, outcome: str, mpi_cx: str,
                         submission_set_unique_id: str, assertion: IssuedAssertion | None) -> AuditMessage:
    """ITI-41 as Document Source: Export (110106), action R; the submission set by its URN-encoded
    uniqueId (files/Atna.md)."""
    message, event = _event(when, outcome, "R", ("110106", "Export"), ("ITI-41", "Provide and Register Document Set-b"),
                            assertion)
    _source_and_destination(message, site, endpoint)
    if assertion is not None:
        _xua_participants(message, assertion)
    _audit_source(message, site)
    _patient(message, mpi_cx)
    submission_set = _object(message, submission_set_unique_id, "2", "20")
    _code(submission_set, "ParticipantObjectIDTypeCode", SUBMISSION_SET_NODE, "IHE XDS Metadata",
          "submission set classificationNode")
    return _done(message, when, outcome)


def pix_query(*, site: AuditSite, endpoint: str, when: datetime, outcome: str, spid: str, query: bytes,
              message_id: str) -> AuditMessage:
    """ITI-45 as PIX Consumer: Query (110112), action E; the query (base64) and its message id."""
    message, _ = _event(when, outcome, "E", ("110112", "Query"), ("ITI-45", "PIX Query"), None)
    _source_and_destination(message, site, endpoint)
    _audit_source(message, site)
    _patient(message, spid_cx(spid))
    queried = _object(message, "", "2", "24")
    _code(queried, "ParticipantObjectIDTypeCode", "ITI-45", "IHE Transactions", "PIX Query")
    etree.SubElement(queried, "ParticipantObjectQuery").text = base64.b64encode(query).decode()
    etree.SubElement(queried, "ParticipantObjectDetail", type="MSH-10",
                     value=base64.b64encode(message_id.encode()).decode())
    return _done(message, when, outcome)


def get_x_user_assertion(*, site: AuditSite, endpoint: str, when: datetime, outcome: str, spid: str,
                         technical_user_oid: str) -> AuditMessage:
    """ITI-40 (the STS request): User Authenticated (110114), Login (110122), action E."""
    message, event = _event(when, outcome, "E", ("110114", "User Authenticated"),
                            ("ITI-40", "Provide X-User Assertion"), None)
    _code(event, "EventTypeCode", "110122", "DCM", "Login", before="EventTypeCode")
    _code(event, "PurposeOfUse", "AUTO", PURPOSE_SYSTEM, "Automatic Upload")
    _source_and_destination(message, site, endpoint)
    user = etree.SubElement(message, "ActiveParticipant", UserID=f"urn:oid:{technical_user_oid}",
                            UserIsRequestor="true")
    _code(user, "RoleIDCode", "TCU", ROLE_SYSTEM, "Technical user")
    _audit_source(message, site)
    _patient(message, spid_cx(spid))
    return _done(message, when, outcome)


# -- pieces ---------------------------------------------------------------------------------------
def _event(when: datetime, outcome: str, action: str, event_id: tuple[str, str], type_code: tuple[str, str],
           assertion: IssuedAssertion | None):
    message = etree.Element("AuditMessage")
    event = etree.SubElement(message, "EventIdentification", EventActionCode=action,
                             EventDateTime=when.astimezone(UTC).isoformat(timespec="milliseconds"),
                             EventOutcomeIndicator=outcome)
    _code(event, "EventID", event_id[0], "DCM", event_id[1])
    _code(event, "EventTypeCode", type_code[0], "IHE Transactions", type_code[1])
    if assertion is not None and assertion.purpose:
        _code(event, "PurposeOfUse", assertion.purpose[0], PURPOSE_SYSTEM, assertion.purpose[1] or assertion.purpose[0])
    return message, event


def _code(parent, tag: str, code: str, system: str, text: str, before: str | None = None):
    element = etree.Element(tag, {"csd-code": code, "codeSystemName": system, "originalText": text})
    anchor = parent.find(before) if before else None
    if anchor is not None:
        anchor.addnext(element)
    else:
        parent.append(element)
    return element


def _source_and_destination(message, site: AuditSite, endpoint: str) -> None:
    source = etree.SubElement(message, "ActiveParticipant", UserID=ANONYMOUS, AlternativeUserID=str(os.getpid()),
                              UserIsRequestor="true", NetworkAccessPointID=site.host,
                              NetworkAccessPointTypeCode=_access_point_type(site.host))
    _code(source, "RoleIDCode", "110153", "DCM", "Source Role ID")
    host = urlsplit(endpoint).hostname or ""
    destination = etree.SubElement(message, "ActiveParticipant", UserID=endpoint, UserIsRequestor="false",
                                   NetworkAccessPointID=host, NetworkAccessPointTypeCode=_access_point_type(host))
    _code(destination, "RoleIDCode", "110152", "DCM", "Destination Role ID")


def _xua_participants(message, assertion: IssuedAssertion) -> None:
    alias = assertion.subject_alias or ""
    etree.SubElement(message, "ActiveParticipant", UserID=assertion.subject,
                     UserName=f"{alias}<{assertion.subject}@{assertion.issuer}>", UserIsRequestor="false")
    subject = etree.SubElement(message, "ActiveParticipant", UserID=assertion.subject,
                               UserName=assertion.subject_name or assertion.subject, UserIsRequestor="false")
    if assertion.role:
        _code(subject, "RoleIDCode", assertion.role[0], ROLE_SYSTEM, assertion.role[1] or assertion.role[0])
    if assertion.delegate:
        delegate = etree.SubElement(message, "ActiveParticipant", UserID=assertion.delegate,
                                    UserName=assertion.delegate, UserIsRequestor="false")
        _code(delegate, "RoleIDCode", "TCU", ROLE_SYSTEM, "Technical user")


def _audit_source(message, site: AuditSite) -> None:
    source = etree.SubElement(message, "AuditSourceIdentification", AuditEnterpriseSiteID=site.site_oid,
                              AuditSourceID=site.site_oid)
    _code(source, "AuditSourceTypeCode", "4", "DCM", "Application Server Process")


def _patient(message, cx: str) -> None:
    patient = _object(message, cx, "1", "1")
    _code(patient, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")


def _object(message, object_id: str, type_code: str, role: str):
    return etree.SubElement(message, "ParticipantObjectIdentification", ParticipantObjectID=object_id,
                            ParticipantObjectTypeCode=type_code, ParticipantObjectTypeCodeRole=role)


def _done(message, when: datetime, outcome: str) -> AuditMessage:
    xml = etree.tostring(message, encoding="UTF-8", xml_declaration=True)
    return AuditMessage(xml, when, outcome != SUCCESS)


def _access_point_type(host: str) -> str:
    """1 a machine (DNS) name, 2 an IP address."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return "2"
    except OSError:
        return "1"


class AtnaSender:
    """One community's audit record repository over syslog on TLS with the gateway's certificate."""

    def __init__(self, community: Community, *, hostname: str | None = None, timeout_seconds: float = 10.0,
                 confirm_seconds: float = 0.05):
        self._address = community.atna_address
        context = client_ssl_context(str(community.tls.ca), str(community.tls.client_cert), str(community.tls.client_key))
        self._connection = SyslogConnection(community.atna_host, community.atna_port, context,
                                            timeout_seconds=timeout_seconds)
        self._hostname = hostname or socket.gethostname()
        self._confirm = confirm_seconds
        self._lock = threading.Lock()

    def send(self, messages: list[AuditMessage]) -> None:
        """Send the messages in one write; AtnaUnavailable if the repository did not take them."""
        data = b"".join(frame(m.syslog(self._hostname)) for m in messages)
        with self._lock:
            try:
                self._connection.send(data, confirm_seconds=self._confirm)
            except (OSError, ssl.SSLError) as exc:  # ConnectionError is an OSError
                raise AtnaUnavailable(f"{self._address}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._connection.close()
