"""The stub's STS (ITI-40) and PIX V3 manager (ITI-45)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from community_stub.clients import issued_assertion_bytes, pix_request, soap_post, sts_request, technical_user_assertion
from community_stub.keys import load_certificate
from community_stub.soap import HL7, SAML2
from community_stub.xmldsig import verify_enveloped

from .conftest import NORMAL

SOAP = "{http://www.w3.org/2003/05/soap-envelope}"


def fault(answer) -> str:
    return etree.fromstring(answer.content).findtext(f".//{SOAP}Text")


def test_the_sts_issues_a_signed_assertion_for_the_responsible_professional(stub, http):
    answer = soap_post(http, stub.sts_url, sts_request(technical_user_assertion(stub), spid=NORMAL.spid,
                                                       gln=stub.principal_gln, name=stub.principal_name))
    assert answer.status_code == 200
    raw = issued_assertion_bytes(answer.content)
    assert [a.raw for a in stub.issued_assertions] == [raw]
    assert b"\n" in raw  # as the platform's: a client that strips line breaks alters it
    document = etree.fromstring(answer.content)
    assertion = document.find(f".//{{{SAML2}}}Assertion")
    verify_enveloped(assertion, certificate=load_certificate(stub.keys.sts_cert))
    subject = assertion.find(f"{{{SAML2}}}Subject")
    attributes = {a.get("Name"): a.find(f"{{{SAML2}}}AttributeValue") for a in assertion.iter(f"{{{SAML2}}}Attribute")}
    conditions = assertion.find(f"{{{SAML2}}}Conditions")
    lifetime = (dt.datetime.fromisoformat(conditions.get("NotOnOrAfter"))
                - dt.datetime.fromisoformat(conditions.get("NotBefore")))
    assert (subject.findtext(f"{{{SAML2}}}NameID"), subject.findtext(f"{{{SAML2}}}SubjectConfirmation/{{{SAML2}}}NameID"),
            attributes["urn:oasis:names:tc:xacml:2.0:subject:role"][0].get("code"),
            attributes["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"][0].get("code"),
            attributes["urn:oasis:names:tc:xacml:2.0:resource:resource-id"].text,
            conditions.findtext(".//{urn:oasis:names:tc:SAML:2.0:conditions:delegation}Delegate/" f"{{{SAML2}}}NameID"),
            lifetime) == (stub.principal_gln, f"urn:oid:{stub.technical_user_oid}", "HCP", "AUTO",
                          f"{NORMAL.spid}^^^&2.16.756.5.30.1.127.3.10.3&ISO", f"urn:oid:{stub.technical_user_oid}",
                          dt.timedelta(minutes=5))
    assert b'xmlns:xsi' not in raw[:raw.index(b">")] and b'xsi:type="s:string"' in raw  # relies on outer declarations


def _other_key_same_certificate(stub):
    return {"key": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "certificate": load_certificate(stub.keys.technical_user_cert)}


def _request(stub, **assertion):
    return lambda: sts_request(technical_user_assertion(stub, **assertion), spid=NORMAL.spid, gln=stub.principal_gln,
                               name=stub.principal_name)


STS_REFUSALS = [
    ("bad signature", lambda s: _request(s, **_other_key_same_certificate(s))(), "signature value does not verify"),
    ("signed with an unregistered certificate",
     lambda s: _request(s, key=s.keys.sts_private_key(), certificate=load_certificate(s.keys.sts_cert))(),
     "not the technical user's registered certificate"),
    ("unknown technical user OID", lambda s: _request(s, oid="2.16.756.5.30.1.999.1")(), "Failed to load user:2.16.756.5.30.1.999.1"),
    ("expired", lambda s: _request(s, not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10))(), "expired"),
    ("in the future", lambda s: _request(s, not_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2))(),
     "in the future"),
    ("too long", lambda s: _request(s, lifetime=dt.timedelta(hours=2))(), "longer than allowed"),
    ("role not TCU", lambda s: sts_request(technical_user_assertion(s), spid=NORMAL.spid, gln=s.principal_gln,
                                           name=s.principal_name, role="HCP"), "claim Role must be TCU"),
    ("no display names", lambda s: sts_request(technical_user_assertion(s), spid=NORMAL.spid, gln=s.principal_gln,
                                               name=s.principal_name, display=False), "displayName attribute required"),
    ("GLN check digit", lambda s: sts_request(technical_user_assertion(s), spid=NORMAL.spid, gln="7601000000003",
                                              name=s.principal_name), "must be a GLN"),
    ("unregistered principal", lambda s: sts_request(technical_user_assertion(s), spid=NORMAL.spid, gln="7601000000019",
                                                     name=s.principal_name), "not a principal"),
    ("unknown patient", lambda s: sts_request(technical_user_assertion(s), spid="761337619999999999",
                                              gln=s.principal_gln, name=s.principal_name), "patient 761337619999999999 not found"),
    ("tampered assertion", lambda s: sts_request(technical_user_assertion(s).replace("classes:unspecified", "classes:Password"),
                                                 spid=NORMAL.spid, gln=s.principal_gln, name=s.principal_name),
     "digest mismatch"),
]


@pytest.mark.parametrize(("build", "text"), [r[1:] for r in STS_REFUSALS], ids=[r[0] for r in STS_REFUSALS])
def test_the_sts_refuses_as_the_platform(stub, http, build, text):
    answer = soap_post(http, stub.sts_url, build(stub))
    assert answer.status_code == 500
    reason = fault(answer)
    assert reason.startswith("ERROR <Ens>ErrBPTerminated: Terminating BP BINT.AD.XUA.Process.AssertionProviderProcess")
    assert text in reason, reason
    assert stub.issued_assertions == []


def _pix(answer):
    return etree.fromstring(answer.content).find(f"{SOAP}Body/{{{HL7}}}PRPA_IN201310UV02")


def test_pix_answers_the_mpi_pid_of_a_known_patient(stub, http):
    answer = soap_post(http, stub.pix_url, pix_request(NORMAL.spid, data_source=stub.registry.assigning_authority))
    response = _pix(answer)
    ids = [(i.get("root"), i.get("extension")) for i in response.iterfind(f".//{{{HL7}}}patient/{{{HL7}}}id")]
    assert (answer.status_code, response.find(f"{{{HL7}}}acknowledgement/{{{HL7}}}typeCode").get("code"),
            response.find(f".//{{{HL7}}}queryResponseCode").get("code"), ids) == (
        200, "AA", "OK", [(stub.registry.assigning_authority, NORMAL.mpi_pid), ("2.16.756.5.30.1.127.3.10.3", NORMAL.spid)])
    assert response.find(f"{{{HL7}}}receiver/{{{HL7}}}device/{{{HL7}}}id").get("root") == "2.16.756.5.30.1.145.1.1"


@pytest.mark.parametrize(("mode", "acknowledgement", "query_response", "detail"), [
    ("AE", "AE", "AE", "204"), ("NF", "AA", "NF", None)])
def test_pix_answers_an_unknown_patient_as_switched(stub, http, mode, acknowledgement, query_response, detail):
    stub.pix_not_found = mode
    answer = soap_post(http, stub.pix_url, pix_request("761337619999999999",
                                                       data_source=stub.registry.assigning_authority))
    response = _pix(answer)
    code = response.find(f".//{{{HL7}}}acknowledgementDetail/{{{HL7}}}code")
    assert (response.find(f"{{{HL7}}}acknowledgement/{{{HL7}}}typeCode").get("code"),
            response.find(f".//{{{HL7}}}queryResponseCode").get("code"), code.get("code") if code is not None else None,
            response.find(f".//{{{HL7}}}subject")) == (acknowledgement, query_response, detail, None)


def test_pix_refuses_a_query_without_the_mpi_as_data_source(stub, http):
    answer = soap_post(http, stub.pix_url, pix_request(NORMAL.spid, data_source="2.16.756.5.30.1.191.1.0.2.1"))
    response = _pix(answer)
    assert (response.find(f"{{{HL7}}}acknowledgement/{{{HL7}}}typeCode").get("code"),
            "dataSource" in response.findtext(f".//{{{HL7}}}acknowledgementDetail/{{{HL7}}}text")) == ("AE", True)


@pytest.mark.parametrize(("old", "new", "text"), [
    (b'<value extension="761337613645876216" root="2.16.756.5.30.1.127.3.10.3"/>',
     b'<value extension="7560557915323" root="2.16.756.5.32"/>', "patientIdentifier must be an EPR-SPID"),
    (b"urn:hl7-org:v3:PRPA_IN201309UV02</Action>", b"urn:hl7-org:v3:PRPA_IN201305UV02</Action>", "wsa:Action"),
    (b'<sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="2.16.756.5.30.1.145.1.1"/>',
     b'<sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id extension="x"/>', "sender/device"),
])
def test_pix_refuses_a_malformed_query(stub, http, old, new, text):
    body = pix_request(NORMAL.spid, data_source=stub.registry.assigning_authority)
    assert old in body
    answer = soap_post(http, stub.pix_url, body.replace(old, new))
    assert (answer.status_code, text in fault(answer)) == (400, True)
