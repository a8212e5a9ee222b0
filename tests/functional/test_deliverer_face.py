"""The deliverer as a face: several attempts wait on the community at once; a stop gives back the rows it
claimed but did not send and records the attempts in flight; attempts the store cannot record yet are
kept and recorded once it can (nothing sent twice); on SQLite one deliverer delivers at a time and
another takes over when it stops."""

from __future__ import annotations

import time

from sqlalchemy import text

from community_stub import Patient
from conftest import sqlite_url
from functional.delivery_helpers import delivering_world
from gateway.delivery_setup import running_delivery
from gateway.wiring import deliverer

SPIDS = [(f"76133761000001{n:04d}", f"2000{n:05d}") for n in range(1, 5)]


def _patients(world) -> None:
    for n, (spid, _) in enumerate(SPIDS):
        world.gateway.register_patient(spid=spid, local_id=f"Q-{n}")


def test_attempts_for_different_patients_wait_on_the_community_at_once(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, patients=[Patient(s, m) for s, m in SPIDS], register=False) as world:
        _patients(world)
        for spid, _ in SPIDS:
            world.provide({"title": "Letter"}, spid=spid)
        world.stub.scenarios.always("iti41", "slow", delay=1.0)

        started = time.monotonic()
        world.settle()
        elapsed = time.monotonic() - started

        assert [r["state"] for r in world.rows()] == ["delivered"] * 4
        assert elapsed < 3.0  # one after the other: over 4 s


def test_a_stop_gives_back_what_it_did_not_send_and_records_what_was_in_flight(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, patients=[Patient(s, m) for s, m in SPIDS], register=False) as world:
        _patients(world)
        for spid, _ in SPIDS[:2]:
            world.provide({"title": "Letter"}, spid=spid)
        world.stub.scenarios.always("iti41", "slow", delay=1.0)
        running = running_delivery(world.runtime.settings, world.runtime.delivery, store_in_process=False,
                                   concurrency=1)  # claims two rows: sends one, holds the other
        running.start()
        time.sleep(0.5)

        running.stop()

        sent, held = world.rows()
        assert (sent["state"], sent["attempts"]) == ("delivered", 1)
        assert (held["state"], held["attempts"], held["lease_owner"]) == ("pending", 0, None)
        assert world.attempts(held["id"]) == [] and len(world.stub.stored) == 1


def _attempts_refused(engine, refuse: bool) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("CREATE TRIGGER no_attempts BEFORE INSERT ON community_delivery_attempt BEGIN "
                                    "SELECT RAISE(ABORT, 'the store refuses'); END") if refuse
                               else text("DROP TRIGGER no_attempts"))
        elif refuse:
            connection.execute(text("CREATE FUNCTION no_attempts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                    "RAISE EXCEPTION 'the store refuses'; END $$"))
            connection.execute(text("CREATE TRIGGER no_attempts BEFORE INSERT ON community_delivery_attempt "
                                    "FOR EACH ROW EXECUTE FUNCTION no_attempts()"))
        else:
            connection.execute(text("DROP TRIGGER no_attempts ON community_delivery_attempt"))


def test_attempts_the_store_cannot_record_yet_are_kept_and_recorded_once_it_can(tmp_path, database_url):
    with delivering_world(tmp_path, database_url) as world:
        world.provide({"title": "Letter 1"}, {"title": "Letter 2"})
        _attempts_refused(world.runtime.engine, True)
        running = deliverer(world.runtime)
        running.start()
        try:
            deadline = time.monotonic() + 10
            while len(world.stub.stored) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the recorder tries and fails meanwhile
            assert [r["state"] for r in world.rows()] == ["in-flight", "pending"]
            _attempts_refused(world.runtime.engine, False)
            deadline = time.monotonic() + 20
            while world.on_its_way() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            running.stop()

        rows = world.rows()
        assert [r["state"] for r in rows] == ["delivered", "delivered"]
        assert [r["attempts"] for r in rows] == [1, 1]  # recorded as sent: nothing sent twice
        assert [d.entry_uuid for d in world.stub.stored] == [r["entry_uuid"] for r in rows]
        assert world.ledger_ok()


def test_on_sqlite_one_deliverer_delivers_and_another_takes_over_when_it_stops(tmp_path):
    with delivering_world(tmp_path, sqlite_url(tmp_path)) as world:
        first = deliverer(world.runtime)
        second = deliverer(world.runtime)
        assert (first.single.held(), second.single.held()) == (True, False)
        first.stop()  # (never started: stopping releases its lock)

        assert second.single.held()
        second.stop()


def test_inside_serve_the_apps_lifespan_runs_the_deliverer_and_stops_it(tmp_path, database_url):
    with delivering_world(tmp_path, database_url, delivery_in_serve=True) as world:
        world.provide({"title": "Letter"})  # nobody calls settle: the app's own deliverer sends it
        deadline = time.monotonic() + 20
        while world.on_its_way() and time.monotonic() < deadline:
            time.sleep(0.05)

        assert [r["state"] for r in world.rows()] == ["delivered"]
        assert len(world.stub.stored) == 1
        assert world.stub.audit.wait_for(3) and world.stub.audit.rejected == []
