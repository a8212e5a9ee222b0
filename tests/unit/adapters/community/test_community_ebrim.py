"""The record's model → ebRIM (ITI-41) and back through the XDM reader: one table, both ways.

The writer's output is read by the XDM reader (`adapters/infomed/xdm`: its hardened parse and its
mapping), its codes through the table's inverse (`xds_table.code_from_xds`): every value the reader
reads comes back as the model had it. What the reader does not read (the institution, roles, the
MPI-PID, originalProviderRole) is checked on the parsed ebRIM values. Every request is validated
against the IHE XDS.b / ebRS 3.0 XSDs."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from lxml import etree

from adapters.cara.dates import value_range
from adapters.cara.model import Code, Identifier
from adapters.community import hl7_types
from adapters.community.authors import ResponsibleProfessional
from adapters.community.ebrim import (
    LCM,
    Demographics,
    MetadataNotSendable,
    OutgoingSubmission,
    Repository,
    provide_and_register,
)
from adapters.community.xds_table import (
    CODING_SCHEMES,
    NoCodingScheme,
    code_from_xds,
    coding_scheme,
    document_unique_id,
    submission_set_unique_id,
    unique_id_from_xds,
)
from adapters.infomed.xdm import ebrim as xdm_ebrim
from adapters.infomed.xdm.mapping import map_document
from unit.adapters.community.community_fixtures import (
    CONTENT,
    ENTRY_UUID,
    INSTITUTION_OID,
    LOCAL_OID,
    MPI_OID,
    MPI_PID,
    PRINCIPAL_GLN,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    SNOMED,
    SPID,
    document,
    outgoing,
    provide_and_register_schema,
    submission_set,
)

REPOSITORY = Repository("2.16.756.5.30.1.177.2.2.1.1.2", MPI_OID, "2.16.756.5.30.1.145.20.1")
RESPONSIBLE = ResponsibleProfessional(PRINCIPAL_GLN, "Verantwortlich", "Hôpital du Valais", INSTITUTION_OID)
SUBMITTED = dt.datetime(2024, 5, 2, 12, 31, 5, tzinfo=dt.UTC)
SWISS_EXTENSION = "2.16.756.5.30.1.127.3.4"


class SharedTable:
    """The XDM reader's code-table interface answered by the writer's table (its inverse)."""

    def map(self, slot: str, coding_scheme_oid: str | None, code: str) -> Code:
        return code_from_xds(coding_scheme_oid, code)


def submission(*documents, confidentiality="normal", demographics=Demographics(), **changes) -> OutgoingSubmission:
    values = dict(submission_set=submission_set(), submission_set_unique_id=SET_UNIQUE_ID,
                  submission_set_entry_uuid=SET_ENTRY_UUID,
                  documents=tuple(replace(d, content_id=f"part{i}@test") for i, d in enumerate(documents or [outgoing()])),
                  mpi_pid=MPI_PID, confidentiality=confidentiality, submission_time=SUBMITTED,
                  responsible=RESPONSIBLE, demographics=demographics)
    values.update(changes)
    return OutgoingSubmission(**values)


def written(sub: OutgoingSubmission) -> bytes:
    request = etree.fromstring(provide_and_register(sub, REPOSITORY))
    schema = provide_and_register_schema()
    for include in request.iter("{http://www.w3.org/2004/08/xop/include}Include"):  # the XOP infoset
        parent = include.getparent()
        parent.remove(include)
        parent.text = "AAAA"
    assert schema.validate(request), schema.error_log
    return etree.tostring(request.find(f"{{{LCM}}}SubmitObjectsRequest"))


def instant(value: str):
    return value_range(value)[0]


def read_back(sub: OutgoingSubmission):
    metadata = xdm_ebrim.parse_metadata(written(sub))
    mapped = [map_document(obj, metadata.submission_set, metadata.associations, d.document.content, SharedTable())
              for obj, d in zip(metadata.documents, sub.documents, strict=True)]
    return metadata, mapped


def test_the_xdm_reader_reads_back_what_the_model_had():
    doc = document()
    metadata, (mapped,) = read_back(submission(outgoing(doc)))
    model, back = doc.entry, mapped.document.entry
    assert (unique_id_from_xds(mapped.unique_id), mapped.entry_uuid) == (model.unique_id, ENTRY_UUID)
    assert mapped.patient_id == model.source_patient_id == Identifier(f"urn:oid:{LOCAL_OID}", "L-4711")
    assert (mapped.demographics.family, mapped.demographics.given, mapped.demographics.birth_date,
            mapped.demographics.gender) == ("Zeller-Robert-Nicoud", ("Romain Théophile",), "1984-03-08", "male")
    codes = ("type_code", "format_code", "facility_type", "practice_setting")
    assert [(getattr(back, f).system, getattr(back, f).code) for f in codes] == [
        (getattr(model, f).system, getattr(model, f).code) for f in codes]
    for many in ("class_codes", "confidentiality", "event_codes"):
        assert [(c.system, c.code) for c in getattr(back, many)] == [(c.system, c.code) for c in getattr(model, many)]
    assert (back.mime_type, back.language, back.title, back.description, back.size, back.sha1) == (
        model.mime_type, model.language, model.title, model.description, model.size, model.sha1)
    for moment in ("creation_time", "service_start", "service_stop"):
        assert instant(getattr(back, moment)) == instant(getattr(model, moment))
    assert back.service_start == "2024-04-20"  # a date stays a date
    (author,) = back.authors
    practitioner = author.resource["contained"][0]
    assert (practitioner["identifier"], author.family, author.given) == (
        [{"system": "urn:oid:2.51.1.3", "value": "7601000234438"}], ("Muster",), ("Hans",))
    assert instant(mapped.submission_set.submission_time) == SUBMITTED.replace(tzinfo=None)
    assert mapped.submission_set.source_id == f"urn:oid:{REPOSITORY.source_id}"  # the reader writes OIDs as URNs
    assert mapped.relation_targets == ()
    # The displays travel as the classifications' names.
    (obj,) = metadata.documents
    assert [c.display for c in obj.codes(xdm_ebrim.TYPE_CODE)] == ["Discharge summary"]


def test_what_the_reader_does_not_map_is_written_as_the_community_requires():
    metadata = xdm_ebrim.parse_metadata(written(submission()))
    (obj,) = metadata.documents
    mpi_cx = f"{MPI_PID}^^^&{MPI_OID}&ISO"
    assert obj.external_ids[xdm_ebrim.DOCUMENT_PATIENT_ID] == mpi_cx
    assert metadata.submission_set.external_ids[xdm_ebrim.SUBMISSION_PATIENT_ID] == mpi_cx
    assert metadata.submission_set.external_ids[xdm_ebrim.SUBMISSION_UNIQUE_ID] == SET_UNIQUE_ID
    assert obj.slots["sourcePatientId"] == [f"L-4711^^^&{LOCAL_OID}&ISO"]
    assert obj.slots["sourcePatientInfo"] == [f"PID-3|L-4711^^^&{LOCAL_OID}&ISO",
                                              "PID-5|Zeller-Robert-Nicoud^Romain Théophile", "PID-7|19840308", "PID-8|M"]
    assert obj.slots["repositoryUniqueId"] == [REPOSITORY.repository_unique_id]
    assert obj.slots["urn:e-health-suisse:2020:originalProviderRole"] == ["TCU^^^&2.16.756.5.30.1.127.3.10.6&ISO"]
    assert (obj.slots["hash"], obj.slots["size"]) == ([document().entry.sha1], [str(len(CONTENT))])
    (author,) = obj.codes(xdm_ebrim.DOCUMENT_AUTHOR)
    assert author.slots == {
        "authorPerson": ["7601000234438^Muster^Hans^^^Dr. med.^^^&2.51.1.3&ISO"],
        "authorInstitution": [f"Hôpital du Valais^^^^^^^^^{INSTITUTION_OID}"],
        "authorRole": ["HCP^^^&2.16.756.5.30.1.127.3.10.6&ISO"],
        "authorSpecialty": ["1050^^^&2.16.756.5.30.1.127.3.5&ISO"],
        "authorTelecommunication": ["^^Internet^hans.muster@hopital-vs.ch"]}
    (content_type,) = metadata.submission_set.codes(xdm_ebrim.CONTENT_TYPE_CODE)
    assert (content_type.code, content_type.coding_scheme) == ("71388002", "2.16.840.1.113883.6.96")
    (member,) = metadata.associations
    assert (member.type, member.source, member.target) == (xdm_ebrim.HAS_MEMBER, SET_ENTRY_UUID, ENTRY_UUID)


def test_the_submission_set_is_marked_with_the_xds_classification_node():
    root = etree.fromstring(written(submission()))
    nodes = [c.get("classificationNode") for c in root.iter("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}Classification")
             if c.get("classificationNode")]
    assert nodes == ["urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"]  # ITI TF-3 4.2.5.1


@pytest.mark.parametrize(("level", "code", "scheme"), [
    ("normal", "17621005", "2.16.840.1.113883.6.96"),
    ("restricted", "263856008", "2.16.840.1.113883.6.96"),
    ("secret", "1141000195107", SWISS_EXTENSION),
])
def test_each_confidentiality_of_an_attempt_and_its_scheme(level, code, scheme):
    metadata, (mapped,) = read_back(submission(confidentiality=level))
    (classified,) = metadata.documents[0].codes(xdm_ebrim.CONFIDENTIALITY_CODE)
    assert (classified.code, classified.coding_scheme) == (code, scheme)
    assert [(c.system, c.code) for c in mapped.document.entry.confidentiality] == [(SNOMED, code)]


def test_an_attempt_never_lowers_a_documents_confidentiality():
    restricted = outgoing(document(confidentiality="263856008"))
    with pytest.raises(ValueError, match="below the document's own restricted"):
        provide_and_register(submission(restricted, confidentiality="normal"), REPOSITORY)


def test_a_replacement_is_an_rplc_to_the_communitys_entry_uuid():
    target = "urn:uuid:42fbb7ad-fe7a-4585-95c6-15d91a476c40"
    replacing = outgoing(document(unique_id="urn:uuid:6f1e4a2b-3c5d-4e7f-8a9b-0c1d2e3f4a5b"), replaces=target)
    metadata, (mapped,) = read_back(submission(replacing))
    assert mapped.relation_targets == (("replaces", target),)
    rplc = [a for a in metadata.associations if a.type == xdm_ebrim.RPLC]
    assert [(a.source, a.target) for a in rplc] == [(ENTRY_UUID, target)]
    # a UUID uniqueId goes bare, as the kit's (read back, the XDM reader writes it as a URN again)
    assert metadata.documents[0].external_ids[xdm_ebrim.DOCUMENT_UNIQUE_ID] == "6f1e4a2b-3c5d-4e7f-8a9b-0c1d2e3f4a5b"
    assert mapped.unique_id == "urn:uuid:6f1e4a2b-3c5d-4e7f-8a9b-0c1d2e3f4a5b"


def test_two_documents_in_one_submission():
    second = outgoing(document(unique_id="urn:oid:2.25.7", content=b"second"),
                      entry_uuid="urn:uuid:11111111-2222-4333-8444-555555555555")
    metadata, mapped = read_back(submission(outgoing(), second))
    assert [m.unique_id for m in mapped] == ["urn:oid:2.25.199933111024518419341209463045829114371", "urn:oid:2.25.7"]
    assert sorted(a.target for a in metadata.associations) == sorted([ENTRY_UUID, second.entry_uuid])


def test_the_same_submission_is_the_same_bytes_on_every_attempt():
    assert written(submission()) == written(submission())
    assert written(submission()) != written(submission(confidentiality="restricted"))


def test_never_an_spid_in_the_metadata():
    doc = document()
    with_spid = replace(doc, entry=replace(doc.entry, source_patient_id=Identifier("urn:oid:2.16.756.5.30.1.127.3.10.3",
                                                                                   SPID)))
    data = written(submission(outgoing(with_spid)))
    assert SPID.encode() not in data and b"2.16.756.5.30.1.127.3.10.3" not in data
    (obj,) = xdm_ebrim.parse_metadata(data).documents
    assert obj.slots["sourcePatientId"] == [f"{MPI_PID}^^^&{MPI_OID}&ISO"]
    with pytest.raises(MetadataNotSendable, match="patientId would be an SPID"):
        provide_and_register(submission(), replace(REPOSITORY, mpi_oid="2.16.756.5.30.1.127.3.10.3"))


def test_pid5_from_the_mpi_when_the_document_has_no_name_and_refused_without_any():
    nameless = outgoing(document(family=None))
    data = written(submission(nameless, demographics=Demographics("Zeller", ("Romain",), "1984-03-08", "male")))
    (obj,) = xdm_ebrim.parse_metadata(data).documents
    assert "PID-5|Zeller^Romain" in obj.slots["sourcePatientInfo"]
    with pytest.raises(MetadataNotSendable, match="no family name for sourcePatientInfo PID-5"):
        provide_and_register(submission(nameless), REPOSITORY)


def test_a_document_without_author_names_the_responsible_professional():
    data = written(submission(outgoing(document(authors=[])), submission_set=submission_set(authors=[])))
    metadata = xdm_ebrim.parse_metadata(data)
    expected = {"authorPerson": [f"{PRINCIPAL_GLN}^Verantwortlich^^^^^^^&2.51.1.3&ISO"],
                "authorInstitution": [f"Hôpital du Valais^^^^^^^^^{INSTITUTION_OID}"],
                "authorRole": ["HCP^^^&2.16.756.5.30.1.127.3.10.6&ISO"]}
    for obj, scheme in ((metadata.documents[0], xdm_ebrim.DOCUMENT_AUTHOR),
                        (metadata.submission_set, xdm_ebrim.SUBMISSION_AUTHOR)):
        (author,) = obj.codes(scheme)
        assert author.slots == expected


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: replace(d, entry=replace(d.entry, type_code=Code("http://example.org/codes", "X"))),
     "code 'X' of system 'http://example.org/codes' has no XDS coding scheme"),
    (lambda d: replace(d, entry=replace(d.entry, mime_type="application/pdf\r\nX-Evil: 1")), "is not a MIME type"),
    (lambda d: replace(d, entry=replace(d.entry, creation_time="2nd May")), "creationTime '2nd May'"),
    (lambda d: replace(d, content=d.content + b"x"), "bytes where the metadata says"),
])
def test_metadata_that_cannot_be_sent_is_refused_before_sending(change, message):
    with pytest.raises(MetadataNotSendable, match=message):
        provide_and_register(submission(outgoing(change(document()))), REPOSITORY)


def test_ids_must_be_entry_uuids_and_distinct():
    with pytest.raises(MetadataNotSendable, match="is not an entryUUID"):
        provide_and_register(submission(outgoing(entry_uuid="doc-1")), REPOSITORY)
    with pytest.raises(MetadataNotSendable, match="share an entryUUID"):
        provide_and_register(submission(outgoing(entry_uuid=SET_ENTRY_UUID)), REPOSITORY)


def test_no_line_break_in_the_written_metadata_even_from_values():
    doc = document(title="Line one\nline two\r\nthree")
    data = provide_and_register(submission(outgoing(doc)), REPOSITORY)
    assert b"\n" not in data and b"\r" not in data
    (obj,) = xdm_ebrim.parse_metadata(etree.tostring(etree.fromstring(data).find(f"{{{LCM}}}SubmitObjectsRequest"))
                                      ).documents
    assert obj.name == "Line one\nline two\r\nthree"  # as character references, the exact value comes back


def test_markup_in_values_is_text_and_characters_xml_cannot_carry_are_refused():
    hostile = '</rim:Value><!-- x --> & "quoted" <xop:Include href="cid:evil"/>'
    doc = document(title=hostile, family=hostile)
    (obj,) = xdm_ebrim.parse_metadata(written(submission(outgoing(doc)))).documents
    assert obj.name == hostile
    assert obj.slots["sourcePatientInfo"][1] == "PID-5|" + hl7_types.escape(hostile) + "^Romain Théophile"
    for character in ("\x00", "\x1b", "\ufffe", "\ud800"):
        with pytest.raises(MetadataNotSendable, match="cannot be written in XML"):
            provide_and_register(submission(outgoing(document(title=f"a{character}b"))), REPOSITORY)


# -- the table -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "scheme"), [
    (Code(SNOMED, "1141000195107"), SWISS_EXTENSION),  # Secret, Swiss extension (namespace 1000195)
    (Code(SNOMED, "1051000195109"), SWISS_EXTENSION),
    (Code(SNOMED, "17621005"), "2.16.840.1.113883.6.96"),
    (Code(SNOMED, "4241000179101"), "2.16.840.1.113883.6.96"),  # another namespace's extension
    (Code(SNOMED, "21000195117"), "2.16.840.1.113883.6.96"),  # namespace 1000195 but partition 11: a description
    (Code("urn:oid:2.16.756.5.30.1.127.3.10.10", "urn:che:epr:EPR_Unstructured_Document"), "2.16.756.5.30.1.127.3.10.10"),
    (Code("http://loinc.org", "11369-6"), "2.16.840.1.113883.6.1"),
    (Code("http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "urn:ihe:iti:xds:2017:mimeTypeSufficient"),
     "1.3.6.1.4.1.19376.1.2.3"),
])
def test_coding_schemes_both_ways(code, scheme):
    assert coding_scheme(code) == scheme
    assert code_from_xds(scheme, code.code, "d") == Code(code.system, code.code, "d")


def test_every_table_system_comes_back():
    assert {code_from_xds(oid, "c").system for oid in CODING_SCHEMES.values()} == set(CODING_SCHEMES)


@pytest.mark.parametrize("system", [None, "", "http://example.org/cs", "urn:oid:2.16.x", "urn:uuid:0d9c8b7a"])
def test_no_coding_scheme_is_guessed(system):
    with pytest.raises(NoCodingScheme):
        coding_scheme(Code(system, "x"))


def test_unique_ids_both_ways():
    assert document_unique_id("urn:oid:1.2.3") == "1.2.3" and unique_id_from_xds("1.2.3") == "urn:oid:1.2.3"
    uid = "urn:uuid:6f1e4a2b-3c5d-4e7f-8a9b-0c1d2e3f4a5b"
    assert unique_id_from_xds(document_unique_id(uid)) == uid
    assert submission_set_unique_id("urn:oid:2.25.12") == submission_set_unique_id("2.25.12") == "2.25.12"
    # ITU-T X.667's example: UUID f81d4fae-7dec-11d0-a765-00a0c91e6bf6 is OID 2.25.329800735698586629295641978511506172918
    assert (submission_set_unique_id("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
            == "2.25.329800735698586629295641978511506172918")


def test_hl7_values_escape_the_delimiters():
    assert hl7_types.cx("A^B&C", "1.2") == "A\\S\\B\\T\\C^^^&1.2&ISO"
    assert hl7_types.xcn(gln=None, family="O'Brien|Smith", given="Ann~Marie") == "^O'Brien\\F\\Smith^Ann\\R\\Marie"
    assert hl7_types.dtm("2024-05-02T14:30:00+02:00") == "20240502123000" and hl7_types.dtm("2024-05") == "202405"
