"""The physicians' page in a real headless Chromium against the real gateway over TLS (issue 25): a
professional without a grant finds the patient and sees nothing; the patient grants (on the patient's
page); the professional sees exactly what their ITI-67 finds, opens a PDF, uploads one (found by the patient
on their page and by ITI-67) and replaces it; the patient revokes and the professional sees nothing again;
an emergency access with a reason (the banner, what the patient's 202 allows, the patient's notification
naming the professional and the reason); an assistant for a professional; French and German; a phone.
axe-core on every page (no serious or critical violation); screenshots under test-output/hcp/."""

from __future__ import annotations

from pathlib import Path

import pytest

from browser.portal_driver import Browser, serving
from browser.test_portal_in_chromium import (CLAIRE, review_and_confirm, review_and_confirm_after_click,
                                             sign_in_as_demo_patient)
from gateway.auth.dev_issuer import mint_token
from gateway.demo import DEMO_GLN, DEMO_SPID
from gateway.samples import pdf_document

pytestmark = pytest.mark.browser

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "hcp"
ASSISTANT = ("7601000000033", "Nadia Berclaz")
REASON = "Unconscious in the waiting room, no relative reachable"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serving(tmp_path_factory, "hcp", {
        "professionals": [{"gln": CLAIRE[0], "name": CLAIRE[1], "organisation": "Cabinet Rey, Martigny"}]})


@pytest.fixture
def professional(server):
    opened = Browser(server, OUTPUT)
    yield opened
    opened.quit()


@pytest.fixture
def patient(server):
    opened = Browser(server, OUTPUT / "patient")
    yield opened
    opened.quit()


def fhir_finds(server, **claims) -> set[str]:
    """ITI-67 over FHIR with an IUA token for the same person (current documents, as the page lists)."""
    import httpx

    token = mint_token(data_dir=server.data_dir, issuer_url=f"{server.base}/dev-issuer", audience=f"{server.base}/fhir",
                       **claims)
    with httpx.Client(verify=str(server.ca), timeout=10) as client:
        answer = client.get(f"{server.base}/fhir/DocumentReference", headers={"Authorization": f"Bearer {token}"},
                            params={"patient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}",
                                    "status": "current"})
    assert answer.status_code == 200, answer.text
    return {e["resource"]["id"] for e in answer.json().get("entry", [])}


def patient_notifications(server) -> list[str]:
    import httpx

    token = mint_token(data_dir=server.data_dir, issuer_url=f"{server.base}/dev-issuer", audience=f"{server.base}/fhir",
                       role="PAT", spid=DEMO_SPID, name="Valérie Demo")
    with httpx.Client(verify=str(server.ca), timeout=10) as client:
        answer = client.get(f"{server.base}/fhir/Communication", headers={"Authorization": f"Bearer {token}"},
                            params={"recipient.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}"})
    assert answer.status_code == 200, answer.text
    return [e["resource"]["payload"][0]["contentString"] for e in answer.json().get("entry", [])]


def listed(browser: Browser) -> set[str]:
    return {e.get_attribute("data-id") for e in browser.driver.find_elements("css selector", "a.document-link")}


def find_the_demo_patient(browser: Browser) -> None:
    browser.click("a[href='/hcp/patients']")
    browser.type("#family", "Demo")
    browser.driver.execute_script("document.getElementById('birthdate').value = '1970-04-12'")
    browser.click("#search-name")
    assert browser.all_text("#patients tbody td:first-child") == ["Demo, Valérie"]
    assert browser.check_page("patients") == []
    browser.click("a.patient-link")


def choose(browser: Browser, select: str, value: str) -> None:
    browser.driver.find_element("css selector", f"{select} option[value='{value}']").click()


def upload_pdf(browser: Browser, path: Path, title: str) -> None:
    browser.driver.find_element("css selector", "#file").send_keys(str(path))
    browser.type("#title", title)
    for select, value in (("#type", "371530004"), ("#class", "371531000"), ("#facility", "264358009"),
                          ("#setting", "394802001")):
        choose(browser, select, value)
    browser.click("#upload")


def test_a_professional_finds_reads_uploads_replaces_and_claims_an_emergency(server, professional, patient, tmp_path):
    # Dr. Rey signs in (development page), finds the patient by name and birth date, sees nothing.
    professional.open("/hcp")
    assert professional.path() == "/hcp/sign-in"
    assert professional.check_page("sign-in") == []
    professional.driver.find_element("css selector", f"#demo-{CLAIRE[0]}").click()
    professional.click("#demo-professional")
    assert professional.path() == "/hcp/patients"
    cookie = next(c for c in professional.cookies() if c["name"] == "__Host-epr-hcp")
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    find_the_demo_patient(professional)
    patient_path = professional.path()
    assert listed(professional) == set() and "No document of this record is visible to you" in professional.text()
    assert professional.check_page("documents-none") == []

    # The patient grants her the normal level on the patient's page.
    sign_in_as_demo_patient(patient)
    patient.open("/portal/sharing")
    patient.driver.find_element("css selector", f"#grant-directory option[value='{CLAIRE[0]}']").click()
    review_and_confirm(patient, "#grant-review", f"{CLAIRE[1]} will see your normal documents")

    # Now she sees exactly what her ITI-67 finds, and opens a PDF inline.
    professional.open(patient_path)
    normal = fhir_finds(server, role="HCP", gln=CLAIRE[0], name=CLAIRE[1])
    assert listed(professional) == normal and len(normal) == 2
    assert professional.check_page("documents") == []
    opened = professional.fetch(professional.driver.find_element("css selector", "a.document-link").get_attribute("href"))
    assert (opened["status"], opened["type"], opened["start"]) == (200, "application/pdf", "%PDF-")

    # She uploads a PDF: listed for her, found by ITI-67, and on the patient's own page.
    letter = tmp_path / "letter.pdf"
    letter.write_bytes(pdf_document("Letter to the family doctor", ["Follow-up in two weeks."]))
    professional.click("#upload-link")
    assert professional.check_page("upload") == []
    upload_pdf(professional, letter, "Letter to the family doctor")
    assert professional.path() == f"{patient_path}?done=uploaded"
    with_letter = fhir_finds(server, role="HCP", gln=CLAIRE[0], name=CLAIRE[1])
    assert listed(professional) == with_letter and len(with_letter) == 3
    patient.open("/portal/documents")
    assert patient.text(".count") == "4 documents"

    # A new version replaces it.
    [replace] = [e for e in professional.driver.find_elements("css selector", "a.replace-link")
                 if "Letter to the family doctor" in e.get_attribute("aria-label")]
    professional.click(f"a.replace-link[href='{replace.get_attribute('href').removeprefix(server.base)}']")
    assert professional.check_page("replace") == []
    upload_pdf(professional, letter, "Letter to the family doctor, corrected")
    assert "Letter to the family doctor, corrected" in professional.all_text("a.document-link")
    assert "Letter to the family doctor" not in professional.all_text("a.document-link")
    assert listed(professional) == fhir_finds(server, role="HCP", gln=CLAIRE[0], name=CLAIRE[1])

    # The patient revokes: nothing again.
    patient.open("/portal/sharing")
    patient.driver.find_element("css selector", f"#grants button[aria-label='Revoke {CLAIRE[1]}']").click()
    review_and_confirm_after_click(patient, f"{CLAIRE[1]} will no longer see your documents")
    professional.open(patient_path)
    assert listed(professional) == set() == fhir_finds(server, role="HCP", gln=CLAIRE[0], name=CLAIRE[1])

    # Emergency access with a reason: the banner, what the patient's emergency setting allows (normal).
    professional.click("#emergency-link")
    assert professional.check_page("emergency") == []
    professional.type("#reason", REASON)
    professional.click("#start-emergency")
    assert "30 minutes left" in professional.text("#emergency-banner") and REASON in professional.text(
        "#emergency-banner")
    assert len(listed(professional)) == 3  # the two normal demo documents and the corrected letter
    assert professional.check_page("documents-emergency") == []

    # The patient is told: her trail page shows who read in an emergency; the notification (the patient's
    # Communication, which her page lists) names the professional and the reason.
    patient.open("/portal/trail")
    assert any(CLAIRE[1] in row for row in patient.all_text("#trail tr.emergency"))
    notices = patient_notifications(server)
    assert notices and all(CLAIRE[1] in text and text.endswith(f"reason given: {REASON}") for text in notices)

    # My activity shows it; then the emergency ends early.
    professional.click("a[href='/hcp/activity']")
    assert professional.check_page("activity") == []
    assert any("Emergency access" in row and REASON in row for row in professional.all_text("#activity tbody tr"))
    professional.open(patient_path)
    professional.click("#end-emergency")
    assert listed(professional) == set()

    # French and German, then a phone.
    professional.click("button[name=lang][value=fr]")
    assert professional.text("h1").startswith("Documents de")
    professional.open("/hcp/patients")
    assert professional.text("h1") == "Trouver un patient"
    assert professional.check_page("patients-fr") == []
    professional.click("button[name=lang][value=de]")
    assert professional.text("h1") == "Patientin / Patienten finden"
    professional.open(patient_path)
    assert professional.check_page("documents-de") == []
    professional.click("button[name=lang][value=en]")
    professional.driver.set_window_size(390, 844)
    professional.open(patient_path)
    assert professional.check_page("documents-phone") == []
    professional.driver.set_window_size(1100, 900)

    professional.click(".who button[type=submit]")
    assert professional.path() == "/hcp/sign-in"


def test_an_assistant_works_for_the_professional(server, professional):
    professional.open("/hcp/sign-in")
    professional.driver.find_element("css selector", "#as-assistant").click()
    professional.type("#gln", ASSISTANT[0])
    professional.type("#name", ASSISTANT[1])
    professional.type("#acting_for", DEMO_GLN)
    professional.type("#acting_for_name", "Dr. Demo Favre")
    professional.click("#dev-sign-in")
    assert professional.path() == "/hcp/patients"
    assert "Nadia Berclaz, assistant of Dr. Demo Favre" in professional.text(".who")

    find_the_demo_patient(professional)
    assert listed(professional) == fhir_finds(server, role="ASS", gln=ASSISTANT[0], name=ASSISTANT[1],
                                              principal_gln=DEMO_GLN, principal_name="Dr. Demo Favre")
    assert len(listed(professional)) >= 2
    assert professional.check_page("documents-assistant") == []
