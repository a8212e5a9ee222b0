"""A structural validator of the DICOM AuditMessage (PS3.15 A.5) as the recorded messages show it
(`samples/iti-41-log.xml`, `iti-45-log.xml`, `files/Atna.md`), and of the RFC 5424 syslog frame it
travels in (ITI-20). No DICOM audit XSD ships with the fixtures; this checks what the samples and the
Swiss rules make of it.

`strict` adds what the community asks of this gateway beyond the samples: the site's OID in
AuditSourceIdentification (Annex 5 amendment 1, 1.5.2), and for an XUA-secured ITI-41 the purpose of
use and the three XUA participants of a technical user (`Atna.md`, "Requirements for transactions
secured by XUA").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from lxml import etree

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_CX = re.compile(r"^[^^&]+\^\^\^&[0-9.]+&ISO$")
_SYSLOG = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[.*?\])+) ?", re.S)
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
ROLE_SYSTEM = "2.16.756.5.30.1.127.3.10.6"
ORDER = ("EventIdentification", "ActiveParticipant", "AuditSourceIdentification", "ParticipantObjectIdentification")


@dataclass
class SyslogMessage:
    priority: int
    timestamp: str
    hostname: str
    app_name: str
    proc_id: str
    msg_id: str
    structured_data: str
    message: bytes


@dataclass
class AuditCheck:
    event_type: str | None = None
    problems: list[str] = field(default_factory=list)


def parse_syslog(frame: bytes) -> SyslogMessage:
    """RFC 5424 header; the MSG without a BOM (ITI-20 3.20.4.1.2)."""
    match = _SYSLOG.match(frame)
    if match is None:
        raise ValueError("not an RFC 5424 syslog message (<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG)")
    priority = int(match.group(1))
    if priority > 191:
        raise ValueError(f"PRI {priority} out of range")
    timestamp = match.group(2).decode()
    if timestamp != "-":
        try:
            if dt.datetime.fromisoformat(timestamp).tzinfo is None:
                raise ValueError
        except ValueError:
            raise ValueError(f"TIMESTAMP {timestamp!r} is not RFC 3339 with a time zone") from None
    message = frame[match.end():]
    if message.startswith(b"\xef\xbb\xbf"):
        raise ValueError("the MSG starts with a BOM (ITI-20: no BOM)")
    return SyslogMessage(priority, timestamp, *(g.decode() for g in match.groups()[2:7]), message)


def check_audit_message(xml: bytes, *, strict: bool) -> AuditCheck:
    check = AuditCheck()
    problems = check.problems
    try:
        root = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError as error:
        problems.append(f"not well-formed XML: {error}")
        return check
    if root.tag != "AuditMessage":
        problems.append(f"root element must be AuditMessage without namespace, not {root.tag}")
        return check
    names = [child.tag for child in root if isinstance(child.tag, str)]
    ranks = [ORDER.index(name) if name in ORDER else -1 for name in names]
    if -1 in ranks or ranks != sorted(ranks):
        problems.append(f"children must be {', '.join(ORDER)} in this order: {names}")
    events = root.findall("EventIdentification")
    if len(events) != 1:
        problems.append("exactly one EventIdentification expected")
        return check
    event = events[0]
    _event(event, problems)
    check.event_type = event.find("EventTypeCode").get("csd-code") if event.find("EventTypeCode") is not None else None
    participants = root.findall("ActiveParticipant")
    _participants(participants, problems)
    sources = root.findall("AuditSourceIdentification")
    if len(sources) != 1 or not sources[0].get("AuditSourceID"):
        problems.append("exactly one AuditSourceIdentification with AuditSourceID expected")
    elif strict and not _OID.match(sources[0].get("AuditEnterpriseSiteID") or ""):
        problems.append("AuditSourceIdentification needs the site's OID in AuditEnterpriseSiteID")
    objects = root.findall("ParticipantObjectIdentification")
    for item in objects:
        _participant_object(item, problems)
    if check.event_type == "ITI-41":
        _iti41(event, participants, objects, problems, strict)
    elif check.event_type == "ITI-45":
        _iti45(event, objects, problems)
    return check


def _coded(element: etree._Element | None, what: str, problems: list[str]) -> None:
    if element is None:
        problems.append(f"{what} missing")
    elif not element.get("csd-code") or not element.get("codeSystemName") or element.get("originalText") is None:
        problems.append(f"{what} needs csd-code, codeSystemName and originalText")


def _event(event, problems) -> None:
    if event.get("EventActionCode") not in ("C", "R", "U", "D", "E"):
        problems.append("EventActionCode must be C, R, U, D or E")
    try:
        if dt.datetime.fromisoformat(event.get("EventDateTime") or "").tzinfo is None:
            problems.append("EventDateTime needs a time zone")
    except ValueError:
        problems.append("EventDateTime is not an xsd:dateTime")
    if event.get("EventOutcomeIndicator") not in ("0", "4", "8", "12"):
        problems.append("EventOutcomeIndicator must be 0, 4, 8 or 12")
    _coded(event.find("EventID"), "EventID", problems)
    for type_code in event.findall("EventTypeCode"):
        _coded(type_code, "EventTypeCode", problems)


def _roles(participant) -> set[tuple[str, str]]:
    return {(r.get("csd-code"), r.get("codeSystemName")) for r in participant.findall("RoleIDCode")}


def _participants(participants, problems) -> None:
    if len(participants) < 2:
        problems.append("at least two ActiveParticipants (source and destination) expected")
    for participant in participants:
        if not participant.get("UserID"):
            problems.append("ActiveParticipant without UserID")
        if participant.get("UserIsRequestor") not in (None, "true", "false"):
            problems.append("UserIsRequestor must be true or false")
        if participant.get("NetworkAccessPointTypeCode") not in (None, "1", "2", "3", "4", "5") or (
                participant.get("NetworkAccessPointTypeCode") and not participant.get("NetworkAccessPointID")):
            problems.append("NetworkAccessPointTypeCode must be 1-5 and come with NetworkAccessPointID")
        for role in participant.findall("RoleIDCode"):
            if not role.get("csd-code") or not role.get("codeSystemName"):
                problems.append("RoleIDCode needs csd-code and codeSystemName")
    for code, what in (("110153", "source"), ("110152", "destination")):
        if sum((code, "DCM") in _roles(p) for p in participants) != 1:
            problems.append(f"exactly one {what} participant (RoleIDCode {code}, DCM) expected")


def _participant_object(item, problems) -> None:
    if not item.get("ParticipantObjectID"):
        problems.append("ParticipantObjectIdentification without ParticipantObjectID")
    if item.get("ParticipantObjectTypeCode") not in ("1", "2", "3", "4"):
        problems.append("ParticipantObjectTypeCode must be 1-4")
    role = item.get("ParticipantObjectTypeCodeRole")
    if role is not None and not (role.isdigit() and 1 <= int(role) <= 24):
        problems.append("ParticipantObjectTypeCodeRole must be 1-24")
    id_type = item.find("ParticipantObjectIDTypeCode")
    if id_type is None or not id_type.get("csd-code"):
        problems.append("ParticipantObjectIDTypeCode with csd-code missing")


def _objects(objects, type_code, role, id_type):
    return [o for o in objects if o.get("ParticipantObjectTypeCode") == type_code
            and o.get("ParticipantObjectTypeCodeRole") == role
            and (o.find("ParticipantObjectIDTypeCode") is not None
                 and o.find("ParticipantObjectIDTypeCode").get("csd-code") == id_type)]


def _iti41(event, participants, objects, problems, strict) -> None:
    if event.find("EventID") is None or event.find("EventID").get("csd-code") != "110106" \
            or event.get("EventActionCode") != "R":
        problems.append("ITI-41 (source) is EventID 110106 Export with EventActionCode R")
    patients = _objects(objects, "1", "1", "2")
    if len(patients) != 1 or not _CX.match(patients[0].get("ParticipantObjectID")):
        problems.append("ITI-41 needs one patient participant object (type 1, role 1, id type 2) with a CX id")
    if len(_objects(objects, "2", "20", SUBMISSION_SET_NODE)) != 1:
        problems.append("ITI-41 needs one submission set participant object (type 2, role 20)")
    if not strict:
        return
    if event.find("PurposeOfUse") is None:
        problems.append("an XUA-secured ITI-41 needs EventIdentification/PurposeOfUse")
    if not any(re.fullmatch(r".*<.+@.+>", p.get("UserName") or "") for p in participants):
        problems.append("XUA participant alias<NameID@Issuer> missing")
    roles = [code for p in participants for code, system in _roles(p) if system == ROLE_SYSTEM]
    if not any(code not in ("TCU", "ASS") for code in roles):
        problems.append("XUA subject participant with its EPR role missing")
    if "TCU" not in roles:
        problems.append("XUA participant of the technical user (role TCU) missing")


def _iti45(event, objects, problems) -> None:
    if event.find("EventID") is None or event.find("EventID").get("csd-code") != "110112" \
            or event.get("EventActionCode") != "E":
        problems.append("ITI-45 is EventID 110112 Query with EventActionCode E")
    queries = _objects(objects, "2", "24", "ITI-45")
    if len(queries) != 1 or queries[0].find("ParticipantObjectQuery") is None:
        problems.append("ITI-45 needs one query participant object (type 2, role 24, ITI-45) with its query")
