"""`PatientMessages` (gateway/exchanges/message_patients.py) on a real MPI: an ADT^A08 feed registers or
opens a review case; an ADT^A40 merges only identities of the sender's own assigning authorities, and
refuses (AE naming the field) a list without one, or one the MPI does not know, changing nothing."""

from __future__ import annotations

import pytest

from adapters.cara.model import Identifier, PatientRecord
from adapters.infomed.hl7v2.errors import TABLE_VALUE_NOT_FOUND, UNKNOWN_KEY, SenderMustFix
from gateway.exchanges.message_outcomes import MERGED, REGISTERED, ReviewOpened
from gateway.exchanges.message_patients import PatientMessages
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    LOCAL_SYSTEM,
    OTHER_SPID,
    SPID,
    TCU,
    feed,
    ledger,
    runtime,
    services,
)

OWN = frozenset({LOCAL_SYSTEM})
OTHER_SYSTEM = "urn:oid:2.16.756.5.30.1.999.7.1"
SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"


def messages(services) -> PatientMessages:
    return PatientMessages(exchange=services.exchange, identities=services.identities,
                           patients=services.exchange.patients)


def incoming(local_id: str, *, spid: str | None, family: str = "Muster") -> PatientRecord:
    return PatientRecord(pid="", spid=spid, family=family, given=("Anna",), birth_date="1980-05-17", gender="female",
                         identifiers=(Identifier(LOCAL_SYSTEM, local_id),))


def test_a_feed_registers_the_patient_and_audits_it(services, runtime):
    answer = messages(services).feed(principal=TCU, source=Identifier(LOCAL_SYSTEM, "L-9"),
                                     incoming=incoming("L-9", spid=SPID))

    assert answer is REGISTERED
    pid = services.exchange.patients.pid_for_identifier(Identifier(LOCAL_SYSTEM, "L-9"))
    assert services.exchange.patients.get(pid).spid == SPID
    assert ledger(runtime)[-1] == ("ITI-104", "C", "0")


def test_a_feed_the_mpi_does_not_take_as_is_opens_a_review_case(services):
    pid = feed(services, spid=SPID, local_id="L-1")

    answer = messages(services).feed(principal=TCU, source=Identifier(LOCAL_SYSTEM, "L-1"),
                                     incoming=incoming("L-1", spid=OTHER_SPID))

    [case] = services.exchange.patients.reviews.open_reviews()
    assert answer == ReviewOpened("spid-differs", case.id)
    assert services.exchange.patients.get(pid).spid == SPID  # nothing merged, nothing changed


def test_a_merge_finds_both_patients_through_the_senders_own_ids(services, runtime):
    kept = feed(services, spid=SPID, local_id="L-1")
    gone = feed(services, spid=None, local_id="L-2", family="Doublon")
    patients = services.exchange.patients

    answer = messages(services).merge(principal=TCU, surviving=(Identifier(OTHER_SYSTEM, "X"),
                                                                  Identifier(LOCAL_SYSTEM, "L-1")),
                                      retired=(Identifier(LOCAL_SYSTEM, "L-2"),), authorities=OWN)

    assert answer is MERGED
    assert patients.surviving_pid(gone) == kept
    assert ledger(runtime)[-1][0] == "ITI-104"


@pytest.mark.parametrize(("surviving", "retired", "expected"), [
    # another institution's id or an EPR-SPID never names a patient to merge
    ((Identifier(OTHER_SYSTEM, "L-1"),), (Identifier(LOCAL_SYSTEM, "L-2"),),
     (TABLE_VALUE_NOT_FOUND, "PID", 3, f"PID-3 names no patient id of this sender's assigning authorities (it names "
      f"{OTHER_SYSTEM}): a sender merges only its own identities")),
    ((Identifier(LOCAL_SYSTEM, "L-1"),), (Identifier(SPID_SYSTEM, SPID),),
     (TABLE_VALUE_NOT_FOUND, "MRG", 1, f"MRG-1 names no patient id of this sender's assigning authorities (it names "
      f"{SPID_SYSTEM}): a sender merges only its own identities")),
    ((Identifier(LOCAL_SYSTEM, "L-1"),), (Identifier(LOCAL_SYSTEM, "NOBODY"),),
     (UNKNOWN_KEY, "MRG", 1, f"unknown patient: MRG-1 {LOCAL_SYSTEM} is not in the MPI")),
])
def test_a_merge_without_an_own_known_id_is_refused_naming_the_field(services, surviving, retired, expected):
    kept = feed(services, spid=SPID, local_id="L-1")
    gone = feed(services, spid=None, local_id="L-2", family="Doublon")

    with pytest.raises(SenderMustFix) as refused:
        messages(services).merge(principal=TCU, surviving=surviving, retired=retired, authorities=OWN)

    assert (refused.value.code, refused.value.segment, refused.value.field, refused.value.text) == expected
    assert services.exchange.patients.surviving_pid(gone) == gone != kept  # nothing merged
