"""What the community adapter's tests share: the XDS fixtures read in place, the XSDs, a small PKI,
a community configuration in the exact `EPR_COMMUNITIES` format, a record-model submission, the
recorded answers, and an MTOM reader that is not the builder's (the standard library's `email`)."""

from __future__ import annotations

import base64
import datetime as dt
import email.parser
import email.policy
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from adapters.cara.model import Author, Code, DocumentEntry, Identifier, NewDocument, SubmissionSet
from adapters.community.config import Community, parse_communities
from adapters.community.ebrim import OutgoingDocument, OutgoingRelation
from adapters.community.transport import HttpAnswer
from official_examples import FIXTURES, require_examples

XDS = FIXTURES / "xds"
SNOMED = "http://snomed.info/sct"
SPID = "761337614242240684"  # ZELLER-ROBERT-NICOUD, cara's test patient
MPI_PID = "100001177"
MPI_OID = "2.16.756.5.30.1.177.2.2.1.1"
TCU_OID = "2.16.756.5.30.1.191.999.10"
PRINCIPAL_GLN = "7601000000002"
LOCAL_OID = "2.16.756.5.30.1.999.2.1"
INSTITUTION_OID = "2.16.756.5.30.1.999.1"


def xds_fixture(relative: str) -> Path:
    """A file under shared/fixtures/xds, read in place (skip, or fail under CI, when absent)."""
    require_examples(XDS, (relative,))
    return XDS / relative


@lru_cache(maxsize=1)
def provide_and_register_schema() -> etree.XMLSchema:
    """IHEXDSB.xsd with the ebRS 3.0 schemas it imports. rim.xsd names `xds:Document` from xcf.xsd,
    a second file of the same namespace: a driver schema includes both, as IPF's catalogue does."""
    ihe = xds_fixture("schema/IHE/IHEXDSB.xsd").parent
    require_examples(ihe, ("xcf.xsd",))
    driver = (f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:ihe:iti:xds-b:2007" '
              f'elementFormDefault="qualified"><xs:include schemaLocation="{ihe / "xcf.xsd"}"/>'
              f'<xs:include schemaLocation="{ihe / "IHEXDSB.xsd"}"/></xs:schema>')
    return etree.XMLSchema(etree.fromstring(driver.encode(), base_url=str(ihe / "driver.xsd")))


# -- MTOM read back with the standard library ---------------------------------------------------------
@dataclass
class ReadMtom:
    params: dict[str, str]  # of the HTTP Content-Type
    root_headers: dict[str, str]
    root: bytes
    parts: dict[str, tuple[str, dict[str, str], bytes]]  # Content-ID → (content type, headers, bytes)


def read_mtom(content_type: str, body: bytes) -> ReadMtom:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert message.get_content_type() == "multipart/related"
    params = {k: v for k, v in message.get_params()[1:]}
    parts = list(message.iter_parts())
    root, others = parts[0], parts[1:]
    return ReadMtom(params, dict(root.items()), root.get_payload(decode=True),
                    {p["Content-ID"].strip("<>"): (p.get_content_type(), dict(p.items()), p.get_payload(decode=True))
                     for p in others})


def xop_reconstructed(body: etree._Element, parts: dict) -> etree._Element:
    """The XOP infoset: each xop:Include replaced by its part's bytes in base64 (XOP 1.0 §3.2)."""
    copy = etree.fromstring(etree.tostring(body))
    for include in copy.iter("{http://www.w3.org/2004/08/xop/include}Include"):
        parent = include.getparent()
        parent.remove(include)
        parent.text = base64.b64encode(parts[include.get("href").removeprefix("cid:")][2]).decode()
    return copy


# -- a small PKI -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    tcu_cert: Path
    tcu_key: Path


def make_pki(folder: Path) -> Pki:
    """An RSA CA; a server certificate for localhost/127.0.0.1; the gateway's client certificate; the
    technical user's signing certificate (RSA: the TCU assertion is signed RSA-SHA256)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "community test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, usage, sans) -> tuple[bytes, bytes]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(ca_key, hashes.SHA256())
        return (certificate.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    files = {"ca": (ca.public_bytes(serialization.Encoding.PEM), ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        "server": leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                       [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        "client": leaf("epr-gateway source", ExtendedKeyUsageOID.CLIENT_AUTH, None),
        "tcu": leaf("epr-gateway technical user", ExtendedKeyUsageOID.CLIENT_AUTH, None)}
    paths = {}
    for name, (cert, key) in files.items():
        (folder / f"{name}.cert.pem").write_bytes(cert)
        (folder / f"{name}.key.pem").write_bytes(key)
        paths[f"{name}_cert"], paths[f"{name}_key"] = folder / f"{name}.cert.pem", folder / f"{name}.key.pem"
    return Pki(**paths)


def community_entry(pki: Pki, base_url: str = "https://127.0.0.1:9", atna: str = "127.0.0.1:9", **changes) -> dict:
    """One community in the exact format of issue 24 item 6 (the cara integration values)."""
    entry = {
        "id": "cara-int",
        "home_community_id": "urn:oid:2.16.756.5.30.1.177",
        "repository_unique_id": "2.16.756.5.30.1.177.2.2.1.1.2",
        "iti41_url": f"{base_url}/Repository/services/RepositoryService",
        "iti40_sts_url": f"{base_url}/STS/services/SecurityTokenService",
        "iti45_pix_url": f"{base_url}/PIXPDQ/services/PIXPDQV3ManagerService",
        "pix_assigning_authority": MPI_OID,
        "atna_address": atna,
        "tls": {"ca": str(pki.ca_cert), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)},
        "technical_user": {"oid": TCU_OID, "key": str(pki.tcu_key), "cert": str(pki.tcu_cert),
                           "principal_gln": PRINCIPAL_GLN, "principal_name": "Dr. Anna Verantwortlich"},
        "source_id": "2.16.756.5.30.1.145.20.1",
    }
    entry.update(changes)
    return entry


def community(pki: Pki, **kwargs) -> Community:
    (parsed,) = parse_communities(json.loads(json.dumps([community_entry(pki, **kwargs)])), base=pki.ca_cert.parent)
    assert isinstance(parsed, Community)
    return parsed


# -- the record's model ---------------------------------------------------------------------------
CONTENT = b"%PDF-1.4\n% a discharge letter\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"


def document(*, unique_id: str = "urn:oid:2.25.199933111024518419341209463045829114371", content: bytes = CONTENT,
             confidentiality: str = "17621005", family: str | None = "Zeller-Robert-Nicoud",
             authors: list[Author] | None = None, title: str = "Austrittsbericht") -> NewDocument:
    source_patient = {"resourceType": "Patient", "id": "src",
                      "identifier": [{"use": "usual", "system": f"urn:oid:{LOCAL_OID}", "value": "L-4711"}],
                      "birthDate": "1984-03-08", "gender": "male"}
    if family:
        source_patient["name"] = [{"family": family, "given": ["Romain", "Théophile"]}]
    entry = DocumentEntry(
        entry_id="0190c6f2-3b1e-7a4c-9d2e-1f0a2b3c4d5e", unique_id=unique_id, patient_pid="", status="current",
        type_code=Code(SNOMED, "373942005", "Discharge summary"),
        class_codes=[Code(SNOMED, "371531000", "Report of clinical encounter")],
        format_code=Code("urn:oid:2.16.756.5.30.1.127.3.10.10", "urn:che:epr:EPR_Unstructured_Document",
                         "Unstructured EPR document"),
        confidentiality=[Code(SNOMED, confidentiality, "Normal (qualifier value)")],
        facility_type=Code(SNOMED, "22232009", "Hospital"), practice_setting=Code(SNOMED, "394802001", "General medicine"),
        mime_type="application/pdf", language="de-CH", title=title, creation_time="2024-05-02T14:30:00+02:00",
        original_provider_role=Code("urn:oid:2.16.756.5.30.1.127.3.10.6", "TCU", "Technical user"),
        size=len(content), sha1=hashlib.sha1(content).hexdigest(), date="2024-05-02T14:30:00+02:00",
        description="Austritt nach Pneumonie", event_codes=[Code(SNOMED, "386053000", "Evaluation procedure")],
        service_start="2024-04-20", service_stop="2024-05-02T10:00:00Z",
        authors=authors if authors is not None else [author()],
        source_patient=source_patient, source_patient_id=Identifier(f"urn:oid:{LOCAL_OID}", "L-4711"))
    return NewDocument(entry, content)


def author(gln: str = "7601000234438", family: str = "Muster", given: str = "Hans") -> Author:
    practitioner = {"resourceType": "Practitioner", "id": "pract",
                    "identifier": [{"system": "urn:oid:2.51.1.3", "value": gln}],
                    "name": [{"family": family, "given": [given], "prefix": ["Dr. med."]}],
                    "telecom": [{"system": "email", "value": "hans.muster@hopital-vs.ch"}]}
    organization = {"resourceType": "Organization", "id": "org", "name": "Hôpital du Valais",
                    "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{INSTITUTION_OID}"}]}
    role = {"resourceType": "PractitionerRole", "id": "role", "practitioner": {"reference": "#pract"},
            "organization": {"reference": "#org"},
            "code": [{"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "HCP"}]}],
            "specialty": [{"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.5", "code": "1050"}]}]}
    return Author({"reference": {"reference": "#role"}, "contained": [role, practitioner, organization]},
                  (family,), (given,))


def submission_set(**changes) -> SubmissionSet:
    values = dict(submission_set_id="0190c6f2-3b1e-7a4c-9d2e-aaaaaaaaaaaa",
                  unique_id="urn:oid:2.25.41417071716114447221111166662098401021", source_id="urn:oid:2.16.756.5.30.1.145",
                  patient_pid="", submission_time="2024-05-02T14:31:00+02:00",
                  content_type=Code(SNOMED, "71388002", "Procedure (procedure)"), authors=[author()],
                  title="Austritt Zeller")
    values.update(changes)
    return SubmissionSet(**values)


ENTRY_UUID = "urn:uuid:5b8e7f7a-9c3d-4e1f-8a2b-0c1d2e3f4a5b"
SET_ENTRY_UUID = "urn:uuid:0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a"
SET_UNIQUE_ID = "2.25.281629131911129366134131011916417381917"


def outgoing(doc: NewDocument | None = None, *, entry_uuid: str = ENTRY_UUID,
             replaces: str | None = None) -> OutgoingDocument:
    relations = (OutgoingRelation("replaces", replaces),) if replaces else ()
    return OutgoingDocument(doc or document(), entry_uuid, relations)


# -- recorded answers ------------------------------------------------------------------------------
def recorded_iti41_answer() -> tuple[str, bytes]:
    """The recorded ITI-41 success answer (`samples/ITI-41_response_raw.xml`): its HTTP Content-Type
    and body, line ends as recorded."""
    raw = xds_fixture("epr-by-example/samples/ITI-41_response_raw.xml").read_bytes()
    head, _, body = raw.partition(b"\n\n")
    content_type = next(line.split(b": ", 1)[1] for line in head.split(b"\n") if line.lower().startswith(b"content-type"))
    return content_type.decode(), body


def registry_answer(errors: list[tuple[str, str, str | None]] | None = None, *, status: str = "Failure",
                    multipart: bool = True, severity: str = "Error") -> HttpAnswer:
    """The recorded answer with its status replaced and a RegistryErrorList of (errorCode,
    codeContext, location) inserted in the platform's RegistryResponse shape."""
    content_type, body = recorded_iti41_answer()
    status_urn = {"Success": "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success",
                  "Failure": "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"}[status]
    listed = "".join(
        f'<ns2:RegistryError codeContext="{_attr(context)}" errorCode="{code}" '
        f'severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:{severity}"'
        + (f' location="{_attr(location)}"' if location else "") + "/>" for code, context, location in errors or [])
    old = b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>'
    new = f'status="{status_urn}">'.encode() + (f"<ns2:RegistryErrorList>{listed}</ns2:RegistryErrorList>".encode()
                                                  if listed else b"") + b"</ns2:RegistryResponse>"
    assert body.count(old) == 1
    body = body.replace(old, new)
    if multipart:
        return HttpAnswer(200, content_type, body)
    soap = body[body.index(b"<soap:Envelope"):body.index(b"</soap:Envelope>") + len(b"</soap:Envelope>")]
    return HttpAnswer(200, "application/soap+xml; charset=utf-8", soap)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def soap_fault(reason: str, *, code: str = "soap:Receiver", status: int = 500) -> HttpAnswer:
    body = (f'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault>'
            f"<soap:Code><soap:Value>{code}</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">{reason}"
            "</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>")
    return HttpAnswer(status, "application/soap+xml; charset=utf-8", body.encode())
