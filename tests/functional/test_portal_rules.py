"""The portal's session and access rules over HTTP (the app in process): CSRF, timeouts, sign-out,
another patient's document id, the development sign-in in production, security headers, bad input
leaving nothing stored, and a representative limited to their 303."""

from __future__ import annotations

import re
import uuid

import pytest

from starlette.testclient import TestClient

from conftest import HCP_GLN, OTHER_SPID, POLICY_ADMIN, SPID, make_settings, running_gateway, sqlite_url
from consent.policies import FULL, Policy
from functional.helpers import document_ids, one_document_bundle
from gateway.samples import pdf_document, provide_bundle
from gateway.composition import create_app
from gateway.first_start import prepare
from gateway.pages.sessions import COOKIE
from gateway.wiring import build_runtime

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client, path: str = "/portal/sign-in") -> str:
    return CSRF.search(client.get(path).text).group(1)


def sign_in(client, spid: str = SPID, **extra):
    token = csrf_of(client)
    return client.post("/portal/dev-sign-in", data={"csrf_token": token, "spid": spid, **extra},
                       follow_redirects=False)


def policy_count(gateway, spid: str = SPID) -> int:
    pid = gateway.services.exchange.patients.pid_for_spid(spid)
    return len(gateway.services.exchange.access.store.policies_for(pid))


@pytest.fixture
def portal(tmp_path):
    """A record with one document for SPID and one for OTHER_SPID, the patient not signed in."""
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient()
        gateway.register_patient(OTHER_SPID, local_id="L-2", family="Autre", given="Paul")
        gateway.mine = document_ids(gateway.provide(one_document_bundle()).json())[0]
        gateway.theirs = document_ids(gateway.provide(one_document_bundle(OTHER_SPID, local_id="L-2")).json())[0]
        gateway.client.headers["Accept-Language"] = "en"
        yield gateway


def test_sign_in_gives_a_new_strict_cookie_and_sign_out_ends_the_session(portal):
    client = portal.client
    client.get("/portal/sign-in")
    before = client.cookies.get(COOKIE)
    answer = sign_in(client)

    assert (answer.status_code, answer.headers["location"]) == (303, "/portal/documents")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "Secure" in cookie
    assert "SameSite=strict" in cookie and "Path=/" in cookie
    session_id = client.cookies.get(COOKIE)
    assert session_id != before  # no session fixation
    assert client.get("/portal/documents").status_code == 200

    out = client.post("/portal/sign-out", data={"csrf_token": csrf_of(client, "/portal/documents")},
                      follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/portal/sign-in")
    client.cookies.set(COOKIE, session_id, domain="testserver.local", path="/")  # a copy of the old cookie
    again = client.get("/portal/documents", follow_redirects=False)
    assert (again.status_code, again.headers["location"]) == (303, "/portal/sign-in?expired=1")


@pytest.mark.parametrize("form", [{}, {"csrf_token": "forged"}])
def test_a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing(portal, form):
    client = portal.client
    sign_in(client)
    before = policy_count(portal)

    answer = client.post("/portal/sharing/apply", data={**form, "action": "block", "gln": HCP_GLN})

    assert answer.status_code == 403
    assert "This form has expired or did not come from this page" in answer.text
    assert policy_count(portal) == before


def test_a_form_posted_from_another_origin_is_refused(portal):
    client = portal.client
    sign_in(client)
    before = policy_count(portal)
    token = csrf_of(client, "/portal/sharing")

    answer = client.post("/portal/sharing/apply", data={"csrf_token": token, "action": "block", "gln": HCP_GLN},
                         headers={"Origin": "https://evil.example"})

    assert answer.status_code == 403
    assert policy_count(portal) == before


def test_the_same_form_with_its_token_is_saved(portal):
    client = portal.client
    sign_in(client)
    before = policy_count(portal)
    token = csrf_of(client, "/portal/sharing")

    answer = client.post("/portal/sharing/apply", data={"csrf_token": token, "action": "block", "gln": HCP_GLN},
                         headers={"Origin": "https://testserver"}, follow_redirects=False)

    assert (answer.status_code, answer.headers["location"]) == (303, "/portal/sharing?done=saved")
    assert policy_count(portal) == before + 1
    found = portal.find()  # the blocked HCP had a restricted grant: the block overrides it
    assert found.json()["total"] == 0


def test_an_idle_session_expires_and_the_page_says_so(portal):
    client = portal.client
    sign_in(client)
    sessions = client.app.state.portal.sessions
    moment = [sessions.clock()]
    sessions.clock = lambda: moment[0]
    moment[0] += sessions.idle_seconds + 1

    answer = client.get("/portal/documents", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/portal/sign-in?expired=1")
    page = client.get("/portal/sign-in?expired=1")
    assert "Your session has ended" in page.text or "Votre session a pris fin" in page.text


def test_another_patients_document_answers_404_like_a_missing_one(portal):
    client = portal.client
    sign_in(client)
    missing = str(uuid.uuid4())

    for suffix in ("", "/content"):
        theirs = client.get(f"/portal/documents/{portal.theirs}{suffix}")
        absent = client.get(f"/portal/documents/{missing}{suffix}")
        assert theirs.status_code == absent.status_code == 404
        assert _main(theirs.text) == _main(absent.text)
    assert client.get(f"/portal/documents/{portal.mine}").status_code == 200
    refused = [e for e in portal.services.auditor.ledger.all_records() if e["outcome"] != "0"
               and any(a.get("altId") == SPID for a in e["agent"])]
    assert len(refused) >= 2  # the attempts on the other patient's document are in the ledger


def test_the_development_sign_in_is_refused_in_production(tmp_path):
    settings = prepare(make_settings(tmp_path / "data", sqlite_url(tmp_path))).settings
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient()
    # The same keys and store, configured as production (the files exist, so nothing is a default).
    runtime = build_runtime(settings.model_copy(update={"env": "production"}))
    with TestClient(create_app(runtime), base_url="https://testserver", headers={"Accept-Language": "en"}) as client:
        page = client.get("/portal/sign-in")
        assert "dev-sign-in" not in page.text
        assert "No identity provider is configured." in page.text  # and no other way in: fail closed
        token = CSRF.search(page.text).group(1)
        answer = client.post("/portal/dev-sign-in", data={"csrf_token": token, "spid": SPID}, follow_redirects=False)
        assert answer.status_code == 403
        assert "not available in production" in answer.text
        assert client.get("/portal/documents", follow_redirects=False).headers["location"] == "/portal/sign-in"
    runtime.close()


def test_security_headers_on_every_portal_answer(portal):
    client = portal.client
    for answer in (client.get("/portal/sign-in"), sign_in(client), client.get("/portal/documents"),
                   client.get(f"/portal/documents/{portal.mine}/content"), client.get("/portal/static/pages.css")):
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src" not in csp or "script-src 'self';" in csp
        assert "unsafe-inline" not in csp.split("style-src")[0]  # never for scripts
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["x-frame-options"] == "DENY"
    assert client.get("/portal/documents").headers["cache-control"] == "no-store"
    assert client.get(f"/portal/documents/{portal.mine}/content").headers["cache-control"] == "no-store"
    assert client.get("/portal/static/pages.css").headers["cache-control"].startswith("public")
    assert "<script>" not in client.get("/portal/documents").text  # no inline script anywhere


@pytest.mark.parametrize("form, problem", [
    ({"action": "grant-professional", "gln": "7601000000003", "level": "normal"}, "valid check digit"),
    ({"action": "grant-group", "group": "urn:oid:2.16.756.5.30.1.999.7.1", "level": "normal"}, "needs an end date"),
    ({"action": "grant-professional", "gln": HCP_GLN, "level": "secret"}, "Choose normal or restricted"),
    ({"action": "grant-professional", "gln": HCP_GLN, "level": "normal", "end": "2001-01-01"}, "in the past"),
    ({"action": "representative", "representative": "has space"}, "without spaces"),
    ({"action": "revoke", "consent_id": str(uuid.uuid4())}, "does not exist"),
    ({"action": "drop-tables"}, "Choose what you want to change"),
])
def test_bad_sharing_input_is_explained_and_nothing_is_stored(portal, form, problem):
    client = portal.client
    sign_in(client, **{"lang": "en"})
    before = policy_count(portal)
    token = csrf_of(client, "/portal/sharing")

    for step in ("preview", "apply"):
        answer = client.post(f"/portal/sharing/{step}", data={"csrf_token": token, **form},
                             headers={"Accept-Language": "en"})
        assert answer.status_code == 400
        assert problem in answer.text
    assert policy_count(portal) == before


def test_a_representative_sees_only_what_their_303_gives(portal):
    mandate = Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=303, patient_spid=SPID, rule=FULL,
                     subject_id="rep-42")
    portal.services.policies.apply(principal=POLICY_ADMIN, changes=[_post(mandate)])
    client = portal.client
    assert sign_in(client, **{"as": "representative", "representative": "rep-42"}).status_code == 303
    assert portal.mine in client.get("/portal/documents").text
    assert client.get(f"/portal/documents/{portal.theirs}").status_code == 404  # another patient: not theirs

    portal.services.policies.remove(principal=POLICY_ADMIN, consent_id=mandate.policy_set_id.removeprefix("urn:uuid:"))
    assert portal.mine not in client.get("/portal/documents").text  # the 303 is gone: nothing to see
    assert client.get(f"/portal/documents/{portal.mine}").status_code == 404
    assert client.get("/portal/trail").status_code == 403
    refused = sign_in(client, **{"as": "representative", "representative": "rep-42"})
    assert refused.status_code == 403 and "No record could be opened" in refused.text


def test_an_unknown_patient_cannot_sign_in(portal):
    answer = sign_in(portal.client, "761337610400000000")
    assert answer.status_code == 403
    assert portal.client.get("/portal/documents", follow_redirects=False).status_code == 303


def test_the_patient_makes_a_document_secret_through_the_metadata_use_case(portal):
    client = portal.client
    sign_in(client)
    assert portal.find().json()["total"] == 1
    token = csrf_of(client, f"/portal/documents/{portal.mine}")

    answer = client.post(f"/portal/documents/{portal.mine}/confidentiality",
                         data={"csrf_token": token, "level": "secret"}, follow_redirects=False)

    assert (answer.status_code, answer.headers["location"]) == (303, f"/portal/documents/{portal.mine}?done=confidentiality")
    assert 'class="level level-secret"' in client.get(f"/portal/documents/{portal.mine}").text
    assert portal.find().json()["total"] == 0  # the HCP's restricted grant does not reach secret
    theirs = client.post(f"/portal/documents/{portal.theirs}/confidentiality",
                         data={"csrf_token": token, "level": "normal"})
    assert theirs.status_code == 404


def test_a_crafted_confidentiality_level_is_refused(portal):
    client = portal.client
    sign_in(client)
    token = csrf_of(client, f"/portal/documents/{portal.mine}")
    answer = client.post(f"/portal/documents/{portal.mine}/confidentiality", data={"csrf_token": token,
                                                                                  "level": "public"})
    assert answer.status_code == 404


def _post(policy):
    from gateway.exchanges.policies import PolicyChange

    return PolicyChange("POST", policy.policy_set_id, policy)


def _main(html: str) -> str:
    return re.sub(r'value="[^"]+"', "", html[html.index("<main"):html.index("</main>")])



def test_emergency_notifications_are_shown_new_once_then_marked_read(tmp_path, database_url):
    with running_gateway(tmp_path, database_url) as gateway:
        gateway.register_patient(grant_hcp=None)
        gateway.provide(one_document_bundle())
        emergency = gateway.tokens.headers(gateway.tokens.hcp(gln="7601000000019", purpose="EMER"))
        assert gateway.find(headers=emergency).json()["total"] == 1
        client = gateway.client
        client.headers["Accept-Language"] = "en"
        sign_in(client)

        first = client.get("/portal/trail")
        assert first.text.count('<span class="badge">New</span>') == 1
        assert first.text.count('<tr class="emergency">') == 1
        second = client.get("/portal/trail")
        assert second.text.count('<span class="badge">New</span>') == 0
        assert "Dr. Luc Favre</strong> searched your documents in an emergency" in second.text  # still listed
        pid = gateway.services.exchange.patients.pid_for_spid(SPID)
        [(notification_id, _, _)] = gateway.services.exchange.access.notifications.for_patient(pid)
        assert gateway.services.exchange.access.notifications.seen(pid) == {notification_id}


def test_documents_and_trail_come_in_pages(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    bundle = provide_bundle(spid=SPID, documents=[{"title": f"Report {n}", "content": pdf_document(f"R{n}", ["x"])}
                                                  for n in range(23)])
    assert gateway.provide(bundle).status_code == 200
    client = gateway.client
    client.headers["Accept-Language"] = "en"
    sign_in(client)

    first, second = client.get("/portal/documents"), client.get("/portal/documents?page=2")
    assert "23 documents" in first.text and "Page 1 of 2" in first.text
    assert first.text.count('class="document-link"') == 20 and second.text.count('class="document-link"') == 3
    assert "page=2" in first.text and "page=1" in second.text
    for _ in range(30):
        client.get("/portal/documents?page=99")  # each search is in the trail: more than a page of it
    trail = client.get("/portal/trail")
    assert "Page 1 of" in trail.text and trail.text.count("<tr") == 26  # header + 25 entries


def test_a_refused_form_is_in_the_ledger_and_a_flood_of_them_is_counted_not_written_each(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), auth_failure_interval_seconds=60,
                         auth_failure_limit=1000) as gateway:
        gateway.register_patient()
        client = gateway.client
        sign_in(client)
        token = csrf_of(client, "/portal/sharing")
        before = len(gateway.services.auditor.ledger.all_records())

        answers = [client.post("/portal/sharing/apply", data={"csrf_token": token, "action": "block", "gln": HCP_GLN},
                               headers={"Origin": "https://evil.example"}) for _ in range(40)]
        during = gateway.services.auditor.ledger.all_records()[before:]

        assert {a.status_code for a in answers} == {403}
        assert [(r["outcome"], r["outcomeDesc"]) for r in during] == [
            ("4", "POST /portal/sharing/apply: portal form refused: no CSRF token of this session, or sent from "
                  "another origin")]
        assert [a["altId"] for a in during[0]["agent"] if a.get("requestor")] == [SPID]  # the signed-in patient
    summaries = [r["outcomeDesc"] for r in gateway.services.auditor.ledger.all_records()[before:]
                 if "further refused" in r.get("outcomeDesc", "")]
    assert len(summaries) == 1 and summaries[0].startswith("39 further refused authentication(s) from testclient")
    assert "portal form refused" in summaries[0]
