"""The public HL7 v2 samples (read in place) through the bridge over TCP: each gets its expected ACK;
the document ones, with a PDF injected where their ED is empty, are findable by ITI-67. hl7apy, the
reference parser, reads what the focused tokenizer reads."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from adapters.infomed.hl7v2.message import Message
from adapters.infomed.hl7v2.normalise import normalise_bytes
from adapters.infomed.hl7v2.structures import parse_with_hl7apy
from conftest import FIXTURES, HCP_GLN, LOCAL_SYSTEM, POLICY_ADMIN, SPID, running_gateway, sqlite_url
from functional.mllp_helpers import MllpClient, ack_fields, running_listener
from gateway.samples import patient_feed, pdf_document

SAMPLES = FIXTURES / "hl7v2"
ORU_SYSTEM = "urn:oid:2.16.840.1.114222.4.3.3.5.1.2"
ORU_SPID = "761337610466666665"
PDF = pdf_document("Injected report", ["The sample's ED was empty."])

SENDERS = [
    {"facility": "XYZHOSPITAL", "user_id": "xyz-feed", "principal_gln": HCP_GLN, "assigning_authority": LOCAL_SYSTEM},
    {"facility": "IA Public Health Lab", "user_id": "ia-lab-feed", "principal_gln": HCP_GLN},
    {"facility": "Ntierprise Clinic", "user_id": "ntierprise-feed", "principal_gln": HCP_GLN},
    {"facility": "GHHSFacility", "user_id": "ghh-feed", "principal_gln": HCP_GLN},
]

# sample → (ACK code and HL7 error code as sent, the same with a PDF injected into an empty ED)
EXPECTED = {
    "ADT-A01-02.hl7": (("AR", "201"), None),  # A01 (admission) is not an event this gateway takes
    "ADT-A40-01.hl7": (("AE", "103"), None),  # PID-3 authority BCBS has no OID: the sender must map it
    "LAB-ORU-1.hl7": (("AR", "207"), None),  # MSH-4 empty: no sender to identify
    "MDM-T02-01.hl7": (("AE", "101"), ("AA", None)),  # empty ED; with a PDF: stored
    "MDM-T02-02.hl7": (("AA", None), None),  # TX observations: a plain-text document
    "MDM-T10-01.hl7": (("AE", "101"), ("AE", "204")),  # with a PDF: TXA-13 names no document here
    # TXA-12 `018840` is neither an OID nor a UUID: the CH masterIdentifier has no form for it (AE 102)
    "ORU-R01-01.hl7": (("AE", "101"), ("AE", "102")),
}


def inject(raw: bytes, content: bytes) -> bytes:
    """The sample with `content` as OBX-5.5 of its (empty) ED observation."""
    lines = normalise_bytes(raw).split(b"\r")
    for index, line in enumerate(lines):
        fields = line.split(b"|")
        if fields[0] == b"OBX" and len(fields) > 5 and fields[2] == b"ED":
            parts = (fields[5].split(b"^") + [b""] * 5)[:5]
            parts[4] = base64.b64encode(content)
            fields[5] = b"^".join(parts)
            lines[index] = b"|".join(fields)
    return b"\r".join(lines) + b"\r"


@pytest.fixture
def bridge(tmp_path):
    senders = tmp_path / "senders.json"
    senders.write_text(json.dumps({"senders": SENDERS}))
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders) as gateway:
        # as the samples' PID names the patient (the bridge checks a document's demographics against the MPI)
        gateway.register_patient(local_id="987654321", family="PROSOLV", given="SAMPLE", birth_date="1972-12-01",
                                 gender="male")
        feed = patient_feed(spid=ORU_SPID, local_system=ORU_SYSTEM, local_id="14", family="Finn",
                            given="Huckleberry", birth_date="1963-08-15", gender="male")
        assert gateway.client.put(f"/fhir/Patient?identifier={ORU_SYSTEM}|14", content=orjson.dumps(feed),
                                  headers=gateway.as_hcp()).status_code == 201
        gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=ORU_SPID)
        gateway.grant(ORU_SPID, HCP_GLN, "restricted")
        with running_listener(gateway.runtime) as address:
            yield gateway, address


def answer(address, message: bytes) -> tuple[str, str | None]:
    client = MllpClient(address)
    ack = client.send(message)
    client.close()
    fields = ack_fields(ack)
    return fields["MSA"][1], fields["ERR"][3].split("^")[0] if "ERR" in fields else None


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_each_sample_gets_its_expected_ack(bridge, sample):
    _, address = bridge
    assert answer(address, (SAMPLES / sample).read_bytes()) == EXPECTED[sample][0]


@pytest.mark.parametrize("sample", sorted(s for s, (_, injected) in EXPECTED.items() if injected))
def test_a_sample_with_a_pdf_injected_into_its_empty_ed(bridge, sample):
    _, address = bridge
    assert answer(address, inject((SAMPLES / sample).read_bytes(), PDF)) == EXPECTED[sample][1]


@pytest.mark.parametrize(("sample", "spid", "unique_id", "mime", "content"), [
    # TXA-12 sent as a bare OID is served as the uniqueId MHD knows: urn:oid:…
    ("MDM-T02-01.hl7", SPID, "urn:oid:1.2.840.317.5947431.51.20080131160038", "application/pdf", PDF),
])
def test_the_stored_samples_are_findable_by_iti_67_and_retrievable(bridge, sample, spid, unique_id, mime, content):
    gateway, address = bridge
    assert answer(address, inject((SAMPLES / sample).read_bytes(), PDF))[0] == "AA"
    response = gateway.find(spid)
    entries = [e["resource"] for e in response.json()["entry"]]
    assert [(e["masterIdentifier"]["value"], e["content"][0]["attachment"]["contentType"]) for e in entries] == [
        (unique_id, mime)]
    url = entries[0]["content"][0]["attachment"]["url"]
    assert gateway.client.get(url[url.index("/fhir/"):], headers=gateway.as_hcp()).content == content


def test_the_text_observations_of_mdm_t02_02_are_its_document(bridge):
    gateway, address = bridge
    assert answer(address, (SAMPLES / "MDM-T02-02.hl7").read_bytes()) == ("AA", None)
    entry = gateway.find(SPID).json()["entry"][0]["resource"]
    url = entry["content"][0]["attachment"]["url"]
    text = gateway.client.get(url[url.index("/fhir/"):], headers=gateway.as_hcp()).content
    assert text == (b"Toilet cylinder crackers model step-mother visor opening communication\n"
                    b"Columnist draft inn brown income ikebana circulation prince")


@pytest.mark.parametrize("sample", ["ADT-A40-01.hl7", "LAB-ORU-1.hl7", "MDM-T02-01.hl7", "MDM-T02-02.hl7",
                                    "MDM-T10-01.hl7"])
def test_hl7apy_reads_the_fields_the_tokenizer_reads(sample):
    message = Message.parse((SAMPLES / sample).read_bytes())
    code, trigger, _ = message.message_type
    reference = parse_with_hl7apy(message.text, code=code, trigger=trigger)
    segments = {s.name: s for s in reference.children}
    assert segments["PID"].pid_3.value == message.first("PID").raw(3)
    assert segments["MSH"].msh_10.value == message.control_id
    if "TXA" in segments:
        assert segments["TXA"].txa_12.value == message.first("TXA").value(12)
        assert segments["TXA"].txa_13.value == message.first("TXA").value(13)
