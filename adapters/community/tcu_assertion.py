"""The gateway's technical-user (TCU) assertion: how it authenticates itself to the community's STS.

A SAML 2.0 assertion the gateway issues about itself, as the community's kit records it
(`cara-ikit/requests/sts-tcu-httpheader-eprik.http`): Issuer `urn:oid:<TCU OID>`, Subject NameID
`<TCU OID>` (persistent), bearer confirmation, a validity of a few minutes whose NotBefore lies a
little in the past (a sub-second clock skew made fresh assertions "in the future" for the STS, cara
faq), signed RSA-SHA256 with exclusive c14n, the certificate in KeyInfo (the community registered it
with the OID). Signing is signxml's (pinned), the signature placed after the Issuer as SAML requires.

One assertion serves every STS request until shortly before it expires: signing is the expensive
part (an RSA signature), and the STS asks nothing of it that depends on the patient.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from adapters.community.config import TechnicalUser

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"

VALIDITY = timedelta(minutes=5)
SKEW = timedelta(seconds=30)  # NotBefore this much in the past
RENEW_BEFORE = timedelta(seconds=60)  # a new assertion when the cached one has less left than this


def instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class TechnicalUserAssertions:
    """Signed TCU assertions for one technical user, renewed before they expire."""

    def __init__(self, user: TechnicalUser, *, clock: Callable[[], datetime]):
        self._user = user
        self._clock = clock
        self._key = serialization.load_pem_private_key(user.key.read_bytes(), password=None)
        self._certificate = x509.load_pem_x509_certificate(user.cert.read_bytes())
        self._signer = XMLSigner(signature_algorithm=SignatureMethod.RSA_SHA256,
                                 digest_algorithm=DigestAlgorithm.SHA256,
                                 c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
        self._lock = threading.Lock()
        self._current: tuple[bytes, datetime] | None = None

    def current(self) -> bytes:
        """The serialised signed assertion (one line), a fresh one when the last is near its end."""
        now = self._clock()
        with self._lock:
            if self._current is None or self._current[1] - now < RENEW_BEFORE:
                self._current = (self.issue(now), now + VALIDITY)
            return self._current[0]

    def issue(self, now: datetime) -> bytes:
        assertion_id = f"Assertion_{uuid.uuid4()}"
        not_before, not_after = instant(now - SKEW), instant(now + VALIDITY)
        assertion = etree.Element(f"{{{SAML}}}Assertion", nsmap={"saml2": SAML, "xs": XS, "xsi": XSI},
                                  ID=assertion_id, IssueInstant=instant(now), Version="2.0")
        etree.SubElement(assertion, f"{{{SAML}}}Issuer").text = f"urn:oid:{self._user.oid}"
        etree.SubElement(assertion, f"{{{DS}}}Signature", nsmap={"ds": DS}, Id="placeholder")
        subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
        etree.SubElement(subject, f"{{{SAML}}}NameID", Format=PERSISTENT).text = self._user.oid
        etree.SubElement(subject, f"{{{SAML}}}SubjectConfirmation", Method=BEARER)
        etree.SubElement(assertion, f"{{{SAML}}}Conditions", NotBefore=not_before, NotOnOrAfter=not_after)
        statement = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=instant(now),
                                     SessionNotOnOrAfter=not_after)
        context = etree.SubElement(statement, f"{{{SAML}}}AuthnContext")
        etree.SubElement(context, f"{{{SAML}}}AuthnContextClassRef").text = UNSPECIFIED
        signed = self._signer.sign(assertion, key=self._key, cert=[self._certificate],
                                   reference_uri=f"#{assertion_id}", id_attribute="ID")
        data = etree.tostring(signed, encoding="UTF-8", xml_declaration=False)
        # Base64 line breaks in SignatureValue / X509Certificate are whitespace to XML-DSig; written
        # as character references they keep the request on one line (the STS refuses nothing here,
        # but the gateway writes no line break anywhere).
        return data.replace(b"\r", b"&#13;").replace(b"\n", b"&#10;")
