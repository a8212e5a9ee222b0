"""The community's PIX V3 manager (ITI-45): PRPA_IN201309UV02 -> PRPA_IN201310UV02.

Answers are the recorded `samples/ITI-45_response_raw.xml` with its values replaced: the MPI-PID in
the community's assigning authority and the EPR-SPID. A patient the MPI does not know is answered
as IHE ITI-45 says, switchable: AE (Acknowledgement AE, AcknowledgementDetail 204 "Unknown Key
Identifier", QueryAck AE) or NF (AA, QueryAck NF, no subject). The request is checked in structure:
wsa:Action, interaction, sender and receiver devices, a dataSource that is the MPI's assigning
authority (the faq: never a foreign domain) and the SPID as patientIdentifier.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
import uuid

from lxml import etree

from .fixtures import sample
from .soap import HL7, SOAP12, WSA, Answer, parse_envelope, soap_fault

SPID_ROOT = "2.16.756.5.30.1.127.3.10.3"
ACTION = "urn:hl7-org:v3:PRPA_IN201309UV02"
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


def h(name: str) -> str:
    return f"{{{HL7}}}{name}"


@functools.cache
def _recorded_response() -> bytes:
    return sample("ITI-45_response_raw.xml")


def handle_pix(body: bytes, *, mpi: dict[str, str], assigning_authority: str, not_found: str,
               receiver_oid: str | None) -> tuple[Answer, str | None]:
    """The answer, and the MPI-PID found (None when the patient is unknown)."""
    envelope, header = parse_envelope(body, _PARSER)
    if (header.findtext(f"{{{WSA}}}Action") or "").strip() != ACTION:
        raise soap_fault(f"wsa:Action must be {ACTION}", code="Sender", subcode=(WSA, "ActionNotSupported"))
    message_id = (header.findtext(f"{{{WSA}}}MessageID") or "").strip()
    if not message_id:
        raise soap_fault("wsa:MessageID missing", code="Sender", subcode=(WSA, "MessageAddressingHeaderRequired"))
    query = envelope.find(f"{{{SOAP12}}}Body/{h('PRPA_IN201309UV02')}")
    if query is None:
        raise soap_fault("the Body must hold PRPA_IN201309UV02", code="Sender")
    _check_structure(query, receiver_oid)
    parameters = query.find(f"{h('controlActProcess')}/{h('queryByParameter')}/{h('parameterList')}")
    sources = [v.get("root") for v in parameters.iterfind(f"{h('dataSource')}/{h('value')}")]
    identifier = parameters.find(f"{h('patientIdentifier')}/{h('value')}")
    if identifier is None or identifier.get("root") != SPID_ROOT or not re.fullmatch(r"\d{18}", identifier.get("extension") or ""):
        raise soap_fault(f"patientIdentifier must be an EPR-SPID ({SPID_ROOT})", code="Sender")
    spid = identifier.get("extension")
    if assigning_authority not in sources:
        return _answer(query, message_id, None, spid, assigning_authority, "AE",
                       detail=f"dataSource {assigning_authority} (the MPI's assigning authority) missing",
                       location="//controlActProcess/queryByParameter/parameterList/dataSource"), None
    mpi_pid = mpi.get(spid)
    if mpi_pid is None:
        return _answer(query, message_id, None, spid, assigning_authority, not_found,
                       detail="Unknown Key Identifier",
                       location="//controlActProcess/queryByParameter/parameterList/patientIdentifier"), None
    return _answer(query, message_id, mpi_pid, spid, assigning_authority, "OK"), mpi_pid


def _check_structure(query: etree._Element, receiver_oid: str | None) -> None:
    if query.get("ITSVersion") != "XML_1.0":
        raise soap_fault("PRPA_IN201309UV02 needs ITSVersion XML_1.0", code="Sender")
    interaction = query.find(h("interactionId"))
    if interaction is None or interaction.get("extension") != "PRPA_IN201309UV02" or interaction.get("root") != "2.16.840.1.113883.1.6":
        raise soap_fault("interactionId must be PRPA_IN201309UV02 (2.16.840.1.113883.1.6)", code="Sender")
    for required in ("id", "creationTime", "processingCode", "processingModeCode", "acceptAckCode"):
        if query.find(h(required)) is None:
            raise soap_fault(f"PRPA_IN201309UV02/{required} missing", code="Sender")
    for side in ("receiver", "sender"):
        device = query.find(f"{h(side)}/{h('device')}/{h('id')}")
        if device is None or not _OID.match(device.get("root") or ""):
            raise soap_fault(f"{side}/device/id must carry the device's OID", code="Sender")
    if receiver_oid is not None and query.find(f"{h('receiver')}/{h('device')}/{h('id')}").get("root") != receiver_oid:
        raise soap_fault(f"receiver device must be {receiver_oid}", code="Sender")
    by_parameter = query.find(f"{h('controlActProcess')}/{h('queryByParameter')}")
    if by_parameter is None or by_parameter.find(h("queryId")) is None or by_parameter.find(h("parameterList")) is None:
        raise soap_fault("controlActProcess/queryByParameter with queryId and parameterList missing", code="Sender")


def _answer(query, message_id, mpi_pid, spid, authority, outcome, *, detail="", location="") -> Answer:
    envelope = etree.fromstring(_recorded_response(), _PARSER)
    header = envelope.find(f"{{{SOAP12}}}Header")
    header.find(f"{{{WSA}}}RelatesTo").text = message_id
    response = envelope.find(f"{{{SOAP12}}}Body/{h('PRPA_IN201310UV02')}")
    response.find(h("id")).set("extension", str(uuid.uuid4()))
    response.find(h("creationTime")).set("value", dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S"))
    # The answer goes back to the sender and comes from the receiver the query named.
    for side, other in (("receiver", "sender"), ("sender", "receiver")):
        root = query.find(f"{h(other)}/{h('device')}/{h('id')}").get("root")
        for identifier in response.iterfind(f"{h(side)}//{h('id')}"):
            identifier.set("root", root)
    acknowledgement = response.find(h("acknowledgement"))
    acknowledgement.find(f"{h('targetMessage')}/{h('id')}").attrib.update(
        {k: v for k, v in query.find(h("id")).attrib.items() if k in ("root", "extension")})
    control = response.find(h("controlActProcess"))
    control.replace(control.find(h("queryByParameter")),
                    copy.deepcopy(query.find(f"{h('controlActProcess')}/{h('queryByParameter')}")))
    query_ack = control.find(h("queryAck"))
    query_ack.find(h("queryId")).attrib.update(
        query.find(f"{h('controlActProcess')}/{h('queryByParameter')}/{h('queryId')}").attrib)
    subject = control.find(h("subject"))
    if mpi_pid is None:
        control.remove(subject)
        acknowledgement.find(h("typeCode")).set("code", "AE" if outcome == "AE" else "AA")
        query_ack.find(h("queryResponseCode")).set("code", outcome)
        if outcome == "AE":
            acknowledgement.append(etree.fromstring(
                f'<acknowledgementDetail xmlns="{HL7}" typeCode="E"><code code="204" '
                f'codeSystem="2.16.840.1.113883.5.1100" displayName="Unknown Key Identifier"/>'
                f'<text>{detail}</text><location>{location}</location></acknowledgementDetail>'))
    else:
        patient = subject.find(f"{h('registrationEvent')}/{h('subject1')}/{h('patient')}")
        mpi_id, spid_id = patient.findall(h("id"))[:2]
        mpi_id.attrib.update({"root": authority, "extension": mpi_pid, "assigningAuthorityName": "MPI-PID"})
        spid_id.attrib.update({"root": SPID_ROOT, "extension": spid, "assigningAuthorityName": "SPID"})
    body = etree.tostring(envelope, encoding="utf-8")
    return Answer(200, "application/soap+xml; charset=UTF-8", body)
