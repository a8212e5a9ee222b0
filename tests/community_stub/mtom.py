"""The MTOM/XOP request as the platform takes it, and its byte-level traps (`cara-ikit/faq.md`).

Independent of any builder: the multipart body is cut at its delimiters (RFC 2046: CRLF "--"
boundary, the last one followed by "--"), each part's header block is read by the standard
library's `email` parser, and the Content-Type parameters by `email.message.Message`. The SOAP
part's bytes are then held to what the platform refuses: line breaks outside the X-User Assertion,
whitespace around `xop:Include`, XML comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from urllib.parse import unquote

from .soap import Refusal, soap_fault

_HEADERS = BytesHeaderParser(policy=compat32)
_ASSERTION_START = re.compile(rb"<((?:[A-Za-z_][\w.-]*:)?)Assertion[\s>/]")
_SPACE_BEFORE_INCLUDE = re.compile(rb"[ \t\r\n]<(?:[A-Za-z_][\w.-]*:)?Include[ \t\r\n/>]")
_SPACE_AFTER_INCLUDE = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?Include\b[^>]*>[ \t\r\n]|</(?:[A-Za-z_][\w.-]*:)?Include>[ \t\r\n]")


@dataclass(frozen=True)
class Part:
    content_id: str
    content_type: str
    transfer_encoding: str
    content: bytes


@dataclass
class MtomRequest:
    boundary: str
    start: str | None
    start_info: str | None
    root: Part
    attachments: dict[str, Part] = field(default_factory=dict)

    def resolve(self, href: str) -> Part | None:
        """The part a `cid:` reference names (RFC 2392: URL-encoded Content-ID without brackets)."""
        if not href.startswith("cid:"):
            return None
        return self.attachments.get(unquote(href[4:]))


def content_type_params(header: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["Content-Type"] = header
    params = {key.lower(): value for key, value in message.get_params(header="content-type")[1:]}
    return message.get_content_type(), params


def parse_mtom(content_type: str | None, body: bytes) -> MtomRequest:
    if not content_type:
        raise soap_fault("Content-Type missing", code="Sender", status=415)
    media_type, params = content_type_params(content_type)
    if media_type != "multipart/related":
        raise soap_fault(f"ITI-41 must be MTOM (multipart/related), not {media_type}", code="Sender", status=415)
    if params.get("type", "").lower() != "application/xop+xml":
        raise soap_fault('multipart/related needs type="application/xop+xml"', code="Sender", status=415)
    start_info = params.get("start-info")
    if not start_info or not start_info.lower().startswith("application/soap+xml"):
        # The platform answers wrongly or not at all without start-info (faq, changelog "XDS"); the
        # stub refuses loudly instead, so that a client cannot mistake it for an answer.
        raise soap_fault('multipart/related needs start-info="application/soap+xml" (the platform answers '
                         'wrongly without it)', code="Sender", status=415)
    boundary = params.get("boundary")
    if not boundary:
        raise soap_fault("multipart/related without boundary", code="Sender", status=415)
    parts = _split(body, boundary.encode("latin-1"))
    start = params.get("start")
    root_id = start.strip().strip("<>") if start else parts[0].content_id
    by_id: dict[str, Part] = {}
    for part in parts:
        if part.content_id in by_id:
            raise soap_fault(f"two MIME parts with Content-ID <{part.content_id}>", code="Sender")
        by_id[part.content_id] = part
    root = by_id.pop(root_id, None)
    if root is None:
        raise soap_fault(f"no MIME part with the start Content-ID <{root_id}>", code="Sender")
    root_type, root_params = content_type_params(root.content_type)
    if root_type != "application/xop+xml" or not root_params.get("type", "").startswith("application/soap+xml"):
        raise soap_fault('the root part must be application/xop+xml; type="application/soap+xml"', code="Sender")
    if root_params.get("charset", "utf-8").lower() != "utf-8":
        raise soap_fault("the root part must be UTF-8", code="Sender")
    for part in (root, *by_id.values()):
        if part.transfer_encoding not in ("binary", "8bit"):
            raise soap_fault(f"MIME part <{part.content_id}> must be Content-Transfer-Encoding binary",
                             code="Sender")
    return MtomRequest(boundary=boundary, start=start, start_info=start_info, root=root, attachments=by_id)


def _split(body: bytes, boundary: bytes) -> list[Part]:
    delimiter = b"--" + boundary
    if body.startswith(delimiter):
        position = 0
    else:  # a preamble may precede the first delimiter (RFC 2046)
        position = body.find(b"\r\n" + delimiter)
        if position < 0:
            raise soap_fault("no multipart delimiter in the body (boundary mismatch?)", code="Sender")
        position += 2
    parts = []
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            return _non_empty(parts)
        if not body.startswith(b"\r\n", position):
            raise soap_fault("multipart delimiter not followed by CRLF", code="Sender")
        header_end = body.find(b"\r\n\r\n", position + 2)
        next_delimiter = body.find(b"\r\n" + delimiter, position)
        if next_delimiter < 0:
            raise soap_fault("multipart body truncated: no closing delimiter", code="Sender")
        if header_end < 0 or header_end > next_delimiter:
            raise soap_fault("MIME part without a header block", code="Sender")
        headers = _HEADERS.parsebytes(body[position + 2:header_end + 4])
        content_id = (headers.get("Content-ID") or "").strip().strip("<>")
        if not content_id:
            raise soap_fault("MIME part without Content-ID", code="Sender")
        parts.append(Part(content_id=content_id, content_type=headers.get("Content-Type") or "",
                          transfer_encoding=(headers.get("Content-Transfer-Encoding") or "").strip().lower(),
                          content=body[header_end + 4:next_delimiter]))
        position = next_delimiter + 2


def _non_empty(parts: list[Part]) -> list[Part]:
    if not parts:
        raise soap_fault("empty multipart body", code="Sender")
    return parts


def assertion_span(soap: bytes) -> tuple[int, int] | None:
    """Where the (first) SAML Assertion element lies in the SOAP part's bytes, end tag included."""
    match = _ASSERTION_START.search(soap)
    if match is None:
        return None
    end_tag = b"</" + match.group(1) + b"Assertion>"
    end = soap.find(end_tag, match.start())
    if end < 0:
        return None
    return match.start(), end + len(end_tag)


def check_soap_bytes(soap: bytes, span: tuple[int, int] | None) -> None:
    """The byte rules of `cara-ikit/faq.md` on the SOAP part, outside the assertion as issued."""
    outside = soap if span is None else soap[:span[0]] + soap[span[1]:]
    if b"\n" in outside or b"\r" in outside:
        # "if the soap body is formatted with line breaks in the request, the request will not go
        # through the back end (warning: empty request) and an http error 500 is returned"
        raise Refusal(soap_fault("empty request").answer, "line break in the SOAP part outside the assertion")
    if b"<!--" in soap:
        raise Refusal(soap_fault("empty request").answer, "XML comment in the SOAP part")
    if _SPACE_BEFORE_INCLUDE.search(outside) or _SPACE_AFTER_INCLUDE.search(outside):
        raise Refusal(soap_fault("empty request").answer, "whitespace around xop:Include")
