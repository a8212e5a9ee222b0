"""HL7 v2 reading: normalising (BOM, line ends, MSH-18), the tokenizer, escape sequences, dates."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.infomed.hl7v2.acks import escape
from adapters.infomed.hl7v2.dates import fhir_date, fhir_datetime
from adapters.infomed.hl7v2.errors import CannotProcess, SenderMustFix
from adapters.infomed.hl7v2.escapes import unescape
from adapters.infomed.hl7v2.message import Message
from adapters.infomed.hl7v2.normalise import decode, normalise_bytes
from adapters.infomed.hl7v2.structures import structure_for

HEADER = "MSH|^~\\&|APP|FAC|EPR|EPR|20261120||MDM^T02^MDM_T10|ID-1|P|2.5|||||CHE|{charset}"


@pytest.mark.parametrize("raw", [b"MSH|a\rPID|b\r", b"MSH|a\nPID|b\n", b"MSH|a\r\nPID|b\r\n",
                                 b"\xef\xbb\xbfMSH|a\r\nPID|b", b"MSH|a\r\r\n\nPID|b\r\n\r\n"])
def test_bom_and_every_line_end_become_one_segment_separator(raw):
    assert normalise_bytes(raw) == b"MSH|a\rPID|b"


@pytest.mark.parametrize(("charset", "encoding", "expected_codec"), [
    ("8859/1", "iso-8859-1", "cp1252"), ("UNICODE UTF-8", "utf-8", "utf-8"),
    ("", "utf-8", "utf-8"), ("", "iso-8859-1", "cp1252"), ("ASCII", "iso-8859-1", "cp1252")])
def test_the_character_set_comes_from_msh_18_or_from_the_bytes(charset, encoding, expected_codec):
    raw = (HEADER.format(charset=charset) + "\rPID|1||L-1||Müller^Zoé\r").encode(encoding)
    text, codec = decode(raw)
    assert codec == expected_codec
    assert Message(text, codec).first("PID").component(5, 2) == "Zoé"


def test_an_unsupported_character_set_cannot_be_processed():
    with pytest.raises(CannotProcess) as refused:
        decode((HEADER.format(charset="KOI8-R") + "\r").encode())
    assert (refused.value.code, refused.value.location) == ("203", "MSH^1^18")


def test_utf_8_declared_but_latin_1_sent_is_refused_not_guessed():
    with pytest.raises(SenderMustFix) as refused:
        decode((HEADER.format(charset="UNICODE UTF-8") + "\rPID|1||L||Müller").encode("iso-8859-1"))
    assert (refused.value.code, refused.value.location) == ("102", "PID^1^5")
    assert "byte 0xFC in PID-5 is not a character of UTF-8" in refused.value.text


# -- what 8859/1 senders write: windows-1252 ---------------------------------------------------------
LATIN_1_LABELS = ["8859/1", "ISO-8859-1", "", "ASCII"]  # declared, spelt out, absent, claimed ASCII
UNDEFINED_IN_WINDOWS_1252 = [0x81, 0x8D, 0x8F, 0x90, 0x9D]
WINDOWS_1252_ONLY = [b for b in range(0x80, 0xA0) if b not in UNDEFINED_IN_WINDOWS_1252]


@pytest.mark.parametrize("charset", LATIN_1_LABELS)
def test_bytes_0x80_to_0x9f_labelled_latin_1_are_read_as_the_windows_1252_characters_senders_typed(charset):
    raw = HEADER.format(charset=charset).encode() + b"\rPID|1||L-1||D\x92Andrea^Zo\xe9||19800517|F\rNTE|1||" + bytes(
        WINDOWS_1252_ONLY) + b"\r"
    message = Message(*decode(raw))
    assert message.first("PID").component(5, 1) == "D’Andrea"
    assert message.first("PID").component(5, 2) == "Zoé"
    assert message.first("NTE").value(3) == "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
    assert not any(0x80 <= ord(c) <= 0x9F for c in message.text)  # no C1 control character left


@pytest.mark.parametrize("charset", ["8859/1", "ISO-8859-1"])
def test_a_hex_escape_of_a_windows_1252_byte_reads_as_its_character(charset):
    raw = (HEADER.format(charset=charset) + "\rPID|1||L-1||D\\X92\\Andrea\r").encode()
    assert Message(*decode(raw)).first("PID").component(5, 1) == "D’Andrea"


@pytest.mark.parametrize("charset", LATIN_1_LABELS)
@pytest.mark.parametrize("byte", UNDEFINED_IN_WINDOWS_1252)
def test_a_byte_windows_1252_leaves_undefined_is_refused_naming_where_it_is(charset, byte):
    raw = HEADER.format(charset=charset).encode() + b"\rPID|1||L-1||M" + bytes([byte]) + b"ller^Anna\r"
    with pytest.raises(SenderMustFix) as refused:
        decode(raw)
    assert (refused.value.code, refused.value.location, refused.value.ack_code) == ("102", "PID^1^5", "AE")
    assert f"byte 0x{byte:02X} in PID-5 is not a character of windows-1252" in refused.value.text


def test_an_undefined_byte_in_the_header_is_located_with_msh_numbering():
    raw = b"MSH|^~\\&|APP|FAC\x81|EPR|EPR|20261120||ADT^A08|ID-1|P|2.5\rPID|1\r"
    with pytest.raises(SenderMustFix) as refused:
        decode(raw)
    assert refused.value.location == "MSH^1^4"


@pytest.mark.parametrize("charset", ["8859/15", "UNICODE UTF-8"])
def test_other_declared_charsets_are_taken_at_their_word(charset):
    codec = "iso-8859-15" if charset == "8859/15" else "utf-8"
    raw = (HEADER.format(charset=charset) + "\rPID|1||L-1||Dupont €^Zoé\r").encode(codec)
    assert Message(*decode(raw)).first("PID").component(5, 1) == "Dupont €"


def test_the_tokenizer_numbers_msh_fields_as_the_standard_does():
    message = Message.parse((HEADER.format(charset="") + "\rPID|1||A^^^NS&1.2.3&ISO~B||F^G").encode())
    assert message.msh.raw(1) == "|" and message.msh.raw(2) == "^~\\&"
    assert message.message_type == ("MDM", "T02", "MDM_T10")
    assert message.control_id == "ID-1" and message.version == "2.5"
    pid = message.first("PID")
    assert pid.repetitions(3) == ["A^^^NS&1.2.3&ISO", "B"]
    assert (pid.component(3, 4, subcomponent=2), pid.component(3, 1, repetition=1)) == ("1.2.3", "B")
    assert pid.component(9, 3) == "" and pid.component(3, 1, repetition=7) == ""


def test_other_delimiters_declared_in_msh_2_are_used():
    message = Message.parse(b"MSH#*@!%#A#B\rPID#1##X*Y@Z*W")
    assert message.first("PID").component(3, 2) == "Y"
    assert message.first("PID").component(3, 1, repetition=1) == "Z"


def test_not_starting_with_msh_cannot_be_processed():
    with pytest.raises(CannotProcess):
        Message.parse(b"PID|1\rMSH|^~\\&|")


@pytest.mark.parametrize(("escaped", "plain"), [
    ("a\\F\\b", "a|b"), ("a\\S\\b", "a^b"), ("a\\T\\b", "a&b"), ("a\\R\\b", "a~b"), ("a\\E\\b", "a\\b"),
    ("line\\.br\\next", "line\nnext"), ("\\X4D\\\\X6FC3BC\\", "Moü"), ("\\H\\bold\\N\\", "bold"),
    ("keep \\Z99\\ as sent", "keep \\Z99\\ as sent")])
def test_escape_sequences_are_decoded(escaped, plain):
    assert unescape(escaped) == plain


def test_hex_escapes_decode_in_the_message_charset():
    assert unescape("\\XFC\\", charset="iso-8859-1") == "ü"


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))))
def test_what_the_ack_escapes_reads_back_unchanged(text):
    assert unescape(escape(text)) == text


@pytest.mark.parametrize(("value", "expected"), [
    ("200801311555+0215", "2008-01-31T15:55:00+02:15"), ("20261120", "2026-11-20"),
    ("20261120093000.123-0500", "2026-11-20T09:30:00.123-05:00"), ("2026", "2026"), ("202611", "2026-11"),
    ("2026112010", "2026-11-20T10:00:00+01:00"), ("2026072010", "2026-07-20T10:00:00+02:00"), ("", None)])
def test_hl7_timestamps_become_fhir_dates(value, expected):
    assert fhir_datetime(value, where=("TXA", 4)) == expected


@pytest.mark.parametrize(("value", "reason"), [
    ("20161301", "month 13"), ("20160230", "day 30"), ("2016123124", "hour 24"), ("00000101", "year 0000"),
    ("20260329023000", "did not exist in Europe/Zurich")])
def test_an_impossible_timestamp_is_an_ae_naming_its_field(value, reason):
    with pytest.raises(SenderMustFix) as error:
        fhir_datetime(value, where=("TXA", 4))
    assert (error.value.ack_code, error.value.code, error.value.location) == ("AE", "102", "TXA^1^4")
    assert reason in error.value.text


def test_a_birth_date_is_the_date_written_whatever_time_follows():
    assert fhir_date("202603290230", where=("PID", 7)) == "2026-03-29"  # a skipped local hour: the date stands
    assert fhir_date("18900101000000", where=("PID", 7)) == "1890-01-01"


def test_a_timestamp_that_is_not_one_is_an_error_naming_its_field():
    with pytest.raises(SenderMustFix) as error:
        fhir_date("31.01.2008", where=("PID", 7))
    assert (error.value.code, error.value.location) == ("102", "PID^1^7")


@pytest.mark.parametrize(("code", "trigger", "structure"), [
    ("MDM", "T02", "MDM_T02"), ("MDM", "T06", "MDM_T02"), ("MDM", "T10", "MDM_T02"), ("ORU", "R01", "ORU_R01"),
    ("ADT", "A08", "ADT_A01"), ("ADT", "A40", "ADT_A39")])
def test_the_structure_follows_the_trigger_not_msh_9_3(code, trigger, structure):
    assert structure_for(code, trigger) == structure


@pytest.mark.parametrize(("code", "trigger", "error"), [("ADT", "A01", "201"), ("SIU", "S12", "200"),
                                                        ("MDM", "T01", "201")])
def test_other_messages_cannot_be_processed(code, trigger, error):
    with pytest.raises(CannotProcess) as refused:
        structure_for(code, trigger)
    assert refused.value.code == error


def test_an_ack_carries_msa_and_err_in_both_the_v2_3_and_the_v2_5_layouts():
    from adapters.infomed.hl7v2.acks import build_ack

    message = Message.parse("MSH|^~\\&|KIS|H|EPR|EPR|20261120||MDM^T02|C|P|2.3|||||CHE|8859/1".encode())
    error = SenderMustFix("OBX-5.5 does not | decode", code="102", segment="OBX", field=5, component=5, sequence=2)
    ack = build_ack(message, "AE", text="see ERR", error=error).decode("iso-8859-1").split("\r")
    assert ack[0].split("|")[2:6] == ["EPR-GATEWAY", "EPR", "KIS", "H"]
    assert ack[0].split("|")[8:12] == ["ACK^T02^ACK", ack[0].split("|")[9], "P", "2.3"]
    assert ack[0].split("|")[17] == "8859/1"
    assert ack[1] == "MSA|AE|C|see ERR"
    assert ack[2].split("|") == ["ERR", "OBX^2^5^102&Data type error&HL70357", "OBX^2^5^5",
                                 "102^Data type error^HL70357", "E", "", "", "", "OBX-5.5 does not \\F\\ decode"]


def test_a_hex_escape_without_msh_18_reads_as_the_same_byte_sent_raw():
    """Without MSH-18 a raw byte that is not UTF-8 is read as windows-1252 (normalise.decode); its \\Xhh\\
    escape is read the same way, not replaced by U+FFFD. Valid UTF-8 escapes stay UTF-8."""
    header = "MSH|^~\\&|LAB|HOSP|GW|EPR|20250101120000||ADT^A08^ADT_A01|1|P|2.5"
    escaped = Message(*decode((header + "\rPID|1||L-1||D\\X92\\Andrea^M\\XC3BC\\ller\r").encode()))
    raw = Message(*decode(header.encode() + b"\rPID|1||L-1||D\x92Andrea\r"))
    assert escaped.first("PID").component(5, 1) == raw.first("PID").component(5, 1) == "D’Andrea"
    assert escaped.first("PID").component(5, 2) == "Müller"


@pytest.mark.parametrize("charset, escape", [("UNICODE UTF-8", "\\XFF\\"), ("UNICODE UTF-8", "\\X92\\"),
                                             ("8859/1", "\\X81\\"), ("", "\\X81\\")])
def test_a_hex_escape_that_is_no_character_of_the_charset_is_refused_naming_where_it_is(charset, escape):
    """Before, such bytes became U+FFFD in the stored value: a character silently lost."""
    header = f"MSH|^~\\&|LAB|HOSP|GW|EPR|20250101120000||ADT^A08^ADT_A01|1|P|2.5||||||{charset}"
    message = Message(*decode((header + f"\rPID|1||L-1||M{escape}ller^Anna\r").encode()))
    with pytest.raises(SenderMustFix) as refused:
        message.first("PID").component(5, 1)
    assert (refused.value.code, refused.value.location, refused.value.ack_code) == ("102", "PID^1^5", "AE")
    assert f"the escape {escape} is not a character of" in refused.value.text
    assert message.first("PID").component(5, 2) == "Anna"
