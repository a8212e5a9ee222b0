"""Issue 27 items 9–16 in a real headless Chromium against the real gateway over TLS: who looked (others
first, one's own one click away), the landing page's notice of emergency accesses, a representative told
whose record it is, who has access now as it acts, a refused form focused at its field, a confidentiality
change confirmed, a representative checked and shown before confirming, the header on a phone, a
plain-text document shown. axe-core on every page (no serious or critical violation); screenshots under
test-output/portal/ (the README's are copied from there)."""

from __future__ import annotations

import pytest

from browser.portal_driver import Browser, serving
from gateway.demo import DEMO_GLN, DEMO_SPID
from gateway.samples import provide_bundle

pytestmark = pytest.mark.browser

FAVRE = (DEMO_GLN, "Dr. Demo Favre")  # the demo patient's normal grant; the record calls him "Luc Favre"
MARC = ("7601000000026", "Dr. Marc Zufferey")  # no grant: reads in an emergency
REPRESENTATIVE = ("rep-jean-demo", "Jean Demo")
PHONE = (390, 844)
HEADER_ON_A_PHONE = 150  # px of the 844 a phone shows (it was 270)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serving(tmp_path_factory, "portal-first-hour", {
        "professionals": [{"gln": FAVRE[0], "name": FAVRE[1], "organisation": "Hôpital de Sion"},
                          {"gln": MARC[0], "name": MARC[1], "organisation": "Hôpital du Valais, urgences"}],
        "representatives": [{"id": REPRESENTATIVE[0], "name": REPRESENTATIVE[1], "birth_date": "1961-03-12",
                             "locality": "Sion"}]})


def sign_in_as_patient(browser: Browser) -> None:
    browser.open("/portal/sign-in")
    browser.click("#demo-patient")
    assert browser.path() == "/portal/documents"


def found_ids(server, who, purpose="NORM") -> list[str]:
    return [e["resource"]["id"] for e in server.find_as_hcp(DEMO_SPID, who[0], who[1], purpose).get("entry", [])]


def test_others_first_in_who_looked_and_unseen_emergency_accesses_on_the_landing_page(server, browser):
    sign_in_as_patient(browser)
    browser.click("a.document-link")  # a document's details: a metadata read, not its opening
    details = browser.path()
    opened = browser.fetch(details + "/content")
    assert opened["status"] == 200

    # A professional without a grant opens a document in an emergency (the demo allows normal documents).
    [first, *_] = found_ids(server, MARC, purpose="EMER")
    assert server.retrieve_as_hcp(first, MARC[0], MARC[1], purpose="EMER") == 200

    browser.open("/portal/documents")
    notice = " ".join(browser.text("#emergency-notice").split())
    assert "2 emergency accesses you have not seen yet" in notice
    assert f"{MARC[1]} (Hôpital du Valais, urgences) opened a document in an emergency:" in notice
    assert f"{MARC[1]} (Hôpital du Valais, urgences) searched your documents in an emergency:" in notice
    assert browser.check_page("landing-emergency") == []
    browser.click("#notices-seen")
    assert browser.all_text("#emergency-notice") == [] and "Marked as seen" in browser.text(".notice")

    # Who looked: the professionals first; the patient's own clicks one click away, each as what it was.
    browser.click("a[href='/portal/trail']")
    rows = browser.all_text("#trail tbody tr")
    assert rows and browser.all_text("#trail tr.own") == []
    assert any(MARC[1] in row and "opened a document" in row and "Emergency access" in row for row in rows)
    assert browser.check_page("trail-others") == []
    browser.click("#include-own")
    own = browser.all_text("#trail tr.own")
    assert own and all("You" in row for row in own)
    assert len([r for r in own if "looked at a document's details" in r]) == 1
    assert len([r for r in own if "opened a document" in r]) == 1  # the content only, not the details page
    assert browser.check_page("trail-own") == []


def test_a_representative_checked_shown_confirmed_then_told_whose_record_it_is(server, browser):
    sign_in_as_patient(browser)
    browser.open("/portal/sharing#represent")
    assert "ask your representative for it" in browser.text("#representative-hint")
    browser.type("#representative", "rep-jean-dem")  # one letter short: not in the community's register
    browser.click("#representative-review")
    focused = browser.focused()
    assert (focused["id"], focused["value"], focused["invalid"], focused["visible"]) == (
        "representative", "rep-jean-dem", "true", True)
    assert " ".join(focused["described"][0].split()).startswith(
        "Error: No representative is registered in this community")
    assert browser.check_page("sharing-error") == []

    browser.type("#representative", REPRESENTATIVE[0])
    browser.click("#representative-review")
    assert browser.text("#person").split("\n") == ["Name", "Jean Demo", "Born", "Mar 12, 1961", "Place of residence",
                                                   "Sion", "Representative's identifier", REPRESENTATIVE[0]]
    assert "most powerful permission" in browser.text(".warning")
    assert browser.check_page("confirm-representative") == []
    browser.click("#confirm")
    assert "Jean Demo — the whole record" in browser.text("#representatives")
    browser.click(".who button[type=submit]")

    browser.open("/portal/sign-in")
    browser.driver.find_element("css selector", "#as-representative").click()
    browser.type("#spid", DEMO_SPID)
    browser.type("#representative", REPRESENTATIVE[0])
    browser.type("#name", REPRESENTATIVE[1])
    browser.click("#dev-sign-in")
    assert browser.text("#signed-in-as") == "Jean Demo, representative of Valérie Demo"
    assert browser.text("h1") == "Documents of Valérie Demo"
    assert browser.check_page("rep-landing") == []
    browser.click("a[href='/portal/sharing']")
    assert browser.text("h1") == "Who may see the record of Valérie Demo"
    browser.click("button[name=lang][value=de]")
    assert browser.text("#signed-in-as") == "Jean Demo, Vertretung von Valérie Demo"
    browser.click("a[href='/portal/trail']")
    assert browser.text("h1") == "Wer in das Dossier der vertretenen Person geschaut hat: Valérie Demo"
    browser.click("button[name=lang][value=en]")


def test_who_has_access_now_a_focused_error_and_a_confirmed_confidentiality_change(server, browser):
    sign_in_as_patient(browser)
    visible = found_ids(server, FAVRE)
    assert len(visible) >= 1

    # A confidentiality change is explained with its effect on each professional, and saved only once confirmed.
    browser.open(f"/portal/documents/{visible[0]}")
    browser.driver.find_element("css selector", "#level-restricted").click()
    browser.click("#change-level")
    assert "This document will be restricted" in browser.text("#effect")
    assert f"No longer able to see it: {FAVRE[1]}." in browser.text("#consequences")
    assert browser.check_page("confirm-level") == []
    assert visible[0] in found_ids(server, FAVRE)  # nothing changed yet
    browser.click("#confirm")
    assert browser.text("#current-level") == "Restricted"
    assert visible[0] not in found_ids(server, FAVRE)

    # A form at the bottom of the long page refused: the value kept, the message at the field, focus on it.
    browser.open("/portal/sharing")
    browser.type("#block-gln", "7601000000018")
    browser.click("#block-review")
    focused = browser.focused()
    assert (focused["id"], focused["value"], focused["visible"]) == ("block-gln", "7601000000018", True)
    assert "valid check digit" in focused["described"][0]

    # Block the professional who holds a grant: the summary says what the decision point decides.
    assert FAVRE[1] in browser.text("#grants")
    browser.type("#block-gln", FAVRE[0])
    browser.click("#block-review")
    browser.click("#confirm")
    assert browser.all_text("#grants") == [] and browser.text("#grants-none").startswith("No professional")
    assert f"{FAVRE[1]} — blocked: sees nothing, the block comes first" in browser.text("#without-effect")
    assert found_ids(server, FAVRE) == []
    assert browser.check_page("sharing-summary") == []


def test_the_header_on_a_phone_and_a_plain_text_document_shown(server, browser):
    [note] = server.provide_as_hcp(provide_bundle(spid=DEMO_SPID, author_role="HCP", documents=[
        {"title": "Note", "type_code": "371532007", "mime_type": "text/plain",
         "content": "Tension 125/80, poids 64 kg. Contrôle dans 3 mois.".encode(), "local_id": "DEMO-0001",
         "patient_family": "Demo", "patient_given": "Valérie", "author_gln": MARC[0]}]), MARC[0], MARC[1])
    sign_in_as_patient(browser)
    browser.open(f"/portal/documents/{note}")
    shown = browser.fetch(browser.driver.find_element("css selector", "#open-document").get_attribute("href"))
    assert (shown["status"], shown["type"], shown["disposition"].split(";")[0]) == (
        200, "text/plain; charset=utf-8", "inline")

    browser.driver.set_window_size(*PHONE)
    for lang in ("fr", "de", "it", "en"):
        browser.click(f"button[name=lang][value={lang}]")
        assert browser.height("header.top") <= HEADER_ON_A_PHONE, lang
    browser.open("/portal/documents")
    assert browser.check_page("landing-phone") == []
    browser.open("/portal/sharing")
    assert [a.get_attribute("hash") for a in browser.driver.find_elements("css selector", "nav.in-page a")] == [
        "#now", "#grant-pro", "#grant-group", "#block", "#emergency", "#provide", "#represent"]
    assert browser.check_page("sharing-phone") == []
    browser.driver.set_window_size(1100, 900)
