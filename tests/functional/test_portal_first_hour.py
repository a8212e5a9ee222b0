"""Issue 27 items 9–16: the patient's and the representative's first hour on /portal, over HTTP (the app in
process, SQLite). The browser side of the same items (focus, layout on a phone, axe) is in tests/browser."""

from __future__ import annotations

import html
import json
import re
import uuid

import pytest

from conftest import HCP_GLN, POLICY_ADMIN, SPID, running_gateway, sqlite_url
from consent.policies import FULL, Policy
from functional.helpers import document_ids, one_document_bundle
from functional.test_portal_rules import csrf_of, sign_in
from gateway.exchanges.policies import PolicyChange
from gateway.samples import pdf_document, provide_bundle

CLAIRE = "7601000000019"
NADIA = "7601000000033"
GROUP = "urn:oid:2.16.756.5.30.1.999.7.1"
REPRESENTATIVE = "rep-jean-7"
DIRECTORY = {
    "professionals": [{"gln": HCP_GLN, "name": "Dr. Luc Favre-Rey", "organisation": "Cabinet Favre, Sion"},
                      {"gln": CLAIRE, "name": "Dr. Claire Rey", "organisation": "Hôpital de Sion"}],
    "groups": [{"id": GROUP, "name": "Hôpital du Valais, médecine interne"}],
    "representatives": [{"id": REPRESENTATIVE, "name": "Jean Muster", "birth_date": "1955-02-03",
                         "locality": "Sion"}]}


@pytest.fixture
def page(tmp_path):
    """A record with one discharge summary (written by HCP_GLN, whom the record names "Luc Favre" and the
    directory "Dr. Luc Favre-Rey"), the HCP holding a restricted grant; the patient signed in, in English."""
    directory = tmp_path / "directory.json"
    directory.write_text(json.dumps(DIRECTORY), encoding="utf-8")
    with running_gateway(tmp_path, sqlite_url(tmp_path), portal_directory=directory) as gateway:
        gateway.register_patient()
        gateway.letter = document_ids(gateway.provide(one_document_bundle()).json())[0]
        gateway.client.headers["Accept-Language"] = "en"
        sign_in(gateway.client)
        yield gateway


def text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def rows(page_html: str) -> list[str]:
    body = page_html[page_html.index("<tbody>"):page_html.index("</tbody>")] if "<tbody>" in page_html else ""
    return [text(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def element(page_html: str, element_id: str) -> str:
    """The text of the element with this id (up to its own closing tag)."""
    match = re.search(rf'<(\w+)[^>]* id="{re.escape(element_id)}"[^>]*>(.*?)</\1>', page_html, re.S)
    assert match, f"no element #{element_id}"
    return text(match.group(2))


def tag(page_html: str, element_id: str) -> str:
    match = re.search(rf'<[^>]* id="{re.escape(element_id)}"[^>]*>', page_html)
    assert match, f"no element #{element_id}"
    return match.group(0)


def preview(client, **form):
    return client.post("/portal/sharing/preview", data={"csrf_token": csrf_of(client, "/portal/sharing"), **form})


def confirm(client, preview_html: str):
    """The confirmation form's action and hidden fields (what "Confirm and save" posts)."""
    start = preview_html.index('<form method="post" action="', preview_html.index('id="confirm-title"'))
    action = re.search(r'action="([^"]+)"', preview_html[start:]).group(1)
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', preview_html[start:]))
    return action, hidden


def emergency_headers(gateway, gln: str = CLAIRE):
    return gateway.tokens.headers(gateway.tokens.hcp(gln=gln, purpose="EMER"))


# -- 9: who looked shows others first; a document's details are a metadata read, not its opening -----------
def test_who_looked_shows_others_first_and_the_patients_own_clicks_with_one_click(page):
    client = page.client
    for path in ("/portal/documents", "/portal/documents", f"/portal/documents/{page.letter}",
                 f"/portal/documents/{page.letter}/content", "/portal/sharing"):
        assert client.get(path).status_code == 200
    assert page.find().status_code == 200  # the professional's search over FHIR

    others = client.get("/portal/trail")
    listed = rows(others.text)
    assert listed[0].endswith("Dr. Luc Favre-Rey Cabinet Favre, Sion Healthcare professional searched your documents")
    assert not any(" You " in row for row in listed)  # the professional's, the administrator's: nobody's own
    own_link = element(others.text, "include-own")
    own = int(re.search(r"\((\d+)\)", own_link).group(1))
    assert own >= 5

    assert 'href="?kind=&amp;from=&amp;to=&amp;who=all"' in others.text  # one click
    everyone = rows(client.get("/portal/trail?kind=&from=&to=&who=all").text)
    yours = [row for row in everyone if " You Patient " in row]
    assert len(everyone) == len(listed) + own + 1  # + reading the trail once more
    assert len([r for r in yours if "looked at a document's details: Discharge summary" in r]) == 1
    assert len([r for r in yours if "opened a document: Discharge summary" in r]) == 1  # the content only
    assert len([r for r in yours if r.endswith("searched your documents")]) >= 3  # two lists, the sharing page


def test_the_ledger_records_the_details_page_as_a_metadata_read(page):
    client = page.client
    before = len(page.services.auditor.ledger.all_records())
    client.get(f"/portal/documents/{page.letter}")
    client.get(f"/portal/documents/{page.letter}/content")
    recorded = [(next(c["code"] for c in e["subtype"] if c["system"] == "urn:ihe:event-type-code"),
                 next(c["code"] for c in e["subtype"] if c["system"] == "urn:oid:2.16.756.5.30.1.127.3.10.7"))
                for e in page.services.auditor.ledger.all_records()[before:] if len(e["subtype"]) > 1
                and any(c["system"] == "urn:oid:2.16.756.5.30.1.127.3.10.7" for c in e["subtype"])]
    assert recorded == [("ITI-67", "ATC_DOC_SEARCH"), ("ITI-68", "ATC_DOC_READ")]


# -- 10: the landing page tells of every emergency access not yet seen ---------------------------------------
def test_the_landing_page_names_each_unseen_emergency_access_until_it_is_seen(page):
    client = page.client
    emergency = emergency_headers(page)
    assert client.get(f"/fhir/Binary/{page.letter}", headers=emergency).status_code == 200

    landing = client.get("/portal/documents").text
    notice = element(landing, "emergency-notice")
    assert "1 emergency access you have not seen yet" in notice
    # The professional under the directory's name and institution, what they did, which document, when.
    assert re.search(r"\w{3} \d{1,2}, \d{4}, \d{1,2}:\d{2}:\d{2}\s?[AP]M — Dr\. Claire Rey \(Hôpital de Sion\) "
                     r"opened a document in an emergency: Discharge summary", notice), notice
    assert f'href="/portal/documents/{page.letter}"' in landing[landing.index('id="emergency-notice"'):]
    assert client.get("/portal/documents").text.count('id="emergency-notice"') == 1  # not seen by showing it

    shown = re.search(r'name="notification_ids" value="([^"]+)"', landing).group(1)
    assert page.find(headers=emergency).status_code == 200  # a second one arrives after the page was shown
    seen = client.post("/portal/notifications/seen", data={"csrf_token": csrf_of(client, "/portal/documents"),
                                                            "notification_ids": shown}, follow_redirects=False)
    assert (seen.status_code, seen.headers["location"]) == (303, "/portal/documents?done=notices")
    after = client.get("/portal/documents?done=notices").text
    assert "1 emergency access you have not seen yet" in element(after, "emergency-notice")
    assert "searched your documents in an emergency" in element(after, "emergency-notice")
    assert "Marked as seen" in after

    trail = client.get("/portal/trail").text  # the trail lists both, and showing them marks them seen
    assert trail.count("Dr. Claire Rey</strong> (Hôpital de Sion)") == 2
    assert 'id="emergency-notice"' not in client.get("/portal/documents").text


# -- 11: a representative is told whose record it is ----------------------------------------------------------
def test_a_representative_sees_the_represented_patient_named_in_the_header_and_headings(page):
    mandate = Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=303, patient_spid=SPID, rule=FULL,
                     subject_id=REPRESENTATIVE)
    page.services.policies.apply(principal=POLICY_ADMIN, changes=[PolicyChange("POST", mandate.policy_set_id,
                                                                                mandate)])
    client = page.client
    assert sign_in(client, **{"as": "representative", "representative": REPRESENTATIVE,
                              "name": "Jean Muster"}).status_code == 303

    pages = {path: client.get(path).text for path in ("/portal/documents", "/portal/sharing", "/portal/trail")}
    for body in pages.values():
        assert element(body, "signed-in-as") == "Jean Muster, representative of Anna Muster"  # the MPI's name
    assert re.search(r"<h1>Documents of Anna Muster</h1>", pages["/portal/documents"])
    assert re.search(r"<h1>Who may see the record of Anna Muster</h1>", pages["/portal/sharing"])
    assert re.search(r"<h1>Who looked at the record of Anna Muster</h1>", pages["/portal/trail"])
    assert "<title>Documents of Anna Muster" in pages["/portal/documents"]
    assert "You are acting for Anna Muster." in preview(client, action="emergency", emergency="off").text


# -- 12: who has access now is the access in effect -----------------------------------------------------------
def test_who_has_access_now_is_what_the_decision_point_gives_today(page):
    client = page.client
    page.grant(SPID, CLAIRE, "normal", start="2099-01-01", end="2099-12-31")  # not yet in force
    before = client.get("/portal/sharing").text
    assert "Dr. Luc Favre-Rey" in element(before, "grants")
    assert "Dr. Claire Rey — starts on Jan 1, 2099" in element(before, "without-effect")

    action, hidden = confirm(client, preview(client, action="block", gln=HCP_GLN).text)
    assert client.post(action, data=hidden, follow_redirects=False).status_code == 303

    after = client.get("/portal/sharing").text
    assert 'id="grants"' not in after and element(after, "grants-none") == (
        "No professional has access outside an emergency.")
    assert "Dr. Luc Favre-Rey — blocked: sees nothing, the block comes first" in element(after, "without-effect")
    assert "Dr. Luc Favre-Rey — sees nothing, not even in an emergency" in element(after, "blocks")
    assert element(after, "emergency-now") == ("Any professional you have not blocked may see your normal "
                                               "documents; you are told each time.")
    assert element(after, "provide-now").startswith("New documents are filed as normal")
    assert page.find().json()["total"] == 0  # what the summary says is what a search finds

    page.services.policies.remove(principal=POLICY_ADMIN, consent_id=next(
        p.policy_set_id for p in page.services.exchange.access.store.policies_for(
            page.services.exchange.patients.pid_for_spid(SPID)) if p.template == 202).removeprefix("urn:uuid:"))
    assert element(client.get("/portal/sharing").text, "emergency-now").startswith("No professional can see")


# -- 13: a refused form keeps what was typed and says what is wrong at the field -------------------------------
def test_a_refused_form_keeps_the_values_and_puts_the_message_at_the_field(page):
    client = page.client
    answer = preview(client, action="grant-professional", gln=CLAIRE, level="restricted", end="2001-01-01")
    assert answer.status_code == 400
    field = tag(answer.text, "grant-end")
    assert 'value="2001-01-01"' in field and 'aria-invalid="true"' in field
    assert 'aria-describedby="grant-end-problem"' in field and "autofocus" in field
    assert element(answer.text, "grant-end-problem") == "Error: The end date is in the past. (Nothing was saved.)"
    assert 'value="' + CLAIRE + '"' in tag(answer.text, "grant-gln")
    assert "checked" in tag(answer.text, "grant-restricted") and "checked" not in tag(answer.text, "grant-normal")
    assert answer.text.count("autofocus") == 1 and 'role="alert"' not in answer.text
    assert "<title>Error: Who may see my record" in answer.text

    blocked = preview(client, action="block", gln="7601000000018")
    assert 'value="7601000000018"' in tag(blocked.text, "block-gln")
    assert "valid check digit" in element(blocked.text, "block-gln-problem")
    assert 'aria-invalid' not in tag(blocked.text, "grant-gln")  # only the form at fault is marked

    signed_out = page.client.__class__(page.client.app, base_url="https://testserver", headers={"Accept-Language": "en"})
    wrong = sign_in(signed_out, "76133761041135", name="Anna")
    assert wrong.status_code == 400
    assert 'value="76133761041135"' in tag(wrong.text, "spid") and 'value="Anna"' in tag(wrong.text, "name")
    assert "An EPR-SPID has 18 digits." in element(wrong.text, "spid-problem")


# -- 14: a confidentiality change is explained and confirmed like every other change ---------------------------
def test_a_confidentiality_change_is_explained_and_saved_only_once_confirmed(page):
    client = page.client
    details = client.get(f"/portal/documents/{page.letter}").text
    assert f'action="/portal/documents/{page.letter}/confidentiality/preview"' in details
    token = csrf_of(client, f"/portal/documents/{page.letter}")

    asked = client.post(f"/portal/documents/{page.letter}/confidentiality/preview",
                        data={"csrf_token": token, "level": "secret"})
    assert asked.status_code == 200
    assert element(asked.text, "effect").startswith("This document will be secret")
    assert element(asked.text, "consequences") == ("No longer able to see it: Dr. Luc Favre-Rey. In an emergency, "
                                                   "no professional will see it any more.")
    assert page.find().json()["total"] == 1  # nothing changed yet

    action, hidden = confirm(client, asked.text)
    assert (action, hidden["level"]) == (f"/portal/documents/{page.letter}/confidentiality", "secret")
    assert client.post(action, data=hidden, follow_redirects=False).status_code == 303
    assert page.find().json()["total"] == 0

    same = client.post(f"/portal/documents/{page.letter}/confidentiality/preview",
                       data={"csrf_token": token, "level": "secret"})
    assert same.status_code == 400
    assert "already has this level" in element(same.text, "level-problem")
    assert "autofocus" in tag(same.text, "level-secret")


# -- 15: a representative is added by a registered id, shown before it is confirmed ----------------------------
def test_a_representative_is_checked_against_the_register_and_shown_before_confirming(page):
    client = page.client
    form = client.get("/portal/sharing").text
    assert "ask your representative for it" in element(form, "representative-hint")
    assert 'aria-describedby="representative-hint"' in tag(form, "representative")
    policies = len(page.services.exchange.access.store.policies_for(page.services.exchange.patients.pid_for_spid(SPID)))

    unknown = preview(client, action="representative", representative="rep-nobody")
    assert unknown.status_code == 400
    assert 'value="rep-nobody"' in tag(unknown.text, "representative")
    assert 'aria-describedby="representative-problem representative-hint"' in tag(unknown.text, "representative")
    assert "No representative is registered in this community" in element(unknown.text, "representative-problem")
    applied = client.post("/portal/sharing/apply", data={"csrf_token": csrf_of(client, "/portal/sharing"),
                                                          "action": "representative", "representative": "rep-nobody"})
    assert applied.status_code == 400  # the confirmation checks again: no way around the register

    known = preview(client, action="representative", representative=REPRESENTATIVE)
    assert element(known.text, "person") == (f"Name Jean Muster Born Feb 3, 1955 Place of residence Sion "
                                             f"Representative's identifier {REPRESENTATIVE}")
    assert element(known.text, "effect").startswith("Jean Muster will act for you")
    assert len(page.services.exchange.access.store.policies_for(
        page.services.exchange.patients.pid_for_spid(SPID))) == policies
    action, hidden = confirm(client, known.text)
    assert client.post(action, data=hidden, follow_redirects=False).status_code == 303
    assert "Jean Muster — the whole record" in element(client.get("/portal/sharing").text, "representatives")


# -- 16: the smaller things --------------------------------------------------------------------------------------
def test_types_are_named_in_the_pages_language_and_an_unknown_type_says_so(page):
    ids = document_ids(page.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Consultation", "type_code": "371530004", "type_display": "Clinical consultation report",
         "content": pdf_document("C", ["c"])},
        {"title": "Odd", "type_code": "999999999", "type_display": "Sender's own type",
         "content": pdf_document("O", ["o"])}])).json())
    french = page.client.get("/portal/documents", headers={"Accept-Language": "fr"}).text
    assert "Évaluation par des spécialistes" in french and "Clinical consultation report" not in french
    assert "Autre document" in french
    odd = page.client.get(f"/portal/documents/{ids[1]}").text
    assert element(odd, "type-as-sent") == "Sender's own type" and "<h1>Other document</h1>" in odd


def test_one_name_per_professional_and_the_institution_not_the_facility_type(page):
    client = page.client
    [listed] = rows(client.get("/portal/documents").text)
    assert listed.startswith("Discharge summary") and listed.endswith("Dr. Luc Favre-Rey Cabinet Favre, Sion Normal")
    details = client.get(f"/portal/documents/{page.letter}").text
    assert (element(details, "authors"), element(details, "institution")) == ("Dr. Luc Favre-Rey",
                                                                                "Cabinet Favre, Sion")
    assert "Dr. Luc Favre-Rey" in element(client.get("/portal/sharing").text, "grants")
    page.find()
    assert any("Dr. Luc Favre-Rey Cabinet Favre, Sion Healthcare professional searched your documents" in row
               for row in rows(client.get("/portal/trail").text))
    assert any(row.endswith("gave access to your record: Dr. Luc Favre-Rey")
               for row in rows(client.get("/portal/trail?who=all").text))  # whom a policy names, same name
    everywhere = "".join(client.get(p).text for p in ("/portal/documents", f"/portal/documents/{page.letter}",
                                                      "/portal/sharing", "/portal/trail?who=all"))
    assert "Luc Favre<" not in everywhere and ">Luc Favre" not in everywhere and "Hospital" not in everywhere


@pytest.mark.parametrize("content, charset", [("Blutdruck 120/80, Gewicht 64 kg".encode(), "utf-8"),
                                              ("Tension 12/8, poids sédentaire".encode("cp1252"), "windows-1252")])
def test_a_plain_text_document_is_shown_in_the_browser_under_the_strict_csp(page, content, charset):
    [note] = document_ids(page.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Note", "mime_type": "text/plain", "content": content}])).json())
    assert 'id="open-document" href' in page.client.get(f"/portal/documents/{note}").text
    assert "download" not in tag(page.client.get(f"/portal/documents/{note}").text, "open-document")
    shown = page.client.get(f"/portal/documents/{note}/content")
    assert (shown.status_code, shown.content) == (200, content)
    assert shown.headers["content-type"] == f"text/plain; charset={charset}"
    assert shown.headers["content-disposition"].startswith("inline;")
    assert shown.headers["content-security-policy"].startswith("default-src 'none';")
    assert shown.headers["x-content-type-options"] == "nosniff"


def test_the_sharing_page_has_in_page_navigation_to_each_of_its_forms(page):
    body = page.client.get("/portal/sharing").text
    nav = body[body.index('<nav class="in-page'):body.index("</nav>", body.index('<nav class="in-page'))]
    targets = re.findall(r'href="#([a-z-]+)"', nav)
    assert targets == ["now", "grant-pro", "grant-group", "block", "emergency", "provide", "represent"]
    assert all(f'id="{t}"' in body for t in targets)
    assert 'aria-label="On this page"' in nav


@pytest.mark.parametrize("path", ["/portal/documents", "/portal/trail"])
def test_a_reversed_period_a_bad_date_and_a_page_past_the_end_are_answered_with_the_reason(page, path):
    client = page.client
    reversed_ = client.get(f"{path}?from=2026-05-01&to=2026-01-31")
    assert reversed_.status_code == 400
    assert element(reversed_.text, "to-problem").startswith("Error: The end of the period is before its start")
    assert 'value="2026-05-01"' in tag(reversed_.text, "from") and 'value="2026-01-31"' in tag(reversed_.text, "to")
    bad = client.get(f"{path}?from=2026-02-30")
    assert bad.status_code == 400 and "year-month-day" in element(bad.text, "from-problem")

    past = client.get(f"{path}?page=99")
    assert past.status_code == 404
    assert element(past.text, "page-problem").startswith("There is no page 99. The last page is page 1.")
    assert 'page=1">Go to the last page' in past.text
    assert client.get(f"{path}?page=0").status_code == 400
