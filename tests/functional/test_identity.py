"""The MPI over HTTP: PIXm (ITI-83), PDQm (ITI-78), identity vigilance and its review list, merge and
unmerge (documents follow), and what is kept out of the clear. Each test runs on SQLite and PostgreSQL."""

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient
from sqlalchemy import select

from adapters.cara.store.schema import identity_review, metadata
from conftest import LOCAL_SYSTEM, OTHER_SPID, POLICY_ADMIN, SPID
from functional.helpers import document_ids, one_document_bundle, row_counts

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
MPI_SYSTEM = "urn:oid:2.16.756.5.30.1.999.1"  # the settings' default community OID
AHVN13_SYSTEM = "urn:oid:2.16.756.5.32"
AHVN13 = "7561234567897"
OTHER_SYSTEM = "urn:oid:2.16.756.5.30.1.999.3.1"
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
PATIENT_TABLES = ("patient", "patient_identifier", "patient_index", "patient_link")


def feed(gateway, local_id, *, spid=None, family="Muster", given="Anna", birth_date="1980-05-17",
         gender="female", system=LOCAL_SYSTEM, extra=(), headers=None):
    identifiers = [{"system": system, "value": local_id}, *({"system": s, "value": v} for s, v in extra)]
    if spid:
        identifiers.append({"system": SPID_SYSTEM, "value": spid})
    body = {"resourceType": "Patient", "identifier": identifiers, "name": [{"family": family, "given": [given]}],
            "birthDate": birth_date, "gender": gender}
    return gateway.client.put(f"/fhir/Patient?identifier={system}|{local_id}", content=orjson.dumps(body),
                              headers=headers or gateway.as_hcp())


def admin(gateway, role="DADM"):
    return gateway.tokens.headers(gateway.tokens.mint(role=role, user_id=f"{role.lower()}-1", name="Admin"))


def pix(gateway, headers=None, **params):
    return gateway.client.get("/fhir/Patient/$ihe-pix", params=params, headers=headers or gateway.as_hcp())


def pdq(gateway, params, headers=None):
    return gateway.client.get("/fhir/Patient", params=params, headers=headers or gateway.as_hcp())


def outcome(response):
    return [(i["severity"], i["code"]) for i in response.json()["issue"]], response.json()["issue"][0]["diagnostics"]


def merge_body(source, target):
    return orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}},
        {"name": "target-patient", "valueReference": {"reference": f"Patient/{target}"}}]})


# -- ITI-83 -----------------------------------------------------------------------------------------

def test_pix_answers_every_other_identifier_and_the_patient(gateway):
    pid = gateway.register_patient()["id"]

    response = pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|L-1")

    assert response.status_code == 200, response.text
    assert response.json() == {"resourceType": "Parameters", "meta": {"profile": [
        "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-pixm-out-parameters"]}, "parameter": [
        {"name": "targetIdentifier", "valueIdentifier": {"system": SPID_SYSTEM, "value": SPID}},
        {"name": "targetIdentifier", "valueIdentifier": {"system": MPI_SYSTEM, "value": pid}}]}  # CH: no targetId
    Parameters.model_validate(response.json())


def test_pix_target_systems_narrow_the_answer_in_the_order_asked(gateway):
    pid = gateway.register_patient()["id"]

    response = gateway.client.get("/fhir/Patient/$ihe-pix", headers=gateway.as_hcp(), params=[
        ("sourceIdentifier", f"{SPID_SYSTEM}|{SPID}"), ("targetSystem", MPI_SYSTEM), ("targetSystem", LOCAL_SYSTEM)])

    assert response.status_code == 200, response.text
    assert response.json()["parameter"] == [
        {"name": "targetIdentifier", "valueIdentifier": {"system": MPI_SYSTEM, "value": pid}},
        {"name": "targetIdentifier", "valueIdentifier": {"system": LOCAL_SYSTEM, "value": "L-1"}}]


def test_pix_unknown_source_is_a_404_outcome(gateway):
    gateway.register_patient()

    response = pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|nobody")

    assert response.status_code == 404
    assert outcome(response) == ([("error", "not-found")],
                                 f"sourceIdentifier {LOCAL_SYSTEM}|… is not known to this MPI")


@pytest.mark.parametrize("target", ["urn:oid:2.999.9.9", AHVN13_SYSTEM])
def test_pix_unknown_or_undisclosed_target_domain_is_a_403_outcome(gateway, target):
    gateway.register_patient()

    response = pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|L-1", targetSystem=target)

    assert response.status_code == 403
    assert outcome(response) == ([("error", "forbidden")],
                                 f"targetSystem {target} is not a patient identifier domain this MPI discloses")


@pytest.mark.parametrize("params, message", [
    ({}, "exactly one sourceIdentifier=<system>|<value> is required"),
    ({"sourceIdentifier": "no-bar"}, "sourceIdentifier must be <system>|<value>"),
    ({"sourceIdentifier": f"{LOCAL_SYSTEM}|L-1", "patient": "x"}, "unknown $ihe-pix parameter(s): patient"),
])
def test_pix_bad_requests_are_400_outcomes(gateway, params, message):
    response = pix(gateway, **params)

    assert response.status_code == 400
    assert outcome(response) == ([("error", "invalid")], message)


@pytest.mark.parametrize("role", ["PAT", "REP"])
def test_patients_and_representatives_may_not_look_identities_up(gateway, role):
    pid = gateway.register_patient()["id"]
    headers = gateway.tokens.headers(gateway.tokens.mint(role=role, spid=SPID, user_id="rep-4711", name="Anna"))

    answers = [pix(gateway, headers, sourceIdentifier=f"{LOCAL_SYSTEM}|L-1"),
               pdq(gateway, {"family": "Muster"}, headers),
               gateway.client.get(f"/fhir/Patient/{pid}", headers=headers)]

    assert [a.status_code for a in answers] == [403, 403, 403]
    assert {a.json()["issue"][0]["code"] for a in answers} == {"forbidden"}


# -- ITI-78 -----------------------------------------------------------------------------------------

def test_pdq_finds_by_exact_demographics_and_answers_ch_pdqm_patients(gateway):
    pid = gateway.register_patient()["id"]
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Meier", given="Hans")

    response = pdq(gateway, {"family": "MUSTER", "given": "anna", "birthdate": "1980-05-17", "gender": "female"})

    assert response.status_code == 200, response.text
    bundle = response.json()
    Bundle.model_validate(bundle)
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    assert bundle["entry"][0]["fullUrl"] == f"https://testserver/fhir/Patient/{pid}"
    assert bundle["entry"][0]["search"] == {"mode": "match", "score": 1}
    read_meta = gateway.client.get(f"/fhir/Patient/{pid}", headers=gateway.as_hcp()).json()["meta"]
    assert bundle["entry"][0]["resource"] == {
        "resourceType": "Patient", "id": pid,
        # The version and instant a read gives (issue 13).
        "meta": {"profile": ["http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-pdqm-patient"],
                 "versionId": "1", "lastUpdated": read_meta["lastUpdated"]},
        "identifier": [{"system": SPID_SYSTEM, "value": SPID},
                       {"type": MR, "system": MPI_SYSTEM, "value": pid},
                       {"type": MR, "system": LOCAL_SYSTEM, "value": "L-1"}],
        "name": [{"family": "Muster", "given": ["Anna"]}], "gender": "female", "birthDate": "1980-05-17",
        "active": True}


@pytest.mark.parametrize("params", [
    {"family": "Must"},  # no prefix search on hashes
    {"family": "Müster"},  # accents are significant
    {"family": "Muster", "birthdate": "1980-05-18"},
    {"identifier": f"{LOCAL_SYSTEM}|L-404"},
])
def test_pdq_is_an_exact_match_and_an_empty_searchset_otherwise(gateway, params):
    gateway.register_patient()

    response = pdq(gateway, params)

    assert response.status_code == 200
    assert response.json()["total"] == 0 and "entry" not in response.json()  # FHIR JSON has no empty arrays


@pytest.mark.parametrize("identifier", [f"{SPID_SYSTEM}|{SPID}", f"{LOCAL_SYSTEM}|L-1",
                                        f"{AHVN13_SYSTEM}|756.1234.5678.97", "mpi"])
def test_pdq_finds_by_every_kind_of_identifier(gateway, identifier):
    response = feed(gateway, "L-1", spid=SPID, extra=[(AHVN13_SYSTEM, AHVN13)])
    pid = response.json()["id"]
    wanted = f"{MPI_SYSTEM}|{pid}" if identifier == "mpi" else identifier

    found = pdq(gateway, {"identifier": wanted}).json()

    assert [e["resource"]["id"] for e in found["entry"]] == [pid]
    # the AHVN13 is checked and searchable, never disclosed
    assert AHVN13_SYSTEM not in {i["system"] for i in found["entry"][0]["resource"]["identifier"]}


@pytest.mark.parametrize("params, message", [
    ({}, "a PDQm query needs at least one of family, given, birthdate, gender, identifier"),
    ({"family:contains": "Mu"}, "unknown or unsupported search parameter(s): family:contains (exact match only: "
                                "demographics are kept as keyed hashes)"),
    ({"name": "Muster"}, "unknown or unsupported search parameter(s): name (exact match only: demographics are "
                         "kept as keyed hashes)"),
    ({"birthdate": "ge1980-01-01"}, "birthdate must be a full date (YYYY-MM-DD, optionally eq); ranges are not "
                                    "supported on keyed hashes"),
    ({"gender": "f"}, "gender must be one of male, female, other, unknown"),
    ({"identifier": "L-1"}, "identifier must be <system>|<value>"),
])
def test_pdq_bad_requests_are_400_outcomes(gateway, params, message):
    response = pdq(gateway, params)

    assert response.status_code == 400
    assert outcome(response) == ([("error", "invalid")], message)


def test_read_a_patient_and_an_unknown_one(gateway):
    pid = gateway.register_patient()["id"]

    found = gateway.client.get(f"/fhir/Patient/{pid}", headers=gateway.as_hcp())
    missing = gateway.client.get("/fhir/Patient/nobody", headers=gateway.as_hcp())

    assert found.status_code == 200
    Patient.model_validate(found.json())
    assert found.json()["identifier"][:2] == [{"system": SPID_SYSTEM, "value": SPID},
                                              {"type": MR, "system": MPI_SYSTEM, "value": pid}]
    assert missing.status_code == 404
    assert outcome(missing) == ([("error", "not-found")], "Patient/nobody is not known")


# -- ITI-104 linking and identity vigilance ---------------------------------------------------------

def test_a_new_local_id_is_linked_by_spid_or_by_a_unique_exact_demographic_match(gateway):
    pid = feed(gateway, "L-1", spid=SPID).json()["id"]

    by_spid = feed(gateway, "S-1", spid=SPID, system=OTHER_SYSTEM)
    by_demographics = feed(gateway, "D-1", system="urn:oid:2.16.756.5.30.1.999.4.1", family="muster")

    assert (by_spid.status_code, by_spid.json()["id"]) == (200, pid)
    assert (by_demographics.status_code, by_demographics.json()["id"]) == (200, pid)
    assert [p["valueIdentifier"]["value"] for p in pix(gateway, sourceIdentifier="urn:oid:2.16.756.5.30.1.999.4.1|D-1"
                                                       ).json()["parameter"][:2]] == [SPID, pid]


def test_an_ambiguous_demographic_match_links_nothing(gateway):
    first = feed(gateway, "L-1", spid=SPID).json()["id"]
    second = feed(gateway, "L-2", spid=OTHER_SPID).json()["id"]  # same demographics, another SPID: a twin

    third = feed(gateway, "L-3")

    assert third.status_code == 201
    assert len({first, second, third.json()["id"]}) == 3


@pytest.mark.parametrize("case, reason, collided_with", [
    ("birth date", "demographics-differ", "first"),
    ("family", "demographics-differ", "first"),
    ("new spid", "spid-differs", "first"),
    ("spid elsewhere", "spid-linked-elsewhere", "second"),
    ("ahvn13 elsewhere", "ahvn13-linked-elsewhere", "first"),
    ("identifier elsewhere", "identifier-linked-elsewhere", "first"),
])
def test_a_conflicting_identity_is_refused_and_put_on_the_review_list(gateway, case, reason, collided_with):
    patients = {"first": feed(gateway, "L-1", spid=SPID, extra=[(AHVN13_SYSTEM, AHVN13)]).json()["id"],
                "second": feed(gateway, "L-2", spid=OTHER_SPID, given="Berta").json()["id"]}
    before = row_counts(gateway.runtime)
    source, conflicting = {
        "birth date": ("L-1", lambda: feed(gateway, "L-1", spid=SPID, birth_date="1980-05-18")),
        "family": ("L-1", lambda: feed(gateway, "L-1", spid=SPID, family="Meier")),
        "new spid": ("L-1", lambda: feed(gateway, "L-1", spid="761337610400000001")),
        "spid elsewhere": ("L-2", lambda: feed(gateway, "L-2", spid=SPID, given="Berta")),
        "ahvn13 elsewhere": ("L-2", lambda: feed(gateway, "L-2", spid=OTHER_SPID, given="Berta",
                                                 extra=[(AHVN13_SYSTEM, "756.1234.5678.97")])),
        "identifier elsewhere": ("L-2", lambda: feed(gateway, "L-2", spid=OTHER_SPID, given="Berta",
                                                     extra=[(LOCAL_SYSTEM, "L-1")])),
    }[case]

    response = conflicting()

    assert response.status_code == 409
    reviews = gateway.client.get("/admin/identity-reviews", headers=admin(gateway, "PADM")).json()["reviews"]
    assert len(reviews) == 1
    review = reviews[0]
    assert outcome(response) == ([("error", "conflict")], (
        f"identity conflict ({reason}): {review['description']}; nothing was merged, the case is in the "
        f"identity review list as {review['id']}"))
    assert (review["reason"], review["status"], review["patient"]) == (
        reason, "open", f"Patient/{patients[collided_with]}")
    assert review["incoming"]["source"] == {"system": LOCAL_SYSTEM, "value": source}
    after = row_counts(gateway.runtime)
    assert {t: after[t] for t in PATIENT_TABLES} == {t: before[t] for t in PATIENT_TABLES}
    assert after["identity_review"] == before["identity_review"] + 1


def test_an_invalid_ahvn13_is_a_400_and_no_review(gateway):
    response = feed(gateway, "L-1", spid=SPID, extra=[(AHVN13_SYSTEM, "7561234567890")])

    assert response.status_code == 400
    assert outcome(response) == ([("error", "invalid")], "the AHVN13 must be 13 digits starting with 756 with a "
                                                         "valid EAN-13 check digit")
    assert row_counts(gateway.runtime)["identity_review"] == 0


def test_reviews_are_listed_and_resolved_by_administrators_only(gateway):
    feed(gateway, "L-1", spid=SPID)
    feed(gateway, "L-1", spid=SPID, birth_date="1999-01-01")
    review_id = gateway.client.get("/admin/identity-reviews", headers=admin(gateway)).json()["reviews"][0]["id"]

    refused = gateway.client.get("/admin/identity-reviews", headers=gateway.as_hcp())
    resolved = gateway.client.post(f"/admin/identity-reviews/{review_id}/resolve", headers=admin(gateway, "PADM"))
    unknown = gateway.client.post("/admin/identity-reviews/nope/resolve", headers=admin(gateway))

    assert refused.status_code == 403
    assert resolved.status_code == 200
    assert (resolved.json()["status"], resolved.json()["incoming"]["birth_date"]) == ("resolved", "1999-01-01")
    assert gateway.client.get("/admin/identity-reviews", headers=admin(gateway)).json() == {"reviews": []}
    assert unknown.status_code == 404


# -- merge and unmerge ------------------------------------------------------------------------------

def test_merge_moves_ids_and_documents_to_the_survivor_and_unmerge_gives_them_back(gateway):
    surviving = gateway.register_patient()["id"]
    retired = gateway.register_patient(spid=OTHER_SPID, local_id="L-2", given="Berta")["id"]
    kept = document_ids(gateway.provide(one_document_bundle(spid=SPID, title="Kept")).json())[0]
    moved = document_ids(gateway.provide(one_document_bundle(spid=OTHER_SPID, title="Moved")).json())[0]

    merged = gateway.client.post("/fhir/Patient/$merge", content=merge_body(retired, surviving), headers=admin(gateway))

    assert merged.status_code == 200, merged.text
    Parameters.model_validate(merged.json())
    result = merged.json()["parameter"][1]["resource"]
    assert result["link"] == [{"other": {"reference": f"Patient/{retired}"}, "type": "replaces"}]
    assert [i["value"] for i in result["identifier"]] == [SPID, surviving, "L-1", "L-2"]
    assert {e["resource"]["id"] for e in gateway.find(SPID).json()["entry"]} == {kept, moved}
    # The retired SPID names the same merged record; each document is decided under its own
    # patient's policies (both granted this HCP), so it finds the same documents.
    assert {e["resource"]["id"] for e in gateway.find(OTHER_SPID).json()["entry"]} == {kept, moved}
    assert pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|L-2").json()["parameter"][-1] == {
        "name": "targetIdentifier", "valueIdentifier": {"system": MPI_SYSTEM, "value": surviving}}
    moved_ref = gateway.client.get(f"/fhir/DocumentReference/{moved}", headers=gateway.as_hcp()).json()
    assert moved_ref["subject"]["identifier"]["value"] == SPID
    assert [e["resource"]["id"] for e in pdq(gateway, {"family": "Muster"}).json()["entry"]] == [surviving]
    retired_read = gateway.client.get(f"/fhir/Patient/{retired}", headers=gateway.as_hcp()).json()
    assert (retired_read["active"], retired_read["link"]) == (
        False, [{"other": {"reference": f"Patient/{surviving}"}, "type": "replaced-by"}])

    unmerged = gateway.client.post("/fhir/Patient/$unmerge", content=merge_body(retired, surviving),
                                   headers=admin(gateway, "PADM"))

    assert unmerged.status_code == 200, unmerged.text
    assert [e["resource"]["id"] for e in gateway.find(SPID).json()["entry"]] == [kept]
    assert [e["resource"]["id"] for e in gateway.find(OTHER_SPID).json()["entry"]] == [moved]
    assert pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|L-2").json()["parameter"][-1] == {
        "name": "targetIdentifier", "valueIdentifier": {"system": MPI_SYSTEM, "value": retired}}
    again = gateway.client.get(f"/fhir/DocumentReference/{moved}", headers=gateway.as_hcp()).json()
    assert again["subject"]["identifier"]["value"] == OTHER_SPID


def test_merge_names_patients_by_identifier_too(gateway):
    surviving = gateway.register_patient()["id"]
    retired = gateway.register_patient(spid=OTHER_SPID, local_id="L-2", given="Berta")["id"]
    body = orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueIdentifier": {"system": SPID_SYSTEM, "value": OTHER_SPID}},
        {"name": "target-patient", "valueIdentifier": {"system": LOCAL_SYSTEM, "value": "L-1"}}]})
    tcu = gateway.tokens.headers(gateway.tokens.tcu())

    response = gateway.client.post("/fhir/Patient/$merge", content=body, headers=tcu)

    assert response.status_code == 200, response.text
    assert response.json()["parameter"][0]["resource"]["issue"][0]["diagnostics"] == (
        f"Patient/{retired} merged into Patient/{surviving}")


def test_merge_refusals(gateway):
    surviving = gateway.register_patient()["id"]
    retired = gateway.register_patient(spid=OTHER_SPID, local_id="L-2", given="Berta")["id"]
    assert gateway.client.post("/fhir/Patient/$merge", content=merge_body(retired, surviving),
                               headers=admin(gateway)).status_code == 200

    answers = {
        "hcp": gateway.client.post("/fhir/Patient/$merge", content=merge_body(retired, surviving),
                                   headers=gateway.as_hcp()),
        "same": gateway.client.post("/fhir/Patient/$merge", content=merge_body(surviving, surviving),
                                    headers=admin(gateway)),
        "unknown": gateway.client.post("/fhir/Patient/$merge", content=merge_body("nobody", surviving),
                                       headers=admin(gateway)),
        "again": gateway.client.post("/fhir/Patient/$merge", content=merge_body(retired, surviving),
                                     headers=admin(gateway)),
        "into retired": gateway.client.post("/fhir/Patient/$merge", content=merge_body(surviving, retired),
                                            headers=admin(gateway)),
        "unmerge unknown link": gateway.client.post("/fhir/Patient/$unmerge", content=merge_body(surviving, retired),
                                                    headers=admin(gateway)),
        "no parameters": gateway.client.post("/fhir/Patient/$merge", content=b'{"resourceType": "Parameters"}',
                                             headers=admin(gateway)),
    }

    assert {k: (v.status_code, v.json()["issue"][0]["code"]) for k, v in answers.items()} == {
        "hcp": (403, "forbidden"), "same": (400, "invalid"), "unknown": (404, "not-found"),
        "again": (409, "conflict"), "into retired": (409, "conflict"), "unmerge unknown link": (409, "conflict"),
        "no parameters": (400, "invalid")}


# -- audit and what stays out of the clear ----------------------------------------------------------

def test_queries_merges_and_refusals_are_audited_without_names(gateway):
    surviving = gateway.register_patient()["id"]
    retired = gateway.register_patient(spid=OTHER_SPID, local_id="L-2", given="Berta")["id"]
    before = len(gateway.services.auditor.ledger.all_records())

    pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|L-1")
    pdq(gateway, {"family": "Muster", "given": "Anna"})
    gateway.client.post("/fhir/Patient/$merge", content=merge_body(retired, surviving), headers=admin(gateway))
    pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|nobody")

    events = gateway.services.auditor.ledger.all_records()[before:]
    summary = [(e["subtype"][0]["code"], e["outcome"], next(a for a in e["agent"] if a.get("requestor"))["altId"],
                next((x["what"]["identifier"]["value"] for x in e.get("entity", [])
                      if x["what"].get("identifier", {}).get("system") == SPID_SYSTEM), None)) for e in events]
    assert summary == [("ITI-83", "0", "7601000000002", SPID), ("ITI-78", "0", "7601000000002", SPID),
                       ("ITI-104", "0", "dadm-1", OTHER_SPID), ("ITI-104", "0", "dadm-1", SPID),
                       ("ITI-83", "4", "7601000000002", None)]
    text = orjson.dumps(events).decode()
    assert "Muster" not in text and "Anna" not in text and "L-1" not in text and "nobody" not in text


def test_demographics_and_spid_never_appear_in_clear_columns(gateway):
    feed(gateway, "L-1", spid=SPID, extra=[(AHVN13_SYSTEM, AHVN13)])
    gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=SPID)
    gateway.provide(one_document_bundle(spid=SPID))
    feed(gateway, "L-1", spid=SPID, birth_date="1999-12-31")  # a review row too

    record_tables = [t for name, t in metadata.tables.items() if not name.startswith("audit_")]
    with gateway.runtime.engine.connect() as connection:
        rows = [(column.name, value) for table in record_tables for row in connection.execute(select(table))
                for value, column in zip(row, table.columns, strict=True)]
    raw = b"\n".join(v if isinstance(v, bytes) else str(v).encode() for _, v in rows)
    text = "\n".join(str(v) for name, v in rows if not name.startswith("sealed"))
    # long identifiers: not even in the raw bytes of any row; short values: not in any clear column
    assert SPID.encode() not in raw and AHVN13.encode() not in raw
    for secret in (SPID, AHVN13, "Muster", "muster", "Anna", "anna", "1980-05-17", "1999-12-31", "L-1", "female"):
        assert secret not in text, secret
    with gateway.runtime.engine.connect() as connection:
        assert connection.execute(select(identity_review.c.reason)).scalars().all() == ["demographics-differ"]


def test_bulk_loaded_patients_are_found_like_fed_ones_and_a_duplicate_fails_the_batch(gateway):
    from sqlalchemy.exc import IntegrityError

    from adapters.cara.model import Identifier, PatientRecord

    patients = gateway.services.exchange.patients
    loaded = patients.load_new_patients([
        (Identifier(LOCAL_SYSTEM, "B-1"), PatientRecord("", SPID, "Muster", ("Anna",), "1980-05-17", "female")),
        (Identifier(LOCAL_SYSTEM, "B-2"), PatientRecord("", OTHER_SPID, "Meier", ("Hans",), "1970-01-01", "male"))])
    counts = row_counts(gateway.runtime)

    found = pdq(gateway, {"family": "meier", "birthdate": "1970-01-01"}).json()
    with pytest.raises(IntegrityError):
        patients.load_new_patients([(Identifier(LOCAL_SYSTEM, "B-3"),
                                     PatientRecord("", SPID, "Other", ("One",), "1990-01-01", "male"))])

    assert [e["resource"]["id"] for e in found["entry"]] == [loaded[1].pid]
    assert pix(gateway, sourceIdentifier=f"{LOCAL_SYSTEM}|B-1").json()["parameter"][-1]["valueIdentifier"] == {
        "system": MPI_SYSTEM, "value": loaded[0].pid}
    assert row_counts(gateway.runtime) == counts
