"""`DatabasePatientIndex.records_of` (a batch's merged records, resolved together) answers exactly what
`record_of` answers one by one, merged patients included, on both stores."""

import pytest

from adapters.cara.model import Identifier
from conftest import LOCAL_SYSTEM, fresh_postgres_url, make_settings, sqlite_url
from gateway.first_start import prepare
from gateway.wiring import build_runtime
from consent.principal import Principal
from unit.gateway.exchanges.exchange_world import feed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def built(request, tmp_path):
    url = sqlite_url(tmp_path) if request.param == "sqlite" else fresh_postgres_url()
    runtime = build_runtime(prepare(make_settings(tmp_path / "data", url)).settings)
    yield runtime
    runtime.close()


def test_records_of_is_record_of_for_a_batch(built):
    services = built.services
    spids = [f"7613376104999900{n:02d}" if n not in (1, 2) else None for n in range(5)]  # merged ones: no SPID
    pids = [feed(services, spid=spid, local_id=f"L-{n}", family=f"F{n}") for n, spid in enumerate(spids)]
    patients = services.exchange.patients
    # two patients merged into the first, the last alone
    for retired in (pids[1], pids[2]):
        services.identities.merge_patients(principal=Principal(role="PADM", user_id="padm", name="Admin"),
                                           retired=retired, surviving=pids[0])
    one_by_one = {pid: patients.record_of(pid) for pid in pids}
    patients.links._on_change()  # forget what is remembered: the batch resolves everything afresh

    together = patients.records_of([pids[4], pids[2], pids[0], pids[3], pids[1], pids[0]])

    assert together == one_by_one
    assert together[pids[1]][0] == (pids[0], spids[0]) and {m for m, _ in together[pids[0]]} == set(pids[:3])
    assert together[pids[4]] == ((pids[4], spids[4]),)
    assert patients.pid_for_identifier(Identifier(LOCAL_SYSTEM, "L-2")) == pids[0]
