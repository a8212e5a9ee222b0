"""The SubmissionSet List an ITI-65 answer names is readable (issue 27 item 20): `GET List/{id}` and ITI-66
Find Document Lists, under the documents' own access rules. A List shows only the documents the principal may
read (each on its own patient's policies, never a deleted one); a set with nothing left to show is the same 404
as an unknown id and is not found; every answer is a CH MHD SubmissionSet List (R4B and the CH MHD rules);
each search and read is audited (ITI-66, ATC_DOC_SEARCH in the patient's trail).

Before this, the location answered `404 no such resource or interaction` to everyone."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.list import List as FhirList

from adapters.cara.mhd_rules import check_submission_set
from conftest import HCP_GLN, OTHER_SPID, SEARCH, SPID
from functional.helpers import document_ids, row_counts
from functional.test_audit_exchanges import ledger
from functional.test_hostile_dates import FHIR_CASES, HOSTILE
from functional.test_merge_access import BOTH, SCENARIOS, SPIDS, link, scenario, two_patients  # noqa: F401 (fixture)
from functional.test_mhd_metadata_update import DELETION_SYSTEM, EXT_DELETION, REQUESTED, dadm
from gateway.samples import pdf_document, provide_bundle

RESTRICTED_GLN, UNGRANTED_GLN = "7601000000019", "7601000000026"
LISTS = "/fhir/List"
SUBMISSIONSETS = {"code": "submissionset"}


def list_location(answer) -> str:
    [location] = [e["response"]["location"] for e in answer.json()["entry"] if "/List/" in e["response"]["location"]]
    return location.removeprefix("https://testserver")


def documents(spid: str, *levels: str, source_id: str = "urn:oid:2.16.756.5.30.1.999.9", **kwargs) -> dict:
    return provide_bundle(spid=spid, source_id=source_id, documents=[
        {"title": f"{level} {n}", "confidentiality": level, "content": pdf_document(f"{level} {n}", [level, str(n)])}
        for n, level in enumerate(levels)], **kwargs)


@pytest.fixture
def record(gateway):
    """Three sets of the patient: one the granted HCP provided (a normal document), one the patient provided (a
    normal, a restricted and a secret document), one holding only a secret document; and another patient."""
    gateway.register_patient(grant_hcp="normal")
    gateway.grant(SPID, RESTRICTED_GLN, "restricted")
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul", grant_hcp=None)
    patient = gateway.tokens.headers(gateway.tokens.patient())
    by_hcp = gateway.provide(documents(SPID, "normal"))
    mixed = gateway.provide(documents(SPID, "normal", "restricted", "secret", author_role="PAT",
                                      source_id="urn:oid:2.16.756.5.30.1.999.4"), patient)
    secret = gateway.provide(documents(SPID, "secret", author_role="PAT"), patient)
    for answer in (by_hcp, mixed, secret):
        assert answer.status_code == 200, answer.text
    return {"by_hcp": (list_location(by_hcp), document_ids(by_hcp.json())),
            "mixed": (list_location(mixed), document_ids(mixed.json())),
            "secret": (list_location(secret), document_ids(secret.json())),
            "bundles": (by_hcp.json(), mixed.json(), secret.json())}


def who(gateway) -> dict[str, dict]:
    tokens = gateway.tokens
    return {"hcp": gateway.as_hcp(), "restricted": tokens.headers(tokens.hcp(gln=RESTRICTED_GLN)),
            "ungranted": tokens.headers(tokens.hcp(gln=UNGRANTED_GLN)), "patient": tokens.headers(tokens.patient()),
            "other patient": tokens.headers(tokens.patient(OTHER_SPID))}


def listed(resource: dict) -> list[str]:
    return [e["item"]["reference"].removeprefix("DocumentReference/") for e in resource.get("entry", [])]


def assert_valid_list(resource: dict) -> None:
    FhirList.model_validate(resource)
    assert check_submission_set(resource) == []
    assert resource["meta"]["profile"] == ["http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-submissionset-comprehensive"]


def test_the_list_an_iti65_answer_names_is_read_with_the_documents_each_reader_may_see(gateway, record):
    headers = who(gateway)
    answers = {(name, set_name): gateway.client.get(record[set_name][0], headers=headers[name])
               for name in headers for set_name in ("by_hcp", "mixed", "secret")}

    seen = {key: listed(answer.json()) if answer.status_code == 200 else answer.status_code
            for key, answer in answers.items()}
    by_hcp, mixed, secret = (record[name][1] for name in ("by_hcp", "mixed", "secret"))
    assert seen == {
        ("hcp", "by_hcp"): by_hcp, ("hcp", "mixed"): mixed[:1], ("hcp", "secret"): 404,
        ("restricted", "by_hcp"): by_hcp, ("restricted", "mixed"): mixed[:2], ("restricted", "secret"): 404,
        ("ungranted", "by_hcp"): 404, ("ungranted", "mixed"): 404, ("ungranted", "secret"): 404,
        ("patient", "by_hcp"): by_hcp, ("patient", "mixed"): mixed, ("patient", "secret"): secret,
        ("other patient", "by_hcp"): 404, ("other patient", "mixed"): 404, ("other patient", "secret"): 404}
    for answer in answers.values():
        if answer.status_code == 200:
            assert_valid_list(answer.json())
            assert answer.json()["subject"]["identifier"] == {"system": "urn:oid:2.16.756.5.30.1.127.3.10.3",
                                                             "value": SPID}
    # A set nothing of which may be seen answers exactly as an id that does not exist (no oracle).
    unknown = gateway.client.get(f"{LISTS}/01a24df5-0000-7000-8000-000000000000", headers=headers["hcp"])
    refused = answers[("hcp", "secret")]
    assert (refused.status_code, refused.json()["issue"][0]["code"]) == (unknown.status_code, unknown.json()["issue"][0]["code"])
    assert refused.json()["issue"][0]["diagnostics"].replace(record["secret"][0].rsplit("/", 1)[1], "ID") == \
        unknown.json()["issue"][0]["diagnostics"].replace("01a24df5-0000-7000-8000-000000000000", "ID")


def test_the_list_names_the_set_as_it_was_submitted(gateway, record):
    by_hcp = gateway.client.get(record["by_hcp"][0], headers=gateway.as_hcp()).json()
    provided = provide_bundle(spid=SPID, documents=[{"title": "x", "content": b"%PDF-1.4"}])["entry"][0]["resource"]

    assert {k: by_hcp[k] for k in ("status", "mode", "code", "date")} == {
        "status": "current", "mode": "working", "date": provided["date"],
        "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                             "code": "submissionset", "display": "SubmissionSet as a FHIR List"}]}}
    assert [(i["use"], i["system"], i["value"][:9]) for i in by_hcp["identifier"]] == [
        ("usual", "urn:ietf:rfc:3986", "urn:oid:2"), ("official", "urn:ietf:rfc:3986", "urn:uuid:")]
    assert {e["url"].rsplit("/", 1)[1]: e for e in by_hcp["extension"]} == {
        "ihe-designationType": {"url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
                                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                                                     "code": "71388002"}]}},
        "ihe-sourceId": {"url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                         "valueIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.756.5.30.1.999.9"}}}
    # Each entry is the DocumentReference the same reader reads.
    [reference] = [e["item"]["reference"] for e in by_hcp["entry"]]
    assert gateway.client.get(f"/fhir/{reference}", headers=gateway.as_hcp()).json()["id"] == record["by_hcp"][1][0]


def test_iti66_finds_the_sets_with_the_documents_each_reader_may_see(gateway, record):
    headers = who(gateway)
    by_hcp, mixed, secret = (record[name][1] for name in ("by_hcp", "mixed", "secret"))

    found = {}
    for name, asking in headers.items():
        answer = gateway.client.get(LISTS, params={"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS},
                                    headers=asking)
        found[name] = answer.status_code if answer.status_code != 200 else (
            answer.json()["total"], [listed(e["resource"]) for e in answer.json().get("entry", [])])
        if answer.status_code == 200:
            Bundle.model_validate(answer.json())
            for entry in answer.json().get("entry", []):
                assert_valid_list(entry["resource"])
                assert entry["fullUrl"] == f"https://testserver/fhir/List/{entry['resource']['id']}"

    assert found == {"hcp": (2, [mixed[:1], by_hcp]), "restricted": (2, [mixed[:2], by_hcp]),
                     "ungranted": (0, []), "patient": (3, [secret, mixed, by_hcp]),
                     "other patient": 403}  # a token bound to another patient, as ITI-67


def test_iti66_parameters_narrow_the_search_and_bad_ones_are_refused(gateway, record):
    patient = who(gateway)["patient"]
    mixed = gateway.client.get(record["mixed"][0], headers=patient).json()
    usual, official = (i["value"] for i in mixed["identifier"])
    patient_id = gateway.services.exchange.patients.pid_for_spid(SPID)

    def ids(**params) -> list[str]:
        answer = gateway.client.get(LISTS, params={"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS, **params},
                                    headers=patient)
        assert answer.status_code == 200, answer.text
        return [e["resource"]["id"] for e in answer.json().get("entry", [])]

    every = ids()
    assert len(every) == 3
    assert ids(sourceId="urn:oid:2.16.756.5.30.1.999.4") == [mixed["id"]]
    assert ids(sourceId="urn:ietf:rfc:3986|urn:oid:2.16.756.5.30.1.999.9") == [i for i in every if i != mixed["id"]]
    assert ids(identifier=usual) == ids(identifier=f"urn:ietf:rfc:3986|{official}") == [mixed["id"]]
    assert ids(designationType="http://snomed.info/sct|71388002") == every
    assert ids(designationType="http://loinc.org|71388002") == []
    assert ids(status="current") == every and ids(status="superseded") == [] and ids(code="folder") == []
    assert ids(date="2026-11-20") == ids(date="ge2026-11-20T09:00:00Z") == every
    assert ids(date="lt2026-11-20T09:00:00Z") == [] and ids(date="gt2026-11-20") == []
    assert ids(**{"source.family": "Nobody"}) == []
    by_reference = gateway.client.get(LISTS, params={"patient": f"Patient/{patient_id}", **SUBMISSIONSETS}, headers=patient)
    by_subject = gateway.client.get(LISTS, params={"subject": f"Patient/{patient_id}", **SUBMISSIONSETS}, headers=patient)
    assert [e["resource"]["id"] for e in by_reference.json()["entry"]] == \
        [e["resource"]["id"] for e in by_subject.json()["entry"]] == every

    refusals = [(params, gateway.client.get(LISTS, params=params, headers=patient)) for params in (
        {"patient.identifier": SEARCH + SPID},  # code is required (ITI-66)
        {**SUBMISSIONSETS},  # so is the patient
        {"patient.identifier": SEARCH + SPID, "code": "documentreference"},
        {"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS, "status": "approved"},
        {"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS, "date": "2026-13-01"},
        {"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS, "title": "x"},
        {"patient.identifier": "urn:oid:1.2.3|" + SPID, **SUBMISSIONSETS})]
    assert [(a.status_code, a.json()["resourceType"], a.json()["issue"][0]["expression"]) for _, a in refusals] == [
        (400, "OperationOutcome", [where]) for where in (
            "code", "patient.identifier", "code", "status", "date", "List?title", "patient.identifier")]


def test_iti66_pages_counts_and_follows_the_rest_conventions(gateway, record):
    patient = who(gateway)["patient"]
    query = {"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS}

    first = gateway.client.get(LISTS, params={**query, "_count": "2"}, headers=patient).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    gateway.provide(documents(SPID, "normal"))  # a set provided while the client pages moves nothing
    second = gateway.client.get(next_url.removeprefix("https://testserver"), headers=patient).json()
    total_only = gateway.client.get(LISTS, params={**query, "_count": "0"}, headers=patient).json()
    posted = gateway.client.post(f"{LISTS}/_search", content="&".join(f"{k}={v}" for k, v in query.items()),
                                 headers={**patient, "Content-Type": "application/x-www-form-urlencoded"})
    lenient = gateway.client.get(LISTS, params={**query, "colour": "blue"},
                                 headers={**patient, "Prefer": "handling=lenient"}).json()
    head = gateway.client.head(LISTS, params=query, headers=patient)
    tampered = gateway.client.get(next_url.removeprefix("https://testserver").replace("_count=2", "_count=2&code=folder"),
                                  headers=patient)

    assert (first["total"], len(first["entry"]), second["total"], len(second["entry"])) == (3, 2, 3, 1)
    assert not any(link["relation"] == "next" for link in second["link"])
    assert {e["resource"]["id"] for e in first["entry"] + second["entry"]} == {
        record[name][0].rsplit("/", 1)[1] for name in ("by_hcp", "mixed", "secret")}
    assert dict(parse_qsl(urlsplit(next_url).query))["_count"] == "2"
    assert (total_only["total"], "entry" in total_only) == (4, False)
    assert (posted.status_code, posted.json()["total"]) == (200, 4)
    assert [e["search"]["mode"] for e in lenient["entry"]][-1] == "outcome" and lenient["total"] == 4
    assert (head.status_code, head.content) == (200, b"")
    assert (tampered.status_code, tampered.json()["issue"][0]["expression"]) == (400, ["_cursor"])


def test_a_deleted_document_is_never_listed(gateway, record):
    [normal] = record["by_hcp"][1]
    letter = gateway.client.get(f"/fhir/DocumentReference/{normal}", headers=gateway.as_hcp()).json()
    letter["extension"].append({"url": EXT_DELETION, "valueCoding": {"system": DELETION_SYSTEM, "code": REQUESTED}})
    assert gateway.client.put(f"/fhir/DocumentReference/{normal}", content=orjson.dumps(letter),
                              headers=dadm(gateway)).status_code == 200
    patient = who(gateway)["patient"]

    assert gateway.client.get(record["by_hcp"][0], headers=patient).status_code == 404
    found = gateway.client.get(LISTS, params={"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS}, headers=patient)
    assert [listed(e["resource"]) for e in found.json()["entry"]] == [record["secret"][1], record["mixed"][1]]


def test_each_search_and_read_is_audited_in_the_patients_trail(gateway, record):
    headers = who(gateway)
    before = len(ledger(gateway))
    gateway.client.get(LISTS, params={"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS}, headers=headers["hcp"])
    gateway.client.get(record["by_hcp"][0], headers=headers["hcp"])
    gateway.client.get(record["secret"][0], headers=headers["hcp"])  # refused: 404, in the trail
    emergency = gateway.tokens.headers(gateway.tokens.hcp(gln=UNGRANTED_GLN, purpose="EMER"))
    notices_before = row_counts(gateway.runtime)["patient_notification"]
    gateway.client.get(LISTS, params={"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS}, headers=emergency)
    stored = gateway.services.auditor.ledger.all_records()[before:]
    summaries = ledger(gateway)[before:]
    trail = gateway.client.get("/fhir/AuditEvent", params={"entity.identifier": SEARCH + SPID, "_count": "100"},
                               headers=headers["patient"]).json()

    assert [s[:6] for s in summaries] == [
        ("ITI-66", "ATC_DOC_SEARCH", "0", "HCP", HCP_GLN, "NORM"), ("ITI-66", "ATC_DOC_SEARCH", "0", "HCP", HCP_GLN, "NORM"),
        ("ITI-66", "ATC_DOC_SEARCH", "4", "HCP", HCP_GLN, "NORM"),
        ("ITI-66", "ATC_DOC_SEARCH", "0", "HCP", UNGRANTED_GLN, "EMER")]
    search, read, refused, _ = stored
    interaction = "http://hl7.org/fhir/restful-interaction"
    assert [(e["type"]["code"], [c["code"] for c in e["subtype"] if c["system"] in (interaction, "urn:ihe:event-type-code")],
             e.get("meta", {}).get("profile")) for e in (search, read)] == [
        ("rest", ["ITI-66", "search"], ["https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.FindDocumentLists.Audit.Responder"]),
        ("rest", ["ITI-66", "read"], None)]
    [query] = [e for e in search["entity"] if e["role"]["code"] == "24"]
    assert dict(parse_qsl(base64.b64decode(query["query"]).decode())) == {
        "patient.identifier": SEARCH + SPID, **SUBMISSIONSETS}
    [submission_set] = [e for e in read["entity"] if e["role"]["code"] == "20"]
    listed_set = gateway.client.get(record["by_hcp"][0], headers=headers["patient"]).json()
    assert submission_set["what"]["identifier"]["value"] == listed_set["identifier"][0]["value"]
    assert {e["id"] for e in stored} <= {e["resource"]["id"] for e in trail["entry"]}
    # An emergency search notifies the patient, as ITI-67's does.
    assert row_counts(gateway.runtime)["patient_notification"] == notices_before + 1


def test_the_capability_statement_declares_the_lists(gateway):
    statement = gateway.client.get("/fhir/metadata").json()
    [resource] = [r for r in statement["rest"][0]["resource"] if r["type"] == "List"]

    assert resource["profile"] == "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-submissionset-comprehensive"
    assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
    assert {p["name"] for p in resource["searchParam"]} >= {
        "patient.identifier", "patient", "subject", "code", "status", "date", "designationType", "sourceId",
        "identifier", "source.family", "source.given", "_count", "_cursor"}


@pytest.mark.parametrize("side", BOTH)
@pytest.mark.parametrize("name", SCENARIOS)
def test_in_a_merged_record_each_patients_documents_are_listed_on_their_own_policies(two_patients, name, side):
    """The merge scenarios of test_merge_access, asked through the Lists: before, while and after a merge, the
    documents the Lists name (ITI-66 under each SPID, and each set read by id) are exactly those ITI-67 finds."""
    gateway, pids, docs = two_patients
    token, bound, _, _ = scenario(gateway, name, side)
    headers = gateway.tokens.headers(token)
    spids = [SPIDS[side]] if bound else [SPID, OTHER_SPID]
    set_ids = {gateway.services.exchange.documents.get_entry(d).submission_set_id for d in docs}

    def listed_documents() -> set[str]:
        found = set()
        for spid in spids:
            answer = gateway.client.get(LISTS, params={"patient.identifier": SEARCH + spid, **SUBMISSIONSETS,
                                                       "_count": "50"}, headers=headers)
            assert answer.status_code == 200, answer.text
            found |= {d for e in answer.json().get("entry", []) for d in listed(e["resource"])}
        read = {d for set_id in set_ids for d in listed(
            gateway.client.get(f"{LISTS}/{set_id}", headers=headers).json())}
        assert found == read
        return found

    def documents_found() -> set[str]:
        return {e["resource"]["id"] for spid in spids
                for e in gateway.find(spid, headers=headers, _count="50").json().get("entry", [])}

    for step in (None, "merge", "unmerge"):
        if step:
            link(gateway, pids, step)
        assert listed_documents() == documents_found(), step


@pytest.mark.parametrize("hostile", FHIR_CASES)
def test_iti66_refuses_a_date_that_does_not_exist_naming_the_parameter(sqlite_gateway, hostile):
    """The hostile dates every other search refuses (test_hostile_dates), through the one parser."""
    gateway = sqlite_gateway
    answer = gateway.client.get(LISTS, params={"patient.identifier": SEARCH + SPID, **SUBMISSIONSETS,
                                               "date": "ge" + HOSTILE[hostile][0]}, headers=gateway.as_hcp())
    assert (answer.status_code, answer.json()["issue"][0]["expression"]) == (400, ["date"]), answer.text
