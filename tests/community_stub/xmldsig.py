"""Enveloped XML signatures as the platform's STS uses them: RSA-SHA256 over exclusive c14n.

Written here on lxml's canonicaliser and pyca/cryptography, not on the library the gateway signs
with (signxml): the stub checks the gateway's technical-user assertion with independent code, so a
fault shared by signer and verifier cannot hide. Only the one profile SAML assertions use is
accepted (enveloped-signature + exc-c14n transforms, SHA-256 digest, RSA-SHA256), anything else is
refused, as are references to anything but the signed element itself (no signature wrapping).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_DER = Encoding.DER


class SignatureInvalid(Exception):
    """The signature is missing, of another profile, or does not verify."""


def canonical(element: etree._Element, prefixes: tuple[str, ...] = ()) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False,
                          inclusive_ns_prefixes=list(prefixes) or None)


def _signed_element_digest(element: etree._Element, prefixes: tuple[str, ...]) -> bytes:
    """Digest of `element` without its ds:Signature child (the enveloped-signature transform)."""
    signature = element.find(f"{{{DS}}}Signature")
    if signature is None:
        return hashlib.sha256(canonical(element, prefixes)).digest()
    parent, index, tail = signature.getparent(), signature.getparent().index(signature), signature.tail
    parent.remove(signature)
    try:
        return hashlib.sha256(canonical(element, prefixes)).digest()
    finally:
        signature.tail = tail
        parent.insert(index, signature)


def sign_enveloped(element: etree._Element, *, key: rsa.RSAPrivateKey, certificate: x509.Certificate,
                   after: etree._Element, prefixes: tuple[str, ...] = ()) -> None:
    """Insert a ds:Signature over `element` (referenced by its ID attribute) right after `after`."""
    reference = element.get("ID")
    if not reference:
        raise ValueError("the signed element needs an ID attribute")
    digest = base64.b64encode(_signed_element_digest(element, prefixes)).decode()
    inclusive = (f'<ec:InclusiveNamespaces xmlns:ec="{EXC_C14N}" PrefixList="{" ".join(prefixes)}"/>'
                 if prefixes else "")
    certificate_b64 = base64.encodebytes(certificate.public_bytes(_DER)).decode().strip()
    signature = etree.fromstring(
        f'<ds:Signature xmlns:ds="{DS}"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/><ds:SignatureMethod Algorithm="{RSA_SHA256}"/>'
        f'<ds:Reference URI="#{reference}"><ds:Transforms><ds:Transform Algorithm="{ENVELOPED}"/>'
        f'<ds:Transform Algorithm="{EXC_C14N}">{inclusive}</ds:Transform></ds:Transforms>'
        f'<ds:DigestMethod Algorithm="{SHA256}"/><ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>'
        f'</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data>'
        f'<ds:X509Certificate>{certificate_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>')
    after.addnext(signature)
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    value = key.sign(canonical(signed_info), padding.PKCS1v15(), hashes.SHA256())
    # Wrapped at 76 characters like the platform's STS: the assertion carries line breaks of its own.
    signature.find(f"{{{DS}}}SignatureValue").text = base64.encodebytes(value).decode().strip()


def verify_enveloped(element: etree._Element, *, certificate: x509.Certificate) -> None:
    """Check `element`'s own enveloped signature against the registered `certificate`."""
    signature = element.find(f"{{{DS}}}Signature")
    if signature is None:
        raise SignatureInvalid("the assertion is not signed")
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    if signed_info is None:
        raise SignatureInvalid("ds:SignedInfo missing")
    _require(signed_info, "CanonicalizationMethod", EXC_C14N)
    _require(signed_info, "SignatureMethod", RSA_SHA256)
    references = signed_info.findall(f"{{{DS}}}Reference")
    if len(references) != 1 or references[0].get("URI") != f"#{element.get('ID')}" or not element.get("ID"):
        raise SignatureInvalid("the signature must reference the assertion itself (one Reference to its ID)")
    reference = references[0]
    transforms = reference.findall(f"{{{DS}}}Transforms/{{{DS}}}Transform")
    if [t.get("Algorithm") for t in transforms] != [ENVELOPED, EXC_C14N]:
        raise SignatureInvalid("transforms must be enveloped-signature then exclusive c14n")
    inclusive = transforms[1].find(f"{{{EXC_C14N}}}InclusiveNamespaces")
    prefixes = tuple((inclusive.get("PrefixList") or "").split()) if inclusive is not None else ()
    _require(reference, "DigestMethod", SHA256)
    expected = _b64(reference.findtext(f"{{{DS}}}DigestValue"), "DigestValue")
    if _signed_element_digest(element, prefixes) != expected:
        raise SignatureInvalid("digest mismatch: the signed assertion was altered")
    offered = signature.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
    if offered is not None and _b64(offered, "X509Certificate") != certificate.public_bytes(_DER):
        raise SignatureInvalid("the certificate in KeyInfo is not the technical user's registered certificate")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureInvalid("the registered certificate has no RSA key")
    try:
        public_key.verify(_b64(signature.findtext(f"{{{DS}}}SignatureValue"), "SignatureValue"),
                          canonical(signed_info), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureInvalid("signature value does not verify with the registered certificate") from None


def _require(parent: etree._Element, name: str, algorithm: str) -> None:
    found = parent.find(f"{{{DS}}}{name}")
    if found is None or found.get("Algorithm") != algorithm:
        raise SignatureInvalid(f"ds:{name} must be {algorithm}")


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except ValueError:
        raise SignatureInvalid(f"{what} is not base64") from None

