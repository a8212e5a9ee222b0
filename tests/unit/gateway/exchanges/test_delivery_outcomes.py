"""The one table from a community's answer to the outbox row's next state (gateway/exchanges/
delivery_outcomes.py): every outcome, what is retried when, what is kept."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from adapters.cara.store.outbox import Backoff, Delivery
from adapters.community.outcomes import (
    AlreadyDelivered,
    Conflict,
    Delivered,
    RaiseConfidentiality,
    RegistryError,
    Rejected,
    TransportFailure,
    WaitingPatient,
)
from adapters.community.source import Attempt, ProvideAnswer
from gateway.exchanges.delivery_outcomes import Retries, finish_of

NOW = datetime(2026, 12, 6, 12, 0, 0)
RETRIES = Retries(transport=Backoff(2.0, 600.0, jitter=lambda: 0.5), waiting=Backoff(60.0, 3600.0, jitter=lambda: 0.5))
DUPLICATE = RegistryError("XDSDuplicateUniqueIdInRegistry", 'The SubmissionSet unique ID "2.25.7" already exists',
                          "Registry", "Error")


def delivery(attempts: int = 3) -> Delivery:
    return Delivery(id=7, community="cara", kind="provide", entry_id="E", version=2, unique_id="urn:oid:2.25.9",
                    patient_pid="P", depends_on=None, state="in-flight", submission_set_unique_id="2.25.7",
                    submission_set_uuid="urn:uuid:s", entry_uuid="urn:uuid:e", confidentiality="normal",
                    attempts=attempts, next_attempt_at=NOW, lease_owner="d/1", community_patient_id=None,
                    last_code=None, last_text=None, created_at=NOW, delivered_at=None, receipt=None)


def answered(outcome, level: str = "normal", mpi: str | None = "100001201") -> ProvideAnswer:
    return ProvideAnswer(outcome, Attempt("2.25.7", ("urn:uuid:e",), level, mpi, "urn:uuid:m"), ())


def finish(outcome, **kw):
    return finish_of(delivery(), answered(outcome, **kw), started=NOW - timedelta(seconds=1), now=NOW, version=2,
                     retries=RETRIES)


@pytest.mark.parametrize(("outcome", "kept"), [(Delivered(()), "delivered"),
                                               (AlreadyDelivered((DUPLICATE,)), "already-delivered")])
def test_delivered_and_already_delivered_end_the_row_with_its_receipt(outcome, kept):
    done = finish(outcome)

    assert (done.state, done.retry_at, done.community_patient_id) == ("delivered", None, "100001201")
    assert done.receipt == {"outcome": kept, "submission_set_unique_id": "2.25.7", "entry_uuids": ["urn:uuid:e"],
                            "confidentiality": "normal", "community_patient_id": "100001201",
                            "message_id": "urn:uuid:m", "version": 2,
                            "registry_errors": [{"code": e.code, "context": e.context, "location": e.location,
                                                 "severity": e.severity} for e in getattr(outcome, "errors", ())]}
    assert (done.attempt.outcome, done.attempt.started_at, done.attempt.finished_at) == (
        kept, NOW - timedelta(seconds=1), NOW)


def test_an_already_delivered_attempt_keeps_the_code_its_transport_answered():
    """XDS.b: the registry's duplicate error; MHD: the recipient answered 200 for what it held — no XDS code."""
    assert finish(AlreadyDelivered((DUPLICATE,))).attempt.code == "XDSDuplicateUniqueIdInRegistry"
    over_mhd = finish(AlreadyDelivered((), (("urn:uuid:e", "DocumentReference/1"),)))
    assert (over_mhd.state, over_mhd.attempt.outcome, over_mhd.attempt.code) == ("delivered", "already-delivered",
                                                                                 None)


def test_the_consent_filter_retries_at_once_one_level_higher():
    done = finish(RaiseConfidentiality("normal", "restricted", "XDSRepositoryError", "Consent filter applied", ()))

    assert (done.state, done.retry_at, done.confidentiality) == ("pending", NOW, "restricted")
    assert (done.attempt.confidentiality, done.attempt.code) == ("normal", "XDSRepositoryError")
    assert done.attempt.text == ("the community's consent filter refused normal (XDSRepositoryError: Consent filter "
                                 "applied); next attempt at restricted")


def test_a_conflict_fails_naming_both_submission_sets_and_the_document():
    done = finish(Conflict("2.25.7", ("2.25.9",), "XDSDuplicateUniqueIdInRegistry",
                           'The DocumentEntry unique ID "2.25.9" already exists (SubmissionSet 2.25.1)', ()))

    assert (done.state, done.retry_at, done.attempt.code) == ("failed", None, "XDSDuplicateUniqueIdInRegistry")
    assert all(name in done.attempt.text for name in ("2.25.9", "2.25.7", "SubmissionSet 2.25.1"))
    assert json.loads(done.attempt.answer)["documents"] == ["2.25.9"]


def test_a_rejection_fails_with_the_communitys_code_and_text():
    error = RegistryError("XDSRegistryMetadataError", "typeCode 1 not found in the Affinity Domain", "urn:uuid:e",
                          "Error")
    done = finish(Rejected("XDSRegistryMetadataError", str(error), (error,)))

    assert (done.state, done.attempt.code, done.attempt.text) == ("failed", "XDSRegistryMetadataError", str(error))
    assert json.loads(done.attempt.answer)["registry_errors"] == [
        {"code": "XDSRegistryMetadataError", "context": "typeCode 1 not found in the Affinity Domain",
         "location": "urn:uuid:e", "severity": "Error"}]


def test_a_transport_failure_is_retried_after_a_growing_jittered_pause_with_the_same_level():
    done = finish(TransportFailure("ITI-41 https://…: no answer in time", soap_fault=False), level="restricted")

    assert (done.state, done.retry_at, done.confidentiality) == ("pending", NOW + timedelta(seconds=8), None)
    assert (done.attempt.code, done.attempt.confidentiality) == ("transport", "restricted")
    assert finish(TransportFailure("fault", soap_fault=True)).attempt.code == "soap-fault"


def test_a_patient_the_community_does_not_know_waits_longer_than_a_transport_retry():
    done = finish(WaitingPatient("the community does not know the patient (NF)"), mpi=None)

    assert (done.state, done.retry_at, done.attempt.code) == ("waiting-patient", NOW + timedelta(seconds=240),
                                                              "patient-unknown")


def test_backoff_never_overflows_however_many_attempts():
    assert Backoff(2.0, 600.0, jitter=lambda: 0.5).delay(10_000) == timedelta(seconds=600)
