"""Search parameters, again (issue 22, item 11), walked over every search and every way of asking it
(GET, HEAD, POST _search): more than 400 parameters is a 400 with an OperationOutcome (1,001 answered
500); one `_count` rule (once, ASCII digits, 0 = total only, capped at the search's maximum; ITI-81
refused 1000 where ITI-67 capped it, PPQ-5 and Communication refused `_count` at all); a parameter
repeated is an AND (FHIR search), so `status=current&status=superseded` matches nothing, where it
answered both."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from conftest import LOCAL_SYSTEM, SEARCH, SPID
from functional.helpers import document_ids, one_document_bundle

# search → (path, the parameters that make it a valid search, who asks, its maximum _count or None)
SEARCHES = {
    "ITI-67": ("/fhir/DocumentReference", [("patient.identifier", SEARCH + SPID)], "hcp", 100),
    "ITI-66": ("/fhir/List", [("patient.identifier", SEARCH + SPID), ("code", "submissionset")], "hcp", 100),
    "ITI-78": ("/fhir/Patient", [("family", "Muster")], "hcp", 100),
    "ITI-81": ("/fhir/AuditEvent", [("entity.identifier", SEARCH + SPID)], "patient", 100),
    "PPQ-5": ("/fhir/Consent", [("patient:identifier", SEARCH + SPID)], "patient", None),
    "Communication": ("/fhir/Communication", [("recipient.identifier", SEARCH + SPID)], "patient", None),
}
# What each search may repeat without changing its answer (so 400 of them are still a valid search).
REPEATABLE = {"ITI-67": ("status", "current,superseded"), "ITI-66": ("status", "current"), "ITI-78": ("family", "Muster"),
              "ITI-81": ("date", "ge2000-01-01"), "PPQ-5": None, "Communication": None}
METHODS = ("GET", "HEAD", "POST _search")


def ask(gateway, search: str, method: str, params: list[tuple[str, str]]):
    path, _, who, _ = SEARCHES[search]
    headers = gateway.as_hcp() if who == "hcp" else gateway.tokens.headers(gateway.tokens.patient())
    if method == "POST _search":
        return gateway.client.post(f"{path}/_search", content=urlencode(params),
                                   headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    return gateway.client.request(method, f"{path}?{urlencode(params)}", headers=headers)


@pytest.fixture
def record(sqlite_gateway):
    """The patient with a current and a superseded document, audit events, policies and two notifications
    of emergency access (two professionals without a grant searched in an emergency)."""
    sqlite_gateway.register_patient()
    first = document_ids(sqlite_gateway.provide(one_document_bundle()).json())[0]
    assert sqlite_gateway.provide(one_document_bundle(replaces=first)).status_code == 200
    for gln in ("7601000000019", "7601000000026"):
        emergency = sqlite_gateway.tokens.headers(sqlite_gateway.tokens.hcp(gln=gln, purpose="EMER"))
        assert sqlite_gateway.find(headers=emergency).status_code == 200
    return sqlite_gateway


@pytest.mark.parametrize("method", ["GET", "POST _search"])
@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_more_than_400_parameters_is_a_400_on_every_search(record, search, method):
    _, anchor, _, _ = SEARCHES[search]
    response = ask(record, search, method, anchor + [(f"x{n}", "1") for n in range(1_001)])
    assert (response.status_code, response.json()["issue"][0]["diagnostics"]) == (
        400, f"{len(anchor) + 1_001} parameters: a request takes at most 400")


@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_more_than_400_parameters_is_a_400_on_head_too(record, search):
    _, anchor, _, _ = SEARCHES[search]
    for repeated in ([("category", "a|b")], [("x", "1")]):
        assert ask(record, search, "HEAD", anchor + repeated * 1_001).status_code == 400


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("search", sorted(s for s, repeated in REPEATABLE.items() if repeated))
def test_400_parameters_are_a_search_like_any_other(record, search, method):
    _, anchor, _, _ = SEARCHES[search]
    response = ask(record, search, method, anchor + [REPEATABLE[search]] * (400 - len(anchor)))
    assert response.status_code == 200


@pytest.mark.parametrize("method", METHODS)
def test_many_or_values_in_one_parameter_are_a_400_not_a_500(record, method):
    for name in ("category", "author.family"):
        response = ask(record, "ITI-67", method, SEARCHES["ITI-67"][1] + [(name, ",".join(f"c{n}" for n in range(5_000)))])
        assert response.status_code == 400


def _self_count(bundle) -> str | None:
    url = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    return dict(parse_qsl(urlsplit(url).query)).get("_count")


@pytest.mark.parametrize("search", sorted(s for s, (_, _, _, maximum) in SEARCHES.items() if maximum))
def test_a_count_above_the_maximum_is_capped_on_every_search_that_pages(record, search):
    for method in ("GET", "POST _search"):
        response = ask(record, search, method, SEARCHES[search][1] + [("_count", "1000")])
        assert (response.status_code, _self_count(response.json())) == (200, "100"), response.text


@pytest.mark.parametrize("search", ["PPQ-5", "Communication"])
def test_a_search_that_does_not_page_takes_count_and_answers_at_most_that_many(record, search):
    everything = ask(record, search, "GET", SEARCHES[search][1]).json()
    assert len(everything["entry"]) >= 2
    for count in ("1", "1000"):
        answer = ask(record, search, "GET", SEARCHES[search][1] + [("_count", count)]).json()
        assert (answer["total"], len(answer.get("entry", []))) == (
            everything["total"], min(int(count), len(everything.get("entry", []))))
    only_total = ask(record, search, "GET", SEARCHES[search][1] + [("_count", "0")]).json()
    assert (only_total["total"], "entry" in only_total) == (everything["total"], False)


@pytest.mark.parametrize("count", [["abc"], ["-1"], ["²"], ["9" * 30], ["5", "7"]])
@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_a_bad_or_repeated_count_is_a_400_naming_it_on_every_search(record, search, count):
    response = ask(record, search, "GET", SEARCHES[search][1] + [("_count", c) for c in count])
    assert (response.status_code, response.json()["issue"][0]["expression"]) == (400, ["_count"]), response.text


def test_a_repeated_status_must_match_both_so_current_and_superseded_is_nothing(record):
    def statuses(*params):
        bundle = record.client.get("/fhir/DocumentReference", params=[("patient.identifier", SEARCH + SPID), *params],
                                   headers=record.as_hcp()).json()
        return bundle["total"], sorted(e["resource"]["status"] for e in bundle.get("entry", []))

    assert statuses(("status", "current"), ("status", "superseded")) == (0, [])
    assert statuses(("status", "current,superseded")) == (2, ["current", "superseded"])
    assert statuses(("status", "current,superseded"), ("status", "superseded")) == (1, ["superseded"])
    assert statuses(("status", "current"), ("status", "current")) == (1, ["current"])


def test_the_patient_search_by_local_id_is_not_hurt_by_the_cap(record):
    response = ask(record, "ITI-78", "GET", [("identifier", f"{LOCAL_SYSTEM}|L-1")] * 400)
    assert response.status_code == 200 and response.json()["total"] == 1
