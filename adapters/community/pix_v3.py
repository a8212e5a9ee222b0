"""ITI-45 PIX V3 Query: the community's MPI-PID of a patient, asked by the SPID.

The query as the community's kit records it (`cara-ikit/requests/iti-45-weinmann-eprspid.http`,
`epr-by-example/samples/ITI-45_request_raw.xml`): `PRPA_IN201309UV02` with the receiver device the
community configured (cara: its integration system's OID; a wrong receiver returns no data, faq),
the gateway as sender, the SPID as `patientIdentifier`, and as data sources the community's MPI
domain and the SPID's. The answer `PRPA_IN201310UV02` gives the MPI-PID: only an id whose root is the
community's MPI domain is ever taken — never an id in another assigning authority.

A patient the community does not know (`NF`, or `AE` with the error on the patient identifier, or an
answer that holds no id in the MPI domain) is `PatientUnknown`: the document waits. A query the
community refuses as such (`AR`, `QE`, `AE` about the data source) is `PixRefused` — a configuration
matter, not a patient's. A fault or an unreadable answer is `PixFailure` (transport class).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from adapters.cara.identifier_syntax import is_printable_id
from adapters.community import mtom, soap
from adapters.community.transport import HttpAnswer

HL7 = "urn:hl7-org:v3"
ACTION = "urn:hl7-org:v3:PRPA_IN201309UV02"
SPID_OID = "2.16.756.5.30.1.127.3.10.3"
_INTERACTIONS = "2.16.840.1.113883.1.6"


@dataclass(frozen=True)
class MpiPid:
    value: str
    assigning_authority: str

    @property
    def cx(self) -> str:
        return f"{self.value}^^^&{self.assigning_authority}&ISO"


@dataclass(frozen=True)
class PatientUnknown:
    reason: str


class PixFailure(Exception):
    """No usable answer (fault, transport, unreadable): retry."""

    audit: tuple = ()  # the audit message of the failed exchange (set by the caller that made it)

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class PixRefused(Exception):
    """The PIX manager refused the query itself (AR, QE, an unknown data source)."""

    audit: tuple = ()  # the audit message of the failed exchange (set by the caller that made it)

    def __init__(self, code: str, text: str):
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text


@dataclass(frozen=True)
class PixQuery:
    body: bytes  # the PRPA_IN201309UV02 element, one line
    message_id: str  # the HL7 v3 message id (root^extension), for the audit message
    query: bytes  # the queryByParameter element as sent (the audit message carries it)


def query(*, spid: str, mpi_oid: str, sender_oid: str, receiver_oid: str, now: datetime) -> PixQuery:
    message = etree.Element(f"{{{HL7}}}PRPA_IN201309UV02", nsmap={None: HL7}, ITSVersion="XML_1.0")
    extension = uuid.uuid4().hex
    _sub(message, "id", root=sender_oid, extension=extension)
    _sub(message, "creationTime", value=now.strftime("%Y%m%d%H%M%S"))
    _sub(message, "interactionId", root=_INTERACTIONS, extension="PRPA_IN201309UV02")
    _sub(message, "processingCode", code="P")
    _sub(message, "processingModeCode", code="T")
    _sub(message, "acceptAckCode", code="AL")
    for side, oid in (("receiver", receiver_oid), ("sender", sender_oid)):
        party = _sub(message, side, typeCode="RCV" if side == "receiver" else "SND")
        _sub(_sub(party, "device", classCode="DEV", determinerCode="INSTANCE"), "id", root=oid)
    control = _sub(message, "controlActProcess", classCode="CACT", moodCode="EVN")
    _sub(control, "code", code="PRPA_TE201309UV02", codeSystem=_INTERACTIONS)
    author = _sub(_sub(control, "authorOrPerformer", typeCode="AUT"), "assignedPerson", classCode="ASSIGNED")
    _sub(author, "id", root=sender_oid)
    by_parameter = _sub(control, "queryByParameter")
    _sub(by_parameter, "queryId", root=sender_oid, extension=f"{extension}.q")
    _sub(by_parameter, "statusCode", code="new")
    _sub(by_parameter, "responsePriorityCode", code="I")
    parameters = _sub(by_parameter, "parameterList")
    for source in (mpi_oid, SPID_OID):
        data_source = _sub(parameters, "dataSource")
        _sub(data_source, "value", root=source)
        _sub(data_source, "semanticsText").text = "DataSource.id"
    identifier = _sub(parameters, "patientIdentifier")
    _sub(identifier, "value", root=SPID_OID, extension=spid)
    _sub(identifier, "semanticsText").text = "Patient.id"
    return PixQuery(soap.serialise(message), f"{sender_oid}^{extension}", soap.serialise(by_parameter))


def request(*, endpoint: str, pix_query: PixQuery, message: str) -> bytes:
    return soap.envelope(header=soap.addressing_headers(action=ACTION, to=endpoint, message=message),
                         body=pix_query.body)


def answer(http: HttpAnswer, *, mpi_oid: str) -> MpiPid | PatientUnknown:
    try:
        content = soap.body_of(soap.parse(mtom.soap_part(http.content_type, http.body)))
    except (mtom.NotSoap, soap.SoapAnswerUnreadable) as exc:
        raise PixFailure(f"PIX manager answered HTTP {http.status} without a readable SOAP message ({exc})") from None
    fault = soap.fault_of(content)
    if fault is not None:
        raise PixFailure(f"PIX manager answered HTTP {http.status}: {fault}")
    if content.tag != f"{{{HL7}}}PRPA_IN201310UV02":
        raise PixFailure(f"PIX manager answered HTTP {http.status} with {content.tag}, not PRPA_IN201310UV02")
    acknowledgement = content.find(f"{{{HL7}}}acknowledgement/{{{HL7}}}typeCode")
    ack = acknowledgement.get("code", "") if acknowledgement is not None else ""
    response = content.find(f"{{{HL7}}}controlActProcess/{{{HL7}}}queryAck/{{{HL7}}}queryResponseCode")
    query_code = response.get("code", "") if response is not None else ""
    detail = _detail(content)
    if ack in ("AR", "CR") or query_code == "QE":
        raise PixRefused(ack if ack in ("AR", "CR") else query_code, detail or "the query was refused")
    if ack in ("AE", "CE") or query_code == "AE":
        if "datasource" in detail.casefold():
            raise PixRefused("AE", detail)
        return PatientUnknown(f"AE: {detail or 'application error'}")
    if query_code == "NF":
        return PatientUnknown("NF: no data found")
    ids = {i.get("extension", "") for i in content.iterfind(
        f"{{{HL7}}}controlActProcess/{{{HL7}}}subject/{{{HL7}}}registrationEvent/{{{HL7}}}subject1/"
        f"{{{HL7}}}patient/{{{HL7}}}id") if i.get("root") == mpi_oid}
    if len(ids) > 1:
        raise PixRefused(query_code or ack, f"more than one MPI-PID in {mpi_oid} for one SPID")
    if not ids:
        return PatientUnknown(f"{query_code or ack}: the answer holds no MPI-PID in {mpi_oid}")
    value = ids.pop()
    if not is_printable_id(value):
        raise PixRefused(query_code or ack, "the MPI-PID in the answer is not a printable identifier")
    return MpiPid(value, mpi_oid)


def _detail(content: etree._Element) -> str:
    """The acknowledgement details' texts and locations, one line."""
    texts = []
    for detail in content.iterfind(f"{{{HL7}}}acknowledgement/{{{HL7}}}acknowledgementDetail"):
        code = detail.find(f"{{{HL7}}}code")
        words = [code.get("code", "") if code is not None else "", detail.findtext(f"{{{HL7}}}text") or "",
                 detail.findtext(f"{{{HL7}}}location") or ""]
        texts.append(" ".join(w.strip() for w in words if w and w.strip()))
    return "; ".join(t for t in texts if t)


def _sub(parent, tag: str, **attributes: str):
    return etree.SubElement(parent, f"{{{HL7}}}{tag}", attributes)
