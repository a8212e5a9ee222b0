"""Audit survives a crash: the real server is killed (SIGKILL) in the middle of concurrent ITI-65
provides and started again on the same store. Every provide that was acknowledged is still stored and
has its ATC_DOC_CREATE audit record, a document and its record are stored together or not at all,
and `epr-gateway audit verify` still verifies the whole ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, func, select

from adapters.cara.store.schema import document_entry
from audit.schema import audit_checkpoint, audit_record
from conftest import HCP_GLN, LOCAL_SYSTEM, SEARCH, SPID, fresh_postgres_url
from consent.policies import onboarding_policies
from consent.ppqm import consent_from_policy
from functional.test_tls_server import Server, free_port
from gateway.samples import new_oid_unique_id, patient_feed, pdf_document, provide_bundle

THREADS = 4
SUCCESSES_BEFORE_KILL = 120  # acknowledged provides wanted before the kill (more than one search page)
CHECKPOINT_EVERY = 5  # signed checkpoints are written during the load too
PER_THREAD_LIMIT = 200  # bounds the load should the kill never come
LOAD_DEADLINE = 25.0  # seconds
TRANSPORT_ERRORS = (httpx.TransportError,)
PDF = pdf_document("Discharge letter", ["Patient Anna Muster, born 1980-05-17"])


@dataclass
class Attempt:
    unique_id: str
    started: float
    status: int | None = None  # None: no HTTP answer (connection refused, reset, closed)
    error: str | None = None


@dataclass
class Load:
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: list[str] = field(default_factory=list)  # unexpected HTTP answers or exceptions

    def record(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def successes(self) -> int:
        with self.lock:
            return sum(1 for a in self.attempts if a.status == 200)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_env(request) -> dict[str, str]:
    """The EPR_* environment beside EPR_DATA_DIR: the embedded SQLite default, or PostgreSQL."""
    env = {"EPR_WORKERS": "1", "EPR_AUDIT_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY)}
    if request.param == "postgres":
        env["EPR_DATABASE_URL"] = fresh_postgres_url()
    return env


def database_url(server: Server, env: dict[str, str]) -> str:
    return env.get("EPR_DATABASE_URL") or f"sqlite:///{(server.data_dir / 'gateway.sqlite3').resolve()}"


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def prepare_patient(server: Server, client: httpx.Client) -> None:
    """ITI-104 feed as an HCP, then the onboarding policies (201/202/203) as a policy administrator."""
    hcp = server.token(role="HCP", gln=HCP_GLN, name="Dr. Luc Favre")
    feed = patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id="L-1", family="Muster", given="Anna",
                        birth_date="1980-05-17", gender="female")
    fed = client.put(f"{server.base}/fhir/Patient", params={"identifier": f"{LOCAL_SYSTEM}|L-1"},
                     content=orjson.dumps(feed), headers=headers(hcp))
    assert fed.status_code == 201, fed.text
    padm = server.token(role="PADM", user_id="padm-test", name="Policy administrator")
    ids = tuple(f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    for policy in onboarding_policies(patient_spid=SPID, policy_set_ids=ids):
        added = client.post(f"{server.base}/fhir/Consent", content=orjson.dumps(consent_from_policy(policy)),
                            headers=headers(padm))
        assert added.status_code == 201, added.text


def provide_loop(server: Server, token: str, load: Load, deadline: float) -> None:
    """One-document provides as a technical user (TCU, purpose AUTO) until the connection breaks."""
    with httpx.Client(verify=server.client_context(with_certificate=False), timeout=15) as client:
        for _ in range(PER_THREAD_LIMIT):
            if time.monotonic() > deadline:
                return
            unique_id = new_oid_unique_id()
            bundle = provide_bundle(spid=SPID, author_role="TCU", documents=[{"title": "Discharge letter",
                                                                              "content": PDF, "unique_id": unique_id}])
            attempt = Attempt(unique_id, time.monotonic())
            try:
                response = client.post(f"{server.base}/fhir", content=orjson.dumps(bundle), headers=headers(token))
            except TRANSPORT_ERRORS as error:
                attempt.error = type(error).__name__
                load.record(attempt)
                return  # the server is gone
            except Exception as error:  # noqa: BLE001 - reported by the test, not swallowed
                load.failures.append(f"{type(error).__name__}: {error}")
                return
            attempt.status = response.status_code
            load.record(attempt)
            if response.status_code != 200:
                load.failures.append(f"{response.status_code}: {response.text[:300]}")
                return


def found_unique_ids(server: Server, client: httpx.Client) -> tuple[list[str], int]:
    """ITI-67 as the patient, every page (_count=100)."""
    token = server.token(role="PAT", spid=SPID, name="Anna Muster")
    url: str | None = f"{server.base}/fhir/DocumentReference"
    params: dict | None = {"patient.identifier": SEARCH + SPID, "_count": "100"}
    found: list[str] = []
    pages = 0
    while url is not None:
        page = client.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200, page.text
        bundle = page.json()
        found += [e["resource"]["masterIdentifier"]["value"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        params = None
        pages += 1
        assert pages <= 50, "paging does not end"
    assert len(found) == bundle["total"]
    return found, pages


@dataclass
class Stored:
    unique_ids: list[str]  # document_entry.unique_id
    audited: list[str]  # the uniqueId named by each successful ATC_DOC_CREATE record
    records: int
    checkpoints: int


def read_store(url: str) -> Stored:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(audit_record.c.record_json).where(
                audit_record.c.subtype == "ATC_DOC_CREATE", audit_record.c.outcome == "0")).all()
            unique_ids = [row.unique_id for row in connection.execute(select(document_entry.c.unique_id))]
            records = connection.execute(select(func.count()).select_from(audit_record)).scalar_one()
            checkpoints = connection.execute(select(func.count()).select_from(audit_checkpoint)).scalar_one()
    finally:
        engine.dispose()
    audited = []
    for row in rows:
        event = json.loads(row.record_json)
        audited += [entity["what"]["identifier"]["value"] for entity in event["entity"]
                    if entity["what"]["identifier"].get("system") == "urn:ihe:iti:xds:2013:uniqueId"]
    return Stored(unique_ids, audited, records, checkpoints)


def bare(unique_id: str) -> str:
    return unique_id.removeprefix("urn:oid:")


def test_acknowledged_provides_and_their_audit_survive_a_kill(tmp_path, server_env):
    started = time.monotonic()
    data_dir = tmp_path / "data"
    server = Server(data_dir, free_port(), **server_env)
    try:
        with httpx.Client(verify=server.client_context(with_certificate=False), timeout=15) as client:
            prepare_patient(server, client)
        tcu = server.token(role="TCU", user_id="infomed-migration", principal_gln=HCP_GLN, name="Migration")

        load = Load()
        deadline = time.monotonic() + LOAD_DEADLINE
        threads = [threading.Thread(target=provide_loop, args=(server, tcu, load, deadline))
                   for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        while load.successes() < SUCCESSES_BEFORE_KILL and time.monotonic() < deadline and not load.failures:
            time.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(server.process.pid, signal.SIGKILL)
        assert server.process.wait(timeout=10) == -signal.SIGKILL
        for thread in threads:
            thread.join(timeout=20)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)

    assert load.failures == []
    assert [t.is_alive() for t in threads] == [False] * THREADS
    acknowledged = [a.unique_id for a in load.attempts if a.status == 200]
    broken = [a for a in load.attempts if a.status is None]
    in_flight = [a for a in broken if a.started < killed_at]
    assert len(acknowledged) >= SUCCESSES_BEFORE_KILL
    assert len(broken) == THREADS  # every thread stopped on a broken connection, none on an HTTP error
    assert in_flight, "no provide was in flight when the server was killed"

    server.log.rename(data_dir / "server-before-kill.log")  # the restarted server writes its own
    restarted = Server(data_dir, server.port, **server_env)
    try:
        with httpx.Client(verify=restarted.client_context(with_certificate=False), timeout=15) as client:
            found, pages = found_unique_ids(restarted, client)
    finally:
        restarted.stop()
    env = {"PATH": "/usr/bin:/bin", "EPR_DATA_DIR": str(data_dir), "EPR_DEMO_DATA": "false", **server_env}
    verify = subprocess.run([sys.executable, "-c", "from gateway.cli import app; app()", "audit", "verify"],
                            env=env, capture_output=True, text=True, timeout=30)
    store = read_store(database_url(restarted, server_env))

    maybe = {a.unique_id for a in in_flight}
    # every acknowledged document is found, and nothing else but a provide cut by the kill
    assert set(acknowledged) <= set(found)
    assert set(found) - set(acknowledged) <= maybe
    assert sorted(found) == sorted(store.unique_ids)
    assert pages >= 2
    # one creation record per stored document, none for a document that is not stored
    assert sorted(store.audited) == sorted(bare(u) for u in store.unique_ids)
    assert store.checkpoints >= store.records // CHECKPOINT_EVERY
    # the whole ledger, written before and after the kill, verifies with every checkpoint
    assert (verify.returncode, verify.stderr) == (0, "")
    assert verify.stdout.startswith(f"audit ledger verifies: {store.records} records, {store.checkpoints} checkpoints")
    assert time.monotonic() - started < 60
