"""MDM/ORU → the record's model (ED in Base64, Hex and plain text, TXA fields, code tables) and ADT."""

import base64
import binascii
import random
import time

import pytest

from adapters.cara.model import Code, Identifier
from adapters.infomed.hl7v2.adt import merge, patient_feed
from adapters.infomed.hl7v2.code_tables import CodeTables, mime_type
from adapters.infomed.hl7v2.documents import SenderProfile, document_message
from adapters.infomed.hl7v2.errors import CannotProcess, SenderMustFix
from adapters.infomed.hl7v2.identifiers import MAX_IDENTIFIERS
from adapters.infomed.hl7v2.message import Message

PROFILE = SenderProfile(source_id="urn:oid:2.16.756.5.30.1.999.9", facility_type=Code("s", "22232009"),
                        practice_setting=Code("s", "394802001"), language="de-CH",
                        assigning_authority="urn:oid:2.16.756.5.30.1.999.2.1")
PDF = b"%PDF-1.4 body \x00\xff"


def mdm(*, trigger="T02", txa=None, obx=None, pid="PID|1||L-1||Muster^Anna||19800517|F") -> Message:
    txa = txa or ("TXA|1|DS|AP|20261120093000+0100|||||7601000000002^Favre^Luc|||urn:oid:2.25.1|urn:oid:2.25.0"
                  "||||AU|R|AV||||||Austrittsbericht")
    obx = obx or f"OBX|1|ED|DOC||^application^pdf^Base64^{base64.b64encode(PDF).decode()}||||||F"
    return Message.parse("\r".join([
        f"MSH|^~\\&|KIS|H|EPR|EPR|20261120100000+0100||MDM^{trigger}|C-1|P|2.5", "EVN|T02", pid, txa, obx]).encode())


def mapped(message, tables=CodeTables()):
    return document_message(message, sender_key="H", profile=PROFILE, tables=tables)


def test_an_mdm_t02_becomes_one_document_with_the_txa_metadata():
    result = mapped(mdm())
    document = result.submission.documents[0]
    entry = document.entry
    assert result.patient_identifiers == (Identifier("urn:oid:2.16.756.5.30.1.999.2.1", "L-1"),)
    assert document.content == PDF and document.relations == ()
    assert (entry.unique_id, entry.mime_type, entry.title, entry.language) == (
        "urn:oid:2.25.1", "application/pdf", "Austrittsbericht", "de-CH")
    assert (entry.type_code.code, entry.class_codes[0].code) == ("373942005", "371531000")
    assert entry.confidentiality_level == "restricted"  # TXA-18 R
    assert entry.creation_time == "2026-11-20T09:30:00+01:00"
    assert entry.authors[0].resource["contained"][0]["identifier"] == [{"system": "urn:oid:2.51.1.3",
                                                                        "value": "7601000000002"}]
    assert (entry.authors[0].family, entry.authors[0].given) == (("Favre",), ("Luc",))
    assert entry.source_patient["name"] == [{"family": "Muster", "given": ["Anna"]}]
    assert (entry.facility_type, entry.practice_setting) == (PROFILE.facility_type, PROFILE.practice_setting)
    assert result.submission.submission_set.source_id == PROFILE.source_id


def test_the_submission_set_of_a_repeated_message_has_the_same_unique_id():
    assert (mapped(mdm()).submission.submission_set.unique_id
            == mapped(mdm()).submission.submission_set.unique_id)


@pytest.mark.parametrize(("trigger", "code"), [("T10", "replaces"), ("T06", "appends")])
def test_t10_replaces_and_t06_appends_to_txa_13(trigger, code):
    relation = mapped(mdm(trigger=trigger)).submission.documents[0].relations[0]
    assert (relation.code, relation.target_unique_id) == (code, "urn:oid:2.25.0")


def test_a_t10_without_txa_13_is_an_error():
    txa = "TXA|1|DS|AP|20261120||||||||urn:oid:2.25.1|||||AU"
    with pytest.raises(SenderMustFix) as error:
        mapped(mdm(trigger="T10", txa=txa))
    assert error.value.location == "TXA^1^13"


@pytest.mark.parametrize(("obx", "content", "mime"), [
    (f"OBX|1|ED|D||^AP^PDF^Base64^{base64.b64encode(PDF).decode()}", PDF, "application/pdf"),
    (f"OBX|1|ED|D||^application^pdf^Hex^{PDF.hex()}", PDF, "application/pdf"),
    ("OBX|1|ED|D||^TEXT^PLAIN^A^Befund\\.br\\Zeile 2 \\T\\ mehr", "Befund\nZeile 2 & mehr".encode(), "text/plain"),
    (f"OBX|1|ED|D||App5^NS^Octet-stream^Base64^{base64.b64encode(PDF).decode()}", PDF, "application/octet-stream"),
])
def test_ed_payloads_in_base64_hex_and_plain_text(obx, content, mime):
    document = mapped(mdm(obx=obx)).submission.documents[0]
    assert (document.content, document.entry.mime_type, document.entry.size) == (content, mime, len(content))


def test_a_valid_base64_ed_payload_does_not_take_the_standard_librarys_decoder(monkeypatch):
    document = random.Random(7).randbytes(50_000)  # the bench's size: the standard library costs ~0.2-0.35 ms
    message = mdm(obx=f"OBX|1|ED|D||^AP^PDF^Base64^{base64.b64encode(document).decode()}")
    monkeypatch.setattr(binascii, "a2b_base64", None)  # base64.b64decode calls it too
    assert mapped(message).submission.documents[0].content == document


@pytest.mark.parametrize(("txa_or_obx", "location", "code"), [
    ({"obx": "OBX|1|ED|D||^application^pdf^Base64^not*base64"}, "OBX^1^5^5", "102"),
    ({"obx": "OBX|1|ED|D||^application^pdf^Base64^"}, "OBX^1^5^5", "101"),
    ({"obx": "OBX|1|ED|D||^application^pdf^UUE^abc"}, "OBX^1^5^4", "103"),
    ({"obx": "OBX|1|ED|D||^video^mp4^Base64^AAAA"}, "OBX^1^5^2", "103"),
    ({"txa": "TXA|1|ZZ|AP|20261120||||||||urn:oid:2.25.1"}, "TXA^1^2", "103"),
    ({"txa": "TXA|1||AP|20261120||||||||urn:oid:2.25.1"}, "TXA^1^2", "101"),
    ({"txa": "TXA|1|DS|AP|20261120||||||||urn:oid:2.25.1|||||IP"}, "TXA^1^17", "103"),
    ({"txa": "TXA|1|DS|AP|20261120||||||||urn:oid:2.25.1||||||X"}, "TXA^1^18", "103"),
    ({"txa": "TXA|1|DS|AP|20261120||||||||urn:oid:2.25.1|||||AU||CA"}, "TXA^1^19", "103"),
    ({"txa": "TXA|1|DS|AP|20261120"}, "TXA^1^12", "101"),
    ({"pid": "PID|1||L-1^^^BCBS^MR"}, "PID^1^3^4", "103"),
    ({"pid": "PID|1||"}, "PID^1^3", "101"),
])
def test_what_the_sender_must_fix_names_its_field(txa_or_obx, location, code):
    with pytest.raises(SenderMustFix) as error:
        mapped(mdm(**txa_or_obx))
    assert (error.value.location, error.value.code, error.value.ack_code) == (location, code, "AE")


def test_confidentiality_codes_of_table_0272():
    levels = {}
    for value in ("", "U", "R", "V"):
        txa = f"TXA|1|DS|AP|20261120||||||||urn:oid:2.25.1||||||{value}"
        levels[value] = mapped(mdm(txa=txa)).submission.documents[0].entry.confidentiality_level
    assert levels == {"": "normal", "U": "normal", "R": "restricted", "V": "secret"}


def test_text_observations_of_an_mdm_are_a_plain_text_document():
    message = mdm(obx="OBX|1|TX|T||Erste Zeile\rOBX|2|TX|T||Zweite \\F\\ Zeile")
    document = mapped(message).submission.documents[0]
    assert (document.content, document.entry.mime_type) == ("Erste Zeile\nZweite | Zeile".encode(), "text/plain")


def test_an_oru_without_an_embedded_report_cannot_be_processed():
    message = Message.parse(b"MSH|^~\\&|LIS|H|EPR|EPR|20261120||ORU^R01|C|P|2.5\rPID|1||L-1\r"
                            b"OBR|1||F-1\rOBX|1|NM|HB||135|g/l")
    with pytest.raises(CannotProcess) as refused:
        mapped(message)
    assert refused.value.ack_code == "AR"


def oru(filler: str) -> Message:
    return Message.parse(("MSH|^~\\&|LIS|H|EPR|EPR|20261120||ORU^R01|C|P|2.5\rPID|1||L-1\r"
                          f"OBR|1||{filler}\rOBX|1|ED|R||^AP^PDF^Base64^{base64.b64encode(PDF).decode()}").encode())


def test_an_oru_report_is_a_laboratory_report_named_by_txa_12_or_obr_3():
    entry = mapped(oru("1.2.756.77.2024")).submission.documents[0].entry
    assert (entry.unique_id, entry.type_code.code, entry.creation_time) == (
        "urn:oid:1.2.756.77.2024", "4241000179101", "2026-11-20")


def test_an_oru_named_by_a_filler_number_that_is_no_oid_nor_uuid_is_refused_at_obr_3():
    """The CH profile's masterIdentifier is urn:oid: or urn:uuid:; a bare order number has no form there."""
    with pytest.raises(SenderMustFix) as refused:
        mapped(oru("FILLER-77"))
    assert (refused.value.ack_code, refused.value.code, refused.value.location) == ("AE", "102", "OBR^1^3")


def test_code_tables_are_configurable_and_an_unmapped_code_is_not_defaulted():
    tables = CodeTables.configured({"document_types": {"ZZ": {"type": {"code": "1", "display": "One"},
                                                              "class": {"code": "2"}}}})
    txa = "TXA|1|ZZ|AP|20261120||||||||urn:oid:2.25.1"
    assert mapped(mdm(txa=txa), tables).submission.documents[0].entry.type_code.code == "1"
    assert tables.document_type("QQ") is None
    assert (mime_type("AP", "PDF"), mime_type("application", "pdf"), mime_type("XX", "pdf")) == (
        "application/pdf", "application/pdf", None)


ADT = "MSH|^~\\&|KIS|H|EPR|EPR|20261120||ADT^{t}|C|P|2.5\rEVN|{t}\r{pid}\r{mrg}"
PID = ("PID|1||L-7^^^H&2.16.756.5.30.1.999.2.1&ISO^PI~761337610455555558^^^EPR&2.16.756.5.30.1.127.3.10.3&ISO"
       "~7561234567897^^^AHV&2.16.756.5.32&ISO||Favre^Jeanne^Marie||19700101|F")


def test_an_a08_is_a_feed_of_the_senders_local_id_with_spid_and_ahvn13():
    feed = patient_feed(Message.parse(ADT.format(t="A08", pid=PID, mrg="").encode()))
    assert feed.source == Identifier("urn:oid:2.16.756.5.30.1.999.2.1", "L-7")
    incoming = feed.incoming
    assert (incoming.spid, incoming.family, incoming.given, incoming.birth_date, incoming.gender) == (
        "761337610455555558", "Favre", ("Jeanne", "Marie"), "1970-01-01", "female")
    assert incoming.identifiers == (Identifier("urn:oid:2.16.756.5.32", "7561234567897"),)


def test_an_a08_without_a_local_id_or_with_an_unknown_sex_is_an_error():
    spid_only = "PID|1||761337610455555558^^^EPR&2.16.756.5.30.1.127.3.10.3&ISO||Favre^J||19700101|F"
    with pytest.raises(SenderMustFix):
        patient_feed(Message.parse(ADT.format(t="A08", pid=spid_only, mrg="").encode()))
    with pytest.raises(SenderMustFix) as error:
        patient_feed(Message.parse(ADT.format(t="A08", pid=PID.replace("|F", "|Q"), mrg="").encode()))
    assert error.value.location == "PID^1^8"


def test_an_a40_names_the_survivor_in_pid_3_and_the_retired_id_in_mrg_1():
    result = merge(Message.parse(ADT.format(t="A40", pid="PID|1||L-1", mrg="MRG|L-2").encode()),
                   assigning_authority="urn:oid:1.2.3")
    assert (result.surviving, result.retired) == ((Identifier("urn:oid:1.2.3", "L-1"),),
                                                  (Identifier("urn:oid:1.2.3", "L-2"),))
    with pytest.raises(SenderMustFix):
        merge(Message.parse(ADT.format(t="A40", pid="PID|1||L-1", mrg="").encode()))


# -- repetitions: read in linear time, and bounded where each one costs the MPI a look-up ----------------
def _cx_list(count: int) -> str:
    return "~".join(f"ID{n}^^^NS&2.16.756.5.30.1.{n}&ISO" for n in range(count))


def _cpu_to_read_every_repetition(count: int) -> float:
    """CPU seconds (best of three) to read every CX repetition of a PID-3 of `count` the way a CX list is read."""
    message = Message.parse(ADT.format(t="A08", pid=f"PID|1||{_cx_list(count)}||F^G||19700101|F", mrg="").encode())
    best = float("inf")
    for _ in range(3):
        pid = Message(message.text, message.charset).first("PID")  # a fresh segment: nothing read yet
        started = time.process_time()
        for index in range(count):
            pid.component(3, 1, repetition=index)
            pid.component(3, 4, repetition=index, subcomponent=2)
        best = min(best, time.process_time() - started)
    return best


def test_reading_every_repetition_of_a_field_costs_its_length_not_its_square():
    small, large = _cpu_to_read_every_repetition(2_000), _cpu_to_read_every_repetition(16_000)
    # 8 times the repetitions: ~8 times the CPU when linear, ~64 when each read splits the field again.
    assert large / small < 20, (small, large)


@pytest.mark.parametrize(("message", "location"), [
    (ADT.format(t="A08", pid=f"PID|1||L-1~{_cx_list(MAX_IDENTIFIERS)}||F^G||19700101|F", mrg=""), "PID^1^3"),
    (ADT.format(t="A40", pid="PID|1||L-1", mrg=f"MRG|{_cx_list(MAX_IDENTIFIERS + 1)}"), "MRG^1^1"),
])
def test_an_identifier_list_longer_than_the_bound_is_an_error_naming_its_field(message, location):
    read = patient_feed if "A08" in message else merge
    with pytest.raises(SenderMustFix) as error:
        read(Message.parse(message.encode()), assigning_authority="urn:oid:1.2.3")
    assert (error.value.location, error.value.code) == (location, "102")
    assert f"{MAX_IDENTIFIERS + 1} repetitions" in error.value.text


def test_an_identifier_list_at_the_bound_is_read_whole():
    pid = f"PID|1||L-1~{_cx_list(MAX_IDENTIFIERS - 1)}||F^G||19700101|F"
    feed = patient_feed(Message.parse(ADT.format(t="A08", pid=pid, mrg="").encode()), assigning_authority="urn:oid:1.2.3")
    assert feed.source == Identifier("urn:oid:1.2.3", "L-1")
    assert len(feed.incoming.identifiers) == MAX_IDENTIFIERS - 1
