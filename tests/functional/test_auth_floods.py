"""Failed-authentication floods (issue 10, item 13): a flood of bad tokens from one address costs a
few ledger writes, not one per request, every refusal is still counted in the ledger, and the
address is answered 429 + OperationOutcome once over its limit. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter

from sqlalchemy import event
from starlette.testclient import TestClient

from conftest import SEARCH, SPID, running_gateway

BAD = {"Authorization": "Bearer not-a-token"}
FIND = f"/fhir/DocumentReference?patient.identifier={SEARCH}{SPID}"


def test_a_flood_costs_two_ledger_records_and_every_refusal_is_counted(tmp_path, database_url):
    with running_gateway(tmp_path, database_url, auth_failure_interval_seconds=60, auth_failure_limit=20) as gw:
        gw.register_patient()
        before = len(gw.services.auditor.ledger.all_records())
        commits = []
        event.listen(gw.runtime.engine, "commit", lambda _connection: commits.append(threading.current_thread().name))
        answers = [gw.client.get(FIND, headers=BAD) for _ in range(300)]
        # The key heartbeat reports this worker's keys on a timer of its own (keys rotation): not the flood's.
        flood_commits = sum(thread != "key-heartbeat" for thread in commits)
        during = gw.services.auditor.ledger.all_records()[before:]

        assert Counter(a.status_code for a in answers) == {401: 20, 429: 280}
        throttled = answers[-1]
        assert throttled.json()["resourceType"] == "OperationOutcome"
        assert throttled.json()["issue"][0]["code"] == "throttled"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert flood_commits == 1  # the first refusal's record; the 299 others only counted
        assert [r["outcomeDesc"] for r in during] == [
            "GET /fhir/DocumentReference: invalid token: malformed token"]
        # Over the limit, the address waits whatever it sends (written down as the trade-off).
        assert gw.client.get(FIND, headers=gw.as_hcp()).status_code == 429
        other = TestClient(gw.client.app, base_url="https://testserver", client=("10.9.9.9", 4711))
        assert other.get(FIND, headers=gw.as_hcp()).status_code == 200
    # Stopping the app writes the open window's summary: the 299 (+1 valid but throttled) are there.
    after = gw.services.auditor.ledger.all_records()[before:]
    summaries = [r for r in after if "further refused authentication" in r.get("outcomeDesc", "")]
    assert len(summaries) == 1
    description = summaries[0]["outcomeDesc"]
    assert description.startswith("300 further refused authentication(s) from testclient between ")
    assert "invalid token: malformed token ×19" in description and "rate-limited (429) ×281" in description
    assert summaries[0]["outcome"] == "4"
    assert [a["network"]["address"] for a in summaries[0]["agent"] if "network" in a] == ["testclient"]


def test_summaries_are_written_while_running_when_a_window_closes(tmp_path, database_url):
    with running_gateway(tmp_path, database_url, auth_failure_interval_seconds=0.4, auth_failure_limit=100) as gw:
        before = len(gw.services.auditor.ledger.all_records())
        assert {gw.client.get(FIND, headers=BAD).status_code for _ in range(25)} == {401}

        def accounted() -> tuple[int, int]:
            """(refusals recorded one by one, refusals counted in summaries) in the ledger so far."""
            descriptions = [r.get("outcomeDesc", "") for r in gw.services.auditor.ledger.all_records()[before:]]
            single = sum(d == "GET /fhir/DocumentReference: invalid token: malformed token" for d in descriptions)
            counted = sum(int(d.split(" ", 1)[0]) for d in descriptions if "further refused authentication" in d)
            return single, counted

        # A loaded machine may take longer than one window for the 25 requests: however many windows
        # they spanned, the ledger ends up accounting for each refusal exactly once, while running.
        deadline = time.monotonic() + 10
        while sum(accounted()) < 25 and time.monotonic() < deadline:
            time.sleep(0.1)
        single, counted = accounted()
        assert (single + counted, single < 25, counted > 0) == (25, True, True)
        time.sleep(0.45)  # the window is over: the address is let in again, a valid token works
        assert gw.client.get(FIND, headers=gw.as_hcp()).status_code in (200, 403)
