"""Links come from the configured base URL, never from the request's Host (issue 10, item 8), and
ITI-68 never lets a browser render an active document from the gateway's origin (item 12)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from conftest import LOCAL_SYSTEM, SEARCH, SPID, grant_consent, make_settings, running_gateway, sqlite_url
from gateway.first_start import ProductionMisconfigured, prepare
from gateway.samples import patient_feed
from helpers import document_ids, one_document_bundle

EVIL = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"}


def _links(value, key: str = "") -> list[str]:
    """The links the gateway writes: fullUrl, location, Bundle.link.url, attachment.url, implementation.url."""
    if isinstance(value, dict):
        own = [value["url"]] if isinstance(value.get("url"), str) and ("relation" in value or "contentType" in value
                                                                       or "description" in value) else []
        return own + [u for k, v in value.items() for u in _links(v, k)]
    if isinstance(value, list):
        return [u for v in value for u in _links(v, key)]
    return [value] if key in ("fullUrl", "location") and isinstance(value, str) else []


def test_no_link_follows_the_host_header(sqlite_gateway):
    gw = sqlite_gateway
    gw.register_patient()
    hcp = {**gw.as_hcp(), **EVIL}
    patient = {**gw.tokens.headers(gw.tokens.patient()), **EVIL}
    provided = gw.client.post("/fhir", content=orjson.dumps(one_document_bundle()), headers=hcp)
    entry_id = document_ids(provided.json())[0]
    gw.provide(one_document_bundle())
    feed = patient_feed(spid="761337610499999991", local_system=LOCAL_SYSTEM, local_id="L-5", family="Doe",
                        given="Jo", birth_date="1990-01-01", gender="male")
    fed = gw.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-5", content=orjson.dumps(feed), headers=hcp)
    consent = gw.client.post("/fhir/Consent", headers=patient,
                             content=orjson.dumps(grant_consent(spid=SPID, gln="7601000000019", level="normal")))
    answers = [
        provided, fed, consent,
        gw.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID, "_count": "1"},
                      headers=hcp),
        gw.client.get(f"/fhir/DocumentReference/{entry_id}", headers=hcp),
        gw.client.get("/fhir/Patient", params={"family": "Muster"}, headers=hcp),
        gw.client.get("/fhir/AuditEvent", params={"entity.identifier": SEARCH + SPID, "_count": "1"},
                      headers=patient),
        gw.client.get("/fhir/Consent", params={"patient:identifier": SEARCH + SPID}, headers=patient),
        gw.client.get("/fhir/metadata", headers=EVIL),
    ]
    assert [a.status_code for a in answers] == [200, 201, 201, 200, 200, 200, 200, 200, 200]
    links = [u for a in answers for u in _links(a.json())] + [a.headers["location"] for a in answers
                                                              if "location" in a.headers]
    assert len(links) > 15  # locations, fullUrls, attachment.url, self and next links, Location headers
    assert [u for u in links if not u.startswith("https://testserver/fhir")] == []
    assert [a.text for a in answers if "evil.example" in a.text or "evil.example" in str(a.headers)] == []


def test_without_a_configured_base_links_name_the_server_itself(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), public_base_url=None, port=9443) as gw:
        gw.register_patient()
        found = gw.client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + SPID},
                              headers={**gw.as_hcp(), **EVIL})
        assert found.json()["link"][0]["url"].startswith("https://127.0.0.1:9443/fhir/DocumentReference?")


PRODUCTION = dict(env="production", keyring="k.json", tls_cert="c.pem", tls_key="k.pem",
                  trusted_issuers="t.json", audit_signing_key="a.pem")


def test_production_requires_a_public_base_url(tmp_path):
    settings = make_settings(tmp_path, "postgresql+psycopg://x@h/db", **PRODUCTION, public_base_url=None)
    with pytest.raises(ProductionMisconfigured, match="EPR_PUBLIC_BASE_URL"):
        prepare(settings)


@pytest.mark.parametrize("url", ["http://epr.example/fhir", "https://epr.example/fhir?x=1", "https:///fhir",
                                 "https://epr.example/fhir#top", "https://u:p@epr.example/fhir"])
def test_a_base_url_that_cannot_be_a_link_base_is_refused(tmp_path, url):
    settings = make_settings(tmp_path, "postgresql+psycopg://x@h/db", **PRODUCTION, public_base_url=url)
    with pytest.raises(ProductionMisconfigured, match="EPR_PUBLIC_BASE_URL"):
        prepare(settings)


# -- ITI-68 (item 12) -------------------------------------------------------------------------------

ACTIVE = [("text/html", b"<html><script>alert(document.cookie)</script></html>"),
          ("text/html; charset=utf-8", b"<p onclick=x()>"), ("TEXT/HTML", b"<script>1</script>"),
          ("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
          ("application/xhtml+xml", b'<html xmlns="http://www.w3.org/1999/xhtml"><script>1</script></html>'),
          ("text/xml", b"<?xml version='1.0'?><?xml-stylesheet href='x.xsl'?><a/>"),
          ("application/xml", b"<a/>"), ("application/hl7-v3+xml", b"<ClinicalDocument/>"),
          ("text/javascript", b"alert(1)"), ("application/octet-stream", b"\x00\x01"),
          ("application/dicom", b"DICM")]


def _retrieve(gw, mime_type: str, content: bytes):
    provided = gw.provide(one_document_bundle(mime_type=mime_type, content=content))
    assert provided.status_code == 200, provided.text
    return gw.client.get(f"/fhir/Binary/{document_ids(provided.json())[0]}", headers=gw.as_hcp())


@pytest.mark.parametrize("mime_type, content", ACTIVE, ids=[m for m, _ in ACTIVE])
def test_active_documents_are_downloaded_sandboxed_with_identical_bytes(sqlite_gateway, mime_type, content):
    sqlite_gateway.register_patient()
    answer = _retrieve(sqlite_gateway, mime_type, content)
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == hashlib.sha256(content).hexdigest()
    assert answer.headers["content-disposition"].startswith("attachment")
    assert answer.headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-type"].split(";")[0].lower() == mime_type.split(";")[0].lower()


@pytest.mark.parametrize("mime_type", ["application/pdf", "image/png", "image/jpeg", "text/plain"])
def test_passive_documents_are_shown_inline(sqlite_gateway, mime_type):
    sqlite_gateway.register_patient()
    content = b"%PDF-1.4 plain bytes" if mime_type == "application/pdf" else b"\x89PNG plain bytes"
    answer = _retrieve(sqlite_gateway, mime_type, content)
    assert answer.content == content
    assert "content-disposition" not in answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("mime_type", ["text/html\r\nSet-Cookie: a=b", "text/html\n", "html", "text/ html",
                                       "text/html; charset=\"utf-8\r\""])
def test_a_content_type_that_is_not_a_mime_type_is_refused_at_provide(sqlite_gateway, mime_type):
    sqlite_gateway.register_patient()
    response = sqlite_gateway.provide(one_document_bundle(mime_type=mime_type))
    assert response.status_code in (400, 422), response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert sqlite_gateway.find().json()["total"] == 0


