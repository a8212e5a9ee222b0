"""`UploadRules` (gateway/exchanges/upload_rules.py) on a real store: what every provide path decides
before a document is stored — provenance from the principal, the write decision at the level it will be
stored with, and the one rule for naming another document (one answer for every kind of target that may
not be named, so the answer is no existence oracle)."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from adapters.cara.errors import UnknownRelationTarget
from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.cara.model import PendingRelation
from conftest import HCP_GLN, grant_consent
from gateway.auth.errors import AccessRefused
from gateway.samples import pdf_document, provide_bundle
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    OTHER_HCP,
    OTHER_SPID,
    PATIENT,
    SPID,
    POLICY_ADMIN,
    TCU,
    feed,
    open_record,
    patient,
    provide,
    runtime,
    services,
)

ROLE_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.6"


def submission(title: str = "Letter", *, spid: str = SPID, confidentiality: str = "normal", role: str = "HCP"):
    return submission_from_bundle(provide_bundle(spid=spid, author_role=role, documents=[
        {"title": title, "content": pdf_document(title, [title]), "confidentiality": confidentiality}]))


def naming(target_unique_id: str, *, title: str = "Correction"):
    """A submission whose one document replaces the document of `target_unique_id`."""
    new = submission(title)
    document = replace(new.documents[0], relations=(PendingRelation("replaces", target_unique_id=target_unique_id),))
    return replace(new, documents=(document,))


def open_other_record(services) -> str:
    """A second patient's record in everyday use, HCP granted too (fed under its own local id)."""
    pid = feed(services, spid=OTHER_SPID, local_id="L-2")
    services.policies.onboard(principal=POLICY_ADMIN, spid=OTHER_SPID)
    services.policies.add(principal=patient(OTHER_SPID), body=orjson.dumps(
        grant_consent(spid=OTHER_SPID, gln=HCP_GLN, level="normal")))
    return pid


def unique_id_of(services, entry_id: str) -> str:
    return services.exchange.documents.get_entry(entry_id).unique_id


def test_authorise_sets_provenance_from_the_principal_and_never_lowers_a_level(services):
    pid = open_record(services)
    rules = services.exchange.rules
    secret = submission(confidentiality="secret", role="PAT")

    stored = rules.authorise(PATIENT, secret, pid)

    [document] = stored.documents
    assert document.entry.confidentiality_level == "secret"  # above the provide level (normal): kept
    assert (document.entry.original_provider_role.system, document.entry.original_provider_role.code) == (
        ROLE_SYSTEM, "PAT")
    assert (document.entry.submitter.role, document.entry.submitter.user_id,
            document.entry.submitter.acting_for) == ("PAT", PATIENT.user_id, None)
    assert secret.documents[0].entry.submitter is None  # the given submission is not changed


def test_authorise_decides_the_write_at_the_level_it_will_be_stored_with(services):
    pid = open_record(services)
    rules = services.exchange.rules

    with pytest.raises(AccessRefused) as secret:
        rules.authorise(HCP, submission(confidentiality="secret"), pid)
    with pytest.raises(AccessRefused) as emergency:
        rules.authorise(replace(HCP, purpose_of_use="EMER"), submission(), pid)

    assert secret.value.reason.endswith("with provide level normal, professionals file documents only as normal "
                                        "or restricted")
    assert emergency.value.reason.endswith("HCP cannot write with purpose EMER")
    assert rules.authorise(HCP, submission(confidentiality="restricted"), pid).documents[0].entry \
        .confidentiality_level == "restricted"


def test_every_target_that_may_not_be_named_gets_the_one_answer(services):
    pid = open_record(services)
    rules = services.exchange.rules
    secret = unique_id_of(services, provide(services, title="Secret", principal=PATIENT, confidentiality="secret"))
    other_pid = open_other_record(services)
    others = unique_id_of(services, provide(services, title="Other's", spid=OTHER_SPID))
    assert other_pid != pid

    answers = []
    for target in ("urn:oid:2.25.404", others, secret):  # missing, another patient's, unreadable to HCP
        with pytest.raises(UnknownRelationTarget) as refused:
            rules.authorise(HCP, naming(target), pid)
        answers.append((type(refused.value), refused.value.message.replace(target, "<target>"),
                        [issue.location for issue in refused.value.issues]))

    assert answers == [(UnknownRelationTarget, "relatesTo target <target> is not a document of this patient",
                        ["DocumentReference.relatesTo.target"])] * 3


def test_a_deleted_target_is_not_nameable_even_by_its_submitter(services):
    pid = open_record(services)
    rules = services.exchange.rules
    entry = services.exchange.documents.get_entry(provide(services))

    assert rules.may_name(HCP, entry, pid=pid)
    assert not rules.may_name(HCP, replace(entry, status="deleted"), pid=pid)
    assert not rules.may_name(HCP, entry, pid="another-pid")  # not this (surviving) patient's


def test_a_technical_user_names_what_it_submitted_itself_but_not_what_it_cannot_read(services):
    pid = open_record(services)
    rules = services.exchange.rules
    own = services.exchange.provide_many(principal=TCU, submissions=[submission("Migrated", role="TCU")])
    own_unique_id = own[0].stored.documents[0].entry.unique_id
    by_hcp = unique_id_of(services, provide(services, title="By the HCP"))

    named = rules.require_nameable(TCU, pid=pid, unique_id=own_unique_id)

    assert named.unique_id == own_unique_id and named.submitter.role == "TCU"
    with pytest.raises(UnknownRelationTarget):  # a technical user never reads: another's document is unknown
        rules.require_nameable(TCU, pid=pid, unique_id=by_hcp)


def test_a_target_submitted_earlier_in_the_same_batch_is_nameable_before_it_is_stored(services):
    pid = open_record(services)
    rules = services.exchange.rules
    pending = "urn:oid:2.25.777"

    with pytest.raises(UnknownRelationTarget):
        rules.authorise_relations(HCP, naming(pending), pid)
    rules.authorise_relations(HCP, naming(pending), pid, earlier_in_batch=frozenset({(pid, pending)}))
    with pytest.raises(UnknownRelationTarget):  # earlier in the batch, but for another patient
        rules.authorise_relations(HCP, naming(pending), pid, earlier_in_batch=frozenset({("other", pending)}))


def test_read_decision_is_taken_under_the_documents_own_patient(services):
    open_record(services)
    rules = services.exchange.rules
    entry = services.exchange.documents.get_entry(provide(services))

    decision, spid, members = rules.read_decision(HCP, entry)
    other_decision, _, _ = rules.read_decision(OTHER_HCP, entry)
    own, _, _ = rules.read_decision(patient(SPID), entry)

    assert (decision.permit, spid, [s for _, s in members]) == (True, SPID, [SPID])
    assert (other_decision.permit, own.permit) == (False, True)
