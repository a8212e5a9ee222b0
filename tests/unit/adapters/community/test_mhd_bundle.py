"""The ITI-65 Bundle the MHD transport builds from the record's model: valid FHIR R4 (fhir.resources R4B),
within the project's CH MHD rules, read back by the recipient's own mapping to the same metadata, stable
across attempts but for the attempt's confidentiality, and a replacement naming its original as the
recipient knows it. Also from the official CH EPR provide example, mapped in and built out again."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import replace

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.cara.mhd_rules import check_provide_bundle
from adapters.cara.model import Identifier, Relation
from adapters.cara.vocabulary import EXT_AUTHOR_ROLE, PROFILE_DOCREF
from adapters.community.ebrim import Demographics, MetadataNotSendable, OutgoingDocument, OutgoingRelation
from adapters.community.mhd_bundle import MhdSubmission, build_bundle, provide_bundle
from official_examples import FIXTURES, require_examples
from unit.adapters.community.community_fixtures import (
    CONTENT,
    ENTRY_UUID,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    SPID,
    document,
    outgoing,
    submission_set,
)

WHEN = dt.datetime(2024, 5, 2, 12, 31, tzinfo=dt.UTC)
OTHER_UUID = "urn:uuid:6c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"


def submission(*documents: OutgoingDocument, confidentiality: str = "normal", **changes) -> MhdSubmission:
    values = dict(spid=SPID, submission_set_unique_id=SET_UNIQUE_ID, submission_set_entry_uuid=SET_ENTRY_UUID,
                  source_id="2.16.756.5.30.1.145.20.1", submission_time=WHEN, title="Austritt Zeller",
                  documents=documents or (outgoing(),), confidentiality=confidentiality,
                  demographics=Demographics("Zeller-Robert-Nicoud", ("Romain",), "1984-03-08", "male"))
    values.update(changes)
    return MhdSubmission(**values)


def built(*documents, **changes) -> dict:
    return orjson.loads(build_bundle(submission(*documents, **changes)))


def test_the_bundle_is_valid_r4_within_the_ch_mhd_rules_and_reads_back_to_the_same_metadata():
    bundle = built()
    sent = document()

    Bundle.model_validate(bundle)
    assert check_provide_bundle(bundle) == []
    received = submission_from_bundle(bundle)  # what the recipient gateway maps it to
    [got] = received.documents
    assert received.spid == SPID
    assert received.submission_set.unique_id == f"urn:oid:{SET_UNIQUE_ID}"
    assert received.submission_set.entry_uuid == SET_ENTRY_UUID
    assert received.submission_set.source_id == "urn:oid:2.16.756.5.30.1.145.20.1"
    assert received.submission_set.submission_time == "2024-05-02T12:31:00+00:00"
    assert received.submission_set.title == "Austritt Zeller"
    assert got.content == CONTENT
    # The recipient's mapping keeps an author's PractitionerRole and Practitioner (not the Organization
    # the role names): the authors are compared as sent, in the Bundle, below.
    expected = replace(sent.entry, entry_id=got.entry.entry_id, submission_set_id=got.entry.submission_set_id,
                       entry_uuid=ENTRY_UUID, original_provider_role=got.entry.original_provider_role,
                       authors=got.entry.authors)
    assert got.entry == expected
    resource = bundle["entry"][1]["resource"]
    assert resource["contained"] == [sent.entry.source_patient, *sent.entry.authors[0].resource["contained"]]
    assert resource["author"] == [{"reference": "#role"}]
    assert got.entry.original_provider_role.code == "TCU"  # the token's role: the recipient sets it from the token
    assert got.relations == ()


def test_every_attempt_is_the_same_bundle_but_for_the_confidentiality():
    normal, secret = built(confidentiality="normal"), built(confidentiality="secret")

    def labels(bundle):
        return [e["resource"].pop("securityLabel") for e in bundle["entry"] if "securityLabel" in e["resource"]]

    assert labels(normal) == [[{"coding": [{"system": "http://snomed.info/sct", "code": "17621005",
                                            "display": "Normal (qualifier value)"}]}]]
    assert labels(secret) == [[{"coding": [{"system": "http://snomed.info/sct", "code": "1141000195107",
                                            "display": "Secret (qualifier value)"}]}]]
    assert normal == secret
    assert build_bundle(submission()) == build_bundle(submission())


def test_a_replacement_names_its_original_by_the_recipients_reference_else_by_its_entry_uuid():
    by_reference = OutgoingDocument(document(unique_id="urn:oid:2.25.7"), OTHER_UUID,
                                    (OutgoingRelation("replaces", ENTRY_UUID, "DocumentReference/0190c6f2-aa"),))
    by_uuid = OutgoingDocument(document(unique_id="urn:oid:2.25.8"), OTHER_UUID, (OutgoingRelation("replaces", ENTRY_UUID),))

    first, second = built(by_reference), built(by_uuid)

    assert first["entry"][1]["resource"]["relatesTo"] == [
        {"code": "replaces", "target": {"reference": "DocumentReference/0190c6f2-aa"}}]
    assert second["entry"][1]["resource"]["relatesTo"] == [
        {"code": "replaces", "target": {"identifier": {"system": "urn:ietf:rfc:3986", "value": ENTRY_UUID}}}]
    [relation] = submission_from_bundle(first).documents[0].relations
    assert (relation.code, relation.target_entry_id) == ("replaces", "0190c6f2-aa")
    Bundle.model_validate(second)


def test_relations_at_home_do_not_travel_only_those_the_request_names():
    stored = document()
    stored.entry.relations.append(Relation("replaces", "local-id"))
    bundle = built(OutgoingDocument(stored, ENTRY_UUID))

    assert "relatesTo" not in bundle["entry"][1]["resource"]


def test_two_documents_are_listed_each_with_its_binary_in_order():
    one = outgoing(document(unique_id="urn:oid:2.25.11", content=b"%PDF-1.4 one"))
    two = outgoing(document(unique_id="urn:oid:2.25.12", content=b"%PDF-1.4 two"), entry_uuid=OTHER_UUID)

    bundle = orjson.loads(build_bundle(submission(one, two)))

    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["List", "DocumentReference", "Binary", "DocumentReference", "Binary"]
    assert [i["item"]["reference"] for i in bundle["entry"][0]["resource"]["entry"]] == [
        bundle["entry"][1]["fullUrl"], bundle["entry"][3]["fullUrl"]]
    assert [base64.b64decode(bundle["entry"][i]["resource"]["data"]) for i in (2, 4)] == [b"%PDF-1.4 one",
                                                                                        b"%PDF-1.4 two"]
    assert [bundle["entry"][i]["resource"]["content"][0]["attachment"]["hash"] for i in (1, 3)] == [
        base64.b64encode(hashlib.sha1(c).digest()).decode() for c in (b"%PDF-1.4 one", b"%PDF-1.4 two")]
    assert check_provide_bundle(bundle) == []


def test_a_document_without_its_source_patient_gets_one_from_its_local_id_and_the_mpi():
    bare = document(family=None)
    bare = replace(bare, entry=replace(bare.entry, source_patient=None))

    [resource] = [e["resource"] for e in built(outgoing(bare))["entry"] if e["resource"]["resourceType"] == "DocumentReference"]

    [patient] = [c for c in resource["contained"] if c["resourceType"] == "Patient"]
    assert patient == {"resourceType": "Patient", "id": "src",
                       "identifier": [{"use": "usual", "system": "urn:oid:2.16.756.5.30.1.999.2.1", "value": "L-4711"}],
                       "name": [{"family": "Zeller-Robert-Nicoud", "given": ["Romain"]}],
                       "birthDate": "1984-03-08", "gender": "male"}
    assert resource["context"]["sourcePatientInfo"] == {"reference": "#src"}


def test_no_local_patient_id_no_bundle():
    bare = document()
    bare = replace(bare, entry=replace(bare.entry, source_patient=None, source_patient_id=None))

    with pytest.raises(MetadataNotSendable, match="no local patient id"):
        build_bundle(submission(outgoing(bare)))


@pytest.mark.parametrize(("change", "found"), [
    (dict(content=b""), "content"),  # an empty document: no face stores one, none is sent
    (dict(unique_id="2.25.1"), "masterIdentifier"),  # a uniqueId without urn:oid:
])
def test_what_the_recipient_would_refuse_is_refused_here_with_its_finding(change, found):
    with pytest.raises(MetadataNotSendable, match=found):
        build_bundle(submission(outgoing(document(**change))))


def test_a_local_id_that_breaks_its_system_syntax_is_refused_before_sending():
    hostile = document()
    patient = dict(hostile.entry.source_patient, identifier=[{"use": "usual", "system": "urn:oid:2.51.1.3",
                                                              "value": "７６０１０００２３４４３８"}])  # full-width GLN
    hostile = replace(hostile, entry=replace(hostile.entry, source_patient=patient,
                                             source_patient_id=Identifier("urn:oid:2.51.1.3", "x")))

    with pytest.raises(MetadataNotSendable, match="contained"):
        build_bundle(submission(outgoing(hostile)))


def test_no_documents_no_bundle():
    with pytest.raises(MetadataNotSendable, match="without documents"):
        provide_bundle(replace(submission(), documents=()))


def test_the_official_provide_example_mapped_in_is_built_out_with_the_same_metadata():
    folder = require_examples(FIXTURES / "ch-epr-fhir")
    example = json.loads((folder / "Bundle-BundleProvideDocument.json").read_text())
    received = submission_from_bundle(example)
    [new] = received.documents
    sent_entry_uuid = next(x["value"] for x in example["entry"][1]["resource"]["identifier"])

    bundle = built(OutgoingDocument(new, sent_entry_uuid), spid=received.spid,
                   submission_set_unique_id=received.submission_set.unique_id, title=None,
                   source_id=received.submission_set.source_id, demographics=Demographics())

    Bundle.model_validate(bundle)
    ours, theirs = bundle["entry"][1]["resource"], example["entry"][1]["resource"]
    for element in ("masterIdentifier", "identifier", "status", "type", "category", "subject", "date", "description",
                    "securityLabel", "contained", "context"):
        assert ours[element] == theirs[element], element
    assert ours["meta"] == {"profile": [PROFILE_DOCREF]}
    assert ours["extension"] == [{"url": EXT_AUTHOR_ROLE, "valueCoding": {
        "system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "TCU", "display": "Technical user"}}]
    assert {k: v for k, v in ours["content"][0]["attachment"].items() if k not in ("url", "size", "hash")} == {
        k: v for k, v in theirs["content"][0]["attachment"].items() if k != "url"}
    assert base64.b64decode(bundle["entry"][2]["resource"]["data"]) == base64.b64decode(example["entry"][2]["resource"]["data"])
    ours_list, theirs_list = bundle["entry"][0]["resource"], example["entry"][0]["resource"]
    for element in ("status", "mode", "code", "subject"):
        assert ours_list[element] == theirs_list[element], element
    assert ours_list["identifier"][0] == theirs_list["identifier"][0]
