"""The patient's page in a real headless Chromium against the real gateway over TLS: the whole flow
of issue 15 as the patient and as a representative, the professional's ITI-67 over FHIR checked
after each grant and revoke, axe-core on every page (no serious or critical violation), screenshots
under test-output/portal/."""

from __future__ import annotations

import httpx
import orjson
import pytest
from selenium.webdriver.common.keys import Keys

from browser.portal_driver import Browser, GatewayServer, serving
from gateway.auth.dev_issuer import mint_token
from gateway.demo import DEMO_GLN, DEMO_SPID

pytestmark = pytest.mark.browser

CLAIRE = ("7601000000019", "Dr. Claire Rey")  # in the directory file, no access at first
MARC = ("7601000000026", "Dr. Marc Zufferey")  # never granted: reads in an emergency
NADIA = ("7601000000033", "Dr. Nadia Berclaz")  # granted by the representative
GROUP = ("urn:oid:2.16.756.5.30.1.999.7.1", "Hôpital du Valais, médecine interne")
REPRESENTATIVE = "rep-jean-demo"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serving(tmp_path_factory, "portal", {
        "professionals": [{"gln": CLAIRE[0], "name": CLAIRE[1], "organisation": "Hôpital de Sion"},
                          {"gln": NADIA[0], "name": NADIA[1], "organisation": "Cabinet Berclaz"}],
        "groups": [{"id": GROUP[0], "name": GROUP[1]}]})


def found_ids(server, who, purpose="NORM") -> set[str]:
    bundle = server.find_as_hcp(DEMO_SPID, who[0], who[1], purpose)
    return {entry["resource"]["id"] for entry in bundle.get("entry", [])}


def sign_in_as_demo_patient(browser: Browser) -> None:
    browser.open("/portal")
    assert browser.path() == "/portal/sign-in"
    assert browser.check_page("sign-in") == []
    browser.click("#demo-patient")
    assert browser.path() == "/portal/documents"


def review_and_confirm(browser: Browser, button: str, expected_effect: str) -> None:
    browser.click(button)
    assert browser.path() == "/portal/sharing/preview"
    assert expected_effect in browser.text("#effect")
    assert browser.check_page("confirm") == []
    browser.click("#confirm")
    assert browser.path() == "/portal/sharing?done=saved"


def test_the_patient_sees_decides_and_reads_who_looked(server, browser):
    sign_in_as_demo_patient(browser)
    cookie = next(c for c in browser.cookies() if c["name"] == "__Host-epr-portal")
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")

    # Keyboard: the first Tab reaches the skip link, visibly focused; Enter moves focus to the content.
    browser.driver.find_element("tag name", "body").send_keys(Keys.TAB)
    active = browser.driver.switch_to.active_element
    assert active.get_attribute("class") == "skip"
    assert active.value_of_css_property("outline-style") == "solid"
    assert int(float(active.value_of_css_property("outline-width").removesuffix("px"))) >= 2
    active.send_keys(Keys.ENTER)
    assert browser.driver.switch_to.active_element.get_attribute("id") == "main"

    # My documents: the demo record's three documents, newest first, then filtered by type.
    assert browser.check_page("documents") == []
    assert browser.text(".count") == "3 documents"
    assert sorted(browser.all_text(".document-link")) == ["Discharge summary", "Laboratory report",
                                                          "Specialist consultation report"]
    browser.driver.find_element("css selector", "#type option[value='4241000179101']").click()
    browser.click(".filters button[type=submit]")
    assert browser.all_text(".document-link") == ["Laboratory report"]

    # Open it: the detail page, then the PDF itself, inline, as the page's own request.
    browser.click("a.document-link")
    assert browser.check_page("document") == []
    opened = browser.fetch(browser.driver.find_element("css selector", "#open-document").get_attribute("href"))
    assert (opened["status"], opened["type"], opened["start"]) == (200, "application/pdf", "%PDF-")
    assert opened["disposition"].startswith("inline;")

    # Make it secret (each level explained beside its choice): the demo HCP's normal grant loses it.
    favre = (DEMO_GLN, "Dr. Demo Favre")
    assert len(found_ids(server, favre)) == 2
    assert "no professional, not even in an emergency" in browser.text("label[for=level-secret]")
    browser.driver.find_element("css selector", "#level-secret").click()
    browser.click("#change-level")  # explained and confirmed like every other change (issue 27 item 14)
    assert "This document will be secret" in browser.text("#effect")
    browser.click("#confirm")
    assert browser.text("#current-level") == "Secret"
    assert "The confidentiality level was changed." in browser.text(".notice")
    normal_ids = found_ids(server, favre)
    assert len(normal_ids) == 1 and found_ids(server, CLAIRE) == set()

    # Grant a professional chosen from the directory; the explanation comes before anything is saved.
    browser.open("/portal/sharing")
    assert browser.check_page("sharing") == []
    browser.driver.find_element("css selector", f"#grant-directory option[value='{CLAIRE[0]}']").click()
    review_and_confirm(browser, "#grant-review", f"{CLAIRE[1]} will see your normal documents")
    assert CLAIRE[1] in browser.text("#grants")
    assert found_ids(server, CLAIRE) == normal_ids  # ITI-67 over FHIR now finds the normal documents

    # Revoke it: gone for the professional at once.
    browser.driver.find_element("css selector", f"#grants button[aria-label='Revoke {CLAIRE[1]}']").click()
    review_and_confirm_after_click(browser, f"{CLAIRE[1]} will no longer see your documents")
    assert CLAIRE[1] not in browser.text("section[aria-labelledby=now]")
    assert found_ids(server, CLAIRE) == set()

    # Block a professional by GLN (checked: a wrong check digit is refused first).
    browser.type("#block-gln", "7601000000018")
    browser.click("#block-review")
    assert "valid check digit" in browser.text("#block-gln-problem")
    browser.type("#block-gln", CLAIRE[0])
    review_and_confirm(browser, "#block-review", f"{CLAIRE[1]} will see nothing of your record")
    assert CLAIRE[1] in browser.text("#blocks")

    # Emergency access: restricted; then a professional without any grant reads in an emergency.
    browser.driver.find_element("css selector", "#emergency-restricted").click()
    review_and_confirm(browser, "#emergency-review", "normal and restricted documents")
    assert browser.driver.find_element("css selector", "#emergency-restricted").is_selected()
    assert len(found_ids(server, MARC, purpose="EMER")) == 2  # normal and restricted, never secret

    # Who looked: the professionals' searches, the emergency highlighted, its notification new once.
    browser.click("a[href='/portal/trail']")
    assert browser.check_page("trail") == []
    rows = browser.all_text("#trail tbody tr")
    assert any(CLAIRE[1] in row and "searched your documents" in row for row in rows)
    emergency_rows = browser.all_text("#trail tr.emergency")
    assert len(emergency_rows) == 1 and MARC[1] in emergency_rows[0] and "Emergency access" in emergency_rows[0]
    assert browser.all_text("#notices ~ ul .badge, section .badge") == ["New"]
    browser.open("/portal/trail?kind=emergency")
    assert browser.all_text("section .badge") == []  # marked read when seen
    assert len(browser.all_text("#trail tbody tr")) == 1

    # Languages: German from the switcher, then French; the choice stays for the session.
    browser.click("button[name=lang][value=de]")
    assert browser.text("h1") == "Wer hineingeschaut hat"
    browser.open("/portal/documents")
    assert browser.text("h1") == "Meine Dokumente"
    assert browser.check_page("documents-de") == []
    browser.click("button[name=lang][value=fr]")
    assert browser.text("h1") == "Mes documents"
    browser.click("button[name=lang][value=en]")

    # On a phone: the list becomes one card per document, still without any serious axe finding.
    browser.driver.set_window_size(390, 844)
    browser.open("/portal/documents")
    assert browser.check_page("documents-phone") == []
    browser.driver.set_window_size(1100, 900)

    # Sign out: the session is gone on the server, the pages send back to sign-in.
    browser.click(".who button[type=submit]")
    assert browser.path() == "/portal/sign-in"
    browser.open("/portal/documents")
    assert browser.path().startswith("/portal/sign-in")


def review_and_confirm_after_click(browser: Browser, expected_effect: str) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser.driver, 20).until(expected_conditions.url_contains("/portal/sharing/preview"))
    assert expected_effect in browser.text("#effect")
    browser.click("#confirm")
    assert browser.path() == "/portal/sharing?done=saved"


def test_a_representative_acts_for_the_patient_within_their_303(server, browser):
    # Without a 303 naming them, a representative cannot open the record at all.
    browser.open("/portal/sign-in")
    sign_in_as_representative(browser, "rep-nobody")
    assert browser.path() == "/portal/dev-sign-in"
    assert "No record could be opened" in browser.text(".problem")

    patient_adds_representative(server, REPRESENTATIVE)
    sign_in_as_representative(browser, REPRESENTATIVE)
    assert browser.path() == "/portal/documents"
    assert "representative" in browser.text(".who")
    assert browser.text(".count") == "3 documents"
    assert browser.check_page("rep-documents") == []

    browser.open("/portal/sharing")
    browser.type("#grant-gln", NADIA[0])
    browser.driver.find_element("css selector", "#grant-restricted").click()
    review_and_confirm(browser, "#grant-review", f"{NADIA[1]} will see your normal and restricted documents")
    assert len(found_ids(server, NADIA)) == 2  # the secret document stays the patient's and the representative's
    browser.driver.find_element("css selector", f"#grants button[aria-label='Revoke {NADIA[1]}']").click()
    review_and_confirm_after_click(browser, f"{NADIA[1]} will no longer see your documents")
    assert found_ids(server, NADIA) == set()

    browser.type("#block-gln", NADIA[0])
    review_and_confirm(browser, "#block-review", f"{NADIA[1]} will see nothing of your record")
    browser.driver.find_element("css selector", "#emergency-off").click()
    review_and_confirm(browser, "#emergency-review", "no professional will be able to see your record")
    assert found_ids(server, MARC, purpose="EMER") == set()
    assert browser.check_page("rep-sharing") == []

    browser.click("a[href='/portal/trail']")
    rows = browser.all_text("#trail tbody tr")
    assert any(NADIA[1] in row and "searched your documents" in row for row in rows)
    browser.click("#include-own")  # what the representative did themselves, one click away
    assert any("switched emergency access off" in row and "You" in row for row in browser.all_text("#trail tbody tr"))
    browser.click("button[name=lang][value=it]")
    assert browser.text("h1") == "Chi ha consultato la cartella della persona rappresentata: Valérie Demo"
    assert browser.check_page("rep-trail-it") == []
    browser.click(".who button[type=submit]")
    assert browser.path() == "/portal/sign-in"


def sign_in_as_representative(browser: Browser, representative: str) -> None:
    browser.open("/portal/sign-in")
    browser.driver.find_element("css selector", "#as-representative").click()
    browser.type("#spid", DEMO_SPID)
    browser.type("#representative", representative)
    browser.type("#name", "Jean Demo")
    browser.click("#dev-sign-in")


def patient_adds_representative(server: GatewayServer, representative: str) -> None:
    """The patient's 303 over PPQ-3 (FHIR), as any patient's app could send it."""
    import uuid

    from consent.policies import FULL, Policy
    from consent.ppqm import consent_from_policy

    policy = Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=303, patient_spid=DEMO_SPID, rule=FULL,
                    subject_id=representative)
    token = mint_token(data_dir=server.data_dir, issuer_url=f"{server.base}/dev-issuer",
                       audience=f"{server.base}/fhir", role="PAT", spid=DEMO_SPID, name="Valérie Demo")
    with httpx.Client(verify=str(server.ca), timeout=10) as client:
        answer = client.post(f"{server.base}/fhir/Consent", content=orjson.dumps(consent_from_policy(policy)),
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
    assert answer.status_code == 201, answer.text

