"""A relation target that is not there is one typed refusal (`UnknownRelationTarget`) on every path
that stores documents, and the migration tells it apart by its type — no longer by the words of an
error's location (any other finding located at relatesTo was held as "relation target" before)."""

from dataclasses import replace

import pytest

from adapters.cara.errors import ProfileViolation, UnknownRelationTarget
from adapters.cara.model import PendingRelation
from functional.helpers import row_counts
from functional.test_batch_provide import TCU, submission
from functional.test_relation_access import naming
from gateway.exchanges.batch_provide import BatchOutcome
from gateway.migration.job import _outcome_row
from gateway.migration.journal import JournalRow

MISSING = "urn:oid:2.25.999999"
REFUSAL = f"relatesTo target {MISSING} is not a document of this patient"


def naming_missing(title: str):
    new = submission(title)
    document = new.documents[0]
    return replace(new, documents=(replace(document, relations=(PendingRelation("replaces",
                                                                                target_unique_id=MISSING),)),))


def test_an_unknown_target_is_the_same_typed_refusal_on_every_provide_path(gateway):
    gateway.register_patient()
    exchange = gateway.services.exchange
    before = row_counts(gateway.runtime)

    with pytest.raises(UnknownRelationTarget) as single:
        exchange.provide_submission(principal=TCU, submission=naming_missing("one"))
    outcome, = exchange.provide_many(principal=TCU, submissions=[naming_missing("in a batch")])

    assert (type(outcome.error), outcome.error.message) == (UnknownRelationTarget, REFUSAL)
    assert single.value.message == REFUSAL
    assert [(i.message, i.location) for i in single.value.issues] == [
        (REFUSAL, "DocumentReference.relatesTo.target")]
    assert row_counts(gateway.runtime) == before


def test_iti65_answers_the_refusal_as_before(gateway):
    """The FHIR face's answer is unchanged by the type: 422 business-rule at the target's FHIRPath."""
    gateway.register_patient()

    answer = gateway.provide(naming({"uniqueId": MISSING}, "replaces"))

    assert answer.status_code == 422, answer.text
    assert answer.json()["issue"] == [{"severity": "error", "code": "business-rule", "diagnostics": REFUSAL,
                                       "expression": ["DocumentReference.relatesTo.target"]}]


def refused(error: Exception) -> BatchOutcome:
    return BatchOutcome(submission=None, result=None, stored=None, error=error)


def test_the_migration_holds_a_document_for_its_missing_target_by_the_error_type():
    row = JournalRow("media/SUBSET01/DOC0001.PDF", "media", "pending")

    held = _outcome_row(row, refused(UnknownRelationTarget(MISSING)))
    other = _outcome_row(row, refused(ProfileViolation(
        "relatesTo.target must reference a DocumentReference by id or by its uniqueId",
        location="DocumentReference.relatesTo.target")))

    assert (held.outcome, held.reason_code, held.reason) == ("held", "relation-target", REFUSAL)
    assert (other.outcome, other.reason_code) == ("rejected", "refused")
