"""The MPI's identity rules: AHVN13 check digit, normalisation before hashing, vigilance, PDQm parameters."""

import pytest

from adapters.cara import identity
from adapters.cara.errors import InvalidInput
from adapters.cara.identity import AHVN13_SYSTEM, PatientSearch, parse_pdq
from adapters.cara.model import Identifier, PatientRecord

ANNA = PatientRecord("p1", "761337610411353650", "Muster", ("Anna",), "1980-05-17", "female",
                     (Identifier(AHVN13_SYSTEM, "7561234567897"),))


def person(**changes) -> PatientRecord:
    values = {"pid": "", "spid": None, "family": "Muster", "given": ("Anna",), "birth_date": "1980-05-17",
              "gender": "female", "identifiers": ()} | changes
    return PatientRecord(**values)


@pytest.mark.parametrize("value, valid", [
    ("7561234567897", True),
    ("7560000000002", True),
    ("7561234567890", False),  # check digit
    ("7571234567896", False),  # not Swiss
    ("756123456789", False),  # 12 digits
    ("756.1234.5678.97", False),  # dots are the caller's to remove (canonical does)
    ("756123456789x", False),
])
def test_ahvn13_is_13_digits_from_756_with_an_ean13_check_digit(value, valid):
    assert identity.is_ahvn13(value) is valid


def test_names_are_case_folded_and_spaced_once_but_accents_are_kept():
    assert identity.normalise("  MÜLLER   von  Matt ") == "müller von matt"
    assert identity.normalise("Strauß") == "strauss"
    assert identity.normalise("Müller") != identity.normalise("Muller")


def test_index_values_are_what_pdqm_and_matching_look_up():
    assert identity.index_values(person(given=("Anna", "Maria", "Anna"), identifiers=ANNA.identifiers)) == [
        ("family", "muster"), ("given", "anna"), ("given", "maria"), ("birthdate", "1980-05-17"),
        ("gender", "female"), ("ahvn13", "7561234567897")]


def test_canonical_writes_the_ahvn13_without_dots_and_validation_refuses_bad_input():
    assert identity.canonical(person(identifiers=(Identifier(AHVN13_SYSTEM, "756.1234.5678.97"),))).identifiers == (
        Identifier(AHVN13_SYSTEM, "7561234567897"),)
    for bad in (person(identifiers=(Identifier(AHVN13_SYSTEM, "7561234567890"),)), person(gender="f"),
                person(birth_date="1980-05"), person(spid="12345")):
        with pytest.raises(InvalidInput):
            identity.validate_incoming(bad)


@pytest.mark.parametrize("incoming, differ", [
    (person(), False),
    (person(family="MUSTER"), False),
    (person(family=None, given=(), birth_date=None), False),  # missing is not a difference
    (person(birth_date="1980-05-18"), True),
    (person(family="Meier"), True),
    (person(given=("Anna", "Maria")), True),
    (person(gender="male"), False),  # gender alone is not a vigilance case
])
def test_a_known_local_id_with_another_birth_date_or_name_differs(incoming, differ):
    assert identity.demographics_differ(ANNA, incoming) is differ


@pytest.mark.parametrize("incoming, same", [
    (person(), True),
    (person(family="muster", spid="761337610411353650"), True),
    (person(spid="761337610499999991"), False),  # another SPID: another person
    (person(identifiers=(Identifier(AHVN13_SYSTEM, "7560000000002"),)), False),  # another AHVN13
    (person(gender="male"), False),
    (person(given=("Anna", "Maria")), False),
    (person(gender=None), False),  # an incomplete identity never links
])
def test_linking_by_demographics_needs_all_four_exactly_and_no_contrary_identifier(incoming, same):
    assert identity.same_person_by_demographics(ANNA, incoming) is same


def test_pdq_parameters_become_exact_criteria():
    search = parse_pdq([("family:exact", " Muster "), ("given", "Anna,Maria"), ("birthdate", "eq1980-05-17"),
                        ("gender", "female"), ("identifier", f"{AHVN13_SYSTEM}|756.1234.5678.97"), ("_count", "5")])

    assert search == PatientSearch(
        demographics=(("family", ("muster",)), ("given", ("anna", "maria")), ("birthdate", ("1980-05-17",)),
                      ("gender", ("female",))),
        identifiers=((Identifier(AHVN13_SYSTEM, "7561234567897"),),), count=5)


@pytest.mark.parametrize("params", [
    [], [("_count", "5")], [("family:contains", "Mu")], [("birthdate", "lt1990-01-01")], [("birthdate", "1980")],
    [("gender", "F")], [("identifier", "nosystem")], [("family", "")], [("_count", "0")], [("_count", "101")],
])
def test_pdq_refuses_what_it_cannot_answer_exactly(params):
    with pytest.raises(InvalidInput):
        parse_pdq(params)


def test_the_review_conflict_names_its_reason_and_case():
    error = identity.IdentityConflict(identity.AHVN13_LINKED_ELSEWHERE, review_id="r1")

    assert (error.code, error.reason, error.review_id) == ("conflict", "ahvn13-linked-elsewhere", "r1")
    assert error.message == ("identity conflict (ahvn13-linked-elsewhere): the AHVN13 is already linked to another "
                             "patient; nothing was merged, the case is in the identity review list as r1")
