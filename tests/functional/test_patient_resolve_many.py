"""`DatabasePatientIndex.resolve_many`: a batch's patients (the HL7 v2 group commit) resolved together
answer exactly what `pid_for_identifier`, `get` and `under_review` answer one by one: the first known
identifier of each message, merges followed, the record, an open review on the patient or on a
patient merged into it. On SQLite and PostgreSQL."""

from __future__ import annotations

import orjson

from adapters.cara.model import Identifier
from adapters.cara.store.patients import Resolved
from adapters.cara.vocabulary import SPID_SYSTEM
from conftest import LOCAL_SYSTEM, OTHER_SPID, SPID
from gateway.samples import patient_feed

UNFED = {"resourceType": "Patient", "identifier": [{"system": LOCAL_SYSTEM, "value": "L-9"}],
         "name": [{"family": "Sans", "given": ["Dossier"]}], "birthDate": "1950-01-01", "gender": "male"}


def local(value: str) -> Identifier:
    return Identifier(LOCAL_SYSTEM, value)


def put(gateway, body: dict, local_id: str) -> int:
    return gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{local_id}", content=orjson.dumps(body),
                              headers=gateway.as_hcp()).status_code


def one_by_one(patients, identifiers: tuple[Identifier, ...]) -> Resolved | None:
    pid = next((p for p in (patients.pid_for_identifier(i) for i in identifiers) if p), None)
    return None if pid is None else Resolved(pid, patients.get(pid), patients.under_review(pid))


def test_resolve_many_answers_as_the_single_look_ups_merges_and_reviews_included(gateway):
    gateway.register_patient(spid=SPID, local_id="L-1")
    gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Autre", given="Berta")
    assert put(gateway, UNFED, "L-9") == 201  # known to the MPI, no EPR-SPID
    patients = gateway.services.exchange.patients
    a, b, c = (patients.pid_for_identifier(local(v)) for v in ("L-1", "L-2", "L-9"))
    messages = [(local("L-1"),), (local("L-77"), local("L-2")), (local("L-77"),), (local("L-9"),),
                (Identifier(SPID_SYSTEM, OTHER_SPID), local("L-1")), (local("L-1"),)]

    before = patients.resolve_many(messages)

    assert {m: (r.pid, r.record.spid if r.record else "-", r.under_review) if r else None
            for m, r in before.items()} == {
        (local("L-1"),): (a, SPID, False), (local("L-77"), local("L-2")): (b, OTHER_SPID, False),
        (local("L-77"),): None, (local("L-9"),): (c, None, False),
        (Identifier(SPID_SYSTEM, OTHER_SPID), local("L-1")): (b, OTHER_SPID, False)}
    assert before == {m: one_by_one(patients, m) for m in messages}

    # B merged into A; a conflicting feed for C opens a review naming C; C merged into A too.
    patients.links.merge(retired=b, surviving=a)
    conflicting = {**UNFED, "birthDate": "1951-02-02"}
    put(gateway, conflicting, "L-9")
    assert [r.pid for r in patients.reviews.open_reviews()] == [c]
    assert patients.resolve_many([(local("L-9"),)])[(local("L-9"),)].under_review is True
    patients.links.merge(retired=c, surviving=a)

    after = patients.resolve_many(messages)

    assert {m: (r.pid, r.under_review) if r else None for m, r in after.items()} == {
        (local("L-1"),): (a, True), (local("L-77"), local("L-2")): (a, True), (local("L-77"),): None,
        (local("L-9"),): (a, True), (Identifier(SPID_SYSTEM, OTHER_SPID), local("L-1")): (a, True)}
    assert all(r.record.spid == SPID for r in after.values() if r)
    assert after == {m: one_by_one(patients, m) for m in messages}
