"""Document bytes from Base64 (ITI-65 Binary.data, HL7 v2 ED): pybase64 decodes, and every input has
the same outcome as with the standard-library decoding the gateway used before (the same bytes, or a
refusal the callers catch as binascii.Error / ValueError)."""

import base64
import binascii
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.cara.base64_strict import b64decode_strict, b64decode_strict_wrapped
from adapters.cara.mhd_rules import decode_binary

DOCUMENT = random.Random(12).randbytes(50_000)
ENCODED = base64.b64encode(DOCUMENT).decode()
WRAPPED = "\r\n".join(ENCODED[i:i + 76] for i in range(0, len(ENCODED), 76))

EDGE_CASES = [
    "", "QQ==", "QQ=", "QQ", "Q", "QUI=", "QUI", "QUJD", "QUJDRA==", "QR==", "QUJ=", "QUJE=",
    "AAAA=", "AAAA==", "AAAA===", "=", "==", "===", "====", "=QUJD", "QUJD=RA==", "QQ==QQ==", "QQ==\n",
    " QUJD", "QUJD ", "QU JD", "QUJD\nREVG", "QUJD\r\nREVG", "\tQUJD\t", "QUJD\x0bREVG", "QUJD\x0cREVG",
    "QUJD\x00", "QUJD\u00a0REVG", "QUJD\u2028REVG",
    "-_-_", "+/+/", "QUJD-_8=", "QUJD+/8=", "Pz8_", "Pz8/",
    "é", "QUJDé", "ＱＵＪＤ", "QUJD\u0130", "QUJD*", "QUJD~", "QUJD^", "QUJD|", "QUJD\\",
    ENCODED, WRAPPED, ENCODED + "=", ENCODED[:-1], ENCODED[:-2] + "*=", ENCODED.replace("+", "-").replace("/", "_"),
]


def _standard_strict(data):
    """ITI-65 before pybase64 (mhd_rules.decode_binary)."""
    return base64.b64decode(data, validate=True)


def _standard_strict_wrapped(data):
    """HL7 v2 ED before pybase64 (documents._base64)."""
    encoded = data.encode("ascii")
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        return binascii.a2b_base64(b"".join(encoded.split()), strict_mode=True)


def outcome(decode, data):
    try:
        return "decoded", decode(data)
    except (binascii.Error, ValueError):
        return "refused", None


@pytest.mark.parametrize("data", EDGE_CASES)
def test_binary_data_is_accepted_and_refused_as_before(data):
    assert outcome(decode_binary, data) == outcome(_standard_strict, data)
    assert outcome(b64decode_strict, data.encode("utf-8")) == outcome(_standard_strict, data.encode("utf-8"))


@pytest.mark.parametrize("data", EDGE_CASES)
def test_ed_payloads_are_accepted_and_refused_as_before(data):
    assert outcome(b64decode_strict_wrapped, data) == outcome(_standard_strict_wrapped, data)


NOISY = st.lists(st.sampled_from(list("AQgwZz09+/=-_ \t\n\r\x0b\x00é~")), max_size=16).map("".join)


@settings(max_examples=3000, deadline=None)
@given(NOISY)
def test_random_inputs_have_the_same_outcome_as_before(data):
    assert outcome(b64decode_strict, data) == outcome(_standard_strict, data)
    assert outcome(b64decode_strict_wrapped, data) == outcome(_standard_strict_wrapped, data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64), st.lists(st.tuples(st.integers(0, 200), st.sampled_from(list("= \n-_*é"))),
                                        max_size=3))
def test_damaged_encodings_have_the_same_outcome_as_before(content, damage):
    text = list(base64.b64encode(content).decode())
    for position, character in damage:
        text.insert(position % (len(text) + 1), character)
    data = "".join(text)
    assert outcome(b64decode_strict, data) == outcome(_standard_strict, data)
    assert outcome(b64decode_strict_wrapped, data) == outcome(_standard_strict_wrapped, data)


def refusing_standard_library(monkeypatch):
    def slow(*args, **kwargs):
        raise AssertionError("the standard library's Base64 decoder was called")

    monkeypatch.setattr(binascii, "a2b_base64", slow)
    monkeypatch.setattr(base64, "b64decode", slow)


def test_valid_binary_data_does_not_take_the_standard_librarys_decoder(monkeypatch):
    refusing_standard_library(monkeypatch)
    assert decode_binary(ENCODED) == DOCUMENT
