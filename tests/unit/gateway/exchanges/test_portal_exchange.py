"""`PortalExchange` (gateway/exchanges/portal.py): the patient's page signs in only a patient the MPI
knows (or a representative under a 303 in force), with one refusal for every other case."""

from __future__ import annotations

import pytest

from gateway.auth.errors import AccessRefused
from gateway.exchanges.portal import patient_principal, representative_principal
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    HCP,
    OTHER_SPID,
    SPID,
    ledger,
    open_record,
    runtime,
    services,
)


def test_a_known_patient_signs_in_and_it_is_audited(services, runtime):
    open_record(services)
    principal = patient_principal(spid=SPID, name="Anna Muster")

    signed_in = services.portal.sign_in(principal=principal)

    assert (signed_in.principal, signed_in.patient_name) == (principal, "Anna Muster")  # the MPI's name
    assert ledger(runtime)[-1] == ("portal-sign-in", "E", "0")


@pytest.mark.parametrize("who", ["unknown patient", "representative without a 303", "professional"])
def test_everyone_else_is_refused_and_audited(services, runtime, who):
    open_record(services)
    principal = {"unknown patient": patient_principal(spid=OTHER_SPID, name=None),
                 "representative without a 303": representative_principal(representative_id="rep-1", spid=SPID,
                                                                           name=None),
                 "professional": HCP}[who]

    with pytest.raises(AccessRefused):
        services.portal.sign_in(principal=principal)

    assert ledger(runtime)[-1] == ("portal-sign-in", "E", "4")


def test_notifications_are_read_by_the_patient_only(services):
    open_record(services)

    assert services.portal.seen_notifications(principal=patient_principal(spid=SPID, name=None), spid=SPID) == set()
    with pytest.raises(AccessRefused):
        services.portal.seen_notifications(principal=patient_principal(spid=OTHER_SPID, name=None), spid=SPID)


def test_emergency_notices_name_who_what_which_documents_and_whether_seen(services, runtime):
    from dataclasses import replace

    from unit.gateway.exchanges.exchange_world import provide

    pid = open_record(services, grant=None)
    entry_id = provide(services)
    emergency = replace(HCP, purpose_of_use="EMER", organisation="Hôpital de Sion")
    services.exchange.retrieve(principal=emergency, entry_id=entry_id, base_url="https://gateway.test/fhir")
    patient = patient_principal(spid=SPID, name=None)

    [notice] = services.portal.emergency_notices(principal=patient, spid=SPID)
    assert ledger(runtime)[-1] == ("notifications", "E", "0")
    assert (notice.by_id, notice.by_name, notice.by_role, notice.organisation, notice.what, notice.documents,
            notice.unique_ids, notice.seen) == (
        HCP.user_id, HCP.name, "HCP", "Hôpital de Sion", "retrieve",
        ((entry_id, "http://snomed.info/sct", "373942005"),), 1, False)
    assert notice.at.tzinfo is not None

    services.portal.mark_notifications_seen(principal=patient, spid=SPID, notification_ids=[notice.id])
    assert [n.seen for n in services.portal.emergency_notices(principal=patient, spid=SPID)] == [True]
    with pytest.raises(AccessRefused):
        services.portal.emergency_notices(principal=patient_principal(spid=OTHER_SPID, name=None), spid=SPID)
    assert services.exchange.access.notifications.for_patient(pid)  # reading them removes nothing
