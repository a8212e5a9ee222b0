"""MTOM/XOP (`multipart/related`) as the community's platform takes it, and its answers read back.

Written by hand, byte for byte (the platform is strict and zeep cannot send MTOM): the HTTP header
names `type="application/xop+xml"`, `start` and `start-info="application/soap+xml"` (without
`start-info` the platform answers wrongly or not at all); the root part is
`application/xop+xml; charset=UTF-8; type="application/soap+xml"`, binary; each document is a binary
part referenced by `cid:`. CRLF line ends in the MIME structure (RFC 2046).

Read back with a different parser than the one that writes: the standard library's `email` package
(answers may be multipart even without attachments, or plain SOAP), with its `compat32` policy: the
default policy's header objects cost ten times what compat32's do (bench/README.md). An answer laid
out as the platform lays it out (CRLF delimiters, no preamble, the root part binary) is cut at its
delimiters and only the root part's header block goes through `email`: the whole-message parse
compiled a regular expression for every answer's fresh boundary and walked the body line by line
(half a millisecond an answer, a tenth of the deliverer's CPU). Anything else — LF line ends, a
preamble, an encoded root part, a delimiter that is not one — is read by the whole-message parse,
which gives the same bytes for the answers both read (tests/unit/adapters/community/test_mtom_answers.py).
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import uuid
from dataclasses import dataclass

ROOT_ID = "root.message@epr-gateway"
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)
_AS_IS = ("", "binary", "8bit", "7bit")  # transfer encodings whose bytes are the content
SOAP_TYPE = "application/soap+xml"


@dataclass(frozen=True)
class Part:
    content_id: str  # without the angle brackets
    content_type: str
    data: bytes


@dataclass(frozen=True)
class MtomMessage:
    content_type: str  # the HTTP Content-Type header
    body: bytes


def content_id() -> str:
    """A fresh Content-ID of a document part (characters that need no escaping in a cid: URL)."""
    return f"{uuid.uuid4().hex}@epr-gateway"


def write(soap: bytes, parts: list[Part], *, action: str) -> MtomMessage:
    boundary = f"uuid:{uuid.uuid4()}"
    delimiter = f"--{boundary}".encode()
    while any(delimiter in data for data in (soap, *(p.data for p in parts))):  # a 1 in 2^122 chance
        boundary = f"uuid:{uuid.uuid4()}"
        delimiter = f"--{boundary}".encode()
    chunks = [delimiter, b"\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
              b"Content-Transfer-Encoding: binary\r\nContent-ID: <", ROOT_ID.encode(), b">\r\n\r\n", soap]
    for part in parts:
        chunks += [b"\r\n", delimiter, b"\r\nContent-Type: ", part.content_type.encode("ascii"),
                   b"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <", part.content_id.encode("ascii"),
                   b">\r\n\r\n", part.data]
    chunks += [b"\r\n", delimiter, b"--\r\n"]
    header = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<{ROOT_ID}>"; '
              f'start-info="{SOAP_TYPE}"; action="{action}"')
    return MtomMessage(header, b"".join(chunks))


class NotSoap(Exception):
    """An answer whose content type or MIME structure is not SOAP (plain or MTOM)."""


def soap_part(content_type: str, body: bytes) -> bytes:
    """The SOAP envelope's bytes of an answer: the body itself (application/soap+xml, text/xml) or
    the `start` part of a multipart/related answer (the first part when `start` is absent)."""
    header = email.message.Message(policy=email.policy.compat32)
    header["Content-Type"] = content_type
    kind = header.get_content_type()
    if kind in (SOAP_TYPE, "text/xml", "application/xml"):
        return body
    if kind != "multipart/related":
        raise NotSoap(f"the answer's content type is {content_type or '(none)'}, not SOAP")
    params = dict(header.get_params(failobj=[])[1:])  # parsed once (each get_param parses them again)
    boundary, start = params.get("boundary"), params.get("start") or ""
    root = None
    if isinstance(boundary, str) and isinstance(start, str):
        root = _root_as_laid_out(body, email.utils.collapse_rfc2231_value(boundary).rstrip(), start.strip().strip("<>"))
    return root if root is not None else _root_by_email(content_type, body)


def _root_as_laid_out(body: bytes, boundary: str | None, start: str) -> bytes | None:
    """The root part's bytes when the answer is laid out plainly (see the module's text), else None."""
    if not boundary or not boundary.isascii():
        return None
    delimiter = b"--" + boundary.encode("ascii")
    if not body.startswith(delimiter + b"\r\n"):
        return None
    position = 0
    while True:
        header_start = position + len(delimiter) + 2
        header_end = body.find(b"\r\n\r\n", header_start)
        following = body.find(b"\r\n" + delimiter, header_start)
        if header_end < 0 or following < 0 or header_end > following or body.startswith(b"\r\n", header_start):
            return None
        after = body[following + 2 + len(delimiter):following + 4 + len(delimiter)]
        if after not in (b"\r\n", b"--") or body.find(delimiter, header_start, following) >= 0:
            return None  # a delimiter-like line the whole-message parse may read otherwise (LF or CR alone)
        headers = _HEADERS.parsebytes(body[header_start:header_end + 4])
        if headers.defects:  # a line that is no header: the whole-message parse starts the content there
            return None
        if not start or (headers.get("Content-ID") or "").strip().strip("<>") == start:
            encoding = (headers.get("Content-Transfer-Encoding") or "").strip().lower()
            return body[header_end + 4:following] if encoding in _AS_IS else None
        if after == b"--":
            return None
        position = following + 2


def _root_by_email(content_type: str, body: bytes) -> bytes:
    """`soap_part` of any multipart/related answer, by the whole-message parse."""
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
    parts = message.get_payload() if message.is_multipart() else []
    if not parts:
        raise NotSoap("the multipart answer has no part (a missing or wrong boundary)")
    start = (message.get_param("start") or "").strip().strip("<>")
    root = next((p for p in parts if (p.get("Content-ID") or "").strip().strip("<>") == start), None) if start \
        else parts[0]
    if root is None:
        raise NotSoap(f"the multipart answer has no part with the start Content-ID <{start}>")
    data = root.get_payload(decode=True)
    if data is None:
        raise NotSoap("the answer's root part is empty")
    return data
