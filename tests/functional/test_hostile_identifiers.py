"""Identifier syntax on every path (issue 22, item 6): one table of hostile values, one table of
(face, field), each pair refused where it comes in — ITI-65 / ITI-104 over HTTP (OperationOutcome with
the field's expression), HL7 v2 over a real MLLP socket (AE 102, ERR naming segment and field, after
the escapes are decoded) and XDM through a migration run (the document rejected, the reason naming the
field) — with nothing of the document or patient stored. Each face's control row (the value unspoiled)
is accepted, so a refusal means the value, not the harness."""

from __future__ import annotations

import uuid

import orjson
import pytest

from conftest import HCP_GLN, LOCAL_SYSTEM, fresh_postgres_url, running_gateway, sqlite_url
from functional.helpers import one_document_bundle, row_counts
from functional.hostile_faces import (
    a08_with,
    control_ids,
    document_rows,
    a40_with,
    mdm_with,
    migrate,
    send,
    xdm_package,
)
from functional.mllp_helpers import running_listener, senders_file
from gateway.samples import new_oid_unique_id, patient_feed
from adapters.cara.vocabulary import EXT_SOURCE_ID, RFC3986

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _inside(character: str):
    return lambda value: value[:len(value) // 2] + character + value[len(value) // 2:]


# The hostile values, each made from the field's good value.
HOSTILE = {
    "tab": _inside("\t"),
    "nbsp": _inside("\u00a0"),
    "zero-width space": _inside("\u200b"),
    "carriage return": _inside("\r"),
    "nul": _inside("\x00"),
    "trailing newline": lambda value: value + "\n",
    "full-width digits": lambda value: value.translate(FULL_WIDTH),
    "arabic-indic digits": lambda value: value.translate(ARABIC_INDIC),
    "10,000 characters": lambda value: value + "7" * (10_000 - len(value)),
}
BAD_GLN = "7601000000003"  # 13 digits, wrong GS1 check digit


def good_unique_id() -> str:
    return new_oid_unique_id()


def good_uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


# -- over HTTP -------------------------------------------------------------------------------------
def _doc(bundle):
    return bundle["entry"][1]["resource"]


def _list(bundle):
    return bundle["entry"][0]["resource"]


def _set_master(bundle, value):
    _doc(bundle)["masterIdentifier"]["value"] = value


def _set_doc_entry_uuid(bundle, value):
    _doc(bundle)["identifier"] = [{"use": "official", "system": RFC3986, "value": value}]


def _set_list_unique_id(bundle, value):
    _list(bundle)["identifier"][0]["value"] = value


def _set_list_entry_uuid(bundle, value):
    _list(bundle)["identifier"].append({"use": "official", "system": RFC3986, "value": value})


def _set_source_id(bundle, value):
    next(e for e in _list(bundle)["extension"] if e["url"] == EXT_SOURCE_ID)["valueIdentifier"]["value"] = value


def _set_local_id(bundle, value):
    _doc(bundle)["contained"][0]["identifier"][0]["value"] = value


def _set_author_gln(bundle, value):
    _doc(bundle)["contained"][1]["identifier"][0]["value"] = value


def _set_relates_to(bundle, value):
    _doc(bundle)["relatesTo"] = [{"code": "appends", "target": {"identifier": {"value": value}}}]


DOC = "Bundle.entry[1].resource"
LIST = "Bundle.entry[0].resource"
# field → (setter, good value, the expression its refusal names)
HTTP_FIELDS = {
    "DocumentReference.masterIdentifier (uniqueId)": (_set_master, good_unique_id, f"{DOC}.masterIdentifier.value"),
    "DocumentReference.identifier (entryUUID)": (_set_doc_entry_uuid, good_uuid, f"{DOC}.identifier[0]"),
    "List.identifier usual (SubmissionSet uniqueId)": (_set_list_unique_id, good_unique_id, f"{LIST}.identifier[0]"),
    "List.identifier official (SubmissionSet entryUUID)": (_set_list_entry_uuid, good_uuid, f"{LIST}.identifier[1]"),
    "List ihe-sourceId": (_set_source_id, lambda: "urn:oid:2.16.756.5.30.1.999.9",
                          f"{LIST}.extension('{EXT_SOURCE_ID}').valueIdentifier.value"),
    "sourcePatientInfo identifier (local patient id)": (_set_local_id, lambda: "L-1",
                                                        f"{DOC}.contained[0].identifier[0]"),
    "author Practitioner GLN": (_set_author_gln, lambda: HCP_GLN, f"{DOC}.contained[1].identifier[0]"),
    "relatesTo.target.identifier (uniqueId)": (_set_relates_to, good_unique_id,
                                              f"{DOC}.relatesTo[0].target.identifier.value"),
}
HTTP_CASES = [(field, hostile) for field in HTTP_FIELDS for hostile in HOSTILE] + [
    ("author Practitioner GLN", "bad check digit")]


def _database(request, tmp_path) -> str:
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_postgres_url()


# Both stores: on PostgreSQL a NUL or a 10,000-character value would not even insert (String(256), text
# without NUL), so a value let through there is a 500, not a stored forgery.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=DATABASES)
def http_gateway(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("http")
    with running_gateway(tmp_path, _database(request, tmp_path)) as gateway:
        gateway.register_patient()
        yield gateway


def _spoiled(hostile: str, good: str) -> str:
    return BAD_GLN if hostile == "bad check digit" else HOSTILE[hostile](good)


@pytest.mark.parametrize("field", sorted(set(HTTP_FIELDS) - {"relatesTo.target.identifier (uniqueId)"}))
def test_iti65_control_row_is_stored(http_gateway, field):
    setter, good, _ = HTTP_FIELDS[field]
    bundle = one_document_bundle()
    setter(bundle, good())
    assert http_gateway.provide(bundle).status_code == 200


@pytest.mark.parametrize("field, hostile", HTTP_CASES)
def test_iti65_refuses_the_hostile_value_naming_the_field(http_gateway, field, hostile):
    setter, good, expression = HTTP_FIELDS[field]
    bundle = one_document_bundle()
    setter(bundle, _spoiled(hostile, good()))
    before = row_counts(http_gateway.runtime)
    response = http_gateway.provide(bundle)
    assert (response.status_code, response.json()["resourceType"]) == (422, "OperationOutcome"), response.text
    assert expression in [e for issue in response.json()["issue"] for e in issue.get("expression", [])], response.text
    assert row_counts(http_gateway.runtime) == before


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_iti104_refuses_a_hostile_local_patient_id_and_creates_no_patient(http_gateway, hostile):
    local_id = HOSTILE[hostile]("L-0042")
    body = patient_feed(spid="761337610499999991", local_system=LOCAL_SYSTEM, local_id=local_id, family="Muster",
                        given="Anna", birth_date="1980-05-17", gender="female")
    before = row_counts(http_gateway.runtime)
    response = http_gateway.client.put("/fhir/Patient", params={"identifier": f"{LOCAL_SYSTEM}|{local_id}"},
                                       content=orjson.dumps(body), headers=http_gateway.as_hcp())
    assert (response.status_code, response.json()["resourceType"]) == (400, "OperationOutcome"), response.text
    assert row_counts(http_gateway.runtime) == before


# -- over MLLP -------------------------------------------------------------------------------------
CONTROL_IDS = control_ids("H")
# field → (message with the value in that field, good value, ERR-2 location)
MLLP_FIELDS = {
    "TXA-12 (uniqueId)": (lambda v: mdm_with(control_id=next(CONTROL_IDS), unique_id=v), good_unique_id, "TXA^1^12"),
    "TXA-13 (parent uniqueId, T10)": (lambda v: mdm_with(control_id=next(CONTROL_IDS), unique_id=good_unique_id(),
                                                         parent=v, trigger="T10"), good_unique_id, "TXA^1^13"),
    "PID-3 (local patient id, MDM)": (lambda v: mdm_with(control_id=next(CONTROL_IDS), unique_id=good_unique_id(),
                                                         local_id=v), lambda: "L-1", "PID^1^3^1"),
    "TXA-9 (author GLN)": (lambda v: mdm_with(control_id=next(CONTROL_IDS), unique_id=good_unique_id(), author=v),
                           lambda: HCP_GLN, "TXA^1^9^1"),
    "PID-3 (local patient id, A08)": (lambda v: a08_with(control_id=next(CONTROL_IDS), local_id=v), lambda: "L-1",
                                      "PID^1^3^1"),
    "MRG-1 (retired local id, A40)": (lambda v: a40_with(control_id=next(CONTROL_IDS), retired=v), lambda: "L-77",
                                      "MRG^1^1^1"),
}
MLLP_CASES = [(field, hostile) for field in MLLP_FIELDS for hostile in HOSTILE] + [
    ("TXA-9 (author GLN)", "bad check digit")]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """On SQLite only: one module-scoped gateway on the shared PostgreSQL at a time (the HTTP one)."""
    tmp_path = tmp_path_factory.mktemp("mllp")
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            yield gateway, address


@pytest.mark.parametrize("field", ["TXA-12 (uniqueId)", "PID-3 (local patient id, MDM)", "TXA-9 (author GLN)",
                                   "PID-3 (local patient id, A08)"])
def test_mllp_control_row_is_accepted(bridge, field):
    gateway, address = bridge
    message, good, _ = MLLP_FIELDS[field]
    assert send(address, message(good()))[0] == "AA"


@pytest.mark.parametrize("field, hostile", MLLP_CASES)
def test_mllp_answers_ae_naming_the_field_and_stores_nothing(bridge, field, hostile):
    gateway, address = bridge
    message, good, location = MLLP_FIELDS[field]
    before = document_rows(gateway)
    assert send(address, message(_spoiled(hostile, good()))) == ("AE", location, "102")
    assert document_rows(gateway) == before


# -- through an XDM migration ----------------------------------------------------------------------
# field → (keyword of xdm_package, good value, the start of the rejection's reason)
XDM_FIELDS = {
    "XDSDocumentEntry.uniqueId": ("unique_id", lambda: f"2.25.{uuid.uuid4().int}", "XDSDocumentEntry.uniqueId:"),
    "ExtrinsicObject id (entryUUID)": ("entry_uuid", good_uuid, "ExtrinsicObject id"),
    "XDSSubmissionSet.uniqueId": ("set_unique_id", lambda: f"2.25.{uuid.uuid4().int}", "XDSSubmissionSet.uniqueId:"),
    "XDSSubmissionSet.sourceId": ("source_id", lambda: "2.16.756.5.30.1.145", "XDSSubmissionSet.sourceId:"),
    "sourcePatientId (local patient id)": ("local_id", lambda: "L-1", "sourcePatientId:"),
    "authorPerson (GLN)": ("author", lambda: HCP_GLN, "authorPerson:"),
}
XDM_CASES = [(field, hostile) for field in XDM_FIELDS for hostile in HOSTILE if hostile != "nul"] + [
    ("authorPerson (GLN)", "bad check digit")]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """One migration run over one package per (field, hostile value) and one control package per field."""
    tmp_path = tmp_path_factory.mktemp("xdm")
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        gateway.register_patient()
        media, sources = [], {}
        cases = [(field, "control") for field in XDM_FIELDS] + XDM_CASES + [("XDSDocumentEntry.uniqueId", "nul")]
        for n, (field, hostile) in enumerate(cases):
            keyword, good, _ = XDM_FIELDS[field]
            value = good() if hostile == "control" else _spoiled(hostile, good())
            directory = tmp_path / "export" / f"media-{n:03d}"
            sources[field, hostile] = xdm_package(directory, **{keyword: value})
            media.append(directory)
        before = document_rows(gateway)
        report = migrate(gateway.runtime, media)
        yield report, sources, before, document_rows(gateway)


@pytest.mark.parametrize("field", sorted(XDM_FIELDS))
def test_xdm_control_row_is_migrated(migrated, field):
    report, sources, _, _ = migrated
    assert report[sources[field, "control"]]["outcome"] == "migrated", report[sources[field, "control"]]


@pytest.mark.parametrize("field, hostile", XDM_CASES)
def test_xdm_rejects_the_document_naming_the_field(migrated, field, hostile):
    report, sources, _, _ = migrated
    entry = report[sources[field, hostile]]
    assert (entry["outcome"], entry["reason"].startswith(XDM_FIELDS[field][2])) == ("rejected", True), entry


def test_xdm_a_nul_is_no_xml_character_so_its_metadata_is_refused_whole(migrated):
    report, sources, _, _ = migrated
    metadata = sources["XDSDocumentEntry.uniqueId", "nul"].replace("DOC00001.PDF", "METADATA.XML")
    assert (report[metadata]["outcome"], "not well-formed" in report[metadata]["reason"]) == ("rejected", True)


def test_xdm_stores_the_control_documents_only(migrated):
    _, _, before, after = migrated
    assert after["document_entry"] - before["document_entry"] == len(XDM_FIELDS)
