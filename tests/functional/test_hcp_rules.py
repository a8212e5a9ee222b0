"""The physicians' page's session and access rules over HTTP (the app in process): its own strict cookie,
CSRF and Origin, timeouts, security headers, the development sign-in refused in production, an assistant
without a delegation refused, another patient's ids answered like unknown ones, uploads that are not a
PDF or too large refused with nothing stored, and the documents listed exactly as ITI-67 finds them."""

from __future__ import annotations

import uuid

import orjson
import pytest
from starlette.testclient import TestClient

from conftest import HCP_GLN, LOCAL_SYSTEM, OTHER_SPID, SPID, make_settings, running_gateway, sqlite_url
from functional.hcp_helpers import (SPID_SEARCH, csrf_of, listed_ids, main_of, patient_pid, problems, sign_in,
                                    upload)
from functional.helpers import document_ids, one_document_bundle
from gateway.composition import create_app
from gateway.first_start import prepare
from gateway.hcp.site import COOKIE
from gateway.pages.sessions import COOKIE as PORTAL_COOKIE
from gateway.samples import patient_feed, pdf_document, provide_bundle
from gateway.wiring import build_runtime

OTHER_GLN = "7601000000019"
NOT_OPEN_SPID = "761337610455555551"


@pytest.fixture
def record(tmp_path):
    """Two open records; the test HCP (HCP_GLN) has a restricted grant on SPID's, none on OTHER_SPID's."""
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient()
        gateway.register_patient(OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
        bundle = provide_bundle(spid=SPID, documents=[
            {"title": "Discharge letter", "content": pdf_document("Discharge", ["x"])},
            {"title": "Psychiatric note", "content": pdf_document("Note", ["y"]), "confidentiality": "restricted"}])
        secret = provide_bundle(spid=SPID, author_role="PAT", documents=[  # only the patient files it secret
            {"title": "Secret note", "content": pdf_document("Secret", ["z"]), "confidentiality": "secret"}])
        gateway.mine = document_ids(gateway.provide(bundle).json()) + document_ids(gateway.provide(
            secret, headers=gateway.tokens.headers(gateway.tokens.patient())).json())
        gateway.theirs = document_ids(gateway.provide(one_document_bundle(OTHER_SPID, local_id="L-2")).json())[0]
        gateway.client.headers["Accept-Language"] = "en"
        yield gateway


def documents_of_the_patient(gateway, spid: str = SPID) -> int:
    return gateway.find(spid, headers=gateway.tokens.headers(gateway.tokens.patient(spid))).json()["total"]


def test_sign_in_gives_a_new_strict_cookie_of_the_page_and_sign_out_ends_the_session(record):
    client = record.client
    client.get("/hcp/sign-in")
    before = client.cookies.get(COOKIE)
    answer = sign_in(client, HCP_GLN, "Dr. Luc Favre")

    assert (answer.status_code, answer.headers["location"]) == (303, "/hcp/patients")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "Secure" in cookie
    assert "SameSite=strict" in cookie and "Path=/" in cookie
    session_id = client.cookies.get(COOKIE)
    assert session_id != before  # no session fixation
    assert client.get("/hcp/patients").status_code == 200
    # The patient's page knows nothing of it, and its cookie opens nothing here.
    assert client.get("/portal/documents", follow_redirects=False).headers["location"] == "/portal/sign-in"
    client.cookies.set(PORTAL_COOKIE, session_id, domain="testserver.local", path="/")
    assert client.get("/portal/documents", follow_redirects=False).headers["location"] == "/portal/sign-in?expired=1"

    out = client.post("/hcp/sign-out", data={"csrf_token": csrf_of(client, "/hcp/patients")}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/hcp/sign-in")
    client.cookies.set(COOKIE, session_id, domain="testserver.local", path="/")  # a copy of the old cookie
    again = client.get("/hcp/patients", follow_redirects=False)
    assert (again.status_code, again.headers["location"]) == (303, "/hcp/sign-in?expired=1")


@pytest.mark.parametrize("form, origin", [({}, None), ({"csrf_token": "forged"}, None), ("token", "https://evil.example")])
def test_a_form_without_the_sessions_token_or_from_elsewhere_is_refused_and_changes_nothing(record, form, origin):
    client = record.client
    sign_in(client, HCP_GLN)
    pid = patient_pid(client)
    fields = {"csrf_token": csrf_of(client, "/hcp/patients")} if form == "token" else form
    before = len(record.services.auditor.ledger.all_records())

    answer = client.post(f"/hcp/patients/{pid}/emergency", data={**fields, "reason": "Unconscious, no relative here"},
                         headers={"Origin": origin} if origin else {}, follow_redirects=False)

    assert answer.status_code == 403
    assert "This form has expired or did not come from this page" in answer.text
    assert "emergency-banner" not in client.get(f"/hcp/patients/{pid}").text
    assert [r["outcomeDesc"] for r in record.services.auditor.ledger.all_records()[before:] if r["outcome"] != "0"] == [
        f"POST /hcp/patients/{pid}/emergency: hcp form refused: no CSRF token of this session, or sent from another "
        "origin"]


def test_an_idle_session_expires_and_the_page_says_so(record):
    client = record.client
    sign_in(client, HCP_GLN)
    sessions = client.app.state.hcp.sessions
    moment = [sessions.clock()]
    sessions.clock = lambda: moment[0]
    moment[0] += sessions.idle_seconds + 1

    answer = client.get("/hcp/patients", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/hcp/sign-in?expired=1")
    assert "Your session has ended" in client.get("/hcp/sign-in?expired=1").text


def test_security_headers_on_every_answer_of_the_page(record):
    client = record.client
    sign_in(client, HCP_GLN)
    pid = patient_pid(client)
    answers = [client.get("/hcp/sign-in"), client.get("/hcp/patients"), client.get(f"/hcp/patients/{pid}"),
               client.get(f"/hcp/patients/{pid}/upload"), client.get("/hcp/activity"),
               client.get(f"/hcp/patients/{pid}/documents/{record.mine[0]}/content"),
               client.get("/hcp/static/pages.css")]
    for answer in answers:
        assert answer.status_code == 200, answer.url
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src" not in csp or "script-src 'self';" in csp
        assert (answer.headers["x-content-type-options"], answer.headers["referrer-policy"],
                answer.headers["x-frame-options"]) == ("nosniff", "same-origin", "DENY")
    assert [a.headers["cache-control"] for a in answers[:-1]] == ["no-store"] * 6
    assert answers[-1].headers["cache-control"].startswith("public")
    assert all("<script" not in a.text for a in answers[:5])  # no script at all on the professionals' pages


def test_the_development_sign_in_is_refused_in_production(tmp_path):
    settings = prepare(make_settings(tmp_path / "data", sqlite_url(tmp_path))).settings
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient()
    runtime = build_runtime(settings.model_copy(update={"env": "production"}))
    with TestClient(create_app(runtime), base_url="https://testserver", headers={"Accept-Language": "en"}) as client:
        page = client.get("/hcp/sign-in")
        assert "dev-sign-in" not in page.text
        assert "No identity provider is configured." in page.text  # and no other way in: fail closed
        answer = client.post("/hcp/dev-sign-in", data={"csrf_token": csrf_of(client), "gln": HCP_GLN},
                             follow_redirects=False)
        assert answer.status_code == 403 and "not available in production" in answer.text
        assert client.get("/hcp/patients", follow_redirects=False).headers["location"] == "/hcp/sign-in"
    runtime.close()


@pytest.mark.parametrize("form, message", [
    ({"gln": "7601000000003"}, "This sign-in was refused"),  # a wrong check digit
    ({"gln": OTHER_GLN, "as": "assistant"}, "An assistant signs in for the professional"),  # without delegation
    ({"gln": OTHER_GLN, "as": "assistant", "acting_for": "7601000000003"}, "This sign-in was refused"),
])
def test_a_sign_in_the_fhir_door_would_refuse_is_refused(record, form, message):
    answer = sign_in(record.client, **{"name": "X", **form})

    assert answer.status_code == 403 and message in answer.text
    assert record.client.get("/hcp/patients", follow_redirects=False).headers["location"] == "/hcp/sign-in"


def test_another_patients_document_or_an_unknown_patient_answers_like_an_unknown_one(record):
    client = record.client
    sign_in(client, HCP_GLN)
    pid = patient_pid(client)
    fed = record.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-9", headers=record.as_hcp(), content=orjson.dumps(
        patient_feed(spid=NOT_OPEN_SPID, local_system=LOCAL_SYSTEM, local_id="L-9", family="Neu", given="Nina",
                     birth_date="1990-01-01", gender="female"))).json()  # fed, never onboarded: no EPR open
    answers = {"unknown document": client.get(f"/hcp/patients/{pid}/documents/{uuid.uuid4()}/content"),
               "another patient's document": client.get(f"/hcp/patients/{pid}/documents/{record.theirs}/content"),
               "unknown patient": client.get(f"/hcp/patients/{uuid.uuid4().hex}"),
               "record not open": client.get(f"/hcp/patients/{fed['id']}")}
    assert {k: a.status_code for k, a in answers.items()} == dict.fromkeys(answers, 404)
    assert len({main_of(a.text) for a in answers.values()}) == 1  # one page for all four: nothing revealed
    assert client.get(f"/hcp/patients/{pid}/documents/{record.mine[0]}/content").status_code == 200
    found = client.get("/hcp/patients", params={"by": "spid", "spid": NOT_OPEN_SPID})
    assert "No patient with an open record matches." in found.text


@pytest.mark.parametrize("content, status, message", [
    (b"<html><script>alert(1)</script></html>", 400, "This file is not a PDF."),
    (b"%PDF-1.4\n" + b"0" * 4096 + b"\n%%EOF\n", 413, "The file is larger than the limit of 0 MB."),
])
def test_an_upload_that_is_not_a_pdf_or_too_large_is_explained_and_nothing_is_stored(record, content, status, message):
    client = record.client
    client.app.state.hcp.max_upload_bytes = 2048
    sign_in(client, HCP_GLN)
    pid = patient_pid(client)
    before = documents_of_the_patient(record)

    answer = upload(client, pid, content, title="Kept as typed")

    assert answer.status_code == status
    assert problems(answer.text) == [f"{message} " + ("Choose a PDF document. Nothing was stored." if status == 400
                                                      else "Nothing was stored.")]
    assert 'value="Kept as typed"' in answer.text and 'aria-invalid="true"' in answer.text
    assert documents_of_the_patient(record) == before


def test_the_page_lists_exactly_what_iti67_finds_for_the_same_professional(record):
    client = record.client
    sign_in(client, HCP_GLN, "Dr. Luc Favre")
    pid = patient_pid(client)

    over_fhir = {e["resource"]["id"] for e in record.find().json()["entry"]}
    page = client.get(f"/hcp/patients/{pid}")
    assert listed_ids(page.text) == over_fhir == set(record.mine[:2])  # normal and restricted, never secret
    restricted = client.get(f"/hcp/patients/{pid}", params={"class": "371531000"})
    assert listed_ids(restricted.text) == {e["resource"]["id"] for e in record.find(category=(
        "http://snomed.info/sct|371531000")).json().get("entry", [])}

    # Another professional, without a grant, finds the patient and sees no document (as over FHIR).
    client.post("/hcp/sign-out", data={"csrf_token": csrf_of(client, "/hcp/patients")})
    sign_in(client, OTHER_GLN, "Dr. Claire Rey")
    page = client.get(f"/hcp/patients/{patient_pid(client)}")
    assert listed_ids(page.text) == set() and "No document of this record is visible to you" in page.text
    other = record.tokens.headers(record.tokens.hcp(gln=OTHER_GLN))
    assert record.find(headers=other).json()["total"] == 0


def test_an_assistant_sees_what_the_professional_they_work_for_sees(record):
    client = record.client
    answer = sign_in(client, OTHER_GLN, "Ana Assistant", **{"as": "assistant", "acting_for": HCP_GLN,
                                                            "acting_for_name": "Dr. Luc Favre"})
    assert answer.headers["location"] == "/hcp/patients"
    page = client.get(f"/hcp/patients/{patient_pid(client)}")

    assert "Ana Assistant, assistant of Dr. Luc Favre" in page.text
    as_assistant = record.tokens.headers(record.tokens.mint(role="ASS", gln=OTHER_GLN, name="Ana Assistant",
                                                            principal_gln=HCP_GLN, principal_name="Dr. Luc Favre"))
    assert listed_ids(page.text) == {e["resource"]["id"] for e in record.find(headers=as_assistant).json()["entry"]}
    assert len(listed_ids(page.text)) == 2


def test_the_page_speaks_german_and_french(record):
    client = record.client
    sign_in(client, HCP_GLN)
    client.post("/hcp/language", data={"csrf_token": csrf_of(client, "/hcp/patients"), "lang": "de",
                                       "back": "/hcp/patients"})
    assert "<h1>Patientin / Patienten finden</h1>" in client.get("/hcp/patients").text
    client.post("/hcp/language", data={"csrf_token": csrf_of(client, "/hcp/patients"), "lang": "fr",
                                       "back": "/hcp/patients"})
    assert "<h1>Trouver un patient</h1>" in client.get("/hcp/patients").text


def test_replacing_a_document_supersedes_it_and_one_not_readable_is_refused(record):
    client = record.client
    sign_in(client, HCP_GLN)
    pid = patient_pid(client)

    answer = upload(client, pid, title="Discharge letter, corrected", replaces=record.mine[0])
    assert (answer.status_code, answer.headers["location"]) == (303, f"/hcp/patients/{pid}?done=uploaded")
    listed = listed_ids(client.get(f"/hcp/patients/{pid}").text)
    assert record.mine[0] not in listed and record.mine[1] in listed and len(listed) == 2
    assert {e["resource"]["id"] for e in record.find(status="current").json()["entry"]} == listed

    before = documents_of_the_patient(record)
    refused = upload(client, pid, title="Not mine to replace", replaces=record.mine[2])  # the secret one
    assert refused.status_code == 422
    assert problems(refused.text) == ["The document was refused: the document it replaces is not one you may read. "
                                      "Nothing was stored."]
    assert documents_of_the_patient(record) == before


def test_documents_come_in_pages_of_twenty_with_the_filters_kept(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    bundle = provide_bundle(spid=SPID, documents=[{"title": f"Report {n:02d}", "content": pdf_document(f"R{n}", ["x"])}
                                                  for n in range(23)])
    assert gateway.provide(bundle).status_code == 200
    client = gateway.client
    client.headers["Accept-Language"] = "en"
    sign_in(client, HCP_GLN)
    pid = patient_pid(client)

    first = client.get(f"/hcp/patients/{pid}", params={"class": "371531000"})
    second = client.get(f"/hcp/patients/{pid}", params={"class": "371531000", "page": "2"})
    assert "23 documents you may see" in first.text and "Page 1 of 2" in first.text
    assert (len(listed_ids(first.text)), len(listed_ids(second.text))) == (20, 3)
    assert listed_ids(first.text) | listed_ids(second.text) == {e["resource"]["id"] for e in gateway.find(
        _count="100").json()["entry"]}
    assert 'href="?class=371531000&amp;page=2"' in first.text and 'href="?class=371531000&amp;page=1"' in second.text


def test_every_redirect_and_page_stays_on_this_origin_whatever_the_host_header(record):
    """The public-origin rule (test_host_header) on the physicians' page: `Host: evil.example` moves no
    redirect, no link of a page and no origin check."""
    client = record.client
    client.headers["Host"] = "evil.example"
    steps = [client.get("/hcp", follow_redirects=False), sign_in(client, HCP_GLN)]
    pid = patient_pid(client)
    steps += [client.post(f"/hcp/patients/{pid}/emergency", follow_redirects=False,
                          data={"csrf_token": csrf_of(client, f"/hcp/patients/{pid}/emergency"),
                                "reason": "Unconscious, no relative here"}),
              upload(client, pid),
              client.post(f"/hcp/patients/{pid}/emergency/end", data={"csrf_token": csrf_of(client, "/hcp/patients")},
                          follow_redirects=False)]
    pages = [client.get(path) for path in ("/hcp/patients", f"/hcp/patients/{pid}", f"/hcp/patients/{pid}/upload",
                                           f"/hcp/patients/{pid}/emergency", "/hcp/activity")]
    forged = client.post("/hcp/sign-out", data={"csrf_token": csrf_of(client, "/hcp/patients")},
                         headers={"Origin": "https://evil.example"}, follow_redirects=False)

    assert [(s.status_code, s.headers["location"]) for s in steps] == [
        (303, "/hcp/sign-in"), (303, "/hcp/patients"), (303, f"/hcp/patients/{pid}?done=emergency"),
        (303, f"/hcp/patients/{pid}?done=uploaded"), (303, f"/hcp/patients/{pid}")]
    assert [page.status_code for page in pages] == [200] * 5
    assert not any("evil" in page.text for page in pages)
    assert forged.status_code == 403  # the Host header's origin is not the gateway's
    assert client.get("/hcp/patients").status_code == 200  # still signed in
