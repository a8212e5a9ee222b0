"""Emergency access on the physicians' page (SQLite and PostgreSQL): an explicit action with a required
reason; for the configured time it reads with purpose EMER exactly what ITI-67 under EMER finds (the
patient's 202), for that patient only; the banner says how long; it ends early or on time; the patient's
trail (CH:ATC) carries the reason with the purpose of use, and the notification names the professional
and the reason."""

from __future__ import annotations

import re

import pytest

from conftest import OTHER_SPID, POLICY_ADMIN, SPID
from functional.hcp_helpers import csrf_of, listed_ids, patient_pid, problems, sign_in
from functional.helpers import document_ids, one_document_bundle
from gateway.exchanges.policies import PolicyChange
from gateway.samples import pdf_document, provide_bundle

REY = ("7601000000019", "Dr. Claire Rey")
REASON = "Unconscious after a fall in the waiting room, no relative reachable"


@pytest.fixture
def record(gateway):
    """A record with a normal and a restricted document; Dr. Rey has no grant; the emergency setting is the
    legal default (normal)."""
    gateway.register_patient(grant_hcp=None)
    gateway.register_patient(OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
    bundle = provide_bundle(spid=SPID, documents=[
        {"title": "Discharge letter", "content": pdf_document("Discharge", ["x"])},
        {"title": "Psychiatric note", "content": pdf_document("Note", ["y"]), "confidentiality": "restricted"}])
    gateway.mine = document_ids(gateway.provide(bundle).json())
    gateway.theirs = document_ids(gateway.provide(one_document_bundle(OTHER_SPID, local_id="L-2")).json())[0]
    gateway.client.headers["Accept-Language"] = "en"
    sign_in(gateway.client, *REY)
    gateway.pid = patient_pid(gateway.client)
    return gateway


def start(client, pid: str, reason: str = REASON):
    return client.post(f"/hcp/patients/{pid}/emergency", data={"csrf_token": csrf_of(client, "/hcp/patients"),
                                                                "reason": reason}, follow_redirects=False)


def emergency_finds(gateway) -> set[str]:
    token = gateway.tokens.hcp(gln=REY[0], purpose="EMER")
    return {e["resource"]["id"] for e in gateway.find(headers=gateway.tokens.headers(token)).json().get("entry", [])}


def test_an_emergency_reads_what_the_patients_setting_allows_with_its_reason_in_the_trail(record):
    client, pid = record.client, record.pid
    assert listed_ids(client.get(f"/hcp/patients/{pid}").text) == set()  # no grant: nothing

    answer = start(client, pid)
    assert (answer.status_code, answer.headers["location"]) == (303, f"/hcp/patients/{pid}?done=emergency")
    page = client.get(f"/hcp/patients/{pid}")
    banner = re.sub(r"\s+", " ", re.search(r'id="emergency-banner">\s*<p>(.*?)</p>', page.text, re.S).group(1))
    assert banner == f"<strong>Emergency access</strong> — 30 minutes left. Reason given: {REASON}"
    assert listed_ids(page.text) == {record.mine[0]}  # the 202 normal: not the restricted one
    assert client.get(f"/hcp/patients/{pid}/documents/{record.mine[0]}/content").status_code == 200

    trail = record.client.get("/fhir/AuditEvent", params={"entity.identifier": f"urn:oid:2.16.756.5.30.1.127.3.10.3|"
                                                                                f"{SPID}"},
                              headers=record.tokens.headers(record.tokens.patient())).json()
    by_rey = [e["resource"] for e in trail["entry"] if any(a.get("name") == REY[1] for a in e["resource"]["agent"])]
    emergency = [(e["subtype"][0]["code"], e["purposeOfEvent"][0]["text"]) for e in by_rey
                 if e["purposeOfEvent"][0]["coding"][0]["code"] == "EMER"]
    assert emergency == [("ATC_DOC_SEARCH", REASON), ("ATC_DOC_READ", REASON)]  # what happened, each with why
    notices = record.client.get("/fhir/Communication", params={"recipient.identifier": f"urn:oid:2.16.756.5.30.1.127.3."
                                                                                       f"10.3|{SPID}"},
                                headers=record.tokens.headers(record.tokens.patient())).json()["entry"]
    texts = [n["resource"]["payload"][0]["contentString"] for n in notices]
    assert len(texts) == 2 and all(f"by {REY[1]} (HCP)" in t and t.endswith(f"reason given: {REASON}") for t in texts)
    assert {n["resource"]["reasonCode"][0]["text"] for n in notices} == {REASON}
    assert emergency_finds(record) == listed_ids(page.text)  # as ITI-67 over FHIR finds under EMER (itself notified)


def test_an_emergency_ends_early_or_on_time(record):
    client, pid = record.client, record.pid
    start(client, pid)
    end = client.post(f"/hcp/patients/{pid}/emergency/end", data={"csrf_token": csrf_of(client, "/hcp/patients")},
                      follow_redirects=False)
    assert end.headers["location"] == f"/hcp/patients/{pid}"
    page = client.get(f"/hcp/patients/{pid}")
    assert (listed_ids(page.text), "emergency-banner" in page.text) == (set(), False)

    start(client, pid)
    sessions = client.app.state.hcp.sessions
    moment = [sessions.clock()]
    sessions.clock = lambda: moment[0]
    for minutes_left in (20, 10):  # a page every ten minutes: the session stays alive (its idle timeout is 15)
        moment[0] += 10 * 60
        assert f"{minutes_left} minutes left" in client.get(f"/hcp/patients/{pid}").text
    moment[0] += 9 * 60
    assert "1 minute left" in client.get(f"/hcp/patients/{pid}").text
    moment[0] += 61
    page = client.get(f"/hcp/patients/{pid}")
    assert (listed_ids(page.text), "emergency-banner" in page.text) == (set(), False)


def test_an_emergency_is_for_its_patient_only(record):
    client, pid = record.client, record.pid
    start(client, pid)

    # Another patient's document under this patient's page: like an unknown one, nothing read.
    assert client.get(f"/hcp/patients/{pid}/documents/{record.theirs}/content").status_code == 404
    # The other patient's own page: no emergency there, no grant: nothing.
    other = patient_pid(client, OTHER_SPID)
    assert listed_ids(client.get(f"/hcp/patients/{other}").text) == set()
    assert client.get(f"/hcp/patients/{other}/documents/{record.theirs}/content").status_code == 404


def test_a_patient_who_switched_emergency_access_off_shows_nothing(record):
    pid = record.services.exchange.patients.pid_for_spid(SPID)
    emergency_policy = next(p for p in record.services.exchange.access.store.policies_for(pid) if p.template == 202)
    record.services.policies.apply(principal=POLICY_ADMIN, changes=[
        PolicyChange("DELETE", emergency_policy.policy_set_id, None)])

    start(record.client, record.pid)
    assert listed_ids(record.client.get(f"/hcp/patients/{record.pid}").text) == emergency_finds(record) == set()


@pytest.mark.parametrize("reason", ["", "too short", "x" * 301])
def test_an_emergency_without_a_reason_is_not_started(record, reason):
    before = len(record.services.auditor.ledger.all_records())

    answer = start(record.client, record.pid, reason)

    assert answer.status_code == 400
    assert problems(answer.text) == ["Give the reason for the emergency access, in 10 to 300 characters."]
    assert 'aria-invalid="true"' in answer.text and "emergency-banner" not in record.client.get(
        f"/hcp/patients/{record.pid}").text
    assert [r for r in record.services.auditor.ledger.all_records()[before:]
            if r["purposeOfEvent"][0]["coding"][0]["code"] == "EMER"] == []  # nothing read, nothing claimed
