"""ITI-66's parameters (adapters/cara/list_search.py): strict parsing, each value checked, and a set matched on
what its List answers (token semantics as FHIR's, dates as ITI-67 compares them)."""

from __future__ import annotations

import pytest

from adapters.cara.errors import InvalidInput
from adapters.cara.list_search import matches, parse_list_request
from adapters.cara.model import Author, Code, SubmissionSet

SPID = "761337610411353650"
PATIENT = ("patient.identifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}")
CODE = ("code", "submissionset")
SUBSET = SubmissionSet(submission_set_id="01a24df5-0000-7000-8000-000000000001", unique_id="urn:oid:2.25.7",
                       source_id="urn:oid:2.16.756.5.30.1.999.9", patient_pid="p", submission_time="2026-11-20T10:00:00+01:00",
                       content_type=Code("http://snomed.info/sct", "71388002"),
                       authors=[Author({"reference": {"reference": "#a"}}, ("Favre",), ("Luc",))],
                       entry_uuid="urn:uuid:8f4e6c1a-6a1b-4d9e-9d36-4f2f3d0c9a10")


def found(*params: tuple[str, str]) -> bool:
    query = parse_list_request([PATIENT, CODE, *params])
    return matches(query, SUBSET, answered_date=SUBSET.submission_time)


@pytest.mark.parametrize(("param", "value", "expected"), [
    ("code", "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset", True),
    ("code", "folder", False),
    ("code", "folder,submissionset", True),
    ("status", "current", True), ("status", "superseded", False), ("status", "retired,current", True),
    ("designationType", "http://snomed.info/sct|71388002", True), ("designationType", "71388002", True),
    ("designationType", "http://loinc.org|71388002", False), ("designationType", "|71388002", False),
    ("designationType", "http://snomed.info/sct|", True),
    ("sourceId", "urn:oid:2.16.756.5.30.1.999.9", True), ("sourceId", "urn:ietf:rfc:3986|urn:oid:2.16.756.5.30.1.999.9", True),
    ("sourceId", "urn:oid:2.16.756.5.30.1.999.8", False),
    ("identifier", "urn:oid:2.25.7", True), ("identifier", "urn:uuid:8f4e6c1a-6a1b-4d9e-9d36-4f2f3d0c9a10", True),
    ("identifier", "urn:oid:2.25.8", False),
    ("source.family", "FAVRE", True), ("source.family", " favre ", True), ("source.given", "Anna,Luc", True),
    ("source.family", "Favr", False),
    ("date", "2026-11-20", True), ("date", "eq2026-11-20T09:00:00Z", True), ("date", "ge2026-11-20T09:00:01Z", False),
    ("date", "le2026-11-20T09:00:00Z", True), ("date", "lt2026-11-20T09:00:00Z", False),
    ("date", "gt2026-11-19", True), ("date", "gt2026-11-20", False), ("date", "2026", True),
])
def test_each_parameter_matches_as_the_list_answers_the_set(param, value, expected):
    assert found((param, value)) is expected


def test_parameters_and_and_a_set_without_a_date_meets_no_date_filter():
    assert found(("sourceId", "urn:oid:2.16.756.5.30.1.999.9"), ("status", "current")) is True
    assert found(("sourceId", "urn:oid:2.16.756.5.30.1.999.9"), ("status", "superseded")) is False
    query = parse_list_request([PATIENT, CODE, ("date", "ge2000-01-01")])
    assert matches(query, SUBSET, answered_date=None) is False
    assert matches(parse_list_request([PATIENT, CODE]), SUBSET, answered_date=None) is True


@pytest.mark.parametrize(("params", "location"), [
    ([PATIENT], "code"),
    ([CODE], "patient.identifier"),
    ([PATIENT, ("patient", "Patient/x"), CODE], "patient.identifier"),
    ([("patient.identifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID[:-1]}"), CODE], "patient.identifier"),
    ([("subject", "x"), CODE], "subject"),
    ([PATIENT, ("code", "documentreference")], "code"),
    ([PATIENT, ("code", "http://example.org|submissionset")], "code"),
    ([PATIENT, CODE, ("status", "http://hl7.org/fhir/list-status|current")], "status"),
    ([PATIENT, CODE, ("status", "approved")], "status"),
    ([PATIENT, CODE, ("date", "2026-02-30")], "date"),
    ([PATIENT, CODE, ("date", "ne2026-01-01")], "date"),
    ([PATIENT, CODE, ("source.family", " , ")], "source.family"),
    ([PATIENT, CODE, ("sourceId", "")], "sourceId"),
    ([PATIENT, CODE, ("_count", "101")], "_count"),
    ([PATIENT, CODE, ("_count", "٣")], "_count"),
    ([PATIENT, CODE, ("_cursor", "a"), ("_cursor", "b")], "_cursor"),
    ([PATIENT, CODE, ("_offset", "1")], "List?_offset"),
    ([PATIENT, CODE, ("title", "x"), ("author", "y")], "List?author&title"),
    ([PATIENT, CODE, ("identifier", ",".join(f"urn:oid:2.25.{n}" for n in range(400)))], "code"),
])
def test_a_bad_search_is_refused_naming_where(params, location):
    with pytest.raises(InvalidInput) as refused:
        parse_list_request(params)
    assert [issue.location for issue in refused.value.issues] == [location]


def test_paging_values_are_read():
    query = parse_list_request([PATIENT, CODE, ("_count", "0"), ("_cursor", "abc.def")])
    assert (query.spid, query.patient_id, query.count, query.cursor) == (SPID, None, 0, "abc.def")
    assert parse_list_request([("patient", "Patient/0190-a"), CODE]).patient_id == "0190-a"
