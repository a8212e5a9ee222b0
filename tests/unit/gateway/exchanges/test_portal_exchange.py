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

    assert services.portal.sign_in(principal=principal) == principal
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
