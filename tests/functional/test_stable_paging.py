"""Stable paging over HTTP: ITI-67 and ITI-81 next links carry a signed keyset cursor (`_cursor`), so
records arriving while a client pages neither repeat nor skip an entry nor move the total, and a cursor
changed, replayed by another principal or with other parameters is refused (400 OperationOutcome)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from conftest import SPID
from functional.helpers import document_ids, one_document_bundle
from gateway.exchanges.paging_cursors import NOT_ISSUED, OTHER_SEARCH
from gateway.samples import pdf_document, provide_bundle

SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|"


def next_link(bundle: dict) -> str | None:
    return next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)


def page_through(gateway, first_url: str, headers: dict, between) -> tuple[list[str], list[int]]:
    """Every entry id and every page's total, following next links; `between()` runs after each page."""
    ids, totals, url = [], [], first_url
    while url:
        response = gateway.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        bundle = response.json()
        ids += [e["resource"]["id"] for e in bundle.get("entry", [])]
        totals.append(bundle["total"])
        url = next_link(bundle)
        if url:
            between()
    return ids, totals


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


@pytest.fixture
def seven_documents(gateway) -> list[str]:
    """Seven documents of the patient: three in one submission (one created_seq apart each), four alone."""
    gateway.register_patient()
    batch = [{"title": f"Report {n}", "content": pdf_document(f"Report {n}", [str(n)])} for n in range(3)]
    ids = document_ids(gateway.provide(provide_bundle(spid=SPID, documents=batch)).json())
    for n in range(4):
        ids += document_ids(gateway.provide(one_document_bundle(title=f"Letter {n}")).json())
    return ids


def test_documents_provided_between_iti67_pages_are_neither_repeated_nor_skipped(gateway, seven_documents):
    arrived: list[str] = []

    def provide_one() -> None:
        response = gateway.provide(one_document_bundle(title=f"Arrived {len(arrived)}"))
        assert response.status_code == 200, response.text
        arrived.extend(document_ids(response.json()))

    first = f"/fhir/DocumentReference?patient.identifier={SEARCH}{SPID}&_count=2"
    ids, totals = page_through(gateway, first, gateway.as_hcp(), provide_one)

    assert sorted(ids) == sorted(seven_documents)  # each once, none of those that arrived meanwhile
    assert totals == [7, 7, 7, 7]  # counted as the first page saw the record
    assert len(arrived) == 3
    newest_first = gateway.find(_count="20").json()
    assert [e["resource"]["id"] for e in newest_first["entry"]][:3] == arrived[::-1]  # they are there


def test_iti67_next_links_carry_the_cursor_and_the_other_parameters_only(sqlite_gateway):
    sqlite_gateway.register_patient()
    for n in range(3):
        sqlite_gateway.provide(one_document_bundle(title=f"Letter {n}"))

    bundle = sqlite_gateway.find(_count="2", status="current").json()
    query = parse_qsl(urlsplit(next_link(bundle)).query)

    assert [name for name, _ in query] == ["patient.identifier", "status", "_count", "_cursor"]
    assert len(dict(query)["_cursor"]) < 256
    last = sqlite_gateway.client.get(next_link(bundle), headers=sqlite_gateway.as_hcp()).json()
    assert len(last["entry"]) == 1 and last["total"] == 3 and next_link(last) is None


def test_offset_still_pages_for_compatibility_and_its_next_link_is_a_cursor(sqlite_gateway):
    sqlite_gateway.register_patient()
    for n in range(4):
        sqlite_gateway.provide(one_document_bundle(title=f"Letter {n}"))
    everything = [e["resource"]["id"] for e in sqlite_gateway.find(_count="10").json()["entry"]]

    second = sqlite_gateway.find(_count="1", _offset="1").json()
    rest, _ = page_through(sqlite_gateway, next_link(second), sqlite_gateway.as_hcp(), lambda: None)

    assert [e["resource"]["id"] for e in second["entry"]] == everything[1:2]
    assert "_cursor=" in next_link(second) and "_offset" not in next_link(second)
    assert rest == everything[2:]


def refusal(response) -> tuple[int, str, list[str]]:
    issue = response.json()["issue"][0]
    return response.status_code, issue["diagnostics"], issue.get("expression", [])


def test_a_changed_replayed_or_rebound_iti67_cursor_is_refused(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    for n in range(3):
        gateway.provide(one_document_bundle(title=f"Letter {n}"))
    following = next_link(gateway.find(_count="2").json())
    cursor = dict(parse_qsl(urlsplit(following).query))["_cursor"]
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    patient = gateway.tokens.headers(gateway.tokens.patient())  # may read these documents, yet did not ask
    recorded = len(gateway.services.auditor.ledger.all_records())

    answers = {
        "changed": gateway.client.get(with_query(following, _cursor=flipped), headers=gateway.as_hcp()),
        "cut": gateway.client.get(with_query(following, _cursor=cursor[:-3]), headers=gateway.as_hcp()),
        "made up": gateway.client.get(with_query(following, _cursor="e30.AAAA"), headers=gateway.as_hcp()),
        "another principal": gateway.client.get(following, headers=patient),
        "other parameters": gateway.client.get(with_query(following, status="current"), headers=gateway.as_hcp()),
        "with _offset": gateway.client.get(with_query(following, _offset="0"), headers=gateway.as_hcp()),
    }

    assert {why: refusal(answer) for why, answer in answers.items()} == {
        "changed": (400, NOT_ISSUED, ["_cursor"]),
        "cut": (400, NOT_ISSUED, ["_cursor"]),
        "made up": (400, NOT_ISSUED, ["_cursor"]),
        "another principal": (400, OTHER_SEARCH, ["_cursor"]),
        "other parameters": (400, OTHER_SEARCH, ["_cursor"]),
        "with _offset": (400, "_cursor and _offset do not go together: follow the next link as it is", ["_cursor"]),
    }
    refused = gateway.services.auditor.ledger.all_records()[recorded:]
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in refused] == [("ITI-67", "4")] * 6  # each once
    # The page size may change between pages; the same link by the same principal still works.
    resized = gateway.client.get(with_query(following, _count="5"), headers=gateway.as_hcp())
    assert resized.status_code == 200 and len(resized.json()["entry"]) == 1
    assert gateway.client.get(following, headers=gateway.as_hcp()).status_code == 200


def trail_ids_now(gateway) -> list[str]:
    """The patient's trail as the ledger holds it (read in the store: reading it over ITI-81 adds to it)."""
    ledger, auditor = gateway.services.auditor.ledger, gateway.services.auditor
    return [e["id"] for e in ledger.records_for_patient(patient_key=auditor.patient_key(SPID))]


def test_the_trail_pages_as_it_was_at_its_first_page_while_it_grows(gateway):
    gateway.register_patient()
    for n in range(4):
        gateway.provide(one_document_bundle(title=f"Letter {n}"))
    before = trail_ids_now(gateway)
    patient = gateway.tokens.headers(gateway.tokens.patient())

    def provide_one() -> None:  # a document provided (ATC_DOC_CREATE) besides this read's own record
        assert gateway.provide(one_document_bundle(title="Arrived")).status_code == 200

    first = f"/fhir/AuditEvent?entity.identifier={SEARCH}{SPID}&_count=3"
    ids, totals = page_through(gateway, first, patient, provide_one)

    assert len(before) >= 7
    assert ids == before  # oldest first, each once, nothing recorded while paging
    assert set(totals) == {len(before)}
    assert len(trail_ids_now(gateway)) > len(before) + len(totals)  # the trail did grow meanwhile


def test_a_changed_or_rebound_trail_cursor_is_refused(sqlite_gateway):
    gateway = sqlite_gateway
    gateway.register_patient()
    patient = gateway.tokens.headers(gateway.tokens.patient())
    first = gateway.client.get(f"/fhir/AuditEvent?entity.identifier={SEARCH}{SPID}&_count=1", headers=patient)
    following = next_link(first.json())
    cursor = dict(parse_qsl(urlsplit(following).query))["_cursor"]
    document_search = f"/fhir/DocumentReference?patient.identifier={SEARCH}{SPID}&_cursor={cursor}"

    answers = {
        "changed": gateway.client.get(with_query(following, _cursor=cursor[:-1] + ("A" if cursor[-1] != "A" else "B")),
                                      headers=patient),
        "other parameters": gateway.client.get(with_query(following, date="ge2020-01-01"), headers=patient),
        "another search": gateway.client.get(document_search, headers=patient),
    }

    assert {why: refusal(answer)[:2] for why, answer in answers.items()} == {
        "changed": (400, NOT_ISSUED), "other parameters": (400, OTHER_SEARCH), "another search": (400, OTHER_SEARCH)}
    assert gateway.client.get(following, headers=patient).status_code == 200
