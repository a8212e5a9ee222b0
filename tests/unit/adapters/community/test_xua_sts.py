"""ITI-40: the technical user's signed assertion (verified by libxmlsec1's `xmlsec1`, not by signxml),
the RequestSecurityToken with the Annex 5 amendment 2 claims (compared with the TCU sample), the
STS's assertion kept as the exact bytes received, and the per-patient cache."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from lxml import etree

from adapters.community import soap, xua
from adapters.community.tcu_assertion import SAML, TechnicalUserAssertions
from adapters.community.transport import HttpAnswer
from unit.adapters.community.community_fixtures import PRINCIPAL_GLN, SPID, TCU_OID, community, make_pki, xds_fixture

NOW = dt.datetime(2025, 8, 26, 20, 46, 59, 989000, tzinfo=dt.UTC)
DS = "http://www.w3.org/2000/09/xmldsig#"
TCU_RESPONSE = "epr-by-example/XUA_samples/3_Get_X-User_Assertion_Response-Technical_User.xml"
TCU_REQUEST = "epr-by-example/XUA_samples/3_Get_X-User_Assertion_Request-Technical_User.xml"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def user(pki):
    return community(pki).technical_user


def xmlsec1_verifies(tmp_path, pki, xml: bytes) -> subprocess.CompletedProcess:
    executable = shutil.which("xmlsec1")
    assert executable, "xmlsec1 is not installed: scripts/test_services.sh installs Debian's xmlsec1"
    path = tmp_path / "assertion.xml"
    path.write_bytes(xml)
    return subprocess.run([executable, "--verify", "--trusted-pem", str(pki.ca_cert),
                           "--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion", str(path)],
                          capture_output=True, text=True, timeout=30)


def test_the_technical_users_assertion_is_signed_as_the_sts_requires(tmp_path, pki, user):
    xml = TechnicalUserAssertions(user, clock=lambda: NOW).current()
    verified = xmlsec1_verifies(tmp_path, pki, xml)
    assert verified.returncode == 0 and "OK" in verified.stdout + verified.stderr, verified.stderr
    assertion = etree.fromstring(xml)
    assert assertion.findtext(f"{{{SAML}}}Issuer") == f"urn:oid:{TCU_OID}"
    assert assertion.findtext(f"{{{SAML}}}Subject/{{{SAML}}}NameID") == TCU_OID
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    assert (assertion.get("IssueInstant"), conditions.get("NotBefore"), conditions.get("NotOnOrAfter")) == (
        "2025-08-26T20:46:59.989Z", "2025-08-26T20:46:29.989Z", "2025-08-26T20:51:59.989Z")
    signature = assertion.find(f"{{{DS}}}Signature")
    assert assertion.index(signature) == 1  # right after the Issuer (SAML 2.0 schema)
    assert signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod").get("Algorithm") == \
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}CanonicalizationMethod").get("Algorithm") == \
        "http://www.w3.org/2001/10/xml-exc-c14n#"
    certificate = "".join(signature.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate").split())
    assert certificate == "".join(pki.tcu_cert.read_text().splitlines()[1:-1])
    assert b"\n" not in xml and b"<!--" not in xml


def test_a_changed_assertion_fails_the_independent_verifier(tmp_path, pki, user):
    xml = TechnicalUserAssertions(user, clock=lambda: NOW).current()
    verified = xmlsec1_verifies(tmp_path, pki, xml.replace(TCU_OID.encode() + b"</saml2:NameID>",
                                                            b"2.16.756.5.30.1.191.999.11</saml2:NameID>"))
    assert verified.returncode != 0


def test_one_assertion_serves_until_a_minute_before_its_end(user):
    now = [NOW]
    assertions = TechnicalUserAssertions(user, clock=lambda: now[0])
    first = assertions.current()
    now[0] = NOW + dt.timedelta(minutes=3, seconds=59)
    assert assertions.current() == first
    now[0] = NOW + dt.timedelta(minutes=4, seconds=1)
    assert assertions.current() != first


def claims_of(element) -> dict:
    found = {}
    for attribute in element.iter(f"{{{SAML}}}Attribute"):
        value = attribute.find(f"{{{SAML}}}AttributeValue")
        inner = next((c for c in value if isinstance(c.tag, str)), None)
        found[attribute.get("Name")] = (
            dict(inner.attrib) if inner is not None
            else " ".join(value.text.split()))
    return found


def test_the_request_security_token_carries_the_claims_of_the_tcu_sample(user):
    body = xua.request_security_token(spid="761337610411353650", principal_gln="2000000090201",
                                      principal_name="Max Musterverantwortlicher",
                                      applies_to="https://localhost:17001/services/iti18")
    rst = etree.fromstring(body)
    sample = etree.parse(str(xds_fixture(TCU_REQUEST))).find(".//{http://docs.oasis-open.org/ws-sx/ws-trust/200512}"
                                                             "RequestSecurityToken")
    assert claims_of(rst) == claims_of(sample)
    wst = "{http://docs.oasis-open.org/ws-sx/ws-trust/200512}"
    for path in ("RequestType", "TokenType", ".//{http://www.w3.org/2005/08/addressing}Address"):
        assert rst.findtext(wst + path if not path.startswith(".") else path) == \
            sample.findtext(wst + path if not path.startswith(".") else path)
    assert rst.find(f"{wst}Claims").get("Dialect") == "http://www.bag.admin.ch/epr/2017/annex/5/amendment/2"
    assert [c.tag for c in rst] == [c.tag for c in sample]


def test_the_sts_request_carries_the_technical_users_assertion(user):
    tcu = TechnicalUserAssertions(user, clock=lambda: NOW).current()
    body = xua.request_security_token(spid=SPID, principal_gln=PRINCIPAL_GLN, principal_name="Dr. A",
                                      applies_to="https://cara/Repository")
    request = xua.sts_request(endpoint="https://cara/STS", tcu_assertion=tcu, body=body, message="urn:uuid:1")
    root = etree.fromstring(request)
    assert root.find(f"{{{soap.SOAP12}}}Header/{{{soap.WSA}}}Action").text == xua.ACTION
    assert tcu in request and b"\n" not in request
    assert claims_of(root)["urn:oasis:names:tc:xacml:2.0:resource:resource-id"] == \
        f"{SPID}^^^&2.16.756.5.30.1.127.3.10.3&ISO"


def test_the_issued_assertion_is_the_exact_bytes_received():
    raw = xds_fixture(TCU_RESPONSE).read_bytes()
    issued = xua.issued_assertion(HttpAnswer(200, "application/soap+xml; charset=UTF-8", raw))
    assert raw.count(issued.xml) == 1
    assert issued.xml.startswith(b"<saml2:Assertion\n") and issued.xml.endswith(b"</saml2:Assertion>")
    expected = etree.fromstring(raw).find(f".//{{{SAML}}}Assertion")
    wrapped = etree.fromstring(b'<w xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512">' + issued.xml + b"</w>")
    assert etree.tostring(wrapped[0], method="c14n", exclusive=True) == etree.tostring(expected, method="c14n",
                                                                                      exclusive=True)
    assert issued.not_on_or_after == dt.datetime(2018, 3, 28, 9, 32, 43, 155000, tzinfo=dt.UTC)
    assert (issued.issuer, issued.subject, issued.subject_alias, issued.subject_name, issued.role, issued.purpose,
            issued.delegate) == ("xua.hin.ch", "2000000090201", None, "Max Musterverantwortlicher",
                                 ("HCP", "Healthcare professional"), ("AUTO", "Automatic Upload"),
                                 "urn:oid:1.3.6.1.4.1.343")
    assert issued.namespaces[None] == "http://docs.oasis-open.org/ws-sx/ws-trust/200512"


def test_an_mtom_answer_of_the_sts_too():
    raw = xds_fixture(TCU_RESPONSE).read_bytes()
    body = (b'--b\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
            b"Content-ID: <root>\r\n\r\n" + raw + b"\r\n--b--\r\n")
    issued = xua.issued_assertion(HttpAnswer(200, 'multipart/related; boundary="b"; type="application/xop+xml"; '
                                                  'start="<root>"', body))
    assert raw.count(issued.xml) == 1


@pytest.mark.parametrize(("answer", "text"), [
    (HttpAnswer(500, "application/soap+xml", b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
                b"<soap:Body><soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason>"
                b"<soap:Text>ERROR &lt;Ens&gt;ErrBPTerminated: Failed to load user</soap:Text></soap:Reason>"
                b"</soap:Fault></soap:Body></soap:Envelope>"),
     "STS answered HTTP 500: SOAP fault soap:Receiver: ERROR <Ens>ErrBPTerminated: Failed to load user"),
    (HttpAnswer(200, "application/soap+xml", b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">'
                b"<soap:Body><RequestSecurityTokenResponse xmlns=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512\"/>"
                b"</soap:Body></soap:Envelope>"),
     "STS answered HTTP 200 without a saml2:Assertion in RequestedSecurityToken"),
    (HttpAnswer(502, "text/html", b"<html>Bad gateway</html>"),
     "STS answered HTTP 502 without a readable SOAP message (the answer's content type is text/html, not SOAP)"),
])
def test_an_sts_that_gives_no_assertion(answer, text):
    with pytest.raises(xua.StsFailure) as caught:
        xua.issued_assertion(answer)
    assert caught.value.text == text


def test_an_answer_in_another_encoding_cannot_be_passed_on_as_it_is():
    raw = xds_fixture(TCU_RESPONSE).read_text(encoding="utf-8").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    with pytest.raises(xua.StsFailure, match="is in ISO-8859-1"):
        xua.issued_assertion(HttpAnswer(200, "application/soap+xml", raw.encode("latin-1")))


def issued(not_on_or_after: dt.datetime) -> xua.IssuedAssertion:
    return xua.IssuedAssertion(b"<a/>", {}, not_on_or_after, "sts", "7601000000002", None, None, None, None, None)


def test_the_cache_holds_an_assertion_until_shortly_before_its_end():
    cache = xua.AssertionCache()
    cache.put(SPID, issued(NOW + dt.timedelta(minutes=20)), NOW)
    assert cache.get(SPID, NOW + dt.timedelta(minutes=18, seconds=59)) is not None
    assert cache.get(SPID, NOW + dt.timedelta(minutes=19)) is None
    cache.put(SPID, issued(NOW + dt.timedelta(seconds=40)), NOW)  # short-lived: half its time left
    assert cache.get(SPID, NOW + dt.timedelta(seconds=19)) is not None
    assert cache.get(SPID, NOW + dt.timedelta(seconds=20)) is None
    cache.put(SPID, issued(NOW), NOW)  # already over: not kept
    assert cache.get(SPID, NOW) is None


def test_the_cache_is_per_patient_and_bounded():
    cache = xua.AssertionCache(capacity=2)
    for spid in ("1", "2", "3"):
        cache.put(spid, issued(NOW + dt.timedelta(hours=1)), NOW)
    assert [cache.get(s, NOW) is not None for s in ("1", "2", "3")] == [False, True, True]
    cache.drop("2")
    assert cache.get("2", NOW) is None
