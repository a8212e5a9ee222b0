"""`DocumentEntry.copy_with` is `dataclasses.replace` without its cost: the same entry for every field,
and the conditions that make it so (no __post_init__, every field set by __init__) hold."""

import dataclasses

import pytest

from adapters.cara.model import Author, Code, DocumentEntry, Identifier, Relation, Submitter

ENTRY = DocumentEntry(
    entry_id="e-1", unique_id="urn:oid:2.25.1", patient_pid="pid-1", status="current",
    type_code=Code("http://snomed.info/sct", "373942005", "Discharge summary"),
    class_codes=[Code("http://snomed.info/sct", "371531000", None)],
    format_code=Code("urn:oid:2.16.756.5.30.1.127.3.10.10", "urn:che:epr:EPR_Unstructured_Document", None),
    confidentiality=[Code("http://snomed.info/sct", "17621005", None)],
    facility_type=Code("http://snomed.info/sct", "22232009", None),
    practice_setting=Code("http://snomed.info/sct", "394802001", None), mime_type="application/pdf",
    language="fr-CH", title="Rapport", creation_time="2026-12-07T10:00:00Z", original_provider_role=None,
    size=3, sha1="a9993e364706816aba3e25717850c26c9cd0d89d",
    authors=[Author({"reference": {"reference": "#a"}}, ("Favre",), ("Luc",))],
    source_patient_id=Identifier("urn:oid:2.16.756.5.30.1.145.1.2", "L-1"))

CHANGES = {
    "patient_pid": "pid-2", "status": "superseded", "submission_set_id": "set-1", "version": 2,
    "relations": [Relation("replaces", "e-0")], "original_provider_role": Code("urn:oid:2.16.756.5.30.1.127.3.10.6", "HCP", None),
    "submitter": Submitter(role="HCP", user_id="7601000000002", acting_for=None),
    "confidentiality": [Code("http://snomed.info/sct", "1051000195109", "restricted")],
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_change_gives_what_replace_gives(name):
    copied = ENTRY.copy_with(**{name: CHANGES[name]})
    assert copied == dataclasses.replace(ENTRY, **{name: CHANGES[name]})
    assert copied is not ENTRY and type(copied) is DocumentEntry
    assert getattr(ENTRY, name) != CHANGES[name]  # the original is left as it was


def test_several_changes_at_once_and_none():
    assert ENTRY.copy_with(**CHANGES) == dataclasses.replace(ENTRY, **CHANGES)
    assert ENTRY.copy_with() == ENTRY and ENTRY.copy_with() is not ENTRY


def test_a_field_it_does_not_have_is_refused_as_replace_refuses_it():
    with pytest.raises(TypeError):
        dataclasses.replace(ENTRY, patient_spid="761337610411353650")
    with pytest.raises(TypeError, match="patient_spid"):
        ENTRY.copy_with(patient_spid="761337610411353650")


def test_what_makes_the_copy_equal_to_replace_still_holds():
    """Should DocumentEntry gain a __post_init__, a field outside __init__, __slots__ or frozen=True,
    copy_with would skip or break what replace does: this says so first."""
    assert not hasattr(DocumentEntry, "__post_init__")
    assert all(f.init for f in dataclasses.fields(DocumentEntry))
    assert not hasattr(DocumentEntry, "__slots__") and not DocumentEntry.__dataclass_params__.frozen


def test_filed_under_its_rows_patient():
    assert ENTRY.filed_under("pid-1") is ENTRY  # the row agrees: nothing copied
    moved = ENTRY.filed_under("pid-2")
    assert moved == dataclasses.replace(ENTRY, patient_pid="pid-2") and ENTRY.patient_pid == "pid-1"
