"""Reading an answer's SOAP part (`mtom.soap_part`): the answers laid out as the platform lays them out
are cut at their delimiters (`_root_as_laid_out`); every other answer goes to the whole-message parse of
the `email` package (`_root_by_email`, the reader before). Both readers must give the same bytes — or the
same refusal — for every answer, regular or hostile: the recorded answer, as recorded (LF) and as sent
over HTTP (CRLF), and the irregular layouts that only the whole-message parse may read."""

from __future__ import annotations

import base64
import quopri

import pytest

from adapters.community import mtom
from unit.adapters.community.community_fixtures import recorded_iti41_answer

BOUNDARY = "uuid:2a1acced-0234-4a54-8dd3-b9f9b753169c"
ROOT = "<root.message@cxf.apache.org>"
TYPE = (f'multipart/related; type="application/xop+xml"; boundary="{BOUNDARY}"; start="{ROOT}"; '
        'start-info="application/soap+xml"')
ENVELOPE = (b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
            b'<ns2:RegistryResponse xmlns:ns2="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="\xc3\xa9"/>'
            b"</soap:Body></soap:Envelope>")
ROOT_HEADERS = (b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
                b"Content-Transfer-Encoding: binary\r\nContent-ID: " + ROOT.encode() + b"\r\n")


def part(headers: bytes, content: bytes) -> bytes:
    return b"--" + BOUNDARY.encode() + b"\r\n" + headers + b"\r\n" + content + b"\r\n"


CLOSE = b"--" + BOUNDARY.encode() + b"--"
ATTACHMENT = part(b"Content-Type: text/plain\r\nContent-ID: <other@cxf.apache.org>\r\n", b"not the root")
PLATFORM = part(ROOT_HEADERS, ENVELOPE) + CLOSE


def recorded_crlf() -> bytes:
    _, body = recorded_iti41_answer()
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# (content type, body, the SOAP part, whether the answer is in the platform's layout)
ANSWERS = {
    "the platform's layout": (TYPE, PLATFORM, ENVELOPE, True),
    "the platform's layout, closed by CRLF": (TYPE, PLATFORM + b"\r\n", ENVELOPE, True),
    "the root after an attachment": (TYPE, ATTACHMENT + part(ROOT_HEADERS, ENVELOPE) + CLOSE, ENVELOPE, True),
    "no start: the first part": (TYPE.replace(f' start="{ROOT}";', ""), PLATFORM, ENVELOPE, True),
    "the root part empty": (TYPE, part(ROOT_HEADERS, b"") + CLOSE, b"", True),
    "8bit and no transfer encoding": (TYPE, part(ROOT_HEADERS.replace(b"binary", b"8bit"), ENVELOPE) + CLOSE,
                                      ENVELOPE, True),
    "a preamble": (TYPE, b"preamble\r\n" + PLATFORM, ENVELOPE, False),
    "LF line ends": (TYPE, PLATFORM.replace(b"\r\n", b"\n"), ENVELOPE, False),
    "the root in base64": (TYPE, part(ROOT_HEADERS.replace(b"binary", b"base64"), base64.encodebytes(ENVELOPE))
                           + CLOSE, ENVELOPE, False),
    "the root quoted-printable": (TYPE, part(ROOT_HEADERS.replace(b"binary", b"quoted-printable"),
                                             quopri.encodestring(ENVELOPE)) + CLOSE, ENVELOPE, False),
    "a delimiter after a lone LF in the root": (
        TYPE, part(ROOT_HEADERS, ENVELOPE + b"\n--" + BOUNDARY.encode() + b"\r\nContent-ID: <x>\r\n\r\ntail") + CLOSE,
        ENVELOPE, False),
    "a delimiter-like line that is longer": (
        TYPE, part(ROOT_HEADERS, ENVELOPE + b"\r\n--" + BOUNDARY.encode() + b"x\r\nmore") + CLOSE,
        ENVELOPE + b"\r\n--" + BOUNDARY.encode() + b"x\r\nmore", False),
    "a header block with a line that is no header": (
        TYPE, part(ROOT_HEADERS + b"not a header\r\n", ENVELOPE) + CLOSE, b"not a header\r\n\r\n" + ENVELOPE, False),
    "a part without header block": (TYPE.replace(f' start="{ROOT}";', ""), part(b"", ENVELOPE) + CLOSE, ENVELOPE,
                                    False),
    "no closing delimiter": (TYPE, part(ROOT_HEADERS, ENVELOPE), ENVELOPE, False),
    # Read when the test runs, not when it is collected: a clone without the recordings skips these two.
    "the recorded answer as recorded (LF)": lambda: (*recorded_iti41_answer(), None, False),
    "the recorded answer as sent (CRLF)": lambda: (recorded_iti41_answer()[0], recorded_crlf(), None, True),
}


def answer(name: str) -> tuple:
    value = ANSWERS[name]
    return value() if callable(value) else value

REFUSED = {
    "no part with the start Content-ID": (TYPE.replace(ROOT, "<elsewhere>"), PLATFORM),
    "no boundary": (TYPE.replace(f' boundary="{BOUNDARY}";', ""), PLATFORM),
    "a wrong boundary": (TYPE.replace(BOUNDARY, "uuid:another"), PLATFORM),
    "an empty body": (TYPE, b""),
    "not SOAP": ("text/html; charset=utf-8", b"<html>proxy error</html>"),
}


@pytest.mark.parametrize("name", ANSWERS)
def test_both_readers_give_the_same_soap_part(name):
    content_type, body, expected, laid_out = answer(name)
    read = mtom.soap_part(content_type, body)
    assert read == mtom._root_by_email(content_type, body)
    if expected is not None:
        assert read == expected
    else:  # the recorded answer: its whole envelope, as recorded
        assert read.startswith(b"<?xml version='1.0' encoding='utf-8'?>") and read.rstrip().endswith(b"</soap:Envelope>")


@pytest.mark.parametrize("name", ANSWERS)
def test_only_the_platforms_layout_is_cut_at_its_delimiters(name):
    content_type, body, _, laid_out = answer(name)
    header = mtom.email.message.Message()
    header["Content-Type"] = content_type
    start = (header.get_param("start") or "").strip("<>")
    cut = mtom._root_as_laid_out(body, header.get_boundary(), start)
    assert (cut is not None) is laid_out
    if laid_out:
        assert cut == mtom._root_by_email(content_type, body)


@pytest.mark.parametrize("name", REFUSED)
def test_both_readers_refuse_the_same_answers(name):
    content_type, body = REFUSED[name]
    with pytest.raises(mtom.NotSoap) as fast:
        mtom.soap_part(content_type, body)
    if content_type.startswith("multipart/related"):
        with pytest.raises(mtom.NotSoap) as whole:
            mtom._root_by_email(content_type, body)
        assert str(fast.value) == str(whole.value)


def test_plain_soap_answers_are_the_body():
    assert mtom.soap_part("application/soap+xml; charset=UTF-8", ENVELOPE) == ENVELOPE
    assert mtom.soap_part("text/xml", ENVELOPE) == ENVELOPE
