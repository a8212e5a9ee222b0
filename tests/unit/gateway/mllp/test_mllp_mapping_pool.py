"""What a mapping worker does: the happy path of a document message, pure; anything else is left to the
use-case (None), which answers and audits it."""

from functional.mllp_helpers import HOSPITAL, mdm
from gateway.mllp.mapping_pool import read_document
from gateway.mllp.senders import SenderRegistry
from conftest import HCP_GLN, LOCAL_SYSTEM

REGISTRY = SenderRegistry.from_json({"senders": [
    {"facility": "OTHER", "user_id": "other-feed", "principal_gln": HCP_GLN},
    {"facility": HOSPITAL, "user_id": "hopital-sion-feed", "principal_gln": HCP_GLN, "assigning_authority": LOCAL_SYSTEM},
]})


def test_a_document_from_a_known_sender_is_read_and_mapped_naming_its_sender():
    read = read_document(mdm(control_id="M-1", unique_id="urn:oid:2.25.1").encode(), REGISTRY, None)
    assert read.sender_index == 1 and REGISTRY.senders[1].user_id == "hopital-sion-feed"
    assert read.message.control_id == "M-1"
    document = read.submission.documents[0]
    assert (document.entry.unique_id, document.content) == ("urn:oid:2.25.1", b"%PDF-1.4 test")
    assert read.claim.identifiers[0].system == LOCAL_SYSTEM
    assert (read.claim.family, read.claim.given, read.claim.birth_date, read.claim.gender) == (
        "Muster", ("Anna",), "1980-05-17", "female")
    assert len(read.digest) == 64


def test_everything_else_is_left_to_the_use_case():
    adt = (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||ADT^A08^ADT_A01|A-1|P|2.5\rEVN|A08|20261120\r"
           "PID|1||L-1^^^H&2.16.756.5.30.1.999.2.1&ISO^PI||Muster^Anna||19800517|F\r").encode()
    for raw in (adt,
                mdm(control_id="M-2", unique_id="urn:oid:2.25.2", facility="NOBODY").encode(),  # unknown sender
                mdm(control_id="", unique_id="urn:oid:2.25.3").encode(),  # no MSH-10
                mdm(control_id="M-4", unique_id="").encode(),  # a mapping error (no TXA-12)
                mdm(control_id="M-5", unique_id="urn:oid:2.25.5", activity="20261320093000").encode(),  # month 13
                mdm(control_id="M" * 300, unique_id="urn:oid:2.25.6").encode(),  # an MSH-10 nobody can key by
                b"not HL7 at all"):
        assert read_document(raw, REGISTRY, None) is None
