"""SOAP 1.2 as the community's platform takes it: the envelope written as bytes, never pretty-printed.

Why bytes and not a tree: the XUA assertion must go into `wsse:Security` exactly as the STS issued it
(its signature covers it; the platform compares), and the platform refuses a SOAP part with line
breaks (HTTP 500, cara faq). So the gateway writes its own parts without any line break — a line
break inside a value is written as the character reference `&#10;` — and splices the assertion's
bytes in unchanged. WS-Addressing headers are written as the community's recorded requests write them
(each element in the addressing namespace by default, `ReplyTo/Address` in the same namespace).

Answers are read with a hardened parser: no DTD, no entity, no network (an answer is input).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"


class SoapAnswerUnreadable(Exception):
    """The answer is not the SOAP 1.2 message expected (not XML, DTD, no Body, wrong root)."""


@dataclass(frozen=True)
class SoapFault:
    code: str
    subcode: str | None
    reason: str

    def __str__(self) -> str:
        return f"SOAP fault {self.code}{'/' + self.subcode if self.subcode else ''}: {self.reason}"


def message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def addressing_headers(*, action: str, to: str, message: str) -> bytes:
    """wsa:Action (mustUnderstand), MessageID, To, ReplyTo/Address anonymous."""
    ns = f' xmlns="{WSA}"'
    return (f'<Action soap:mustUnderstand="true"{ns}>{escape(action)}</Action>'
            f'<MessageID{ns}>{escape(message)}</MessageID>'
            f'<To{ns}>{escape(to)}</To>'
            f'<ReplyTo{ns}><Address>{ANONYMOUS}</Address></ReplyTo>').encode()


def security_header(assertion: bytes, namespaces: dict[str | None, str]) -> bytes:
    """`wsse:Security` holding the assertion bytes as they are, with the namespace bindings the
    assertion relied on where it was issued (`namespaces`; prefix None = the default namespace)
    declared on `wsse:Security`, so that every prefix in it means what it meant there."""
    prefix = "wsse"
    while prefix in namespaces and namespaces[prefix] != WSSE:
        prefix += "x"
    declarations = "".join(f" xmlns{':' + p if p else ''}={quoteattr(uri)}"
                           for p, uri in namespaces.items() if p != prefix)
    return (f"<{prefix}:Security xmlns:{prefix}={quoteattr(WSSE)}{declarations}>".encode() + assertion
            + f"</{prefix}:Security>".encode())


def envelope(*, header: bytes, body: bytes) -> bytes:
    return (f'<soap:Envelope xmlns:soap="{SOAP12}"><soap:Header>'.encode() + header + b"</soap:Header><soap:Body>"
            + body + b"</soap:Body></soap:Envelope>")


def serialise(element: etree._Element) -> bytes:
    """One line of UTF-8 without XML declaration: lxml writes no line break between elements; a line
    break inside text becomes a character reference (the same text for any XML reader)."""
    data = etree.tostring(element, encoding="UTF-8", xml_declaration=False)
    return data.replace(b"\r", b"&#13;").replace(b"\n", b"&#10;")


_local = threading.local()


def parse(data: bytes) -> etree._Element:
    """A SOAP answer's XML, hardened (no DTD or entities, nothing fetched, no huge trees)."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SoapAnswerUnreadable("the answer carries a DOCTYPE: refused")
    parser = getattr(_local, "parser", None)
    if parser is None:  # one per thread: an lxml parser must not be used by two threads at once
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                                 huge_tree=False)
    try:
        return etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SoapAnswerUnreadable(f"the answer is not XML ({exc})") from None


def body_of(root: etree._Element) -> etree._Element:
    """The first element in the Body (a SOAP Fault too: `fault_of` tells)."""
    if root.tag != f"{{{SOAP12}}}Envelope":
        raise SoapAnswerUnreadable(f"the answer is not a SOAP 1.2 envelope (root {root.tag})")
    body = root.find(f"{{{SOAP12}}}Body")
    content = None if body is None else next((child for child in body if isinstance(child.tag, str)), None)
    if content is None:
        raise SoapAnswerUnreadable("the SOAP answer has an empty Body")
    return content


def fault_of(content: etree._Element) -> SoapFault | None:
    if content.tag != f"{{{SOAP12}}}Fault":
        return None
    code = content.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") or ""
    subcode = content.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    reason = " ".join((t.text or "").strip() for t in content.iterfind(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text"))
    return SoapFault(code.strip(), subcode.strip() if subcode else None, reason or "(no reason)")
