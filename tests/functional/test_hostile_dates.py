"""Dates on every path (issue 22, item 10; issue 27, item 5): one table of dates that do not exist or
that the record cannot hold, walked over every date field of every face — ITI-65 bodies, ITI-67 and
ITI-81 search values, PPQ-3 and ITI-104 dates over HTTP, HL7 v2 TS over a real MLLP socket, XDS DTM
through a migration run — each refused where it comes in, naming the field, nothing stored. The leap
second is valid FHIR and ISO: taken on every face as a repeated second 59. HL7 times without an
offset are Swiss local time; XDS times are UTC."""

from __future__ import annotations

import uuid

import orjson
import pytest

from conftest import LOCAL_SYSTEM, SEARCH, SPID, grant_consent, running_gateway, sqlite_url
from functional.helpers import one_document_bundle, row_counts
from functional.hostile_faces import a08_with, control_ids, document_rows, mdm_with, migrate, send, xdm_package
from functional.mllp_helpers import running_listener, senders_file
from gateway.samples import new_oid_unique_id, patient_feed

# name → (FHIR form, HL7/XDS compact form); None where that grammar cannot write it
HOSTILE = {
    "month 13": ("2016-13-01T10:00:00Z", "20161301100000"),
    "30 February": ("2016-02-30T10:00:00Z", "20160230100000"),
    "hour 24": ("2016-12-31T24:00:00Z", "20161231240000"),
    "year 0000": ("0000-01-01T10:00:00Z", "00000101100000"),
    "after 9999 in UTC": ("9999-12-31T23:59:59-12:00", "99991231235959-1200"),
    "before 0001 in UTC": ("0001-01-01T00:00:00+14:00", "00010101000000+1400"),
    "local hour skipped in spring": (None, "20260329023000"),
}
# The same, as a date alone (birth dates, Consent periods, PID-7).
HOSTILE_DAYS = {"month 13": ("2016-13-01", "20161301"), "30 February": ("2016-02-30", "20160230"),
                "year 0000": ("0000-01-01", "00000101")}
FHIR_CASES = [name for name, (iso, _) in HOSTILE.items() if iso]
XDS_CASES = [name for name, (_, compact) in HOSTILE.items() if "+" not in compact and "-" not in compact
             and "local" not in name]


def _doc(bundle):
    return bundle["entry"][1]["resource"]


# field → (setter, the expression its refusal names)
BODY_FIELDS = {
    "DocumentReference.date": (lambda b, v: _doc(b).__setitem__("date", v), "Bundle.entry[1].resource.date"),
    "context.period.start": (lambda b, v: _doc(b)["context"].__setitem__("period", {"start": v}),
                             "Bundle.entry[1].resource.context.period.start"),
    "context.period.end": (lambda b, v: _doc(b)["context"].__setitem__("period", {"end": v}),
                           "Bundle.entry[1].resource.context.period.end"),
    "attachment.creation": (lambda b, v: _doc(b)["content"][0]["attachment"].__setitem__("creation", v),
                            "Bundle.entry[1].resource.content[0].attachment.creation"),
    "List.date": (lambda b, v: b["entry"][0]["resource"].__setitem__("date", v), "Bundle.entry[0].resource.date"),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("dates")
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path)) as running:
        running.register_patient()
        with running_listener(running.runtime) as address:
            yield running, address


def _expressions(response) -> list[str]:
    return [e for issue in response.json()["issue"] for e in issue.get("expression", [])]


@pytest.mark.parametrize("hostile", FHIR_CASES)
@pytest.mark.parametrize("field", sorted(BODY_FIELDS))
def test_iti65_refuses_the_date_naming_the_field_and_stores_nothing(gateway, field, hostile):
    running, _ = gateway
    setter, expression = BODY_FIELDS[field]
    bundle = one_document_bundle()
    setter(bundle, HOSTILE[hostile][0])
    before = row_counts(running.runtime)
    response = running.provide(bundle)
    assert response.status_code in (400, 422) and response.json()["resourceType"] == "OperationOutcome", response.text
    assert any(e.startswith(expression) for e in _expressions(response)), response.text
    assert row_counts(running.runtime) == before


SEARCHES = {"ITI-67 date": ("/fhir/DocumentReference", {"patient.identifier": SEARCH + SPID}, "date", "hcp"),
            "ITI-67 period": ("/fhir/DocumentReference", {"patient.identifier": SEARCH + SPID}, "period", "hcp"),
            "ITI-81 date": ("/fhir/AuditEvent", {"entity.identifier": SEARCH + SPID}, "date", "patient")}


def _headers(running, who):
    return running.as_hcp() if who == "hcp" else running.tokens.headers(running.tokens.patient())


@pytest.mark.parametrize("hostile", FHIR_CASES)
@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_searches_refuse_the_date_value_naming_the_parameter(gateway, search, hostile):
    running, _ = gateway
    path, params, name, who = SEARCHES[search]
    response = running.client.get(path, params={**params, name: "ge" + HOSTILE[hostile][0]},
                                  headers=_headers(running, who))
    assert (response.status_code, _expressions(response)) == (400, [name]), response.text


@pytest.mark.parametrize("hostile", sorted(HOSTILE_DAYS))
def test_ppq3_and_iti104_refuse_a_date_that_does_not_exist(gateway, hostile):
    running, _ = gateway
    day = HOSTILE_DAYS[hostile][0]
    before = row_counts(running.runtime)
    consent = grant_consent(spid=SPID, gln="7601000000019", level="normal", end=day)
    response = running.client.post("/fhir/Consent", content=orjson.dumps(consent),
                                   headers=running.tokens.headers(running.tokens.patient()))
    assert response.status_code in (400, 422) and "Consent.provision.period.end" in _expressions(response)
    feed = patient_feed(spid="761337610499999991", local_system=LOCAL_SYSTEM, local_id="L-31", family="Muster",
                        given="Anna", birth_date=day, gender="female")
    response = running.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|L-31", content=orjson.dumps(feed),
                                  headers=running.as_hcp())
    assert response.status_code == 400 and any("birthDate" in e for e in _expressions(response)), response.text
    assert row_counts(running.runtime) == before


# -- HL7 v2 over MLLP ------------------------------------------------------------------------------
CONTROL = control_ids("D")
MLLP_FIELDS = {
    "MSH-7": (lambda v: mdm_with(control_id=next(CONTROL), unique_id=new_oid_unique_id(), sent=v), "MSH^1^7"),
    "TXA-4": (lambda v: mdm_with(control_id=next(CONTROL), unique_id=new_oid_unique_id(), activity=v), "TXA^1^4"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
@pytest.mark.parametrize("field", sorted(MLLP_FIELDS))
def test_mllp_answers_ae_naming_the_date_field_and_stores_nothing(gateway, field, hostile):
    running, address = gateway
    message, location = MLLP_FIELDS[field]
    before = document_rows(running)
    assert send(address, message(HOSTILE[hostile][1])) == ("AE", location, "102")
    assert document_rows(running) == before


@pytest.mark.parametrize("hostile", sorted(HOSTILE_DAYS))
def test_mllp_a08_refuses_a_birth_date_that_does_not_exist(gateway, hostile):
    running, address = gateway
    before = document_rows(running)
    assert send(address, a08_with(control_id=next(CONTROL), local_id="L-1", birth=HOSTILE_DAYS[hostile][1])) == (
        "AE", "PID^1^7", "102")
    assert document_rows(running) == before


def _stored(running, unique_id: str) -> dict:
    found = running.find().json().get("entry", [])
    return next(e["resource"] for e in found if e["resource"]["masterIdentifier"]["value"] == unique_id)


@pytest.mark.parametrize("activity, creation", [
    ("20161231235960+0000", "2016-12-31T23:59:59Z"),  # a leap second: the repeated second 59
    ("20260720093000", "2026-07-20T09:30:00+02:00"),  # no offset: Swiss summer time
    ("20260120093000", "2026-01-20T09:30:00+01:00"),  # no offset: Swiss winter time
    ("20261025023000", "2026-10-25T02:30:00+02:00"),  # the doubled hour: the first (summer time)
])
def test_mllp_times_are_stored_as_swiss_local_time_or_as_their_offset_says(gateway, activity, creation):
    running, address = gateway
    unique_id = new_oid_unique_id()
    assert send(address, mdm_with(control_id=next(CONTROL), unique_id=unique_id, activity=activity))[0] == "AA"
    assert _stored(running, unique_id)["content"][0]["attachment"]["creation"] == creation


# -- ITI-65: the leap second -----------------------------------------------------------------------
def test_iti65_stores_a_leap_second_as_second_59_and_finds_it_by_its_day(gateway):
    running, _ = gateway
    unique_id = new_oid_unique_id()
    bundle = one_document_bundle(unique_id=unique_id, date="2016-12-31T23:59:60Z")
    _doc(bundle)["context"]["period"] = {"start": "2016-12-31T23:59:60+00:00", "end": "2017-01-01T00:59:60+01:00"}
    assert running.provide(bundle).status_code == 200
    stored = _stored(running, unique_id)
    assert (stored["date"], stored["context"]["period"]) == (
        "2016-12-31T23:59:59Z", {"start": "2016-12-31T23:59:59+00:00", "end": "2017-01-01T00:59:59+01:00"})
    found = [e["resource"] for e in running.find(date="eq2016-12-31T23:59:60Z").json()["entry"]]
    assert unique_id in [r["masterIdentifier"]["value"] for r in found]
    assert {r["date"] for r in found} == {"2016-12-31T23:59:59Z"}  # the MLLP leap-second document too


# -- XDS DTM through a migration -------------------------------------------------------------------
XDM_FIELDS = {"creationTime": "creation", "serviceStartTime": "service_start", "submissionTime": "submission_time"}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("xdm-dates")
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as running:
        running.register_patient()
        media, sources, n = [], {}, 0
        cases = [(f, h, HOSTILE[h][1]) for f in XDM_FIELDS for h in XDS_CASES] + [
            ("sourcePatientInfo PID-7", h, day) for h, (_, day) in HOSTILE_DAYS.items()] + [
            ("creationTime", "leap second", "20161231235960"), ("creationTime", "control", "20260720093000")]
        for field, hostile, value in cases:
            n += 1
            keyword = XDM_FIELDS.get(field, "birth")
            unique_id = f"2.25.{uuid.uuid4().int}"
            sources[field, hostile] = (xdm_package(tmp_path / "export" / f"media-{n:03d}", unique_id=unique_id,
                                                   **{keyword: value}), f"urn:oid:{unique_id}")
            media.append(tmp_path / "export" / f"media-{n:03d}")
        report = migrate(running.runtime, media)
        yield running, report, sources


@pytest.mark.parametrize("hostile", XDS_CASES)
@pytest.mark.parametrize("field", sorted(XDM_FIELDS))
def test_xdm_rejects_the_document_naming_the_date_slot(migrated, field, hostile):
    _, report, sources = migrated
    entry = report[sources[field, hostile][0]]
    assert (entry["outcome"], entry["reason"].startswith(f"{field}:")) == ("rejected", True), entry


@pytest.mark.parametrize("hostile", sorted(HOSTILE_DAYS))
def test_xdm_rejects_a_birth_date_that_does_not_exist(migrated, hostile):
    _, report, sources = migrated
    entry = report[sources["sourcePatientInfo PID-7", hostile][0]]
    assert (entry["outcome"], entry["reason"].startswith("sourcePatientInfo PID-7:")) == ("rejected", True), entry


@pytest.mark.parametrize("case, creation", [("leap second", "2016-12-31T23:59:59Z"),
                                            ("control", "2026-07-20T09:30:00Z")])  # XDS: UTC, whatever the season
def test_xdm_times_are_utc_and_a_leap_second_is_second_59(migrated, case, creation):
    running, report, sources = migrated
    source, unique_id = sources["creationTime", case]
    assert report[source]["outcome"] == "migrated", report[source]
    assert _stored(running, unique_id)["content"][0]["attachment"]["creation"] == creation
