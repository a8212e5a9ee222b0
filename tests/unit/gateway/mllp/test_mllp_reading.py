"""Reading a document message for the use-cases: which message it is (digest), dates the record can
hold, the field to name when its content could not be stored, who it says its patient is."""

import pytest

from adapters.cara.model import Identifier
from adapters.infomed.hl7v2.errors import SenderMustFix
from adapters.infomed.hl7v2.message import Message
from functional.mllp_helpers import mdm
from gateway.mllp import reading


def parsed(**changes) -> Message:
    return Message.parse(mdm(**{"control_id": "C-1", "unique_id": "urn:oid:2.25.1", **changes}).encode())


def test_the_same_message_has_the_same_digest_whatever_msh_7_charset_or_line_ends():
    first = reading.digest(parsed())
    assert reading.digest(parsed(sent="20270101000000+0100")) == first
    assert reading.digest(parsed(separator="\r\n")) == first
    # the same text sent as UTF-8 and as ISO-8859-1 (no MSH-18: each is recognised) is the same message
    text = mdm(control_id="C-1", unique_id="urn:oid:2.25.1", family="Zoé")
    as_utf8, as_latin1 = Message.parse(text.encode()), Message.parse(text.encode("latin-1"))
    assert (as_utf8.charset, as_latin1.charset) == ("utf-8", "cp1252")  # Latin-1 bytes read as windows-1252
    assert reading.digest(as_utf8) == reading.digest(as_latin1) != first


@pytest.mark.parametrize("change", [{"unique_id": "urn:oid:2.25.2"}, {"content": b"%PDF-1.4 other"},
                                    {"activity": "20261120093001+0100"}, {"control_id": "C-2"}])
def test_any_other_difference_is_another_message(change):
    assert reading.digest(parsed(**change)) != reading.digest(parsed())


@pytest.mark.parametrize(("field", "value"), [
    ("activity", "20261320093000+0100"), ("activity", "20260230093000+0100"), ("activity", "20261120240000+0100"),
    ("activity", "20261231235961+0000"), ("activity", "00000101000000+0000"), ("sent", "20261301000000+0100"),
    ("birth", "19801301"), ("birth", "1980-05-17"),
])
def test_an_impossible_date_is_refused_naming_its_field_never_its_value(field, value):
    where = {"activity": "TXA^1^4", "sent": "MSH^1^7", "birth": "PID^1^7"}[field]
    with pytest.raises(SenderMustFix) as refused:
        reading.require_possible_dates(parsed(**{field: value}), reading.DOCUMENT_DATES)
    assert (refused.value.location, refused.value.code) == (where, "102")
    assert value not in refused.value.text


def test_possible_dates_pass():
    reading.require_possible_dates(parsed(activity="20240229235959+0100", birth="1980"), reading.DOCUMENT_DATES)


@pytest.mark.parametrize(("control_id", "refused"), [("C" * 199, False), ("C" * 200, True), ("", True),
                                                     ("C\\X0D\\1", True), ("MSG-000001", False)])
def test_msh_10_must_be_a_key_the_answers_can_be_kept_under(control_id, refused):
    message = parsed(control_id=control_id)
    if refused:
        with pytest.raises(SenderMustFix) as error:
            reading.require_control_id(message)
        assert error.value.location == "MSH^1^10"
    else:
        reading.require_control_id(message)


def test_a_content_failure_names_the_stored_id_that_caused_it_or_else_the_message():
    too_long = reading.content_refusal(parsed(unique_id="urn:oid:2.25." + "1" * 300), ValueError("x"))
    with_nul = reading.content_refusal(parsed(unique_id="urn:oid:2.25.1\\X00\\"), ValueError("x"))
    parent = reading.content_refusal(parsed(trigger="T10", parent="urn:oid:2.25.\\X01\\"), ValueError("x"))
    unknown = reading.content_refusal(parsed(), TypeError("the words of a deep error: Muster"))
    assert [r.location for r in (too_long, with_nul, parent)] == ["TXA^1^12", "TXA^1^12", "TXA^1^13"]
    assert (unknown.location, unknown.code, unknown.ack_code) == ("", "102", "AE")
    assert "TypeError" in unknown.text and "Muster" not in unknown.text


def test_the_claim_is_pid_3_with_pid_5_7_8():
    identifiers = (Identifier("urn:oid:2.16.756.5.30.1.999.2.1", "L-1"),)
    claim = reading.claim(parsed(family="Favre", given="Luc", birth="19700101", sex="M"), identifiers)
    assert (claim.identifiers, claim.family, claim.given, claim.birth_date, claim.gender) == (
        identifiers, "Favre", ("Luc",), "1970-01-01", "male")
    bare = reading.claim(parsed(family="", given="", birth="", sex=""), identifiers)
    assert (bare.family, bare.given, bare.birth_date, bare.gender) == (None, (), None, None)


def _digest_of_the_text(message) -> str:
    """The digest as its definition says: the decoded text, MSH-7 blanked, encoded as UTF-8."""
    import hashlib

    head, cr, rest = message.text.partition("\r")
    fields = head.split(message.delimiters.field)
    fields[6] = ""
    return hashlib.sha256((message.delimiters.field.join(fields) + cr + rest).encode("utf-8", "surrogatepass")).hexdigest()


@pytest.mark.parametrize("raw", [
    b"MSH|^~\\&|KIS|H|EPR|EPR|20261120100000||MDM^T02|1|P|2.5\rPID|1||L-1||Muster^Anna\rOBX|1|ED|x||QUJD\r",
    "MSH|^~\\&|KIS|H|EPR|EPR|20261120100000||MDM^T02|1|P|2.5|||||CHE|UNICODE UTF-8\rPID|1||L-1||Gaillard^Valérie\r"
    "OBX|1|ED|x||QUJD\r".encode("utf-8"),
    "MSH|^~\\&|KIS|H|EPR|EPR|20261120100000||MDM^T02|1|P|2.5\rPID|1||L-1||Zürcher^Jörg\r".encode("utf-8"),
    "MSH|^~\\&|KIS|H|EPR|EPR|20261120100000||MDM^T02|1|P|2.5|||||CHE|8859/1\rPID|1||L-1||D’Andrea^Zoé\r".encode("cp1252"),
    b"MSH|^~\\&|KIS|H|EPR|EPR|20261120100000||ADT^A08|1|P|2.5",
])
def test_the_digest_read_from_the_bytes_is_the_digest_of_the_text(raw):
    """The digest hashes the UTF-8 the message was read from instead of encoding its text again: the same
    value (answers kept under it before still match), whatever the charset."""
    parsed = Message.parse(raw)
    assert reading.digest(parsed) == _digest_of_the_text(parsed)
    assert reading.digest(Message(parsed.text, parsed.charset)) == reading.digest(parsed)
