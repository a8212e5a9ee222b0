"""Real `epr-gateway deliver` processes against the strict stub (issue 24 "What must show"):

- killed with SIGKILL at random points, again and again, while the stub answers slowly and loses
  answers: every document ends in the community exactly once (the stub counts what it stored), every
  row delivered, and the ledger verifies;
- two deliverer processes at once on PostgreSQL never send the same row: every submission set reaches
  the stub in exactly one request, and both processes delivered.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from community_stub import Patient
from conftest import fresh_postgres_url, sqlite_url
from functional.delivery_helpers import INSTITUTION, delivering_world
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = [(f"76133761000000{n:04d}", f"1000{n:05d}") for n in range(1, 7)]
SET_UNIQUE_ID = re.compile(rb'identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8" value="([0-9.]+)"')


def register_patients(world) -> None:
    for n, (spid, _) in enumerate(PATIENTS):
        world.gateway.register_patient(spid=spid, local_id=f"P-{n}", family=f"Muster{n}")


def provide_many(world, count: int) -> None:
    """`count` documents spread over the patients, a few per ITI-65."""
    for start in range(0, count, 3):
        spid = PATIENTS[(start // 3) % len(PATIENTS)][0]
        documents = [{"title": f"Letter {n}", "content": pdf_document("Letter", [new_oid_unique_id()]),
                      "author_institution": INSTITUTION} for n in range(start, min(count, start + 3))]
        response = world.gateway.provide(provide_bundle(spid=spid, documents=documents))
        assert response.status_code == 200, response.text


def deliver_process(world, *args: str, log: Path, concurrency: int = 4) -> subprocess.Popen:
    settings = world.runtime.settings
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HOME": str(log.parent),
           "EPR_DATA_DIR": str(settings.data_dir), "EPR_DATABASE_URL": settings.resolved_database_url,
           "EPR_DEMO_DATA": "false", "EPR_COMMUNITIES": str(world.communities_file),
           "EPR_DELIVERY_LEASE_SECONDS": "2", "EPR_DELIVERY_POLL_SECONDS": "0.05",
           "EPR_DELIVERY_RETRY_SECONDS": "0.05", "EPR_DELIVERY_RETRY_MAX_SECONDS": "0.3",
           "EPR_DELIVERY_CONCURRENCY": str(concurrency)}
    return subprocess.Popen([sys.executable, "-c", "from gateway.cli import main; main()", "deliver", *args],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=str(log.parent))


DOCUMENTS_FOR_SIX_KILLS = 48


def banners(log: Path) -> int:
    """How many deliverers writing to `log` got their SIGTERM handler (each prints its banner after)."""
    return log.read_text(errors="replace").count("stop with SIGTERM") if log.exists() else 0


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_postgres_url()


def test_sigkill_of_the_deliverer_mid_send_again_and_again_ends_with_every_document_once(tmp_path, store_url):
    chance = random.Random(24)
    with delivering_world(tmp_path, store_url, patients=[Patient(s, m, "normal") for s, m in PATIENTS],
                          register=False, config={"timeout_seconds": 2}) as world:
        register_patients(world)
        provide_many(world, DOCUMENTS_FOR_SIX_KILLS)
        stub = world.stub
        stub.scenarios.always("iti41", "slow", delay=0.3)  # every send in flight long enough to be killed in
        stub.scenarios.next("iti41", "lost", count=4)  # stored, answer lost: the next attempt meets the duplicate
        log = tmp_path / "deliver.log"

        kills = 0
        while kills < 6 and world.on_its_way():
            # Two senders of 0.3 s each, killed within 0.6 s of a send: at most ~6 documents recorded a round,
            # so six rounds cannot deliver them all, however fast the deliverer itself has become.
            process = deliver_process(world, log=log, concurrency=2)
            seen = len(stub.requests_to("iti41"))
            wait_until(lambda: len(stub.requests_to("iti41")) > seen or process.poll() is not None, 30)
            time.sleep(chance.uniform(0.0, 0.6))  # somewhere in a send, a record, a claim
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            kills += 1
        assert kills == 6, "the deliverer finished before it could be killed six times"
        stub.scenarios.clear()
        before = banners(log)  # a killed deliverer may not have reached its banner
        finisher = deliver_process(world, log=log)
        wait_until(lambda: banners(log) > before, 60)  # a SIGTERM before its handler would kill it, not stop it
        wait_until(lambda: not world.on_its_way(), 120)
        finisher.send_signal(signal.SIGTERM)
        assert finisher.wait(30) == 0, log.read_text()

        rows = world.rows()
        stored = [d.unique_id for d in stub.stored]
        assert [r["state"] for r in rows] == ["delivered"] * DOCUMENTS_FOR_SIX_KILLS
        assert len(stored) == len(set(stored)) == DOCUMENTS_FOR_SIX_KILLS  # each document stored exactly once
        assert {d.entry_uuid for d in stub.stored} == {r["entry_uuid"] for r in rows}
        resent = [r for r in rows if r["attempts"] > 1]
        assert resent, "no row was sent twice: the kills landed nowhere"
        assert world.ledger_ok()


@pytest.mark.postgres
def test_two_deliverer_processes_on_postgresql_never_send_the_same_row(tmp_path):
    with delivering_world(tmp_path, fresh_postgres_url(), patients=[Patient(s, m, "normal") for s, m in PATIENTS],
                          register=False) as world:
        register_patients(world)
        provide_many(world, 60)
        world.stub.scenarios.always("iti41", "slow", delay=0.05)
        logs = [tmp_path / "first.log", tmp_path / "second.log"]

        processes = [deliver_process(world, log=log) for log in logs]
        for log in logs:
            wait_until(lambda: banners(log) == 1, 60)
        wait_until(lambda: not world.on_its_way(), 120)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        assert [p.wait(30) for p in processes] == [0, 0]

        sets = Counter(SET_UNIQUE_ID.search(r.body).group(1).decode() for r in world.stub.requests_to("iti41"))
        rows = world.rows()
        assert set(sets) == {r["submission_set_unique_id"] for r in rows}
        assert set(sets.values()) == {1}  # every submission set sent once: no row taken twice
        assert [r["state"] for r in rows] == ["delivered"] * 60
        recorded = [int(re.search(r"(\d+) delivery attempts recorded", log.read_text()).group(1)) for log in logs]
        assert sum(recorded) == 60 and min(recorded) > 0  # both delivered
        assert world.ledger_ok()
