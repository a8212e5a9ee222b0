"""A document whose metadata was changed (CH:MHD-1, version 2) can be named, read and verified again on
every path (issue 22 item 4).

Before: the paths that read the current metadata opened it with the first version's binding, so after
a patient's relabel, a professional's edit or a DADM deletion an ITI-65 naming the document answered
500 "failed an integrity check", an HL7 T10 replacing it was answered "try again" forever, an XDM RPLC
to it was held, `migrate verify` stopped with a traceback, and each logged a false tamper alarm. Now
every reader opens an entry with its recorded version, and a deleted target answers exactly like a
target that does not exist (no existence oracle), whatever the face.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

import orjson
import pytest

from adapters.infomed.generate import metadata as md
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from conftest import HCP_GLN, LOCAL_SYSTEM, SPID, running_gateway
from functional.helpers import document_ids, row_counts
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file
from gateway.exchanges.imports import ImportExchange
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle

CODES = ("replaces", "appends", "transforms", "signs")
KINDS = ("relabel", "edit", "delete")
DELETION_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.18"
EXT_DELETION = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-ext-deletionstatus"
REQUESTED = "urn:e-health-suisse:2019:deletionStatus:deletionRequested"
RESTRICTED = {"system": "http://snomed.info/sct", "code": "263856008", "display": "Restricted (qualifier value)"}
SECRET = {"system": "http://snomed.info/sct", "code": "1141000195107", "display": "Secret (qualifier value)"}


@pytest.fixture
def record(tmp_path, database_url, caplog):
    """The gateway (with the MLLP senders file) and the test patient, who grants the HCP restricted."""
    caplog.set_level(logging.ERROR)
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient(grant_hcp="restricted")
        yield gateway


def no_alarm(caplog) -> list[str]:
    """What was logged at ERROR or above (a failed decryption is logged as an integrity failure)."""
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def reader(gateway, entry_id: str, headers: dict) -> dict:
    response = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def version_two(gateway, entry_id: str, kind: str, *, level: dict = RESTRICTED) -> None:
    """CH:MHD-1 over FHIR: the patient relabels the document `level`, the HCP edits its description, or
    the document administrator deletes it."""
    patient = gateway.tokens.headers(gateway.tokens.patient())
    document = reader(gateway, entry_id, patient)
    headers = patient
    if kind == "relabel":
        document["securityLabel"] = [{"coding": [level]}]
    elif kind == "edit":
        document["description"] = "Corrected after the ward round"
        headers = gateway.as_hcp()
    else:
        document["extension"].append({"url": EXT_DELETION, "valueCoding": {"system": DELETION_SYSTEM,
                                                                           "code": REQUESTED}})
        headers = gateway.tokens.headers(gateway.tokens.mint(role="DADM", user_id="dadm-1", name="Administrator"))
    response = gateway.client.put(f"/fhir/DocumentReference/{entry_id}", content=orjson.dumps(document),
                                  headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2"


def provided(gateway, *, title: str, author_role: str = "HCP", headers: dict | None = None) -> tuple[str, str]:
    unique_id = new_oid_unique_id()
    response = gateway.provide(provide_bundle(spid=SPID, author_role=author_role, documents=[
        {"title": title, "unique_id": unique_id, "content": pdf_document(title, [unique_id])}]), headers=headers)
    assert response.status_code == 200, response.text
    return document_ids(response.json())[0], unique_id


def naming(target: dict, code: str, *, author_role: str = "HCP") -> dict:
    """A one-document Bundle whose DocumentReference names `target` ({"id": …} or {"uniqueId": …})."""
    bundle = provide_bundle(spid=SPID, author_role=author_role, documents=[
        {"title": "Follow-up", "content": pdf_document("Follow-up", [str(uuid.uuid4())])}])
    reference = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    named = ({"reference": f"DocumentReference/{target['id']}"} if "id" in target
             else {"identifier": {"system": "urn:ietf:rfc:3986", "value": target["uniqueId"]}})
    reference["relatesTo"] = [{"code": code, "target": named}]
    return bundle


def answer(response, key: str) -> tuple[int, str]:
    return response.status_code, response.text.replace(key, "KEY")


# -- ITI-65 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("kind", KINDS)
def test_iti65_names_a_document_after_its_version_two(record, caplog, kind, code):
    gateway = record
    by_id, by_unique_id = provided(gateway, title="By id"), provided(gateway, title="By uniqueId")
    for entry_id, _ in (by_id, by_unique_id):
        version_two(gateway, entry_id, kind)
    counts = row_counts(gateway.runtime)
    unknown = {answer(gateway.provide(naming({"id": "no-such-document"}, code)), "no-such-document"),
               answer(gateway.provide(naming({"uniqueId": "urn:oid:2.25.42"}, code)), "urn:oid:2.25.42")}

    first = gateway.provide(naming({"id": by_id[0]}, code))
    second = gateway.provide(naming({"uniqueId": by_unique_id[1]}, code))

    if kind == "delete":  # a deleted target is answered exactly like one that does not exist
        assert {answer(first, by_id[0]), answer(second, by_unique_id[1])} == unknown
        assert {status for status, _ in unknown} == {422}
        assert row_counts(gateway.runtime) == counts
    else:
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        status = "superseded" if code == "replaces" else "current"
        for (entry_id, _), response in ((by_id, first), (by_unique_id, second)):
            target = reader(gateway, entry_id, gateway.as_hcp())
            assert (target["status"], target["meta"]["versionId"]) == (status, "2")
            new = reader(gateway, document_ids(response.json())[0], gateway.as_hcp())
            assert new["relatesTo"] == [{"code": code, "target": {"reference": f"DocumentReference/{entry_id}"}}]
    assert no_alarm(caplog) == []


@pytest.mark.parametrize("code", CODES)
def test_a_relabelled_document_the_submitter_may_no_longer_read_answers_like_an_unknown_one(record, caplog, code):
    """The patient's own upload, relabelled secret: the HCP (restricted grant) is decided on version 2."""
    gateway = record
    patient = gateway.tokens.headers(gateway.tokens.patient())
    entry_id, unique_id = provided(gateway, title="Own note", author_role="PAT", headers=patient)
    version_two(gateway, entry_id, "relabel", level=SECRET)
    counts = row_counts(gateway.runtime)
    unknown = answer(gateway.provide(naming({"uniqueId": "urn:oid:2.25.43"}, code)), "urn:oid:2.25.43")

    named = {answer(gateway.provide(naming({"id": entry_id}, code)), entry_id),
             answer(gateway.provide(naming({"uniqueId": unique_id}, code)), unique_id)}

    assert named == {unknown} and unknown[0] == 422
    assert row_counts(gateway.runtime) == counts
    assert no_alarm(caplog) == []


@pytest.mark.parametrize("kind", KINDS)
def test_reads_and_searches_serve_version_two(record, kind):
    gateway = record
    entry_id, unique_id = provided(gateway, title="Letter")
    content = pdf_document("Letter", [unique_id])
    version_two(gateway, entry_id, kind)
    hcp = gateway.as_hcp()

    found = gateway.find().json().get("entry", [])
    read = gateway.client.get(f"/fhir/DocumentReference/{entry_id}", headers=hcp)
    binary = gateway.client.get(f"/fhir/Binary/{entry_id}", headers=hcp)

    if kind == "delete":
        assert (found, read.status_code, binary.status_code) == ([], 410, 404)
    else:
        assert [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in found] == [(entry_id, "2")]
        assert read.json() == found[0]["resource"]
        assert (binary.status_code, binary.content) == (200, content)


# -- HL7 v2 over MLLP -----------------------------------------------------------------------------

def ack_answer(ack: bytes, key: str) -> tuple:
    """What an ACK answers, without what differs between two messages (MSH, control id): the MSA code
    and text and the ERR segment, with the named document as KEY."""
    fields = ack_fields(ack.replace(key.encode(), b"KEY"))
    return fields["MSA"][1], fields["MSA"][3:], fields.get("ERR")


@pytest.mark.parametrize("trigger, code", [("T10", "replaces"), ("T06", "appends")])
@pytest.mark.parametrize("kind", KINDS)
def test_an_hl7_message_names_the_senders_document_after_its_version_two(record, caplog, kind, trigger, code):
    gateway = record
    with running_listener(gateway.runtime) as address:
        client = MllpClient(address)
        original = new_oid_unique_id()
        assert ack_fields(client.send(mdm(control_id="V1", unique_id=original).encode()))["MSA"][1] == "AA"
        entry_id = gateway.find().json()["entry"][0]["resource"]["id"]
        version_two(gateway, entry_id, kind, level=SECRET)  # the sender's own document: still its own
        unknown = ack_answer(client.send(mdm(control_id="V2", unique_id=new_oid_unique_id(), trigger=trigger,
                                             parent="urn:oid:2.25.44").encode()), "urn:oid:2.25.44")
        follow_up = new_oid_unique_id()
        ack = client.send(mdm(control_id="V3", unique_id=follow_up, trigger=trigger, parent=original,
                              content=b"%PDF-1.4 v2").encode())
        again = client.send(mdm(control_id="V4", unique_id=follow_up, trigger=trigger, parent=original,
                                content=b"%PDF-1.4 v2").encode())
        client.close()

    if kind == "delete":
        assert ack_answer(ack, original) == ack_answer(again, original) == unknown
        assert unknown[0] == "AE"
    else:
        assert (ack_fields(ack)["MSA"][1], ack_fields(again)["MSA"][1]) == ("AA", "AA")
        patient = gateway.tokens.headers(gateway.tokens.patient())
        target = reader(gateway, entry_id, patient)
        assert (target["status"], target["meta"]["versionId"]) == (
            "superseded" if code == "replaces" else "current", "2")
    assert no_alarm(caplog) == []


# -- the XDM migration ----------------------------------------------------------------------------

def xdm_media(path: Path, documents: list[dict]) -> Path:
    """A directory media with one package: each document {entry_uuid, unique_id, content, relation?}
    for the test patient (L-1 in LOCAL_SYSTEM), coded as the Infomed tables know."""
    authority = LOCAL_SYSTEM.removeprefix("urn:oid:")
    cx = f"L-1^^^&{authority}&ISO"
    set_id = f"urn:uuid:{uuid.uuid4()}"
    body, associations = [], []
    for n, document in enumerate(documents, start=1):
        content = document["content"]
        slots = [("creationTime", ["20230301093000"]), ("languageCode", ["fr-CH"]),
                 ("hash", [hashlib.sha1(content).hexdigest()]), ("size", [str(len(content))]),
                 ("URI", [f"DOC{n:05d}.PDF"]), ("sourcePatientId", [cx]),
                 ("sourcePatientInfo", [f"PID-3|{cx}", "PID-5|Muster^Anna^^^", "PID-7|19800517", "PID-8|F"])]
        codes = [(ebrim.CLASS_CODE, "ARZTBERICHT", "2.16.756.5.30.1.127.3.10.1.1", "Bericht"),
                 (ebrim.TYPE_CODE, "AUSTRITT", "2.16.756.5.30.1.127.3.10.1.2", "Austrittsbericht"),
                 (ebrim.FORMAT_CODE, "urn:che:epr:EPR_Unstructured_Document", "2.16.756.5.30.1.127.3.10.10",
                  "Unstructured"),
                 (ebrim.CONFIDENTIALITY_CODE, "17621005", md.SNOMED_OID, "Normal"),
                 (ebrim.FACILITY_TYPE_CODE, "22232009", md.SNOMED_OID, "Hospital"),
                 (ebrim.PRACTICE_SETTING_CODE, "ALLGEMEIN", "2.16.756.5.30.1.127.3.10.1.18", "Allgemeinmedizin")]
        body.append(md.extrinsic_object({
            "id": document["entry_uuid"], "mime": "application/pdf", "title": f"Rapport {n}", "slots": slots,
            "codes": codes, "author": (f"{HCP_GLN}^Favre^Luc^^^Dr.^^^&2.51.1.3&ISO", "HCP"),
            "unique_id": document["unique_id"], "patient_cx": cx}))
        associations.append(md.association(n, ebrim.HAS_MEMBER, set_id, document["entry_uuid"]))
        if document.get("relation"):
            kind, target = document["relation"]
            associations.append(md.association(100 + n, kind, document["entry_uuid"], target))
        (path / "IHE_XDM" / "SUBSET01").mkdir(parents=True, exist_ok=True)
        (path / "IHE_XDM" / "SUBSET01" / f"DOC{n:05d}.PDF").write_bytes(content)
    xml = md.document(md.submission_set(set_id, new_oid_unique_id(), "urn:oid:2.16.756.5.30.1.145.1", cx,
                                        "20240301101500") + "".join(body) + "".join(associations))
    (path / "IHE_XDM" / "SUBSET01" / "METADATA.XML").write_bytes(xml)
    return path


def migrate(runtime, sources: list[Path]) -> dict[str, object]:
    """source → its journal row after a migration of `sources` (the job as `epr-gateway migrate` runs it)."""
    services = runtime.services
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=journal, tables=CodeTables.load([]), principal=migration_principal(HCP_GLN),
                       batch=4, workers=0)
    job.run(sources)
    return journal.rows_for(s.name for s in sources)


@pytest.mark.parametrize("kind", KINDS)
def test_an_xdm_replacement_and_migrate_verify_after_version_two(record, caplog, tmp_path, kind):
    gateway = record
    services = gateway.services
    first = {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
             "content": pdf_document("Rapport", ["first"])}
    [row] = migrate(gateway.runtime, [xdm_media(tmp_path / "media-1", [first])]).values()
    assert row.outcome == "migrated", row.reason
    version_two(gateway, row.entry_id, kind)

    # `migrate verify`: the migrated bytes against the record, through the same use-case
    imports = ImportExchange(exchange=services.exchange)
    verified = imports.compare_content(principal=migration_principal(HCP_GLN), unique_id=first["unique_id"],
                                       content=first["content"])
    replacement = {"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
                   "content": pdf_document("Rapport", ["second"]), "relation": (ebrim.RPLC, first["entry_uuid"])}
    [second] = migrate(gateway.runtime, [xdm_media(tmp_path / "media-2", [replacement])]).values()

    assert verified is None  # the same bytes
    if kind == "delete":  # the store's answer for a target that is not a document of this patient
        assert (second.outcome, second.reason_code) == ("held", "relation-target")
        assert second.reason == f"relatesTo target {first['unique_id']} is not a document of this patient"
    else:
        assert second.outcome == "migrated", second.reason
        patient = gateway.tokens.headers(gateway.tokens.patient())
        target = reader(gateway, row.entry_id, patient)
        assert (target["status"], target["meta"]["versionId"]) == ("superseded", "2")
    assert no_alarm(caplog) == []


def test_an_unknown_and_a_deleted_target_are_the_same_answer_on_every_face(record):
    """The same store answer on ITI-65 (relatesTo by uniqueId) and at the model level (what HL7 v2 and
    XDM reach through `provide_submission`/`provide_many`): one error class, one text."""
    from adapters.cara import fhir_mapping
    from consent.principal import Principal

    gateway = record
    entry_id, unique_id = provided(gateway, title="Deleted")
    version_two(gateway, entry_id, "delete")
    hcp = Principal(role="HCP", user_id=HCP_GLN, name="Dr. Luc Favre")
    errors = []
    for key in (unique_id, "urn:oid:2.25.45"):
        submission = fhir_mapping.submission_from_bundle(naming({"uniqueId": key}, "appends"))
        [outcome] = gateway.services.exchange.provide_many(principal=hcp, submissions=[submission])
        errors.append((type(outcome.error), outcome.error.message.replace(key, "KEY"),
                       [i.location for i in outcome.error.issues]))
    assert errors[0] == errors[1]
    assert errors[0][2] == ["DocumentReference.relatesTo.target"]


def test_a_version_two_written_while_merged_keeps_the_documents_own_patient(record):
    """A document's patient is its own (never rewritten by a merge): a version written while its patient
    is merged into another keeps it, so after the unmerge the document is its own patient's again.
    Before, the update sealed the survivor's MPI-PID into version 2: after the unmerge its own patient
    no longer found it by id (404), and to the HCP it was the other patient's document."""
    from conftest import OTHER_SPID

    gateway = record
    survivor = gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Paul",
                                        grant_hcp="restricted")["id"]
    own = gateway.services.exchange.patients.pid_for_spid(SPID)
    patient = gateway.tokens.headers(gateway.tokens.patient())
    entry_id, _ = provided(gateway, title="Letter")
    admin = gateway.tokens.headers(gateway.tokens.mint(role="DADM", user_id="dadm-1", name="Admin"))

    def link(operation: str) -> None:
        body = orjson.dumps({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": f"Patient/{own}"}},
            {"name": "target-patient", "valueReference": {"reference": f"Patient/{survivor}"}}]})
        response = gateway.client.post(f"/fhir/Patient/${operation}", content=body, headers=admin)
        assert response.status_code == 200, response.text

    link("merge")
    version_two(gateway, entry_id, "edit")  # the HCP, granted by both patients
    link("unmerge")

    for headers in (patient, gateway.as_hcp()):
        document = reader(gateway, entry_id, headers)
        assert (document["meta"]["versionId"], document["subject"]["identifier"]["value"]) == ("2", SPID)
    assert gateway.services.exchange.documents.get_entry(entry_id).patient_pid == own
